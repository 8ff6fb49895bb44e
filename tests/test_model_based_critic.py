"""Model-based meta-learning of critics: the analytic toy's closed forms, gradients through the
inner step and the differentiable Brax rollout against finite differences, traced dynamics parameters."""
import dataclasses
import os

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.meta import model_based_critic as mbc

# ------------------------------------------------------------------ the analytic toy (float64)


@pytest.fixture
def x64():
    """float64 for the test that asks for it, and only for it (a module-wide fixture would leave it on for
    the tests after it in this file)."""
    with jax.enable_x64(True):
        yield


def test_supervised_phi_matches_eq30(x64):
    """phi_1 fitted on the TD error of the rollout (the loop's own critic fit) equals Eq. 30."""
    thetas = jnp.array([-3.0, -1.0, 0.0, 0.7, 2.0, 3.5, 5.0, 8.0, 11.0])
    for s0, g in ((-6.0, 0.0), (-2.0, 1.5)):
        def fit(theta):
            states = mbc.toy_rollout(theta, s0, 2)
            return mbc._fit_scalar(lambda p: mbc.toy_td_error(p, states, theta, g), 0.0 * theta, "newton", 3, 0.0)
        np.testing.assert_allclose(jax.vmap(fit)(thetas), mbc.toy_q_phi_closed_form(thetas, s0, g), rtol=1e-9)
        # and the TD error's gradient vanishes there while it does not at phi + 0.1
        states = mbc.toy_rollout(thetas[3], s0, 2)
        d = jax.grad(mbc.toy_td_error)
        phi = mbc.toy_q_phi_closed_form(thetas[3], s0, g)
        assert abs(d(phi, states, thetas[3], g)) < 1e-8 < abs(d(phi + 0.1, states, thetas[3], g))


def test_model_based_phi_matches_eq46(x64):
    thetas = jnp.array([-3.0, 0.0, 1.0, 2.5, 3.5, 5.0, 9.0])
    cfg = mbc.ToyConfig(critic_solver="newton", critic_steps=3, iterations=1)
    for s0, g in ((-6.0, 0.0), (-2.0, 1.5)):
        cfg = dataclasses.replace(cfg, s0=s0, g=g)
        carry = jax.vmap(lambda t: mbc.toy_model_based_iteration(
            cfg, mbc.ToyCarry(t, 0.0 * t, 0.0 * t)))(thetas)
        np.testing.assert_allclose(carry.phi, mbc.toy_mb_phi_closed_form(thetas, s0, g), rtol=1e-9)


@pytest.mark.parametrize("s0,g", [(-6.0, 0.0), (-2.0, 1.5)])
def test_toy_loop_end_points(x64, s0, g):
    """Each loop's end point from a sweep of initial theta against its closed-form stationary points."""
    cfg = mbc.ToyConfig(s0=s0, g=g, critic_solver="newton", critic_steps=3, iterations=300)
    pts = mbc.toy_stationary_points(cfg)
    thetas0 = jnp.linspace(pts["optimal"] - 7.3, pts["optimal"] + 9.1, 37)
    # Model-based (Eq. 46-49): every start away from the degenerate point ends at theta = (g - s0)/2.
    end = np.asarray(mbc.toy_sweep(cfg, "model_based", thetas0)[0].theta)
    away = np.abs(np.asarray(thetas0) - pts["eq35"]) > 1e-6
    np.testing.assert_allclose(end[away], (g - s0) / 2, atol=1e-9)
    # Q-fitting (Eq. 35): phi_1 of Eq. 30 vanishes at theta = (g - s0)/2 and -s0/2, and the policy gradient
    # 2 phi_1 (s0 + s1 + 2 theta) cannot carry theta across them; starts inside the interval of Eq. 35's
    # point end where theta = -(s0 + s1)/2 on their own rollout, which is not the optimum.
    zeros = sorted([pts["optimal"], pts["phi_zero"]])
    lo, hi = (zeros[1] + 0.3, zeros[1] + 9.0) if pts["eq35"] > zeros[1] else (zeros[0] + 0.05, zeros[1] - 0.05)
    starts = jnp.linspace(lo, hi, 19)
    end_q = np.asarray(mbc.toy_sweep(cfg, "q_fitting", starts)[0].theta)
    s1 = s0 + end_q
    np.testing.assert_allclose(end_q, -(s0 + s1) / 2, atol=1e-6)
    np.testing.assert_allclose(end_q, pts["eq35"], atol=1e-6)
    assert np.all(np.abs(end_q - (g - s0) / 2) > 0.3)  # not the optimum
    # The Meta-Critic (A.3, meta-critic fitted exactly): same stationary point as Q-fitting generically.
    end_m = np.asarray(mbc.toy_sweep(cfg, "meta_critic", thetas0 + 0.013)[0].theta)
    np.testing.assert_allclose(end_m, pts["eq35"], atol=1e-6)


