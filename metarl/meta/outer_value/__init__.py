"""Meta-gradient discount tuning with an outer value function (Bonnet et al., 2022).

Self-tuning A2C: the discount ``gamma = low + (high - low) * sigmoid(logit)`` is a meta-parameter.

* **MG**: one inner A2C update with ``gamma`` (differentiable in it), a fresh rollout with the updated
  policy, outer loss = policy gradient with ``gamma'`` (and ``lambda'``, entropy'); the meta-gradient
  flows through the inner update into ``gamma``.
* **BMG**: after the inner update, one target step with the outer loss on fresh data, then the
  matching loss ``KL(pi_target || pi_new)``; its gradient reaches ``gamma`` through ``pi_new``.
* **Outer critic**: the outer loss's advantage uses a value of the policy at ``gamma'`` instead of the
  inner critic's value at ``gamma``. Here: the analytic value at ``gamma' = 1`` on the Discounting
  Chain; on Snake a second value head on ``stop_gradient(critic torso)`` trained by TD(lambda') with
  ``gamma'`` (the paper's design), or a separate outer network (the authors' Snake code).

Optionally the inner TD trace parameter ``lambda`` is a second meta-parameter (``MetaConfig.meta_lambda``),
through its own bounded sigmoid and the same meta-optimiser. On the chain the critics are the analytic
values (the paper) or, as an option, tabular critics learned by TD inside the inner loss
(``ChainConfig.critic = "learned"``).

The method is written once over a :class:`Problem` (rollout, inner loss, outer loss, matching loss,
inner optimiser); ``make_chain_problem`` and ``make_snake_problem`` build the two environments of the
paper. ``make_agent_step`` turns a problem into a pure ``step(state, key)`` for the methods
``"a2c"`` (fixed gamma), ``"mg"`` and ``"bmg"``, with or without the outer critic;
``make_population`` puts all agents, each vmapped over seeds, into one step of one compiled program.
Every rollout counts in ``env_steps`` (A2C one per update, MG two, BMG two or three).

Modules: config (the settings, jax-free), core (the method), chain, snake, training (the population
through the driver); every name is re-exported here (loaded on first use), so ``from metarl.meta import outer_value as ov; ov.make_agent_step`` works.
"""
from metarl.lazy import lazy_package

__getattr__, __dir__ = lazy_package(__name__, ("config", "core", "chain", "snake", "training"))
