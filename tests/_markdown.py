"""Test helper: the tables of a tables.md, read back as rows, so tests check what a reader sees."""
from __future__ import annotations

import re


def tables(md: str) -> dict[str, list[dict]]:
    """{heading: [row as {column: cell}]} for every markdown table under a '#'-heading of ``md`` (the first
    table under each heading; header cells made unique by suffixing ' #2', ' #3' on repeats)."""
    out, heading, lines = {}, None, md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            head = _cells(line)
            seen = {}
            for k, h in enumerate(head):
                seen[h] = seen.get(h, 0) + 1
                head[k] = h if seen[h] == 1 else f"{h} #{seen[h]}"
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(head, _cells(lines[i]))))
                i += 1
            out.setdefault(heading, rows)
            continue
        i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


IQM_CI = re.compile(r"^-?[\d.]+(e[+-]?\d+)? \[-?[\d.]+(e[+-]?\d+)?, -?[\d.]+(e[+-]?\d+)?\]$")
