"""PPO-LIRPG: learned intrinsic rewards for PPO (Zheng, Oh and Singh, NeurIPS 2018, Algorithm 1).

The PPO agent of :mod:`metarl.agents.onpolicy` (its Gaussian policy ``pi_theta``, extrinsic value net,
rollouts, GAE and minibatch loop) plus two networks:

* an intrinsic reward ``r_in_eta(s, a) = tanh(MLP([s, a]))`` in [-1, 1], and
* an intrinsic value head ``V_in(s)`` (a value MLP of its own), regressed on the GAE targets of r_in.

Each update collects a batch with ``pi_theta`` and forms the mixed advantage
``A_mix = ex_coef * A_ex + in_coef * A_in``, where ``A_ex`` is GAE of the extrinsic reward with ``V_ex``
(exactly PPO's advantage) and ``A_in`` is GAE of ``r_in_eta`` with ``V_in``. GAE is linear in the rewards
and values, so ``A_mix`` is the GAE of the mixed reward ``ex_coef * r_ex + in_coef * r_in`` with the
mixed value ``ex_coef * V_ex + in_coef * V_in`` (the paper's ``G^{ex+in}``; its ``lambda`` is ``in_coef``).
Then, for ``pi_epochs`` passes over the batch in shuffled minibatches, each minibatch step is:

1. **policy**: one Adam step of PPO's clipped surrogate on ``A_mix`` (standardised per minibatch), the
   very step of :func:`metarl.agents.onpolicy.make_onpolicy` with its advantages replaced by ``A_mix``;
2. **intrinsic reward** (the paper's Eqs. 5-11, by the chain rule through step 1): the updated policy
   ``theta'(eta)`` is written as a function of eta (``lookahead="adam"``: the Adam step just taken,
   its second moment held fixed, as in the authors' code; ``"sgd"``: ``theta - alpha * grad``, the
   paper's Eq. for ``theta'``), and eta takes one Adam step (``rin_lr``, the paper's beta) on
   ``L_ex(theta'(eta))``, PPO's clipped surrogate of the *extrinsic* advantage (standardised ``A_ex``)
   at ``theta'`` with the importance ratio ``pi_theta'(a|s) / pi_old(a|s)`` (the paper's Eq. 11 in PPO's
   form). The gradient reaches eta through ``A_in`` of the minibatch's samples, which depends on
   ``r_in_eta`` at every later step of the sample's trajectory segment: ``A_in[t] = sum_{j>=t}
   (gamma lam)^{j-t} [no episode end in t..j-1] delta_in[j]`` (rows of GAE's linear operator,
   :func:`gae_rows`), so r_in is evaluated on the whole batch at every minibatch step, as the authors do.

After the policy passes, ``V_ex`` and ``V_in`` take PPO's value steps on their targets ``A + V``.

Pure functions: ``make_lirpg(config, env)`` returns ``init(key, hp)`` and ``run_segment(state)`` for one
run; vmap them over runs. The hyperparameters ``hp = {in_coef, ex_coef, rin_lr}`` are traced, so PPO
(``in_coef = 0``, ``rin_lr = 0``: the intrinsic reward never reaches the policy and never moves) and
PPO-LIRPG on the same seeds are ONE compiled program. With ``in_coef = 0`` the policy and extrinsic value
updates are PPO's (``tests/test_lirpg.py`` checks this against :mod:`metarl.agents.onpolicy`).

Defaults: PPO's MuJoCo settings (:data:`metarl.agents.onpolicy.PRESETS`), 64-64 tanh intrinsic networks,
``rin_lr = 1e-4`` (the paper's beta for MuJoCo), ``in_coef = 1``, ``ex_coef = 1``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl import envs
from metarl.driver import ConfigMismatch, has_checkpoint
from metarl.agents import onpolicy as op
from metarl.nets import MLP
from metarl.runs import vmap_runs

LOOKAHEADS = ("adam", "sgd")
VARIANTS = ("ppo", "lirpg")
LABELS = {"ppo": "PPO", "lirpg": "PPO-LIRPG"}
# optax.adam's defaults, which the policy's optimiser uses; the "adam" look-ahead repeats its step.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class LIRPGConfig:
    ppo: op.OnPolicyConfig = field(default_factory=lambda: op.make_config("ppo"))
    in_coef: float = 1.0  # the paper's lambda: weight of the intrinsic reward in the policy's reward
    ex_coef: float = 1.0  # weight of the extrinsic reward in the policy's reward
    rin_lr: float = 1e-4  # the paper's beta (Adam), one step per minibatch
    rin_hidden: Sequence[int] = (64, 64)
    vin_lr: float | None = None  # the intrinsic value head's Adam rate; None: ppo.vf_lr
    lookahead: str = "adam"  # one of LOOKAHEADS: how theta'(eta) is written for the meta-gradient

    def validate(self):
        self.ppo.validate()
        if self.ppo.algo != "ppo":
            raise ValueError(f"LIRPG's policy learner is PPO; got algo {self.ppo.algo!r}")
        if self.lookahead not in LOOKAHEADS:
            raise ValueError(f"unknown look-ahead {self.lookahead!r}; valid choices: {', '.join(LOOKAHEADS)}")
        for name in ("in_coef", "ex_coef", "rin_lr"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        return self

    def hp(self, variant: str) -> dict:
        """The traced hyperparameters of a variant: PPO is LIRPG with in_coef = 0 and eta frozen."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
        if variant == "ppo":
            return dict(in_coef=0.0, ex_coef=1.0, rin_lr=0.0)
        return dict(in_coef=float(self.in_coef), ex_coef=float(self.ex_coef), rin_lr=float(self.rin_lr))


