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
are taken at phi (Eq. 6), not at phi_old. Only the chosen subtree is differentiated in the look-ahead.

The gradients grad_phi L_critic(d_trn; phi) and grad_phi h_w(d_trn; phi) that the look-ahead needs are
the ones the real actor step needs too: each is computed once per meta-step and reused (grad h_w where
the look-ahead covers every parameter h_w reads: "all", or "features" with the feature forms), so the
meta-step's extra cost over a vanilla update is the meta-gradient itself.

Meta-critic forms (``form``):
    ``"feature"``     h_w = mean_i softplus(f_w(pi_bar(s_i)))              Eq. 10 (default)
    ``"feature_sa"``  h_w = mean_i softplus(f_w(pi_bar(s_i), s_i, a_i))    Eq. 11 (a: the replay action)
    ``"metareg"``     h_w = sum_j w_j |phi_j| over all actor parameters    (MetaReg)
with f_w an MLP 100-100-1, ReLU.

Schedule and compute. TD3-MC meta-updates only on the delayed policy steps. The agent exposes
``extras["update_phase"](state, batch, key, do_actor)`` with ``do_actor`` a Python bool and
``extras["update_period"]`` (TD3: 2), so :func:`metarl.train.make_functions` lays the delay out
statically: on the non-policy steps no meta-step is compiled at all (a ``lax.cond`` under vmap would
compute both branches). ``update`` (for use outside the training loop) decides with a ``lax.cond``.

Numeric meta-hyperparameters live in the state (``MC_HP``), so variants that share shapes are one
vmapped program: ``aux_scale = 0`` turns the agent into its vanilla base exactly (the extra gradient is
0 * g), ``meta_clip`` selects Eq. 9 (1) or Eq. 8 (0), ``extra_updates = K`` adds K vanilla updates
per update (the '+updates' control; fractional K is accumulated) and ``guard`` arms the re-initialisation
guard of a program compiled with ``reset_after > 0``. Each extra update draws its own fresh mini-batch: the
agent asks the loop for ``(2 + max_extra_updates)`` base batches per update (d_trn, d_val, then one per
extra update). ``max_extra_updates`` is static: with 0 (the default) no extra update is compiled at all.
Work that only some steps or some vmapped members need (an extra update, a re-initialisation) runs
through :func:`run_if`, which computes it only on steps where at least one member needs it.

The absorbing state of the authors' code (the meta-loss stays exactly zero and h_w stops learning,
e.g. when softplus or every ReLU of f_w saturates so that grad_phi h_w = 0): every meta-step whose
meta-gradient norm is below ``zero_tol``, or (feature forms) whose mean h_w is below ``h_floor``, is
counted as absorbed (metrics ``meta_grad_zero``, ``meta_absorbed``, ``meta_grad_zero_total``), so the
state cannot persist silently. The re-initialisation guard (``reset_after``, OFF by default; not in the
paper) re-initialises h_w after that many absorbed meta-steps in a row; see MetaCriticConfig.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct, traverse_util

from metarl import nets
from metarl.agents.base import Agent, AgentState, adam, apply_grads, merge_hp, set_lr
from metarl.meta.meta_critic_config import LOOKAHEADS

FORMS = ("feature", "feature_sa", "metareg")
META_LOSSES = ("clip", "plain")
WEIGHT_DECAYS = ("decoupled", "l2")

# Traced meta-hyperparameters (a list value in TrainConfig.hp makes them a vmapped sweep).
# guard: 1 arms the re-initialisation guard where the program has one (reset_after > 0), 0 disarms it, so
# guard on/off can be two members of one vmapped program.
MC_HP = dict(meta_lr=1e-3, meta_wd=1e-4, aux_scale=1.0, meta_clip=1.0, extra_updates=0.0, guard=1.0)

