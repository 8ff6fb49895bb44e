"""PPO-LIRPG (metarl/meta/lirpg.py): the meta-gradient, the reduction to PPO, the driver and the CLI."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarl.meta import lirpg as lp
from metarl.agents import onpolicy as op

def _to64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _toy_env():
    """Observe s ~ U(-1, 1), reward -(a - s)^2, a fresh s every step; 5-step episodes, and the episode
    terminates early when |a - s| > 1.5 (so both kinds of episode end occur)."""
    from metarl.envs import EnvSpec
    from metarl.envs.core import Env, RawEnv

    spec = EnvSpec(name="toy-track", obs_shape=(1,), discrete=False, action_dim=1, action_low=(-1.0,),
                   action_high=(1.0,), max_episode_steps=5)

    def reset(key):
        s = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s, s

    def step(s, a, key):
        s2 = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s2, s2, -jnp.sum(jnp.square(a - s)), jnp.abs(a - s)[0] > 1.5

    return Env(RawEnv(spec, reset, step))


def _tiny(**kw):
    ppo = dict(num_envs=2, rollout=8, total_steps=64, eval_every=32, eval_episodes=2, hidden=(8,),
               minibatch_size=4, pi_epochs=2, vf_epochs=2, init_log_std=0.0)
    ppo.update(kw.pop("ppo", {}))
    return lp.make_config(ppo=ppo, rin_hidden=(8,), **kw)


def test_gae_rows_equal_ppo_advantages_with_terminations_and_truncations():
    T, N, gamma, lam = 7, 3, 0.9, 0.8
    rng = np.random.default_rng(0)
    r, v, vr = (jnp.asarray(rng.normal(size=(T, N)), jnp.float32) for _ in range(3))
    term = jnp.asarray(rng.random((T, N)) < 0.15)
    done = term | jnp.asarray(rng.random((T, N)) < 0.15)
    assert bool(jnp.any(term)) and bool(jnp.any(done & ~term))
    adv, _ = op.rollout_advantages(r, v, vr, term, done, gamma, lam)
    t, n = jnp.repeat(jnp.arange(T), N), jnp.tile(jnp.arange(N), T)  # flat index t * N + n
    delta = r + gamma * (1.0 - term) * vr - v
    rows = lp.gae_rows(t, n, done, gamma, lam)
    got = jnp.sum(rows * delta[:, n].T, axis=1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(adv).reshape(-1), rtol=1e-5, atol=1e-5)
    # the rows are GAE's operator: zero before t and past the first episode end at or after t
    assert np.all(np.asarray(rows)[np.arange(T * N), np.asarray(t)] == 1.0)


def _meta_problem(lookahead):
    """A random minibatch of a 2 x 6 rollout in float64 (call inside enable_x64)."""
    cfg = _tiny(lookahead=lookahead, ppo=dict(rollout=6, eval_every=12, total_steps=12))
    _, _, fns = lp.make_lirpg(cfg, _toy_env())
    T, N, B = 6, 2, 5
    k = jax.random.split(jax.random.PRNGKey(3), 8)
    pi = _to64(fns["policy"].init(k[0], jnp.zeros((1, 1))))
    rin = _to64(fns["rin_net"].init(k[1], jnp.zeros((1, 1)), jnp.zeros((1, 1))))
    tx = optax.adam(cfg.ppo.pi_lr)
    opt = tx.init(pi)
    for i in range(2):  # non-trivial Adam moments
        g = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(10 + i + x.size), x.shape, jnp.float64), pi)
        _, opt = tx.update(g, opt, pi)
    obs = jax.random.uniform(k[2], (T, N, 1), jnp.float64, -1, 1)
    act = jax.random.normal(k[3], (T, N, 1), jnp.float64)
    done = jnp.asarray([[0, 0], [0, 1], [1, 0], [0, 0], [0, 1], [0, 0]], bool)
    ctx = dict(obs=obs, action=act, done=done, delta_in_v=0.3 * jax.random.normal(k[4], (T, N), jnp.float64))
    t = jnp.asarray([0, 1, 3, 4, 5])
    n = jnp.asarray([0, 1, 1, 0, 1])
    mean, log_std = fns["policy"].apply(pi, obs[t, n])
    logp_pi = op.gaussian_logp(mean, log_std, act[t, n])
    # ratios at the look-ahead near 1, except two samples well inside the clipped region of PPO's loss
    logp_old = logp_pi + jnp.asarray([0.02, -0.6, 0.01, 0.7, -0.03])
    mb = dict(obs=obs[t, n], action=act[t, n], logp=logp_old, t=t, n=n,
              adv_ex=jax.random.normal(k[5], (B,), jnp.float64))
    hp = dict(in_coef=jnp.float64(0.7), ex_coef=jnp.float64(1.0), rin_lr=jnp.float64(1e-4))
    return cfg, fns, rin, pi, opt, mb, ctx, hp


@pytest.mark.parametrize("lookahead", ["adam", "sgd"])
def test_meta_gradient_equals_central_finite_differences_float64(lookahead):
    """d L_ex(theta'(eta)) / d eta by autodiff (what the update uses) against central differences of
    the same function in float64 along random directions. For the Adam look-ahead the second moment
    is held fixed in the gradient; the difference quotient holds it at its value at eta."""
    with jax.enable_x64(True):
        cfg, fns, rin, pi, opt, mb, ctx, hp = _meta_problem(lookahead)
        f = fns["meta_objective"]
        vg = jax.jit(jax.value_and_grad(f, has_aux=True))
        (loss, (a_mix, g_pi, _, _)), g = vg(rin, pi, opt, mb, ctx, hp)
        g_want = jax.grad(lambda p: fns["base"]["pi_loss"](p, dict(mb, adv=a_mix))[0])(pi)  # PPO's, on A_mix
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15), g_pi, g_want)
        nu = lp.adam_nu(opt, g_pi) if lookahead == "adam" else None
        fixed = jax.jit(lambda r: f(r, pi, opt, mb, ctx, hp, nu)[0])
        assert abs(float(fixed(rin)) - float(loss)) < 1e-12
        gnorm = float(optax.tree.norm(g))
        assert gnorm > 1e-6  # the meta-gradient is not trivially zero
        eps = 1e-5
        leaves, tdef = jax.tree.flatten(rin)
        for s in range(3):
            ks = jax.random.split(jax.random.PRNGKey(100 + s), len(leaves))
            d = jax.tree.unflatten(tdef, [jax.random.normal(kk, x.shape, jnp.float64) for kk, x in zip(ks, leaves)])
            fd = (float(fixed(jax.tree.map(lambda a, b: a + eps * b, rin, d)))
                  - float(fixed(jax.tree.map(lambda a, b: a - eps * b, rin, d)))) / (2 * eps)
            ad = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
            np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-10)
        # lambda = 0: the intrinsic reward does not reach the policy, so no meta-gradient
        _, g0 = vg(rin, pi, opt, mb, ctx, dict(hp, in_coef=jnp.float64(0.0)))
        assert float(optax.tree.norm(g0)) == 0.0


def test_adam_lookahead_is_the_policy_step_taken():
    """theta'(eta) of the "adam" look-ahead has the values of the Adam step the policy takes."""
    with jax.enable_x64(True):
        cfg, fns, rin, pi, opt, mb, ctx, hp = _meta_problem("adam")
        g = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x) + x, pi)
        upd, _ = optax.adam(cfg.ppo.pi_lr).update(g, opt, pi)
        want = optax.apply_updates(pi, upd)
        got = lp.adam_lookahead(pi, opt, g, cfg.ppo.pi_lr)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15), got, want)


