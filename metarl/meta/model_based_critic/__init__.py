"""Model-based meta-learning of critics (Bechtle, Righetti and Meier, 2022).

Three parts, all pure functions over pytrees:

1. The analytic toy of Section 4.1 / Appendix A: f(s, a) = s + a, pi_theta(s) = theta, horizon T,
   terminal cost (s_T - g)^2, critic (s + a)^2 phi_1. The three learning loops of the appendix run
   themselves (no closed form inside them): supervised Q-fitting (Algorithm 1 with the residual TD
   error of Eq. 22), the Meta-Critic of Appendix A.3 and model-based meta-learning (Algorithm 2).
   ``toy_sweep`` vmaps them over a sweep of initial theta.
2. The method on any differentiable model ``step(dyn, x, u) -> x'`` (Brax systems in
   ``metarl.meta.arm_models``): a goal-conditioned critic L_phi(s, a, g) (MLP 400-400 ELU), a policy
   pi_theta(s, g) (MLP 64-64 tanh), Algorithm 2 (``meta_train``: inner policy step(s) with the
   critic on model-free data, task loss ||q_T - g||^2 of the updated policy unrolled through the
   model, critic updated by the gradient through the inner step) and Algorithm 3 (``learn_policy``:
   with the critic frozen, a new policy learned from scratch model-free, on any goal and dynamics).
3. The DDPG-style baseline: a supervised Q(s - g, a) fitted by TD on rollouts, its policy learned
   by that Q; at test time the frozen Q trains new policies exactly as ours does (Algorithm 3).

Costs are minimised throughout (the paper's rewards are squared errors).

Modules: toy, method (with Algorithm 3's evaluation), baselines, drivers, pointmass; every name is
re-exported here (loaded on first use), so ``from metarl.meta import model_based_critic as mbc; mbc.meta_step`` works.
"""
from metarl.lazy import lazy_package

__getattr__, __dir__ = lazy_package(__name__, ("toy", "method", "baselines", "drivers", "pointmass"),
                                    extra=("_fit_scalar", "_inner_step"))