# The guard's setting in the authors' code issue and our earlier default: 200 absorbed meta-steps in a row.
GUARD_RESET_AFTER = 200


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
    # The re-initialisation guard: after ``reset_after`` consecutive absorbed meta-steps, h_w and its Adam
    # state are re-initialised (counted in ``meta_resets``); 0 = no guard (default, and no guard code is
    # compiled). It exists because of the authors' absorbing state (their issue #1, see above): once h_w is
    # flat, nothing brings it back. It is OFF by default because it is not in the paper and a fresh h_w
    # injects a random auxiliary gradient about as large as the critic's own (at init |grad_phi h| ~0.7-0.9
    # vs |grad_phi L_critic| ~0.9-1.5 at 400-300), while h_w falling towards 0 is what the actor is meant to
    # do. Use ``reset_after=GUARD_RESET_AFTER`` (200) for the "guard on" ablation; the traced hp ``guard``
    # (default 1) can disarm it per vmapped member. The absorbed-step counters run either way.
    reset_after: int = 0
    # '+updates': the most extra vanilla updates per update (static; >= the traced K = hp extra_updates,
    # which is clipped to it). 0 (default): no extra update is compiled and no extra batch is drawn.
    max_extra_updates: int = 0
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
        if self.reset_after < 0 or self.max_extra_updates < 0:
            raise ValueError(f"reset_after ({self.reset_after}) and max_extra_updates ({self.max_extra_updates}) "
                             f"must be >= 0")
        k = self.hp.get("extra_updates", 0.0)
        if not isinstance(k, (list, tuple)) and float(k) > self.max_extra_updates:
            raise ValueError(f"extra_updates={k} needs max_extra_updates >= {k} (got {self.max_extra_updates})")
        return self

    def default_hp(self) -> dict:
        hp = dict(MC_HP, meta_clip=1.0 if self.meta_loss == "clip" else 0.0)
        hp.update(self.hp)
        return hp


@dataclass(frozen=True)
class WrappedConfig:
    """What the training loop reads: ``batch_size`` (here 2 + max_extra_updates base batches: d_trn,
    d_val, then one fresh batch per extra update)."""

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
    extra_count: jax.Array  # extra updates done (their own policy-delay counter)
    zero_run: jax.Array  # consecutive absorbed meta-steps
    zero_total: jax.Array  # all meta-steps with a zero meta-gradient
    resets: jax.Array  # re-initialisations of h_w
    meta_steps: jax.Array


class MetaCriticNet(nn.Module):
    """f_w: MLP (hidden..., 1) with ReLU, softplus output; returns the per-sample value."""

    hidden: Sequence[int] = (100, 100)

    @nn.compact
    def __call__(self, x):
        return jax.nn.softplus(nets.MLP(tuple(self.hidden) + (1,))(x)[..., 0])


def _moves(names, which: str) -> bool:
    if which == "all":
        return True
    if which == "features":
        return "torso" in names
    return "torso" in names and "dense_0" in names  # first_layer


def lookahead_mask(actor_params, which: str):
    """A pytree of 0/1 floats over the actor's parameters: those the look-ahead steps move (a reference
    for tests; the agent itself differentiates only the moving subtree, see :func:`lookahead_keys`)."""

    def leaf(path, x):
        names = [getattr(p, "key", str(p)) for p in path]
        return jnp.full(x.shape, 1.0 if _moves(names, which) else 0.0, x.dtype)

    return jax.tree.map_with_path(leaf, actor_params)


def lookahead_keys(actor_params, which: str) -> tuple:
    """The flattened keys (tuples of names) of the actor parameters the look-ahead moves."""
    return tuple(k for k in traverse_util.flatten_dict(actor_params) if _moves(k, which))


def take(params, keys) -> dict:
    """The subtree {flat key: leaf} of ``params`` at ``keys``."""
    flat = traverse_util.flatten_dict(params)
    return {k: flat[k] for k in keys}


def put(params, sub: dict):
    """``params`` with the leaves at the keys of ``sub`` replaced by its values."""
    flat = dict(traverse_util.flatten_dict(params))
    flat.update(sub)
    return traverse_util.unflatten_dict(flat)


def tree_norm(t):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(t)))


def split_batch(batch, n: int, parts: int):
    return [jax.tree.map(lambda x: x[i * n:(i + 1) * n], batch) for i in range(parts)]


