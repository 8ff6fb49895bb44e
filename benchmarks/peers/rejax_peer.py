"""The rejax peer of the throughput benchmark: rejax's TD3, SAC and PPO on gymnax Pendulum-v1.

Runs inside ``benchmarks/peers/.venv-rejax/`` (rejax 0.1.3, gymnax 0.0.9, the same jax as ours; see
``rejax_requirements.txt``), which ``benchmarks/throughput.py`` creates on first use. gymnax is
pinned, not wrapped: rejax 0.1.3 declares ``gymnax>=0.0.9`` and calls ``env.step`` expecting five
values, which 0.0.9 returns (gymnax 1.0 returns six).

Driven line by line on stdin: each line is one JSON request, built by ``benchmarks/throughput.py``
from the same settings it gives our side (a blank line ends the process)::

    {"algo": "td3", "seeds": 8, "total_steps": 768, "learning_starts": 256, "eval_every": 256,
     "eval_episodes": 5, "hidden": [400, 300], "batch_size": 100, "lr": 1e-3, "gamma": 0.99,
     "tau": 0.005, "expl_noise": 0.1, "policy_noise": 0.2, "noise_clip": 0.5, "policy_delay": 2}

and the answer is one JSON line: compile time (lower + compile of ``jit(vmap(algo.train))``, apart; at one
seed ``jit(algo.train)`` on the one key, as ours, through ``metarl.runs.vmap_runs``),
the run time of one call, env steps per seed, and the evaluation returns [seeds, evals]. The first
line written is the peer's versions and device.

The mapping to rejax's configuration names (rejax acts in the env's own action units, ours in
[-1, 1] rescaled to them, so TD3's noises are scaled by the action half-range):

    ours                      rejax
    hidden (actor, critic)    actor/critic modules replaced (TD3 builds 64-64 itself),
                              hidden_layer_sizes (SAC), agent_kwargs.hidden_layer_sizes (PPO)
    relu (TD3/SAC), tanh PPO  activation
    learning_starts           fill_buffer (uniform random actions until then)
    tau                       polyak = 1 - tau
    expl_noise, policy_noise, exploration_noise, target_noise, target_noise_clip (x half-range)
      noise_clip
    eval_every, eval_episodes eval_freq, and eval_callback replaced by rejax.evaluate with
                              eval_episodes episodes (rejax's default is 128); no initial evaluation
    evaluation with the       rejax evaluates SAC and PPO with sampled actions; with "eval_mean": true
      policy's mean action    (the throughput benchmark's requests) the mean, squashed as the policy
                              squashes its samples (SAC: tanh, rescaled; PPO: clipped to the range)
    PPO rollout x 1 env,      num_steps, num_envs 1, num_epochs, num_minibatches = rollout / 64,
      10 epochs, minibatch 64 clip_eps, gae_lambda, ent_coef 0, max_grad_norm inf
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

# The project's vmap over runs (jax and the standard library only), so that both sides follow one rule: at one
# seed, the program of the run alone (rejax's own single-agent call, jit(algo.train)), not vmap over a batch of 1.
# The repository root goes last on the path: it adds the project's package, and shadows nothing of the peer venv.
sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from metarl.runs import vmap_runs  # noqa: E402


def _info() -> dict:
    from importlib.metadata import version

    import jax

    return {"peer": "rejax", "python": platform.python_version(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "versions": {p: version(p) for p in ("rejax", "gymnax", "jax", "jaxlib", "flax", "optax", "distrax")}}


def make_algo(req: dict):
    """A rejax algorithm configured as ``req`` describes (see the module docstring)."""
    import numpy as np
    import rejax
    from flax import linen as nn
    from rejax.evaluate import evaluate
    from rejax.networks import DeterministicPolicy, QNetwork

    algo, T, L, E = req["algo"], req["total_steps"], req["learning_starts"], req["eval_every"]
    hidden = tuple(req["hidden"])
    common = dict(env="Pendulum-v1", total_timesteps=T, eval_freq=E, skip_initial_evaluation=True,
                  learning_rate=req["lr"], gamma=req["gamma"], normalize_observations=False)
    if algo == "td3":
        probe = rejax.TD3.create(**common)
        space = probe.env.action_space(probe.env_params)
        half = float(np.max((space.high - space.low) / 2))
        a = rejax.TD3.create(**common, num_envs=1, buffer_size=T, fill_buffer=L, batch_size=req["batch_size"],
                             num_epochs=1, polyak=1.0 - req["tau"], exploration_noise=req["expl_noise"] * half,
                             target_noise=req["policy_noise"] * half, target_noise_clip=req["noise_clip"] * half,
                             policy_delay=req["policy_delay"])
        action_dim = int(np.prod(space.shape))
        a = a.replace(actor=DeterministicPolicy(action_dim, (space.low, space.high), hidden_layer_sizes=hidden,
                                                activation=nn.relu),
                      critic=QNetwork(hidden_layer_sizes=hidden, activation=nn.relu))
    elif algo == "sac":
        a = rejax.SAC.create(**common, num_envs=1, buffer_size=T, fill_buffer=L, batch_size=req["batch_size"],
                             num_epochs=1, polyak=1.0 - req["tau"], hidden_layer_sizes=hidden,
                             agent_kwargs={"activation": "relu"})
    elif algo == "ppo":
        a = rejax.PPO.create(**common, num_envs=1, num_steps=req["rollout"], num_epochs=req["epochs"],
                             num_minibatches=req["rollout"] // req["minibatch_size"], clip_eps=req["clip"],
                             gae_lambda=req["gae_lambda"], ent_coef=0.0, max_grad_norm=float("inf"),
                             agent_kwargs={"activation": "tanh", "hidden_layer_sizes": hidden})
    else:
        raise ValueError(f"unknown algo {algo!r}")
    episodes = int(req["eval_episodes"])
    mean = bool(req.get("eval_mean", False)) and algo in ("sac", "ppo")  # TD3's policy is deterministic already

    def eval_callback(alg, ts, rng):
        act = mean_act(alg, ts, algo) if mean else alg.make_act(ts)
        _, returns = evaluate(act, rng, alg.env, alg.env_params, episodes, alg.env_params.max_steps_in_episode)
        return returns.mean()

    return a.replace(eval_callback=eval_callback)


def mean_act(alg, ts, algo: str):
    """rejax's ``make_act`` with the Gaussian's mean in place of a sample, put through what the policy does to a
    sample: SAC's tanh and rescaling to the action range (``SquashedGaussianPolicy``), PPO's clip to the range
    (``GaussianPolicy.act``); no observation normalisation (the requests turn it off)."""
    import jax.numpy as jnp

    actor, params = alg.actor, ts.actor_ts.params
    low, high = actor.action_range

    def act(obs, rng):
        loc = actor.apply(params, jnp.expand_dims(obs, 0), method=lambda m, o: m._action_dist(o).mean())
        if algo == "sac":
            a = (high + low) / 2 + jnp.tanh(loc) * (high - low) / 2
        else:
            a = jnp.clip(loc, low, high)
        return jnp.squeeze(a)

    return act


_COMPILED = {}  # request (without "run") -> (compiled program, keys, compile seconds)


def run(req: dict) -> dict:
    """Compile ``req``'s program (once per distinct request; the latest one is kept, so that repeated calls of
    the same request are timed without recompiling) and, unless ``req["run"]`` is false, time one call. A
    driver may send the request with ``"run": false`` first, so that this compilation overlaps its own, then
    again to time it."""
    import jax
    import numpy as np

    key = json.dumps({k: v for k, v in req.items() if k != "run"}, sort_keys=True)
    if key not in _COMPILED:
        _COMPILED.clear()  # one program held at a time: the driver times a request's calls in a row
        algo = make_algo(req)
        keys = jax.random.split(jax.random.PRNGKey(int(req.get("seed", 0))), int(req["seeds"]))
        t = time.perf_counter()
        fn = jax.jit(vmap_runs(lambda k: algo.train(k)[1])).lower(keys).compile()
        _COMPILED[key] = (fn, keys, time.perf_counter() - t)
    fn, keys, compile_s = _COMPILED[key]
    out = {"algo": req["algo"], "seeds": int(req["seeds"]), "compile_s": compile_s}
    if not req.get("run", True):
        return out
    t = time.perf_counter()
    evals = jax.block_until_ready(fn(keys))
    run_s = time.perf_counter() - t
    evals = np.asarray(evals).reshape(int(req["seeds"]), -1)
    steps = int(req["total_steps"])
    out.update(run_s=run_s, env_steps_per_seed=steps, env_steps_per_s=int(req["seeds"]) * steps / run_s,
               eval_returns=evals.tolist(), finite=bool(np.all(np.isfinite(evals))))
    return out


def main():
    print(json.dumps(_info()), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        try:
            out = run(json.loads(line))
        except Exception as e:  # one line back, the driver reports it
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
