"""The command line ``python -m metarl.report`` (``make report``)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from metarl.config_cli import PositiveInt
from metarl.report.page import build

_DESCRIPTION = "The generated results page: ``python -m metarl.report [--root results|reports] [--readme README.md]``."


@dataclass(frozen=True)
class ReportCommand:
    """Which results to index and which README block to rewrite."""

    root: str = "results"  # folder of results (results, or the tracked reports)
    readme: str | None = None  # a file whose results block (between its two markers) to rewrite
    max_rows: PositiveInt = 30  # compared rows shown in the README block


def main(argv=None) -> int:
    from metarl.config_cli import parse_command

    a = parse_command("python -m metarl.report", _DESCRIPTION, ReportCommand(), argv)
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