# One environment object and config for the two tests below, so they share one compiled program
# (metarl.meta.lirpg caches the jitted programs per config and environment).
ENV = _toy_env()


def test_lambda_zero_frozen_intrinsic_is_ppo_and_lirpg_is_not():
    """Runs [PPO s0, PPO s1, LIRPG s0, LIRPG s1] as train() builds them, one segment (2 updates and an
    evaluation; the same key stream as PPO): the PPO runs (in_coef = 0, rin_lr = 0) equal
    metarl.agents.onpolicy's PPO from the same states (policy, value, optimisers, environments, key,
    evaluation); their intrinsic reward stays put. The LIRPG runs start from the same states but their
    policy updates differ and eta moves."""
    cfg = _tiny(rin_lr=1e-3)
    init, seg = lp._programs(cfg, ENV)
    s0 = init(*lp.run_inputs(cfg, jax.random.PRNGKey(1), 2))
    s1, m = seg(s0)
    _, ppo_seg, _ = op.make_onpolicy(cfg.ppo, ENV)
    b1, mb = jax.jit(jax.vmap(ppo_seg))(jax.tree.map(lambda x: x[:2], s0.base))
    first2 = lambda t: jax.tree.map(lambda x: x[:2], t)  # noqa: E731
    for name in ("pi", "vf", "pi_opt", "vf_opt", "obs", "env_steps", "key"):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6),
                     first2(getattr(s1.base, name)), getattr(b1, name))
    for k in ("eval_return", "train_return", "pi_loss", "vf_loss"):
        np.testing.assert_allclose(np.asarray(m[k])[:2], np.asarray(mb[k]), rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x[:2], y[:2]), s1.rin, s0.rin)
    assert np.all(np.asarray(m["meta_grad_norm"])[:2] == 0.0)
    # the same initial states for both variants; then LIRPG's policy and eta move differently
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[:2], x[2:]), (s0.base.pi, s0.rin))
    pi_gap = max(float(jnp.max(jnp.abs(x[2:] - x[:2]))) for x in jax.tree.leaves(s1.base.pi))
    moved = max(float(jnp.max(jnp.abs(x[2:] - y[2:])))
                for x, y in zip(jax.tree.leaves(s1.rin), jax.tree.leaves(s0.rin)))
    assert pi_gap > 1e-5 and moved > 1e-4 and np.all(np.asarray(m["meta_grad_norm"])[2:] > 0.0)
    assert np.all(np.isfinite(np.asarray(m["meta_loss"]))) and np.all(np.asarray(m["r_in_std"]) > 0.0)


