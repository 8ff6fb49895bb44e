"""The command line `python -m metarl.train`: options, --set overrides and sweeps, and main()."""
from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import typing
from typing import Annotated, Literal

import numpy as np

import tyro

from metarl import cli, envs
from metarl.config_cli import OnlyFlag, PositiveInt
from metarl.driver import RunError
from metarl.driver.errors import ON_NONFINITE
from metarl.agents import SAC_HP, TD3_HP, check_algo
from metarl.train.config import TrainConfig, _agent_field_types, _type_name


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
PROG = "python -m metarl.train"
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _parse_value(s: str):
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def _parse_field(algo: str, name: str, value: str, tp):
    """One agent-config override from text, by the field's declared type."""
    def bad():
        return ValueError(f"--set {name}={value}: invalid value for {algo}'s {name}; it takes {_type_name(tp)}")

    if tp is bool:
        if value.lower() not in _BOOL:
            raise bad()
        return _BOOL[value.lower()]
    if tp is int:
        try:
            v = int(value)
        except ValueError:
            raise bad() from None
        if v < 1:
            raise bad()
        return v
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        try:
            v = tuple(int(x) for x in value.split(","))
        except ValueError:
            raise bad() from None
        if not v or min(v) < 1:
            raise bad()
        return v
    return _parse_value(value)


# Ranges of the numeric hyperparameters the CLI checks (name suffix or name -> (low, high, inclusive?)).
_HP_RANGES = {"gamma": (0.0, 1.0, "[0, 1]"), "tau": (0.0, 1.0, "(0, 1]")}


def _check_hp_range(name: str, v: float, text: str):
    if not math.isfinite(v):
        raise ValueError(f"--set {name}={text}: {name} must be a finite number")
    if name.endswith("_lr") or name == "init_alpha":
        if v <= 0:
            raise ValueError(f"--set {name}={text}: {name} must be > 0")
    elif name == "gamma":
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"--set {name}={text}: gamma must be in [0, 1]")
    elif name == "tau":
        if not 0.0 < v <= 1.0:
            raise ValueError(f"--set {name}={text}: tau must be in (0, 1]")
    elif v < 0:
        raise ValueError(f"--set {name}={text}: {name} must be >= 0")


def parse_overrides(items: list[str], algo: str) -> tuple[dict, dict]:
    """``name=value`` or ``name=v1,v2`` -> (numeric hp dict, static agent-config dict).

    A hyperparameter given as a comma list is a vmapped sweep (``critic_lr=1e-3,3e-4``); an agent
    config field is type-checked against its dataclass (``actor_hidden=64,64``, ``batch_size=256``).
    Two overrides are two ``--set`` (or one ``--set "a=1;b=2"``); ``a=1,b=2`` is refused as ambiguous.
    A name given again replaces its earlier value."""
    hp_names = set(make_agent_defaults(algo))
    types = _agent_field_types(algo)
    hp, agent = {}, {}
    for item in items:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ValueError(f"--set {item!r} must look like name=value (e.g. --set critic_lr=3e-4)")
        if "=" in value:
            raise ValueError(f"--set {item!r} looks like two overrides; use --set twice (--set "
                             f"{item.split(',')[0]} --set {item.split(',', 1)[1]}) or --set \"a=1;b=2\"")
        hp.pop(name, None), agent.pop(name, None)  # given again: the last one counts (as for every option)
        if name in hp_names:
            vals = []
            for v in value.split(","):
                try:
                    x = float(v)
                except ValueError:
                    raise ValueError(f"--set {name}={value}: {v!r} is not a number; {name} takes a number "
                                     "(a comma list of numbers is a sweep)") from None
                _check_hp_range(name, x, v)
                vals.append(x)
            hp[name] = vals if len(vals) > 1 else vals[0]
        elif name in types:
            agent[name] = _parse_field(algo, name, value, types[name])
        else:
            raise ValueError(f"unknown override {name!r} for {algo}; hyperparameters: {', '.join(sorted(hp_names))}; "
                             f"config fields: {', '.join(sorted(types))}")
    return hp, agent


def make_agent_defaults(algo: str) -> dict:
    check_algo(algo)
    return SAC_HP if algo == "sac" else TD3_HP