def test_toy_gradient_through_inner_step_matches_closed_form(x64):
    """d L_task / d phi through the inner step equals Eq. 41."""
    s0, g, theta, phi = -6.0, 0.0, 1.7, 0.3
    states = mbc.toy_rollout(theta, s0, 2)

    def task(p):
        th = mbc._inner_step(theta, p, states, 0.5)
        return (mbc.toy_rollout(th, s0, 2)[-1] - g) ** 2
    s1 = s0 + theta
    s2 = s0 + 2 * theta - 2 * phi * (s0 + s1 + 2 * theta)
    np.testing.assert_allclose(jax.grad(task)(phi), 2 * (s2 - g) * (-2 * (s0 + s1 + 2 * theta)), rtol=1e-10)


# ------------------------------------------------------------------ the method through differentiable Brax


@pytest.fixture
def reacher(x64):
    """The 2-link reacher's task and link parameters, in float64 (the tests that take it run under x64)."""
    from metarl.meta import arm_models
    task, params = arm_models.make_task(arm_models.REACHER2)
    return task, params


def test_meta_gradient_through_inner_step_and_brax_rollout_matches_finite_differences(reacher):
    """d task_loss(theta_new(phi)) / d phi, through the inner policy step and the Brax generalized rollout
    of the updated policy, against central differences along random directions (float64, horizon 5)."""
    task, params = reacher
    cfg = mbc.MBCConfig(horizon=5, inner_lr=0.5, inner_steps=1, critic_hidden=(8, 8), policy_hidden=(8, 8),
                        n_policy_inits=1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        st = mbc.meta_init(cfg, task, jax.random.PRNGKey(1))
        phi = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), st.phi)
        thetas = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64)[None],
                              mbc.init_policies(cfg, task, jax.random.PRNGKey(2), 1))
        goals = jnp.array([[0.6, -0.4]], jnp.float64)
        vg = jax.jit(jax.value_and_grad(lambda p: mbc.meta_loss(cfg, task, p, thetas, goals, params64)[0]))
        loss, grad = vg(phi)
        assert float(loss) > 0
        flat, unravel = jax.flatten_util.ravel_pytree(grad)
        assert np.linalg.norm(flat) > 0
        for k in range(3):
            v = jax.random.normal(jax.random.PRNGKey(10 + k), flat.shape, jnp.float64)
            vt = unravel(v)
            eps = 1e-5
            lp = vg(jax.tree.map(lambda p, d: p + eps * d, phi, vt))[0]
            lm = vg(jax.tree.map(lambda p, d: p - eps * d, phi, vt))[0]
            np.testing.assert_allclose(float(jnp.dot(flat, v)), float((lp - lm) / (2 * eps)), rtol=1e-4)
        assert vg._cache_size() == 1


def test_link_mass_and_length_are_traced_inputs(reacher):
    """Changing a link mass or length changes the Brax dynamics without recompiling; a vmapped sweep
    over masses is one program; a heavier distal link slows the arm under the same torque."""
    from metarl.meta import arm_models
    task, params = reacher

    @jax.jit
    def final_q(dyn):
        model = task.prepare(dyn)

        def body(m, _):
            return task.step(model, m, jnp.array([1.0, -0.5])), None
        return task.obs(jax.lax.scan(body, task.init(model), None, length=20)[0])

    base = np.asarray(final_q(params))
    heavy = np.asarray(final_q(params._replace(masses=params.masses.at[1].set(3.0))))
    long_ = np.asarray(final_q(params._replace(lengths=params.lengths.at[0].set(1.6))))
    assert final_q._cache_size() == 1
    assert np.all(np.isfinite(base)) and np.abs(heavy - base).max() > 1e-2 and np.abs(long_ - base).max() > 1e-2
    assert abs(heavy[0]) < abs(base[0]) and abs(long_[0]) < abs(base[0])  # more inertia about joint 0
    masses = jnp.stack([params.masses.at[1].set(m) for m in (0.5, 1.0, 2.0, 4.0)])
    sweep = jax.jit(jax.vmap(lambda m: final_q(params._replace(masses=m))))
    out = np.asarray(sweep(masses))
    np.testing.assert_allclose(out[1], base, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(np.abs(out[:, 0])) < 0)
    assert sweep._cache_size() == 1 and final_q._cache_size() == 1
    # the rod model: link 0's inertia about its joint grows like m l^2 / 3
    sys = arm_models.with_params(arm_models.load(arm_models.REACHER2), arm_models.REACHER2, params)
    np.testing.assert_allclose(np.asarray(sys.link.inertia.i)[0, 2, 2], 1.0 * (1 / 12 + 0.04 ** 2 / 4), rtol=1e-6)


