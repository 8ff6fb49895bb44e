"""The in-graph non-finite guard reads the agent's online parameters after every update and the whole state at
every evaluation point (metarl.agents.base.online_parameters, metarl.train.program). These tests check the
reduction against numpy, the argument that makes the probe exact (a non-finite gradient makes the parameter
non-finite at the same Adam step; the one exception, a finite gradient whose square overflows, leaves only the
second moment infinite), and both paths in a compiled SAC run with a fault injected at a known update."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import train as T
from metarl.agents import make_agent
from metarl.agents.base import adam, apply_grads, online_parameters, soft_update
from metarl.train.program import _tree_nonfinite


def _reference(tree) -> bool:
    return any(not np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.inexact))


def test_tree_nonfinite_matches_numpy_for_every_position_and_value():
    rng = np.random.default_rng(0)
    base = {"w": rng.normal(size=(7, 5)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32),
            "s": np.float32(2.0), "n": np.arange(4, dtype=np.int32), "empty": np.zeros((0, 3), np.float32),
            "half": rng.normal(size=(3,)).astype(np.float16)}
    check = jax.jit(_tree_nonfinite)
    assert not bool(check(base)) and not _reference(base)
    assert not bool(check({"n": np.arange(3), "empty": np.zeros((0,), np.float32)}))  # nothing to read
    cases = 0
    for name in ("w", "b", "s", "half"):
        for bad in (np.nan, np.inf, -np.inf):
            for _ in range(3):
                tree = {k: np.array(v, copy=True) for k, v in base.items()}
                x = tree[name]
                idx = tuple(int(rng.integers(d)) for d in x.shape)
                x[idx] = bad
                assert bool(check(tree)) and _reference(tree), (name, bad, idx)
                cases += 1
    # large finite magnitudes are not flagged (no sum that could overflow)
    big = {"a": np.full((4,), 3e38, np.float32), "b": np.full((4,), -3e38, np.float32)}
    assert not bool(check(big)) and not _reference(big)
    assert cases == 36


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_gradient_makes_the_parameter_nonfinite_at_the_same_adam_step(bad):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones((3,))}
    opt = adam(1e-3).init(params)
    g = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), params)
    for _ in range(3):  # non-zero moments first
        params, opt = apply_grads(params, opt, g)
    g_bad = {"w": g["w"].at[1, 2].set(bad), "b": g["b"]}
    new, new_opt = apply_grads(params, opt, g_bad)
    assert bool(_tree_nonfinite(new))
    assert not np.isfinite(np.asarray(new["w"][1, 2])) and np.isfinite(np.asarray(new["b"])).all()
    # the targets of finite parameters stay finite (a convex combination)
    assert not bool(_tree_nonfinite(soft_update(params, params, 0.005)))


def test_an_overflowing_square_leaves_only_the_second_moment_infinite():
    """The exception the evaluation point's full check is there for: |g| > 1.8e19 is finite but g**2 is not."""
    params = {"w": jnp.zeros((3,))}
    opt = adam(1e-3).init(params)
    new, new_opt = apply_grads(params, opt, {"w": jnp.array([0.0, 1e20, 0.0])})
    assert not bool(_tree_nonfinite(new)) and bool(_tree_nonfinite(new_opt))


L, E = 64, 40  # warm-up steps; env steps per evaluation point
CFG = T.TrainConfig(algo="sac", env="gymnax/Pendulum-v1", seeds=1, total_steps=L + 2 * E, learning_starts=L,
                    eval_every=E, eval_episodes=1, max_episode_steps=50,
                    agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16))
K_MOMENT, K_PARAM = 7, E + 13  # updates (state.step after them) at which a fault is injected


def _faulty_sac(spec):
    """SAC whose update K_MOMENT makes one critic second moment inf (its parameter stays finite) and whose
    update K_PARAM makes one critic weight NaN."""
    agent = make_agent("sac", spec, **CFG.agent)
    assert agent.extras["finite_probe"] is online_parameters

    def update(state, batch, key):
        state, m = agent.update(state, batch, key)
        adam_state = state.critic_opt.inner_state[0]
        nu = _set_first(adam_state.nu, jnp.inf, state.step == K_MOMENT)
        inner = (adam_state._replace(nu=nu),) + tuple(state.critic_opt.inner_state[1:])
        state = state.replace(critic_opt=state.critic_opt._replace(inner_state=inner),
                              critic=_set_first(state.critic, jnp.nan, state.step == K_PARAM))
        return state, m

    return agent._replace(update=update)


def _set_first(tree, value, when):
    leaves, treedef = jax.tree.flatten(tree)
    i = max(range(len(leaves)), key=lambda j: leaves[j].size)  # the largest leaf: a hidden layer's kernel
    x = leaves[i]
    leaves[i] = jnp.where(when, x.at[(0,) * x.ndim].set(value), x)
    return jax.tree.unflatten(treedef, leaves)


def test_guard_flags_a_nonfinite_parameter_at_its_update_and_a_moment_at_the_evaluation_point():
    train = T.make_train(CFG, agent_fn=_faulty_sac)
    run, m = jax.jit(train)(jax.random.PRNGKey(0), {})
    steps, codes = np.asarray(m["nonfinite_step"]).tolist(), np.asarray(m["nonfinite_code"]).tolist()
    names = T.guard_names(m)
    # evaluation point 1: the second moment went inf at update K_MOMENT (env step L + K_MOMENT) while every
    # parameter stayed finite: found by the full check at the point itself (env step L + E)
    assert steps[0] == L + E and names[codes[0]] == "agent state (parameters/optimiser)"
    # evaluation point 2: the NaN weight is found by the per-update probe at its own env step
    assert steps[1] == L + K_PARAM and names[codes[1]] == "agent state (parameters/optimiser)"
    assert np.isfinite(np.asarray(m["critic_loss"][0]))  # the moment alone did not show in the losses
