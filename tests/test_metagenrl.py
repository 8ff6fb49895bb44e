"""MetaGenRL: the learned objective's invariances, its second-order gradient, and the population update."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarl.agents import make_agent
from metarl.envs import EnvSpec
from metarl.meta import metagenrl as mg

TINY = mg.ObjectiveConfig(action_layers=(8, 8), scalar_layers=(8, 4), lstm_units=8, out_layers=(8,))
SPEC = EnvSpec(name="toy", obs_shape=(3,), discrete=False, action_dim=2, action_low=(-1.0, -1.0),
               action_high=(1.0, 1.0), max_episode_steps=50)


def _agent():
    return make_agent("td3", SPEC, actor_hidden=(8,), critic_hidden=(8,), layer_norm=True, batch_size=4)


def _windows(key, b=4, t=5, obs_dim=3, adim=2, with_end=True):
    ks = jax.random.split(key, 6)
    done = jnp.zeros((b, t), bool)
    term = jnp.zeros((b, t), bool)
    if with_end:  # window 0 ends an episode at step 2 (terminated), window 1 is truncated at step 3
        done = done.at[0, 2].set(True).at[1, 3].set(True)
        term = term.at[0, 2].set(True)
    w = dict(obs=jax.random.normal(ks[0], (b, t, obs_dim)),
             action=jnp.tanh(jax.random.normal(ks[1], (b, t, adim))),
             reward=jax.random.normal(ks[2], (b, t)),
             next_obs=jax.random.normal(ks[3], (b, t, obs_dim)),
             terminated=term, done=done,
             t=jnp.tile(jnp.arange(t, dtype=jnp.float32) / 50.0, (b, 1)))
    ended_before = jnp.cumsum(done.astype(jnp.int32), 1) - done.astype(jnp.int32)
    return w, ended_before == 0


def _to64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _inputs(key, b, t, d):
    ks = jax.random.split(key, 5)
    v_next = jax.random.normal(ks[3], (b, t))
    inp = dict(action=jax.random.normal(ks[0], (b, t, d)), reward=jax.random.normal(ks[1], (b, t)),
               t=jnp.tile(jnp.arange(t) / t, (b, 1)), v=jax.random.normal(ks[2], (b, t)),
               v_next=v_next, v_next_raw=v_next, terminated=jnp.zeros((b, t)), mask=jnp.ones((b, t), bool))
    return inp, jax.random.normal(ks[4], (b, t, d))


def test_objective_any_action_size_and_permutation_invariant():
    alpha = mg.init_objective(jax.random.PRNGKey(0), mg.ObjectiveConfig())
    f = jax.jit(lambda inp, pi: mg.objective_value(alpha, mg.ObjectiveConfig(), inp, pi))
    values = []
    for d in (1, 2, 5):
        inp, pi = _inputs(jax.random.PRNGKey(d), 3, 20, d)
        v = f(inp, pi)
        assert v.shape == () and np.isfinite(v)
        values.append(float(v))
        perm = jax.random.permutation(jax.random.PRNGKey(10 + d), d)
        vp = f(dict(inp, action=inp["action"][..., perm]), pi[..., perm])
        np.testing.assert_allclose(vp, v, rtol=1e-5, atol=1e-5)
    assert len(set(values)) == 3  # the inputs matter
    # Pairing matters: swapping the buffer action of dim 0 with dim 1 only (not pi's) changes the value.
    inp, pi = _inputs(jax.random.PRNGKey(2), 3, 20, 2)
    assert abs(float(f(dict(inp, action=inp["action"][..., ::-1]), pi)) - float(f(inp, pi))) > 1e-4


def test_objective_ignores_steps_after_episode_end_and_is_bounded():
    cfg = TINY
    alpha = mg.init_objective(jax.random.PRNGKey(1), cfg)
    inp, pi = _inputs(jax.random.PRNGKey(3), 2, 6, 2)
    mask = jnp.ones((2, 6), bool).at[0, 4:].set(False)
    inp = dict(inp, mask=mask)
    v = mg.objective_value(alpha, cfg, inp, pi)
    # Changing anything at the invalid steps (including pi there) leaves the value unchanged: the
    # backward LSTM starts from a zero state at the last valid step.
    inp2 = dict(inp, reward=inp["reward"].at[0, 4:].add(5.0), action=inp["action"].at[0, 4:].add(1.0))
    v2 = mg.objective_value(alpha, cfg, inp2, pi.at[0, 4:].add(3.0))
    # z-normalisation uses only valid steps, so the statistics are unchanged too.
    np.testing.assert_allclose(v2, v, rtol=1e-6, atol=1e-6)
    # A change at a valid step does change it.
    v3 = mg.objective_value(alpha, cfg, inp, pi.at[0, 1].add(1.0))
    assert abs(float(v3 - v)) > 1e-5
    # Per-step outputs are bounded by eta: with eta tiny the value is at most eta * valid steps / B.
    cfg_small = mg.ObjectiveConfig(**{**TINY.__dict__, "eta": 1e-3})
    vs = mg.objective_value(alpha, cfg_small, inp, pi * 100.0)
    assert abs(float(vs)) <= 1e-3 * float(mask.sum()) / 2 + 1e-9


def test_meta_gradient_matches_finite_differences():
    agent = _agent()
    with jax.enable_x64(True):
        state = _to64(agent.init(jax.random.PRNGKey(0)))
        alpha = _to64(mg.init_objective(jax.random.PRNGKey(1), TINY))
        w, mask = _windows(jax.random.PRNGKey(2), b=6)
        inputs = _to64(mg.objective_inputs(agent, state, _to64(w), mask))
        d = _to64(jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(x.size), x.shape), alpha))
        for k in (1, 2):
            f = jax.jit(lambda a: mg.meta_loss(a, TINY, agent, state.actor, state.critic, inputs, inner_steps=k,
                                               inner_lr=0.5))
            g = jax.jit(jax.grad(f))(alpha)
            analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
            eps = 1e-5
            shift = lambda s: jax.tree.map(lambda a, b: a + s * b, alpha, d)
            numeric = (f(shift(eps)) - f(shift(-eps))) / (2 * eps)
            assert abs(float(analytic)) > 1e-6  # the objective really moves the policy
            np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5, atol=1e-9)


def test_meta_loss_inner_steps_unrolled_by_hand():
    """Eq. 8 with k = 2: two explicit SGD steps on the SUM of L_alpha's per-step values over disjoint
    chunks (the authors' inner step), then -mean Q1 on the whole batch."""
    agent = _agent()
    state = agent.init(jax.random.PRNGKey(0))
    alpha = mg.init_objective(jax.random.PRNGKey(1), TINY)
    w, mask = _windows(jax.random.PRNGKey(2), b=6)
    inputs = mg.objective_inputs(agent, state, w, mask)
    lr = 0.3
    phi = state.actor
    for j in range(2):  # chunks of 6 // 3 = 2 windows: [0:2] then [2:4]
        chunk = jax.tree.map(lambda x: x[2 * j:2 * j + 2], inputs)
        pi = lambda p: agent.actor_net.apply(p, chunk["obs"])
        g = jax.grad(lambda p: jnp.sum(mg.objective_steps(alpha, TINY, chunk, pi(p))))(phi)
        phi = jax.tree.map(lambda p, gi: p - lr * gi, phi, g)
    a = agent.actor_net.apply(phi, inputs["obs"])
    expected = -jnp.mean(agent.critic_net.apply(state.critic, inputs["obs"], a)[0])
    got = mg.meta_loss(alpha, TINY, agent, state.actor, state.critic, inputs, inner_steps=2, inner_lr=lr)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert abs(float(got - mg.meta_loss(alpha, TINY, agent, state.actor, state.critic, inputs, 2, 0.0))) > 1e-6
    # The earlier inner loss (sum / windows of the chunk) is the same step with lr / 2 here.
    old = mg.meta_loss(alpha, TINY, agent, state.actor, state.critic, inputs, 2, 2 * lr, "window_mean")
    np.testing.assert_allclose(old, got, rtol=1e-6)


def test_saturation_share_on_fixed_pre_tanh_values():
    pre = jnp.asarray([[-3.5, -3.0, -2.9], [0.0, 2.99, 3.0001], [7.0, -8.0, 1.0]])
    assert float(mg.saturation_share(pre)) == pytest.approx(4 / 9)  # -3.5, 3.0001, 7, -8
    agent = _agent()
    actor = agent.actor_net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    pre, a = jax.jit(lambda o: (mg.pre_tanh(agent, actor, o), agent.actor_net.apply(actor, o)))(obs)
    np.testing.assert_allclose(jnp.tanh(pre), a, rtol=1e-6, atol=1e-7)


def test_stacked_value_normalisation_matches_the_authors_formula():
    """z(V_t), z(V_t+1) as the authors compute them: the window's values V(s_0..s_T-1) and V(s_T) stacked,
    standardised once over the batch, then V_t+1 zeroed after a terminal step; t/T the position in the
    window. Compared on fixed values, through the objective's actual input features."""
    rng = np.random.default_rng(0)
    b, t = 3, 4
    values = rng.normal(3.0, 2.0, size=(b, t + 1))  # the authors' [V(s_0), ..., V(s_T)] per window
    term = np.zeros((b, t))
    term[1, -1] = 1.0  # window 1 ends its episode with a terminal step
    mean, var = values.mean(), values.var()
    z = (values - mean) / np.sqrt(var + 1e-8)
    want_next, want_v = z[:, 1:] * (1.0 - term), z[:, :-1]
    with jax.enable_x64(True):
        inputs = dict(reward=jnp.asarray(rng.normal(size=(b, t))), t=jnp.full((b, t), 0.37),
                      v=jnp.asarray(values[:, :-1]), v_next_raw=jnp.asarray(values[:, 1:]),
                      v_next=jnp.asarray(values[:, 1:] * (1 - term)), terminated=jnp.asarray(term),
                      mask=jnp.ones((b, t), bool))
        feats = np.asarray(mg.scalar_features(inputs, mg.ObjectiveConfig()))  # [r, t/T, V_t+1, V_t]
        np.testing.assert_allclose(feats[..., 2], want_next, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(feats[..., 3], want_v, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(feats[..., 1], np.tile(np.arange(t) / t, (b, 1)))
        assert np.all(feats[1, -1, 2] == 0.0)
        # The earlier option: separate statistics, V_t+1 zeroed before; t/T from the buffer.
        legacy = mg.ObjectiveConfig(value_norm="separate", time_input="episode")
        f_old = np.asarray(mg.scalar_features(inputs, legacy))
        vn = values[:, 1:] * (1 - term)
        np.testing.assert_allclose(f_old[..., 2], (vn - vn.mean()) / np.sqrt(vn.var() + 1e-8), rtol=1e-10)
        np.testing.assert_allclose(f_old[..., 1], 0.37)
        # A window whose episode ends inside it: only its valid steps and the next state of its last
        # valid step enter the statistics.
        mask = np.ones((b, t), bool)
        mask[2, 2:] = False  # window 2: steps 0, 1 valid, V(s_2) is the next value of step 1
        inp2 = dict(inputs, mask=jnp.asarray(mask), v=inputs["v"].at[2, 2:].set(1e6),
                    v_next_raw=inputs["v_next_raw"].at[2, 2:].set(-1e6))
        stack = np.concatenate([values[:2].ravel(), values[2, :3]])
        z2 = lambda x: (x - stack.mean()) / np.sqrt(stack.var() + 1e-8)
        f2 = np.asarray(mg.scalar_features(inp2, mg.ObjectiveConfig()))
        np.testing.assert_allclose(f2[2, :2, 3], z2(values[2, :2]), rtol=1e-10)
        np.testing.assert_allclose(f2[2, :2, 2], z2(values[2, 1:3]), rtol=1e-10)
        np.testing.assert_allclose(f2[0, :, 3], z2(values[0, :-1]), rtol=1e-10)


def test_annealing_mixes_per_step_then_takes_one_mean():
    """The policy step's loss during annealing is mean_{b,t}(p * l_t - (1 - p) * Q1(s_t, pi(s_t))) (the
    authors'): L_alpha weighs one step's share, not the window's sum (T = 5 times more here, the earlier
    "window_mean" option)."""
    agent = _agent()
    p = 0.3

    @jax.jit
    def run(state, alpha, w, mask):
        inputs = mg.objective_inputs(agent, state, w, mask)

        def authors(phi):
            pi = agent.actor_net.apply(phi, inputs["obs"])
            l = mg.objective_steps(alpha, TINY, inputs, pi)  # zero at invalid steps
            q = mg.q1(agent, state.critic, inputs["obs"], pi)  # every stored step is a real transition
            return jnp.mean(p * l - (1 - p) * q)

        grads = {}
        for red in ("step_mean", "window_mean"):
            obj = mg.mixed_objective(agent, alpha, TINY, jnp.asarray([p, 1 - p, 0.0]), 0.97, red, reinforce=False)
            grads[red] = mg.policy_gradient(obj, state.actor, state, inputs)
        return jax.value_and_grad(authors)(state.actor), grads

    w, mask = _windows(jax.random.PRNGKey(2), b=4, t=5)
    (want_loss, want), grads = run(agent.init(jax.random.PRNGKey(0)), mg.init_objective(jax.random.PRNGKey(1), TINY),
                                   w, mask)
    g, m = grads["step_mean"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7), g, want)
    np.testing.assert_allclose(float(m["actor_loss"]), float(want_loss), rtol=1e-5)
    m_old = grads["window_mean"][1]
    np.testing.assert_allclose(float(m_old["pg_norm_objective"]), 5 * float(m["pg_norm_objective"]), rtol=1e-5)
    np.testing.assert_allclose(float(m_old["pg_norm_critic"]), float(m["pg_norm_critic"]), rtol=1e-6)
    assert float(m["objective_std"]) > 0.0


def test_meta_grad_monitor_counts_streaks_across_segments():
    c = mg.MetaGenRLConfig(collapse_threshold=1e-6, collapse_patience=4, learning_starts=100)
    groups = [mg.Group("envA", None, None, 2)]
    mon = mg.MetaGradMonitor(c, groups)
    seg1 = np.array([[1.0, 1e-7], [1.0, 1e-7], [1e-8, 1e-7], [1e-8, 1.0], [1e-8, 1e-9]])
    seg2 = np.array([[1e-9, 1e-9], [1e-9, 1e-9], [1.0, 1e-9], [1.0, 1e-9]])
    with pytest.warns(mg.MetaGradientCollapseWarning) as rec:
        assert mon.update({"envA": {"meta_grad_norm_steps": seg1}}) == []
        msgs = mon.update({"envA": {"meta_grad_norm_steps": seg2}})
    # agent 0: below from meta-step 3 on, the 4th consecutive one is meta-step 6; agent 1: from 5 on -> 8.
    assert len(msgs) == 2 and len(rec) == 2
    assert "agent 0 of envA" in msgs[0] and "meta-step 6 " in msgs[0] and "environment step 112" in msgs[0]
    assert "agent 1 of envA" in msgs[1] and "meta-step 8 " in msgs[1]
    s = mon.summary()
    assert s["per_agent"]["envA"]["first"] == [1.0, 1e-7] and s["per_agent"]["envA"]["last"] == [1.0, 1e-9]
    assert s["min"] == 1e-9 and s["meta_steps"] == 9


def test_population_with_td3_objective_updates_exactly_as_td3():
    agent = _agent()
    n = 3
    states = jax.vmap(lambda k: agent.init(k))(jax.random.split(jax.random.PRNGKey(0), n))
    ws = [jax.vmap(lambda k: _windows(k))(jax.random.split(jax.random.PRNGKey(s), n)) for s in (1, 2)]
    (w1, _), (w2, m2) = ws
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    alpha = mg.init_objective(jax.random.PRNGKey(4), TINY)
    # A policy with a large output layer, so that part of its actions saturate (|pre-tanh| > 3).
    states = states.replace(actor=jax.tree_util.tree_map_with_path(
        lambda path, x: x * 20.0 if "out" in jax.tree_util.keystr(path) else x, states.actor))

    @jax.jit
    def pop_update(mix):
        def one(s, a, b, mb, k):
            obj = mg.mixed_objective(agent, alpha, TINY, mix, 0.97)
            new, _, _, m = mg.update_agent(agent, s, a, b, mb, k, obj)
            return new, m
        return jax.vmap(one)(states, w1, w2, m2, keys)

    td3_update = jax.jit(agent.update)

    # Both ways the population reduces to TD3: the baseline variant (mix = [0, 1, 0]) and the
    # meta-training annealing at its start (p = 0: mix = [p, 1 - p, 0]).
    p = jnp.float32(0.0)
    for mix in (jnp.array([0.0, 1.0, 0.0]), jnp.stack([p, 1.0 - p, 0.0])):
        got, metrics = pop_update(mix)
        for i in range(n):
            s = jax.tree.map(lambda x: x[i], states)
            k1, k2 = jax.random.split(keys[i])
            flat = lambda w: mg.flatten_windows(jax.tree.map(lambda x: x[i], w))
            s, _ = td3_update(s, flat(w1), k1)
            s, _ = td3_update(s, flat(w2), k2)
            mine = jax.tree.map(lambda x: x[i], got)
            for name in ("actor", "critic", "actor_target", "critic_target", "step"):
                jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                             getattr(mine, name), getattr(s, name))
    # The saturation diagnostic against a hand count: pre-tanh = features @ W_out + b_out, computed in
    # numpy from the policy's features on the policy batch (w2).
    for i in range(n):
        actor = jax.tree.map(lambda x: np.asarray(x[i], np.float64), states.actor)
        feats = np.asarray(agent.actor_net.apply(jax.tree.map(lambda x: x[i], states.actor), w2["obs"][i],
                                                 method=lambda mod, o: mod.features(o)), np.float64)
        out = actor["params"]["out"]
        pre = feats @ out["kernel"] + out["bias"]
        want = np.mean(np.abs(pre) > 3.0)
        assert 0.05 < want < 0.95
        np.testing.assert_allclose(float(metrics["saturation"][i]), want, atol=1e-7)
    # ...and the learned objective does not.
    other, _ = pop_update(jnp.array([1.0, 0.0, 0.0]))
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), other.actor, got.actor)
    assert max(jax.tree.leaves(diff)) > 1e-6