def make_config(ppo: dict | None = None, **lirpg) -> LIRPGConfig:
    """PPO's preset with the ``ppo`` overrides (see :func:`metarl.agents.onpolicy.make_config`) and the
    LIRPG fields in ``lirpg``; unknown names are an error."""
    names = {f.name for f in dataclasses.fields(LIRPGConfig)} - {"ppo"}
    bad = sorted(set(lirpg) - names)
    if bad:
        raise ValueError(f"unknown LIRPG config field(s) {bad}; valid: {', '.join(sorted(names))}")
    return LIRPGConfig(ppo=op.make_config("ppo", **(ppo or {})), **lirpg).validate()


# ----------------------------------------------------------------------------------------------------
# Networks and the pieces of the meta-gradient
# ----------------------------------------------------------------------------------------------------
class IntrinsicReward(nn.Module):
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        return jnp.tanh(MLP(tuple(self.hidden) + (1,), activation=nn.tanh, name="r_in")(x)[..., 0])


def gae_rows(t, n, done, gamma, lam):
    """Rows of GAE's linear operator for samples at times ``t`` of environments ``n`` (both ``[B]``):
    ``A[t, n] = sum_j rows[b, j] * delta[j, n]`` with ``rows[b, j] = (gamma lam)^(j - t)`` for ``j >= t``
    while no episode ends in steps ``t .. j-1`` (``done`` is ``[T, N]``), else 0. Same trace cut as
    :func:`metarl.agents.onpolicy.rollout_advantages`."""
    T = done.shape[0]
    # ends[j, n] = number of episode ends among steps 0 .. j-1
    ends = jnp.cumsum(done.astype(jnp.int32), axis=0) - done.astype(jnp.int32)
    j = jnp.arange(T)[None, :]
    k = j - t[:, None]
    same = ends[:, n].T == ends[t, n][:, None]  # [B, T]: no end between t and j
    dtype = jnp.result_type(float)
    pw = jnp.power(jnp.asarray(gamma * lam, dtype), jnp.maximum(k, 0).astype(dtype))
    return jnp.where((k >= 0) & same, pw, jnp.zeros((), dtype))


def adam_lookahead(params, opt_state, grads, lr, nu=None):
    """The parameters after optax.adam(lr)'s next step on ``grads``, with its second moment held fixed
    (``stop_gradient``; or given as ``nu``), so the gradient flows through the first moment only."""
    st = opt_state[0]
    count = st.count + 1
    c1 = 1.0 - ADAM_B1 ** count
    c2 = 1.0 - ADAM_B2 ** count
    mu = jax.tree.map(lambda m, g: ADAM_B1 * m + (1.0 - ADAM_B1) * g, st.mu, grads)
    if nu is None:
        nu = jax.tree.map(lambda v, g: ADAM_B2 * v + (1.0 - ADAM_B2) * jnp.square(jax.lax.stop_gradient(g)),
                          st.nu, grads)
    return jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + ADAM_EPS), params, mu, nu)


