"""What the outer-value experiments (Discounting Chain, Snake) share around the method: running a
population through the driver, the run record, summaries over seeds, tables, curves, and the CLI options.

The experiments in ``experiments/outer_value_{chain,snake}.py`` hold only their settings, the paper's
figures and their table layout; everything here is the same for both.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shlex
import sys
import time
from typing import Literal

import numpy as np

from metarl.config_cli import RunOptions
from metarl.driver import write_text

CURVE_METRICS = ("gamma", "lam", "return", "expected_return", "outer_advantage", "outer_advantage_step0", "meta_grad")


def to_jsonable(obj):
    """Dataclasses, tuples and numpy scalars as plain JSON types (NaN stays NaN, as result.json holds it)."""
    if dataclasses.is_dataclass(obj):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


# -- summaries over seeds ------------------------------------------------------------------------
def curves_csv(logs, updates_per_log: int) -> str:
    """Per agent and log step: mean and sd over seeds of every metric in :data:`CURVE_METRICS`."""
    buf = io.StringIO()
    w = csv.writer(buf)
    metrics = [m for m in CURVE_METRICS if any(m in d for d in logs.values())]
    w.writerow(["agent", "update", "env_steps"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd")])
    for agent, d in logs.items():
        for i in range(d["gamma"].shape[0]):
            row = [agent, (i + 1) * updates_per_log, int(np.mean(d["env_steps"][i]))]
            for m in metrics:
                row += [f"{np.mean(d[m][i]):.6g}", f"{np.std(d[m][i]):.6g}"] if m in d else ["", ""]
            w.writerow(row)
    return buf.getvalue()


def summarise(logs, tail_frac: float = 0.1) -> dict:
    """Final gamma (last log), return and outer advantage (mean over the last ``tail_frac`` of logs):
    mean and sd over seeds."""
    out = {}
    for agent, d in logs.items():
        n = d["gamma"].shape[0]
        k = max(1, int(round(n * tail_frac)))
        s = {"final_gamma": d["gamma"][-1]}
        if "lam" in d:
            s["final_lam"] = d["lam"][-1]
        for m in ("return", "expected_return", "outer_advantage", "outer_advantage_step0"):
            if m in d:
                s[m] = np.mean(d[m][-k:], axis=0)
        out[agent] = {m: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "per_seed": np.asarray(v).tolist()}
                      for m, v in s.items()}
        out[agent]["env_steps"] = float(np.mean(d["env_steps"][-1]))
    return out


def fmt(s: dict, m: str, digits: int = 3) -> str:
    """``IQM [95% CI]`` over seeds (metarl.stats, stratified bootstrap) of summary metric ``m`` ("-" when
    absent or not finite)."""
    from metarl import stats

    if m not in s or not np.all(np.isfinite(s[m]["per_seed"])):
        return "-"
    r = stats.summary_row(s[m]["per_seed"])
    return stats.interval_text(r["iqm"], r["ci"], f".{digits}f")


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_curves(logs, updates_per_log: int, path: str, title: str, return_key: str = "return"):
    """gamma (and lambda), return and step-0 outer advantage per agent: mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("gamma", "discount gamma"), (return_key, "return"), ("outer_advantage_step0", "outer-loss advantage (step 0)")]
    if any("lam" in d for d in logs.values()):
        panels.insert(1, ("lam", "lambda"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    colors = {agent: f"C{i}" for i, agent in enumerate(logs)}
    for ax, (m, label) in zip(axes, panels):
        for agent, d in logs.items():
            if m not in d or not np.all(np.isfinite(d[m])):
                continue
            x = (np.arange(d[m].shape[0]) + 1) * updates_per_log
            mu, sd = np.mean(d[m], axis=1), np.std(d[m], axis=1)
            ax.plot(x, mu, label=agent, color=colors[agent])
            ax.fill_between(x, mu - sd, mu + sd, alpha=0.2, color=colors[agent])
        ax.set_xlabel("meta-update")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_text(path, buf.getvalue())


# -- running and writing an experiment -----------------------------------------------------------
def run_population(name: str, exp, problem, mcfg_for, scale: str, out_dir: str | None, notes: str,
                   progress: bool = True, resume: bool = False, overwrite: bool = False,
                   resume_hint: str | None = None, tensorboard: str | None = None, on_nonfinite: str = "stop"):
    """Train the paper's five agents on ``problem`` with the population settings of ``exp`` (num_seeds,
    num_updates, updates_per_log, logs_per_chunk, seed) through the driver: run records and a checkpoint
    per chunk in ``out_dir``, resumable with ``resume``; ``on_nonfinite``: metarl.driver.Driver's (a seed that
    goes non-finite stops the run, or is marked failed while the others go on). Returns (result record, logs)."""
    import jax

    from metarl.meta import outer_value as ov

    t0 = time.time()
    _, logs = ov.train_population(problem, mcfg_for, ov.PAPER_AGENTS, exp.num_seeds, exp.num_updates,
                                  exp.updates_per_log, exp.logs_per_chunk, jax.random.PRNGKey(exp.seed),
                                  out_dir=out_dir, config={"experiment": name, **to_jsonable(exp)}, resume=resume,
                                  progress=progress, desc=f"{name.removeprefix('outer_value_')} ({scale})",
                                  overwrite=overwrite, resume_hint=resume_hint, tensorboard=tensorboard,
                                  on_nonfinite=on_nonfinite)
    from metarl.driver.records import result_header

    result = {"experiment": name, "scale": scale, **result_header(to_jsonable(exp), time.time() - t0),
              "summary": summarise(logs), "notes": notes}
    return result, logs


def write_outputs(out_dir: str, result: dict, logs, header: list, rows: list, intro: str, title: str,
                  return_key: str = "return"):
    """curves.csv, summary.csv (``header`` + ``rows``), summary.md (``intro`` and the table), result.json
    and curves.png (titled ``title``) into ``out_dir``."""
    upl = result["config"]["updates_per_log"]
    write_text(os.path.join(out_dir, "curves.csv"), curves_csv(logs, upl))
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + rows)
    write_text(os.path.join(out_dir, "summary.csv"), buf.getvalue())
    write_text(os.path.join(out_dir, "summary.md"), intro + "\n\n" + markdown_table(header, rows))
    write_text(os.path.join(out_dir, "result.json"), json.dumps(to_jsonable(result), indent=1))
    plot_curves(logs, upl, os.path.join(out_dir, "curves.png"), title, return_key=return_key)


@dataclasses.dataclass(frozen=True)
class OuterValueOptions(RunOptions):
    """Where the run goes, how it treats an earlier one, NaN/inf and TensorBoard."""

    on_nonfinite: Literal["stop", "continue"] = "stop"
    """a seed whose state goes NaN/inf: stop the run, or mark that seed failed (meta.json failed_runs) and go
    on with the others"""
    tensorboard: str | None = None
    """also write TensorBoard event files there (every logged metric, mean over seeds, per chunk)"""


def check_chunks(exp) -> None:
    """A number of updates that is not a whole number of chunks is refused (a ValueError, one line)."""
    chunk = exp.updates_per_log * exp.logs_per_chunk
    if exp.num_updates % chunk:
        raise ValueError(f"argument --updates: {exp.num_updates} is not a multiple of the chunk of {chunk} updates "
                         "(--updates-per-log x --logs-per-chunk)")


def run_cli(name: str, doc: str, scales: dict, run, argv=None):
    """The command line of an outer-value experiment, generated from its dataclass (metarl.config_cli):
    parse, create --out, run ``run(exp, out, label, progress, resume, overwrite, resume_hint, tensorboard,
    on_nonfinite)`` and print summary.md. A bad setting, a refused directory or resume, a bad checkpoint,
    NaN/inf or SIGINT is one line on stderr with the error's exit status."""
    from metarl import cli, config_cli, enable_compilation_cache
    from metarl.driver import RunError

    prog = f"python -m experiments.{name}"
    argv = list(sys.argv[1:] if argv is None else argv)
    a = config_cli.parse(prog, doc, scales, argv, OuterValueOptions(out=os.path.join("results", name)))
    o = a.options
    if o.tensorboard:  # before --out, so that a refused one leaves nothing written
        cli.make_out_dir(prog, o.tensorboard)
    cli.make_out_dir(prog, o.out)
    enable_compilation_cache()  # a resumed run skips the compilation
    hint = f"{prog} {shlex.join([x for x in argv if x != '--overwrite'] + ([] if o.resume else ['--resume']))}"
    try:
        result = run(a.exp, o.out, a.label, progress=o.progress, resume=o.resume, overwrite=o.overwrite,
                     resume_hint=hint, tensorboard=o.tensorboard, on_nonfinite=o.on_nonfinite)
    except RunError as e:
        cli.fail(prog, e, e.exit_code)
    except KeyboardInterrupt:
        cli.fail(prog, "interrupted before the run started; nothing to resume yet", 130)
    with open(os.path.join(o.out, "summary.md")) as f:
        print(f.read())
    return result


def agent_verdicts(result: dict, env: str) -> dict:
    """{agent: "claim: verdict; ..."} from :func:`claim_rows`' claims (the final gamma's bound; the outer
    critic's agent earning more than the same agent without it), for the table's verdict column."""
    out = {}
    for c in claim_rows(result, env)["claims"]:
        v = f"{c['test']}: {c.get('claim_verdict', c['verdict'])}"
        out[c["agent"]] = f"{out[c['agent']]}; {v}" if c["agent"] in out else v
    return out


# The paper's claims, each decided from an interval over seeds (metarl.stats): thresholds on the final
# gamma (the meta-learned discount goes to its lower bound with the inner critic, to ~1 with the outer
# critic) and the comparison "the outer critic's agent earns more than the same agent without it".
GAMMA_LOW, GAMMA_HIGH = 0.91, 0.99
DESCRIPTIVE = "descriptive (no claim)"


def claim_rows(result: dict, env: str) -> dict:
    """summary.json content of one part: per agent and metric IQM [95% CI] over seeds, and the claims."""
    from metarl import stats

    summ = result["summary"]
    rows = []
    for agent, s in summ.items():
        for m in ("final_gamma", "return", "outer_advantage_step0", "outer_advantage"):
            if m in s and np.all(np.isfinite(s[m]["per_seed"])):
                rows.append({"label": f"{env} {agent} {m}", "agent": agent, "metric": m,
                             **stats.summary_row(s[m]["per_seed"]), "verdict": DESCRIPTIVE})
    claims = []
    for agent in summ:
        g = summ[agent].get("final_gamma", {}).get("per_seed")
        if g is None or agent == "A2C":
            continue
        outer = "outer" in agent
        t, side = (GAMMA_HIGH, "higher") if outer else (GAMMA_LOW, "lower")
        row = stats.summary_row(g)
        test = f"final gamma {'>=' if outer else '<='} {t}"
        claims.append({"label": f"{env}: {agent} {test}", "agent": agent, "test": test, "claim": (
            "the outer critic lets gamma rise to ~1" if outer else "with the inner critic gamma falls to its bound"),
            **row, "threshold": t, "verdict": stats.verdict(row, paper_value=t, claim=side)})
    for base in ("MG", "BMG"):
        if base in summ and f"{base}+outer critic" in summ:
            c = stats.compare(summ[f"{base}+outer critic"]["return"]["per_seed"], summ[base]["return"]["per_seed"])
            claims.append({"label": f"{env}: {base}+outer critic return > {base}", "agent": f"{base}+outer critic",
                           "test": f"return > {base}", "claim": (
                "the outer critic's agent earns more"), **c, "iqm": c["iqm_a"], "ci": c["ci_a"]})
    return {"rows": rows, "claims": claims}