def test_train_resume_continues_the_same_runs(tmp_path):
    """Two variants x two seeds in one program; a run stopped after one evaluation and resumed gives
    the uninterrupted run's numbers; the PPO and LIRPG variants share their first policy."""
    cfg = _tiny(rin_lr=1e-3)
    env = ENV
    key = jax.random.PRNGKey(1)
    full = lp.train(cfg, env, key, seeds=2, run_dir=str(tmp_path / "full"))
    part = lp.train(cfg, env, key, seeds=2, run_dir=str(tmp_path / "part"), max_segments=1)
    assert not part["complete"] and part["ppo"]["eval_return"].shape == (2, 1)
    with pytest.raises(lp.ResumeMismatch):
        lp.train(lp.make_config(ppo=dict(dataclass_fields(cfg.ppo)), rin_hidden=(8,), rin_lr=2e-3), env, key,
                 seeds=2, run_dir=str(tmp_path / "part"), resume=True)
    res = lp.train(cfg, env, key, seeds=2, run_dir=str(tmp_path / "part"), resume=True)
    assert res["complete"] and full["complete"]
    for v in lp.VARIANTS:
        assert res[v]["eval_return"].shape == (2, cfg.ppo.num_evals)
        for k in ("eval_return", "train_return", "meta_loss", "env_steps"):
            np.testing.assert_allclose(res[v][k], full[v][k], rtol=1e-6, atol=1e-6)
    assert np.all(full["ppo"]["meta_grad_norm"] == 0.0) and np.all(full["lirpg"]["meta_grad_norm"] > 0.0)
    rec = json.load(open(tmp_path / "full" / "result.json"))
    assert rec["variants"] == ["ppo", "lirpg"] and len(rec["lirpg"]["eval_return"]) == 2


def dataclass_fields(c):
    import dataclasses

    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name != "algo"}


@pytest.mark.parametrize("args,needle", [
    (["--scale", "huge"], "argument --scale: unknown scale 'huge'; valid scales: quick, medium, paper"),
    (["--seeds", "0"], "argument --seeds: 0 is not allowed"),
    (["--variants", "ppo", "trpo"], "argument --variants: invalid choice 'trpo'; valid: ppo, lirpg"),
    (["--variants", "ppo", "ppo"], "argument --variants: ppo ppo: give each of ppo, lirpg at most once"),
    (["--env", "gymnax/Nope-v0"], "unknown gymnax environment"),
    (["--eval-every", "300"], "eval_every 300 must be a multiple of the batch")])
def test_cli_bad_inputs_are_one_line(args, needle, capsys, monkeypatch, tmp_path):
    from experiments import lirpg as ex

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        ex.main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert e.value.code == 2 and len(lines) == 1 and needle in lines[0], err
    assert os.listdir(tmp_path) == []  # nothing compiled or written


