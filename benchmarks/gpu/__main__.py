"""``python -m benchmarks.gpu``: the GPU run kit's command line (benchmarks.gpu.command)."""
import os
import sys

from benchmarks.gpu.command import main

if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # compile threads still running in the background must not hold the exit
