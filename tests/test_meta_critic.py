"""Online Meta-Critic: the meta-gradient against an explicit unroll and finite differences, the
vanilla-equivalence of a zero meta-critic, and the tabular-MDP analysis (Fig. 6 of the paper)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.agents import make_agent
from metarl.compile_clock import xla_flops
from metarl.envs import EnvSpec
from metarl.meta.meta_critic import MetaCriticConfig, lookahead_mask, make_meta_critic

SPEC = EnvSpec(name="tiny", obs_shape=(3,), discrete=False, action_dim=2)
N = 6  # base batch size


def tiny_base(algo):
    return make_agent(algo, SPEC, actor_hidden=(5, 4), critic_hidden=(6,), batch_size=N)


def batch_of(key, n=3 * N):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return dict(obs=jax.random.normal(k1, (n, 3)), action=jax.random.uniform(k2, (n, 2), minval=-1.0, maxval=1.0),
                reward=jax.random.normal(k3, (n,)), next_obs=jax.random.normal(k4, (n, 3)),
                terminated=jnp.zeros((n,), bool), done=jnp.zeros((n,), bool))


def split3(batch):
    return [jax.tree.map(lambda x: x[i * N:(i + 1) * N], batch) for i in range(3)]


def reference_h(form, w, actor_net, phi, batch):
    """h_w written out by hand (ReLU MLP, softplus output, batch mean; MetaReg sum w|phi|)."""
    if form == "metareg":
        return sum(jnp.sum(a * jnp.abs(b)) for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(phi)))
    x = actor_net.apply(phi, batch["obs"], method="features")
    if form == "feature_sa":
        x = jnp.concatenate([x, batch["obs"], batch["action"]], -1)
    layers = w["params"]["MLP_0"]
    names = sorted(layers, key=lambda k: int(k.split("_")[1]))
    for i, name in enumerate(names):
        x = x @ layers[name]["kernel"] + layers[name]["bias"]
        if i < len(names) - 1:
            x = jax.nn.relu(x)
    return jnp.mean(jax.nn.softplus(x[..., 0]))


def unrolled_meta_loss(form, lookahead, clip, base, state, w, d_trn, d_val, key):
    """Algorithm 1, lines 10-16, unrolled by hand: two explicit SGD steps, then the validation loss."""
    phi, eta = state.base.actor, state.base.hp["actor_lr"]
    mask = lookahead_mask(phi, lookahead)
    lc = lambda p, b, k: base.actor_loss(p, state.base, b, k)[0]
    g1 = jax.grad(lc)(phi, d_trn, key)
    phi_old = jax.tree.map(lambda p, g, m: p - eta * m * g, phi, g1, mask)
    g2 = jax.grad(lambda p: reference_h(form, w, base.actor_net, p, d_trn))(phi)
    phi_new = jax.tree.map(lambda p, g, m: p - eta * m * g, phi_old, g2, mask)
    kv = jax.random.fold_in(key, 1)
    if clip:
        return jnp.tanh(lc(phi_new, d_val, kv) - lc(phi_old, d_val, kv))
    return lc(phi_new, d_val, kv)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("algo,form,lookahead,meta_loss", [
    ("ddpg", "feature", "all", "clip"),
    ("td3", "feature_sa", "first_layer", "plain"),
    ("sac", "metareg", "features", "clip"),
])
def test_meta_gradient_matches_unroll_and_finite_differences(algo, form, lookahead, meta_loss):
    with jax.enable_x64(True):
        base = tiny_base(algo)
        agent, fns = make_meta_critic(base, MetaCriticConfig(form=form, lookahead=lookahead, meta_loss=meta_loss,
                                                             hidden=(7, 5)))
        # a large look-ahead step makes the second-order term visible in float64
        state = agent.init(jax.random.PRNGKey(0), {"actor_lr": 0.05})
        state = jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
        if form == "metareg":  # start away from w = 0
            state = state.replace(w=jax.tree.map(
                lambda x: 0.1 * jax.random.uniform(jax.random.PRNGKey(5), x.shape, jnp.float64), state.w))
        d_trn, d_val, _ = split3(jax.tree.map(
            lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            batch_of(jax.random.PRNGKey(1))))
        key = jax.random.PRNGKey(2)
        loss, g_w, _ = jax.jit(fns.meta_gradient)(state, d_trn, d_val, key)
        ref = jax.jit(lambda w: unrolled_meta_loss(form, lookahead, meta_loss == "clip", base, state, w, d_trn,
                                                   d_val, key))
        np.testing.assert_allclose(float(loss), float(ref(state.w)), rtol=1e-10, atol=1e-14)
        g_ref = jax.grad(ref)(state.w)
        np.testing.assert_allclose(flat(g_w), flat(g_ref), rtol=1e-8, atol=1e-14)
        assert np.linalg.norm(flat(g_w)) > 1e-8  # the meta-gradient is not trivially zero
        # central finite differences along three random directions
        for i in range(3):
            v = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(10 + i), x.shape, jnp.float64), state.w)
            eps = 1e-5
            plus = ref(jax.tree.map(lambda a, b: a + eps * b, state.w, v))
            minus = ref(jax.tree.map(lambda a, b: a - eps * b, state.w, v))
            fd = (plus - minus) / (2 * eps)
            analytic = float(np.dot(flat(g_w), flat(v)))
            np.testing.assert_allclose(analytic, float(fd), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("algo,forms", [("ddpg", ("metareg", "feature")), ("td3", ("feature",)),
                                        ("sac", ("metareg",))])
def test_zero_meta_critic_equals_vanilla(algo, forms):
    """h_w = 0 (MetaReg with w = 0 held there by meta_lr = 0, and the feature form with aux_scale = 0):
    the MC agent's updates equal the vanilla agent's bit for bit, over several (TD3: delayed) steps."""
    base = tiny_base(algo)
    hps = {"metareg": {"meta_lr": 0.0}, "feature": {"aux_scale": 0.0}}
    for form in forms:
        hp = hps[form]
        agent, _ = make_meta_critic(base, MetaCriticConfig(form=form, hidden=(7, 5)))
        mc_state = agent.init(jax.random.PRNGKey(0), hp)
        vanilla = mc_state.base  # the base agent's own state, as base.init made it
        # eagerly, op by op: under jit XLA may fuse the two programs differently (1-ulp differences)
        mc_update, base_update = agent.update, base.update
        for i in range(2):  # covers TD3's skipped and delayed policy steps
            batch = batch_of(jax.random.PRNGKey(100 + i))
            key = jax.random.PRNGKey(200 + i)
            mc_state, m = mc_update(mc_state, batch, key)
            vanilla, _ = base_update(vanilla, split3(batch)[0], key)
            for a, b in zip(jax.tree.leaves(mc_state.base), jax.tree.leaves(vanilla)):
                if algo == "td3":  # TD3's lax.cond compiles its branch inside each program: ulp-level only
                    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-8)
                else:
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert float(m["h_w"]) == 0.0 or form == "feature"
        assert int(mc_state.meta_steps) == (1 if algo == "td3" else 2)  # TD3-MC: policy steps only


def test_meta_critic_changes_the_actor_update():
    """The converse control: a non-zero meta-critic does move the actor differently from vanilla."""
    base = tiny_base("ddpg")
    agent, _ = make_meta_critic(base, MetaCriticConfig(hidden=(7, 5)))
    s = agent.init(jax.random.PRNGKey(0), {})
    batch = batch_of(jax.random.PRNGKey(3))
    s2, m = agent.update(s, batch, jax.random.PRNGKey(4))
    v2, _ = base.update(s.base, split3(batch)[0], jax.random.PRNGKey(4))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(s2.base.actor), jax.tree.leaves(v2.actor)))
    assert diff > 0.0
    assert float(m["meta_grad_norm"]) > 0.0 and int(s2.meta_steps) == 1


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="form 'bogus'.*feature"):
        make_meta_critic(tiny_base("ddpg"), MetaCriticConfig(form="bogus"))
    with pytest.raises(ValueError, match="lookahead"):
        make_meta_critic(tiny_base("ddpg"), MetaCriticConfig(lookahead="half"))


# ----------------------------------------------------------------------------------------------------
# The schedule and the compute: no work that the method does not need (issue: wasted compute)
# ----------------------------------------------------------------------------------------------------
def spied(base, calls):
    """``base`` whose critic_step records, at run time, the batch it was given (and counts its traces)."""

    def critic_step(state, batch, key):
        calls["traced"] = calls.get("traced", 0) + 1
        jax.debug.callback(lambda o: calls.setdefault("obs", []).append(np.asarray(o)), batch["obs"])
        return base.critic_step(state, batch, key)

    return base._replace(critic_step=critic_step)


@pytest.fixture(scope="module")
def ddpg_mc_state():
    """A tiny DDPG-MC state, compiled once: the state's layout does not depend on the guard, the extra
    updates or h_floor, so the tests below set their hp on it instead of compiling their own init."""
    agent, _ = make_meta_critic(tiny_base("ddpg"), MetaCriticConfig(hidden=(7, 5)))
    return jax.jit(agent.init)(jax.random.PRNGKey(0), {})


def with_hp(state, **hp):
    return state.replace(hp={**state.hp, **{k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}})


def test_guard_is_off_by_default_and_can_be_switched_on(ddpg_mc_state):
    """The re-initialisation guard is not in the paper: off by default (no guard code is compiled, so
    absorbed meta-steps pile up without a reset); with reset_after > 0 it fires after that many absorbed
    meta-steps, per vmapped member, only where the traced hp ``guard`` arms it."""
    assert MetaCriticConfig().reset_after == 0
    base = tiny_base("ddpg")
    batch = batch_of(jax.random.PRNGKey(3))
    always_absorbed = dict(hidden=(7, 5), h_floor=1e9)  # every meta-step counts as absorbed
    agent, _ = make_meta_critic(base, MetaCriticConfig(**always_absorbed))
    assert "while" not in str(jax.make_jaxpr(agent.update)(ddpg_mc_state, batch, jax.random.PRNGKey(1)))
    agent, _ = make_meta_critic(base, MetaCriticConfig(reset_after=2, **always_absorbed))
    state = jax.tree.map(lambda a, b: jnp.stack([a, b]), with_hp(ddpg_mc_state, guard=1.0),
                         with_hp(ddpg_mc_state, guard=0.0))
    upd = jax.jit(jax.vmap(agent.update, in_axes=(0, None, None)))
    for i in range(2):
        state, m = upd(state, batch, jax.random.PRNGKey(10 + i))
    np.testing.assert_array_equal(np.asarray(state.resets), [1, 0])
    np.testing.assert_array_equal(np.asarray(state.zero_run), [0, 2])
    np.testing.assert_array_equal(np.asarray(m["meta_resets"]), [1.0, 0.0])
    # the armed member's h_w is a fresh initialisation: neither its stepped nor its initial weights
    armed, disarmed = (flat(jax.tree.map(lambda x: x[i], state.w)) for i in (0, 1))
    assert not np.allclose(armed, flat(ddpg_mc_state.w)) and not np.allclose(armed, disarmed)
    assert not np.allclose(disarmed, flat(ddpg_mc_state.w))  # the disarmed one kept learning


def test_no_extra_update_is_compiled_with_k_zero(ddpg_mc_state):
    """K = 0 is static (max_extra_updates = 0, the default): the update traces the critic step once and
    draws 2 base batches (d_trn, d_val); with max_extra_updates = 2 it traces 3 critic steps and draws 4."""
    base = tiny_base("ddpg")
    for max_extra, traces, batches in ((0, 1, 2), (2, 3, 4)):
        calls = {}
        agent, _ = make_meta_critic(spied(base, calls), MetaCriticConfig(hidden=(7, 5), max_extra_updates=max_extra))
        assert agent.config.batch_size == batches * N
        jax.make_jaxpr(agent.update)(ddpg_mc_state, batch_of(jax.random.PRNGKey(1), batches * N), jax.random.PRNGKey(2))
        assert calls["traced"] == traces, (max_extra, calls["traced"])
    with pytest.raises(ValueError, match="max_extra_updates"):
        make_meta_critic(base, MetaCriticConfig(hp={"extra_updates": 1.0}))


def test_extra_updates_draw_a_fresh_batch_each(ddpg_mc_state):
    """'+updates' with K = 1.5 (at most 2 per update): 1 extra update, then 2 (the accumulated 0.5 + 1.5),
    each on its own slice of the sampled batch, none of them d_trn or d_val."""
    calls = {}
    agent, _ = make_meta_critic(spied(tiny_base("ddpg"), calls), MetaCriticConfig(hidden=(7, 5), max_extra_updates=2))
    state = with_hp(ddpg_mc_state, aux_scale=0.0, extra_updates=1.5)
    upd = jax.jit(agent.update)
    for i, n_extra in enumerate((1, 2)):
        calls["obs"] = []
        batch = batch_of(jax.random.PRNGKey(20 + i), 4 * N)
        state, m = upd(state, batch, jax.random.PRNGKey(30 + i))
        jax.effects_barrier()
        slices = [np.asarray(batch["obs"][j * N:(j + 1) * N]) for j in range(4)]
        seen = [next(j for j, sl in enumerate(slices) if np.array_equal(o, sl)) for o in calls["obs"]]
        assert sorted(seen) == [0] + list(range(2, 2 + n_extra)), seen  # d_trn, then fresh batches only
        assert float(m["extra_updates_done"]) == n_extra
    assert int(state.extra_count) == 3 and int(state.base.step) == 5


def test_td3_mc_meta_steps_only_on_policy_steps_in_the_runner():
    """The training loop's vmapped program (metarl.train.make_functions, which the Runner jits) lays
    TD3-MC's delay out statically: each scan iteration is one period of 2 environment steps whose updates
    are update_phase(do_actor=False), then update_phase(do_actor=True) (no lax.cond, which under vmap
    computes both branches); and a non-policy step compiles no meta-step (its XLA FLOPs are exactly the TD3 critic step's). Traced and
    cost-analysed, not run: the Runner's compile costs a minute of CI time."""
    from metarl import envs
    from metarl.train import TrainConfig, make_functions, run_keys_and_hp

    agent_cfg = dict(actor_hidden=(8, 8), critic_hidden=(8, 8), batch_size=8)
    cfg = TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=2, total_steps=36, learning_starts=16,
                      eval_every=20, eval_episodes=1, max_episode_steps=10, agent=agent_cfg)
    mc_cfg = MetaCriticConfig(hidden=(7, 5))
    phases = []

    def agent_fn(spec):
        mc = make_meta_critic(make_agent("td3", spec, **agent_cfg), mc_cfg)[0]
        phase = mc.extras["update_phase"]

        def spy(state, batch, key, do_actor):
            phases.append(do_actor)
            return phase(state, batch, key, do_actor)

        return mc._replace(extras={**mc.extras, "update_phase": spy})

    _, agent, init, run_chunk, _ = make_functions(cfg, agent_fn)
    assert agent.extras["update_period"] == 2
    _, keys, hp = run_keys_and_hp(cfg)
    jax.make_jaxpr(jax.vmap(run_chunk))(jax.eval_shape(jax.vmap(init), keys, hp))
    assert phases == [False, True], phases  # one period traced: the meta-step on the policy step only

    spec = envs.make("gymnax/Pendulum-v1").spec
    base = make_agent("td3", spec, **agent_cfg)
    mc = make_meta_critic(base, mc_cfg)[0]

    def flops(agent, batch_size):
        state = jax.eval_shape(jax.vmap(lambda k: agent.init(k, {})), jax.random.split(jax.random.PRNGKey(0), 2))
        b = dict(obs=jnp.zeros((2, batch_size, 3)), action=jnp.zeros((2, batch_size, 1)), reward=jnp.zeros((2, batch_size)),
                 next_obs=jnp.zeros((2, batch_size, 3)), terminated=jnp.zeros((2, batch_size), bool),
                 done=jnp.zeros((2, batch_size), bool))
        f = jax.vmap(lambda s, b, k: agent.extras["update_phase"](s, b, k, False)[0])
        return xla_flops(jax.jit(f).lower(state, b, jax.random.split(jax.random.PRNGKey(1), 2)).compile())

    critic_only, mc_off = flops(base, 8), flops(mc, 16)
    assert mc_off <= 1.01 * critic_only, (critic_only, mc_off)


