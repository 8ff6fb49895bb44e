"""Outer value function for meta-gradients (Bonnet et al., 2022): A2C, MG/BMG meta-gradients, chain values."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarl.agents import a2c
from metarl.meta import outer_value as ov

GAMMA_BOUNDS = (0.9, 1.0)


@pytest.fixture(scope="module")
def chain():
    timesteps, rewards, env = ov.chain_env_constants(3)
    return timesteps, rewards, env


# -- A2C pieces ----------------------------------------------------------------------------------
def test_lambda_returns_against_loop_and_gradients():
    rng = np.random.default_rng(0)
    T, B = 6, 3
    r, v = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    nt = (rng.random((T, B)) > 0.2).astype(float)

    def loop(gamma, lam):
        g = np.zeros((T, B))
        nxt = v[-1]
        for t in reversed(range(T)):
            g[t] = r[t] + gamma * nt[t] * ((1 - lam) * v[t] + lam * nxt)
            nxt = g[t]
        return g

    with jax.enable_x64(True):
        f = lambda gamma, lam: a2c.lambda_returns(jnp.asarray(r), gamma * jnp.asarray(nt), jnp.asarray(v), lam)
        np.testing.assert_allclose(f(0.9, 0.7), loop(0.9, 0.7), rtol=1e-12)
        # differentiable in gamma and lambda
        dg, dl = jax.grad(lambda g, l: jnp.sum(f(g, l) ** 2), argnums=(0, 1))(0.9, 0.7)
        eps = 1e-6
        s = lambda g, l: np.sum(loop(g, l) ** 2)
        np.testing.assert_allclose(dg, (s(0.9 + eps, 0.7) - s(0.9 - eps, 0.7)) / (2 * eps), rtol=1e-6)
        np.testing.assert_allclose(dl, (s(0.9, 0.7 + eps) - s(0.9, 0.7 - eps)) / (2 * eps), rtol=1e-6)


def test_a2c_loss_by_hand():
    logits = jnp.array([[[0.0, 1.0]], [[2.0, 0.0]]])  # [T=2, B=1, A=2]
    actions = jnp.array([[1], [0]])
    v, nv = jnp.array([[0.5], [0.2]]), jnp.array([[0.2], [0.7]])
    r, nt = jnp.array([[1.0], [0.0]]), jnp.array([[1.0], [0.0]])
    loss, m = a2c.a2c_loss(logits, actions, v, nv, r, nt, 0.9, 0.0, pg_cost=1.0, td_cost=0.5, entropy_cost=0.1)
    adv = np.array([1.0 + 0.9 * 0.2 - 0.5, 0.0 - 0.2])
    lp = np.array([1.0 - np.log(1 + np.e), 2.0 - np.log(1 + np.e ** 2)])
    p = [np.exp(lp[0]), np.exp(lp[1])]
    ent = np.mean([-(p[0] * np.log(p[0]) + (1 - p[0]) * np.log(1 - p[0])),
                   -(p[1] * np.log(p[1]) + (1 - p[1]) * np.log(1 - p[1]))])
    expected = -np.mean(lp * adv) + 0.5 * np.mean(adv ** 2) - 0.1 * ent
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(m["advantage"], adv.mean(), rtol=1e-5)


def test_gamma_bijector_round_trip():
    for g in (0.91, 0.95, 0.999):
        assert abs(float(ov.to_gamma(ov.from_gamma(g, *GAMMA_BOUNDS), *GAMMA_BOUNDS)) - g) < 1e-5


# -- Discounting Chain ---------------------------------------------------------------------------
def test_chain_reward_mapping(chain):
    timesteps, rewards, _ = chain
    np.testing.assert_array_equal(np.asarray(timesteps), [1, 3, 10, 30, 100])
    np.testing.assert_allclose(np.asarray(rewards), [1.0, 1.0, 1.0, 1.1, 1.0])  # arm 3 (t = 30) pays 1.1


def _policy(bias):
    return {"w": jnp.array([[0.3, -0.2, 0.1, 0.4, 0.0], [0.5, 0.1, -0.3, 0.2, 0.1]]), "b": jnp.asarray(bias)}


def test_count_rollout_matches_gymnax_env(chain):
    timesteps, rewards, env = chain
    params = _policy([0.3, -0.2, 0.1, 0.5, -0.4])
    key = jax.random.PRNGKey(3)
    batch = jax.jit(lambda p, k: ov.chain_rollout_env(p, k, env, 32))(params, key)
    counts = ov.chain_rollout(params, key, 32)
    ref = ov.chain_counts(batch)
    np.testing.assert_array_equal(np.asarray(counts.n0), np.asarray(ref.n0))
    np.testing.assert_array_equal(np.asarray(counts.n), np.asarray(ref.n))
    # episode returns from the env: arm 3 episodes return 1.1, the others 1.0
    ret = np.asarray(jnp.sum(batch.rewards, axis=0))
    np.testing.assert_allclose(ret, np.asarray(rewards)[np.asarray(batch.actions[0])], rtol=1e-6)
    # the count-based loss equals the per-sample A2C loss, value and gradient
    # one compiled program per loss and normalisation (op-by-op dispatch compiles far more)
    vg_counts = jax.jit(jax.value_and_grad(ov.chain_pg_loss, has_aux=True), static_argnames="normalize_advantages")
    vg_samples = jax.jit(jax.value_and_grad(ov.chain_pg_loss_samples, has_aux=True),
                         static_argnames="normalize_advantages")
    for gv, gt, norm in [(0.95, 0.95, False), (0.95, 1.0, False), (1.0, 1.0, True)]:
        args = (gv, gt, 0.005, timesteps, rewards)
        (l1, m1), g1 = vg_counts(params, counts, *args, normalize_advantages=norm)
        (l2, m2), g2 = vg_samples(params, batch, *args, normalize_advantages=norm)
        np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(m1["advantage_step0"], m2["advantage_step0"], rtol=1e-5, atol=1e-7)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # TD(lambda) with a tabular critic: the table-based targets, PG loss and TD loss equal the per-sample
    # ones, and so do their gradients w.r.t. gamma, lambda, the policy and the table
    rng = np.random.default_rng(0)
    table = {"v0": jnp.asarray(0.3), "v": jnp.asarray(rng.normal(size=(99, 5)), jnp.float32)}
    gam, lam = 0.93, 0.6

    def counts_loss(p, tab, g, l):
        pg, _ = ov.chain_loss(p, counts, ov.ChainValues(tab["v0"], tab["v"]), g, l, 0.005, timesteps, rewards)
        return pg + ov.chain_td_loss(tab, counts, g, l, timesteps, rewards)

    def samples_loss(p, tab, g, l):
        pg, _ = ov.chain_pg_loss_samples(p, batch, None, g, 0.005, timesteps, rewards, lam=l, critic=tab)
        v = lambda o: ov.chain_table_value(o, tab)
        td = a2c.td_loss(v(batch.obs), v(batch.next_obs), batch.rewards, jnp.ones_like(batch.rewards), g, l)
        return pg + 100 * td  # chain_td_loss sums over the 100 steps of an episode

    args = (params, table, gam, lam)
    (l1, g1), (l2, g2) = [jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))(*args)
                          for f in (counts_loss, samples_loss)]
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    assert abs(float(g1[3])) > 1e-3  # lambda matters with a learned critic
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


@pytest.mark.learning
def test_chain_learned_critic_converges_to_analytic_value(chain):
    """A fixed policy; only the tabular critics learn, by SGD on their TD loss from sampled rollouts:
    the inner one (TD(0), gamma = 0.95) and the outer one (TD(lambda = 0.5), gamma' = 1) converge to the
    analytic values at their discounts (every entry after step 0 exactly: the chain is deterministic
    there; V(s_0) to within the sampling noise of the batch's first actions)."""
    timesteps, rewards, _ = chain
    params = _policy([0.0, 0.2, 0.4, 0.8, -0.5])
    lr, n_iter, batch = 0.5, 1500, 256

    def step(tabs, key):
        counts = ov.chain_rollout(params, key, batch, sample_later=False)
        loss = lambda t: (ov.chain_td_loss(t[0], counts, 0.95, 0.0, timesteps, rewards)
                          + ov.chain_td_loss(t[1], counts, 1.0, 0.5, timesteps, rewards))
        return jax.tree.map(lambda x, g: x - lr * g, tabs, jax.grad(loss)(tabs)), None

    tabs = (ov.chain_init_critic(), ov.chain_init_critic())
    tabs, _ = jax.jit(lambda t: jax.lax.scan(step, t, jax.random.split(jax.random.PRNGKey(0), n_iter)))(tabs)
    probs0 = jax.nn.softmax(ov.chain_policy_logits(params, jnp.array([-1.0, 0.0])))
    for tab, gamma in zip(tabs, (0.95, 1.0)):
        ref = ov.chain_analytic_values(probs0, gamma, timesteps, rewards)
        np.testing.assert_allclose(np.asarray(tab["v"]), np.asarray(ref.v), atol=1e-4)
        # V(s_0) tracks the mean over the last batch's first actions: sd of R_a gamma^(t_a - 1) / sqrt(batch)
        assert abs(float(tab["v0"]) - float(ref.v0)) < 4 * 0.3 / np.sqrt(batch)
        assert float(jnp.max(jnp.abs(ref.v))) > 0.5  # not the zero initialisation


def test_chain_true_value_against_monte_carlo(chain):
    timesteps, rewards, env = chain
    params = _policy([0.0, 0.2, 0.4, 0.8, -0.5])
    gamma = 0.95
    n = 1024
    batch = jax.jit(lambda p, k: ov.chain_rollout_env(p, k, env, n))(params, jax.random.PRNGKey(7))
    r = np.asarray(batch.rewards, np.float64)  # [T, B]
    T = r.shape[0]
    disc = gamma ** np.arange(T)
    mc = np.stack([np.sum(r[t:] * disc[: T - t, None], axis=0) for t in range(T)])  # G_t per sample
    v = np.asarray(ov.chain_true_value(batch.obs, batch.probs0, gamma, timesteps, rewards))
    # After the first step the chain is deterministic: the value is each sample's return exactly.
    np.testing.assert_allclose(v[1:], mc[1:], rtol=1e-5, atol=1e-6)
    # At the start the value is the expected return over the first action.
    se = mc[0].std() / np.sqrt(n)
    assert abs(v[0, 0] - mc[0].mean()) < 4 * se
    # and the exact expectation over arms
    p0 = np.asarray(batch.probs0)
    np.testing.assert_allclose(v[0, 0], np.sum(p0 * np.asarray(rewards) * gamma ** (np.asarray(timesteps) - 1)),
                               rtol=1e-6)


def test_expected_counts_leave_zero_advantage_losses_unchanged(chain):
    """The inner loss and the outer-critic loss have zero advantage after step 0, so the count-based
    rollout may skip sampling the later actions: same loss and gradient as with sampled counts."""
    timesteps, rewards, _ = chain
    params = _policy([0.1, 0.0, -0.3, 0.2, 0.0])
    key = jax.random.PRNGKey(11)
    sampled = ov.chain_rollout(params, key, 64, sample_later=True)
    expected = ov.chain_rollout(params, key, 64, sample_later=False)
    np.testing.assert_array_equal(np.asarray(sampled.n0), np.asarray(expected.n0))
    for gv, gt in [(0.95, 0.95), (1.0, 1.0)]:
        f = lambda p, c: ov.chain_pg_loss(p, c, gv, gt, 0.005, timesteps, rewards)[0]
        np.testing.assert_allclose(f(params, sampled), f(params, expected), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(jax.grad(f)(params, sampled)), jax.tree.leaves(jax.grad(f)(params, expected))):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # ... but not the outer loss with the inner critic (advantage (1 - gamma) V(s') after step 0)
    f = lambda p, c: ov.chain_pg_loss(p, c, 0.95, 1.0, 0.005, timesteps, rewards)[0]
    ga, gb = jax.grad(f)(params, sampled), jax.grad(f)(params, expected)
    assert np.max(np.abs(np.asarray(ga["w"]) - np.asarray(gb["w"]))) > 1e-4


def test_outer_advantage_centred_with_outer_value_biased_with_inner(chain):
    """Fig. 5's claim on a fixed policy: with the true outer value (gamma' = 1) the outer-loss advantage
    has zero mean; with the inner critic (gamma = 0.95) it is biased, by exactly
    sum_a pi(a) R_a gamma^(t_a - 2) (1 - gamma) at the first step."""
    timesteps, rewards, _ = chain
    params = _policy([0.0, 0.2, 0.4, 0.8, -0.5])
    gamma = 0.95
    probs0 = jax.nn.softmax(ov.chain_policy_logits(params, jnp.array([-1.0, 0.0])))
    n = 100_000
    # exact expectation: expected counts in place of sampled ones
    exp_counts = ov.chain_rollout(params, jax.random.PRNGKey(0), n, sample_later=False)
    exp_counts = exp_counts._replace(n0=n * probs0)
    _, m_outer = ov.chain_pg_loss(params, exp_counts, 1.0, 1.0, 0.0, timesteps, rewards)
    _, m_inner = ov.chain_pg_loss(params, exp_counts, gamma, 1.0, 0.0, timesteps, rewards)
    assert abs(float(m_outer["advantage_step0"])) < 1e-5 and abs(float(m_outer["advantage"])) < 1e-6
    t, R, p = np.asarray(timesteps), np.asarray(rewards), np.asarray(probs0)
    bias0 = np.sum((p * R * gamma ** (t - 2.0) * (1 - gamma))[t >= 2])
    np.testing.assert_allclose(float(m_inner["advantage_step0"]), bias0, rtol=1e-4)
    assert bias0 > 1e-3 and float(m_inner["advantage"]) > 1e-3
    # sampled: the outer-critic advantage is centred within its standard error
    c = ov.chain_rollout(params, jax.random.PRNGKey(1), 4096)
    _, m = ov.chain_pg_loss(params, c, 1.0, 1.0, 0.0, timesteps, rewards)
    assert abs(float(m["advantage_step0"])) < 4 * 0.05 / np.sqrt(4096)  # sd of R_a - V(s0) <= 0.05
    _, m = ov.chain_pg_loss(params, c, gamma, 1.0, 0.0, timesteps, rewards)
    assert float(m["advantage_step0"]) > 0.5 * bias0


# -- meta-gradients against finite differences ----------------------------------------------------
def _fixed_batch_problem(problem, batches):
    """The same problem, but every rollout returns a fixed batch: the meta-loss is then a deterministic
    function of gamma (the meta-gradient never differentiates through the sampling)."""
    info = {"return_sum": jnp.zeros(()), "return_count": jnp.ones(())}
    return problem._replace(rollout=lambda params, env_state, key, use: (batches[use], env_state, info))


def _check_meta_gradient(problem, mcfg, state, method, outer_critic, gamma0, eps, rtol, reference=None, wrt="gamma",
                         lam0=None, expect_zero=False):
    """jax.grad of the library's meta-loss w.r.t. gamma (or lambda, ``wrt="lam"``) against central finite
    differences of ``reference(x)`` (default: the outer loss after the inner update for MG; for BMG the
    matching loss to the target computed at (gamma0, lam0) and then held fixed, as the BMG target is a
    constant). ``lam0``: lambda's value when it is a meta-parameter (``mcfg.meta_lambda``)."""
    key = jax.random.PRNGKey(0)
    meta_loss = ov.mg_meta_loss if method == "mg" else ov.bmg_meta_loss
    batch = lambda use: problem.rollout(None, None, None, use)[0]
    outer_use = "outer_critic" if outer_critic else "outer"
    x0 = gamma0 if wrt == "gamma" else lam0

    def values(x):
        return (x, lam0) if wrt == "gamma" else (gamma0, x)

    def eta(x):
        g, l = values(x)
        e = {"gamma": ov.from_gamma(g, mcfg.gamma_low, mcfg.gamma_high)}
        if mcfg.meta_lambda:
            e["lam"] = ov.from_gamma(l, mcfg.lam_low, mcfg.lam_high)
        return e

    f = lambda x: meta_loss(eta(x), problem, mcfg, state, key, outer_critic)[0]
    grad = float(jax.grad(f)(jnp.asarray(x0)))
    inner = lambda x: ov.inner_update(problem, state.params, state.opt_state, batch("inner"),
                                      *[None if v is None else jnp.asarray(v) for v in values(x)])
    if reference is None and method == "mg":
        reference = lambda x: problem.outer_loss(inner(x)[0], batch(outer_use), values(x)[0], outer_critic)[0]
    elif reference is None:
        p1, o1, _ = inner(x0)
        target, _ = ov.bmg_target(problem, p1, o1, batch(outer_use), jnp.asarray(gamma0), outer_critic)
        matching = "matching" if problem.matching_fresh_rollout else outer_use
        reference = lambda x: problem.matching_loss(target, inner(x)[0], batch(matching))
    fd = (float(reference(x0 + eps)) - float(reference(x0 - eps))) / (2 * eps)
    if expect_zero:
        assert abs(grad) < 1e-10 and abs(fd) < 1e-8, (method, outer_critic, wrt, grad, fd)
        return grad
    assert abs(grad) > 1e-8, (method, outer_critic, wrt, grad)
    np.testing.assert_allclose(grad, fd, rtol=rtol, err_msg=f"{method} outer_critic={outer_critic} wrt={wrt}")
    return grad


@pytest.mark.parametrize("method", ["mg", "bmg"])
def test_chain_meta_gradient_matches_finite_differences(chain, method):
    """On the chain the critics are analytic values held constant (their discount is not
    differentiated): the reference recomputes the inner SGD step by hand with the value discount
    fixed at gamma0 and only the TD target's gamma varying."""
    timesteps, rewards, _ = chain
    lr, ent, g0 = 0.5, 0.005, 0.95
    with jax.enable_x64(True):
        problem = ov.make_chain_problem(ov.ChainConfig(batch_size=16, lr=lr, entropy_cost=ent))
        mcfg = ov.MetaConfig(0.9, 1.0, g0, 0.1)
        state = ov.init_agent(problem, mcfg, jax.random.PRNGKey(5))
        state = state.replace(params=_policy([0.1, 0.3, 0.2, 0.6, -0.2]))
        b1 = ov.chain_rollout(state.params, jax.random.PRNGKey(1), 16, sample_later=True)
        b2 = ov.chain_rollout(state.params, jax.random.PRNGKey(2), 16, sample_later=True)
        problem = _fixed_batch_problem(problem, {"inner": b1, "outer": b2, "outer_critic": b2, "matching": b2})
        loss = lambda p, c, gv, gt: ov.chain_pg_loss(p, c, gv, gt, ent, timesteps, rewards)[0]

        def theta1(gamma):  # one SGD step on the inner loss, written out
            g = jax.grad(loss)(state.params, b1, g0, gamma)
            return jax.tree.map(lambda p, d: p - lr * d, state.params, g)

        grads = []
        for oc in (False, True):
            if method == "mg":
                ref = lambda gamma: loss(theta1(gamma), b2, 1.0 if oc else g0, 1.0)
            else:
                p1 = theta1(g0)
                gt = jax.grad(loss)(p1, b2, 1.0 if oc else g0, 1.0)
                target = jax.tree.map(lambda p, d: p - lr * d, p1, gt)
                o = jnp.array([-1.0, 0.0])
                ref = lambda gamma: a2c.kl_divergence(ov.chain_policy_logits(target, o),
                                                      ov.chain_policy_logits(theta1(gamma), o))
            grads.append(_check_meta_gradient(problem, mcfg, state, method, oc, g0, 1e-5, 1e-5, reference=ref))
        assert grads[0] != grads[1]  # the outer critic changes the meta-gradient


@pytest.mark.parametrize("method", ["mg", "bmg"])
def test_chain_lambda_meta_gradient(chain, method):
    """Lambda as a second meta-parameter on the chain. With the analytic critics the inner TD(lambda)
    target equals the TD(0) one (after the first action the chain is deterministic and V is exact), so
    the meta-gradient w.r.t. lambda is zero (and so are the finite differences). With the learned
    tabular critics it is not, and it matches finite differences of the outer loss after the inner
    update (critic values in the advantage held at theta'(gamma0, lambda0), as the policy gradient
    treats its advantage as a constant), with and without the outer critic; and so does the gradient
    w.r.t. gamma with lambda meta-learned (outer critic)."""
    g0, l0 = 0.95, 0.6
    with jax.enable_x64(True):
        mcfg = ov.MetaConfig(0.9, 1.0, g0, 0.1, meta_lambda=True, lam_init=l0)
        rng = np.random.default_rng(1)
        for critic in ("analytic", "learned"):
            problem = ov.make_chain_problem(ov.ChainConfig(batch_size=16, critic=critic))
            state = ov.init_agent(problem, mcfg, jax.random.PRNGKey(5))
            params = _policy([0.1, 0.3, 0.2, 0.6, -0.2])
            if critic == "learned":
                params.update({k: {"v0": jnp.asarray(rng.normal()), "v": jnp.asarray(rng.normal(size=(99, 5)))}
                               for k in ("critic", "outer_critic")})
            state = state.replace(params=params, opt_state=problem.inner_opt.init(params))
            b1 = ov.chain_rollout(params, jax.random.PRNGKey(1), 16, sample_later=True)
            b2 = ov.chain_rollout(params, jax.random.PRNGKey(2), 16, sample_later=True)
            problem = _fixed_batch_problem(problem, {"inner": b1, "outer": b2, "outer_critic": b2, "matching": b2})
            theta1 = lambda g, l: ov.inner_update(problem, state.params, state.opt_state, b1, jnp.asarray(g),
                                                  jnp.asarray(l))[0]
            critics0 = {k: v for k, v in theta1(g0, l0).items() if k not in ("w", "b")}
            for oc in (False, True):
                ref = None
                if method == "mg" and critic == "learned":
                    ref = lambda x, wrt: problem.outer_loss({**theta1(*((x, l0) if wrt == "gamma" else (g0, x))),
                                                             **critics0}, b2, g0, oc)[0]
                for wrt in ("lam", "gamma"):
                    r = None if ref is None else (lambda x, wrt=wrt, ref=ref: ref(x, wrt))
                    if wrt == "gamma" and (critic == "analytic" or not oc):
                        continue  # analytic: covered by test_chain_meta_gradient_matches_finite_differences
                    _check_meta_gradient(problem, mcfg, state, method, oc, g0, 1e-5, 1e-5, reference=r, wrt=wrt,
                                         lam0=l0, expect_zero=(critic == "analytic"))


def test_snake_meta_gradient_matches_finite_differences():
    """MG and BMG through an RMSProp inner step on the paper's Snake networks (tiny), with and without
    the outer-critic head (the meta-gradient reaches gamma through the actor's and the critic's
    inner updates)."""
    from metarl.envs import make

    env = make("jumanji/Snake-6x6")
    cfg = ov.SnakeConfig(num_envs=4, horizon=3, actor_hidden=(8,), critic_hidden=(8,))
    with jax.enable_x64(True):
        problem = ov.make_snake_problem(cfg, env)
        mcfg = ov.MetaConfig(0.0, 1.0, 0.8, 3e-3, 0.1)
        state = ov.init_agent(problem, mcfg, jax.random.PRNGKey(0))
        f64 = lambda t: jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, t)
        params, opt_state = f64(state.params), f64(problem.inner_opt.init(f64(state.params)))
        env_state = state.env_state
        batches = []
        for i in range(4):  # a few real rollouts; two warm-up updates so RMSProp's scale is not degenerate
            b, env_state, _ = problem.rollout(params, env_state, jax.random.PRNGKey(10 + i))
            batches.append(f64(b))
            if i < 2:
                params, opt_state, _ = ov.inner_update(problem, params, opt_state, batches[-1], jnp.asarray(0.8))
        state = state.replace(params=params, opt_state=opt_state, env_state=env_state)
        problem = _fixed_batch_problem(problem, {"inner": batches[2], "outer": batches[3], "outer_critic": batches[3],
                                                 "matching": batches[1]})
        batch = lambda use: problem.rollout(None, None, None, use)[0]
        theta1 = lambda g: ov.inner_update(problem, state.params, state.opt_state, batch("inner"), g)[0]
        critic0 = {k: v for k, v in theta1(jnp.asarray(0.8)).items() if k != "actor"}
        for oc in (False, True):
            # The policy gradient treats its advantage as a constant: the reference holds the critics
            # at theta'(gamma0) and moves only the actor with gamma.
            ref = lambda g: problem.outer_loss({**critic0, "actor": theta1(g)["actor"]}, batch("outer"), g, oc)[0]
            _check_meta_gradient(problem, mcfg, state, "mg", oc, 0.8, 1e-5, 1e-5, reference=ref)
            _check_meta_gradient(problem, mcfg, state, "bmg", oc, 0.8, 1e-5, 1e-5)
        # lambda as a second meta-parameter (from 0.95): its meta-gradient through the same RMSProp step
        mcfg = ov.MetaConfig(0.0, 1.0, 0.8, 3e-3, 0.1, meta_lambda=True, lam_init=0.95)
        theta1 = lambda l: ov.inner_update(problem, state.params, state.opt_state, batch("inner"), jnp.asarray(0.8),
                                           l)[0]
        for oc in (True,):  # the outer-critic head (the chain test covers both branches for lambda)
            ref = lambda l: problem.outer_loss({**critic0, "actor": theta1(l)["actor"]}, batch("outer"), 0.8, oc)[0]
            _check_meta_gradient(problem, mcfg, state, "mg", oc, 0.8, 1e-5, 1e-5, reference=ref, wrt="lam", lam0=0.95)
            _check_meta_gradient(problem, mcfg, state, "bmg", oc, 0.8, 1e-5, 1e-5, wrt="lam", lam0=0.95)


# -- the agents in one program --------------------------------------------------------------------
def test_population_counts_every_rollout_and_vmaps_seeds():
    problem = ov.make_chain_problem(ov.ChainConfig(batch_size=8))
    mcfg = ov.MetaConfig(0.9, 1.0, 0.95, 0.1)
    agents = ov.PAPER_AGENTS
    init, step = ov.make_population(problem, lambda m: mcfg, agents, num_seeds=2)
    states = init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    new, metrics = jax.jit(step)(states, key)
    per_rollout = 8 * 100
    expected = {"A2C": 1, "MG": 2, "MG+outer critic": 2, "BMG": 2, "BMG+outer critic": 2}  # chain BMG: no 3rd rollout
    for a in agents:
        np.testing.assert_allclose(np.asarray(metrics[a.name]["env_steps"]), expected[a.name] * per_rollout)
    np.testing.assert_allclose(np.asarray(metrics["A2C"]["gamma"]), 0.95, rtol=1e-6)
    # seed 1 of the vmapped population equals a single run with seed 1's state and key
    i, a = 1, agents[3]
    single = ov.make_agent_step(problem, mcfg, a.method, a.outer_critic)
    s1 = jax.tree.map(lambda x: x[i], states[a.name])
    k1 = jax.random.split(jax.random.fold_in(key, 3), 2)[i]
    ref_state, ref_m = jax.jit(single)(s1, k1)
    np.testing.assert_allclose(np.asarray(new[a.name].logit[i]), np.asarray(ref_state.logit), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(metrics[a.name]["meta_grad"][i]), np.asarray(ref_m["meta_grad"]), rtol=1e-4)


def test_snake_outer_critic_head_and_separate_network():
    """The paper's outer head sits on stop_gradient(torso): its TD loss leaves the torso alone; the
    authors' variant is a separate network with its own parameters."""
    from metarl.envs import make

    env = make("jumanji/Snake-6x6")
    obs = jax.random.uniform(jax.random.PRNGKey(0), (3, 6, 6, 5))
    head = ov.make_snake_problem(ov.SnakeConfig(num_envs=2, critic_hidden=(8,), actor_hidden=(8,)), env)
    p = head.init_params(jax.random.PRNGKey(1))
    critic = ov.SnakeCritic((8,))
    g = jax.grad(lambda c: jnp.sum(critic.apply(c, obs)[1]))(p["critic"])["params"]
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(g["CNNTorso_0"]))
    assert float(jnp.max(jnp.abs(g["outer_head"]["kernel"]))) > 0.0
    sep = ov.make_snake_problem(ov.SnakeConfig(num_envs=2, critic_hidden=(8,), actor_hidden=(8,),
                                               separate_outer_network=True), env)
    ps = sep.init_params(jax.random.PRNGKey(1))
    assert set(ps) == {"actor", "critic", "outer"}


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ValueError, match="'neural'.*analytic, learned"):
        ov.ChainConfig(critic="neural")
    with pytest.raises(ValueError, match="lambda initial value 1.0"):
        ov.MetaConfig(meta_lambda=True, lam_init=1.0)


