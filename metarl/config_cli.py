"""Command lines generated from an experiment's dataclass (tyro): every field is an option.

An experiment declares its settings once, as a frozen dataclass whose fields may nest the library's
configs (e.g. ``ChainExperiment.env: ChainConfig``), and a table of named scales (instances of it).
:func:`parse` turns that into the command line: ``--scale`` picks the instance whose values are the
defaults, every field (nested ones too, flat: ``--lam``, not ``--env.lam``) overrides it with the same
``--kebab-case`` syntax, booleans come as ``--flag`` / ``--no-flag``, and the run options every
experiment shares (``--out``, ``--resume``, ``--overwrite``, ``--no-progress``, ...) come from one
dataclass. Range checks live in the field's type (:data:`PositiveInt`, :data:`UnitFloat`, ...), so a
bad value is refused while parsing; every refusal is one line on stderr (``prog: error: argument
--seeds: 0 is not allowed; give a whole number >= 1 (see --help)``), exit status 2, before anything is
compiled or written. ``--help`` shows the defaults of the scale given before it (``--scale paper
--help``), without importing jax when the experiment's module does not.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import math
import re
import sys
import typing
from typing import Annotated, Any, Literal, Mapping, Sequence

import tyro
from tyro.constructors import PrimitiveConstructorSpec

from metarl import cli

SWEEP_HELP = ("To sweep a setting, run once per value, each into its own --out (e.g. for lr in 0.1 0.03; do ... "
              "--meta-lr $lr --out results/x_lr$lr; done); seeds are vmapped inside one run (--seeds).")


def _checked(kind: str, cast, ok, what: str):
    """A field type parsed by ``cast`` and refused unless ``ok(value)``, with ``what`` in the message."""

    def from_text(args: list[str]):
        text = args[0]
        try:
            v = cast(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {kind}; {what}") from None
        if not ok(v):
            raise ValueError(f"{text} is not allowed; {what}")
        return v

    base = int if cast is int else float
    return Annotated[base, PrimitiveConstructorSpec(
        nargs=1, metavar=kind.split()[-1].upper(), instance_from_str=from_text,
        is_instance=lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and ok(x),
        str_from_instance=lambda x: [str(x)])]


PositiveInt = _checked("an integer", int, lambda v: v >= 1, "give a whole number >= 1")
NonNegInt = _checked("an integer", int, lambda v: v >= 0, "give a whole number >= 0")
PositiveFloat = _checked("a number", float, lambda v: v > 0 and math.isfinite(v), "give a finite number > 0")
NonNegFloat = _checked("a number", float, lambda v: v >= 0 and math.isfinite(v), "give a finite number >= 0")
UnitFloat = _checked("a number", float, lambda v: 0.0 <= v <= 1.0, "give a number in [0, 1]")
OpenUnitFloat = _checked("a number", float, lambda v: 0.0 < v < 1.0, "give a number strictly between 0 and 1")


NotAnOption = tyro.conf.Suppress  # a field the command line does not offer (set from other options)
Positional = tyro.conf.Positional  # a field given by position (e.g. a mode: ``meta-train``)
OnlyFlag = tyro.conf.FlagCreatePairsOff  # a boolean that is only ``--flag`` (no ``--no-flag``), e.g. ``--no-t``
MISSING = tyro.MISSING  # a field of a scale's instance that the command line must give


def named(name: str):
    """The option's name instead of the field's: ``num_seeds: Annotated[PositiveInt, named("seeds")]``."""
    return tyro.conf.arg(name=name)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where the run goes and how it treats an earlier one."""

    out: str = "results/run"
    """output and run directory"""
    resume: bool = False
    """continue the run in --out (the same settings only; another is refused in one line)"""
    overwrite: bool = False
    """replace an earlier run's files in --out"""
    progress: bool = True
    """a progress bar on stderr"""


def _scale_of(argv: Sequence[str], names: Sequence[str], default: str, prog: str) -> str:
    """The --scale in ``argv`` (the last one counts), checked against ``names`` in one line."""
    scale = default
    for i, a in enumerate(argv):
        if a == "--scale" and i + 1 < len(argv):
            scale = argv[i + 1]
        elif a.startswith("--scale="):
            scale = a.partition("=")[2]
    from metarl.driver.records import check_scale

    try:
        return check_scale(scale, names)
    except ValueError as e:
        cli.fail(prog, f"argument --scale: {e} (see --help)")


_BOX = str.maketrans("", "", "│╭╮╰╯")


def tyro_error_line(text: str) -> str:
    """tyro's error panel reduced to one line: the panel's first section, with 'argument --x: ...' first.
    The panel is drawn with box characters on a terminal and with dashed rules elsewhere; both are read."""
    lines = [x for x in text.splitlines() if x.strip()][1:]  # the first is the title ("Value error", ...)
    sections, current = [], []
    for raw in lines:
        line = raw.translate(_BOX).strip()
        if line and set(line) <= set("─-═ "):
            sections.append(current)
            current = []
        elif line:
            current.append(line)
    sections.append(current)
    body = next((s for s in sections if s), [])
    msg = cli.one_line(" ".join(body) or text)
    m = re.match(r"Error parsing (--[\w.-]+): no type matching (.*?) could be instantiated from \[(.*?)\]\.", msg)
    if m:  # an optional or a union: say which values and, where one of our checks refused them, why
        try:
            values = " ".join(map(str, ast.literal_eval(f"[{m.group(3)}]")))
        except (ValueError, SyntaxError):
            values = m.group(3)
        why = re.search(r"(\S+ is not (?:allowed|an integer|a number); give .*?)(?= - <|$)", msg)
        return f"argument {m.group(1)}: {why.group(1) if why else f'{values!r} is not {m.group(2)}'}"
    m = re.match(r"Error parsing (--[\w.-]+): (.*)", msg)
    if m:
        return f"argument {m.group(1)}: {m.group(2)}"
    m = re.match(r"invalid choice '(.*)' for argument '(--[\w.-]+)'\. Expected one of \((.*)\)\.?$", msg)
    if m:
        valid = ", ".join(x.strip(" '\"") for x in m.group(3).split(",") if x.strip())
        return f"argument {m.group(2)}: invalid choice {m.group(1)!r}; valid: {valid}"
    return msg