def test_per_agent_meta_gradients_and_per_agent_clipping():
    """population_meta_grads gives each agent's own gradient (equal to a separate grad of its
    meta-loss); clip_per_agent clips each to the global norm as optax does, and reports the norms."""
    agent = _agent()
    n = 3
    with jax.enable_x64(True):  # float64: the per-agent gradients are tiny, compare them exactly
        states = _to64(jax.vmap(lambda k: agent.init(k))(jax.random.split(jax.random.PRNGKey(0), n)))
        w, mask = jax.vmap(lambda k: _windows(k, b=4))(jax.random.split(jax.random.PRNGKey(1), n))
        inputs = jax.vmap(lambda s, wi, mi: mg.objective_inputs(agent, s, wi, mi))(states, _to64(w), mask)
        alpha = _to64(mg.init_objective(jax.random.PRNGKey(2), TINY))
        g_pop, losses = jax.jit(lambda a: mg.population_meta_grads(a, TINY, agent, states.actor, states.critic,
                                                                   inputs, 1, 0.5))(alpha)
        grad_one = jax.jit(lambda a, c, i: jax.grad(mg.meta_loss)(alpha, TINY, agent, a, c, i, 1, 0.5))
        norms = []
        for i in range(n):
            at = lambda x: x[i]
            gi = grad_one(jax.tree.map(at, states.actor), jax.tree.map(at, states.critic), jax.tree.map(at, inputs))
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-8, atol=1e-14), g_pop, gi)
            norms.append(float(optax.tree.norm(gi)))
        assert losses.shape == (n,) and min(norms) > 1e-8
        clip = float(np.median(norms))  # one agent above, one at, one below the clip
        clipped, got_norms = mg.clip_per_agent(g_pop, clip)
        np.testing.assert_allclose(np.asarray(got_norms), norms, rtol=1e-10)
        for i in range(n):
            want = optax.clip_by_global_norm(clip).update(jax.tree.map(lambda x: x[i], g_pop), optax.EmptyState())[0]
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-16), clipped, want)


