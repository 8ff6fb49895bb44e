"""The Online Meta-Critic benchmark's settings per scale, the paper's Tables 1-3 as published, and the jobs
(environment x algorithm x variants) a run plans."""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field


from metarl.agents import agent_config
from metarl.driver.records import check_scale


SCALES = ("quick", "medium", "paper")
ENV_ROWS = {"brax/halfcheetah": "HalfCheetah", "brax/hopper": "Hopper", "brax/walker2d": "Walker2d",
            "brax/ant": "Ant", "brax/reacher": "Reacher", "brax/inverted_pendulum": "InvPend",
            "brax/inverted_double_pendulum": "InvDouPend"}
FINAL_EVALS = 3  # the final score of a run: its mean return over the last 3 evaluations
ALGOS = ("ddpg", "td3", "sac")
TABLES = ("1", "2", "3", "fig6", "ppo")  # "ppo": Table 1's PPO and PPO-LIRPG columns

# The paper's tables (Zhou et al. 2020, Tables 1-3), as published; the reference column of our tables.
PAPER_TABLES = {
    1: """\
# Online Meta-Critic (NeurIPS 2020) Table 1: max average return over 5 trials over all time steps (MuJoCo-Gym v2, rllab, TORCS)
environment,DDPG,DDPG-MC,TD3,TD3-MC,SAC,SAC-MC,PPO,PPO-LIRPG
HalfCheetah,8440.2,15808.9,12735.7,15064.0,16651.8,16815.9,2061.5,1882.6
Hopper,1871.1,2776.7,3580.3,3670.4,3610.6,3738.4,3762.0,2750.0
Walker2d,2920.2,4543.5,5942.7,6298.0,6398.8,7164.9,4432.6,3652.9
Ant,2375.4,3661.1,5914.8,6280.0,6954.4,7204.3,684.2,23.6
Reacher,-3.6,-3.7,-3.0,-2.9,-2.8,-2.7,-6.08,-7.53
InvPend,1000.0,1000.0,1000.0,1000.0,1000.0,1000.0,988.2,971.6
InvDouPend,9307.5,9326.5,9357.4,9358.8,9359.6,9359.6,7266.0,6974.9
HalfCheetah(rllab),6245.6,7239.1,7648.2,8552.1,10011.0,10597.0,,
Ant(rllab),2300.8,2929.4,3672.6,4776.8,8014.8,8353.8,,
TORCS,6188.1,9353.3,14841.7,33684.2,24674.7,32869.0,,
""",
    2: """\
# Online Meta-Critic Table 2: ablation on SAC-Walker2d, 5 trials. Columns: SAC; L_meta_clip with h(pi_bar), h(pi_bar,s,a), h(phi) [MetaReg]; L_meta with h(pi_bar)
metric,SAC,clip_h_feature,clip_h_feature_sa,clip_h_metareg,plain_h_feature
max_average_return,6398.8,7164.9,7423.8,6644.3,6456.1
max_average_return_std,289.2,151.3,780.2,1815.6,424.8
sum_average_return,53695678,61672039,57364405,58875184,52446717
""",
    3: """\
# Online Meta-Critic Table 3: controlling for compute (+updates) and parameter count (+params). Max average return over 5 trials.
environment,DDPG,DDPG+updates,DDPG+params,DDPG-MC,TD3,TD3+updates,TD3+params,TD3-MC,SAC,SAC+updates,SAC+params,SAC-MC
HalfCheetah,8440.2,15004.5,15153.9,15808.9,12735.7,11585.2,11980.7,15064.0,16651.8,16309.9,16339.3,16815.9
Hopper,1871.1,1753.0,2438.0,2776.7,3580.3,2903.1,1460.0,3670.4,3610.6,3510.8,3441.6,3738.4
Walker2d,2920.2,3826.5,2964.3,4543.5,5942.7,3414.0,3185.4,6298.0,6398.8,6363.7,6423.7,7164.9
Ant,2375.4,1504.2,3615.1,3661.1,5914.8,1262.3,984.7,6280.0,6954.4,6253.6,5999.1,7204.3
HalfCheetah(rllab),6245.6,6526.0,6589.0,7239.1,7648.2,8021.8,9003.0,8552.1,10011.0,9008.3,9122.0,10597.0
Ant(rllab),2300.8,2875.4,2763.7,2929.4,3672.6,2838.1,3714.3,4776.8,8014.8,6464.4,6868.8,8353.8
TORCS,6188.1,4932.5,8104.7,9353.3,14841.7,20473.2,27850.4,33684.2,24674.7,11946.7,24932.4,32869.0
""",
}