def _lists_to_tuples(obj):
    """``obj`` with every list field (a sequence given on the command line) a tuple, nested dataclasses
    walked: configs stay hashable (jit's static arguments) and equal to the defaults they replace."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            w = tuple(_lists_to_tuples(x) for x in v) if isinstance(v, list) else _lists_to_tuples(v)
            if w is not v:
                changes[f.name] = w
        return dataclasses.replace(obj, **changes) if changes else obj
    return tuple(_lists_to_tuples(x) for x in obj) if isinstance(obj, list) else obj


@dataclasses.dataclass(frozen=True)
class Parsed:
    scale: str
    exp: Any  # the experiment's dataclass, the scale's with the overrides applied
    options: Any  # the run options' dataclass
    label: str  # the scale, plus "+field=value" for each override (how records name the run)


def overrides(base, exp, prefix: str = "") -> list[tuple[str, Any]]:
    """The (dotted field, value) pairs where ``exp`` differs from ``base`` (nested dataclasses walked)."""
    out = []
    for f in dataclasses.fields(exp):
        a, b = getattr(base, f.name), getattr(exp, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
            out += overrides(a, b, prefix + f.name + ".")
        elif a != b:
            out.append((prefix + f.name, b))
    return out


def parse(prog: str, description: str, scales: Mapping[str, Any], argv: Sequence[str] | None = None,
          options: Any = None, default_scale: str = "quick", sweep_help: bool = True) -> Parsed:
    """Parse ``argv`` into (scale, the experiment's dataclass, the run options) or exit with one line.

    ``scales`` maps each scale name to an instance of the experiment's dataclass; ``options`` is an
    instance of :class:`RunOptions` (or a subclass) holding the defaults of the shared options. A
    dataclass with a ``validate()`` method gets it called after parsing (a ValueError is one line).
    ``description``: a module's docstring; its first paragraph, rejoined into one line, heads the help."""
    description = " ".join(description.strip().split("\n\n")[0].split())
    argv = list(sys.argv[1:] if argv is None else argv)
    names = tuple(scales)
    options = RunOptions() if options is None else options
    scale = _scale_of(argv, names, default_scale, prog) if len(names) > 1 else names[0]
    exp_type = type(scales[scale])
    scale_field = Annotated[Literal[names], tyro.conf.arg(help="named scale; its values are the defaults below "
                                                              "(give --scale before --help to see another's)")]
    Cli = dataclasses.make_dataclass("Cli", [
        ("scale", scale_field if len(names) > 1 else NotAnOption[Literal[names]]),
        ("options", Annotated[type(options), tyro.conf.OmitArgPrefixes, tyro.conf.arg(name="run")]),
        ("exp", Annotated[exp_type, tyro.conf.OmitArgPrefixes, tyro.conf.arg(name="settings")]),
    ], frozen=True)
    got = _cli(Cli, Cli(scale, options, scales[scale]), argv, prog,
               f"{description} {SWEEP_HELP}" if sweep_help else description)
    _validate(prog, got.options, got.exp)
    if getattr(got.options, "resume", False) and getattr(got.options, "overwrite", False):
        cli.fail(prog, "--resume and --overwrite exclude each other")
    label = scale + "".join(f"+{k}={v}" for k, v in overrides(scales[scale], got.exp))
    return Parsed(scale, got.exp, got.options, label)


def _cli(cls, default, argv: Sequence[str], prog: str, description: str):
    """tyro's parse of ``argv`` into ``cls`` (defaults from ``default``), lists made tuples; a refusal is
    one line on stderr and exit status 2."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            got = tyro.cli(cls, args=list(argv), prog=prog, default=default, description=description)
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(err.getvalue())
            raise
        cli.fail(prog, f"{tyro_error_line(err.getvalue())} (see --help)")
    return _lists_to_tuples(got)


def _validate(prog: str, *objs):
    for obj in objs:
        if hasattr(obj, "validate"):
            try:
                obj.validate()
            except ValueError as e:
                cli.fail(prog, e)


def parse_command(prog: str, description: str, default: Any, argv: Sequence[str] | None = None):
    """A command that is not one experiment at a scale (a benchmark, the report): every field of the
    dataclass instance ``default`` is an option with its value as the default (``scale`` too, where the
    command has one), checked as :func:`parse` checks an experiment's; returns the parsed instance."""
    argv = list(sys.argv[1:] if argv is None else argv)
    scale_type = typing.get_type_hints(type(default), include_extras=False).get("scale")
    if scale_type is not None and typing.get_origin(scale_type) is Literal:  # the experiments' one-line refusal
        _scale_of(argv, typing.get_args(scale_type), default.scale, prog)
    got = _cli(type(default), default, argv, prog, description)
    _validate(prog, got)
    return got
