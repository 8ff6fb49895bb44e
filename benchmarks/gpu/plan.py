"""The GPU kit's parts, their sizes (paper-shaped on the device, tiny in the dry run), the cost model and
the plan: how much of the budget each part gets."""
from __future__ import annotations

import time

T_START = time.time()  # the budget counts from here (the package's imports included)

import json


PARTS = ("smoke", "throughput", "meta_critic", "snake", "metagenrl", "projection")
TITLES = {"smoke": "0. import and smoke check", "throughput": "(a) TD3/SAC throughput vs vmapped seeds",
          "meta_critic": "(b) Meta-Critic Table 1 rows", "snake": "(c) Snake 6x6, outer value function",
          "metagenrl": "(d) MetaGenRL meta-train + meta-test", "projection": "(e) projected paper-scale times"}
# Time boxes as shares of the budget; the remaining 4% covers start-up and the last write.
SHARES = {"smoke": 0.16, "throughput": 0.26, "meta_critic": 0.18, "snake": 0.11, "metagenrl": 0.23, "projection": 0.02}
OUTPUT_FILES = ("plan.json", "summary.json", "summary.md", "figures.png")


# ----------------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------------
TINY_AGENT = dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16)


def tiny_train(algo: str, env: str = "gymnax/Pendulum-v1") -> dict:
    """The smoke's off-policy run: chunks of 16 steps after 48 random ones, 16-step episodes (the smoke
    runs one chunk; the dry run's parts (a) and (b) run both, with the same compiled programs)."""
    return dict(algo=algo, env=env, seeds=1, learning_starts=48, eval_every=16, chunks=2, eval_episodes=1,
                max_episode_steps=16, agent=TINY_AGENT)


def sizes_for(dry: bool) -> dict:
    """Every part's sizes. ``dry``: the same code paths at sizes a 2-core CPU runs in seconds (one seed,
    gymnax Pendulum instead of Brax, tiny networks); every dry-run program is also a smoke program, so
    the dry run compiles each only once."""
    smoke = dict(envs=["brax/inverted_pendulum" if dry else "brax/hopper", "gymnax/Pendulum-v1", "jumanji/Snake-6x6"],
                 train={a: tiny_train(a) for a in ("td3", "sac")},
                 meta_critic=dict(tiny_train("td3"), learning_starts=48),
                 # dry: two of the five agents (MG with the outer critic covers both critics' code; the
                 # population compiles for ~1 min of CPU with all five)
                 snake=dict(num_envs=2, horizon=2, hidden=[8], seeds=1, updates_per_log=1, logs_per_chunk=2,
                            agents=["A2C", "MG+outer critic"] if dry else None),
                 metagenrl=dict(envs=["gymnax/Pendulum-v1"], agents=2, learning_starts=20, eval_every=10,
                                anneal_steps=10, window=5, batch_windows=4, hidden=[8], max_episode_steps=10,
                                eval_episodes=1, objective="tiny", max_segments=2),
                 # GPU: the reacher at the paper's sizes (horizon 50, 400-400 critic), 1 seed: a rate for (e).
                 model_based_critic=(dict(horizon=3, critic_hidden=[8, 8], policy_hidden=[8], inner_steps=1,
                                          n_policy_inits=1, chunk=1, seeds=1) if dry else
                                     dict(horizon=50, critic_hidden=[400, 400], policy_hidden=[64, 64],
                                          inner_steps=3, n_policy_inits=2, chunk=5, seeds=1)))
    if dry:
        throughput = dict(algos=["td3", "sac"], envs=["gymnax/Pendulum-v1"], seeds=[1], learning_starts=48,
                          steps_per_chunk=16, chunks=2, eval_episodes=1, max_episode_steps=16, agent=TINY_AGENT)
        meta_critic = dict(envs=["gymnax/Pendulum-v1"], algos=["td3"], seeds=1, learning_starts=48, eval_every=16,
                           eval_episodes=1, max_episode_steps=16, agent=TINY_AGENT, max_chunks=2)
        snake = dict(smoke["snake"], max_chunks=2)
        metagenrl = dict(smoke["metagenrl"], test_env="gymnax/Pendulum-v1", test_seeds=1, test_max_segments=1)
    else:
        # 1k random steps (timed: env steps/s), then 2 chunks of 500 training steps (the second is timed);
        # episodes are cut at 100 steps so that the evaluation episode inside each chunk is a small part of
        # it; metarl's default networks (TD3 400-300, batch 100; SAC 256-256, batch 256)
        throughput = dict(algos=["td3", "sac"], envs=["gymnax/Pendulum-v1", "brax/hopper"], seeds=[1, 32, 256, 1024],
                          learning_starts=1000, steps_per_chunk=500, chunks=2, eval_episodes=1,
                          max_episode_steps=100, agent={})
        # The paper's networks (TD3 400-300, SAC 256-256) and 5 seeds; 1k random steps (paper 10k), an
        # evaluation of 5 episodes every 2k steps. max_chunks bounds the replay buffer (it holds every step).
        meta_critic = dict(envs=["brax/inverted_double_pendulum", "brax/hopper"], algos=["td3", "sac"], seeds=5,
                           learning_starts=1000, eval_every=2000, eval_episodes=5, max_episode_steps=None, agent={},
                           max_chunks=100)
        snake = dict(num_envs=512, horizon=5, hidden=None, seeds=5, updates_per_log=25, logs_per_chunk=4,
                     max_chunks=292, agents=None)
        # The paper's agents, networks and objective (experiments.metagenrl scale "paper"), 10 agents on each
        # of Table 2's first training pair; 1k random steps and 1k annealing steps (paper 10k and 10k).
        metagenrl = dict(envs=["brax/halfcheetah", "brax/hopper"], agents=20, learning_starts=1000, eval_every=1000,
                         anneal_steps=1000, window=20, batch_windows=100, hidden=None, max_episode_steps=None,
                         eval_episodes=1, objective="paper", max_segments=200, test_env="brax/inverted_double_pendulum",
                         test_seeds=2, test_max_segments=100)
    return dict(smoke=smoke, throughput=throughput, meta_critic=meta_critic, snake=snake, metagenrl=metagenrl,
                projection=dict(tables=[r["name"] for r in PAPER_WORKLOADS]))