def test_gae_matches_a_hand_loop():
    w, mask = _windows(jax.random.PRNGKey(5), b=3, t=6)
    rng = np.random.default_rng(0)
    v, v_next = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    v_next = v_next * (1 - np.asarray(w["terminated"], float))
    inputs = dict(reward=w["reward"], v=jnp.asarray(v, jnp.float32), v_next=jnp.asarray(v_next, jnp.float32),
                  done=w["done"].astype(jnp.float32), mask=mask)
    gamma, lam = 0.99, 0.97
    got = np.asarray(mg.gae(inputs, gamma, lam))
    r, done, m = np.asarray(w["reward"]), np.asarray(w["done"], float), np.asarray(mask, float)
    want = np.zeros((3, 6))
    for b in range(3):
        nxt = 0.0
        for t in reversed(range(6)):
            delta = r[b, t] + gamma * v_next[b, t] - v[b, t]
            want[b, t] = m[b, t] * (delta + gamma * lam * (1 - done[b, t]) * nxt)
            nxt = want[b, t]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[0, 3:] == 0.0) and np.all(got[1, 4:] == 0.0)


def test_save_and_load_objective_roundtrip(tmp_path):
    cfg = mg.ObjectiveConfig(use_t=False, use_v_next=False)
    alpha = mg.init_objective(jax.random.PRNGKey(7), cfg)
    mg.save_objective(str(tmp_path / "obj"), alpha, cfg, {"stage": 3})
    back, cfg2, extra = mg.load_objective(str(tmp_path / "obj"))
    assert cfg2 == cfg and extra == {"stage": 3}
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), alpha, back)
    # A file written before the authors' architecture options existed loads with the earlier behaviour.
    old_cfg = mg.ObjectiveConfig(**mg.LEGACY_OBJECTIVE)
    mg.save_objective(str(tmp_path / "old"), mg.init_objective(jax.random.PRNGKey(8), old_cfg), old_cfg)
    meta_path = tmp_path / "old" / "objective.json"
    meta = json.loads(meta_path.read_text())
    meta["objective"] = {k: v for k, v in meta["objective"].items() if k not in mg.LEGACY_OBJECTIVE}
    meta_path.write_text(json.dumps(meta))
    assert mg.load_objective(str(tmp_path / "old"))[1] == old_cfg


