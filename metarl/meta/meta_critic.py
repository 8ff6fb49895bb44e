"""Online Meta-Critic (Zhou, Li, Hospedales; NeurIPS 2020) as a wrapper around DDPG, TD3 and SAC.

The meta-critic h_w is an auxiliary actor loss learned online (Algorithm 1 of the paper):

    d_trn, d_val       two independent replay batches of the base agent's batch size
    critic step        the base agent's own critic update on d_trn
    phi_old = phi - eta * grad_phi L_critic(d_trn; phi)                       (Eq. 7, look-ahead)
    phi_new = phi_old - eta * grad_phi h_w(d_trn; phi)                         (Eq. 6)
    L_meta  = L_critic(d_val; phi_new)                                          (Eq. 8)
         or tanh(L_critic(d_val; phi_new) - L_critic(d_val; phi_old))           (Eq. 9, default)
    actor   <- the base agent's actor_step on d_trn with extra_grads = grad_phi h_w
    w       <- Adam(1e-3, L2 1e-4) on grad_w L_meta (second order, through phi_new)

``L_critic`` is the base agent's ``actor_loss`` (so SAC-MC includes the entropy term alpha*log pi).
The look-ahead steps are plain SGD with eta = the actor's learning rate, on a subset of the actor's
parameters chosen by ``lookahead``: ``"all"`` (the paper's Eq. 6-7), ``"features"`` (the hidden layers,
the authors' SAC code) or ``"first_layer"`` (the authors' DDPG/TD3 code). The gradients of the look-ahead
are taken at phi (Eq. 6), not at phi_old.

Meta-critic forms (``form``):
    ``"feature"``     h_w = mean_i softplus(f_w(pi_bar(s_i)))              Eq. 10 (default)
    ``"feature_sa"``  h_w = mean_i softplus(f_w(pi_bar(s_i), s_i, a_i))    Eq. 11 (a: the replay action)
    ``"metareg"``     h_w = sum_j w_j |phi_j| over all actor parameters    (MetaReg)
with f_w an MLP 100-100-1, ReLU.

TD3-MC meta-updates only on the delayed policy steps (inside the same ``lax.cond`` as the actor).

Numeric meta-hyperparameters live in the state (``MC_HP``), so variants that share shapes are one
vmapped program: ``aux_scale = 0`` turns the agent into its vanilla base exactly (the extra gradient is
0 * g), ``meta_clip`` selects Eq. 9 (1) or Eq. 8 (0), and ``extra_updates = K`` adds K vanilla updates
per update on an extra independent batch (fractional K: accumulated, the '+updates' control).

The absorbing state of the authors' code (the meta-loss stays exactly zero and h_w stops learning,
e.g. when softplus or every ReLU of f_w saturates so that grad_phi h_w = 0): every meta-step whose
meta-gradient norm is below ``zero_tol`` is counted, and after ``reset_after`` such steps in a row
the meta-critic is re-initialised (also counted), so the state cannot persist silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from metarl import nets
from metarl.agents.base import Agent, AgentState, adam, apply_grads, merge_hp, set_lr

FORMS = ("feature", "feature_sa", "metareg")
LOOKAHEADS = ("all", "features", "first_layer")
META_LOSSES = ("clip", "plain")
WEIGHT_DECAYS = ("decoupled", "l2")

# Traced meta-hyperparameters (a list value in TrainConfig.hp makes them a vmapped sweep).
MC_HP = dict(meta_lr=1e-3, meta_wd=1e-4, aux_scale=1.0, meta_clip=1.0, extra_updates=0.0)


@dataclass(frozen=True)
class MetaCriticConfig:
    form: str = "feature"  # Eq. 10 "feature", Eq. 11 "feature_sa", "metareg"
    meta_loss: str = "clip"  # Eq. 9 "clip" (default) or Eq. 8 "plain": sets the default of hp meta_clip
    lookahead: str = "all"  # which actor parameters the virtual steps move: all | features | first_layer
    hidden: Sequence[int] = (100, 100)
    # "decoupled" (default): w <- Adam(g) - lr * wd * w. "l2": wd * w added to the gradient before Adam
    # (PyTorch Adam's weight_decay, the authors' code). With meta-gradients as small as the look-ahead
    # makes them (~eta), Adam normalises the L2 term into full-size steps towards w = 0: f_w's weights
    # collapse, h_w = softplus(0) = log 2 everywhere, grad_phi h_w = 0 and the meta-gradient is zero for
    # ever -- the absorbing state of the authors' issue #1. The decoupled form does not do that.
    weight_decay: str = "decoupled"
    zero_tol: float = 1e-12  # a meta-gradient norm below this counts as zero
    # The slow road into the same state: the actor minimises h_w directly and can push f_w into the flat
    # tail of the softplus, where grad_phi h_w and the meta-gradient vanish (without being exactly 0).
    # A step with mean h_w below h_floor (feature forms only) counts as absorbed too.
    h_floor: float = 1e-3
    reset_after: int = 200  # consecutive absorbed meta-steps before h_w is re-initialised (0: never)
    max_extra_updates: int = 1  # '+updates': at most this many extra vanilla updates per update (>= K)
    hp: dict = field(default_factory=dict)  # overrides of MC_HP defaults

    def validate(self):
        for name, value, valid in (("form", self.form, FORMS), ("lookahead", self.lookahead, LOOKAHEADS),
                                   ("meta_loss", self.meta_loss, META_LOSSES),
                                   ("weight_decay", self.weight_decay, WEIGHT_DECAYS)):
            if value not in valid:
                raise ValueError(f"unknown meta-critic {name} {value!r}; valid: {', '.join(valid)}")
        bad = sorted(set(self.hp) - set(MC_HP))
        if bad:
            raise ValueError(f"unknown meta-critic hyperparameter(s) {bad}; valid: {', '.join(MC_HP)}")
        return self

    def default_hp(self) -> dict:
        hp = dict(MC_HP, meta_clip=1.0 if self.meta_loss == "clip" else 0.0)
        hp.update(self.hp)
        return hp


@dataclass(frozen=True)
class WrappedConfig:
    """What the training loop reads: ``batch_size`` (here 3 base batches: d_trn, d_val, d_extra)."""

    base: Any
    mc: MetaCriticConfig
    batch_size: int


@struct.dataclass
class MCState:
    base: AgentState
    w: Any  # meta-critic parameters
    w_opt: Any  # Adam state (lr inside)
    hp: dict  # MC_HP values (traced)
    extra_acc: jax.Array  # fractional '+updates' accumulator
    zero_run: jax.Array  # consecutive meta-steps with a zero meta-gradient
    zero_total: jax.Array  # all meta-steps with a zero meta-gradient
    resets: jax.Array  # re-initialisations of h_w
    meta_steps: jax.Array


class MetaCriticNet(nn.Module):
    """f_w: MLP (hidden..., 1) with ReLU, softplus output; returns the per-sample value."""

    hidden: Sequence[int] = (100, 100)

    @nn.compact
    def __call__(self, x):
        return jax.nn.softplus(nets.MLP(tuple(self.hidden) + (1,))(x)[..., 0])


def lookahead_mask(actor_params, which: str):
    """A pytree of 0/1 floats over the actor's parameters: those the look-ahead steps move."""

    def leaf(path, x):
        names = [getattr(p, "key", str(p)) for p in path]
        if which == "all":
            on = True
        elif which == "features":
            on = "torso" in names
        else:  # first_layer
            on = "torso" in names and "dense_0" in names
        return jnp.full(x.shape, 1.0 if on else 0.0, x.dtype)

    return jax.tree.map_with_path(leaf, actor_params)