def test_benchmark_claims_are_decided_from_intervals():
    """metarl.meta.outer_value_outputs.claim_rows on fixed per-seed values: gamma thresholds and the outer-critic
    comparison get their verdicts from the intervals (a tie is inconclusive, never 'reproduces')."""
    from metarl.meta.outer_value_outputs import claim_rows

    def agent(gammas, returns):
        return {"final_gamma": {"per_seed": list(gammas)}, "return": {"per_seed": list(returns)}}

    res = {"summary": {"A2C": agent([0.95] * 5, [1.0] * 5),
                       "MG": agent([0.90, 0.90, 0.90, 0.90, 0.905], [1.0, 1.0, 1.01, 0.99, 1.0]),
                       "MG+outer critic": agent([1.0, 1.0, 0.999, 1.0, 1.0], [1.07, 1.08, 1.075, 1.07, 1.08]),
                       "BMG": agent([0.95, 0.96, 0.97, 0.95, 0.96], [1.0, 1.0, 1.0, 1.0, 1.0]),
                       "BMG+outer critic": agent([0.93, 0.99, 1.0, 0.95, 0.99], [1.0, 1.0, 1.0, 1.0, 1.0])}}
    out = claim_rows(res, "Chain")
    v = {c["label"]: c.get("claim_verdict", c.get("verdict")) for c in out["claims"]}
    assert v["Chain: MG final gamma <= 0.91"] == "reproduces"
    assert v["Chain: BMG final gamma <= 0.91"] == "contradicts"
    assert v["Chain: MG+outer critic final gamma >= 0.99"] == "reproduces"
    assert v["Chain: BMG+outer critic final gamma >= 0.99"] == "inconclusive at this scale"
    assert v["Chain: MG+outer critic return > MG"] == "reproduces"
    assert v["Chain: BMG+outer critic return > BMG"] == "inconclusive at this scale"
    assert len(out["rows"]) == 10 and all(r["ci"][0] <= r["iqm"] <= r["ci"][1] for r in out["rows"])
    assert all({"iqm", "ci", "verdict"} <= set(r) for r in out["rows"] + out["claims"])
    # The paper-layout table shows the same: ours as IQM [CI] beside the paper's figures, each agent's claims
    # with their verdicts in the last column (A2C: none)
    from _markdown import IQM_CI, tables

    from benchmarks.outer_value import combined_table
    from experiments.outer_value_chain import PAPER

    res["paper"] = PAPER  # (each part's result.json carries the paper's figures)
    for a in res["summary"].values():
        a["final_gamma"]["mean"] = a["return"]["mean"] = 0.0  # (the fields the old formatter read)
    t = {r["agent"]: r for r in tables("# T\n\n" + combined_table(res, None))["T"]}
    assert IQM_CI.match(t["MG"]["final gamma"]) and IQM_CI.match(t["MG"]["return"]) and t["MG"]["paper gamma"]
    col = "verdict (the paper's claims on this agent)"
    assert t["MG+outer critic"][col] == "final gamma >= 0.99: reproduces; return > MG: reproduces"
    assert t["BMG"][col] == "final gamma <= 0.91: contradicts" and t["A2C"][col] == "-"
    # ... and so do the experiment's own table rows (experiments/outer_value_chain.py)
    from experiments.outer_value_chain import TABLE_HEADER, table_rows

    rows = {r[0]: dict(zip(TABLE_HEADER, r)) for r in table_rows(res["summary"])}
    assert rows["MG+outer critic"]["verdict (the paper's claims)"] == t["MG+outer critic"][col]
