"""Throughput benchmark: our jitted, vmapped off-policy core against Brax's trainer and eager PyTorch.

    python -m benchmarks.throughput --scale quick      # make bench-throughput (a few minutes on 2 CPU cores)
    python -m benchmarks.throughput --scale paper      # longer runs, meant for a quiet machine or a GPU

Three measurements, in one run:

(a) SAC environment steps per second in steady state (compilation excluded and reported apart):
    ours (``metarl.train.make_functions`` with algo sac, jitted and vmapped over one seed exactly as
    ``Runner`` runs it) against Brax's own ``brax.training.agents.sac.train``, on the same Brax env
    and backend, 1 environment, batch 256, 256-256 networks, 1 gradient update per env step.
    Brax 0.14.2's trainers need a jax older than ours, so the peer runs as a subprocess in
    ``.venv-brax-peer/`` (pinned in ``benchmarks/peers/brax_requirements.txt``), which this
    benchmark creates on first use. Our side is timed before AND after the peer (back to back on a
    shared machine); our chunk contains one evaluation episode, whose separately timed cost is
    subtracted (Brax's own ``training/sps`` excludes its evaluation too); both figures are kept.
(b) TD3 updates per second: ours with 8 vmapped seeds (one compiled program) against the same
    update in eager PyTorch on the CPU running 8 seeds one after another, as the papers' code does
    (``benchmarks/peers/torch_td3.py`` in ``.venv-torch-peer/``, torch pinned in
    ``benchmarks/peers/torch_requirements.txt``, the ``bench`` extra of pyproject.toml).
    Both: 400-300 actor and twin critics, batch 100, Adam, target smoothing, policy delay 2, a
    replay buffer of random transitions sampled uniformly on every update.
(c) Our TD3 with 1, 2, 4 and 8 vmapped seeds: aggregate updates per second.

The TD3 sides run interleaved in ``rounds`` (ours 1/2/4/8 seeds, then torch, repeated); figures are
medians over rounds, every sample is in summary.json. Results: ``results/throughput/summary.json`` and
``results/throughput/table.md``. The targets (ours >= Brax; 8 seeds >= 2x one; ours >= 3x torch)
are figures to report, not assertions: misses are printed as misses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "benchmarks", "peers")
BRAX_VENV = os.path.join(ROOT, ".venv-brax-peer")
TORCH_VENV = os.path.join(ROOT, ".venv-torch-peer")


@dataclass(frozen=True)
class ThroughputConfig:
    # (a) SAC: ours vs Brax's trainer
    sac_env: str = "inverted_pendulum"  # a Brax env name (ours: "brax/<name>")
    backend: str = "positional"
    sac_learning_starts: int = 256  # warm-up / prefill steps (>= batch 256)
    sac_steps_per_chunk: int = 500  # env steps per timed chunk (ours) / per epoch (Brax)
    sac_chunks_before: int = 1  # our timed chunks before the peer runs
    sac_chunks_after: int = 1  # ... and after it
    brax_epochs: int = 3  # Brax training epochs; the first one includes its compilation
    # (b) and (c) TD3 update
    td3_obs_dim: int = 17  # HalfCheetah's observation and action sizes
    td3_act_dim: int = 6
    td3_buffer_size: int = 10_000
    td3_seed_counts: tuple = (1, 2, 4, 8)
    td3_updates_per_call: int = 50  # updates per compiled call (a lax.scan)
    td3_calls: int = 2  # timed calls per seed count per round
    torch_seeds: int = 8
    torch_updates: int = 50  # timed updates per seed per round (after torch_warmup untimed ones)
    torch_warmup: int = 5
    torch_threads: int = 1  # torch intra-op threads; 0 = torch's default (all cores)
    rounds: int = 3
    sac_time_eval: bool = False  # also compile and time our evaluation alone, and subtract it
    run_brax: bool = True
    run_torch: bool = True

    def validate(self):
        positive = ("sac_learning_starts", "sac_steps_per_chunk", "td3_obs_dim", "td3_act_dim",
                    "td3_buffer_size", "td3_updates_per_call", "td3_calls", "torch_seeds", "torch_updates",
                    "rounds")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sac_chunks_before", "sac_chunks_after", "torch_warmup", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sac_chunks_before + self.sac_chunks_after < 1:
            raise ValueError("sac_chunks_before + sac_chunks_after must be >= 1 (no timed chunk of ours)")
        if self.brax_epochs < 2:
            raise ValueError(f"brax_epochs must be >= 2 (the first one includes compilation), got {self.brax_epochs}")
        if self.sac_learning_starts < 256:
            raise ValueError(f"sac_learning_starts must be >= the SAC batch 256, got {self.sac_learning_starts}")
        if self.td3_buffer_size < 100:
            raise ValueError(f"td3_buffer_size must be >= the TD3 batch 100, got {self.td3_buffer_size}")
        counts = tuple(self.td3_seed_counts)
        if not counts or any(int(c) != c or c < 1 for c in counts) or list(counts) != sorted(set(counts)):
            raise ValueError(f"td3_seed_counts must be distinct positive integers in increasing order, got {counts}")
        if counts[0] != 1:
            raise ValueError(f"td3_seed_counts must start at 1 (the single-seed reference), got {counts}")
        if self.backend not in ("positional", "spring", "generalized", "mjx"):
            raise ValueError(f"unknown Brax backend {self.backend!r}; valid: positional, spring, generalized, mjx")
        return self


SCALES = {
    "quick": ThroughputConfig(),
    "paper": ThroughputConfig(sac_env="halfcheetah", sac_learning_starts=1_000, sac_steps_per_chunk=5_000,
                              sac_chunks_before=2, sac_chunks_after=2, brax_epochs=4, td3_buffer_size=100_000,
                              td3_updates_per_call=500, td3_calls=3, torch_updates=500, torch_warmup=20,
                              torch_threads=0, rounds=3, sac_time_eval=True),
}


def config_for(scale: str) -> ThroughputConfig:
    from benchmarks.common import parse_scale

    return SCALES[parse_scale(scale, SCALES)].validate()


# ----------------------------------------------------------------------------------------------------
# Peer virtual environments (created on first use, reused while their pinned requirements match)
# ----------------------------------------------------------------------------------------------------
def _stamp_of(requirements: str) -> str:
    with open(requirements) as f:
        text = f.read()
    return hashlib.sha256((text + sys.version).encode()).hexdigest()


def venv_ready(path: str, requirements: str) -> bool:
    stamp = os.path.join(path, ".metarl-peer-stamp")
    if not os.path.exists(stamp) or not os.path.exists(os.path.join(path, "bin", "python")):
        return False
    with open(stamp) as f:
        return f.read().strip() == _stamp_of(requirements)


def start_venv(path: str, requirements: str, log_path: str):
    """Start creating ``path`` with the pinned ``requirements`` (no dependency resolution: the file pins
    the whole closure), logging to ``log_path``. Returns a Popen, or None if the venv is already there
    and matches."""
    if venv_ready(path, requirements):
        return None
    shutil.rmtree(path, ignore_errors=True)
    log = open(log_path, "w")
    cmd = (f"{sys.executable} -m venv {path} && {path}/bin/python -m pip install -q --no-deps "
           f"-r {requirements} && echo {_stamp_of(requirements)} > {path}/.metarl-peer-stamp")
    return subprocess.Popen(["bash", "-c", cmd], stdout=log, stderr=subprocess.STDOUT)


def finish_venv(proc, path: str, requirements: str, log_path: str) -> str | None:
    """Wait for ``proc``; returns None when the venv is usable, else the reason it is not."""
    if proc is not None:
        proc.wait()
    if venv_ready(path, requirements):
        return None
    tail = ""
    if os.path.exists(log_path):
        with open(log_path) as f:
            tail = f.read()[-600:]
    return f"could not create {os.path.relpath(path, ROOT)} (log: {log_path}): {tail}"


# ----------------------------------------------------------------------------------------------------
# (a) SAC: ours
# ----------------------------------------------------------------------------------------------------
def _block(x):
    import jax

    return jax.tree.map(lambda a: a.block_until_ready(), x)


class OurSAC:
    """Our SAC, compiled exactly as ``metarl.train.Runner`` compiles it (jit of vmap over the runs)."""

    def __init__(self, cfg: ThroughputConfig):
        import jax

        from metarl.train import TrainConfig, make_functions, run_keys_and_hp

        n_chunks = cfg.sac_chunks_before + cfg.sac_chunks_after
        self.steps_per_chunk = cfg.sac_steps_per_chunk
        self.train_config = TrainConfig(
            algo="sac", env=f"brax/{cfg.sac_env}", backend=cfg.backend, seeds=1,
            total_steps=cfg.sac_learning_starts + n_chunks * cfg.sac_steps_per_chunk,
            learning_starts=cfg.sac_learning_starts, eval_every=cfg.sac_steps_per_chunk, eval_episodes=1,
            evals_per_chunk=1, updates_per_step=1, buffer_size=10**7)
        _, self.agent, init, run_chunk, evaluate = make_functions(self.train_config)
        assert self.agent.config.batch_size == 256 and tuple(self.agent.config.actor_hidden) == (256, 256)
        _, self.keys, self.hp = run_keys_and_hp(self.train_config)
        self.compile_s = {}
        t = time.perf_counter()
        init_c = jax.jit(jax.vmap(init)).lower(self.keys, self.hp).compile()
        self.compile_s["init"] = time.perf_counter() - t
        self.run = _block(init_c(self.keys, self.hp))
        t = time.perf_counter()
        self.chunk = jax.jit(jax.vmap(run_chunk), donate_argnums=0).lower(self.run).compile()
        self.compile_s["chunk"] = time.perf_counter() - t
        self.evaluate = None
        if cfg.sac_time_eval:
            t = time.perf_counter()
            self.evaluate = jax.jit(jax.vmap(evaluate)).lower(self.run.agent, self.keys).compile()
            self.compile_s["evaluate_alone"] = time.perf_counter() - t
        self.chunk_s, self.eval_s = [], []

    def time_chunks(self, n: int):
        for _ in range(n):
            t = time.perf_counter()
            self.run, m = self.chunk(self.run)
            _block(m)
            self.chunk_s.append(time.perf_counter() - t)
            if self.evaluate is not None:
                t = time.perf_counter()
                _block(self.evaluate(self.run.agent, self.keys))
                self.eval_s.append(time.perf_counter() - t)

    def result(self) -> dict:
        steps = self.steps_per_chunk * len(self.chunk_s)
        chunk_total, eval_total = sum(self.chunk_s), sum(self.eval_s)
        # Without sac_time_eval the figure keeps the chunk's one evaluation episode (about 1% of a
        # chunk when it was timed apart): a conservative figure for our side.
        return {"env_steps_per_s": steps / max(chunk_total - eval_total, 1e-9),
                "env_steps_per_s_incl_eval": steps / chunk_total, "eval_subtracted": bool(self.eval_s),
                "chunk_s": self.chunk_s, "eval_s": self.eval_s, "steps_per_chunk": self.steps_per_chunk,
                "compile_time_s": self.compile_s["init"] + self.compile_s["chunk"],
                "compile_breakdown_s": self.compile_s, "train_config": dataclasses.asdict(self.train_config)}


def run_brax_peer(cfg: ThroughputConfig, workdir: str, timeout_s: float | None = None) -> dict:
    if timeout_s is None:  # generous: ~5 env steps/s on a loaded CPU, plus compilation
        timeout_s = 600 + 0.2 * (cfg.sac_learning_starts + cfg.brax_epochs * cfg.sac_steps_per_chunk)
    cmd = [os.path.join(BRAX_VENV, "bin", "python"), os.path.join(PEERS, "brax_sac.py"), "--env", cfg.sac_env,
           "--backend", cfg.backend, "--epochs", str(cfg.brax_epochs), "--steps-per-epoch",
           str(cfg.sac_steps_per_chunk), "--min-replay", str(cfg.sac_learning_starts), "--num-envs", "1",
           "--batch-size", "256", "--hidden", "256", "256", "--grad-updates-per-step", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=workdir)
    wall = time.perf_counter() - t
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"Brax peer failed (rc {p.returncode}): {p.stderr[-1500:]}")
    out = json.loads(lines[-1])
    out["subprocess_wall_s"] = wall
    return out


# ----------------------------------------------------------------------------------------------------
# (b, c) TD3 update: ours vmapped over seeds; eager PyTorch peer
# ----------------------------------------------------------------------------------------------------
def _td3_spec_agent(cfg: ThroughputConfig):
    from metarl.agents import make_agent
    from metarl.envs import EnvSpec

    a_dim, o_dim = cfg.td3_act_dim, cfg.td3_obs_dim
    spec = EnvSpec(name="synthetic/td3-update", obs_shape=(o_dim,), discrete=False, action_dim=a_dim,
                   action_low=(-1.0,) * a_dim, action_high=(1.0,) * a_dim)
    return spec, make_agent("td3", spec)


def td3_flops_per_update(cfg: ThroughputConfig) -> float:
    """XLA's FLOP count of one TD3 update of one seed: the critic step plus half an actor step
    (policy delay 2). Turns updates/s into achieved GFLOP/s, which shows whether the update is
    compute-bound (then vmapping seeds cannot raise the aggregate rate on a CPU)."""
    import jax
    import jax.numpy as jnp

    _, agent = _td3_spec_agent(cfg)
    state = agent.init(jax.random.PRNGKey(0), {})
    b, o, a = agent.config.batch_size, cfg.td3_obs_dim, cfg.td3_act_dim
    batch = dict(obs=jnp.zeros((b, o)), action=jnp.zeros((b, a)), reward=jnp.zeros(b), next_obs=jnp.zeros((b, o)),
                 terminated=jnp.zeros(b, bool), done=jnp.zeros(b, bool))
    key = jax.random.PRNGKey(1)

    def flops(fn):  # the lowered (unoptimised) program's count: within 0.1% of the compiled one, no compile
        ca = jax.jit(fn).lower(state, batch, key).cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])

    return flops(agent.critic_step) + flops(agent.actor_step) / agent.config.policy_delay


class OurTD3Updates:
    """``n`` seeds of TD3 (each with its own agent and replay buffer of random transitions) as one
    compiled program that runs ``updates_per_call`` x (sample a batch, ``agent.update``) in a lax.scan."""

    def __init__(self, cfg: ThroughputConfig, n: int):
        import jax
        import jax.numpy as jnp

        from metarl import buffers

        a_dim, o_dim = cfg.td3_act_dim, cfg.td3_obs_dim
        _, agent = _td3_spec_agent(cfg)
        c = agent.config
        assert (tuple(c.actor_hidden), tuple(c.critic_hidden), c.batch_size, c.twin, c.policy_delay) == \
            ((400, 300), (400, 300), 100, True, 2)
        size, k_upd = cfg.td3_buffer_size, cfg.td3_updates_per_call

        def init(key):
            k_agent, k1, k2, k3, k4, k5, k_run = jax.random.split(key, 7)
            data = dict(obs=jax.random.normal(k1, (size, o_dim)),
                        action=jax.random.uniform(k2, (size, a_dim), minval=-1.0, maxval=1.0),
                        reward=jax.random.normal(k3, (size,)), next_obs=jax.random.normal(k4, (size, o_dim)),
                        terminated=jax.random.uniform(k5, (size,)) < 0.01)
            data["done"] = data["terminated"]
            buf = buffers.add_batch(buffers.init(jax.tree.map(lambda x: x[0], data), size), data)
            return agent.init(k_agent, {}), buf, k_run

        def updates(carry):
            state, buf, key = carry

            def body(state, k):
                k_s, k_u = jax.random.split(k)
                return agent.update(state, buffers.sample(buf, k_s, c.batch_size), k_u)

            key, sub = jax.random.split(key)
            state, m = jax.lax.scan(body, state, jax.random.split(sub, k_upd))
            return (state, buf, key), m["critic_loss"][-1]

        keys = jax.random.split(jax.random.PRNGKey(0), n)
        self.n, self.updates_per_call = n, k_upd
        self.carry = _block(jax.jit(jax.vmap(init))(keys))
        t = time.perf_counter()
        self.fn = jax.jit(jax.vmap(updates), donate_argnums=0).lower(self.carry).compile()
        self.compile_s = time.perf_counter() - t
        self.carry, loss = self.fn(self.carry)  # one untimed call: first-touch effects
        if not bool(jnp.all(jnp.isfinite(_block(loss)))):
            raise FloatingPointError("non-finite TD3 critic loss in the throughput benchmark")
        self.samples = []  # aggregate updates/s, one per timed call

    def time_calls(self, calls: int):
        for _ in range(calls):
            t = time.perf_counter()
            self.carry, loss = self.fn(self.carry)
            _block(loss)
            self.samples.append(self.n * self.updates_per_call / (time.perf_counter() - t))


class TorchPeer:
    """The eager PyTorch TD3 process, kept alive between rounds and driven line by line."""

    def __init__(self, cfg: ThroughputConfig):
        cmd = [os.path.join(TORCH_VENV, "bin", "python"), os.path.join(PEERS, "torch_td3.py"),
               "--obs-dim", str(cfg.td3_obs_dim), "--act-dim", str(cfg.td3_act_dim), "--hidden", "400", "300",
               "--batch-size", "100", "--buffer-size", str(cfg.td3_buffer_size), "--lr", "1e-3",
               "--threads", str(cfg.torch_threads)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.info = self._read()
        self.samples = []

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch peer exited (rc {self.proc.poll()})")
        return json.loads(line)

    def round(self, seeds: int, updates: int, warmup: int) -> dict:
        self.proc.stdin.write(json.dumps({"seeds": seeds, "updates": updates, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        self.samples.append(r)
        return r

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------
def _fmt(x, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.1f}{unit}" if x < 100 else f"{x:,.0f}{unit}"


def _verdict(ratio, target):
    if ratio is None:
        return "not measured"
    return "met" if ratio >= target else "MISSED"


def make_table(s: dict) -> str:
    cfg = s["config"]
    sac, td3 = s["sac"], s["td3"]
    ours_sac = sac["ours"]["env_steps_per_s"] if sac.get("ours") else None
    brax_sps = sac["brax"]["steady_env_steps_per_s"] if sac.get("brax") else None
    r_sac = ours_sac / brax_sps if ours_sac and brax_sps else None
    agg = td3["ours_aggregate_updates_per_s"]
    n_max = max(int(k) for k in agg)
    r_vmap = agg[str(n_max)] / agg["1"] if "1" in agg else None
    torch_agg = td3["torch"]["aggregate_updates_per_s"] if td3.get("torch") else None
    r_torch = agg[str(n_max)] / torch_agg if torch_agg else None
    env = f"brax/{cfg['sac_env']} ({cfg['backend']})"
    lines = [
        f"| measurement | ours | peer / reference | ratio | target | verdict |",
        f"|---|---|---|---|---|---|",
        f"| SAC env steps/s, {env}, 1 env, batch 256, 256-256, 1 update/step | {_fmt(ours_sac)} | "
        f"Brax trainer {_fmt(brax_sps)} | {_fmt(r_sac, 'x') if r_sac else 'n/a'} | >= 1x | {_verdict(r_sac, 1.0)} |",
        f"| SAC compile time (s) | {_fmt(sac['ours']['compile_time_s'] if sac.get('ours') else None)} | "
        f"Brax trainer {_fmt(sac['brax']['compile_time_s'] if sac.get('brax') else None)} | | reported apart | |",
        f"| TD3 updates/s, {n_max} vmapped seeds vs 1 seed (aggregate) | {_fmt(agg[str(n_max)])} | "
        f"1 seed {_fmt(agg.get('1'))} | {_fmt(r_vmap, 'x') if r_vmap else 'n/a'} | >= 2x | {_verdict(r_vmap, 2.0)} |",
        f"| TD3 updates/s, {n_max} seeds: ours vmapped vs PyTorch eager CPU, {cfg['torch_seeds']} seeds in sequence "
        f"| {_fmt(agg[str(n_max)])} | torch {_fmt(torch_agg)} | {_fmt(r_torch, 'x') if r_torch else 'n/a'} | >= 3x "
        f"| {_verdict(r_torch, 3.0)} |",
        "",
        "| TD3 vmapped seeds | aggregate updates/s | per seed | vs 1 seed | achieved GFLOP/s | compile (s) |",
        "|---|---|---|---|---|---|",
    ]
    gf = td3.get("flops_per_update")
    gflops = (lambda rate: _fmt(rate * gf / 1e9)) if gf else (lambda rate: "n/a")
    for k in sorted(agg, key=int):
        lines.append(f"| {k} | {_fmt(agg[k])} | {_fmt(agg[k] / int(k))} | {_fmt(agg[k] / agg['1'], 'x')} | "
                     f"{gflops(agg[k])} | {_fmt(td3['ours_compile_s'][k])} |")
    if torch_agg:
        t = td3["torch"]
        lines.append(f"| torch eager, {cfg['torch_seeds']} seeds in sequence ({t['threads']} thread(s)) | "
                     f"{_fmt(torch_agg)} | {_fmt(torch_agg / cfg['torch_seeds'])} | | {gflops(torch_agg)} | |")
    if gf:
        lines.append(f"\nOne TD3 update (batch 100, 400-300, twin critics, actor every 2nd) = {gf / 1e6:,.0f} MFLOP "
                     f"(XLA cost analysis); the same arithmetic is assumed for torch.")
    for name, why in s.get("skipped", {}).items():
        lines.append(f"\n{name} not measured: {why}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------
def main(argv=None):
    from benchmarks.common import parse_scale, progress, scale_arg_parser, write_result, write_text

    p = scale_arg_parser("python -m benchmarks.throughput", __doc__.splitlines()[0],
                         os.path.join("results", "throughput"), choices=tuple(SCALES))
    p.add_argument("--no-brax", action="store_true", help="skip the Brax peer (no peer venv)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer (no peer venv)")
    a = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", message="Brax System")  # Brax's maintenance notice, once per env
    try:
        scale = parse_scale(a.scale, SCALES)
    except ValueError as e:
        p.error(str(e))
    cfg = dataclasses.replace(config_for(scale), run_brax=not a.no_brax, run_torch=not a.no_torch).validate()
    t_start = time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    counts = tuple(cfg.td3_seed_counts)
    phases = (1 + 3 + len(counts) + cfg.rounds * (len(counts) + int(cfg.run_torch)) + 1)
    bar = progress(phases, f"throughput ({scale})", unit="phase")
    skipped, timeline = {}, []

    def phase(name):
        bar.set_postfix_str(name)
        timeline.append((name, round(time.perf_counter() - t_start, 1)))

    # Peer venvs first, in parallel, before anything is timed (their installs would disturb timings).
    phase("peer venvs")
    brax_req = os.path.join(PEERS, "brax_requirements.txt")
    torch_req = os.path.join(PEERS, "torch_requirements.txt")
    procs = {}
    logs = {name: os.path.join(os.path.abspath(a.out), f"{name}-peer-venv.log") for name in ("brax", "torch")}
    if cfg.run_brax:
        procs["brax"] = (start_venv(BRAX_VENV, brax_req, logs["brax"]), BRAX_VENV, brax_req)
    if cfg.run_torch:
        procs["torch"] = (start_venv(TORCH_VENV, torch_req, logs["torch"]), TORCH_VENV, torch_req)
    venv_created = {k: v[0] is not None for k, v in procs.items()}
    for name, (proc, path, req) in procs.items():
        why = finish_venv(proc, path, req, logs[name])
        if why:
            skipped[f"{name} peer"] = why
    venv_s = time.perf_counter() - t_start
    bar.update(1)

    # (a) SAC: ours (compile, chunks) - Brax - ours (chunks)
    phase("our SAC: compile")
    ours = OurSAC(cfg)
    bar.update(1)
    phase("our SAC: timed chunks (before peer)")
    ours.time_chunks(cfg.sac_chunks_before)
    bar.update(1)
    brax = None
    phase("Brax SAC trainer (subprocess)")
    if cfg.run_brax and "brax peer" not in skipped:
        try:
            brax = run_brax_peer(cfg, os.path.abspath(a.out))
        except Exception as e:  # report, do not hide our own figures
            skipped["brax peer"] = str(e)
    bar.update(1)
    phase("our SAC: timed chunks (after peer)")
    ours.time_chunks(cfg.sac_chunks_after)
    sac = {"ours": ours.result(), "brax": brax, "order": "ours before, Brax, ours after (back to back)"}
    del ours

    # (b, c) TD3: compile every seed count, then rounds of [ours 1, 2, 4, 8 seeds; torch 8 seeds]
    td3_runs = {}
    for n in counts:
        phase(f"our TD3: compile {n} seed(s)")
        td3_runs[n] = OurTD3Updates(cfg, n)
        bar.update(1)
    phase("TD3 FLOP count")
    flops_per_update = td3_flops_per_update(cfg)
    torch_peer = None
    if cfg.run_torch and "torch peer" not in skipped:
        try:
            torch_peer = TorchPeer(cfg)
        except Exception as e:
            skipped["torch peer"] = str(e)
    for r in range(cfg.rounds):
        for n in counts:
            phase(f"round {r + 1}: our TD3 {n} seed(s)")
            td3_runs[n].time_calls(cfg.td3_calls)
            bar.update(1)
        if cfg.run_torch:
            phase(f"round {r + 1}: torch TD3 {cfg.torch_seeds} seeds")
            if torch_peer is not None:
                try:
                    torch_peer.round(cfg.torch_seeds, cfg.torch_updates, cfg.torch_warmup)
                except Exception as e:
                    skipped["torch peer"] = str(e)
                    torch_peer = None
            bar.update(1)
    torch_res = None
    if torch_peer is not None and torch_peer.samples:
        torch_peer.close()
        torch_res = {"aggregate_updates_per_s": statistics.median(s["aggregate_updates_per_s"] for s in torch_peer.samples),
                     "rounds": torch_peer.samples, "threads": torch_peer.info["threads"],
                     "torch": torch_peer.info["torch"], "numpy": torch_peer.info["numpy"]}
    td3 = {"ours_aggregate_updates_per_s": {str(n): statistics.median(td3_runs[n].samples) for n in counts},
           "ours_samples": {str(n): td3_runs[n].samples for n in counts},
           "ours_compile_s": {str(n): td3_runs[n].compile_s for n in counts},
           "flops_per_update": flops_per_update, "torch": torch_res, "order": f"{cfg.rounds} interleaved rounds: ours {list(counts)} seeds, then torch"}

    phase("write results")
    summary = {"config": dataclasses.asdict(cfg), "scale": scale, "sac": sac, "td3": td3, "skipped": skipped}
    agg = td3["ours_aggregate_updates_per_s"]
    n_max = str(max(counts))
    summary["targets"] = {
        "sac_ours_over_brax": {"target": 1.0, "ratio": (sac["ours"]["env_steps_per_s"] / brax["steady_env_steps_per_s"])
                               if brax else None},
        f"td3_{n_max}_seeds_over_1": {"target": 2.0, "ratio": agg[n_max] / agg["1"]},
        f"td3_ours_{n_max}_over_torch_{cfg.torch_seeds}": {
            "target": 3.0, "ratio": agg[n_max] / torch_res["aggregate_updates_per_s"] if torch_res else None},
    }
    for t in summary["targets"].values():
        t["met"] = None if t["ratio"] is None else bool(t["ratio"] >= t["target"])
    table = make_table(summary)
    summary["table_md"] = table
    wall = time.perf_counter() - t_start
    extra = {"venv_setup_s": venv_s, "venvs_created_this_run": venv_created, "timeline_s": timeline,
             "peer_versions": {"brax": brax["versions"] if brax else None,
                               "torch": {k: torch_res[k] for k in ("torch", "numpy", "threads")} if torch_res else None}}
    write_result(os.path.join(a.out, "summary.json"), summary, config=cfg, wall_time_s=wall, **extra)
    import jax

    peer_dev = brax["device"]["backend"] if brax else "n/a"
    header = (f"# Throughput ({scale} scale)\n\nOurs on jax {jax.__version__} ({jax.default_backend()}), Brax peer on "
              f"jax {brax['versions']['jax'] if brax else 'n/a'} ({peer_dev}), torch peer on the CPU. Load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; wall time {wall:.0f} s (peer venv "
              f"setup {venv_s:.0f} s). Steady-state rates, compilation reported apart; medians over rounds.\n\n")
    write_text(os.path.join(a.out, "table.md"), header + table)
    bar.update(1)
    bar.close()
    print(header + table)
    return summary


if __name__ == "__main__":
    main()