def test_overhead_flops_are_one_period_of_the_timed_loop():
    """measure_overhead reads one period's FLOPs from the program it times, a scan of periods, because XLA's
    cost analysis counts a loop's body once: its per-update FLOPs against the period compiled alone (a
    JAX/XLA that counted every iteration would make them n_periods times too large, and this fail)."""
    from types import SimpleNamespace

    from metarl import envs
    from metarl.meta.meta_critic_overhead import measure_overhead, runner_period

    spec = envs.make("gymnax/Pendulum-v1").spec
    cfg = SimpleNamespace(algo="td3", agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=8),
                          lookahead="all", weight_decay="decoupled")
    out = measure_overhead(cfg, spec, n_periods=5, rounds=1)
    base = make_agent("td3", spec, **cfg.agent)
    for name, agent in (("base", base), ("mc", make_meta_critic(base, MetaCriticConfig())[0])):
        n = agent.config.batch_size  # -MC's batch holds its two base batches (d_trn, d_val)
        b = dict(obs=jnp.ones((1, n, 3)), action=jnp.zeros((1, n, 1)), reward=jnp.ones((1, n)),
                 next_obs=jnp.ones((1, n, 3)), terminated=jnp.zeros((1, n), bool), done=jnp.zeros((1, n), bool))
        period, f = runner_period(agent)
        state = jax.vmap(lambda k: agent.init(k, {}))(jax.random.split(jax.random.PRNGKey(0), 1))
        alone = jax.jit(jax.vmap(f)).lower(state, b, jax.random.split(jax.random.PRNGKey(1), 1)).compile()
        assert period == 2 and abs(out["flops_per_update"][name] * period / xla_flops(alone) - 1) < 0.01, \
            (name, out["flops_per_update"][name], xla_flops(alone))