def adam_nu(opt_state, grads):
    """The second moment the "adam" look-ahead holds fixed (for tests that differentiate without it)."""
    return jax.tree.map(lambda v, g: ADAM_B2 * v + (1.0 - ADAM_B2) * jnp.square(g), opt_state[0].nu, grads)


# ----------------------------------------------------------------------------------------------------
# The training program
# ----------------------------------------------------------------------------------------------------
@struct.dataclass
class LIRPGState:
    base: op.OnPolicyState  # policy, extrinsic value, their optimisers, environments, key, step count
    rin: Any
    rin_opt: Any
    vin: Any
    vin_opt: Any
    hp: dict  # in_coef, ex_coef, rin_lr (traced: one program for PPO and PPO-LIRPG)


def make_lirpg(config: LIRPGConfig, env):
    """(init(key, hp) -> state, run_segment(state) -> (state, metrics), functions) for one run; vmap over
    runs. ``run_segment`` runs ``eval_every / batch`` updates, then evaluates the deterministic policy as
    PPO does. ``functions`` exposes the pieces for tests (``meta_objective``, ``update``, ...)."""
    config.validate()
    pc = config.ppo
    spec = env.spec
    base_init, _, base = op.make_onpolicy(pc, env)
    policy, value = base["policy"], base["value"]
    rin_net = IntrinsicReward(tuple(config.rin_hidden))
    pi_tx, vf_tx = optax.adam(pc.pi_lr), optax.adam(pc.vf_lr)
    vin_tx = optax.adam(pc.vf_lr if config.vin_lr is None else config.vin_lr)
    rin_tx = optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)  # times -rin_lr (traced)
    n = pc.num_envs

    def init(key, hp):
        k_base, k_r, k_v = jax.random.split(key, 3)
        b = base_init(k_base)
        obs0 = jnp.zeros((1,) + tuple(spec.obs_shape))
        rin = rin_net.init(k_r, obs0, jnp.zeros((1, spec.action_dim)))
        vin = value.init(k_v, obs0)
        hp = {k: jnp.asarray(hp[k], jnp.float32) for k in ("in_coef", "ex_coef", "rin_lr")}
        return LIRPGState(b, rin, rin_tx.init(rin), vin, vin_tx.init(vin), hp)

    def lookahead(pi, pi_opt, g, nu=None):
        if config.lookahead == "sgd":
            return jax.tree.map(lambda p, x: p - pc.pi_lr * x, pi, g)
        return adam_lookahead(pi, pi_opt, g, pc.pi_lr, nu)

    def meta_objective(rin, pi, pi_opt, mb, ctx, hp, nu=None):
        """L_ex(theta'(eta)) on one minibatch; aux: the mixed advantages of its samples, the policy's PPO
        gradient on them (the step the policy takes), PPO's loss and its diagnostics.

        ``mb``: obs, action, logp (the rollout policy's), adv_ex, t and n (the samples' time and
        environment in the rollout); ``ctx``: obs, action ``[T, N, ...]`` and ``delta_in_v``
        ``[T, N]`` = ``gamma (1 - terminated) V_in(s_reached) - V_in(s)`` (the value part of the
        intrinsic TD error), ``done`` ``[T, N]``."""
        r_in = rin_net.apply(rin, ctx["obs"], ctx["action"])  # [T, N]
        delta = r_in + ctx["delta_in_v"]
        rows = gae_rows(mb["t"], mb["n"], ctx["done"], pc.gamma, pc.gae_lambda)  # [B, T]
        a_in = jnp.sum(rows * delta[:, mb["n"]].T, axis=1)
        a_mix = hp["ex_coef"] * mb["adv_ex"] + hp["in_coef"] * a_in
        (pi_loss, pi_aux), g = jax.value_and_grad(base["pi_loss"], has_aux=True)(pi, dict(mb, adv=a_mix))
        pi_new = lookahead(pi, pi_opt, g, nu)
        mean, log_std = policy.apply(pi_new, mb["obs"])
        logp = op.gaussian_logp(mean, log_std, mb["action"])
        loss, _ = op.ppo_policy_loss(logp, mb["logp"], op.standardise(mb["adv_ex"]), pc.clip)
        return loss, (a_mix, g, pi_loss, pi_aux)

    def fit_policy(state: LIRPGState, data, ctx, key):
        """PPO's minibatch passes on A_mix, each step followed by the intrinsic reward's meta-step."""

        def epoch(carry, k):
            idx = op.minibatch_indices(pc, k)

            def mb_step(carry, i):
                pi, pi_opt, rin, rin_opt = carry
                mb = jax.tree.map(lambda x: x[i], data)
                mb["t"], mb["n"] = i // n, i % n
                # the meta-gradient, and on the way the policy's PPO gradient on the mixed advantages
                (meta_loss, (_, g, loss, aux)), g_eta = jax.value_and_grad(meta_objective, has_aux=True)(
                    rin, pi, pi_opt, mb, ctx, state.hp)
                # 1. the policy: PPO's step, on the mixed advantages
                upd, pi_opt = pi_tx.update(g, pi_opt, pi)
                pi = optax.apply_updates(pi, upd)
                # 2. the intrinsic reward: the meta-gradient step (taken at the pre-step policy)
                u, rin_opt = rin_tx.update(g_eta, rin_opt, rin)
                rin = jax.tree.map(lambda p, x: p - state.hp["rin_lr"] * x, rin, u)
                met = dict(loss=loss, meta_loss=meta_loss, meta_grad_norm=optax.tree.norm(g_eta), **aux)
                return (pi, pi_opt, rin, rin_opt), met

            return jax.lax.scan(mb_step, carry, idx)

        carry = (state.base.pi, state.base.pi_opt, state.rin, state.rin_opt)
        carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, pc.pi_epochs))
        return carry, jax.tree.map(jnp.mean, metrics)

    def fit_value(net_params, opt_state, tx, data, key):
        """PPO's value passes (the same shuffling and steps as metarl.agents.onpolicy: with the policy's key,
        the policy's minibatches)."""

        def epoch(carry, k):
            idx = op.minibatch_indices(pc, k)

            def mb_step(carry, i):
                params, opt_state = carry
                (loss, _), g = jax.value_and_grad(base["vf_loss"], has_aux=True)(
                    params, jax.tree.map(lambda x: x[i], data))
                upd, opt_state = tx.update(g, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), loss

            return jax.lax.scan(mb_step, carry, idx)

        (params, opt_state), losses = jax.lax.scan(epoch, (net_params, opt_state), jax.random.split(key, pc.vf_epochs))
        return params, opt_state, jnp.mean(losses)

    def update(state: LIRPGState, _):
        b, traj = base["collect"](state.base)
        term, done = traj["terminated"], traj["done"]
        v, v_reached = value.apply(b.vf, traj["obs"]), value.apply(b.vf, traj["next_obs"])
        adv_ex, target_ex = op.rollout_advantages(traj["reward"], v, v_reached, term, done, pc.gamma, pc.gae_lambda)
        vin, vin_reached = value.apply(state.vin, traj["obs"]), value.apply(state.vin, traj["next_obs"])
        r_in = rin_net.apply(state.rin, traj["obs"], traj["action"])
        adv_in, target_in = op.rollout_advantages(r_in, vin, vin_reached, term, done, pc.gamma, pc.gae_lambda)
        ctx = dict(obs=traj["obs"], action=traj["action"], done=done,
                   delta_in_v=pc.gamma * (1.0 - term.astype(vin.dtype)) * vin_reached - vin)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [T, N] -> [T * N], index t * N + n
        data = jax.tree.map(flat, dict(obs=traj["obs"], action=traj["action"], logp=traj["logp"], adv_ex=adv_ex,
                                       target=target_ex))
        key, kp, kv = jax.random.split(b.key, 3)  # PPO's keys, and PPO's key stream (carried key) unchanged
        ki = jax.random.fold_in(kv, 1)
        state = state.replace(base=b)
        (pi, pi_opt, rin, rin_opt), mp = fit_policy(state, data, ctx, kp)
        vf, vf_opt, vf_loss = fit_value(b.vf, b.vf_opt, vf_tx, data, kp)  # PPO's: the policy's minibatches
        vin_data = dict(obs=data["obs"], target=flat(target_in))
        vin_p, vin_opt, vin_loss = fit_value(state.vin, state.vin_opt, vin_tx, vin_data, ki)
        d = done.astype(jnp.float32)
        metrics = dict(pi_loss=mp.pop("loss"), vf_loss=vf_loss, vin_loss=vin_loss, **mp,
                       r_in_mean=jnp.mean(r_in), r_in_std=jnp.std(r_in), adv_in_std=jnp.std(adv_in),
                       ret_sum=jnp.sum(traj["episode_return"] * d), ret_n=jnp.sum(d))
        b = b.replace(pi=pi, vf=vf, pi_opt=pi_opt, vf_opt=vf_opt, key=key)
        return state.replace(base=b, rin=rin, rin_opt=rin_opt, vin=vin_p, vin_opt=vin_opt), metrics

    def run_segment(state: LIRPGState):
        state, mets = jax.lax.scan(update, state, None, length=pc.updates_per_eval)
        key, ke = jax.random.split(state.base.key)
        state = state.replace(base=state.base.replace(key=key))
        out = dict(eval_return=base["evaluate"](state.base.pi, ke), env_steps=state.base.env_steps,
                   train_return=jnp.sum(mets["ret_sum"]) / jnp.maximum(jnp.sum(mets["ret_n"]), 1.0),
                   **{k: jnp.mean(x) for k, x in mets.items() if k not in ("ret_sum", "ret_n")})
        return state, out

    fns = dict(policy=policy, value=value, rin_net=rin_net, base=base, meta_objective=meta_objective,
               lookahead=lookahead, update=update, fit_policy=fit_policy, evaluate=base["evaluate"])
    return init, run_segment, fns