@pytest.mark.slow
def test_population_meta_train_smoke_and_collapse_warning():
    """Two environments with different action sizes (1 and 2) share one objective, which moves; the
    diagnostics come out per agent. Then the same compiled program with the objective's parameters
    all zero (its output is then constant: an exactly zero meta-gradient) makes the monitor warn,
    naming the agent and the meta-step."""
    # the population that meta_train builds for _tiny_scale (the resume test below): that test reads this
    # test's init and segment programs from the persistent compilation cache
    c = dataclasses.replace(_tiny_scale().train, envs=("gymnax/Pendulum-v1", "gymnax/Reacher-misc"), agents_per_env=2)
    groups = mg.make_groups(c)
    init, seg, _ = mg.make_population(c, groups, meta_train=True)
    init, seg = jax.jit(init), jax.jit(seg)
    s = init(jax.random.PRNGKey(0))
    alpha0 = s.alpha
    s, m = seg(s)
    m = jax.tree.map(np.asarray, m)
    mon = mg.MetaGradMonitor(c, groups)
    assert mon.update(m) == []
    for g in groups:
        mg_ = m[g.name]
        assert mg_["eval_return"].shape == (2,)
        assert np.all(np.isfinite(mg_["meta_loss"]))
        assert int(mg_["env_steps"][0]) == 60
        assert "meta_grad_norm_steps" not in mg_  # taken by the monitor
        for k in ("meta_grad_norm", "meta_grad_norm_min", "saturation", "objective_std", "pg_norm_objective",
                  "pg_norm_critic"):
            assert mg_[k].shape == (2,) and np.all(np.isfinite(mg_[k])), k
        assert np.all(mg_["meta_grad_norm"] > c.collapse_threshold)
        assert np.all((0.0 <= mg_["saturation"]) & (mg_["saturation"] <= 1.0))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), s.alpha, alpha0)
    assert max(jax.tree.leaves(moved)) > 0.0

    zero = jax.tree.map(jnp.zeros_like, alpha0)
    s0, m0 = seg(init(jax.random.PRNGKey(0), alpha=zero))
    m0 = jax.tree.map(np.asarray, m0)
    mon = mg.MetaGradMonitor(c, groups)
    with pytest.warns(mg.MetaGradientCollapseWarning) as rec:
        msgs = mon.update(m0)
    assert len(msgs) == 4 and len(rec) == 4  # every agent, once: at its 4th zero meta-gradient
    for g in groups:
        assert np.all(m0[g.name]["meta_grad_norm"] == 0.0)
        for i in range(2):
            assert any(f"agent {i} of {g.name}" in x and "meta-step 4 " in x for x in msgs)
    jax.tree.map(lambda a: np.testing.assert_array_equal(a, 0.0), s0.alpha)


