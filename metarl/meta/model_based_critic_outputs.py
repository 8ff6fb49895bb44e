"""What the model-based-critic experiments (toy, point mass, reacher, 7-DoF arm) share around the
method: their scales, output folder, command line, run metadata and atomic file and figure writers."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
from typing import ClassVar

from metarl.cli import progress_bar  # noqa: F401  (the experiments' bar)
from metarl.config_cli import NonNegInt, PositiveFloat, PositiveInt, RunOptions
from metarl.driver import write_text
from metarl.driver.records import SCALES, check_scale
from metarl.plots import save_fig  # noqa: F401  (the experiments' figure writer)

OUT_DIR = os.path.join("results", "model_based_critic")


METHODS = ("ours", "ddpg", "meta_critic")
TOY_UNITS = tuple(f"{regime}_{loop}" for regime in ("converged", "online")
                  for loop in ("q_fitting", "meta_critic", "model_based"))
UNITS = {"toy": TOY_UNITS, "pointmass": ("raw", "folded"), "reacher": METHODS, "arm7": METHODS}


def checkpoint_folders(part: str) -> tuple[str, ...]:
    """A part's checkpoints, relative to the output folder: the reacher's and the arm's meta-training of each
    method (after every chunk), the toy's six loops and the point mass's two critic inputs (each once done)."""
    return tuple(f"checkpoints/{part}_{u}" for u in UNITS[part])


def checkpoint_files(part: str) -> tuple[str, ...]:
    """:func:`checkpoint_folders` with the ``.partial`` / ``.old`` folders a save in progress may leave."""
    from metarl.driver.checkpoints import checkpoint_names

    return tuple(name for f in checkpoint_folders(part) for name in checkpoint_names(f))


def part_files(part: str) -> tuple[str, ...]:
    """What a part's run writes into the shared output folder and a new run must not silently replace: its
    summary, its run record (<part>_config.json, <part>_meta.json: metarl.driver.RunRecord) and its checkpoints."""
    from metarl.driver.records import metrics_files

    return (f"{part}_summary.json", f"{part}_config.json", f"{part}_meta.json") + metrics_files(f"{part}_") + \
        checkpoint_files(part)


def run_record(a: "Cli", part: str, exp):
    """The part's run record in the shared folder: <part>_config.json (the experiment dataclass) and
    <part>_meta.json (status, versions, device, compile time apart; metarl.driver.RunRecord)."""
    from metarl.driver import RunRecord

    return RunRecord(a.out, dataclasses.asdict(exp), resume=a.resume, prefix=f"{part}_")


def run_key(seed: int, stream: int):
    """The key of one random stream (0-15: a method's training seeds, the test initialisations, ...) of a run
    with ``seed``: PRNGKey(16 seed + stream). Seed 0 gives PRNGKey(stream), the keys of the runs before --seed
    existed; two seeds never share a stream."""
    import jax

    if not 0 <= stream < 16:
        raise ValueError(f"stream {stream} is not in 0..15")
    return jax.random.PRNGKey(16 * seed + stream)


@dataclasses.dataclass(frozen=True)
class ArmExperiment:
    """What the reacher's and the 7-DoF arm's experiments share: the seeds, the meta-training budget of the
    three methods (ours, DDPG, Meta Critic), the inner loop and the meta-test's policy initialisations. A
    subclass sets its own defaults (the quick scale) and ``PAPER``, the paper scale's values."""

    seeds: PositiveInt = 2              # independent runs of every method, vmapped
    seed: NonNegInt = 0                 # random stream k: PRNGKey(16 seed + k) (run_key)
    iterations: PositiveInt = 300       # ours: meta-iterations (Algorithm 2)
    chunk: PositiveInt = 50             # meta-iterations per compiled chunk (and checkpoint)
    horizon: PositiveInt = 40
    inner_lr: PositiveFloat = 1e-3
    inner_steps: PositiveInt = 3
    critic_lr: PositiveFloat = 1e-3
    n_policy_inits: PositiveInt = 2
    ddpg_iterations: PositiveInt = 300  # the DDPG baseline's meta-training iterations
    ddpg_test_steps: PositiveInt = 20
    mc_iterations: PositiveInt = 300    # the Meta Critic baseline's meta-training iterations
    test_inits: PositiveInt = 2         # policy initialisations per meta-test task

    PAPER: ClassVar[dict] = {}

    @classmethod
    def _at(cls, scale: str):
        """The experiment at ``scale`` (the command line's defaults at that --scale)."""
        check_scale(scale)
        return cls() if scale == "quick" else cls(**cls.PAPER)

    def progress_units(self) -> int:
        """Progress-bar units of a run: the meta-iterations of the three methods, then 3 for the meta-test."""
        return (self.iterations + self.ddpg_iterations + self.mc_iterations) // self.chunk * self.chunk + 3


@dataclasses.dataclass(frozen=True)
class MBCOptions(RunOptions):
    """Where the run goes (the four parts share one folder, each writing its own files) and how it treats an
    earlier run of the part."""

    out: str = OUT_DIR
    """result directory (shared by the four parts; each writes its own files)"""


@dataclasses.dataclass(frozen=True)
class SeedlessOptions(MBCOptions):
    """MBCOptions, and --seed/--seeds refused unless at their defaults (the toy has no random numbers)."""

    seed: NonNegInt = 0
    """the toy has no random numbers: only the default is accepted"""
    seeds: PositiveInt | None = None
    """the toy has no random numbers: leave it out"""

    def validate(self):
        if self.seed != 0 or self.seeds is not None:
            raise ValueError(f"--seed {self.seed}" + (f" --seeds {self.seeds}" if self.seeds is not None else "")
                             + ": the toy has no random numbers (a deterministic sweep); leave --seed and --seeds out")


@dataclasses.dataclass(frozen=True)
class Cli:
    """The parsed command line of a model-based-critic experiment."""

    scale: str
    out: str
    resume: bool
    progress: bool
    exp: object  # the part's experiment dataclass: the scale's values with the command line's overrides
    label: str  # the scale, plus "+field=value" per override


def parse_cli(argv, description: str, part: str, exp_type, seeded: bool = True) -> Cli:
    """The command line shared by the model-based-critic experiments, generated from the part's dataclass
    ``exp_type`` (metarl.config_cli: every field an option, --scale picking the defaults from
    ``exp_type._at(scale)``) plus --out, --resume, --overwrite, --no-progress. Every bad input (a scale, a
    value, an unusable --out, an earlier run of ``part`` in --out without --resume or --overwrite, --resume
    with nothing to resume) is one line on stderr before anything is compiled. ``seeded`` False (the toy: no
    random numbers): --seed and --seeds are refused unless at their defaults, in one line saying why."""
    from metarl import config_cli

    prog = f"python -m experiments.model_based_critic_{part}"
    a = config_cli.parse(prog, description, {s: exp_type._at(s) for s in SCALES}, argv,
                         MBCOptions() if seeded else SeedlessOptions())
    o = a.options
    from metarl.cli import fail
    from metarl.driver import RunError, prepare_out_dir

    try:
        prepare_out_dir(o.out, o.resume, o.overwrite, part_files(part), resume_from=checkpoint_files(part))
    except (RunError, OSError) as e:
        fail(prog, f"{e} (see --help)")
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated run skips the compilation
    return Cli(a.scale, o.out, o.resume, o.progress, a.exp, a.label)



def identity(part: str, unit: str, config: dict) -> dict:
    """What makes two runs of a part's unit the same run: part, unit, config and package versions."""
    from metarl.driver import package_versions

    return {"part": part, "method": unit, "config": config, "versions": package_versions()}


def checkpoints(out_dir: str, part: str, config: dict, resume: bool) -> dict:
    """{method: (path, identity, resume)} for the drivers' ``checkpoint`` argument: one file per method
    under ``out_dir/checkpoints``; a run's identity is its part, method, config and package versions."""
    return {m: (os.path.join(out_dir, "checkpoints", f"{part}_{m}"), identity(part, m, config), resume)
            for m in METHODS}


def train_and_meta_test(exp: "ArmExperiment", part: str, task, base, goals, cfgs, test_goals, test_dyn,
                        out_dir: str, resume: bool, pbar=None) -> dict:
    """The reacher's and the arm's run: meta-train ours (Algorithm 2), the DDPG-style baseline and the Meta
    Critic on ``goals`` (``exp.seeds`` vmapped seeds each; random streams 0, 1, 3 of ``exp.seed``; each
    checkpointed after every chunk under ``out_dir``/checkpoints, ``resume`` continues them), then meta-test
    all three on the pairs (``test_goals``, ``test_dyn``) from stream 2. ``cfgs`` = (ours, ddpg, meta critic)
    configs. Returns {"curves", "per_iter", "errors"} (each a dict over :data:`METHODS`) and "t_compile"
    (ours' compile + first chunk)."""
    import jax
    import numpy as np

    from metarl.meta import model_based_critic as mbc

    ours_cfg, ddpg_cfg, mc_cfg = cfgs
    ck = checkpoints(out_dir, part, dataclasses.asdict(exp), resume)
    keys = lambda stream: jax.random.split(run_key(exp.seed, stream), exp.seeds)
    states, curve, t_compile, per_iter = mbc.train_ours(ours_cfg, task, base, goals, keys(0), exp.chunk, pbar,
                                                        checkpoint=ck["ours"])
    dstates, dcurve, d_per_iter = mbc.train_ddpg(ddpg_cfg, task, base, goals, keys(1), exp.ddpg_iterations,
                                                 exp.chunk, pbar, checkpoint=ck["ddpg"])
    mstates, mcurve, m_per_iter = mbc.train_meta_critic(mc_cfg, task, base, goals, keys(3), exp.mc_iterations,
                                                        exp.chunk, pbar, checkpoint=ck["meta_critic"])
    ours_learn = lambda phi, k, g, d: mbc.learn_policy(ours_cfg, task, phi, k, g, d)
    err_ours = np.asarray(mbc.evaluate_critics(ours_learn, states.phi, test_goals, test_dyn, run_key(exp.seed, 2),
                                               exp.test_inits))
    if pbar is not None:
        pbar.update(1)
    err_ddpg, err_mc = map(np.asarray, mbc.evaluate_baselines(mc_cfg, task, dstates.q, mstates, test_goals, test_dyn,
                                                              run_key(exp.seed, 2), exp.test_inits))
    if pbar is not None:
        pbar.update(2)
    return dict(curves=dict(zip(METHODS, (curve, dcurve, mcurve))),
                per_iter=dict(zip(METHODS, (per_iter, d_per_iter, m_per_iter))),
                errors=dict(zip(METHODS, (err_ours, err_ddpg, err_mc))), t_compile=t_compile)


def training_summary(chunk: int, r: dict) -> dict:
    """The summary entries of :func:`train_and_meta_test`'s meta-training: each method's final training error
    (mean over seeds of the last chunk, and per seed with its IQM [95% CI]), wall time per meta-iteration,
    ours' compile + first chunk."""
    c = r["curves"]
    return {"final_train_error": {m: float(c[m][:, -chunk:].mean()) for m in METHODS},
            "final_train_error_seeds": final_train_error_seeds(chunk, **c),
            "meta_iteration_wall_s": dict(r["per_iter"]), "ours_compile_plus_first_chunk_s": r["t_compile"]}


class UnitCheckpoints:
    """Checkpoints of a part whose work is a few independent units (the toy's six loops, the point mass's two
    critic inputs): a unit's results are written whole to the folder ``out_dir/checkpoints/<part>_<unit>``
    (metarl.driver.save_checkpoint: orbax arrays, every file and array hashed) once computed, and a resumed run
    loads the units done instead of computing them again; a unit written with another identity (config, seed,
    package versions) is refused in one line (ConfigMismatch), a corrupted one too (CheckpointError)."""

    def __init__(self, out_dir: str, part: str, config: dict, resume: bool):
        from metarl.driver import json_norm

        self.out_dir, self.part, self.resume = out_dir, part, resume
        self.config = json_norm(config)

    def path(self, unit: str) -> str:
        return os.path.join(self.out_dir, "checkpoints", f"{self.part}_{unit}")

    def load(self, unit: str, like=None):
        """(tree, meta, arrays) of a unit done, or None (not resuming, or not done yet)."""
        from metarl.driver import ConfigMismatch, identity_diff, json_norm
        from metarl.driver.checkpoints import checkpoint_progress, has_checkpoint, restore_checkpoint

        path = self.path(unit)
        if not (self.resume and has_checkpoint(path)):
            return None
        meta = checkpoint_progress(path)
        want = json_norm(identity(self.part, unit, self.config))
        if meta.get("identity") != want:
            raise ConfigMismatch(f"cannot resume from {path}: it was written with other settings: "
                                 f"{identity_diff(meta.get('identity', {}), want)}")
        tree, meta, arrays, _ = restore_checkpoint(path, {} if like is None else like, os.path.dirname(path))
        return tree, meta, arrays or {}

    def save(self, unit: str, tree=None, meta: dict | None = None, arrays: dict | None = None):
        from metarl.driver import json_norm
        from metarl.driver.checkpoints import save_checkpoint

        save_checkpoint(self.path(unit), {} if tree is None else tree, 1,
                        dict(meta or {}, identity=json_norm(identity(self.part, unit, self.config))), arrays)


def metadata(config, wall_time: float) -> dict:
    """The summary files' record: config, versions, device, wall time (metarl.driver.records.result_header)."""
    from metarl.driver.records import result_header

    return result_header(config, round(wall_time, 2))


def save_meta_training(out_dir: str, part: str, title: str, ours, ddpg, meta_critic):
    """The three methods' meta-training curves (training error, [seeds, iterations]): ``<part>_curves.npz``
    and ``<part>_metrics.csv`` / ``<part>_metrics.json`` (a row per method, seed and meta-iteration:
    metarl.driver.write_metrics) and Fig. 4 as
    ``fig4_<part>_meta_training.png`` (mean and sd over seeds, log scale)."""
    import matplotlib
    import numpy as np

    from metarl.driver import write_metrics

    buf = io.BytesIO()
    np.savez(buf, ours=ours, ddpg=ddpg, meta_critic=meta_critic)
    write_text(os.path.join(out_dir, f"{part}_curves.npz"), buf.getvalue())
    write_metrics(out_dir, [([{"method": m, "seed": s} for s in range(len(c))], {"train_error": c})
                            for m, c in zip(METHODS, (ours, ddpg, meta_critic))], point="meta_iteration",
                  prefix=f"{part}_")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c, name in ((ours, "L_critic (ours)"), (ddpg, "DDPG"), (meta_critic, "Meta Critic")):
        m, s = c.mean(0), c.std(0)
        x = np.arange(1, c.shape[1] + 1)
        ax.plot(x, m, label=name)
        ax.fill_between(x, np.maximum(m - s, 1e-4), m + s, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("final error on training goals")
    ax.legend()
    ax.set_title(f"Fig. 4 ({title}): meta-training")
    save_fig(fig, os.path.join(out_dir, f"fig4_{part}_meta_training.png"))
    plt.close(fig)


def meta_test_claims(sweeps: dict, err_ours, err_ddpg, err_mc, still) -> list[dict]:
    """The paper's claim for the reacher and the 7-DoF arm, "ours << DDPG and Meta Critic on new goals,
    masses and lengths", decided per sweep from intervals over seeds (metarl.stats).

    ``sweeps``: {name: indices of its (goal, dynamics) pairs}; ``err_*``: errors (pairs, seeds, inits)
    (the three methods' seeds are independent runs); ``still``: per pair, the error of an arm that does not
    move. A seed's score is its mean error over the sweep's pairs and policy initialisations. Rows: ours
    against DDPG and against the Meta Critic (P(ours > theirs) with its interval; the claim "lower" holds
    when the interval lies below 0.5), and ours against not moving (the interval of ours against that
    number). Each row has "iqm", "ci" (ours) and "verdict" (reproduces / contradicts / inconclusive)."""
    import numpy as np

    from metarl import stats

    rows = []
    for name, sel in sweeps.items():
        per_seed = {k: np.asarray(e)[sel].mean(axis=(0, 2)) for k, e in
                    (("ours", err_ours), ("ddpg", err_ddpg), ("meta_critic", err_mc)) if e is not None}
        for other in ("ddpg", "meta_critic"):
            if other not in per_seed:
                continue
            c = stats.compare(per_seed["ours"], per_seed[other], claim="lower")
            rows.append({"sweep": name, "label": f"{name}: ours < {other}", "reference": other,
                         "iqm": c["iqm_a"], "ci": c["ci_a"], "seeds": c["n_a"],
                         "reference_iqm": c["iqm_b"], "reference_ci": c["ci_b"],
                         "p_ours_higher": c["p_improvement"], "p_ours_higher_ci": c["p_improvement_ci"],
                         "verdict": c["claim_verdict"], "per_seed": per_seed["ours"].tolist(),
                         "reference_per_seed": per_seed[other].tolist()})
        r = stats.summary_row(per_seed["ours"])
        ref = float(np.mean(np.asarray(still)[sel]))
        rows.append({"sweep": name, "label": f"{name}: ours < no movement", "reference": "no_movement",
                     "iqm": r["iqm"], "ci": r["ci"], "seeds": r["n"], "reference_value": ref,
                     "verdict": stats.verdict(r["ci"], paper_value=ref, claim="lower"),
                     "per_seed": per_seed["ours"].tolist()})
    return rows


def aggregate_scores(claims_by_part: dict) -> dict:
    """{method: [seeds, tasks]} for metarl.stats.plot_aggregate from the claim rows of the reacher and arm
    parts (a task = one part's sweep): score = 1 - error / error of not moving (1 = on the goal, 0 = no better
    than not moving, < 0 = worse). Parts whose seed counts differ from the first are left out."""
    import numpy as np

    cols: dict = {}
    seeds = None
    for part, rows in claims_by_part.items():
        still = {r["sweep"]: r["reference_value"] for r in rows if r["reference"] == "no_movement"}
        for r in rows:
            if r["reference"] == "no_movement" or "per_seed" not in r:  # (a summary written before per_seed)
                continue
            n = len(r["per_seed"])
            seeds = seeds or n
            if n != seeds or len(r["reference_per_seed"]) != seeds:
                continue
            norm = lambda e: (1.0 - np.asarray(e) / still[r["sweep"]]).tolist()  # noqa: E731
            cols.setdefault("L_critic (ours)", {})[(part, r["sweep"])] = norm(r["per_seed"])
            name = {"ddpg": "DDPG", "meta_critic": "Meta Critic"}[r["reference"]]
            cols.setdefault(name, {})[(part, r["sweep"])] = norm(r["reference_per_seed"])
    tasks = sorted(cols.get("L_critic (ours)", {}))
    return {m: np.asarray([v[t] for t in tasks]).T for m, v in cols.items() if all(t in v for t in tasks)}


def claims_markdown(rows: list[dict], title: str) -> str:
    """The claim rows as a markdown table: ours and the reference as IQM [95% CI] over seeds, verdict."""
    if not rows:
        return ""
    out = [f"**{title}**: the paper's claim 'ours << DDPG and Meta Critic', per sweep; a seed's score is its mean "
           "final error over the sweep; IQM [95% stratified-bootstrap CI] over seeds; verdict from the interval of "
           "P(ours > reference) (against DDPG / Meta Critic) or of ours (against not moving). With few seeds (the "
           "quick scale has 2) a decisive verdict only says that every pair of seeds lies on one side: the bootstrap "
           "cannot show more spread than the seeds have", "",
           "| sweep | reference | seeds | ours | reference | P(ours > reference) [95% CI] | verdict |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = (f"{r['reference_value']:.3g}" if "reference_value" in r
               else f"{r['reference_iqm']:.3g} [{r['reference_ci'][0]:.3g}, {r['reference_ci'][1]:.3g}]")
        p = (f"{r['p_ours_higher']:.2f} [{r['p_ours_higher_ci'][0]:.2f}, {r['p_ours_higher_ci'][1]:.2f}]"
             if "p_ours_higher" in r else "-")
        out.append(f"| {r['sweep']} | {r['reference']} | {r['seeds']} | {r['iqm']:.3g} [{r['ci'][0]:.3g}, "
                   f"{r['ci'][1]:.3g}] | {ref} | {p} | {r['verdict']} |")
    return "\n".join(out) + "\n"


def sweep_table(rows: list[dict]) -> str:
    """The meta-test per sweep from meta_test_claims' rows: ours, DDPG and the Meta Critic as IQM [95% CI] over
    seeds of a seed's mean final error over the sweep, the error of not moving, and the verdict of each part
    of the claim 'ours << DDPG and Meta Critic' (lower is better)."""
    if not rows:
        return ""
    from metarl.stats import interval_text

    ci = lambda i, c: interval_text(i, c, ".3g")  # noqa: E731
    sweeps: dict = {}
    for r in rows:
        s = sweeps.setdefault(r["sweep"], {"seeds": r["seeds"], "ours": ci(r["iqm"], r["ci"])})
        if r["reference"] == "no_movement":
            s["no_movement"], s["v_no_movement"] = f"{r['reference_value']:.3g}", r["verdict"]
        else:
            s[r["reference"]], s[f"v_{r['reference']}"] = ci(r["reference_iqm"], r["reference_ci"]), r["verdict"]
    out = ["final error (lower is better): IQM [95% stratified-bootstrap CI] over seeds of a seed's mean over the "
           "sweep's goals / dynamics and policy initialisations; verdicts from the intervals (details below)", "",
           "| sweep | seeds | ours | DDPG | Meta Critic | no movement (reference) | verdict: ours < DDPG | "
           "verdict: ours < Meta Critic | verdict: ours < no movement |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in sweeps.items():
        out.append(f"| {name} | {s['seeds']} | {s['ours']} | {s.get('ddpg', '-')} | {s.get('meta_critic', '-')} | "
                   f"{s.get('no_movement', '-')} | {s.get('v_ddpg', '-')} | {s.get('v_meta_critic', '-')} | "
                   f"{s.get('v_no_movement', '-')} |")
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def one_line_errors(prog: str, argv):
    """A run's RunError (a refused resume, a corrupted checkpoint) as one line on stderr, exit 1 (2 for a
    refused resume); Ctrl-C as one line with the command that continues the run."""
    from metarl.driver import RunError

    try:
        yield
    except RunError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(getattr(e, "exit_code", 1)) from None
    except KeyboardInterrupt:
        args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--resume"]
        print(f"{prog}: interrupted; the meta-training is checkpointed after every chunk: continue with: "
              f"python -m {prog} {' '.join(args + ['--resume'])}", file=sys.stderr)
        raise SystemExit(130) from None


def final_train_error_seeds(chunk: int, **curves) -> dict:
    """{method: IQM [95% CI] over seeds (metarl.stats.summary_row) of a seed's mean training error over
    the last ``chunk`` meta-iterations, verdict "descriptive (no claim)"}, from curves [seeds, iterations]."""
    import numpy as np

    from metarl import stats

    return {m: dict(stats.summary_row(np.asarray(c)[:, -chunk:].mean(axis=1)), verdict="descriptive (no claim)")
            for m, c in curves.items()}
