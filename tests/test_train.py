"""The training loop: determinism, vmap == single runs, resume == uninterrupted, sharded == unsharded,
sweeps, the CLI, bad input, and small learning tests."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from metarl import stats
from metarl import train as T

TINY = T.TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=3, total_steps=700, learning_starts=100,
                     eval_every=200, eval_episodes=2, max_episode_steps=50,
                     agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=32))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    runner = T.Runner(TINY, str(d), progress=False)
    _, metrics = runner.run()
    return runner, metrics, d


def test_run_writes_results(tiny_run):
    runner, metrics, d = tiny_run
    assert metrics["eval_return"].shape == (3, 3)
    np.testing.assert_array_equal(metrics["env_steps"][0], [300, 500, 700])
    for f in ("config.json", "meta.json", "metrics.json", "metrics.csv", "learning_curve.png"):
        assert (d / f).exists(), f
    meta = json.loads((d / "meta.json").read_text())
    assert meta["versions"]["jax"] == jax.__version__ and meta["device"]["backend"] == "cpu"
    assert meta["sessions"][-1]["compile_time_by_program"]["chunk"] > 0 and meta["wall_time_s"] > 0
    assert len((d / "metrics.csv").read_text().splitlines()) == 1 + 3 * 3
    assert not any(p.name.endswith((".tmp", ".partial")) for p in d.rglob("*"))


def test_same_key_same_metrics(tiny_run):
    runner, metrics, _ = tiny_run
    _, again = T.Runner(TINY, None, progress=False).run()
    for k in metrics:
        np.testing.assert_array_equal(metrics[k], again[k], err_msg=k)


def test_runner_init_is_init_and_shares_the_warm_up_across_agents():
    """The Runner initialises with two programs (warm-up, agent); together they compute what ``init`` does, bit
    for bit, and a Runner of another agent on the same task reuses the compiled warm-up."""
    import dataclasses

    first = T.Runner(TINY, None, progress=False)
    state = first.init_state()
    whole = first.init(first.keys, first.hp)
    a, b = jax.tree.leaves(state), jax.tree.leaves(whole)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    held = dict(T.Runner._warm_ups)
    sac = dataclasses.replace(TINY, algo="sac")
    other = T.Runner(sac, None, progress=False)
    other.init_state()
    assert T.Runner._warm_ups == held  # the same task, run count and sharding: nothing compiled anew
    longer = T.Runner(dataclasses.replace(sac, learning_starts=300, total_steps=900), None, progress=False)
    longer.init_state()
    assert len(T.Runner._warm_ups) == len(held) + 1  # a longer warm-up and buffer: its own program


def test_vmapped_seed_equals_single_run(tiny_run):
    _, metrics, _ = tiny_run
    train = jax.jit(T.make_train(TINY))
    _, keys, _ = T.run_keys_and_hp(TINY)
    for i in range(TINY.seeds):
        _, m = train(keys[i], {})
        np.testing.assert_allclose(m["eval_return"], metrics["eval_return"][i], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(m["critic_loss"], metrics["critic_loss"][i], rtol=1e-3, atol=1e-5)


def test_resume_equals_uninterrupted(tiny_run, tmp_path):
    _, metrics, _ = tiny_run
    T.Runner(TINY, str(tmp_path), progress=False).run(stop_after=1)  # "interrupted" after chunk 1
    progress = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert progress["chunk"] == 1
    _, resumed = T.Runner(TINY, str(tmp_path), progress=False).run(resume=True)
    for k in metrics:
        np.testing.assert_array_equal(metrics[k], resumed[k], err_msg=k)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        T.Runner(TINY, str(tmp_path / "empty"), progress=False).run(resume=True)


def test_hyperparameter_list_is_a_vmapped_sweep(tiny_run):
    _, metrics, _ = tiny_run
    cfg = T.TrainConfig(**{**TINY.__dict__, "hp": {"critic_lr": [1e-3, 3e-4]}})
    runner = T.Runner(cfg, None, progress=False)
    assert runner.num_runs == 6 and [c["critic_lr"] for c in runner.combos] == [1e-3, 3e-4]
    _, m = runner.run()
    assert m["eval_return"].shape == (6, 3)
    # combo 0 is the default critic_lr: the same runs as the plain vmapped seeds
    np.testing.assert_allclose(m["critic_loss"][:3], metrics["critic_loss"], rtol=1e-3, atol=1e-5)
    assert not np.allclose(m["critic_loss"][3:], metrics["critic_loss"])


SHARD_SCRIPT = r"""
import json, sys, jax
from metarl import train as T
cfg = T.TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=3, total_steps=700, learning_starts=100,
                    eval_every=200, eval_episodes=2, max_episode_steps=50,
                    agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=32))
sharded = T.Runner(cfg, None, progress=False)
run, a = sharded.run()
leaf = jax.tree.leaves(run)[0]
print(json.dumps({"devices": jax.device_count(), "sharded": sharded.sharding is not None,
                  "n_shards": len(leaf.sharding.device_set), "ret": a["eval_return"].tolist()}))
