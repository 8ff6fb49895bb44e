"""What the model-based-critic experiments (toy, point mass, reacher, 7-DoF arm) share around the
method: their scales, output folder, command line, run metadata and atomic file and figure writers."""
from __future__ import annotations

import io
import os
import platform

from metarl.driver import write_text

SCALES = ("quick", "paper")
OUT_DIR = os.path.join("results", "model_based_critic")


def check_scale(scale: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else a ValueError naming them."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
    return scale


def parse_cli(argv, description: str) -> tuple[str, str]:
    """(scale, out) from the command line shared by the model-based-critic experiments; a bad scale is
    an error naming the valid ones."""
    from metarl.cli import ArgumentParser, add_scale_argument, make_out_dir

    p = ArgumentParser(description=description)
    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=OUT_DIR, help="result directory")
    a = p.parse_args(argv)
    scale, out = check_scale(a.scale), make_out_dir(p, a.out)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated run skips the compilation
    return scale, out


def metadata(config, wall_time: float) -> dict:
    """The summary files' record: config, package versions, device and wall time."""
    import brax
    import flax
    import jax
    import numpy as np
    import optax

    return {"config": config, "versions": {"jax": jax.__version__, "flax": flax.__version__,
                                           "optax": optax.__version__, "brax": brax.__version__,
                                           "numpy": np.__version__, "python": platform.python_version()},
            "device": str(jax.devices()[0]), "backend": jax.default_backend(),
            "wall_time_s": round(wall_time, 2)}


def write_atomic(path: str, text: str | bytes):
    """Create the folder of ``path`` and write ``text`` whole (:func:`metarl.driver.write_text`)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text(path, text)


def save_fig(fig, path: str):
    """A matplotlib figure as PNG (dpi 110, tight box), written whole."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_atomic(path, buf.getvalue())