# Paper-scale workloads projected in part (e) from the rates measured in (a)-(d).
PAPER_WORKLOADS = [
    dict(name="TD3, 1M brax/hopper steps per agent, 1024 agents vmapped (throughput)", source="throughput",
         key="td3|brax/hopper|1024", steps=1_000_000),
    dict(name="SAC, 1M brax/hopper steps per agent, 1024 agents vmapped (throughput)", source="throughput",
         key="sac|brax/hopper|1024", steps=1_000_000),
    dict(name="Online Meta-Critic Table 1: 7 Brax tasks x DDPG/TD3/SAC x (vanilla, MC) x 5 seeds x 1M steps",
         source="meta_critic", table=1),
    dict(name="Online Meta-Critic Tables 1-3, the whole paper grid (benchmarks.meta_critic --scale paper)",
         source="meta_critic", table="all"),
    dict(name="Outer value Snake: 5 agents x 10 seeds x 29,200 updates (75M env steps each), one program",
         source="snake", updates=29_200, seeds=10),
    dict(name="MetaGenRL Table 2: 5 training sets x 20 agents x 1M steps, then meta-test 6 seeds x 3 envs x "
              "(5 objectives + TD3 + off-policy REINFORCE) x 1M steps", source="metagenrl"),
    dict(name="Model-based critic, reacher at paper scale: 5 seeds x 3000 meta-iterations (ours)",
         source="model_based_critic", iterations=3000, seeds=5),
]

# ----------------------------------------------------------------------------------------------------
# Cost model
# ----------------------------------------------------------------------------------------------------
# Per-program compile seconds and per-unit run seconds. "cpu": measured on the 2-core development CPU
# (dry-run sizes, jax_disable_most_optimizations, cold compilation cache). "gpu": priors for one H200,
# no H200 measurement yet: compile = the CPU compile of the same program (XLA's GPU compile is of the same
# order; the run compiles in parallel threads, so a part waits for its slowest program, not their sum),
# per-step latency of a scanned step ~1 ms (kernel launches) plus the arithmetic at ~20 TFLOP/s
# effective. A measured file (--costs, a previous run's summary.json "measured_costs") replaces them.
COSTS = {
    # measured here: CPU seconds of each dry-run program's compile (jax_disable_most_optimizations, cold cache)
    "cpu": {"compile": {"env": 8.0, "train": 16.0, "meta_critic": 28.0, "snake": 25.0, "metagenrl": 40.0,
                        "metagenrl_test": 30.0, "model_based_critic": 20.0},
            "step": {"train": 2e-4, "meta_critic": 8e-4, "snake_update": 0.05, "metagenrl_cycle": 0.02,
                     "mbc_iteration": 0.05}},
    "gpu": {"compile": {"env": 20.0, "train": 60.0, "meta_critic": 120.0, "snake": 90.0, "metagenrl": 180.0,
                        "metagenrl_test": 150.0, "model_based_critic": 60.0},
            # seconds per env step of one program: latency + per-run arithmetic
            "step": {"train": 1.5e-3, "train_per_run": 1.5e-5, "meta_critic": 4e-3, "meta_critic_per_run": 5e-5,
                     "snake_update": 0.06, "metagenrl_cycle": 0.03, "mbc_iteration": 0.15}},
}