# ------------------------------------------------------------------ the Meta-Critic baseline


def _double_integrator(dt=0.1):
    """A cheap differentiable task (no Brax): 2-D double integrator, state [q, qd], torque u."""
    def step(_, m, u):
        qd = m[2:] + dt * u
        return jnp.concatenate([m[:2] + dt * qd, qd])
    return mbc.Task(init=lambda _: jnp.array([0.3, -0.2, 0.0, 0.0]), step=step, obs=lambda m: m,
                    state_dim=4, action_dim=2, goal_dim=2)


def _tiny_mc_cfg(**kw):
    return mbc.MetaCriticBaselineConfig(horizon=5, batch=16, buffer_episodes=8, q_updates=2, pi_updates=2,
                                        critic_hidden=(16, 16), policy_hidden=(8, 8), aux_hidden=(8, 8), **kw)


@pytest.mark.parametrize("meta_loss", ["clip", "plain"])
def test_meta_critic_meta_gradient_matches_finite_differences(meta_loss):
    """d/dw of the supervised Q's evaluation of the policy after the look-ahead step (pi_old by the
    Q-loss, pi_new by h_w), against central differences along random directions (float64)."""
    task = _double_integrator()
    cfg = _tiny_mc_cfg(meta_loss=meta_loss, lookahead_lr=0.3)
    with jax.enable_x64(True):
        st = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                          mbc.mc_init(cfg, task, jax.random.PRNGKey(0)))
        ks = jax.random.split(jax.random.PRNGKey(1), 4)
        trn = (jax.random.normal(ks[0], (16, 4), jnp.float64), jax.random.normal(ks[1], (16, 2), jnp.float64))
        val = (jax.random.normal(ks[2], (16, 4), jnp.float64), jax.random.normal(ks[3], (16, 2), jnp.float64))
        f = jax.jit(lambda w: mbc.mc_meta_objective(cfg, task, w, st.base.q, st.base.pi, trn, val))
        grad = jax.grad(f)(st.w)
        flat, unravel = jax.flatten_util.ravel_pytree(grad)
        assert np.linalg.norm(flat) > 1e-8
        for k in range(3):
            v = unravel(jax.random.normal(jax.random.PRNGKey(10 + k), flat.shape, jnp.float64))
            eps = 1e-5
            fd = (f(jax.tree.map(lambda p, d: p + eps * d, st.w, v)) -
                  f(jax.tree.map(lambda p, d: p - eps * d, st.w, v))) / (2 * eps)
            np.testing.assert_allclose(float(jnp.vdot(flat, jax.flatten_util.ravel_pytree(v)[0])), float(fd),
                                       rtol=1e-6)
    with pytest.raises(ValueError, match="meta_loss 'typo'.*clip, plain"):
        _tiny_mc_cfg(meta_loss="typo")


