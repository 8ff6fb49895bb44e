"""RL^2: the hidden state carries across episodes and resets across trials; on a bandit family it learns
to explore, then exploit."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import stats
from metarl.meta import families, rl2


def test_hidden_state_resets_at_trials_not_at_episodes():
    # Pendulum padded to 5-d observations and 2-d actions, 3-step episodes, 2 episodes per trial, 2 trials.
    fam = families.env_family("gymnax/Pendulum-v1", obs_dim=5, act_dim=2, max_episode_steps=3)
    cfg = rl2.RL2Config(trial_episodes=2, lanes=1, updates=1, eval_every=1, hidden=8, minibatches=1)
    init, _, fns = rl2.make_rl2(cfg, [fam])
    net = fns["net"]

    @jax.jit
    def run(key):  # one compiled program (initialisation included: eager flax init costs seconds)
        params = init(key).params
        traj = rl2.rollout(net, params, fam, cfg, key, trials=2)
        h_next = jax.vmap(lambda h, x: net.apply(params, h, x)[0])(traj["h_in"], traj["x"])
        # The loss's re-run with the rollout's resets, and with the hidden state also reset at every
        # episode start (what RL^2 must not do); one vmapped unroll.
        ep_start = traj["reset"] | jnp.concatenate([jnp.zeros(1, bool), traj["done"][:-1]])
        out, _, v = jax.vmap(lambda r: rl2.unroll(net, params, traj["x"], r, cfg.hidden))(
            jnp.stack([traj["reset"], ep_start]))
        h6 = net.apply(params, jnp.zeros(cfg.hidden), traj["x"][6])[0]  # step 6 from a zero state
        lp = rl2.log_prob(fam, out[0], jnp.broadcast_to(params["params"]["log_std"], out[0].shape), traj["action"])
        return traj, h_next, h6, lp, v[0], v[1]

    traj, h_next, h6, lp, v, v_ep = jax.tree.map(np.asarray, run(jax.random.PRNGKey(1)))
    reset, done, h_in, x = traj["reset"], traj["done"], traj["h_in"], traj["x"]
    np.testing.assert_array_equal(np.flatnonzero(reset), [0, 6])  # trials start at steps 0 and 6
    np.testing.assert_array_equal(np.flatnonzero(done), [2, 5, 8, 11])  # episodes end every 3 steps
    np.testing.assert_array_equal(traj["episode"], [0, 0, 0, 1, 1, 1] * 2)
    # At a trial start the hidden state is zero, and so are the previous action, reward and done inputs.
    assert np.all(h_in[[0, 6]] == 0.0)
    assert np.all(x[[0, 6], 5:] == 0.0)
    # Everywhere else (episode starts 3 and 9 included) it is the GRU's output of the step before.
    carried = np.flatnonzero(~reset)
    np.testing.assert_allclose(h_in[carried], h_next[carried - 1], rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(h_in[[3, 9]]).sum(-1) > 1e-2)
    assert np.all(x[[3, 9], -1] == 1.0)  # the done flag of the episode that just ended is an input
    assert np.all(x[[1, 2, 4, 5], -1] == 0.0)
    # The rollout's second trial does not depend on its first: step 6 sees the same state as step 0 would.
    np.testing.assert_allclose(h_next[6], h6, rtol=1e-6)
    # The loss's re-run over the lane (reset flags only at trial starts) reproduces the rollout ...
    np.testing.assert_allclose(v, traj["value"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lp, traj["logp"], rtol=1e-5, atol=1e-5)
    # ... and differs from a re-run that resets at episode starts, from the second episode on.
    np.testing.assert_allclose(v_ep[:3], v[:3], rtol=1e-6)
    assert np.abs(v_ep[3:6] - v[3:6]).max() > 1e-4
    # Padding: the environment's 3-d observation fills the first entries, action entry 2 is masked out.
    assert np.all(x[:, 3:5] == 0.0) and np.all(traj["action"][:, 1] == 0.0)


@pytest.mark.learning
def test_rl2_explores_then_exploits_on_two_armed_bandits():
    """Two-armed Bernoulli bandits (one arm pays with p 0.9, the other 0.1, which one drawn per trial),
    10 pulls per trial. Any policy that ignores the trial's history earns 10 * (0.9 + 0.1) / 2 = 5 per
    trial in expectation; RL^2 must find the good arm and stay on it. 8 seeds in one vmapped program;
    IQM over seeds. Measured (IQM of the trial return): 8.3 (default ISA), lr 0: 5.06 (fails)."""
    fam = families.bandit(2, p_good=0.9, p_bad=0.1)
    cfg = rl2.RL2Config(trial_episodes=10, lanes=64, updates=80, eval_every=80, hidden=32, gamma=0.99,
                        gae_lambda=0.95, lr=3e-3, epochs=4, minibatches=2, ent_coef=0.01)
    init, run_segment, _ = rl2.make_rl2(cfg, [fam])
    seeds = 8
    _, m = jax.jit(jax.vmap(lambda k: run_segment(init(k))))(jax.random.split(jax.random.PRNGKey(0), seeds))
    per_pull = np.asarray(m["eval_episode_returns"])[:, 0]  # [seeds, pulls]: mean over 64 fresh trials
    fixed = 10 * (0.9 + 0.1) / 2
    # An always-arm-0 policy through the same bandit code, as a check of that expectation.
    keys = jax.random.split(jax.random.PRNGKey(1), 4096)
    arm0 = jax.vmap(lambda k: fam.step(fam.sample(k), None, 0, jax.random.fold_in(k, 1))[2])(keys)
    assert abs(10 * float(np.mean(arm0)) - fixed) < 0.25
    trial_return = stats.iqm(per_pull.sum(-1))
    assert trial_return > fixed + 2.0, (trial_return, per_pull.sum(-1))
    # Explore then exploit: the first pull is a coin flip (nothing known yet), later pulls mostly the good arm.
    assert abs(stats.iqm(per_pull[:, 0]) - 0.5) < 0.15
    assert stats.iqm(per_pull[:, 5:].mean(-1)) > 0.75


def test_baselines_command_line_and_run_record(tmp_path, capsys, monkeypatch):
    """experiments.rl2 / experiments.epg share one parser: bad input is one line, exit 2, nothing written;
    the run record is written whole (and not at all without an output folder)."""
    import json

    from metarl.meta import baselines_common as bc
    from experiments import epg as epg_ex
    from experiments import rl2 as rl2_ex

    monkeypatch.chdir(tmp_path)
    for mod, extra in ((rl2_ex, "--updates"), (epg_ex, "--generations")):
        for argv, needle in ((["--scale", "huge"], "unknown scale 'huge'"), ([extra, "0"], "0 is not allowed"),
                             (["--train", "Ant", "--out", "o"], "unknown environment label 'Ant'")):
            with pytest.raises(SystemExit) as e:
                mod.main(argv)
            err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
            assert e.value.code == 2 and len(err) == 1 and needle in err[0], err
    assert os.listdir(tmp_path) == []
    bc.write_record(None, "rl2", {"a": 1})
    assert os.listdir(tmp_path) == []
    bc.write_record(str(tmp_path / "run"), "rl2", {"a": 1})
    rec = json.loads((tmp_path / "run" / "rl2.json").read_text())
    assert rec["a"] == 1 and "package_versions" in rec and "device" in rec


def test_learned_vs_baselines_rows():
    """MetaGenRL's learned objective against EPG / RL^2 per environment, from per-seed scores: clearly above
    -> reproduces; overlapping -> inconclusive; environments a baseline did not run are skipped."""
    from benchmarks.metagenrl_baselines import learned_vs_baselines

    b = {"EPG": {"MountainCar": {"per_seed": [-20.0, -20.0, -20.0]}, "Pendulum": {"per_seed": [-1200, -1190, -1210]}},
         "RL2": {"MountainCar": {"per_seed": [-4.0, -3.0, -5.0]}}}
    rows = learned_vs_baselines(b, {"MountainCar": [-1.0, -1.2, -0.9], "Pendulum": [-1195, -1300, -1150]})
    assert set(rows) == {"learned vs EPG (MountainCar)", "learned vs EPG (Pendulum)", "learned vs RL2 (MountainCar)"}
    assert rows["learned vs EPG (MountainCar)"]["claim_verdict"] == "reproduces"
    assert rows["learned vs EPG (Pendulum)"]["claim_verdict"].startswith("inconclusive")
    assert all({"iqm", "ci", "claim_verdict"} <= set(r) for r in rows.values())
