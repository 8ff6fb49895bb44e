"""Learning-curve figures (mean and std over seeds), written without a display."""
from __future__ import annotations


import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig, path: str):
    """A matplotlib figure as PNG (dpi 110, tight box), written whole (:func:`metarl.driver.write_text`)."""
    import io

    from metarl.driver.records import write_text

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_text(path, buf.getvalue())


def curves(ax, x, ys: dict, ylabel: str = "return"):
    """Plot {label: array [seeds, points]} as mean lines with a +-std band."""
    for label, y in ys.items():
        y = np.asarray(y, float)
        mean, std = y.mean(0), y.std(0)
        ax.plot(x, mean, label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def learning_curve(metrics: dict, config, combos: list, path: str):
    plt = _plt()
    ret = np.asarray(metrics["eval_return"])  # [runs, evals]
    steps = np.asarray(metrics["env_steps"])[0]
    n = config.seeds
    ys = {}
    for c, combo in enumerate(combos):
        label = ", ".join(f"{k}={v:g}" for k, v in combo.items() if isinstance(v, float)) or config.algo
        ys[label] = ret[c * n:(c + 1) * n]
    fig, ax = plt.subplots(figsize=(6, 4))
    curves(ax, steps, ys, "evaluation return")
    ax.set_xlabel("environment steps")
    ax.set_title(f"{config.algo} on {config.env} ({n} seeds)")
    save_fig(fig, path)
    plt.close(fig)
