"""Model-based meta-learning of critics: the analytic toy's closed forms, gradients through the
inner step and the differentiable Brax rollout against finite differences, traced dynamics parameters."""
import dataclasses

import jax
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
