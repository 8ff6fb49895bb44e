"""metarl.config_cli: command lines generated from an experiment's dataclass (tyro).

Every field is an option (nested ones flat), --scale picks the defaults, the run options are shared, and
every refusal is one line naming the bad value (and the valid choices where there are some)."""
from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from metarl import config_cli as cc


@dataclass(frozen=True)
class Inner:
    lam: cc.UnitFloat = 0.0  # a nested field: --lam, not --inner.lam
    kind: Literal["a", "b"] = "a"
    sizes: tuple[cc.PositiveInt, ...] = (8, 8)


@dataclass(frozen=True)
class Exp:
    num_updates: Annotated[cc.PositiveInt, cc.named("updates")] = 100
    seed: cc.NonNegInt = 0
    clip: cc.PositiveFloat | None = None
    meta: bool = False
    inner: Inner = field(default_factory=Inner)

    def validate(self):
        if self.num_updates % 10:
            raise ValueError(f"argument --updates: {self.num_updates} is not a multiple of 10")


SCALES = {"quick": Exp(), "paper": Exp(num_updates=1000, inner=Inner(sizes=(64, 64)))}


def parse(argv):
    return cc.parse("prog", "A test experiment.", SCALES, argv, cc.RunOptions(out="o"))


def refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parse(argv)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("prog: error: "), lines
    return lines[0]


def test_every_field_is_an_option_and_the_scale_gives_the_defaults():
    p = parse([])
    assert (p.scale, p.exp, p.label) == ("quick", SCALES["quick"], "quick")
    assert p.options == cc.RunOptions(out="o")
    p = parse(["--scale", "paper"])
    assert p.exp == SCALES["paper"] and p.label == "paper"
    p = parse(["--updates", "30", "--seed", "2", "--clip", "0.5", "--meta", "--lam", "0.25", "--kind", "b",
               "--sizes", "4", "5", "6", "--out", "x", "--resume", "--no-progress"])
    assert p.exp == Exp(num_updates=30, seed=2, clip=0.5, meta=True, inner=Inner(lam=0.25, kind="b", sizes=(4, 5, 6)))
    assert p.options == cc.RunOptions(out="x", resume=True, progress=False)
    # the label names every override (how a run record tells an overridden run from its scale)
    assert p.label == "quick+num_updates=30+seed=2+clip=0.5+meta=True+inner.lam=0.25+inner.kind=b+inner.sizes=(4, 5, 6)"
    assert isinstance(p.exp.inner.sizes, tuple)  # sequences come back as tuples (hashable, equal to the defaults)
    assert parse(["--clip", "None"]).exp.clip is None