# ----------------------------------------------------------------------------------------------------
# The on-policy baselines (PPO, REINFORCE with GAE)
# ----------------------------------------------------------------------------------------------------
def test_ppo_clipped_loss_against_hand_computation():
    from metarl.agents import onpolicy as op

    cfg = op.make_config("ppo", num_envs=1, rollout=4, total_steps=4, eval_every=4, minibatch_size=None)
    env = _toy_track_env()
    _, _, fns = op.make_onpolicy(cfg, env)
    with jax.enable_x64(True):
        pi = _to64(fns["policy"].init(jax.random.PRNGKey(0), jnp.zeros((1, 1))))
        obs = jnp.asarray([[0.3], [-0.8], [0.5], [0.1]])
        action = jnp.asarray([[0.2], [-0.1], [0.9], [-0.4]])
        adv = jnp.asarray([1.0, -1.0, 2.0, -0.5])
        mean, log_std = fns["policy"].apply(pi, obs)
        mean, log_std = np.asarray(mean)[:, 0], np.asarray(log_std)[:, 0]
        logp_new = -0.5 * ((np.asarray(action)[:, 0] - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
        ratio = np.array([0.5, 1.0, 1.5, 1.1])  # pi / pi_old per sample
        logp_old = logp_new - np.log(ratio)
        a_std = (np.asarray(adv) - np.mean(adv)) / (np.std(adv) + 1e-8)
        want = -np.mean(np.minimum(ratio * a_std, np.clip(ratio, 0.8, 1.2) * a_std))
        batch = dict(obs=obs, action=action, logp=jnp.asarray(logp_old), adv=adv)
        got, aux = fns["pi_loss"](pi, batch)
        np.testing.assert_allclose(float(got), want, rtol=1e-10)
        np.testing.assert_allclose(float(aux["clip_frac"]), 0.5)  # samples 0 and 2 are outside [0.8, 1.2]
        # d loss / d logp: -r A / N where the unclipped term is the minimum, 0 where the clipped one is.
        g = jax.grad(lambda lp: op.ppo_policy_loss(lp, jnp.asarray(logp_old), jnp.asarray(a_std), 0.2)[0])(
            jnp.asarray(logp_new))
        unclipped = ratio * a_std <= np.clip(ratio, 0.8, 1.2) * a_std
        np.testing.assert_allclose(np.asarray(g), np.where(unclipped, -ratio * a_std / 4, 0.0), rtol=1e-10, atol=1e-14)
        assert not unclipped.all() and unclipped.any()
        # At the old policy (r = 1) PPO's gradient is REINFORCE's.
        at_old = dict(batch, logp=jnp.asarray(logp_new))
        g_ppo = jax.grad(lambda p: fns["pi_loss"](p, at_old)[0])(pi)
        g_pg = jax.grad(lambda p: op.reinforce_policy_loss(
            op.gaussian_logp(*fns["policy"].apply(p, obs), action), op.standardise(adv))[0])(pi)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), g_ppo, g_pg)


def test_rollout_advantages_reuse_gae_with_truncation_and_termination():
    from metarl.agents import onpolicy as op

    T, N, gamma, lam = 6, 2, 0.9, 0.8
    rng = np.random.default_rng(1)
    r, v, vr = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=(T, N))
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[1, 0] = True  # env 0 terminates at t = 1: no bootstrap
    trunc[3, 1] = True  # env 1 hits the time limit at t = 3: bootstrap from the state reached, cut the trace
    done = term | trunc
    adv, target = op.rollout_advantages(*(jnp.asarray(x) for x in (r, v, vr, term, done)), gamma, lam)
    want = np.zeros((T, N))
    for n in range(N):
        nxt = 0.0  # the rollout's last step: bootstrap from the state it reached, nothing after it
        for t in reversed(range(T)):
            delta = r[t, n] + gamma * (0.0 if term[t, n] else vr[t, n]) - v[t, n]
            want[t, n] = delta + gamma * lam * (0.0 if done[t, n] else nxt)
            nxt = want[t, n]
    np.testing.assert_allclose(np.asarray(adv), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(target), want + v, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="valid choices: ppo, reinforce"):
        op.make_config("trpo")


def _toy_track_env():
    """Observe s ~ U(-1, 1), reward -(a - s)^2, a fresh s every step, 10-step episodes (mg.track_env)."""
    return mg.track_env()


@pytest.mark.learning
def test_ppo_learns_to_track_a_target():
    """8 seeds, 1024 steps of PPO each: the deterministic policy's return per 10-step episode (squared
    tracking error; about -4 at initialisation, 0 is perfect) rises to an interquartile mean over seeds
    above -1.5, and improves on its own start by more than 1. Measured under several ISAs and seed sets:
    IQM after -0.5 to -0.9, improvement 2.4 to 3.9; with pi_lr = 0 (a broken learner) after -2.9 to -4.2,
    improvement about 0."""
    from metarl import stats
    from metarl.agents import onpolicy as op

    cfg = op.make_config("ppo", num_envs=8, rollout=32, total_steps=1024, eval_every=1024, eval_episodes=16,
                         hidden=(16, 16))
    init, seg, fns = op.make_onpolicy(cfg, _toy_track_env())
    st = jax.jit(jax.vmap(init))(jax.random.split(jax.random.PRNGKey(0), 8))
    before = np.asarray(jax.jit(jax.vmap(fns["evaluate"]))(st.pi, jax.random.split(jax.random.PRNGKey(1), 8)))
    st, m = jax.jit(jax.vmap(seg))(st)
    after = np.asarray(m["eval_return"]).reshape(8)
    assert np.all(np.asarray(m["env_steps"]) == 1024)
    assert stats.iqm(after) > -1.5, (before, after)
    assert stats.iqm(after - before) > 1.0, (before, after)