# ----------------------------------------------------------------------------------------------------
# The tabular MDP analysis (Fig. 6): one compiled program, DDPG and DDPG-MC vmapped with the seeds
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tabular():
    from metarl.meta.meta_critic_tabular import TabularConfig, run_tabular, tabular_summary

    # The paper's MDP family and the authors' DDPG settings (batch 100, Adam 1e-3, gamma 0.99) except 64-64
    # networks and 50 episodes instead of 400-300 and 100 (test-time budget; the benchmark runs the paper's
    # sizes, results/meta_critic/tabular.json). 15 seeds, not the paper's 5: with 5, the sign of the
    # L_critic difference changed between seed sets (README).
    cfg = TabularConfig(seeds=15, episodes=50, hidden=(64, 64))
    _, traces = run_tabular(cfg)
    return traces, tabular_summary(traces, early=150, cfg=cfg)


@pytest.mark.learning
@pytest.mark.slow
def test_tabular_meta_loss_goes_below_zero_early(tabular):
    traces, summary = tabular
    lm = traces["L_meta"][1]  # DDPG-MC, [seeds, updates]
    early = lm[:, :150].mean(axis=1)
    assert summary["L_meta_early_mean"] < 0.0
    assert np.sum(early < 0) >= 0.8 * len(early), early  # in (almost) every seed, not only on average
    # DDPG (aux_scale 0): phi_new = phi_old exactly, so L_meta is zero up to float32 rounding of the two
    # separately compiled evaluations of L_val (|L_val| ~ |L_critic|) ...
    noise = np.abs(traces["L_meta"][0])
    assert noise.max() <= 4 * np.finfo(np.float32).eps * max(1.0, np.abs(traces["L_critic"]).max()), noise.max()
    # ... and DDPG-MC's early meta-loss is below zero by more than that rounding level
    assert summary["L_meta_early_mean"] < -noise[:, :150].mean(), (summary["L_meta_early_mean"], noise.mean())


