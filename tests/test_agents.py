"""DDPG, TD3 and SAC losses against hand-computed values; TD3 smoothing and delay; SAC temperature."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from metarl import envs
from metarl.agents import make_agent

SPEC = envs.make("gymnax/Pendulum-v1").spec  # obs 3, action 1
SMALL = dict(actor_hidden=(8, 8), critic_hidden=(8, 8))


def constant_net(params, last_bias):
    """All weights zero except the output layer's bias: the net outputs ``last_bias`` everywhere."""
    flat = traverse_util.flatten_dict(params)
    biases = [k for k in flat if k[-1] == "bias"]
    # the output layer: the actors' "out", else the critic MLP's highest-numbered dense layer
    last = next((k for k in biases if "out" in k), None) or max(biases, key=lambda k: int(k[-2].split("_")[-1]))
    out = {k: jnp.zeros_like(v) for k, v in flat.items()}
    out[last] = jnp.asarray(last_bias, jnp.float32).reshape(flat[last].shape)
    return traverse_util.unflatten_dict(out)


def constant_twin(params, b1, b2):
    q1 = constant_net({"x": params["params"]["q1"]}, [b1])["x"]
    q2 = constant_net({"x": params["params"]["q2"]}, [b2])["x"]
    return {"params": {"q1": q1, "q2": q2}}


def batch_of(n=4):
    return dict(obs=jnp.ones((n, 3)), action=jnp.zeros((n, 1)), reward=jnp.array([1.0, -2.0, 0.5, 3.0])[:n],
                next_obs=jnp.ones((n, 3)), terminated=jnp.array([0.0, 1.0, 0.0, 0.0])[:n], done=jnp.zeros(n))


