"""What the MetaGenRL-protocol baselines (experiments/rl2.py, experiments/epg.py) share: the protocol
(environments, training set, test set; taken from experiments/metagenrl.py so the baselines run where
MetaGenRL runs), checkpoints for --resume, and the per-seed summary."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from experiments import metagenrl as mgx

SCALES = ("quick", "medium", "paper")


def protocol(scale: str, train: tuple | None = None, test: tuple | None = None) -> dict:
    """MetaGenRL's cross-environment protocol at ``scale``: {envs: {label: name}, train: labels,
    test: labels (seen first, then unseen), max_episode_steps}. A scale experiments/metagenrl.py does
    not define (yet) uses its quick environments."""
    key = scale if scale in mgx.ENVS else "quick"
    envs = dict(mgx.ENVS[key])
    train = tuple(train or mgx.TRAIN_SETS[key][0])
    test = tuple(test or (list(train) + [e for e in envs if e not in train]))
    for label in train + test:
        if label not in envs:
            raise ValueError(f"unknown environment label {label!r} at scale {scale}; valid: {', '.join(envs)}")
    max_steps = mgx.get_scale(key).test.max_episode_steps if key in mgx.SCALES else None
    return dict(envs=envs, train=train, test=test, max_episode_steps=max_steps, env_scale=key)


def progress_bar(total: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)


class Checkpoint:
    """A meta-training state (a pytree of arrays) and its history after each segment, in one
    ``out_dir/checkpoint.npz`` (metarl.npz_checkpoint: written whole, every array's sha256 checked on
    load). ``load`` refuses a checkpoint written under another configuration, or corrupted on disk, in
    one line."""

    def __init__(self, out_dir: str, config: dict):
        self.dir = out_dir
        self.config = json.loads(json.dumps(config, default=str))
        self.path = os.path.join(out_dir, "checkpoint.npz")

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def load(self, target):
        """(state, next segment index, history list) from the checkpoint; ``target`` gives the structure."""
        from metarl import npz_checkpoint

        state, meta, _ = npz_checkpoint.load(self.path, target)
        if meta["config"] != self.config:
            diff = sorted(k for k in set(meta["config"]) | set(self.config)
                          if meta["config"].get(k) != self.config.get(k))
            raise ValueError(f"--resume: the checkpoint in {self.dir} was written with another configuration "
                             f"(differs in {', '.join(diff)}); use another --out or the same settings")
        history = [{k: np.asarray(v) for k, v in h.items()} for h in meta["history"]]
        return state, meta["segments_done"], history

    def save(self, state, segments_done: int, history: list):
        from metarl import npz_checkpoint

        os.makedirs(self.dir, exist_ok=True)
        npz_checkpoint.save(self.path, state, dict(config=self.config, segments_done=segments_done, history=history))


def seed_summary(per_seed) -> dict:
    """IQM [95% stratified-bootstrap CI] over seeds plus the per-seed values (JSON-ready)."""
    from metarl import stats

    per_seed = np.asarray(per_seed, float).reshape(-1)
    return {**stats.summary_row(per_seed), "mean": float(per_seed.mean()), "std": float(per_seed.std()),
            "per_seed": [float(x) for x in per_seed]}


def asdict(cfg) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def write_record(out_dir: str | None, name: str, out: dict):
    """``<out_dir>/<name>.json``: a baseline run's results with package versions and device (atomic)."""
    if out_dir:
        from metarl.train import device_info, package_versions, write_json

        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, f"{name}.json"), dict(out, package_versions=package_versions(),
                                                               device=device_info()))


def parser(name: str, doc: str, seeds_help: str):
    """The command line both baselines share: --scale, --out, --seed, --seeds, --train, --test, --resume
    (each experiment adds its own budget override). Returns (parser, split) with split("a,b") -> ("a", "b")."""
    import argparse

    from metarl.cli import ArgumentParser, add_scale_argument, nonneg_int, positive_int

    p = ArgumentParser(prog=f"python -m experiments.{name}", description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=os.path.join("results", "metagenrl_baselines", name))
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--seeds", type=positive_int, default=None, help=seeds_help)
    p.add_argument("--train", default=None, help="comma-separated training env labels (default: MetaGenRL's first set)")
    p.add_argument("--test", default=None, help="comma-separated test env labels (default: all)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    return p, (lambda text: tuple(x for x in text.split(",") if x) if text else None)