@pytest.mark.learning
@pytest.mark.slow
def test_tabular_critic_loss_claim_gets_an_interval_verdict(tabular):
    """Fig. 6 (i), "DDPG-MC reaches a lower L_critic": not asserted either way. MC is lower in 11 of 15
    seeds (under AVX-512 and AVX alike), one seed short of the old strict-xfail's 80% bar, so neither a
    pass nor a strict xfail is stable across CPUs and seed sets. The summary carries the verdict from the
    interval of P(MC higher than DDPG) over the per-seed values (0.52 [0.31, 0.73]: inconclusive at this
    scale), which the benchmark reports; this test checks that verdict is computed correctly."""
    traces, summary = tabular
    c = summary["L_critic_claim"]
    last = traces["L_critic"][:, :, -max(traces["L_critic"].shape[-1] // 10, 1):].mean(-1)  # [variant, seed]
    p_higher = np.mean((last[1][:, None] > last[0][None, :]) + 0.5 * (last[1][:, None] == last[0][None, :]))
    np.testing.assert_allclose(c["p_improvement"], p_higher, rtol=1e-12)
    lo, hi = c["p_improvement_ci"]
    assert lo <= c["p_improvement"] <= hi
    want = ("reproduces" if hi < 0.5 else "contradicts" if lo > 0.5 else "inconclusive at this scale")
    assert c["claim_verdict"] == want and c["n_a"] == c["n_b"] == 15


def test_tabular_mdp_is_the_rl2_family_and_returns_are_exact():
    """The Fig. 6 MDP: RL^2's random tabular MDP (mean rewards ~ N(1, 1), Dirichlet rows), and the exact
    expected return used for the reward surface agrees with a Monte-Carlo estimate."""
    from metarl.meta.meta_critic_tabular import TabularConfig, tab_expected_return, tab_mdp

    cfg = TabularConfig()
    R, P, noise = tab_mdp(cfg)
    assert R.shape == (2, 2) and P.shape == (2, 2, 2) and noise == 1.0
    np.testing.assert_allclose(P.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(R, tab_mdp(TabularConfig(mdp_seed=1))[0])  # the seed draws the MDP
    p1 = np.array([0.3, 0.8])
    rng = np.random.default_rng(0)
    n, ret = 20000, 0.0
    s = np.zeros(n, int)
    for _ in range(cfg.horizon):
        a = (rng.random(n) < p1[s]).astype(int)
        ret += (R[s, a] + noise * rng.normal(size=n)).sum()
        s = (rng.random(n) < P[s, a, 1]).astype(int)
    mc = ret / n
    exact = float(tab_expected_return(jnp.asarray(p1, jnp.float32), cfg.horizon, R, P))
    assert abs(mc - exact) < 0.1, (mc, exact)  # MC standard error ~0.03
    with pytest.raises(ValueError, match="mdp 'bogus'.*rl2"):
        tab_mdp(TabularConfig(mdp="bogus"))


def test_paper_scale_plan_traces_into_valid_configs():
    """--scale paper: the paper's grid (7 Brax tasks x 3 algorithms, Table 3 on the 4 locomotion tasks,
    Table 2 on walker2d) with the paper's networks, and every job builds a valid training config; so does
    its --smoke variant (which the README shows being run)."""
    from benchmarks.meta_critic import ALGOS, ENV_ROWS, bench_config, job_config, plan, smoke_config

    cfg = bench_config("paper")
    jobs = {(e, a): v for e, a, v in plan(cfg)}
    assert set(jobs) == {(e, a) for e in ENV_ROWS for a in ALGOS}
    assert set(jobs["brax/walker2d", "sac"]) == {"vanilla", "updates", "params", "mc", "mc_plain", "mc_guard", "mc_sa",
                                                 "metareg"}
    assert {"updates", "params"} <= set(jobs["brax/ant", "td3"]) and "params" not in jobs["brax/reacher", "td3"]
    for c in (cfg, smoke_config(cfg)):
        for (env, algo), variants in jobs.items():
            tc = job_config(c, env, algo, variants).train_config()
            if not c.smoke:
                assert tc.total_steps == 1_000_000 and tc.seeds == 5 and tc.num_chunks * tc.evals_per_chunk == 990
                from metarl.agents import agent_config
                ac = agent_config(algo, **tc.agent)
                assert tuple(ac.actor_hidden) == ((256, 256) if algo == "sac" else (400, 300))
    with pytest.raises(ValueError, match="scale 'huge'.*quick, medium, paper"):
        bench_config("huge")


def test_medium_scale_plan_and_table1_only():
    """--scale medium --tables 1: Table 1 on the paper's three cheap tasks, 3 algorithms x (vanilla, -MC), 5
    seeds, Reacher with Gym's 50-step episodes, every job a valid training config; Tables 2-3 on InvPend
    when asked for."""
    import dataclasses as dc

    from benchmarks.meta_critic import ALGOS, bench_config, job_config, plan

    cfg = dc.replace(bench_config("medium"), tables=("1",))
    jobs = {(e, a): v for e, a, v in plan(cfg)}
    envs = ("brax/inverted_pendulum", "brax/inverted_double_pendulum", "brax/reacher")
    assert set(jobs) == {(e, a) for e in envs for a in ALGOS} and set(jobs.values()) == {("vanilla", "mc")}
    for (env, algo), variants in jobs.items():
        tc = job_config(cfg, env, algo, variants).train_config()
        assert tc.seeds == 5 and tc.learning_starts == 1000 and tc.total_steps >= 20_000
        assert tc.max_episode_steps == (50 if env == "brax/reacher" else None)
    full = {(e, a): v for e, a, v in plan(bench_config("medium"))}
    assert {"updates", "params"} <= set(full["brax/inverted_pendulum", "td3"])
    assert "mc_guard" in full["brax/inverted_pendulum", "sac"]


def _fake_job(cfg, env, algo, variants, van, mc):
    from benchmarks.meta_critic import job_config
    from metarl.train import jsonable

    ecfg = job_config(cfg, env, algo, variants)
    n = (ecfg.total_steps - ecfg.learning_starts) // ecfg.eval_every
    curve = lambda final: np.minimum(np.linspace(0.0, 2.0, n), 1.0)[None, :] * np.asarray(final, float)[:, None]  # noqa: E731
    return {"config": jsonable(dataclasses.asdict(ecfg)), "wall_s": 1.0, "overhead": {},
            "variants": {"vanilla": {"eval_return": curve(van).tolist(), "env_steps": list(range(n))},
                         "mc": {"eval_return": curve(mc).tolist(), "env_steps": list(range(n))}}}


def test_table1_summary_resume_and_verdicts(tmp_path):
    """The medium benchmark's bookkeeping without training: finished jobs are read back from job.json on
    --resume; summary.json carries per row IQM [CI] of both variants, P(MC > vanilla) with its interval and a
    verdict decided by that interval; a job.json from other settings is refused."""
    import dataclasses as dc
    import json

    from benchmarks.meta_critic import bench_config, plan, run_bench
    from metarl.train import write_json

    cfg = dc.replace(bench_config("medium"), tables=("1",), only=("brax/inverted_pendulum",))
    jobs = plan(cfg)
    finals = {"ddpg": ([100, 110, 120, 130, 140], [900, 950, 1000, 980, 990]),  # MC clearly better
              "td3": ([500, 520, 540, 560, 580], [510, 530, 550, 570, 590]),  # overlapping: inconclusive
              "sac": ([900, 950, 1000, 980, 990], [100, 110, 120, 130, 140])}  # MC clearly worse
    for env, algo, variants in jobs:
        d = tmp_path / "runs" / f"{env.replace('/', '_')}_{algo}"
        d.mkdir(parents=True)
        write_json(str(d / "job.json"), _fake_job(cfg, env, algo, variants, *finals[algo]))
    run_bench(cfg, jobs, str(tmp_path), resume=True)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["complete"] and s["scale"] == "medium" and s["seeds"] == 5
    rows = {r["algo"]: r for r in s["table1"]}
    assert {r: rows[r]["verdict"] for r in rows} == {"ddpg": "better", "td3": "inconclusive", "sac": "worse"}
    for r in rows.values():
        assert r["env"] == "brax/inverted_pendulum" and r["steps"] == 20_000 and r["seeds"] == 5
        for v in ("vanilla", "mc"):
            lo, hi = r[v]["ci"]
            assert lo <= r[v]["iqm"] <= hi and r[v]["paper_max_avg"] == 1000.0 and "max_avg" in r[v]
        lo, hi = r["p_mc_better_ci"]
        assert 0 <= lo <= r["p_mc_better"] <= hi <= 1
    assert rows["ddpg"]["mc"]["iqm"] == pytest.approx(np.mean([950, 980, 990]))  # IQM of 5: the middle three
    assert all({"iqm", "ci", "verdict"} <= set(r) and r["iqm"] == r["mc"]["iqm"] for r in rows.values())
    assert (tmp_path / "table1_aggregate.png").stat().st_size > 10_000
    # a stored job from other settings is refused in one line, not silently reused
    bad = dc.replace(cfg, seeds=4)
    with pytest.raises(SystemExit, match="other settings"):
        run_bench(bad, plan(bad), str(tmp_path), resume=True)


def test_tables_2_3_rows_carry_intervals_and_verdicts(tmp_path):
    """Tables 2 and 3 at the medium scale, bookkeeping only (fake finished jobs): each paper comparison
    (-MC vs +updates / +params, the ablations vs SAC, clip vs no clip) is a row with both IQM [CI]s,
    P(a > b) with its interval, the outcome from that interval and the verdict on the paper's claim."""
    import dataclasses as dc
    import json

    from benchmarks.meta_critic import bench_config, job_config, plan, run_bench
    from metarl.train import jsonable, write_json

    cfg = dc.replace(bench_config("medium"), tables=("2", "3"))
    jobs = plan(cfg)
    base = np.array([500.0, 520, 540, 560, 580])
    level = {"vanilla": 0, "updates": 0, "params": 400, "mc": 300, "mc_sa": 300, "metareg": -300, "mc_plain": 0,
             "mc_guard": 305}
    for env, algo, variants in jobs:
        ecfg = job_config(cfg, env, algo, variants)
        n = (ecfg.total_steps - ecfg.learning_starts) // ecfg.eval_every
        vs = {v: {"eval_return": np.repeat((base + level[v])[:, None], n, 1).tolist(), "env_steps": list(range(n))}
              for v in variants}
        d = tmp_path / "runs" / f"{env.replace('/', '_')}_{algo}"
        d.mkdir(parents=True)
        write_json(str(d / "job.json"), {"config": jsonable(dataclasses.asdict(ecfg)), "wall_s": 1.0,
                                         "overhead": {}, "variants": vs})
    run_bench(cfg, jobs, str(tmp_path), resume=True)
    s = json.loads((tmp_path / "summary.json").read_text())
    rows = {(r["table"], r["algo"], r["a"], r["b"]): r for r in s["tables23"]}
    assert rows[("3", "td3", "mc", "updates")]["verdict_on_claim"] == "reproduces"  # +300 over +updates
    assert rows[("3", "td3", "mc", "params")]["verdict_on_claim"] == "contradicts"  # +params is higher
    assert rows[("2", "sac", "metareg", "vanilla")]["verdict"] == "worse"
    assert rows[("2", "sac", "mc_guard", "mc")]["verdict"] == "inconclusive"  # +5 on a 80-wide spread
    assert rows[("2", "sac", "mc_guard", "mc")]["verdict_on_claim"].startswith("no claim")
    assert len([k for k in rows if k[0] == "3"]) == 6 and len([k for k in rows if k[0] == "2"]) == 6
    for r in rows.values():
        assert {"iqm", "ci", "verdict"} <= set(r) and r["ci"][0] <= r["iqm"] <= r["ci"][1] and r["seeds"] == 5
    # tables.md shows the same rows in the paper's Tables 2 and 3: ours as IQM [CI], the max average return
    # beside the paper's (Table 2: Walker2d, with its std; Table 3 has no InvPend row) and the verdict
    from _markdown import IQM_CI, tables

    md = tables((tmp_path / "tables.md").read_text())
    t2 = next(v for k, v in md.items() if k.startswith("Table 2"))
    t3 = next(v for k, v in md.items() if k.startswith("Table 3"))
    assert len(t2) == 6 and len(t3) == 6
    for r in t2 + t3:
        assert IQM_CI.match(r["a: final, IQM [95% CI]"]) and IQM_CI.match(r["b: final, IQM [95% CI]"]), r
    by = {r["a vs b"]: r for r in t3}
    assert by["TD3-MC vs TD3+params"]["verdict"] == "contradicts" and by["TD3-MC vs TD3+params"]["outcome"] == "worse"
    assert by["TD3-MC vs TD3+updates"]["verdict"] == "reproduces"
    assert by["TD3-MC vs TD3+updates"]["a: max avg, ours / paper"] == "840.0 / -"  # InvPend is not in Table 3
    by = {r["a vs b"]: r for r in t2}
    assert by["SAC-MC vs SAC"]["a: max avg, ours / paper"] == "840.0 / 7164.9 ± 151.3"
    assert by["SAC-MC +guard vs SAC-MC"]["a: max avg, ours / paper"] == "845.0 / -"  # ours only
    assert by["SAC-MC +guard vs SAC-MC"]["paper's claim"] == "-"


def test_resumed_experiment_keeps_the_measured_overhead(tmp_path, monkeypatch):
    """'+updates' runs K = measured wall-time overhead extra updates. A resumed run must use the K of the
    interrupted one (kept in the run folder), not a new measurement (wall time differs between two
    measurements: the fake ones below return 1.7, then 1.2); a fresh run, or one of another config,
    measures again."""
    import metarl.train
    from metarl.meta import meta_critic_runs as ex

    measured = []

    def fake_measure(cfg, spec, *a, **k):
        ratio = (1.7, 1.2, 1.4)[len(measured)]
        measured.append(ratio)
        return {"wall_ratio": ratio, "flop_ratio": 1.3, "params_overhead": 0.1}

    extra = []

    class RecordingRunner:  # stands in for the training: the test is about which K each program gets
        def __init__(self, cfg, out_dir, **kw):
            self.config = cfg

        def run(self, resume=False):
            extra.append(sorted({round(float(c["extra_updates"]), 6) for c in self.combos}))
            n = len(self.combos) * self.config.seeds
            return None, {"eval_return": np.zeros((n, 2)), "env_steps": np.zeros((n, 2))}

    monkeypatch.setattr(ex, "measure_overhead", fake_measure)
    monkeypatch.setattr(metarl.train, "Runner", RecordingRunner)
    cfg = ex.ExperimentConfig(env="gymnax/Pendulum-v1", variants=("vanilla", "updates"), seeds=2)
    out = str(tmp_path / "job")  # not created yet, as a benchmark's job folder
    first = ex.run_experiment(cfg, out, progress=False)
    assert extra[-1] == [0.0, 0.7] and first["updates_k"] == pytest.approx(0.7)
    resumed = ex.run_experiment(cfg, out, progress=False, resume=True)
    assert len(measured) == 1, "a resumed run measured the overhead again"
    assert extra[-1] == [0.0, 0.7] and resumed["updates_k"] == pytest.approx(0.7)
    again = ex.run_experiment(cfg, out, progress=False)  # a new run measures anew
    assert measured == [1.7, 1.2] and extra[-1] == [0.0, 0.2] and again["updates_k"] == pytest.approx(0.2)
    other = dataclasses.replace(cfg, seeds=3)  # another config's resume does not take this folder's K
    ex.run_experiment(other, out, progress=False, resume=True)
    assert measured == [1.7, 1.2, 1.4] and extra[-1] == [0.0, 0.4]


def test_params_control_sizes_are_counted_as_a_real_init_counts_them():
    """'+params' widens both networks until the parameter count grows by N (scaled_hidden: a bisection that
    counts parameters from shapes alone); the counts it reports are those of real initialised networks."""
    from experiments.meta_critic import ExperimentConfig
    from metarl import envs, nets
    from metarl.meta.meta_critic_overhead import scaled_hidden

    spec = envs.make("gymnax/Pendulum-v1").spec
    cfg = ExperimentConfig(algo="td3", env="gymnax/Pendulum-v1", agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16)))
    r = scaled_hidden(cfg, spec, 0.25)

    def real(ah, ch):
        st = make_agent("td3", spec, actor_hidden=ah, critic_hidden=ch).init(jax.random.PRNGKey(0), {})
        return nets.count_params(st.actor) + nets.count_params(st.critic)

    assert r["base_params"] == real((16, 16), (16, 16))
    assert r["params"] == real(r["actor_hidden"], r["critic_hidden"])
    assert min(r["actor_hidden"]) > 16 and r["growth"] >= 0.25 and r["growth"] == r["params"] / r["base_params"] - 1
