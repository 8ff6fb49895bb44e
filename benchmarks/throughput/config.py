"""The throughput benchmark's settings per scale (ThroughputConfig, SCALES)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThroughputConfig:
    # (a) SAC: ours vs Brax's trainer
    sac_env: str = "inverted_pendulum"  # a Brax env name (ours: "brax/<name>")
    backend: str = "positional"
    sac_learning_starts: int = 256  # warm-up / prefill steps (>= batch 256)
    sac_steps_per_chunk: int = 500  # env steps per timed chunk (ours) / per epoch (Brax)
    sac_chunks_before: int = 1  # our timed chunks before the peer runs
    sac_chunks_after: int = 1  # ... and after it
    # Brax training epochs; the first one includes its compilation. The peer waits after its first evaluation
    # and after each epoch while one chunk of ours runs: each epoch after the first is paired with the chunk
    # right after it (brax_epochs - 1 pairs), the figure is the pairs' median ratio
    brax_epochs: int = 4
    # (b) and (c) TD3 update
    td3_obs_dim: int = 17  # HalfCheetah's observation and action sizes
    td3_act_dim: int = 6
    td3_buffer_size: int = 10_000
    # vmapped seed counts (the first is the single-seed reference); quick: 1 and 8 only (2 and 4 cost ~27 s of
    # `make bench`'s serial part and showed the same flat line on a CPU), paper: 1, 2, 4, 8
    td3_seed_counts: tuple = (1, 8)
    td3_updates_per_call: int = 50  # updates per compiled call (a lax.scan)
    td3_calls: int = 2  # timed calls per seed count per round
    torch_seeds: int = 8
    torch_updates: int = 50  # timed updates per seed per round (after torch_warmup untimed ones)
    torch_warmup: int = 5
    torch_threads: int = 1  # torch intra-op threads; 0 = torch's default (all cores)
    rounds: int = 3
    sac_time_eval: bool = False  # also compile and time our evaluation alone, and subtract it
    # (d) ours vs rejax on gymnax/Pendulum-v1: whole training runs, jit(vmap(train)) over seeds
    pend_seed_counts: tuple = (1, 8, 32)
    pend_learning_starts: int = 256  # uniform warm-up steps (TD3, SAC); >= the SAC batch 256
    pend_train_steps: int = 512  # env steps after the warm-up (TD3, SAC), 1 update each
    pend_eval_every: int = 256  # evaluation cadence (env steps), both sides
    pend_eval_episodes: int = 5
    # timed calls per side and row, ours and rejax in turn (the peer's rows only): medians and the sign-test
    # interval of the paired ratios' median, so that a verdict is not one ~1 s sample of a machine that moves
    # 10-20%. One number for every seed count, or one per entry of pend_seed_counts
    pend_repeats: int | tuple = 3
    ppo_rollouts: int = 2  # PPO env steps = ppo_rollouts x rollout (2048); evaluation after each rollout
    # learning curves: ours and rejax, equal steps and seeds, one call each (a sanity check); from 5 seeds the
    # final returns (the mean of the last curve_final_evals evaluations of each seed) are compared with an interval
    curve_seeds: int = 2
    curve_learning_starts: int = 1_000
    curve_train_steps: int = 5_000
    curve_eval_every: int = 1_000
    ppo_curve_rollouts: int = 10
    curve_final_evals: int = 3
    # (e) roofline: dense float32 GEMM rate (jax, numpy), and the SAC update alone
    overlap_compile: bool = False  # (d): compile rejax's program while ours compiles (see pendulum_pair)
    gemm_n: int = 2048
    gemm_reps: int = 5
    sac_update_seed_counts: tuple = (1, 8)
    help_runs: int = 1  # (f) `python -m <cli> --help`, each in a fresh interpreter: the best of this many runs
    run_brax: bool = True
    run_torch: bool = True
    run_rejax: bool = True

    def validate(self):
        positive = ("sac_learning_starts", "sac_steps_per_chunk", "td3_obs_dim", "td3_act_dim",
                    "td3_buffer_size", "td3_updates_per_call", "td3_calls", "torch_seeds", "torch_updates",
                    "rounds")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sac_chunks_before", "sac_chunks_after", "torch_warmup", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sac_chunks_before + self.sac_chunks_after < 1:
            raise ValueError("sac_chunks_before + sac_chunks_after must be >= 1 (no timed chunk of ours)")
        if self.brax_epochs < 2:
            raise ValueError(f"brax_epochs must be >= 2 (the first one includes compilation), got {self.brax_epochs}")
        if self.sac_learning_starts < 256:
            raise ValueError(f"sac_learning_starts must be >= the SAC batch 256, got {self.sac_learning_starts}")
        if self.td3_updates_per_call % 2:
            raise ValueError(f"td3_updates_per_call must be a multiple of TD3's policy delay 2, got "
                             f"{self.td3_updates_per_call}")
        if self.td3_buffer_size < 100:
            raise ValueError(f"td3_buffer_size must be >= the TD3 batch 100, got {self.td3_buffer_size}")
        counts = tuple(self.td3_seed_counts)
        if not counts or any(int(c) != c or c < 1 for c in counts) or list(counts) != sorted(set(counts)):
            raise ValueError(f"td3_seed_counts must be distinct positive integers in increasing order, got {counts}")
        if counts[0] != 1:
            raise ValueError(f"td3_seed_counts must start at 1 (the single-seed reference), got {counts}")
        pend = tuple(self.pend_seed_counts)
        if not pend or any(int(c) != c or c < 1 for c in pend) or list(pend) != sorted(set(pend)):
            raise ValueError(f"pend_seed_counts must be distinct positive integers in increasing order, got {pend}")
        reps = self.pend_repeats
        if isinstance(reps, (tuple, list)) and (len(reps) != len(pend) or any(int(r) != r or r < 1 for r in reps)):
            raise ValueError(f"pend_repeats must be one positive integer or one per pend_seed_counts entry {pend}, "
                             f"got {tuple(reps)}")
        if self.pend_learning_starts < 256 or self.curve_learning_starts < 256:
            raise ValueError("pend_learning_starts and curve_learning_starts must be >= the SAC batch 256")
        for steps, every in ((self.pend_train_steps, self.pend_eval_every),
                             (self.curve_train_steps, self.curve_eval_every)):
            if every < 2 or every % 2 or steps < every or steps % every:
                raise ValueError(f"train steps {steps} must be a positive multiple of an even eval_every {every} "
                                 "(TD3's policy delay 2)")
        for name in ("pend_eval_episodes", "ppo_rollouts", "curve_seeds", "ppo_curve_rollouts", "curve_final_evals",
                     "gemm_n", "gemm_reps", "help_runs") + (() if isinstance(reps, (tuple, list)) else ("pend_repeats",)):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.backend not in ("positional", "spring", "generalized", "mjx"):
            raise ValueError(f"unknown Brax backend {self.backend!r}; valid: positional, spring, generalized, mjx")
        return self

    def repeats_for(self, seeds: int) -> int:
        """Timed calls per side of the rejax row with ``seeds`` seeds (:attr:`pend_repeats`)."""
        reps = self.pend_repeats
        if isinstance(reps, (tuple, list)):
            return int(reps[tuple(self.pend_seed_counts).index(seeds)])
        return int(reps)


SCALES = {
    "quick": ThroughputConfig(),
    # medium: the rejax comparison (d) at steady state, where quick's 512 training steps per seed are 2/3 of a
    # run that also holds a 256-step warm-up and 3 evaluations: 2048 training steps after the same warm-up
    # (89% of the env steps update), PPO 40 rollouts, 9 paired calls a row at 1 seed (~1-8 s a call: the sign
    # test's interval then leaves out the lowest and highest pair) and 5 at 8 seeds, at 1 and 8 seeds (32 seeds of
    # TD3/SAC at this length would take ~50 min on a 2-core CPU; quick reads them); the TD3 update (b, c,
    # e) over 4x as many updates per call. SAC vs Brax (a) over 8 epoch pairs and PPO over 40 rollouts a call:
    # medium run 3 read (a) from 2 chunks of ~2 s (one in the machine's slow state) and PPO from ~0.4 s calls
    # (both sides moved 41-56k env steps/s between calls); run 4 from 3 chunks before and 3 after Brax's epochs
    # (the three before all in the slow state), hence the pairs (9, as the 1-seed rows). The learning curves:
    # 8 seeds each side, one call (TD3 / SAC 6000 env steps, PPO 150 rollouts = 307k), final returns compared
    # with an interval. ~47 min on a 2-core CPU with the peers (reports/throughput-medium).
    "medium": ThroughputConfig(brax_epochs=10, td3_updates_per_call=200,
                               td3_calls=3, torch_updates=200, pend_seed_counts=(1, 8), pend_train_steps=2048,
                               pend_eval_every=512, pend_repeats=(9, 5), ppo_rollouts=40, curve_seeds=8,
                               ppo_curve_rollouts=150),
    "paper": ThroughputConfig(sac_env="halfcheetah", sac_learning_starts=1_000, sac_steps_per_chunk=5_000,
                              sac_chunks_before=2, sac_chunks_after=2, brax_epochs=4, td3_buffer_size=100_000,
                              td3_updates_per_call=500, td3_calls=3, torch_updates=500, torch_warmup=20,
                              torch_threads=0, rounds=3, sac_time_eval=True, td3_seed_counts=(1, 2, 4, 8),
                              pend_learning_starts=1_000,
                              pend_train_steps=4_000, pend_eval_every=1_000, ppo_rollouts=5, curve_seeds=8,
                              curve_train_steps=20_000, ppo_curve_rollouts=50, gemm_n=4096, help_runs=3),
}


def config_for(scale: str) -> ThroughputConfig:
    from metarl.driver.records import check_scale

    return SCALES[check_scale(scale, SCALES)].validate()
