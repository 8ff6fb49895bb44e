"""EPG: the ES step (evosax OpenAI-ES with per-environment rank averaging) and the inner update."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from metarl import envs
from metarl.meta import epg
from metarl.agents import onpolicy as op


def test_es_step_moves_toward_the_optimum_of_a_quadratic():
    """Scores -|x - x*|^2 for two 'environments' with different scales (the ranks make the scale
    irrelevant). 8 seeds vmapped: every seed's first step lowers the distance, and 60 steps close most of it."""
    template = {"a": jnp.zeros(3), "b": jnp.zeros((2, 1))}
    target = jax.tree.map(lambda x: jnp.full_like(x, 0.7), template)
    cfg = dataclasses.replace(epg.EPGConfig(), population=16, es_lr=0.05, es_sigma=0.1)
    es, es_params = epg.make_es(cfg, template)

    def dist(tree):
        return jnp.sqrt(sum(jnp.sum(jnp.square(x - t)) for x, t in zip(jax.tree.leaves(tree), jax.tree.leaves(target))))

    def scores(pop):
        d2 = jax.vmap(lambda p: jnp.square(dist(p)))(pop)
        return jnp.stack([-d2, -1000.0 * d2 + 5.0])

    @jax.jit
    def run(key):
        state = es.init(key, template, es_params)

        def step(state, k):
            state, _ = epg.es_generation(es, es_params, state, k, scores)
            return state, dist(es.get_mean(state))

        _, d = jax.lax.scan(step, state, jax.random.split(key, 60))
        return d

    d = np.asarray(jax.vmap(run)(jax.random.split(jax.random.PRNGKey(0), 8)))  # [seeds, steps]
    d0 = float(dist(template))
    assert np.all(d[:, 0] < d0), d[:, 0]
    assert np.all(d[:, -1] < 0.3 * d0), d[:, -1]


def test_inner_update_with_the_policy_gradient_loss_is_our_reinforce():
    """With L = policy_gradient_loss in place of the learned loss, one EPG inner update (collect a window
    with onpolicy's rollout, one Adam step) gives the same policy as onpolicy's REINFORCE update with a
    zero value function and lambda = 1, from the same state (same collected trajectory)."""
    cfg = epg.EPGConfig(num_envs=2, window=16, inner_steps=32, inner_epochs=1, inner_lr=3e-2, hidden=(8,),
                        max_episode_steps=10, population=2)
    env = envs.make("gymnax/Pendulum-v1", max_episode_steps=10)
    _, update, _, fns = epg.make_inner(cfg, env, epg.policy_gradient_loss(0.9))
    ocfg = dataclasses.replace(fns["onpolicy_config"], gamma=0.9, gae_lambda=1.0).validate()
    assert (ocfg.algo, ocfg.pi_epochs, ocfg.minibatch_size, ocfg.pi_lr) == ("reinforce", 1, None, 3e-2)
    init_ref, _, ref = op.make_onpolicy(ocfg, env)

    @jax.jit
    def run(key):
        state = init_ref(key)
        state = state.replace(vf=jax.tree.map(jnp.zeros_like, state.vf))  # V = 0: no baseline
        new_ref, _ = ref["update"](state, None)
        new_epg, m = update(state, None)
        _, traj = ref["collect"](state)
        return state.pi, new_ref.pi, new_epg.pi, m["loss"], traj

    pi0, pi_ref, pi_epg, loss, traj = run(jax.random.PRNGKey(3))
    assert np.asarray(traj["done"]).any()  # the window crosses episode ends (the trace is cut there)
    for a, b, c in zip(jax.tree.leaves(pi_ref), jax.tree.leaves(pi_epg), jax.tree.leaves(pi0)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    moved = sum(float(np.abs(np.asarray(a) - np.asarray(c)).max()) for a, c in zip(jax.tree.leaves(pi_ref), jax.tree.leaves(pi0)))
    assert moved > 1e-3  # the update did something
    # The loss against a hand computation: discounted return-to-go, cut at episode ends, standardised.
    r, d = np.asarray(traj["reward"], np.float64), np.asarray(traj["done"])
    g = np.zeros_like(r)
    for t in reversed(range(r.shape[0])):
        g[t] = r[t] + (0.9 * g[t + 1] * (1 - d[t]) if t + 1 < r.shape[0] else 0.0)
    adv = (g - g.mean()) / (g.std() + 1e-8)
    mean, log_std = fns["policy"].apply(pi0, traj["obs"])
    logp = np.asarray(op.gaussian_logp(mean, log_std, traj["action"]), np.float64)
    np.testing.assert_allclose(float(loss), -np.mean(logp * adv), rtol=1e-4)