def test_td3_losses_hand_computed():
    ag = make_agent("td3", SPEC, **SMALL)
    st = ag.init(jax.random.PRNGKey(0))
    st = st.replace(critic=constant_twin(st.critic, 2.0, 3.0), critic_target=constant_twin(st.critic, 5.0, 4.0))
    b = batch_of()
    loss, _ = ag.critic_loss(st.critic, st, b, jax.random.PRNGKey(1))
    y = np.array([1.0, -2.0, 0.5, 3.0]) + 0.99 * np.array([1, 0, 1, 1]) * min(5.0, 4.0)
    expected = np.mean((2.0 - y) ** 2) + np.mean((3.0 - y) ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    aloss, _ = ag.actor_loss(st.actor, st, b, None)
    np.testing.assert_allclose(aloss, -2.0, rtol=1e-6)  # -Q1 only


def test_ddpg_single_critic_loss_hand_computed():
    ag = make_agent("ddpg", SPEC, **SMALL)
    st = ag.init(jax.random.PRNGKey(0))
    one = lambda p, b: constant_net(p, [b])
    st = st.replace(critic=one(st.critic, 2.0), critic_target=one(st.critic, 5.0))
    loss, _ = ag.critic_loss(st.critic, st, batch_of(), jax.random.PRNGKey(1))
    y = np.array([1.0, -2.0, 0.5, 3.0]) + 0.99 * np.array([1, 0, 1, 1]) * 5.0
    np.testing.assert_allclose(loss, np.mean((2.0 - y) ** 2), rtol=1e-6)
    # DDPG: the target action is the target actor's, with no smoothing noise.
    a = ag.extras["target_action"](st, jnp.ones((5, 3)), jax.random.PRNGKey(2))
    np.testing.assert_allclose(a, ag.actor_net.apply(st.actor_target, jnp.ones((5, 3))))


def test_td3_target_smoothing_noise_is_clipped():
    ag = make_agent("td3", SPEC, **SMALL)
    st = ag.init(jax.random.PRNGKey(0))
    st = st.replace(actor_target=constant_net(st.actor, [0.0]))  # target actor outputs tanh(0) = 0
    a = np.asarray(ag.extras["target_action"](st, jnp.ones((200_000, 3)), jax.random.PRNGKey(3)))
    assert np.abs(a).max() == pytest.approx(0.5)  # noise clipped at 0.5
    clipped = np.mean(np.abs(a) >= 0.5 - 1e-7)
    assert 0.009 < clipped < 0.016  # P(|N(0, 0.2)| > 0.5) = 0.0124
    inner = a[np.abs(a) < 0.5]
    assert 0.18 < inner.std() < 0.2
    st0 = st.replace(hp={**st.hp, "policy_noise": jnp.asarray(0.0)})
    np.testing.assert_array_equal(ag.extras["target_action"](st0, jnp.ones((4, 3)), jax.random.PRNGKey(3)), 0.0)


def test_td3_policy_delay():
    ag = make_agent("td3", SPEC, **SMALL)
    st = ag.init(jax.random.PRNGKey(0))
    b = batch_of()
    update = jax.jit(ag.update)
    changed = []
    for i in range(4):
        new, _ = update(st, b, jax.random.PRNGKey(i))
        leaf = lambda p: jax.tree.leaves(p)[0]
        changed.append((not np.array_equal(leaf(new.actor), leaf(st.actor)),
                        not np.array_equal(leaf(new.critic_target), leaf(st.critic_target)),
                        not np.array_equal(leaf(new.critic), leaf(st.critic))))
        st = new
    # critic every update; actor and targets on every 2nd critic update only
    assert changed == [(False, False, True), (True, True, True), (False, False, True), (True, True, True)]


def test_sac_losses_and_temperature_update():
    ag = make_agent("sac", SPEC, **{"actor_hidden": (8, 8), "critic_hidden": (8, 8)})
    m_, log_std = 0.3, -20.0  # a nearly deterministic policy: u = 0.3 + sigma * eps, a = tanh(u)
    sigma = np.exp(log_std)

    def prepared(init_alpha):
        st = ag.init(jax.random.PRNGKey(0), {"init_alpha": init_alpha})
        return st.replace(actor=constant_net(st.actor, [m_, log_std]),
                          critic=constant_twin(st.critic, 2.0, 3.0), critic_target=constant_twin(st.critic, 5.0, 4.0))

    # With alpha -> 0 the soft target is the clipped double-Q target.
    st = prepared(1e-12)
    b = batch_of()
    loss, _ = ag.critic_loss(st.critic, st, b, jax.random.PRNGKey(1))
    y = np.array([1.0, -2.0, 0.5, 3.0]) + 0.99 * np.array([1, 0, 1, 1]) * 4.0
    np.testing.assert_allclose(loss, np.mean((2.0 - y) ** 2) + np.mean((3.0 - y) ** 2), rtol=1e-5)
    # log pi(a|s) of the tanh-Gaussian: N(u; mu, sigma) - log(1 - tanh(u)^2); E[-eps^2 / 2] = -1/2.
    st = prepared(1.0)
    n = 4000
    big = dict(obs=jnp.ones((n, 3)), action=jnp.zeros((n, 1)), reward=jnp.zeros(n), next_obs=jnp.ones((n, 3)),
               terminated=jnp.zeros(n), done=jnp.zeros(n))
    logp_mean = -np.log(sigma) - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(m_) ** 2) - 0.5
    aloss, m = ag.actor_loss(st.actor, st, big, jax.random.PRNGKey(2))
    np.testing.assert_allclose(m["logp"], logp_mean, atol=0.05)
    np.testing.assert_allclose(aloss, 1.0 * m["logp"] - 2.0, rtol=1e-5)  # alpha log pi - min(Q1, Q2)
    # The soft target subtracts alpha log pi(a'|s'): with alpha = 1 the target drops by ~logp_mean.
    closs, _ = ag.critic_loss(st.critic, st, big, jax.random.PRNGKey(1))
    y = 0.99 * (4.0 - logp_mean)
    np.testing.assert_allclose(closs, (2.0 - y) ** 2 + (3.0 - y) ** 2, rtol=2e-3)
    # Temperature: loss -log(alpha) (log pi + target), target = -|A| = -1. Adam's first step moves
    # log(alpha) by lr against the gradient's sign: here log pi + target > 0, so alpha grows.
    new, m2 = ag.actor_step(st, big, jax.random.PRNGKey(2))
    assert logp_mean - 1.0 > 0
    np.testing.assert_allclose(new.log_alpha, 3e-4, rtol=1e-3)
    np.testing.assert_allclose(m2["alpha"], np.exp(3e-4), rtol=1e-6)
    # and the other way round when the policy is broad (log pi + target < 0)
    st_b = st.replace(actor=constant_net(st.actor, [0.0, -0.2]))
    new_b, m3 = ag.actor_step(st_b, big, jax.random.PRNGKey(2))
    assert float(m3["logp"]) - 1.0 < 0
    np.testing.assert_allclose(new_b.log_alpha, -3e-4, rtol=1e-3)