def test_meta_critic_tables_and_summary_gain_ppo_rows(tmp_path):
    """benchmarks.meta_critic's outputs with the on-policy hook's results (made up here): summary.json
    has top-level "PPO" and "PPO-LIRPG" entries with numeric returns per task, tables.md's Table 1 has a
    PPO-LIRPG vs PPO row per task with IQM [CI]s beside the paper's numbers and the verdict."""
    from benchmarks import meta_critic as mc
    from benchmarks import meta_critic_onpolicy as onp

    quick = mc.bench_config("quick")
    assert onp.onpolicy_envs(quick) == ["gymnax/Pendulum-v1"]
    lcfg = onp.onpolicy_config(quick, "gymnax/Pendulum-v1")
    assert lcfg.ppo.total_steps == 4_000 and lcfg.ppo.eval_every == 1_000 and lcfg.ppo.num_evals == 4
    cfg = med = mc.bench_config("medium")  # the outputs below: a paper task beside the paper's figures
    assert onp.onpolicy_envs(med) == list(med.table1_envs)
    assert onp.onpolicy_config(med, "brax/inverted_double_pendulum").ppo.total_steps == 30_000
    assert onp.onpolicy_config(med, "brax/reacher").ppo.max_episode_steps == 50
    assert onp.onpolicy_config(mc.bench_config("paper"), "brax/hopper").ppo.rollout == 2000
    rng = np.random.default_rng(0)
    steps = [[1000, 2000, 3000, 4000]] * 2
    job = dict(config=dict(ppo=dict(eval_every=1000)), seeds=2, steps=4000, wall_s=1.0,
               variants={v: dict(eval_return=rng.normal(100 * (i + 1), 10, (2, 4)).tolist(), env_steps=steps)
                         for i, v in enumerate(("ppo", "lirpg"))})
    md = mc.write_outputs(str(tmp_path), cfg, {}, {}, {}, {}, {}, 1.0, finals={}, firsts={}, jobs=[],
                          onpolicy={"brax/inverted_pendulum": job})
    s = json.load(open(tmp_path / "summary.json"))
    assert "final return" in s["onpolicy_metric"]
    for lab, paper in (("PPO", 988.2), ("PPO-LIRPG", 971.6)):
        e = s[lab]["brax/inverted_pendulum"]
        assert isinstance(e["iqm"], float) and len(e["ci"]) == 2 and isinstance(e["max_avg"], float)
        assert e["paper_max_avg"] == paper and e["seeds"] == 2
    assert 0.0 <= s["PPO-LIRPG vs PPO"]["brax/inverted_pendulum"]["p_improvement"] <= 1.0
    from _markdown import IQM_CI, tables

    t1 = tables(md)["Table 1"]
    ppo = next(r for r in t1 if r["a vs b"] == "PPO-LIRPG vs PPO")
    e = s["PPO-LIRPG vs PPO"]["brax/inverted_pendulum"]
    assert ppo["task"] == "InvPend (brax/inverted_pendulum)" and IQM_CI.match(ppo["a: final, IQM [95% CI]"])
    assert ppo["a: max avg, ours / paper"].endswith(" / 971.6") and ppo["b: max avg, ours / paper"].endswith(" / 988.2")
    assert ppo["verdict"] == e["claim_verdict"] and ppo["P(a > b) [95% CI]"].startswith(f"{e['p_improvement']:.2f} [")
    # the off-policy rows of the medium Table 1 were not run here: the paper's figures alone
    ddpg = next(r for r in t1 if r["a vs b"] == "DDPG-MC vs DDPG" and r["task"].startswith("InvPend"))
    assert ddpg["verdict"] == "not run" and ddpg["a: max avg, ours / paper"] == "- / 1000"
    assert open(tmp_path / "tables.md").read() == md


def test_nonfinite_guard_names_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    """Fault injected: the compiled segment's output gets a NaN in run 3's policy (variant lirpg, seed 1)
    at the second evaluation. The loop stops with a one-line NonFiniteError naming that run and the
    evaluation, and the checkpoint on disk is the first evaluation's (finite) state."""
    from metarl.driver import NonFiniteError

    cfg = _tiny(rin_lr=1e-3)
    init, seg = lp._programs(cfg, ENV)
    calls = []

    def poisoned(state):
        state, m = seg(state)
        calls.append(1)
        if len(calls) == 2:
            pi = jax.tree.map(lambda x: x.at[3].set(jnp.nan) if x.ndim and x.shape[0] == 4 else x, state.base.pi)
            state = state.replace(base=state.base.replace(pi=pi))
        return state, m

    monkeypatch.setattr(lp, "_programs", lambda c, e: (init, poisoned))
    with pytest.raises(NonFiniteError) as e:
        lp.train(cfg, ENV, jax.random.PRNGKey(1), seeds=2, run_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "evaluation 2 of" in msg and "run (variant-major)(s) 3" in msg and ".pi" in msg
    assert e.value.failures["runs"] == [3]
    ident = lp.run_identity(cfg, ENV, lp.VARIANTS, 2, jax.random.PRNGKey(1))
    _, kept = lp._load_checkpoint(str(tmp_path), init(*lp.run_inputs(cfg, jax.random.PRNGKey(1), 2)), ident)
    assert len(kept) == 1  # the checkpoint holds the first evaluation only
    state, _ = lp._load_checkpoint(str(tmp_path), init(*lp.run_inputs(cfg, jax.random.PRNGKey(1), 2)), ident)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state) if np.asarray(x).dtype.kind == "f")
