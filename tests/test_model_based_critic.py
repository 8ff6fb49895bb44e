"""Model-based meta-learning of critics: the analytic toy's closed forms, gradients through the
inner step and the differentiable Brax rollout against finite differences, traced dynamics parameters."""
import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.meta import model_based_critic as mbc

# ------------------------------------------------------------------ the analytic toy (float64)


@pytest.fixture(scope="module")
def x64():
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


@pytest.fixture(scope="module")
def reacher():
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