# ----------------------------------------------------------------------------------------------------
# Meta-test mode
# ----------------------------------------------------------------------------------------------------
def test_meta_test_loaded_objective_td3_mix_and_plain_td3_unroll(tmp_path):
    """One meta-test population of four agents on the same seed: (in-memory alpha, learned),
    (saved-then-loaded alpha, learned), (alpha, TD3 mix), (another alpha, TD3 mix). After a segment the
    first two are identical, the last two are identical (the TD3 mix ignores alpha), the learned and TD3
    agents differ, and the TD3 agent equals a hand-unrolled loop of the foundation's TD3 ``update``."""
    from metarl.meta.metagenrl.runs import _same_seeds
    from metarl import buffers

    c = mg.MetaGenRLConfig(envs=("gymnax/Pendulum-v1",), total_steps=40, learning_starts=20, anneal_steps=0,
                           eval_every=20, eval_episodes=1, batch_windows=4, window=5, hidden=(8,),
                           max_episode_steps=10, objective=TINY, policy_clip_norm=None)
    alpha = mg.init_objective(jax.random.PRNGKey(1), TINY)
    other = mg.init_objective(jax.random.PRNGKey(2), TINY)
    mg.save_objective(str(tmp_path / "obj"), alpha, TINY)
    loaded, cfg_loaded, _ = mg.load_objective(str(tmp_path / "obj"))
    assert cfg_loaded == TINY
    alphas = jax.tree.map(lambda *x: jnp.stack(x), alpha, loaded, alpha, other)
    mixes = jnp.asarray([mg.VARIANTS["learned"]] * 2 + [mg.VARIANTS["td3"]] * 2)
    (g,) = mg.make_groups(c, n=4)
    init, seg, _ = mg.make_population(c, [g], meta_train=False)
    s = jax.jit(lambda k: init(k, variants=[(alphas, mixes)]))(jax.random.PRNGKey(0))
    s = s.replace(groups=(_same_seeds(s.groups[0], 4, 1),))
    start = jax.tree.map(lambda x: x[2], s.groups[0])
    s2, m = jax.jit(seg)(s)
    agents = s2.groups[0].agent
    at = lambda i: jax.tree.map(lambda x: x[i], agents)
    same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
    same(at(0), at(1))
    same(at(2), at(3))
    gap = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), at(0).actor, at(2).actor)
    assert max(jax.tree.leaves(gap)) > 1e-6

    agent, env = g.agent, g.env
    flat = mg.flatten_windows

    @jax.jit
    def cycle(run, _):
        key, ka1, ke1, ka2, ke2, kw1, kw2, ku = jax.random.split(run.key, 8)
        st, env_state, obs, buf = run.agent, run.env_state, run.obs, run.buffer
        for ka, ke in ((ka1, ke1), (ka2, ke2)):
            a = agent.act(st, obs, ka, True)
            t = env_state.t.astype(jnp.float32) / env.spec.max_episode_steps
            env_state, ts = env.step(env_state, a, ke)
            buf = buffers.add(buf, dict(obs=obs, action=a, reward=ts.reward, next_obs=ts.next_obs,
                                        terminated=ts.terminated, done=ts.done, t=t))
            obs = ts.obs
        w1, _ = buffers.sample_windows(buf, kw1, c.batch_windows, c.window)
        w2, _ = buffers.sample_windows(buf, kw2, c.batch_windows, c.window)
        k1, k2 = jax.random.split(ku)
        st, _ = agent.update(st, flat(w1), k1)
        st, _ = agent.update(st, flat(w2), k2)
        return run.replace(agent=st, env_state=env_state, obs=obs, buffer=buf, key=key), None

    run, _ = jax.lax.scan(cycle, start, None, length=c.eval_every // 2)
    for name in ("actor", "critic", "actor_target", "critic_target", "step"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     getattr(at(2), name), getattr(run.agent, name))
    assert int(m[g.name]["env_steps"][2]) == c.total_steps


# ----------------------------------------------------------------------------------------------------
# The benchmark's claims (summary.json), its stages, resume and command line
# ----------------------------------------------------------------------------------------------------
def test_summary_json_shape_fraction_and_verdicts(tmp_path):
    """summary.json as the automated checks read it, built from synthetic per-seed final returns: the
    exact keys, IQM rows equal to metarl.stats', the fraction of TD3's improvement by hand, and the
    verdicts of both claims where the answer is plain (and inconclusive where it is not)."""
    from benchmarks import metagenrl as bm
    from metarl import stats
    from metarl.train import write_json

    rng = np.random.default_rng(0)
    random_ = -1200 + 10 * rng.normal(size=6)
    td3 = -200 + 10 * rng.normal(size=6)
    finals = {"Pendulum": {"obj": -300 + 10 * rng.normal(size=6), "TD3": td3, "random": random_},  # ~90% of TD3's gain
              "MountainCar": {"obj": -20 + rng.normal(size=6), "TD3": -1 + 0.1 * rng.normal(size=6),
                              "random": -7 + 0.2 * rng.normal(size=6)}}  # learned below random
    mgn = {"first": 0.3, "last": 0.05, "min": 1e-4, "per_agent": {}}
    s = bm.build_summary(finals, "Pendulum", "MountainCar", "obj", 6, 12.5, mgn)
    write_json(str(tmp_path / "summary.json"), s)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert {"seen", "unseen", "seeds", "wall_s", "meta_grad_norm"} <= set(s)
    assert s["seeds"] == 6 and s["wall_s"] == 12.5 and s["meta_grad_norm"] == {"first": 0.3, "last": 0.05, "min": 1e-4}
    for kind, env in (("seen", "Pendulum"), ("unseen", "MountainCar")):
        c = s[kind]
        assert {"env", "learned", "td3", "random", "fraction_of_td3_improvement"} <= set(c) and c["env"] == env
        for k, v in (("learned", "obj"), ("td3", "TD3"), ("random", "random")):
            row = stats.summary_row(finals[env][v])
            assert c[k]["iqm"] == pytest.approx(row["iqm"]) and c[k]["ci"] == pytest.approx(row["ci"])
            assert len(c[k]["ci"]) == 2 and c[k]["ci"][0] <= c[k]["iqm"] <= c[k]["ci"][1]
        iq = {k: stats.iqm(x) for k, x in finals[env].items()}
        assert c["fraction_of_td3_improvement"] == pytest.approx((iq["obj"] - iq["random"]) / (iq["TD3"] - iq["random"]))
    assert s["seen"]["verdict"] == stats.REPRODUCES  # ~0.9 of the improvement, tight intervals
    assert s["unseen"]["verdict"] == stats.CONTRADICTS  # every learned seed below every random one
    assert s["unseen"]["fraction_of_td3_improvement"] < 0
    # Learned at the random policy's level on the seen env: the 70% claim is contradicted; TD3 no better
    # than random: no fraction, and the claim cannot be decided.
    flat = dict(finals, Pendulum=dict(finals["Pendulum"], obj=random_ + 5))
    assert bm.build_summary(flat, "Pendulum", "MountainCar", "obj", 6, 1.0, mgn)["seen"]["verdict"] == stats.CONTRADICTS
    dead = dict(finals, Pendulum=dict(finals["Pendulum"], TD3=random_ - 1))
    c = bm.build_summary(dead, "Pendulum", "MountainCar", "obj", 6, 1.0, mgn)["seen"]
    assert c["fraction_of_td3_improvement"] is None and c["verdict"] == stats.INCONCLUSIVE
    # With zero-action rows: the stricter comparison and its own row for the results pages. Learned above
    # random but below doing nothing (MountainCar's trap): beats random, contradicted against zero action.
    z = {e: dict(finals[e], **{"zero action": np.zeros(6) if e == "MountainCar" else random_ + 3}) for e in finals}
    z["MountainCar"]["obj"] = -1.2 + 0.1 * rng.normal(size=6)
    sz = bm.build_summary(z, "Pendulum", "MountainCar", "obj", 6, 1.0, mgn)
    u = sz["unseen_vs_zero_action"]
    assert sz["unseen"]["verdict"] == stats.REPRODUCES and u["verdict"] == stats.CONTRADICTS
    assert u["iqm"] == pytest.approx(stats.iqm(z["MountainCar"]["obj"])) and u["iqm_b"] == 0.0
    assert sz["seen_vs_zero_action"]["verdict"] == stats.REPRODUCES  # ~-300 against ~-1197
    assert "zero_action" not in s["seen"] and "seen_vs_zero_action" not in s  # absent without the rows
    # Table 2 in the paper's layout shows the same numbers: ours as IQM [CI] beside the paper's columns, and
    # the verdict column carries the learned row's two claims; reference rows have none.
    from _markdown import IQM_CI, tables

    results = {e: {v: {"eval_return": np.stack([x, x], 1)} for v, x in f.items()} for e, f in finals.items()}
    header, rows = bm.build_table(None, results, ["obj"])
    bm.add_verdicts(header, rows, s, "obj")
    t = tables("# T\n\n" + bm.to_markdown(header, rows))["T"]
    ours = next(r for r in t if r["method"] == "MetaGenRL (ours)")
    assert IQM_CI.match(ours["Pendulum (ours)"]) and ours["Cheetah (paper)"] == "n/a"
    assert ours["Pendulum (ours)"] == bm.iqm_cell(s["seen"]["learned"]["iqm"], s["seen"]["learned"]["ci"])
    assert ours["verdict (ours)"] == "Pendulum (seen): reproduces; MountainCar (unseen): contradicts"
    td3 = next(r for r in t if r["method"] == "DDPG/TD3")
    assert td3["Cheetah (paper)"] == "8315" and td3["verdict (ours)"] == "- (reference)"
    assert next(r for r in t if r["method"] == "EPG")["verdict (ours)"] == "not run"


def test_finished_stages_are_read_back_and_other_settings_refused(tmp_path):
    from benchmarks import metagenrl as bm
    from metarl.train import ConfigMismatch

    calls = []

    def work():
        calls.append(1)
        return {"x": np.arange(3.0), "nan": float("nan")}

    out = str(tmp_path)
    r1, reused1 = bm.stage(out, "meta_test", "sha-a", work, resume=False)
    r2, reused2 = bm.stage(out, "meta_test", "sha-a", work, resume=True)
    assert len(calls) == 1 and not reused1 and reused2
    assert r1 == r2 == {"x": [0.0, 1.0, 2.0], "nan": None}  # the JSON form, fresh or read back
    with pytest.raises(ConfigMismatch):
        bm.stage(out, "meta_test", "sha-b", work, resume=True)
    bm.stage(out, "meta_test", "sha-b", work, resume=False)  # a new run replaces it
    assert len(calls) == 2


def _one_line_error(capsys, argv, code=2):
    import jax

    from benchmarks import metagenrl as bm

    cache = jax.config.jax_compilation_cache_dir
    try:
        with pytest.raises(SystemExit) as e:
            bm.main(argv)
    finally:
        jax.config.update("jax_compilation_cache_dir", cache)
    err = capsys.readouterr().err
    assert e.value.code == code and err.count("\n") == 1, err
    return err


def test_benchmark_command_line_bad_scale_and_resume_are_one_line(tmp_path, capsys):
    from benchmarks import metagenrl as bm
    from experiments import metagenrl as ex
    from metarl.train import write_json

    err = _one_line_error(capsys, ["--scale", "huge"])
    assert "huge" in err and "quick, medium, paper" in err
    out = str(tmp_path / "run")
    err = _one_line_error(capsys, ["--scale", "medium", "--out", out, "--resume"])
    assert "nothing to resume" in err and "without --resume" in err
    # An interrupted quick run whose settings differ from today's quick scale (another seed count).
    os.makedirs(out)
    other = dataclasses.replace(ex.get_scale("quick"), test_seeds=3)
    write_json(os.path.join(out, "run.json"), {"settings": bm.run_settings(other), "status": "interrupted"})
    err = _one_line_error(capsys, ["--scale", "quick", "--out", out, "--resume"])
    assert "other settings" in err and "scale.test_seeds (3 -> 2)" in err
    err = _one_line_error(capsys, ["--scale", "quick", "--out", out])  # a new run over an unfinished one
    assert "unfinished" in err and "--resume" in err
    err = _one_line_error(capsys, ["--scale", "quick", "--ablations", "--resume"])
    assert "--ablations" in err


def _tiny_scale(**kw):
    """The smoke test's population in a Scale (the init programs are shared through the compilation cache)."""
    from experiments import metagenrl as ex

    c = mg.MetaGenRLConfig(total_steps=100, learning_starts=40, anneal_steps=10, eval_every=20, eval_episodes=1,
                           buffer_size=60, batch_windows=4, window=5, hidden=(8,), max_episode_steps=10,
                           objective=TINY, collapse_patience=4)
    return ex.Scale("tiny", c, c, total_agents=4, test_seeds=2, stages=2,
                    envs={"Pendulum": "gymnax/Pendulum-v1", "Reacher": "gymnax/Reacher-misc"},
                    train_sets=(("Pendulum", "Reacher"),), **kw)


def test_command_line_meta_trains_then_meta_tests_the_saved_objective(tmp_path, monkeypatch, capsys):
    """``meta-train`` then ``meta-test --objective L=<out>/final`` through the command line (a tiny scale): the
    meta-test loads the saved objective, trains fresh agents with it and records them under its label."""
    from experiments import metagenrl as ex

    scale = _tiny_scale()
    monkeypatch.setattr(ex, "get_scale", lambda name: scale)
    train_out, test_out = tmp_path / "train", tmp_path / "test"
    ex.main(["meta-train", "--no-progress", "--out", str(train_out)])
    ex.main(["meta-test", "--objective", f"L={train_out / 'final'}", "--test", "Pendulum", "--no-baselines",
             "--no-progress", "--out", str(test_out)])
    with open(test_out / "meta_test.json") as f:
        rec = json.load(f)
    assert list(rec["results"]) == ["Pendulum"] and list(rec["results"]["Pendulum"]) == ["L"]
    assert np.isfinite(np.asarray(rec["results"]["Pendulum"]["L"]["eval_return"], float)).all()
    assert "Pendulum     L" in capsys.readouterr().out


@pytest.mark.slow
def test_meta_train_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    """A meta-training stopped after its first segment (as SIGINT does: checkpoint, then Interrupted)
    and resumed gives the same objective, stage objectives, metrics and monitor record, bit for bit, as
    one run straight through; the checkpoint is gone once the objective is final, and a checkpoint
    written with other settings is refused in one line naming the difference."""
    from metarl.driver import segments
    from metarl.meta.metagenrl import runs as ex
    from metarl.train import ConfigMismatch, Interrupted

    scale = _tiny_scale()
    train = ("Pendulum", "Reacher")
    whole = ex.meta_train(scale, train, str(tmp_path / "whole"), progress=False)
    stop = segments.StopFlag()
    update = mg.MetaGradMonitor.update

    def update_then_interrupt(self, m):  # as the first Ctrl-C arriving during segment 1: finish it, checkpoint, stop
        stop.requested = True
        return update(self, m)

    monkeypatch.setattr(mg.MetaGradMonitor, "update", update_then_interrupt)
    part = str(tmp_path / "part")
    with pytest.raises(Interrupted, match="after segment 1 of 3"):
        ex.meta_train(scale, train, part, progress=False, stop=stop)
    monkeypatch.undo()
    assert os.path.isdir(os.path.join(part, segments.CHECKPOINT)) and not os.path.exists(os.path.join(part, "final"))
    assert not [f for f in os.listdir(part) if ".tmp" in f]  # nothing half-written
    other = dataclasses.replace(scale, train=dataclasses.replace(scale.train, objective_lr=3e-4))
    with pytest.raises(ConfigMismatch, match=r"config.objective_lr \(0.001 -> 0.0003\)"):
        ex.meta_train(other, train, part, progress=False, resume=True)
    resumed = ex.meta_train(scale, train, part, progress=False, resume=True)
    assert not os.path.exists(os.path.join(part, segments.CHECKPOINT))
    assert resumed["alpha_sha256"] == whole["alpha_sha256"]
    for k in ("stage_1", "stage_2", "final"):
        a, _, _ = mg.load_objective(whole["paths"][k])
        b, _, _ = mg.load_objective(resumed["paths"][k])
        jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, resumed["metrics"], whole["metrics"])
    np.testing.assert_array_equal(resumed["meta_grad_norm"], whole["meta_grad_norm"])
    assert resumed["meta_grad_summary"] == whole["meta_grad_summary"]


