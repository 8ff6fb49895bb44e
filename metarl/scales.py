"""Named run scales: ``quick`` (minutes on a 2-core CPU: `make bench`, CI smoke) and ``paper`` (the
paper's budget, meant for an accelerator)."""
from __future__ import annotations

SCALES = ("quick", "paper")


def resolve_scale(name: str, table: dict | None = None):
    """Return ``table[name]`` (or the name itself), with a clear error for an unknown scale."""
    valid = tuple(table) if table is not None else SCALES
    if name not in valid:
        raise ValueError(f"unknown scale {name!r}; valid scales: {', '.join(valid)}")
    return table[name] if table is not None else name