@dataclass(frozen=True)
class BenchConfig:
    scale: str = "quick"
    # Quick: every table on gymnax's Pendulum-v1, NOT a paper task, labelled as such: a Brax program compiles
    # for ~30 s on a 2-core CPU, and `make bench` must fit 45 minutes on a CPU 2.4 times as slow as the one it
    # was sized on. The paper's Brax tasks are the medium scale's (5 seeds, committed under reports/).
    table1_envs: tuple = ("gymnax/Pendulum-v1",)
    table1_algos: dict = field(default_factory=dict)  # {env: algos}; default: all three
    table3_envs: tuple = ("gymnax/Pendulum-v1",)  # '+updates' / '+params' rows
    table2_env: str = "gymnax/Pendulum-v1"  # the paper: SAC on Walker2d
    env_steps: dict = field(default_factory=dict)  # {env: total_steps} overrides
    seeds: int = 2
    total_steps: int = 4_000
    learning_starts: int = 1_000
    eval_every: int = 1_000
    eval_episodes: int = 3
    evals_per_chunk: int = 3
    agent: dict = field(default_factory=lambda: dict(actor_hidden=(64, 64), critic_hidden=(64, 64)))
    sac_agent: dict = field(default_factory=lambda: dict(actor_hidden=(64, 64), critic_hidden=(64, 64),
                                                         batch_size=100))
    lookahead: str = "all"
    tabular: bool = True
    tabular_episodes: int | None = None  # None: the paper's 100
    # Fig. 6 runs the paper's 400-300 networks (its point), ~2 min per actor reading at 5 seeds on a 2-core CPU:
    # quick takes 2 seeds like its other parts; the 5-seed figure is the medium scale's
    tabular_seeds: int | None = 2  # None: TabularConfig's 5
    max_episode_steps: int | None = None  # None: the environment's own (Brax: 1000)
    episode_steps: dict = field(default_factory=dict)  # {env: max_episode_steps} overrides
    tables: tuple = TABLES  # which parts to run: Tables "1", "2", "3", the tabular MDP "fig6", Table 1's PPO columns "ppo"
    tab_actors: tuple = ("tanh", "softmax")  # Fig. 6 under each reading of the 2 actions
    only: tuple = ()  # run only these jobs ('env|algo' or 'env'); empty: all
    smoke: bool = False


def bench_config(scale: str) -> BenchConfig:
    check_scale(scale, SCALES)
    if scale == "quick":  # Fig. 6 under the tanh reading only (~60 s each); the medium scale runs both
        return BenchConfig(tab_actors=("tanh",))
    if scale == "medium":
        # The smallest CPU budget at which Table 1 can show on the paper's cheap tasks: 5 seeds, the
        # paper's 100-100 meta-critic and batch 100, 64-64 agents (the paper's 400-300 costs ~10x per
        # update here). Steps per task: the vanilla agents clearly learn by then (TD3's own start of
        # 1000 random steps for these three tasks); Reacher has Gym's 50-step episodes (Brax's default is
        # 1000), so its returns are on the paper's scale. Tables 2-3 on InvPend at the same scale.
        small = dict(actor_hidden=(64, 64), critic_hidden=(64, 64))
        return BenchConfig(scale="medium", table1_envs=("brax/inverted_pendulum", "brax/inverted_double_pendulum",
                                                        "brax/reacher"),
                           table3_envs=("brax/inverted_pendulum",), table2_env="brax/inverted_pendulum",
                           env_steps={"brax/inverted_pendulum": 20_000, "brax/inverted_double_pendulum": 30_000,
                                      "brax/reacher": 20_000},
                           episode_steps={"brax/reacher": 50}, seeds=5, total_steps=20_000, learning_starts=1_000,
                           eval_every=1_000, eval_episodes=5, evals_per_chunk=1, agent=small,
                           sac_agent=dict(small, batch_size=100), table1_algos={}, tabular_seeds=None)
    locomotion = ("brax/halfcheetah", "brax/hopper", "brax/walker2d", "brax/ant")
    return BenchConfig(scale="paper", table1_envs=tuple(ENV_ROWS), table3_envs=locomotion,
                       table2_env="brax/walker2d", seeds=5, total_steps=1_000_000, learning_starts=10_000,
                       eval_every=1_000, eval_episodes=10, evals_per_chunk=45, agent={}, sac_agent={},
                       table1_algos={}, env_steps={}, episode_steps={"brax/reacher": 50}, tabular_seeds=None)


def read_paper_table(n: int) -> list[dict]:
    rows = [r for r in PAPER_TABLES[n].splitlines() if r and not r.startswith("#")]
    return list(csv.DictReader(rows))


def paper_value(table, row_key, row, col):
    for r in table:
        if r.get(row_key) == row:
            v = r.get(col, "")
            return float(v) if v not in ("", None) else None
    return None


