"""``python -m metarl.report``: the results index and the README's results block (metarl.report.command)."""
import sys

from metarl.report.command import main

if __name__ == "__main__":
    sys.exit(main())