def test_random_policy_rows_and_toy_track_task():
    """The random-policy rows: uniformly random actions on toy/track score -20/3 per 10-step episode in
    expectation (E(a - s)^2 = 1/3 + 1/3); episodes end at the limit; every seed/evaluation has its own keys."""
    env = mg.make_env("toy/track")
    assert env.spec.max_episode_steps == 10 and env.spec.action_dim == 1
    f = jax.jit(jax.vmap(lambda k: mg.random_policy_return(env, k, 50)))
    r = np.asarray(f(jax.random.split(jax.random.PRNGKey(0), 40)))
    assert len(set(r.tolist())) == 40
    # 2000 episodes, each a sum of 10 iid terms of variance Var((a - s)^2) = 16/15 - 4/9: sd of the mean 0.056.
    assert abs(r.mean() + 20 / 3) < 0.2
    s, ts = env.reset(jax.random.PRNGKey(1))
    _, ts2 = env.step(s, ts.obs, jax.random.PRNGKey(2))  # acting a = s is perfect
    assert float(ts2.reward) == 0.0
    # The zero-action rows: a = 0 scores -10 E[s^2] = -10/3 per episode (sd of the mean of 2000 episodes:
    # sqrt(10 Var(s^2)) / sqrt(2000) = sqrt(10 * 4/45) / 44.7 = 0.021).
    z = np.asarray(jax.jit(jax.vmap(lambda k: mg.zero_action_return(env, k, 50)))(jax.random.split(jax.random.PRNGKey(0), 40)))
    assert abs(z.mean() + 10 / 3) < 0.1 and len(set(z.tolist())) == 40