def test_meta_critic_with_zero_aux_is_ddpg_exactly():
    """aux_scale = 0 (h_w contributes nothing): the Meta-Critic's Q, target, policy, optimiser states and
    buffer equal the DDPG baseline's over several iterations (float64; the two are different compiled
    programs, so XLA may round differently: rtol 1e-12); with aux_scale = 1 the policy differs and w moves."""
    task = _double_integrator()
    with jax.enable_x64(True):
        goals = jnp.array([[0.5, 0.5], [-0.4, 0.2]], jnp.float64)
        run_mc = jax.jit(lambda s, c: mbc.mc_train_chunk(c, task, s, goals, None, 3), static_argnums=1)
        cfg0 = _tiny_mc_cfg(aux_scale=0.0)
        st = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                          mbc.mc_init(cfg0, task, jax.random.PRNGKey(3)))
        mc_end, mc_m = run_mc(st, cfg0)
        dd_end, dd_m = jax.jit(lambda s: mbc.ddpg_train_chunk(cfg0, task, s, goals, None, 3))(st.base)
        leaves = jax.tree.leaves(dd_end)
        assert leaves and all(np.asarray(x).dtype != np.float32 for x in leaves)
        for a, b in zip(jax.tree.leaves(mc_end.base), leaves):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(mc_m["train_error"]), np.asarray(dd_m["train_error"]), rtol=1e-12)
        # Algorithm 3 with h_w scaled by 0 (how the benchmark runs both baselines' meta-tests in one program)
        # is DDPG's Algorithm 3; with scale 1 it is not
        cfg_t = dataclasses.replace(cfg0, aux_scale=1.0, test_steps=15, test_lr=3e-2)
        k, g = jax.random.PRNGKey(5), goals[0]
        e_dd = mbc.ddpg_learn_policy(cfg_t, task, mc_end.base.q, k, g, None)
        e_0 = mbc.mc_learn_policy(cfg_t, task, (mc_end.base.q, mc_end.w, 0.0), k, g, None)
        e_1 = mbc.mc_learn_policy(cfg_t, task, (mc_end.base.q, mc_end.w, 1.0), k, g, None)
        np.testing.assert_allclose(float(e_0), float(e_dd), rtol=1e-12)
        assert abs(float(e_1) - float(e_dd)) > 1e-9
        cfg1 = _tiny_mc_cfg(aux_scale=1.0)
        mc1, _ = run_mc(st, cfg1)
        dpi = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(mc1.base.pi), jax.tree.leaves(dd_end.pi)))
        dw = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(mc1.w), jax.tree.leaves(st.w)))
        assert dpi > 1e-6 and dw > 1e-7


# ------------------------------------------------------------------ the point-mass illustration (Fig. 1)


def test_point_mass_q_true_landscape_and_field():
    """Q_true (Eq. 1 in closed form) equals the simulated cost-to-go; over a grid that contains theta*,
    its landscape's argmin is the analytic optimum (g - mean s0) / T, its policy-gradient field vanishes
    there and nowhere else on the grid, and Algorithm 3 with Q_true ends at theta* from every start."""
    cfg = mbc.PointMassConfig(horizon=3, s0s=((-1.0, -0.5), (-0.5, -1.0), (0.4, 0.1)))
    goal = jnp.array([0.95, -0.2])
    opt = np.asarray(mbc.pm_optimal_theta(cfg, goal))
    np.testing.assert_allclose(opt, (np.asarray(goal) - np.mean(cfg.s0s, 0)) / 3, rtol=1e-6)
    # closed form == simulation: take a at s_t, then theta for the remaining steps
    s, a, th = jnp.array([0.3, -0.7]), jnp.array([0.5, 0.2]), jnp.array([-0.4, 0.9])
    for t in range(3):
        x = s + a
        for _ in range(3 - t - 1):
            x = x + th
        np.testing.assert_allclose(mbc.pm_q_true(cfg, s, a, goal, th, t), jnp.sum((x - goal) ** 2), rtol=1e-6)
    # a grid with theta* on it (offsets are multiples of the spacing)
    h = 0.1
    lin = jnp.asarray(np.arange(-20, 21) * h)
    grid = jnp.stack(jnp.meshgrid(opt[0] + lin, opt[1] + lin), -1).reshape(-1, 2)
    vals, field = jax.jit(lambda g: mbc.pm_landscape_and_field(cfg, mbc.pm_true_critic(cfg), g, goal))(grid)
    i = int(jnp.argmin(vals))
    np.testing.assert_allclose(np.asarray(grid[i]), opt, atol=1e-5)
    norms = np.linalg.norm(np.asarray(field), axis=-1)
    assert norms[i] < 1e-4 and np.all(np.delete(norms, i) > 0.1)
    starts = jnp.array([[-2.5, 2.0], [2.5, 2.5], [0.0, -2.8]])
    ends = jax.jit(jax.vmap(lambda t0: mbc.pm_descend(cfg, mbc.pm_true_critic(cfg), t0, goal, steps=400)))(starts)
    np.testing.assert_allclose(np.asarray(ends), np.broadcast_to(opt, (3, 2)), atol=1e-2)
    with pytest.raises(ValueError, match="critic_input 'sg'.*raw, folded"):
        mbc.PointMassConfig(critic_input="sg")


