"""One whole gymnax Pendulum run of ours (the throughput part's rejax-row program), compiled and timed 5 times, with
JAX's threefry lowered as on the CPU (rolled loop, argv[1] = 0) or unrolled as on other platforms (argv[1] = 1).
From the repository root: PYTHONPATH=. .venv/bin/python <this file> {0|1} {sac|td3} SEEDS"""
import sys, time, json
import numpy as np
unrolled = sys.argv[1] == "1"
algo = sys.argv[2]
import jax
if unrolled:
    from jax._src.random import threefry2x32 as tf
    from jax._src.interpreters import mlir
    mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu", inline=False)
from benchmarks.throughput.config import config_for
from benchmarks.throughput.pendulum import pendulum_request, compile_our_pendulum
req = pendulum_request(config_for("quick"), algo, int(sys.argv[3]))
fn, keys, cs = compile_our_pendulum(req)
rates = []
for _ in range(5):
    t = time.perf_counter(); ev = jax.block_until_ready(fn(keys)); dt = time.perf_counter() - t
    rates.append(req["seeds"] * req["total_steps"] / dt)
print(json.dumps({"unrolled": unrolled, "algo": algo, "compile_s": round(cs, 1), "rates": [round(r) for r in rates],
                  "whiles": fn.as_text().count(" while("), "checksum": float(np.asarray(ev, np.float64).sum())}))