@pytest.mark.parametrize("argv,needle", [
    (["--scale", "huge"], "argument --scale: unknown scale 'huge'; valid scales: quick, paper"),
    (["--updates", "0"], "argument --updates: 0 is not allowed; give a whole number >= 1"),
    (["--updates", "x"], "argument --updates: 'x' is not an integer; give a whole number >= 1"),
    (["--seed", "-1"], "argument --seed: -1 is not allowed; give a whole number >= 0"),
    (["--lam", "1.5"], "argument --lam: 1.5 is not allowed; give a number in [0, 1]"),
    (["--lam", "nan"], "argument --lam: nan is not allowed; give a number in [0, 1]"),
    (["--clip", "-2"], "argument --clip: -2 is not allowed; give a finite number > 0"),
    (["--kind", "c"], "argument --kind: invalid choice 'c'; valid: a, b"),
    (["--sizes", "4", "x"], "argument --sizes: "),
    (["--updates", "15"], "argument --updates: 15 is not a multiple of 10"),  # the dataclass's validate()
    (["--bogus", "3"], "Unrecognized options: --bogus"),
    (["--seed"], "Missing value for argument '--seed'"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
])
def test_a_bad_value_is_one_line_naming_it(argv, needle, capsys):
    line = refusal(argv, capsys)
    assert needle in line, line


def test_help_shows_the_chosen_scales_defaults(capsys):
    for argv, default in (([], "(default: 100)"), (["--scale", "paper"], "(default: 1000)")):
        with pytest.raises(SystemExit) as e:
            parse(argv + ["--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and "--updates" in out and default in out and "--lam" in out
        assert "To sweep a setting, run once per value" in out


def test_help_is_headed_by_the_docstrings_first_paragraph(capsys):
    doc = """A test experiment whose first sentence
    runs over two lines.

        python -m prog --scale quick
    """
    with pytest.raises(SystemExit):
        cc.parse("prog", doc, SCALES, ["--help"], cc.RunOptions(out="o"))
    out = " ".join(capsys.readouterr().out.split())
    assert "A test experiment whose first sentence runs over two lines. To sweep" in out, out
    assert "python -m prog" not in out, out


def test_tyro_panels_become_one_line():
    boxed = ("╭─ Value error ───────╮\n│ Error parsing --x: bad 'q' │\n│ ──────── │\n│ Argument helptext: │\n"
             "╰─────╯\n")
    plain = "Invalid choice\n--------\ninvalid choice 'z' for argument '--c'. Expected one of ('a', 'b').\n-----\nFor full\n"
    assert cc.tyro_error_line(boxed) == "argument --x: bad 'q'"
    assert cc.tyro_error_line(plain) == "argument --c: invalid choice 'z'; valid: a, b"


def _leaves(tp):
    """The option names a dataclass type should offer: every field, nested dataclasses walked, except those
    marked NotAnOption; a field renamed with named() under its new name."""
    out = []
    hints = typing.get_type_hints(tp, include_extras=True)
    for f in dataclasses.fields(tp):
        h = hints[f.name]
        meta = typing.get_args(h)[1:] if typing.get_origin(h) is Annotated else ()
        if "Suppress" in repr(h):  # cc.NotAnOption: set from other options, deliberately not offered
            continue
        base = typing.get_args(h)[0] if typing.get_origin(h) is Annotated else h
        if dataclasses.is_dataclass(base):
            out += _leaves(base)
            continue
        names = [getattr(m, "name", None) for m in meta if getattr(m, "name", None)]
        out.append(names[0] if names else f.name.replace("_", "-"))
    return out


EXPERIMENT_TYPES = [("experiments.outer_value_chain", "ChainExperiment", []),
                    ("experiments.outer_value_snake", "SnakeExperiment", []),
                    ("experiments.model_based_critic_toy", "ToyExperiment", []),
                    ("experiments.model_based_critic_pointmass", "PointMassExperiment", []),
                    ("experiments.model_based_critic_reacher", "ReacherExperiment", []),
                    ("experiments.model_based_critic_arm7", "Arm7Experiment", []),
                    ("experiments.epg", "EPGExperiment", []), ("experiments.rl2", "RL2Experiment", []),
                    ("experiments.lirpg", "LIRPGExperiment", []),
                    ("experiments.meta_critic", "MetaCriticCommand", []),
                    ("experiments.metagenrl", "MetaGenRLCommand", ["meta-train"]),
                    ("metarl.train", "TrainConfig", [])]


@pytest.mark.parametrize("module,name,pre", EXPERIMENT_TYPES, ids=[m for m, _, _ in EXPERIMENT_TYPES])
def test_every_experiment_field_is_an_option(module, name, pre, capsys):
    """Each experiment's command line offers every field of its dataclass (nested library configs too),
    so a researcher overrides any setting without editing code."""
    mod = importlib.import_module(module)
    tp = getattr(mod, name, None) or getattr(importlib.import_module("metarl.train.config"), name)
    with pytest.raises(SystemExit) as e:
        mod.main(pre + ["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    offered = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))
    wanted = [x for x in _leaves(tp) if x != "mode"]
    missing = [x for x in wanted if x not in offered]
    assert not missing, f"{module}: fields without an option: {missing}"