# ----------------------------------------------------------------------------------------------------
# Driver: variants x seeds as one vmapped program, with progress, a run record and resume
# ----------------------------------------------------------------------------------------------------
class ResumeMismatch(ConfigMismatch):
    """A resume whose settings, package versions or checkpoint shapes differ from the stored run's."""


def _load_checkpoint(run_dir, template, identity: dict):
    """(state, history) from the run's checkpoint (metarl.driver.segments); a corrupted one is a one-line
    metarl.driver.CheckpointError, one of another program's shapes or settings a one-line ResumeMismatch."""
    from metarl.driver import CheckpointMismatch
    from metarl.driver.segments import CHECKPOINT, load_checkpoint

    try:
        state, _, hist, _ = load_checkpoint(os.path.join(run_dir, CHECKPOINT), template, identity)
    except (CheckpointMismatch, ConfigMismatch) as e:
        raise _mismatch(run_dir, e) from None
    return state, hist


def _mismatch(run_dir, e) -> ResumeMismatch:
    from metarl.driver.segments import CHECKPOINT

    return ResumeMismatch(f"checkpoint {os.path.join(run_dir, CHECKPOINT)} does not fit this run ({e})")


def run_inputs(config: LIRPGConfig, key, seeds: int, variants: Sequence[str] = VARIANTS):
    """The keys and traced hyperparameters of ``variants`` x ``seeds`` runs (variant-major): variant v's
    seed s gets the key of variant 0's seed s."""
    keys = jnp.tile(jax.random.split(key, seeds), (len(variants), 1))
    hps = {k: jnp.repeat(jnp.asarray([config.hp(v)[k] for v in variants], jnp.float32), seeds)
           for k in ("in_coef", "ex_coef", "rin_lr")}
    return keys, hps