def run_if(pred, fn, x):
    """``fn(x) if pred else x``, computing ``fn`` only where it is needed, also under vmap.

    Under vmap a ``lax.cond`` with a batched predicate becomes a select that computes ``fn`` for every
    member on every step. A ``while_loop`` whose predicate is batched runs its body while ANY member's
    predicate holds (and keeps each member's own result), so here ``fn`` runs once on steps where at
    least one member needs it and not at all on the others. Not differentiable (not needed here)."""

    def body(c):
        return fn(c[0]), jnp.zeros_like(c[1])

    return jax.lax.while_loop(lambda c: c[1], body, (x, jnp.asarray(pred, bool)))[0]


class MetaCriticFns(NamedTuple):
    """The wrapped agent's inner pieces, for tests and analyses."""

    h_value: Callable  # (w, actor_params, batch) -> h_w
    init_w: Callable  # (key, base_state) -> w
    meta_objective: Callable  # (w, base_state, mc_hp, d_trn, d_val, key, trn=None) -> (L_meta, parts)
    meta_gradient: Callable  # (state, d_trn, d_val, key) -> (L_meta, dL_meta/dw, parts)
    meta_and_actor_step: Callable  # (state, d_trn, d_val, key) -> (state, metrics)
    update_phase: Callable  # (state, batch, key, do_actor: bool) -> (state, metrics)


def make_meta_critic_agent(base: Agent, mc: MetaCriticConfig = MetaCriticConfig()) -> Agent:
    """Wrap an off-policy agent (DDPG/TD3/SAC) with an online meta-critic; returns an Agent over MCState."""
    return make_meta_critic(base, mc)[0]


