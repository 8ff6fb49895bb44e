"""Env adapters for the three sources, the wrappers, and the replay buffer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import buffers, envs


def rollout(env, steps, seed=0, action=None):
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(seed))

    def body(state, k):
        if action is not None:
            a = action
        elif env.spec.discrete:
            a = jax.random.randint(k, (), 0, env.spec.num_actions)
        else:
            a = jax.random.uniform(k, (env.spec.action_dim,), minval=-1, maxval=1)
        state, ts = env.step(state, a, k)
        return state, ts

    _, tss = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(seed + 1), steps)))(state)
    return ts0, jax.device_get(tss)


def test_gymnax_pendulum_truncates_at_time_limit_and_bootstraps():
    env = envs.make("gymnax/Pendulum-v1")
    assert env.spec.obs_shape == (3,) and env.spec.action_dim == 1 and not env.spec.discrete
    assert env.spec.action_low == (-1.0,) and env.spec.max_episode_steps == 200
    _, ts = rollout(env, 450)
    done_at = np.nonzero(ts.done)[0]
    np.testing.assert_array_equal(done_at, [199, 399])
    assert ts.truncated[199] and not ts.terminated[199]  # time limit: bootstrap through it
    assert ts.episode_length[199] == 200
    np.testing.assert_allclose(ts.episode_return[199], ts.reward[:200].sum(), rtol=1e-5)
    # next_obs is the state actually reached; obs is the fresh episode's first observation.
    assert not np.allclose(ts.next_obs[199], ts.obs[199])
    # Auto-reset draws a fresh initial state every time (not one cached state).
    assert not np.allclose(ts.obs[199], ts.obs[399])


def test_gymnax_cartpole_terminates():
    env = envs.make("gymnax/CartPole-v1")
    assert env.spec.discrete and env.spec.num_actions == 2
    _, ts = rollout(env, 300, action=jnp.asarray(0))
    first = int(np.argmax(ts.done))
    assert ts.terminated[first] and not ts.truncated[first] and first < 50


def test_env_states_are_strongly_typed_so_a_resumed_state_is_the_same_program(tmp_path):
    """gymnax puts Python ints into its states (``time``), which JAX carries as weakly typed leaves; a
    checkpoint reads them back strongly typed, so a program traced on the fresh state would be traced
    and compiled again for a resumed one. Every leaf of the wrapped states is strongly typed, and a state
    read back from a checkpoint has exactly the fresh state's types (also evosax's ES state in EPG)."""
    from metarl.driver import restore_checkpoint, save_checkpoint
    from metarl.meta import epg

    def types(tree):
        return [jax.typeof(x) for x in jax.tree.leaves(tree)]

    key = jax.random.PRNGKey(0)
    for name in ("gymnax/Pendulum-v1", "gymnax/Reacher-misc", "gymnax/CartPole-v1"):
        env = envs.make(name)
        s, _ = jax.jit(env.reset)(key)
        s2, _ = jax.jit(env.step)(s, jnp.zeros(env.spec.action_shape, jnp.int32 if env.spec.discrete else jnp.float32),
                                  key)
        assert not [t for t in types(s) + types(s2) if t.weak_type], name
        path = str(tmp_path / name.replace("/", "_"))
        save_checkpoint(path, s2, 1, {})
        back = restore_checkpoint(path, jax.eval_shape(lambda: s2), str(tmp_path))[0]
        assert types(back) == types(s2), name
    cfg = epg.EPGConfig(generations=2, eval_every=1, population=2, agents_per_env=1, inner_steps=40, num_envs=1,
                        window=4, inner_epochs=1, hidden=(4,), eval_episodes=1, max_episode_steps=10)
    init, _, _ = epg.make_epg(cfg, ["gymnax/Pendulum-v1"])
    assert not [t for t in types(jax.eval_shape(init, key)) if t.weak_type]


def test_action_rescaling_and_custom_time_limit():
    env = envs.make("gymnax/Pendulum-v1", max_episode_steps=10)
    assert env.spec.max_episode_steps == 10
    np.testing.assert_allclose(env._to_source_action(jnp.array([-1.0])), [-2.0])
    np.testing.assert_allclose(env._to_source_action(jnp.array([0.5])), [1.0])
    np.testing.assert_allclose(env._to_source_action(jnp.array([3.0])), [2.0])  # clipped
    raw = envs.make("gymnax/Pendulum-v1", rescale_actions=False)
    assert raw.spec.action_high == (2.0,)


def test_observation_normalisation_tracks_running_stats():
    env = envs.make("gymnax/Pendulum-v1", normalize_obs=True)
    state, _ = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    raw = []
    for i in range(300):
        state, ts = step(state, jnp.array([0.3]), jax.random.PRNGKey(i))
        raw.append(np.asarray(state.obs))
    s = state.obs_stats
    assert int(s.count) == 301
    np.testing.assert_allclose(ts.obs, (state.obs - s.mean) / np.sqrt(s.var + 1e-8), rtol=1e-5)
    assert np.all(np.abs(np.asarray(s.mean)) < 5)


def test_jumanji_snake_adapter():
    env = envs.make("jumanji/Snake-6x6")
    assert env.spec.obs_shape == (6, 6, 5) and env.spec.discrete and env.spec.num_actions == 4
    assert env.spec.max_episode_steps == 500
    ts0, ts = rollout(env, 200)
    assert ts0.obs.shape == (6, 6, 5) and ts.obs.shape == (200, 6, 6, 5)
    assert ts.terminated.any()  # random moves hit a wall or the body
    assert not ts.truncated.any()
    ends = np.nonzero(ts.done)[0]
    assert np.all(ts.episode_length[ends] >= 1)


def test_brax_adapter_backends_and_bounds():
    env = envs.make("brax/inverted_pendulum", backend="positional")
    assert env.spec.obs_shape == (4,) and env.spec.action_dim == 1
    # inverted_pendulum maps [-1, 1] onto its control range (-3, 3) itself: no second rescaling.
    assert env.raw.spec.action_low == (-1.0,) and env.spec.action_low == (-1.0,)
    np.testing.assert_allclose(env._to_source_action(jnp.array([1.0])), [1.0])
    # hopper's step() clips to its actuators' ctrlrange, which is [-1, 1].
    assert envs.make("brax/hopper").raw.spec.action_high == (1.0,) * 3
    _, ts = rollout(env, 150, action=jnp.array([1.0]))  # full push: the pole falls
    assert ts.terminated.any()
    with pytest.raises(ValueError, match="unknown Brax backend 'warp'.*positional"):
        envs.make("brax/inverted_pendulum", backend="warp")


def test_brax_adapter_steps_as_brax_does():
    """The adapter calls Brax's reset and step through jax.jit (one trace per shape, reused by every program):
    vmapped over envs in a jitted scan, bit for bit what Brax's own functions give unjitted in the same scan."""
    raw = envs.make("brax/inverted_pendulum").raw
    brax_env = raw.params
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (20, 2, 1), minval=-1.0, maxval=1.0)

    def episode(reset, step):
        def body(s, a):
            s, obs, reward, term = jax.vmap(step)(s, a, keys)
            return s, (obs, reward, term)
        s0 = jax.vmap(reset)(keys)[0]
        return jax.lax.scan(body, s0, actions)[1]

    def brax_step(s, a, k):
        s = brax_env.step(s, a)
        return s, s.obs, s.reward, s.done > 0.5

    ours = jax.jit(lambda: episode(raw.reset, raw.step))()
    theirs = jax.jit(lambda: episode(lambda k: (brax_env.reset(k), None), brax_step))()
    for x, y in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name,match", [
    ("brax/nope", "unknown Brax environment 'brax/nope'; valid: .*brax/hopper"),
    ("gymnax/Nope-v0", "unknown Gymnax environment.*gymnax/Pendulum-v1"),
    ("jumanji/Snake-7x7", "unknown Jumanji environment.*jumanji/Snake-6x6"),
    ("atari/pong", "unknown environment 'atari/pong'.*brax/hopper"),
    ("hopper", "unknown environment 'hopper'"),
])
def test_unknown_env_lists_valid_names(name, match):
    with pytest.raises(ValueError, match=match):
        envs.make(name)