def test_meta_test_claims_verdicts_from_intervals():
    """The reacher / arm claim 'ours << DDPG and Meta Critic' per sweep, on synthetic errors (pairs,
    seeds, inits): clearly lower than DDPG -> reproduces; overlapping the Meta Critic -> inconclusive;
    above an arm that does not move -> contradicts. Each row carries iqm, ci and verdict."""
    import numpy as np

    from metarl.meta.model_based_critic_outputs import claims_markdown, meta_test_claims

    rng = np.random.default_rng(0)
    seeds = np.array([0.10, 0.12, 0.14, 0.16, 0.18])[None, :, None]
    ours = seeds + 0.001 * rng.standard_normal((6, 5, 3))
    ddpg = seeds + 1.0 + 0.001 * rng.standard_normal((6, 5, 3))
    mc = seeds[:, ::-1] + 0.01 + 0.001 * rng.standard_normal((6, 5, 3))
    still = np.full(6, 0.05)
    rows = meta_test_claims({"goal": [0, 1, 2], "mass": [3, 4, 5]}, ours, ddpg, mc, still)
    by = {(r["sweep"], r["reference"]): r for r in rows}
    assert len(rows) == 6
    assert by[("goal", "ddpg")]["verdict"] == "reproduces" and by[("mass", "ddpg")]["verdict"] == "reproduces"
    assert by[("goal", "meta_critic")]["verdict"].startswith("inconclusive")
    assert by[("goal", "no_movement")]["verdict"] == "contradicts"
    for r in rows:
        assert {"iqm", "ci", "verdict"} <= set(r) and r["ci"][0] <= r["iqm"] <= r["ci"][1] and r["seeds"] == 5
    assert by[("goal", "ddpg")]["iqm"] == pytest.approx(np.mean(ours[:3].mean(axis=(0, 2))[1:4]))
    md = claims_markdown(rows, "t")
    assert md.count("\n| ") == 7 and "reproduces" in md
    # The meta-test table shows the same per sweep: each method as IQM [CI], each part of the claim's verdict
    from _markdown import IQM_CI, tables

    from experiments.model_based_critic_arm7 import column_stats, markdown
    from metarl.meta.model_based_critic_outputs import sweep_table

    t = {r["sweep"]: r for r in tables("# T\n\n" + sweep_table(rows))["T"]}
    assert IQM_CI.match(t["goal"]["ours"]) and IQM_CI.match(t["goal"]["DDPG"]) and t["goal"]["no movement (reference)"] == "0.05"
    assert t["goal"]["verdict: ours < DDPG"] == "reproduces" and t["goal"]["verdict: ours < no movement"] == "contradicts"
    assert t["mass"]["verdict: ours < Meta Critic"] == by[("mass", "meta_critic")]["verdict"]
    # the 7-DoF arm's paper-layout tables: one column's statistics over seeds, the same verdict
    col = column_stats([0, 1, 2], ours, ddpg, mc)
    assert col["ours_iqm"] == pytest.approx(by[("goal", "ddpg")]["iqm"]) and col["verdict_vs_ddpg"] == "reproduces"
    assert col["verdict_vs_mc"] == by[("goal", "meta_critic")]["verdict"]


def test_pointmass_claims_from_per_seed_fractions():
    """Fig. 1's claim per goal from the per-seed fraction of starts ending near theta*: all starts -> leads
    to theta* (reproduces) and beats Q_sup; none -> contradicts; a tie with Q_sup -> inconclusive."""
    from experiments.model_based_critic_pointmass import claims, claims_markdown

    rows = [{"kind": "train", "goal": [1.25, 1.25], "ours": {"within_0.25_per_seed": [1.0, 1.0, 1.0]},
             "sup": {"within_0.25_per_seed": [0.4, 0.44, 0.5]}},
            {"kind": "unseen", "goal": [-0.75, 2.25], "ours": {"within_0.25_per_seed": [0.0, 0.0, 0.0]},
             "sup": {"within_0.25_per_seed": [0.0, 0.0, 0.0]}}]
    c = claims(rows, "raw")
    assert [r["verdict"] for r in c] == ["reproduces", "reproduces", "contradicts", "inconclusive at this scale"]
    assert all({"iqm", "ci", "verdict", "label"} <= set(r) for r in c)
    assert "raw: unseen goal (-0.75, 2.25): L_critic > Q_sup" in claims_markdown(c)