"""


def test_sharded_equals_unsharded(tiny_run):
    """TINY's three seeds sharded over three (forced) CPU devices in a fresh process equal the unsharded
    vmapped run of this process (tiny_run: the same config on one device)."""
    _, metrics, _ = tiny_run
    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["devices"] == 3 and r["sharded"] and r["n_shards"] == 3
    np.testing.assert_allclose(r["ret"], metrics["eval_return"], rtol=1e-4, atol=1e-3)


def test_cli_trains_and_resumes(tiny_run, tmp_path):
    # The same settings as TINY, so the CLI compiles the same program (and hits the compilation cache).
    _, metrics, _ = tiny_run
    args = ["--algo", "td3", "--env", "gymnax/Pendulum-v1", "--seeds", "3", "--steps", "700", "--learning-starts",
            "100", "--eval-every", "200", "--eval-episodes", "2", "--max-episode-steps", "50", "--no-progress",
            "--set", "actor_hidden=16,16", "--set", "critic_hidden=16,16", "--set", "batch_size=32",
            "--run-dir", str(tmp_path)]
    T.main(args)
    m = json.loads((tmp_path / "metrics.json").read_text())
    np.testing.assert_allclose(m["blocks"][0]["metrics"]["eval_return"], metrics["eval_return"], rtol=1e-6)
    T.main(args + ["--resume"])  # already finished: resumes at the end and rewrites the same results
    m2 = json.loads((tmp_path / "metrics.json").read_text())
    assert m2 == m


@pytest.mark.parametrize("kwargs,match", [
    (dict(algo="ppo"), "unknown algo 'ppo'; valid: ddpg, td3, sac"),
    (dict(learning_starts=50, total_steps=2050), "batch_size 100 is larger than the filled buffer at the first update"),
    (dict(agent={"batch_size": 5000}, learning_starts=1000), "batch_size 5000 is larger than the filled buffer"),
    (dict(total_steps=1500), "must be a positive multiple of eval_every"),
    (dict(seeds=0), "seeds must be >= 1, got 0"),
    (dict(env="gymnax/Nope-v0"), "unknown Gymnax environment 'gymnax/Nope-v0'; valid"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    cfg = T.TrainConfig(**{"total_steps": 3000, "learning_starts": 1000, **kwargs})
    with pytest.raises(ValueError, match=match):
        T.make_functions(cfg)


def test_bad_cli_override_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        T.main(["--algo", "td3", "--set", "lr=1e-3"])
    assert "unknown override 'lr' for td3" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Learning tests. JAX on the CPU is deterministic on one machine but not across instruction sets (AVX-512,
# AVX2, AVX without FMA round differently, and a different rounding is, for a learning run, a different
# seed). So each test runs many seeds in one vmapped program and asserts on the interquartile mean over
# seeds, with a margin measured across seed sets and ISAs (docs/testing.md has the figures), and every
# criterion was checked to fail for a broken learner (actor learning rate 0).
# ---------------------------------------------------------------------------------------------------
def pendulum_learning_config(algo, **hp):
    """8 seeds x 10k steps (1k random warm-up) of gymnax Pendulum-v1 with 64-64 networks."""
    return T.TrainConfig(algo=algo, env="gymnax/Pendulum-v1", seeds=8, total_steps=10_000, learning_starts=1_000,
                         eval_every=1_000, evals_per_chunk=9, eval_episodes=5, hp=hp,
                         agent=dict(actor_hidden=(64, 64), critic_hidden=(64, 64)))


@pytest.mark.learning
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_learns_pendulum(algo):
    """IQM over 8 seeds of each seed's last three evaluations (steps 8k-10k) above -400, from a start at
    random-policy level (about -1500). Measured IQMs -140 to -200 for both algorithms under each ISA and
    seed set tried, single seeds down to -410; a zero actor learning rate stays at about -1500."""
    _, m = T.Runner(pendulum_learning_config(algo), None, progress=False).run()
    ret = m["eval_return"]  # [seeds, evaluations]
    print(algo, np.round(ret, 0))
    assert stats.iqm(ret[:, 0]) < -900, ret[:, 0]  # the first evaluation: not yet learned
    score = ret[:, -3:].mean(axis=1)
    assert stats.iqm(score) > -400, score


@pytest.mark.learning
@pytest.mark.slow
def test_td3_learns_brax_inverted_pendulum():
    """TD3 (64-64) on Brax inverted_pendulum, 4 seeds x 11k steps: the IQM over seeds of each seed's best
    evaluation (the paper's max-return metric) above 110. The untrained actor keeps the pole up for
    40-70 steps (a zero actor learning rate gives an IQM of 67); trained runs measured 161-1000 across
    ISAs and seed sets, one seed of four sometimes balancing for the whole 1000 steps (the IQM ignores
    it). Balancing for 1000 steps in every seed, the paper's level, needs ~30k steps and is not asserted."""
    cfg = T.TrainConfig(algo="td3", env="brax/inverted_pendulum", seeds=4, total_steps=11_000,
                        learning_starts=1_000, eval_every=2_000, evals_per_chunk=5, eval_episodes=3,
                        agent=dict(actor_hidden=(64, 64), critic_hidden=(64, 64)))
    _, m = T.Runner(cfg, None, progress=False).run()
    ret = m["eval_return"]
    print(np.round(ret, 1))
    assert stats.iqm(ret.max(axis=1)) > 110, ret.max(axis=1)


def test_static_delay_schedule_equals_cond_schedule(tiny_run):
    """The loop's static layout of TD3's policy delay gives the same run as a lax.cond per update."""
    _, metrics, _ = tiny_run
    cfg = T.TrainConfig(**{**TINY.__dict__, "static_schedule": False})
    _, m = T.Runner(cfg, None, progress=False).run()
    for k in metrics:
        np.testing.assert_allclose(m[k], metrics[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_eval_every_must_fit_the_policy_delay():
    cfg = T.TrainConfig(**{**TINY.__dict__, "eval_every": 201, "total_steps": 703})
    with pytest.raises(ValueError, match="eval_every=201 must be a multiple of the agent's update period 2"):
        T.make_functions(cfg)