def tree_norm(t):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(t)))


def split_batch(batch, n: int, parts: int):
    return [jax.tree.map(lambda x: x[i * n:(i + 1) * n], batch) for i in range(parts)]


class MetaCriticFns(NamedTuple):
    """The wrapped agent's inner pieces, for tests and analyses."""

    h_value: Callable  # (w, actor_params, batch) -> h_w
    init_w: Callable  # (key, base_state) -> w
    meta_objective: Callable  # (w, base_state, mc_hp, d_trn, d_val, key) -> (L_meta, parts)
    meta_gradient: Callable  # (state, d_trn, d_val, key) -> (L_meta, dL_meta/dw, parts)
    meta_and_actor_step: Callable  # (state, d_trn, d_val, key) -> (state, metrics)


def make_meta_critic_agent(base: Agent, mc: MetaCriticConfig = MetaCriticConfig()) -> Agent:
    """Wrap an off-policy agent (DDPG/TD3/SAC) with an online meta-critic; returns an Agent over MCState."""
    return make_meta_critic(base, mc)[0]


def make_meta_critic(base: Agent, mc: MetaCriticConfig = MetaCriticConfig()) -> tuple[Agent, MetaCriticFns]:
    """(the wrapped Agent, its inner functions)."""
    mc.validate()
    n = base.config.batch_size
    delay = getattr(base.config, "policy_delay", 1)
    net = MetaCriticNet(tuple(mc.hidden))
    actor_net = base.actor_net

    # ---- the meta-critic h_w ------------------------------------------------------------------
    def h_value(w, actor_params, batch):
        if mc.form == "metareg":
            return sum(jnp.sum(wi * jnp.abs(p)) for wi, p in zip(jax.tree.leaves(w), jax.tree.leaves(actor_params)))
        feats = actor_net.apply(actor_params, batch["obs"], method="features")
        if mc.form == "feature_sa":
            feats = jnp.concatenate([feats, batch["obs"], batch["action"]], axis=-1)
        return jnp.mean(net.apply(w, feats))

    def init_w(key, base_state: AgentState):
        if mc.form == "metareg":
            return jax.tree.map(jnp.zeros_like, base_state.actor)
        obs = jnp.zeros((1,) + base_state.actor["params"]["torso"]["dense_0"]["kernel"].shape[:1])
        feats = actor_net.apply(base_state.actor, obs, method="features")
        if mc.form == "feature_sa":
            adim = jax.eval_shape(lambda s, o: base.act(s, o, key, False), base_state, obs).shape[-1]
            feats = jnp.concatenate([feats, obs, jnp.zeros((1, adim))], axis=-1)
        return net.init(key, feats)

    def init(key, hp=None) -> MCState:
        hp = dict(hp or {})
        defaults = mc.default_hp()
        mc_hp = merge_hp(defaults, {k: hp.pop(k) for k in list(hp) if k in defaults})
        kb, kw = jax.random.split(key)
        base_state = base.init(kb, hp)
        w = init_w(kw, base_state)
        z = jnp.zeros((), jnp.int32)
        return MCState(base=base_state, w=w, w_opt=adam(mc_hp["meta_lr"]).init(w), hp=mc_hp,
                       extra_acc=jnp.zeros(()), zero_run=z, zero_total=z, resets=z, meta_steps=z)

    def act(state: MCState, obs, key, explore=True):
        return base.act(state.base, obs, key, explore)

    # ---- Algorithm 1 ----------------------------------------------------------------------------
    def critic_provided(actor_params, base_state, batch, key):
        return base.actor_loss(actor_params, base_state, batch, key)[0]

    def meta_objective(w, base_state: AgentState, mc_hp, d_trn, d_val, key):
        """L_meta(w) and its parts, with phi_new a function of w (one look-ahead step from phi)."""
        phi = base_state.actor
        eta = base_state.hp["actor_lr"]
        mask = lookahead_mask(phi, mc.lookahead)
        k_val = jax.random.fold_in(key, 1)  # one key for both validation losses (common noise in SAC)
        l_trn, g_c = jax.value_and_grad(critic_provided)(phi, base_state, d_trn, key)
        phi_old = jax.tree.map(lambda p, g, m: p - eta * m * g, phi, g_c, mask)
        h, g_h = jax.value_and_grad(h_value, argnums=1)(w, phi, d_trn)
        phi_new = jax.tree.map(lambda p, g, m: p - eta * m * mc_hp["aux_scale"] * g, phi_old, g_h, mask)
        l_new = critic_provided(phi_new, base_state, d_val, k_val)
        l_old = critic_provided(phi_old, base_state, d_val, k_val)
        clip = mc_hp["meta_clip"]
        loss = clip * jnp.tanh(l_new - jax.lax.stop_gradient(l_old)) + (1.0 - clip) * l_new
        return loss, dict(L_critic=l_trn, h_w=h, L_val_new=l_new, L_val_old=l_old)

    def meta_gradient(state: MCState, d_trn, d_val, key):
        """(L_meta, dL_meta/dw, metrics) at the current state; the base critic should already be stepped."""
        (loss, aux), g_w = jax.value_and_grad(meta_objective, has_aux=True)(
            state.w, state.base, state.hp, d_trn, d_val, key)
        return loss, g_w, aux

    def meta_and_actor_step(state: MCState, d_trn, d_val, key):
        loss, g_w, aux = meta_gradient(state, d_trn, d_val, key)
        # The real actor step: the base agent's own step with the meta-critic's gradient added.
        g_h = jax.grad(h_value, argnums=1)(state.w, state.base.actor, d_trn)
        extra = jax.tree.map(lambda g: state.hp["aux_scale"] * g, g_h)
        base_state, m_actor = base.actor_step(state.base, d_trn, key, extra_grads=extra)
        # The meta-critic step: Adam with weight decay (decoupled by default, see MetaCriticConfig).
        lr, wd = state.hp["meta_lr"], state.hp["meta_wd"]
        if mc.weight_decay == "l2":
            w, w_opt = apply_grads(state.w, set_lr(state.w_opt, lr),
                                   jax.tree.map(lambda g, p: g + wd * p, g_w, state.w))
        else:
            w, w_opt = apply_grads(state.w, set_lr(state.w_opt, lr), g_w)
            w = jax.tree.map(lambda new, old: new - lr * wd * old, w, state.w)
        gnorm = tree_norm(g_w)
        zero = gnorm <= mc.zero_tol
        absorbed = zero if mc.form == "metareg" else jnp.logical_or(zero, aux["h_w"] < mc.h_floor)
        zero_run = jnp.where(absorbed, state.zero_run + 1, 0)
        if mc.reset_after > 0:
            do_reset = zero_run >= mc.reset_after
            w0 = init_w(jax.random.fold_in(key, 2), base_state)
            opt0 = adam(state.hp["meta_lr"]).init(w0)
            w = jax.tree.map(lambda a, b: jnp.where(do_reset, a, b), w0, w)
            w_opt = jax.tree.map(lambda a, b: jnp.where(do_reset, a, b), opt0, w_opt)
            zero_run = jnp.where(do_reset, 0, zero_run)
            resets = state.resets + do_reset.astype(jnp.int32)
        else:
            resets = state.resets
        state = state.replace(base=base_state, w=w, w_opt=w_opt, zero_run=zero_run,
                              zero_total=state.zero_total + zero.astype(jnp.int32), resets=resets,
                              meta_steps=state.meta_steps + 1)
        metrics = dict(m_actor, **aux, L_meta=loss, meta_grad_norm=gnorm, meta_grad_zero=zero.astype(jnp.float32),
                       meta_absorbed=absorbed.astype(jnp.float32),
                       meta_grad_zero_total=state.zero_total.astype(jnp.float32),
                       meta_resets=state.resets.astype(jnp.float32), meta_step=jnp.ones(()))
        return state, metrics

    def extra_update(state: MCState, d_extra, key):
        """'+updates': vanilla base updates on an independent batch, K per update on average
        (floor of the accumulated K each time, at most ``max_extra_updates``)."""
        state = state.replace(extra_acc=state.extra_acc + state.hp["extra_updates"])

        def one(s, k):
            do = s.extra_acc >= 1.0

            def run(s):
                b, _ = base.update(s.base, d_extra, k)
                return s.replace(base=b, extra_acc=s.extra_acc - 1.0)

            return jax.lax.cond(do, run, lambda s: s, s), None

        state, _ = jax.lax.scan(one, state, jax.random.split(key, mc.max_extra_updates))
        return state

    def update(state: MCState, batch, key, loss_fn=None):
        if loss_fn is not None:
            raise ValueError("the meta-critic agent does not take a replacement actor loss")
        d_trn, d_val, d_extra = split_batch(batch, n, 3)
        kc, ka = jax.random.split(key)
        base_state, m = base.critic_step(state.base, d_trn, kc)
        state = state.replace(base=base_state)
        step_fn = lambda s: meta_and_actor_step(s, d_trn, d_val, ka)
        if delay <= 1:
            state, ma = step_fn(state)
        else:  # TD3-MC: meta-update only on the delayed policy steps
            do_actor = state.base.step % delay == 0
            # Not a policy step: NaN metrics, which the loop's per-segment nanmean skips (as for TD3).
            skipped = jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), jax.eval_shape(step_fn, state)[1])
            state, ma = jax.lax.cond(do_actor, step_fn, lambda s: (s, skipped), state)
        state = extra_update(state, d_extra, jax.random.fold_in(key, 3))
        return state, {**m, **ma}

    # The base agent's loss/step functions, lifted to MCState.
    def critic_loss(params, state, batch, key):
        return base.critic_loss(params, state.base, batch, key)

    def actor_loss(params, state, batch, key):
        return base.actor_loss(params, state.base, batch, key)

    def critic_step(state, batch, key):
        b, m = base.critic_step(state.base, batch, key)
        return state.replace(base=b), m

    def actor_step(state, batch, key, loss_fn=None, extra_grads=None):
        b, m = base.actor_step(state.base, batch, key, loss_fn=loss_fn, extra_grads=extra_grads)
        return state.replace(base=b), m

    agent = Agent(f"{base.name}-mc", WrappedConfig(base.config, mc, 3 * n), base.actor_net, base.critic_net,
                  init, act, critic_loss, actor_loss, critic_step, actor_step, update,
                  {**base.default_hp, **mc.default_hp()})
    return agent, MetaCriticFns(h_value, init_w, meta_objective, meta_gradient, meta_and_actor_step)


def param_overhead(state: MCState) -> dict:
    """Parameter count of the base actor+critic, of h_w, and the relative overhead."""
    base_n = nets.count_params(state.base.actor) + nets.count_params(state.base.critic)
    w_n = nets.count_params(state.w)
    return dict(base=base_n, meta_critic=w_n, overhead=w_n / base_n)