def load_costs(path: str | None, dry: bool) -> dict:
    base = json.loads(json.dumps(COSTS["cpu" if dry else "gpu"]))
    if path:
        with open(path) as f:
            data = json.load(f)
        data = data.get("measured_costs", data)
        for k in ("compile", "step"):
            base[k].update({n: float(v) for n, v in data.get(k, {}).items() if v is not None})
    return base


def make_plan(sizes: dict, costs: dict, budget_s: float, dry: bool, workers: int | None = None) -> dict:
    """Parts, their sizes, time boxes and predicted seconds (what the cost model says fits).

    Compiles run in ``workers`` threads from the start in the order the parts need them, so a part's
    predicted time is the compile work still outstanding when it starts (spread over the workers) plus
    its runs; the parts that run "as long as fits" are sized to their box."""
    workers = workers or (2 if dry else 12)
    c, st = costs["compile"], costs["step"]
    # (the dry run's parts share the whole budget: see Kit.deadline)
    box = {p: budget_s * (1.0 if dry else SHARES[p]) for p in PARTS}
    pred = {}
    # smoke: 3 env checks and 6 method programs
    smoke_compile = [c["env"]] * 3 + [c["train"]] * 2 + [c["meta_critic"], c["snake"], c["metagenrl"],
                                                          c["model_based_critic"]]
    pred["smoke"] = max(max(smoke_compile), sum(smoke_compile) / workers) + 2.0
    th = sizes["throughput"]
    n_cfg = len(th["algos"]) * len(th["envs"]) * len(th["seeds"])
    steps = th["learning_starts"] + th["chunks"] * th["steps_per_chunk"]
    per_run = st.get("train_per_run", 0.0)
    run_s = sum(steps * (st["train"] + n * per_run) for n in th["seeds"]) * len(th["algos"]) * len(th["envs"])
    # the dry run's (a) and (b) reuse the smoke's programs; on the GPU, (a) compiles 2 programs per config
    pending = 0.0 if dry else max(0.0, 2 * n_cfg * c["train"] / workers - pred["smoke"])
    pred["throughput"] = run_s + pending
    mc = sizes["meta_critic"]
    n_prog = len(mc["envs"]) * len(mc["algos"])
    step_mc = st["meta_critic"] + 2 * mc["seeds"] * st.get("meta_critic_per_run", 0.0)
    fit = max(1, int((box["meta_critic"] - 5.0) / (n_prog * step_mc * mc["eval_every"])))
    mc_chunks = min(mc["max_chunks"], fit)
    pred["meta_critic"] = n_prog * step_mc * (mc["learning_starts"] + mc_chunks * mc["eval_every"])
    sn = sizes["snake"]
    per_chunk = sn["updates_per_log"] * sn["logs_per_chunk"] * st["snake_update"]
    sn_chunks = min(sn["max_chunks"], max(1, int((box["snake"] - 2.0) / per_chunk)))
    pred["snake"] = sn_chunks * per_chunk
    mg = sizes["metagenrl"]
    per_seg = mg["eval_every"] / 2 * st["metagenrl_cycle"]
    mg_segs = min(mg["max_segments"], max(1, int(0.6 * box["metagenrl"] / per_seg)))
    test_segs = min(mg["test_max_segments"], max(1, int(0.3 * box["metagenrl"] / (0.5 * per_seg))))
    pred["metagenrl"] = (mg_segs + 0.5 * test_segs) * per_seg + (c["metagenrl_test"] if dry else 0.0)
    pred["projection"] = 1.0
    parts = []
    for p in PARTS:
        planned = {"throughput": {"configs": n_cfg, "env_steps_per_config": steps},
                   "meta_critic": {"programs": n_prog, "runs_per_program": 2 * mc["seeds"],
                                   "chunks": mc_chunks, "env_steps_per_run": mc["learning_starts"] + mc_chunks * mc["eval_every"]},
                   "snake": {"chunks": sn_chunks, "updates": sn_chunks * sn["updates_per_log"] * sn["logs_per_chunk"]},
                   "metagenrl": {"meta_train_segments": mg_segs, "env_steps_per_agent":
                                 mg["learning_starts"] + mg_segs * mg["eval_every"], "meta_test_segments": test_segs},
                   }.get(p, {})
        predicted = max(0.1, round(min(pred[p], box[p]), 1))
        parts.append(dict(name=p, title=TITLES[p], box_s=round(box[p], 1), predicted_s=predicted,
                          predicted_uncapped_s=round(pred[p], 1), sizes=sizes[p], planned=planned))
    return dict(mode="dry-run" if dry else "gpu", budget_s=budget_s, workers=workers, parts=parts,
                total_predicted_s=round(sum(q["predicted_s"] for q in parts), 1), costs=costs,
                note="compiles run in parallel threads from the start; each part then runs until its deadline, so "
                     "the sizes above are what the cost model expects to fit" + (
                         "; dry run: the parts share the whole budget (no per-part boxes)" if dry else ""))