def test_aggregate_scores_normalise_by_not_moving(tmp_path):
    """The model-based critic's aggregate figure: per method [seeds, sweeps] of 1 - error / still."""
    import numpy as np

    from metarl.meta.model_based_critic_outputs import aggregate_scores, meta_test_claims
    from metarl.stats import plot_aggregate

    ours = np.full((4, 2, 3), 0.1)
    ddpg = np.full((4, 2, 3), 0.4)
    mc = np.full((4, 2, 3), 0.8)
    rows = meta_test_claims({"goal": [0, 1], "mass": [2, 3]}, ours, ddpg, mc, np.full(4, 0.4))
    s = aggregate_scores({"reacher": rows})
    assert set(s) == {"L_critic (ours)", "DDPG", "Meta Critic"} and s["DDPG"].shape == (2, 2)
    np.testing.assert_allclose(s["L_critic (ours)"], 0.75)
    np.testing.assert_allclose(s["DDPG"], 0.0, atol=1e-12)
    np.testing.assert_allclose(s["Meta Critic"], -1.0)
    assert plot_aggregate(s, str(tmp_path / "a.png"))


# The reacher's / arm's meta-training driver on a cheap task: 3 chunks of 2 meta-iterations, 2 seeds.
MBC_TINY = r"""
import jax, jax.numpy as jnp
from metarl.meta import model_based_critic as mbc
from test_model_based_critic import _double_integrator
goals = jnp.array([[0.5, 0.5], [-0.4, 0.2]])
keys = jax.random.split(jax.random.PRNGKey(0), 2)
ours = mbc.MBCConfig(horizon=5, critic_hidden=(16, 16), policy_hidden=(8, 8), iterations=6)
def train(**k):
    return mbc.train_ours(ours, _double_integrator(), None, goals, keys, 2, **k)
"""

