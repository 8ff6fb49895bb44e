"""How much of a run's wall time went into compiling: tracing, lowering and XLA's backend compile.

JAX reports each of the three as a time span through ``jax.monitoring``; :class:`CompileClock` listens
while it is active and measures the union of those spans (a jit traced inside another one's trace
is counted once), so ``run_s = wall_s - compile_s`` is the time the compiled programs ran plus the
host's own work. A hit in the persistent compilation cache shows up as a short backend compile (the
executable's retrieval) and is counted in ``cache_hits``.

    with CompileClock() as clock:
        ...  # anything that jits
    print(clock.line())  # "compile 41.2 s (trace 3.1, lower 1.0, XLA 37.5; 0 cache hits), run 12.3 s"

:class:`compile_report` is the same clock around a whole benchmark part: one printed line and a JSON file.
"""
from __future__ import annotations

import threading
import time

TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
_KIND = {TRACE: "trace", LOWER: "lower", BACKEND: "xla"}


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
        self.cache_hits = 0
        self.t0 = self.t1 = None
        self._lock = threading.Lock()

    def _on_span(self, event, start, end, **_):
        kind = _KIND.get(event)
        if kind is not None and self.t1 is None:
            with self._lock:
                self.spans[kind].append((start, end))

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

    def summary(self) -> dict:
        """wall_s, compile_s (the union of all spans), run_s, and per kind (trace/lower/xla, each a union)."""
        end = self.t1 if self.t1 is not None else time.time()
        with self._lock:
            spans = {k: list(v) for k, v in self.spans.items()}
            hits = self.cache_hits
        wall = end - self.t0
        compile_s = union_length([s for v in spans.values() for s in v])
        return {"wall_s": wall, "compile_s": compile_s, "run_s": wall - compile_s,
                **{f"{k}_s": union_length(v) for k, v in spans.items()},
                "programs_compiled": len(spans["xla"]), "cache_hits": hits}

    def line(self) -> str:
        s = self.summary()
        return (f"compile {s['compile_s']:.1f} s (trace {s['trace_s']:.1f}, lower {s['lower_s']:.1f}, XLA "
                f"{s['xla_s']:.1f}; {s['programs_compiled']} programs, {s['cache_hits']} from the persistent "
                f"cache), run {s['run_s']:.1f} s, wall {s['wall_s']:.1f} s")


class compile_report:
    """``with compile_report("benchmarks.x", out_dir): ...``: on a normal exit, prints one line with the
    part's compile time apart from its run time and writes it to ``out_dir/<filename>``."""

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
            write_json(os.path.join(self.out_dir, self.filename), {"part": self.name, **self.clock.summary()})
            print(f"{self.name}: {self.clock.line()}", flush=True)
        return False