def make_meta_critic(base: Agent, mc: MetaCriticConfig = MetaCriticConfig()) -> tuple[Agent, MetaCriticFns]:
    """(the wrapped Agent, its inner functions)."""
    mc.validate()
    n = base.config.batch_size
    delay = max(int(getattr(base.config, "policy_delay", 1)), 1)
    n_extra = mc.max_extra_updates
    net = MetaCriticNet(tuple(mc.hidden))
    actor_net = base.actor_net
    # The feature forms read the actor's hidden layers only, so a look-ahead over them ("features") has
    # the whole of grad_phi h_w already; MetaReg reads every parameter.
    reuse_g_h = mc.lookahead == "all" or (mc.lookahead == "features" and mc.form != "metareg")

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
        feat_dim = jax.eval_shape(lambda p: actor_net.apply(p, obs, method="features"), base_state.actor).shape[-1]
        if mc.form == "feature_sa":
            adim = jax.eval_shape(lambda s, o: base.act(s, o, key, False), base_state, obs).shape[-1]
            feat_dim += obs.shape[-1] + adim
        return net.init(key, jnp.zeros((1, feat_dim)))

    def init(key, hp=None) -> MCState:
        hp = dict(hp or {})
        defaults = mc.default_hp()
        mc_hp = merge_hp(defaults, {k: hp.pop(k) for k in list(hp) if k in defaults})
        kb, kw = jax.random.split(key)
        base_state = base.init(kb, hp)
        w = init_w(kw, base_state)
        z = jnp.zeros((), jnp.int32)
        return MCState(base=base_state, w=w, w_opt=adam(mc_hp["meta_lr"]).init(w), hp=mc_hp,
                       extra_acc=jnp.zeros(()), extra_count=z, zero_run=z, zero_total=z, resets=z, meta_steps=z)

    def act(state: MCState, obs, key, explore=True):
        return base.act(state.base, obs, key, explore)

    # ---- Algorithm 1 ----------------------------------------------------------------------------
    def critic_provided(actor_params, base_state, batch, key):
        return base.actor_loss(actor_params, base_state, batch, key)[0]

    def actor_loss_and_grad(base_state, batch, key):
        """((L_critic, its metrics), grad_phi L_critic) at the current actor: what both the look-ahead
        and the real actor step need, computed once."""
        return jax.value_and_grad(base.actor_loss, has_aux=True)(base_state.actor, base_state, batch, key)

    def meta_objective(w, base_state: AgentState, mc_hp, d_trn, d_val, key, trn=None):
        """L_meta(w) and its parts, with phi_new a function of w (one look-ahead step from phi). ``trn``:
        ``actor_loss_and_grad`` on d_trn, if already computed (it does not depend on w). The parts include
        ``g_h``, grad h_w wrt the look-ahead's subtree (the primal value; for reuse by the actor step)."""
        phi = base_state.actor
        eta = base_state.hp["actor_lr"]
        keys = lookahead_keys(phi, mc.lookahead)
        k_val = jax.random.fold_in(key, 1)  # one key for both validation losses (common noise in SAC)
        (l_trn, _), g_c = trn if trn is not None else actor_loss_and_grad(base_state, d_trn, key)
        sub = take(phi, keys)
        sub_old = jax.tree.map(lambda p, g: p - eta * g, sub, take(g_c, keys))
        phi_old = put(phi, sub_old)
        # grad_phi h_w at phi (Eq. 6), for the moving subtree only
        h, g_h = jax.value_and_grad(lambda s: h_value(w, put(phi, s), d_trn))(sub)
        phi_new = put(phi, jax.tree.map(lambda p, g: p - eta * mc_hp["aux_scale"] * g, sub_old, g_h))
        l_new = critic_provided(phi_new, base_state, d_val, k_val)
        l_old = critic_provided(phi_old, base_state, d_val, k_val)
        clip = mc_hp["meta_clip"]
        loss = clip * jnp.tanh(l_new - jax.lax.stop_gradient(l_old)) + (1.0 - clip) * l_new
        return loss, dict(L_critic=l_trn, h_w=h, L_val_new=l_new, L_val_old=l_old, g_h=g_h)

    def _meta_gradient(state: MCState, d_trn, d_val, key, trn):
        (loss, aux), g_w = jax.value_and_grad(meta_objective, has_aux=True)(
            state.w, state.base, state.hp, d_trn, d_val, key, trn)
        return loss, g_w, aux

    def meta_gradient(state: MCState, d_trn, d_val, key):
        """(L_meta, dL_meta/dw, metrics) at the current state; the base critic should already be stepped."""
        loss, g_w, aux = _meta_gradient(state, d_trn, d_val, key, None)
        aux.pop("g_h")
        return loss, g_w, aux

    def meta_and_actor_step(state: MCState, d_trn, d_val, key):
        trn = actor_loss_and_grad(state.base, d_trn, key)
        (_, m_trn), g_c = trn
        loss, g_w, aux = _meta_gradient(state, d_trn, d_val, key, trn)
        g_h_sub = aux.pop("g_h")
        phi = state.base.actor
        if reuse_g_h:  # the look-ahead's grad_phi h_w covers every parameter h_w depends on: reuse it
            g_h = put(jax.tree.map(jnp.zeros_like, phi), g_h_sub)
        else:
            g_h = jax.grad(h_value, argnums=1)(state.w, phi, d_trn)
        # The real actor step: the base agent's own step with grad L_critic + aux_scale * grad h_w. The
        # actor loss's gradient was computed above, so the step's loss_fn is a constant that hands the
        # base agent that loss's metrics (SAC's temperature step reads logp from them).
        grads = jax.tree.map(lambda gc, gh: gc + state.hp["aux_scale"] * gh, g_c, g_h)
        precomputed = lambda p, s, b, k: (jnp.zeros((), jnp.float32), m_trn)
        base_state, m_actor = base.actor_step(state.base, d_trn, key, loss_fn=precomputed, extra_grads=grads)
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
        resets = state.resets
        if mc.reset_after > 0:  # the guard (off by default): compiled only when asked for
            do_reset = jnp.logical_and(zero_run >= mc.reset_after, state.hp["guard"] > 0)
            k_reset = jax.random.fold_in(key, 2)

            def reset(c):
                w0 = init_w(k_reset, base_state)
                return w0, adam(state.hp["meta_lr"]).init(w0), jnp.zeros_like(c[2])

            w, w_opt, zero_run = run_if(do_reset, reset, (w, w_opt, zero_run))
            resets = resets + do_reset.astype(jnp.int32)
        state = state.replace(base=base_state, w=w, w_opt=w_opt, zero_run=zero_run,
                              zero_total=state.zero_total + zero.astype(jnp.int32), resets=resets,
                              meta_steps=state.meta_steps + 1)
        metrics = dict(m_actor, **aux, L_meta=loss, meta_grad_norm=gnorm, meta_grad_zero=zero.astype(jnp.float32),
                       meta_absorbed=absorbed.astype(jnp.float32),
                       meta_grad_zero_total=state.zero_total.astype(jnp.float32),
                       meta_resets=state.resets.astype(jnp.float32), meta_step=jnp.ones(()))
        return state, metrics

    def extra_update(state: MCState, d_extras, key):
        """'+updates': vanilla base updates, K = hp extra_updates per update on average (the accumulated
        K's integer part each time, at most ``max_extra_updates``), each on its own fresh batch. TD3's
        policy delay counts the extra updates by themselves (``extra_count``)."""
        state = state.replace(extra_acc=state.extra_acc + jnp.minimum(state.hp["extra_updates"], n_extra))
        done = jnp.zeros(())
        for i, d in enumerate(d_extras):
            k = jax.random.fold_in(key, i)
            kc, ka = jax.random.split(k)

            def one(s, d=d, kc=kc, ka=ka):
                b, _ = base.critic_step(s.base, d, kc)
                if delay <= 1:
                    b, _ = base.actor_step(b, d, ka)
                else:
                    b = run_if((s.extra_count + 1) % delay == 0, lambda b: base.actor_step(b, d, ka)[0], b)
                return s.replace(base=b, extra_acc=s.extra_acc - 1.0, extra_count=s.extra_count + 1)

            do = state.extra_acc >= 1.0
            done = done + do.astype(jnp.float32)
            state = run_if(do, one, state)
        return state, {"extra_updates_done": done}

    def update_phase(state: MCState, batch, key, do_actor: bool, loss_fn=None):
        """One update whose policy (and so meta) step is decided in Python (``do_actor`` static): critic
        step on d_trn, then the meta-step and actor step or none, then the extra updates (if compiled)."""
        if loss_fn is not None:
            raise ValueError("the meta-critic agent does not take a replacement actor loss")
        d_trn, d_val, *d_extras = split_batch(batch, n, 2 + n_extra)
        kc, ka = jax.random.split(key)
        base_state, m = base.critic_step(state.base, d_trn, kc)
        state = state.replace(base=base_state)
        step_fn = lambda s: meta_and_actor_step(s, d_trn, d_val, ka)
        if do_actor:
            state, ma = step_fn(state)
        else:  # not a policy step: NaN metrics, which the loop's per-segment nanmean skips (as for TD3)
            ma = jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), jax.eval_shape(step_fn, state)[1])
        if n_extra:
            state, me = extra_update(state, d_extras, jax.random.fold_in(key, 3))
            ma = {**ma, **me}
        return state, {**m, **ma}

    def update(state: MCState, batch, key, loss_fn=None):
        if delay <= 1:
            return update_phase(state, batch, key, True, loss_fn)
        # TD3-MC: meta-update only on the delayed policy steps (counted over the main updates only)
        do_actor = (state.base.step - state.extra_count + 1) % delay == 0
        return jax.lax.cond(do_actor, lambda s: update_phase(s, batch, key, True, loss_fn),
                            lambda s: update_phase(s, batch, key, False, loss_fn), state)

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

    # The training loop lays a delayed policy out statically through update_phase / update_period.
    # The loop's per-update NaN/inf check reads the base agent's probe and the meta-critic's parameters (Adam
    # moments and the rest are checked at every evaluation point; see metarl.agents.base.online_parameters).
    base_probe = (base.extras or {}).get("finite_probe", lambda s: s)
    extras = {"finite_probe": lambda s: (base_probe(s.base), s.w)}
    if delay > 1:
        extras.update(update_phase=update_phase, update_period=delay)
    agent = Agent(f"{base.name}-mc", WrappedConfig(base.config, mc, (2 + n_extra) * n), base.actor_net,
                  base.critic_net, init, act, critic_loss, actor_loss, critic_step, actor_step, update,
                  {**base.default_hp, **mc.default_hp()}, extras)
    return agent, MetaCriticFns(h_value, init_w, meta_objective, meta_gradient, meta_and_actor_step, update_phase)


def param_overhead(state: MCState) -> dict:
    """Parameter count of the base actor+critic, of h_w, and the relative overhead."""
    base_n = nets.count_params(state.base.actor) + nets.count_params(state.base.critic)
    w_n = nets.count_params(state.w)
    return dict(base=base_n, meta_critic=w_n, overhead=w_n / base_n)