# ... killed (SIGKILL) right after its first checkpoint is written
MBC_KILLED = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from metarl.driver import checkpoints
real = checkpoints.save_checkpoint
def save_then_die(*a, **k):
    real(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
checkpoints.save_checkpoint = save_then_die
exec(sys.argv[3])
train(checkpoint=(sys.argv[1], {"part": "test", "n": 1}, False))
"""


def test_meta_training_killed_after_a_chunk_resumes_bit_for_bit(tmp_path):
    """The reacher's and arm's drivers checkpoint after every chunk (mbc.run_chunks, shared by train_ours,
    train_ddpg and train_meta_critic; checked here through train_ours): a process killed (SIGKILL) right
    after its first chunk's checkpoint, resumed, gives the same states and curve, bit for bit, as the
    uninterrupted run; another identity is refused in one line, a corrupted file too."""
    import subprocess
    import sys

    from metarl.driver import CheckpointError, ConfigMismatch
    from metarl.driver.segments import read_segments

    scope = {}
    exec(MBC_TINY, scope)
    train = scope["train"]
    ident = {"part": "test", "n": 1}
    full = train()
    path = str(tmp_path / "ours")
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", MBC_KILLED, path, here, MBC_TINY], capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.path.dirname(here)), timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]
    assert read_segments(path)["done"] == 1 and sorted(os.listdir(tmp_path)) == ["ours"]
    assert full[1].shape[1] == 6
    res = train(checkpoint=(path, ident, True))
    for a, b in zip(jax.tree.leaves(res[0]), jax.tree.leaves(full[0])):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(res[1], full[1])
    with pytest.raises(ConfigMismatch, match=r"other settings: n \(1 -> 2\)"):
        train(checkpoint=(path, {"part": "test", "n": 2}, True))
    stored = max((os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f != "COMPLETE.json"),
                 key=os.path.getsize)
    raw = bytearray(open(stored, "rb").read())
    raw[len(raw) // 2:len(raw) // 2 + 8] = bytes(x ^ 0xFF for x in raw[len(raw) // 2:len(raw) // 2 + 8])
    open(stored, "wb").write(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted on disk"):
        train(checkpoint=(path, ident, True))


def test_nonfinite_meta_training_stops_with_its_seed_and_chunk(tmp_path):
    """The NaN/Inf guard of the model-based critic's chunk loop (mbc.run_chunks): a NaN in seed 1's state
    after chunk 2 stops the run with one line naming the part, method, seed and chunk; the checkpoint keeps
    chunk 1 (the last finite state)."""
    from metarl.driver import NonFiniteError
    from metarl.driver.segments import read_segments

    calls = []

    def run(states):
        calls.append(1)
        w = states["w"] + 1.0
        if len(calls) == 2:
            w = w.at[1, 0].set(jnp.nan)
        return {"w": w}, {"train_error": jnp.ones((2, 4))}

    path = str(tmp_path / "reacher_ours")
    with pytest.raises(NonFiniteError) as e:
        mbc.run_chunks(run, {"w": jnp.zeros((2, 3))}, 3, 4, checkpoint=(path, {"part": "reacher", "method": "ours"},
                                                                         False))
    msg = str(e.value)
    assert "\n" not in msg and "seed(s) 1 in reacher ours meta-training chunk 2 of 3 (iterations 5-8)" in msg, msg
    assert "state['w']" in msg and e.value.failures["runs"] == [1]
    assert read_segments(path)["done"] == 1


def test_point_mass_and_training_tables_show_intervals_and_verdicts():
    """The point mass table's fractions as IQM [CI] with the claim rows' verdicts per goal; the meta-training
    error per method as an IQM row (descriptive)."""
    from _markdown import IQM_CI, tables

    from experiments.model_based_critic_pointmass import claims, markdown
    from metarl.meta.model_based_critic_outputs import final_train_error_seeds

    def row(kind, goal, ours, sup):
        return {"kind": kind, "goal": goal, "theta_opt": [1.0, 1.0],
                **{k: {"argmin_dist": 0.1, "descent_end_dist": 0.2, "within_0.25_per_seed": w}
                   for k, w in (("true", [1.0] * 3), ("sup", sup), ("ours", ours))}}

    rows = [row("train", [1.25, 1.25], [1.0, 1.0, 1.0], [0.4, 0.44, 0.5]), row("unseen", [-0.75, 2.25], [0.0] * 3, [0.0] * 3)]
    t = tables("# T\n\n" + markdown({"variants": {"raw": rows}, "claims": claims(rows, "raw")}))["T"]
    assert IQM_CI.match(t[0]["ends within 0.25, L_critic: IQM [95% CI]"])
    assert t[0]["verdict (L_critic)"] == "leads to theta*: reproduces; > Q_sup: reproduces"
    assert t[1]["verdict (L_critic)"] == "leads to theta*: contradicts; > Q_sup: inconclusive at this scale"
    f = final_train_error_seeds(2, ours=np.array([[9.0, 1.0, 2.0], [9.0, 3.0, 4.0]]))["ours"]
    assert f["iqm"] == pytest.approx(2.5) and f["n"] == 2 and f["verdict"].startswith("descriptive")


# ------------------------------------------------------------------ the command lines: seeds, resume


def test_run_keys_keep_seed_zero_and_never_share_a_stream():
    """--seed s: random stream k of a run uses PRNGKey(16 s + k), so seed 0 keeps the keys of every run before
    the option existed and two seeds never draw from the same key; the experiments carry seed and seeds."""
    from experiments import model_based_critic_pointmass as pointmass
    from experiments import model_based_critic_reacher as reacher
    from metarl.meta.model_based_critic_outputs import run_key

    for k in (0, 3, 11):
        np.testing.assert_array_equal(run_key(0, k), jax.random.PRNGKey(k))
    keys = {tuple(np.asarray(run_key(s, k)).tolist()) for s in range(3) for k in range(16)}
    assert len(keys) == 48
    with pytest.raises(ValueError, match="stream 16 is not in 0..15"):
        run_key(0, 16)
    assert reacher.ReacherExperiment._at("quick").seeds == 2 and pointmass.PointMassExperiment._at("paper").seeds == 5


def test_toy_cli_refuses_a_seed_in_one_line(tmp_path, capsys):
    """The toy has no random numbers: --seed / --seeds other than the defaults are refused in one line saying
    so, before anything is written."""
    from experiments import model_based_critic_toy as toy

    with pytest.raises(SystemExit) as e:
        toy.main(["--out", str(tmp_path / "out"), "--seeds", "3"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert e.value.code == 2 and len(err) == 1 and "has no random numbers" in err[0], err
    assert not (tmp_path / "out").exists()


TOY_KILLED_AFTER_TWO_LOOPS = r"""
import os, signal, sys
from experiments import model_based_critic_toy as toy
from metarl.meta import model_based_critic_outputs as out

save, saved = out.UnitCheckpoints.save, []

def save_then_die(self, *a, **k):
    save(self, *a, **k)
    saved.append(1)
    if len(saved) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

out.UnitCheckpoints.save = save_then_die
tiny = ["--n-theta", "9", "--converged-iterations", "8", "--online-iterations", "16"]  # every field is an option
toy.main(["--out", sys.argv[1], "--no-progress"] + tiny + sys.argv[3:])
print(f"loops computed: {len(saved)}", file=sys.stderr)
"""


def test_toy_killed_after_two_loops_resumes_to_the_same_summary(tmp_path):
    """The toy's command line killed (SIGKILL) right after its second loop's checkpoint, then run again with
    --resume: the four loops left are computed, the two done are loaded, and the summary's loops and the
    basins table equal those of a run straight through; a resume of a run with other settings is refused."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)

    def cli(out, kill_at, *extra):
        return subprocess.run([sys.executable, "-c", TOY_KILLED_AFTER_TWO_LOOPS, str(out), str(kill_at), *extra],
                              cwd=root, env=env, capture_output=True, text=True, timeout=600)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli(whole, 0).returncode == 0
    r = cli(killed, 2)
    assert r.returncode == -9, r.stderr[-2000:]
    assert sorted(os.listdir(killed / "checkpoints")) == ["toy_converged_meta_critic", "toy_converged_q_fitting"]
    assert not (killed / "toy_summary.json").exists()
    r = cli(killed, 0, "--resume")
    assert r.returncode == 0 and "loops computed: 4" in r.stderr, r.stderr[-2000:]
    a, b = (json.loads((d / "toy_summary.json").read_text()) for d in (whole, killed))
    assert a["loops"] == b["loops"] and a["config"] == b["config"]
    assert (whole / "toy_basins.md").read_text() == (killed / "toy_basins.md").read_text()
    # the run record in the shared folder: toy_config.json and toy_meta.json; the killed session stays "running"
    meta = json.loads((killed / "toy_meta.json").read_text())
    assert meta["status"] == "finished" and [s["status"] for s in meta["sessions"]] == ["running", "finished"]
    assert json.loads((killed / "toy_config.json").read_text()) == json.loads((whole / "toy_config.json").read_text())
    # a unit written with other settings (the config is part of its identity) is refused in one line
    from metarl.meta.model_based_critic_outputs import UnitCheckpoints
    from metarl.driver import ConfigMismatch

    with pytest.raises(ConfigMismatch, match=r"config.n_theta \(9 -> 10\)"):
        UnitCheckpoints(str(killed), "toy", dict(b["config"], n_theta=10), True).load("converged_q_fitting")


def test_pointmass_variant_checkpoint_reads_back_what_was_computed(tmp_path):
    """The point mass's unit checkpoint (a critic input's results for every seed): a resumed run loads the
    arrays it saved, leaf for leaf, in the program's structure, instead of training again."""
    from experiments import model_based_critic_pointmass as pointmass
    from metarl.meta.model_based_critic_outputs import UnitCheckpoints, run_key

    exp = pointmass.PointMassExperiment(seeds=2, mb_iterations=4, q_iterations=4, grid=5, quiver=3, starts=2,
                                        descend_steps=3)
    keys = jax.random.split(run_key(0, 11), exp.seeds)
    config = dataclasses.asdict(exp)
    units = UnitCheckpoints(str(tmp_path), "pointmass", config, False)
    _, res = pointmass.run_variant(exp, "folded", keys, units)
    written = os.stat(units.path("folded")).st_mtime_ns
    _, again = pointmass.run_variant(exp, "folded", keys, UnitCheckpoints(str(tmp_path), "pointmass", config, True))
    assert os.stat(units.path("folded")).st_mtime_ns == written  # loaded, not computed and saved again
    assert jax.tree.structure(again) == jax.tree.structure(res)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(res)):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_one_seed_runs_alone_and_matches_its_place_in_a_batch():
    """A driver given one seed compiles the run alone (metarl.runs.vmap_runs; on a CPU a vmap over a batch of
    one is a slower program): its curve and final state equal that seed's in a two-seed batch, up to float
    reassociation between the two programs."""
    goals = jnp.array([[0.5, 0.5], [-0.4, 0.2]])
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    cfg = mbc.MBCConfig(horizon=5, critic_hidden=(16, 16), policy_hidden=(8, 8), iterations=4)
    pair, pair_curve, _, _ = mbc.train_ours(cfg, _double_integrator(), None, goals, keys, 2)
    one, one_curve, _, _ = mbc.train_ours(cfg, _double_integrator(), None, goals, keys[:1], 2)
    assert one_curve.shape == (1, 4) and pair_curve.shape == (2, 4)
    np.testing.assert_allclose(one_curve[0], pair_curve[0], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(pair)):
        assert a.shape[0] == 1
        np.testing.assert_allclose(np.asarray(a[0], np.float64), np.asarray(b[0], np.float64), rtol=1e-4, atol=1e-5)
