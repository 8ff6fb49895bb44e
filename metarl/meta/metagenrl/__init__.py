"""MetaGenRL (Kirsch, van Steenkiste and Schmidhuber, ICLR 2020): a population of TD3 agents
meta-learns one LSTM objective function L_alpha that then trains fresh agents on unseen environments.

The defaults follow the paper and, where the paper is silent, the authors' code (louiskirsch/metagenrl);
every earlier behaviour of this module that differs is kept as a named option (see ``LEGACY_OBJECTIVE``
and ``LEGACY_TRAINING``), so objectives saved before the change load and behave as they did.

The pieces, all pure functions over pytrees:

* The objective ``L_alpha(tau, x(phi), V)`` (:func:`objective_steps`). Per 20-step window of a
  trajectory, each action dimension d gets ``[a_t[d], pi(s_t)[d]]`` embedded by a shared dense stack
  (a kernel-1 convolution over the action axis: 3 layers of 32, half ReLU / half square units, each
  followed by LayerNorm), averaged over d, so one objective serves any action size and does not care
  about the order of the dimensions. ``[z(r_t), t/T, z(V_t+1), z(V_t)]`` (t/T: the position in the
  window; V_t and V_t+1 standardised once over the stacked values of the window, then zeroed after a
  terminal step) go through a 32-32-8 MLP (ReLU/square, no LayerNorm, as the authors' input
  transform). The 40-d concatenation runs through an LSTM(32) *backwards* in time
  (``lax.scan(reverse=True)`` over a ``flax.linen.LSTMCell``), then a 32-32-1 MLP (ReLU/square,
  LayerNorm after each hidden activation) and ``eta * tanh(x / eta)`` per step (eta = 1000). Only
  ``pi(s_t)`` carries gradient to the policy parameters phi; ``V = Q1(s, pi(s))`` is a stop-gradient
  input.
* The meta-loss of one agent (:func:`meta_loss`, Eq. 6 and Eq. 8): ``k`` SGD steps (lr 1e-3) of the
  policy on the SUM of ``L_alpha``'s per-step values over ``k`` disjoint chunks of a separate batch
  of ``(k + 1) * batch_windows`` windows, then ``-mean Q1(s, pi_phi'(s))`` on that whole batch. Its
  gradient with respect to alpha is second order (through the policy steps and the critic).
* A population (:func:`make_population`): groups of agents, one group per environment, each agent
  with its own TD3 critic/policy, replay buffer and environment; the agents of a group are a vmapped
  axis, all groups are one compiled program. Each agent's objective gradient is clipped to global
  norm 1.0, then they are averaged over every agent of the population (Adam 1e-3, eps 1e-8).
* One update cycle of an agent (:func:`update_agent`): two TD3 critic steps on two window batches,
  then one policy step on the second with the objective (annealed from the TD3 actor loss over the
  first ``anneal_steps`` training steps: ``p * l_t - (1 - p) * Q1(s_t, pi(s_t))`` per step, one mean
  over the batch; the policy gradient clipped to global norm 1.0), then the meta-gradient at the
  updated policy. With p = 0 and no policy clipping this is exactly two calls of TD3's ``update``
  (policy delay 2). Two environment steps are taken per cycle, so there is one critic update per
  environment step, as in the paper.
* Diagnostics, per agent and meta-step: the meta-gradient norm, the share of the policy's actions
  with |pre-tanh| > 3 (saturation), the spread of the objective's per-step output, and the norms of
  the policy gradients of L_alpha and of the critic (TD3's actor loss). :class:`MetaGradMonitor`
  (host side) warns when an agent's meta-gradient norm stays below a threshold for N meta-steps.
* Meta-test (:func:`make_population` with ``meta_train=False``): fresh agents trained with a frozen
  objective (saved and loaded with orbax, :func:`save_objective` / :func:`load_objective`), no
  annealing. Every agent carries its own frozen alpha and a ``mix`` of (L_alpha, TD3 actor loss,
  off-policy REINFORCE with GAE), so the learned objectives and the two baselines (the paper's
  "same agent with the objective fixed", lambda = 0.97) on one environment are one vmapped axis.

Modules: config (the population's and the objective's settings, jax-free), objective (L_alpha, saving and
loading it), meta_gradient (the meta-loss, its gradient and one agent's update cycle), state (the per-agent state, groups
and environments), population (the compiled program and the meta-gradient monitor); protocol (the scales
and environments of the experiment) and runs (meta-train, meta-test) are imported by name. Every name of
the first five is re-exported here (loaded on first use), so ``from metarl.meta import metagenrl as mg;
mg.make_population`` works.
"""
from metarl.lazy import lazy_package

__getattr__, __dir__ = lazy_package(__name__, ("config", "objective", "meta_gradient", "state", "population"))