TOY_OBJECTIVE = mg.ObjectiveConfig(action_layers=(16, 16, 16), scalar_layers=(16, 16, 8), lstm_units=16,
                                   out_layers=(16, 16))


def _toy_scale(**train_kw):
    """toy/track (mg.track_env): 8 agents meta-train for 3k steps (500 random, no annealing: TD3 solves
    the task within a few hundred steps, so an annealed population would hand the objective finished
    policies only), 16-16 networks, 8 windows of 10 steps; meta-test 8 seeds of 2.5k steps."""
    from experiments import metagenrl as ex

    c = mg.MetaGenRLConfig(total_steps=3000, learning_starts=500, anneal_steps=0, eval_every=500, eval_episodes=10,
                           buffer_size=3000, batch_windows=8, window=10, hidden=(16, 16), objective=TOY_OBJECTIVE,
                           **train_kw)
    test = dataclasses.replace(c, total_steps=2500, buffer_size=2500)
    return ex.Scale("toy", c, test, total_agents=8, test_seeds=8, stages=1, envs={"Track": "toy/track"},
                    train_sets=(("Track",),), seen="Track", unseen="Track", baselines=("TD3",))


def toy_claim(tmp_path, **train_kw):
    """Meta-train on toy/track, then train 8 fresh agents with the final objective, 8 with the initial
    objective (before any meta-update) and 8 with TD3 (one program, same seeds) and evaluate the random
    policy: (the seen-claim entry of summary.json, per-seed final returns, the meta-training record)."""
    from benchmarks import metagenrl as bm
    from metarl.meta.metagenrl import runs as ex

    scale = _toy_scale(**train_kw)
    r = ex.meta_train(scale, ("Track",), str(tmp_path / "obj"), progress=False)
    mt = ex.meta_test(scale, {"learned": r["paths"]["final"], "initial": r["paths"]["initial"]}, ("Track",),
                      baselines=("TD3",), progress=False)
    rnd = ex.random_test(scale, ("Track",))
    res = dict(mt["results"]["Track"], **rnd["results"]["Track"])
    f = {k: bm.final_scores(v) for k, v in res.items()}
    return bm.env_claims("Track", f["learned"], f["TD3"], f["random"], "seen"), f, r


# The toy learning test's bar: meta-training must raise the IQM of the fresh agents' final return by this
# much over the initial objective's (same seeds, same budget; TD3 - random is ~6.5 on toy/track).
META_TRAINING_GAIN = 1.0


@pytest.mark.learning
@pytest.mark.slow
def test_meta_trained_objective_trains_fresh_agents_on_toy_task(tmp_path):
    """The small learning test that can fail: does meta-training improve the objective? On toy/track TD3
    gets within 0.5 of the optimum (0) in ~1k steps and the random policy scores -20/3. An objective
    meta-trained there (8 agents, 3k steps) and the same objective before any meta-update each train 8
    fresh agents (one vmapped program, same seeds); meta-training must raise the IQM of their final return
    by >= META_TRAINING_GAIN. A broken learner (objective learning rate 0: the final objective is the
    initial one) gains exactly 0 and fails.

    Measured on an AMD EPYC Zen 5 (family 26) under its three XLA code paths (default AVX-512,
    --xla_cpu_max_isa=AVX2, =AVX): gains 2.83 / 6.14 / 7.72 (initial objective IQM -9.3 on all three, a
    broken learner 0.00 on all). How far the fresh agents get is not stable across code paths: the share of
    TD3's improvement over the random policy (IQM) was 0.05 / 0.55 / 0.79 there and 0.34 / 0.73 / 0.47
    earlier (Intel Xeon AVX-512; EPYC Zen 4 AVX-512 and AVX2), the count of fresh agents above -2.0
    (agents that use their observation) 1 / 0 / 5 and 3 / 5 / 3 of 8, so neither is asserted (docs/
    metagenrl.md, 'The learning test'; both are printed on failure).
    """
    from metarl import stats

    claim, f, r = toy_claim(tmp_path)
    assert claim["td3"]["iqm"] - claim["random"]["iqm"] > 4.0, f  # TD3 learns the task in this budget
    gain = stats.iqm(f["learned"]) - stats.iqm(f["initial"])
    assert gain >= META_TRAINING_GAIN, (gain, claim["fraction_of_td3_improvement"], f)