@functools.lru_cache(maxsize=8)
def _programs(config: LIRPGConfig, env):
    """The jitted, vmapped (init, run_segment) of a config and an environment (a name or an Env), kept
    for the next call with the same ones (a resumed or repeated run compiles nothing new)."""
    if isinstance(env, str):
        env = envs.make(env, max_episode_steps=config.ppo.max_episode_steps)
    init, run_segment, _ = make_lirpg(config, env)
    return jax.jit(vmap_runs(init)), jax.jit(vmap_runs(run_segment))


def run_identity(config, env, variants, seeds: int, key) -> dict:
    """A run's config.json: what a resume must match (config, env, variants, seeds, key, package versions)."""
    from metarl.driver import jsonable, package_versions

    env_name = env if isinstance(env, str) else env.spec.name
    return jsonable(dict(config=dataclasses.asdict(config), env=env_name, variants=list(variants), seeds=seeds,
                         key=np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                        else key).tolist(), versions=package_versions()))


def train(config: LIRPGConfig, env, key, seeds: int, variants: Sequence[str] = VARIANTS, run_dir: str | None = None,
          resume: bool = False, progress=None, max_segments: int | None = None) -> dict:
    """Train ``variants`` x ``seeds`` runs (one vmapped program) on ``env`` (a name or an Env). Variant v's
    seed s starts from the same parameters, environments and key as variant 0's seed s.

    With ``run_dir``: config.json (the record: config, variants, seeds, versions), a checkpoint after
    every evaluation (checkpoint/) and result.json at the end; ``resume`` continues
    from the checkpoint (the config must be the same). ``max_segments`` stops early (tests). ``progress(i,
    metrics)`` after evaluation i (0-based), the metrics of every run (variant-major) on the host.
    Returns {variant: {eval_return [seeds, evals], train_return, env_steps, meta_loss, ...}}, plus
    "wall_s" and "complete"."""
    from metarl.driver import CheckpointMismatch, identity_diff, write_json, write_metrics

    config.validate()
    variants = tuple(variants)
    for v in variants:
        config.hp(v)
    record = run_identity(config, env, variants, seeds, key)
    cfg_path = os.path.join(run_dir, "config.json") if run_dir is not None else None
    from metarl.driver.segments import CHECKPOINT

    resuming = resume and run_dir is not None and has_checkpoint(os.path.join(run_dir, CHECKPOINT))
    if resume and cfg_path is not None and os.path.isfile(cfg_path):  # before anything is compiled
        with open(cfg_path) as f:
            old = json.load(f)
        if old != record:
            raise ResumeMismatch(f"cannot resume {run_dir}: it was run with other settings: "
                                 f"{identity_diff(old, record)}; resume with the stored settings (config.json), "
                                 "or start a new run (another --out, or --overwrite)")
    from metarl.driver.segments import run_segments

    init, seg = _programs(config, env)
    inputs = run_inputs(config, key, seeds, variants)
    like = jax.eval_shape(init, *inputs)
    t0 = time.perf_counter()
    if not resuming and run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        write_json(cfg_path, record)  # (the same record the command line's RunRecord wrote: train stands alone)

    def on_segment(i, mets):
        if progress:
            progress(i - 1, mets)
        return mets

    # the shared segment loop: the NaN/Inf guard before each checkpoint; runs are variant-major (variant v, seed s)
    N = config.ppo.num_evals
    try:  # a checkpoint of another program's shapes or settings: one line, before anything runs
        state, hist = run_segments(seg, lambda: init(*inputs), like, N, run_dir, record, resume=resuming,
                                   on_segment=on_segment, max_segments=max_segments, runs=len(variants) * seeds,
                                   unit="run (variant-major)", where=lambda i: f"evaluation {i} of {N}")
    except (CheckpointMismatch, ConfigMismatch) as e:
        raise _mismatch(run_dir, e) from None
    complete = len(hist) == N

    def as32(x):  # the history comes back as JSON numbers: the program's 32-bit arrays again, value for value
        a = np.asarray(x)
        return a.astype({"f": np.float32, "i": np.int32}.get(a.dtype.kind, a.dtype))

    stacked = {k: np.stack([as32(h[k]) for h in hist], axis=1) for k in hist[0]} if hist else {}
    out = {v: {k: x[j * seeds:(j + 1) * seeds] for k, x in stacked.items()} for j, v in enumerate(variants)}
    out.update(wall_s=time.perf_counter() - t0, complete=complete)
    if run_dir is not None and complete:
        write_json(os.path.join(run_dir, "result.json"),
                   dict(record, wall_s=out["wall_s"],
                        **{v: {k: x.tolist() for k, x in out[v].items()} for v in variants}))
        write_metrics(run_dir, [([{"variant": v, "seed": s} for v in variants for s in range(seeds)], stacked)])
    return out