def test_discrete_env_rejected_by_continuous_agents():
    spec = envs.make("gymnax/CartPole-v1").spec
    for algo in ("ddpg", "td3", "sac"):
        with pytest.raises(ValueError, match="continuous action space"):
            make_agent(algo, spec)


def test_unknown_algo_and_field():
    with pytest.raises(ValueError, match="unknown algo 'ppo2'; valid: ddpg, td3, sac"):
        make_agent("ppo2", SPEC)
    with pytest.raises(ValueError, match="unknown td3 config field.*'hiden'"):
        make_agent("td3", SPEC, hiden=(3,))
    with pytest.raises(ValueError, match="unknown hyperparameter 'lr'"):
        make_agent("td3", SPEC).init(jax.random.PRNGKey(0), {"lr": 1e-3})


def test_ppo_interleaved_fits_equal_the_two_fits_one_after_the_other():
    """PPO steps its policy and value nets in one loop on the same minibatches (fit_both); that is the same
    arithmetic as the policy's fit, then the value net's (fit), each with the same key, bit for bit."""
    from metarl.agents import onpolicy as op

    cfg = op.make_config("ppo", rollout=64, total_steps=128, eval_every=64, eval_episodes=1, hidden=(8,),
                         minibatch_size=16, pi_epochs=3, vf_epochs=3)
    init, _, fns = op.make_onpolicy(cfg, envs.make("gymnax/Pendulum-v1"))
    state, traj = fns["collect"](init(jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)
    data = dict(obs=traj["obs"].reshape(64, -1), action=traj["action"].reshape(64, -1),
                logp=traj["logp"].reshape(64), adv=jnp.asarray(rng.normal(size=64), jnp.float32),
                target=jnp.asarray(rng.normal(size=64), jnp.float32))
    kp = jax.random.PRNGKey(1)
    pi, pi_opt, mp, vf, vf_opt, mv = jax.jit(fns["fit_both"])(state, data, kp)
    pi_tx, vf_tx = optax.adam(cfg.pi_lr), optax.adam(cfg.vf_lr)
    fit = jax.jit(fns["fit"], static_argnums=(2, 3, 5))
    want_pi = fit(state.pi, state.pi_opt, pi_tx, fns["pi_loss"], data, 3, kp)
    want_vf = fit(state.vf, state.vf_opt, vf_tx, fns["vf_loss"], data, 3, kp)
    for got, want in (((pi, pi_opt, mp), want_pi), ((vf, vf_opt, mv), want_vf)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(jax.tree.leaves(pi)[0], jax.tree.leaves(state.pi)[0])  # the fits moved the nets


def test_ppo_collect_draws_fresh_gaussian_noise_per_step_and_env():
    """PPO's collect draws the rollout's action noise before its loop: each step of each environment acts with
    the policy's mean plus its std times a fresh standard normal (no step or environment reuses another's draw),
    log pi(a|s) is the policy's density of the action taken, and the observations chain from step to step."""
    from metarl.agents import onpolicy as op

    cfg = op.make_config("ppo", num_envs=2, rollout=512, total_steps=1024, eval_every=1024, eval_episodes=1,
                         hidden=(8,))
    init, _, fns = op.make_onpolicy(cfg, envs.make("gymnax/Pendulum-v1"))
    state = init(jax.random.PRNGKey(0))
    after, traj = jax.jit(fns["collect"])(state)
    mean, log_std = fns["policy"].apply(state.pi, traj["obs"])
    np.testing.assert_allclose(traj["logp"], op.gaussian_logp(mean, log_std, traj["action"]), rtol=1e-5, atol=1e-5)
    z = np.asarray((traj["action"] - mean) / jnp.exp(log_std))[..., 0]  # [T, env]
    assert abs(z.mean()) < 0.15 and abs(z.std() - 1.0) < 0.1
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 0.15  # step to step
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.15  # environment to environment
    np.testing.assert_array_equal(traj["obs"][0], state.obs)
    cont = ~np.asarray(traj["done"][:-1])
    np.testing.assert_array_equal(np.asarray(traj["next_obs"][:-1])[cont], np.asarray(traj["obs"][1:])[cont])
    last = ~np.asarray(traj["done"][-1])
    np.testing.assert_array_equal(np.asarray(after.obs)[last], np.asarray(traj["next_obs"][-1])[last])
    assert int(after.env_steps) == 1024
