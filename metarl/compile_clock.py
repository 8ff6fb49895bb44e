"""How much of a run's wall time went into compiling: tracing, lowering and XLA's backend compile.

JAX reports each of the three as a time span through ``jax.monitoring``; :class:`CompileClock` listens
while it is active and measures the union of those spans (a jit traced inside another one's trace
is counted once), so ``run_s = wall_s - compile_s`` is the time the compiled programs ran plus the
host's own work. ``by_program`` says where the compile time went: per program (the jitted function's name
and the line of the project that called it; a lambda's name alone says little), its compiles and their
trace, lowering and XLA seconds, largest first: the lever for a part that compiles longer than it runs. A
hit in the persistent compilation cache shows up as a short backend compile (the executable's retrieval)
and is counted in ``cache_hits``.

    with CompileClock() as clock:
        ...  # anything that jits
    print(clock.line())  # "compile 41.2 s (trace 3.1, lower 1.0, XLA 37.5; 0 cache hits), run 12.3 s"

:class:`compile_report` is the same clock around a whole benchmark part: one printed line and a JSON file.
"""
from __future__ import annotations

import os
import sys
import threading
import time

TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
_KIND = {TRACE: "trace", LOWER: "lower", BACKEND: "xla"}
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding metarl/ (and experiments/)
_PROJECT = tuple(os.path.join(_ROOT, d) + os.sep for d in ("metarl", "experiments", "benchmarks", "tests"))


def xla_flops(program) -> float:
    """FLOPs of a lowered or compiled JAX program (``jit(f).lower(...)``, or its ``.compile()``) as XLA's cost
    analysis counts them: a loop's body once; the lowered (unoptimised) program's count needs no compile and is
    within ~0.1% of the compiled one's on the updates measured here."""
    cost = program.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def caller_in_project(skip: str = __file__) -> str:
    """'path:line' (relative to the project) of the innermost frame of the current thread in metarl/,
    experiments/, benchmarks/ or tests/ other than ``skip``; '?' if none."""
    f = sys._getframe(1)
    while f is not None:
        name = f.f_code.co_filename
        if name.startswith(_PROJECT) and name != skip:
            return f"{os.path.relpath(name, _ROOT)}:{f.f_lineno}"
        f = f.f_back
    return "?"


def union_length(spans) -> float:
    """Total length covered by the (start, end) intervals, overlaps counted once."""
    total, cur_start, cur_end = 0.0, None, None
    for s, e in sorted(spans):
        if cur_end is None or s > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


class CompileClock:
    """Context manager: the compile time of everything jitted inside it, apart from the rest."""

    def __init__(self):
        self.spans = {k: [] for k in _KIND.values()}
        self.sites = {k: [] for k in _KIND.values()}  # each span's program: "name at path:line"
        self.cache_hits = 0
        self.t0 = self.t1 = None
        self._lock = threading.Lock()

    def _on_span(self, event, start, end, fun_name=None, **_):
        kind = _KIND.get(event)
        if kind is not None and self.t1 is None:
            # the listener runs in the compiling thread, under its caller's frames; a trace names the
            # function bare, lowering and XLA as jit(name)
            name = fun_name or "?"
            site = f"{name if name.startswith('jit(') else f'jit({name})'} at {caller_in_project()}"
            with self._lock:
                self.spans[kind].append((start, end))
                self.sites[kind].append(site)

    def _on_event(self, event, **_):
        if event == CACHE_HIT and self.t1 is None:
            with self._lock:
                self.cache_hits += 1

    def __enter__(self):
        from jax import monitoring

        monitoring.register_event_time_span_listener(self._on_span)
        monitoring.register_event_listener(self._on_event)
        self.t0 = time.time()
        return self

    def __exit__(self, *exc):
        from jax import monitoring

        self.t1 = time.time()
        monitoring.unregister_event_time_span_listener(self._on_span)
        monitoring.unregister_event_listener(self._on_event)
        return False

    def summary(self, top: int = 20) -> dict:
        """wall_s, compile_s (the union of all spans), run_s, per kind (trace/lower/xla, each a union), and
        by_program: the ``top`` programs by compile seconds, {"name" (the jitted function's name and its
        call site in the project), "compiles" (XLA compiles), "trace_s", "lower_s", "xla_s"} (a jit traced
        inside another's trace counts in both programs' trace_s)."""
        end = self.t1 if self.t1 is not None else time.time()
        with self._lock:
            spans = {k: list(v) for k, v in self.spans.items()}
            sites = {k: list(v) for k, v in self.sites.items()}
            hits = self.cache_hits
        wall = end - self.t0
        compile_s = union_length([s for v in spans.values() for s in v])
        by_site = {}
        for kind in _KIND.values():
            for site, (s, e) in zip(sites[kind], spans[kind]):
                row = by_site.setdefault(site, {"name": site, "compiles": 0, "trace_s": 0.0, "lower_s": 0.0,
                                                "xla_s": 0.0})
                row[f"{kind}_s"] += e - s
                row["compiles"] += kind == "xla"
        ranked = sorted(by_site.values(), key=lambda r: -(r["trace_s"] + r["lower_s"] + r["xla_s"]))[:top]
        return {"wall_s": wall, "compile_s": compile_s, "run_s": wall - compile_s,
                **{f"{k}_s": union_length(v) for k, v in spans.items()},
                "programs_compiled": len(spans["xla"]), "cache_hits": hits,
                "by_program": ranked}

    def line(self, s: dict | None = None) -> str:
        """The one-line account of ``s`` (default: :meth:`summary` now)."""
        s = s if s is not None else self.summary()
        return (f"compile {s['compile_s']:.1f} s (trace {s['trace_s']:.1f}, lower {s['lower_s']:.1f}, XLA "
                f"{s['xla_s']:.1f}; {s['programs_compiled']} programs, {s['cache_hits']} from the persistent "
                f"cache), run {s['run_s']:.1f} s, wall {s['wall_s']:.1f} s")


class compile_report:
    """``with compile_report("benchmarks.x", out_dir): ...``: on a normal exit, prints one line with the
    part's compile time apart from its run time and the three programs that compiled longest, and writes
    the summary to ``out_dir/<filename>``."""

    def __init__(self, name: str, out_dir: str, filename: str = "compile_time.json"):
        self.name, self.out_dir, self.filename = name, out_dir, filename

    def __enter__(self):
        self.clock = CompileClock().__enter__()
        return self.clock

    def __exit__(self, exc_type, *rest):
        import os

        from metarl.driver.records import write_json

        self.clock.__exit__(exc_type, *rest)
        if exc_type is None:
            summary = self.clock.summary()
            write_json(os.path.join(self.out_dir, self.filename), {"part": self.name, **summary})
            top = "; ".join(f"{p['name']} {p['trace_s'] + p['lower_s'] + p['xla_s']:.0f} s ({p['compiles']}x)"
                            for p in summary["by_program"][:3])
            print(f"{self.name}: {self.clock.line(summary)}" + (f"; compiling most: {top}" if top else ""), flush=True)
        return False