# ---------------------------------------------------------------------------------------------------
# Replay buffer
# ---------------------------------------------------------------------------------------------------
def numbered(i):
    return {"x": jnp.asarray(i, jnp.float32), "done": jnp.asarray(False)}


def test_buffer_wraps_around():
    buf = buffers.init(numbered(0), capacity=5)
    for i in range(7):
        buf = buffers.add(buf, numbered(i))
    assert int(buf.size) == 5 and int(buf.pos) == 2
    np.testing.assert_array_equal(buf.data["x"], [5, 6, 2, 3, 4])
    batch = buffers.add_batch(buf, {"x": jnp.arange(10, 13, dtype=jnp.float32), "done": jnp.zeros(3, bool)})
    np.testing.assert_array_equal(batch.data["x"], [5, 6, 10, 11, 12])
    assert int(batch.pos) == 0


def test_uniform_sampling_covers_only_filled_part():
    buf = buffers.init(numbered(0), capacity=100)
    for i in range(10):
        buf = buffers.add(buf, numbered(i + 1))
    x = jnp.concatenate([buffers.sample(buf, jax.random.PRNGKey(i), 10)["x"] for i in range(50)])
    assert set(np.unique(x).tolist()) == set(range(1, 11))


def test_windows_are_contiguous_never_cross_the_head_and_mask_episode_ends():
    cap, L = 12, 4
    buf = buffers.init(numbered(0), capacity=cap)
    for i in range(17):  # values 0..16; episodes end at 4, 9 and 14
        buf = buffers.add(buf, {"x": jnp.asarray(i, jnp.float32), "done": jnp.asarray(i % 5 == 4)})
    w, mask = buffers.sample_windows(buf, jax.random.PRNGKey(1), 500, L)
    x = np.asarray(w["x"])
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous in time: never across the write head
    assert x.min() == 5 and x.max() == 16  # only stored data (the oldest 5 were overwritten)
    for row, m in zip(x, np.asarray(mask)):
        ended = np.cumsum([v % 5 == 4 for v in row]) - [v % 5 == 4 for v in row]
        np.testing.assert_array_equal(m, ended == 0)
    assert not mask.all()  # some windows do cross an episode end, and say so
    assert mask[:, 0].all()


def test_buffer_under_vmap():
    bufs = jax.vmap(lambda _: buffers.init(numbered(0), 8))(jnp.arange(3))
    bufs = jax.vmap(buffers.add)(bufs, {"x": jnp.arange(3.0), "done": jnp.zeros(3, bool)})
    np.testing.assert_array_equal(bufs.data["x"][:, 0], [0, 1, 2])
    assert bufs.size.tolist() == [1, 1, 1]


def test_sampling_more_than_filled_is_a_clear_error():
    buf = buffers.init(numbered(0), capacity=100)
    buf = buffers.add(buf, numbered(1))
    with pytest.raises(ValueError, match="cannot sample a batch of 32 from a buffer holding 1"):
        buffers.sample(buf, jax.random.PRNGKey(0), 32)
    with pytest.raises(ValueError, match="window of 20"):
        buffers.sample_windows(buf, jax.random.PRNGKey(0), 4, 20)