def pair_line(task, pair, steps, seeds, a: dict, b: dict, cmp: dict | None, claim: str, verdict: str) -> str:
    """One row of a paper-layout table: a method a against its reference b. a, b: {"iqm", "ci", "max_avg",
    "paper" (the paper's max average return), optional "paper_std"}; cmp: metarl.stats.compare's P(a > b)
    with its interval and outcome (None: not run, or too few seeds to compare)."""
    def max_avg(d):
        paper = d.get("paper")
        ours = "-" if d.get("max_avg") is None else f"{d['max_avg']:.1f}"
        ref = "-" if paper is None else (f"{paper:g}" if d.get("paper_std") is None else f"{paper:g} ± {d['paper_std']:g}")
        return f"{ours} / {ref}"

    from metarl.stats import interval_text

    p = interval_text(cmp["p_improvement"], cmp["p_improvement_ci"], ".2f") if cmp else "-"
    return (f"| {task} | {pair} | {steps if steps is not None else '-'} | {seeds if seeds is not None else '-'} | "
            f"{interval_text(a.get('iqm'), a.get('ci'))} | {interval_text(b.get('iqm'), b.get('ci'))} | {max_avg(a)} | "
            f"{max_avg(b)} | {p} | {cmp['verdict'] if cmp else '-'} | {claim} | {verdict} |")


PAIR_HEAD = ("| task | a vs b | steps | seeds | a: final, IQM [95% CI] | b: final, IQM [95% CI] | a: max avg, ours / paper | "
             "b: max avg, ours / paper | P(a > b) [95% CI] | outcome | paper's claim | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_note(paper_task: str = "") -> str:
    return (f"final = a seed's mean return over its last {FINAL_EVALS} evaluations, IQM [95% stratified-bootstrap "
            "CI] over seeds; max avg = the paper's metric (max over evaluations of the seed-average return), ours / "
            f"the paper's{paper_task}; outcome = better / worse / inconclusive from the interval of P(a > b); "
            "verdict = that outcome read against the paper's claim")


def plan(cfg: BenchConfig) -> list[tuple]:
    """(env, algo, variants) programs to run: each is one experiments.meta_critic.run_experiment call."""
    jobs = {}
    if "1" in cfg.tables:
        for env in cfg.table1_envs:
            for algo in cfg.table1_algos.get(env, ALGOS):
                jobs.setdefault((env, algo), set()).update({"vanilla", "mc"})
    if "3" in cfg.tables:
        for env in cfg.table3_envs:
            for algo in ALGOS:
                jobs.setdefault((env, algo), set()).update({"vanilla", "mc", "updates", "params"})
    if "2" in cfg.tables:  # the ablation, plus the re-initialisation guard on (not in the paper; off elsewhere)
        jobs.setdefault((cfg.table2_env, "sac"), set()).update(
            {"vanilla", "mc", "mc_plain", "mc_guard", "mc_sa", "metareg"})
    from metarl.meta.meta_critic_runs import VARIANTS

    out = [(env, algo, tuple(v for v in VARIANTS if v in vs)) for (env, algo), vs in jobs.items()]
    if cfg.only:
        known = {f"{e}|{a}" for e, a, _ in out} | {e for e, _, _ in out}
        bad = sorted(set(cfg.only) - known)
        if bad:
            raise ValueError(f"unknown job(s) {bad} for scale {cfg.scale!r}; valid: {', '.join(sorted(known))}")
        out = [j for j in out if j[0] in cfg.only or f"{j[0]}|{j[1]}" in cfg.only]
    return out


def job_key(env, algo):
    return f"{env}|{algo}"


def job_config(cfg: BenchConfig, env: str, algo: str, variants: tuple):
    """The experiments.meta_critic.ExperimentConfig of one planned job (validated, with its TrainConfig)."""
    from metarl.meta.meta_critic_runs import ExperimentConfig

    agent = cfg.sac_agent if algo == "sac" else cfg.agent
    steps = cfg.env_steps.get(env, cfg.total_steps)
    n_evals = (steps - cfg.learning_starts) // cfg.eval_every
    per_chunk = cfg.evals_per_chunk if n_evals % cfg.evals_per_chunk == 0 else 1
    ecfg = ExperimentConfig(algo=algo, env=env, variants=variants, seeds=cfg.seeds, total_steps=steps,
                            learning_starts=cfg.learning_starts, eval_every=cfg.eval_every,
                            eval_episodes=cfg.eval_episodes, evals_per_chunk=per_chunk, agent=agent,
                            lookahead=cfg.lookahead,
                            max_episode_steps=cfg.episode_steps.get(env, cfg.max_episode_steps)).validate()
    ecfg.train_config().validate()
    return ecfg


def smoke_config(cfg: BenchConfig) -> BenchConfig:
    """The same plan, networks and variants, but 1 seed, a few hundred steps and 50-step episodes: every
    program is traced, compiled and run (a check that the scale runs end to end; the numbers mean nothing)."""
    batch = max(agent_config(a, **(cfg.sac_agent if a == "sac" else cfg.agent)).batch_size for a in ALGOS)
    starts = 3 * batch  # the meta-critic samples 2 base batches (d_trn, d_val), + 1 per extra update
    return dataclasses.replace(cfg, seeds=1, learning_starts=starts, total_steps=starts + 100, eval_every=50,
                               evals_per_chunk=1, eval_episodes=1, env_steps={}, max_episode_steps=50,
                               episode_steps={},
                               tabular_episodes=2, smoke=True)