def _check_env_name(name: str, backend: str):
    """The env id and Brax backend, checked by name (nothing is built)."""
    source, _, env_name = name.partition("/")
    if source not in envs.SOURCES or not env_name:
        raise ValueError(f"--env {name!r}: names are '<source>/<env>' with source one of {', '.join(envs.SOURCES)} "
                         "(e.g. gymnax/Pendulum-v1, brax/hopper); --list-envs lists all")
    valid = {"brax": envs.brax_names, "gymnax": envs.gymnax_names, "jumanji": lambda: list(envs.JUMANJI_NAMES)}[source]()
    if env_name not in valid:
        import difflib

        close = difflib.get_close_matches(env_name, valid, n=3)
        hint = f"did you mean {', '.join(source + '/' + c for c in close)}? " if close else ""
        raise ValueError(f"--env {name!r}: unknown {source} environment; {hint}valid: "
                         f"{', '.join(source + '/' + v for v in valid[:6])}, ... ({len(valid)} in all; "
                         "--list-envs lists them)")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Where the run goes, how it treats an earlier one, overrides and sweeps (--set), NaN/inf, TensorBoard."""

    run_dir: str | None = None  # the run directory (None: runs/<algo>-<env>)
    resume: bool = False  # continue the run directory's run (same settings only)
    overwrite: bool = False  # replace the run files of a non-empty --run-dir
    allow_version_change: bool = False  # with --resume: go on although package versions differ (in meta.json)
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """NAME=V[,V2]: a hyperparameter (a comma list is a vmapped sweep) or an agent config field (e.g.
    actor_hidden=64,64); repeat --set for several, or separate them with ';' (a name given again: the last
    value counts)"""
    on_nonfinite: Literal[ON_NONFINITE] = "stop"  # a run going NaN/inf: stop everything, or mark it failed and go on
    checkpoint_every: PositiveInt = 1  # chunks between checkpoints
    tensorboard: str | None = None  # also write TensorBoard event files there (watch: tensorboard --logdir DIR)
    progress: bool = True  # a progress bar on stderr
    list_envs: OnlyFlag[bool] = False  # print every valid --env and exit


DESCRIPTION = ("Train an off-policy agent on any env. Several overrides: --set actor_lr=3e-4 --set critic_lr=3e-4, "
               "or --set \"actor_lr=3e-4;critic_lr=3e-4\". A comma list is a sweep of ONE name (--set "
               "critic_lr=1e-3,3e-4: every value x every seed, one vmapped program) or a tuple field (--set "
               "actor_hidden=64,64). Exit status: 0 done, 1 failed (non-finite values, bad checkpoint), 2 bad input "
               "or refused directory/resume, 130 interrupted.")


def main(argv=None):
    from metarl import config_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list-envs" in argv:  # before the other checks: a listing needs no valid run
        print("\n".join(envs.registered()))
        return
    parsed = config_cli.parse(PROG, DESCRIPTION, {"default": TrainConfig()}, argv, TrainOptions(), sweep_help=False)
    c, a = parsed.exp, parsed.options
    items = [x for s in a.set for x in s.split(";") if x.strip()]
    run_dir = a.run_dir or os.path.join("runs", f"{c.algo}-{c.env.replace('/', '_')}")
    try:
        _check_env_name(c.env, c.backend)
        hp, agent = parse_overrides(items, c.algo)
        cfg = dataclasses.replace(c, agent=agent, hp=hp)
        cfg.validate()
        from metarl.train.runner import Runner

        runner = Runner(cfg, run_dir, progress=a.progress, checkpoint_every=a.checkpoint_every,
                        tensorboard=a.tensorboard,
                        overwrite=a.overwrite, on_nonfinite=a.on_nonfinite,
                        allow_version_change=a.allow_version_change)
        runner.check_run_dir(a.resume)
        if a.tensorboard:  # the last check: creates the folder or fails in one line (nothing else written)
            cli.make_out_dir(PROG, a.tensorboard)
    except (ValueError, TypeError, RunError) as e:
        cli.fail(PROG, e, getattr(e, "exit_code", 2))
    resume_argv = [x for x in argv if x != "--overwrite"] + ([] if a.resume else ["--resume"])
    runner.resume_hint = f"{PROG} {shlex.join(resume_argv)}"
    from metarl import enable_compilation_cache

    enable_compilation_cache()
    try:
        _, metrics = runner.run(resume=a.resume)
    except RunError as e:
        cli.fail(PROG, e, e.exit_code)
    except KeyboardInterrupt:  # a second SIGINT while compiling: nothing was written yet
        cli.fail(PROG, "interrupted before the run started; nothing was written", 130)
    final = metrics["eval_return"][:, -1] if metrics else np.zeros(0)
    failed = f"; {len(runner.failures)} of {runner.num_runs} run(s) failed (non-finite)" if runner.failures else ""
    print(f"final eval return per run: {[None if not np.isfinite(x) else round(float(x), 1) for x in final]}{failed}")
    print(f"compile time: {runner.compile_time}; results in {run_dir}")
