"""The command line ``python -m metarl.report`` (``make report``)."""
from __future__ import annotations

import argparse
import sys

from metarl.report.scan import BEGIN, END
from metarl.report.page import build

_DESCRIPTION = "The generated results page: ``python -m metarl.report [--root results|reports] [--readme README.md]``."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m metarl.report", description=_DESCRIPTION)
    p.add_argument("--root", default="results", help="folder of results (results, or the tracked reports)")
    p.add_argument("--readme", default=None, help=f"file whose {BEGIN} ... {END} block to rewrite")
    p.add_argument("--max-rows", type=int, default=30, help="compared rows shown in the README block")
    a = p.parse_args(argv)
    try:
        out = build(a.root, a.readme, max_rows=a.max_rows)
    except ValueError as e:
        print(f"metarl.report: {e}", file=sys.stderr)
        return 2
    n = sum(len(e["files"]) for e in out["entries"])
    print(f"metarl.report: {len(out['entries'])} folders, {n} files under {a.root}"
          + (f"; wrote {out['index']}" if out["index"] else f"; {a.root} does not exist, no index written")
          + ((f"; updated the results block of {out['readme']}" if out["readme_changed"]
              else f"; the results block of {out['readme']} is up to date") if out["readme"] else ""))
    return 0
