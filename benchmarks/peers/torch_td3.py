"""Peer of the throughput benchmark: the TD3 update in eager PyTorch on the CPU, as the papers' code runs it.

Runs inside ``.venv-torch-peer/`` (torch 2.13.0 CPU; see ``torch_requirements.txt``) and does not
import metarl or jax. The update is the one of Fujimoto et al.'s TD3 (and of the meta-RL papers
that build on it): a numpy replay buffer sampled with ``np.random.randint`` and copied into float
tensors, twin 400-300 critics, target policy smoothing (0.2 clipped at 0.5), Adam, and the actor
plus both soft target updates on every 2nd critic update (delay 2). One *update* is one call of
``train_step``, as one update of ours is one ``agent.update``. The seeds run one after another, as
separate processes of the released code would, each with its own networks and buffer.

Protocol (so that ``benchmarks/throughput.py`` can interleave it with our side): the process reads
one JSON command per stdin line, ``{"seeds": 8, "updates": 200, "warmup": 20}``, runs ``warmup`` untimed
and ``updates`` timed updates for each seed in turn, and answers one JSON line on stdout. An empty
line or EOF ends it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Actor(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        sizes = [obs_dim] + list(hidden)
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], act_dim)

    def forward(self, obs):
        x = obs
        for layer in self.hidden:
            x = F.relu(layer(x))
        return torch.tanh(self.out(x))


class QNet(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        sizes = [obs_dim + act_dim] + list(hidden) + [1]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))

    def forward(self, obs, act):
        x = torch.cat([obs, act], dim=1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class TwinQ(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        self.q1 = QNet(obs_dim, act_dim, hidden)
        self.q2 = QNet(obs_dim, act_dim, hidden)

    def forward(self, obs, act):
        return self.q1(obs, act), self.q2(obs, act)


class NumpyBuffer:
    """A replay buffer of numpy arrays, sampled with replacement and copied into float tensors."""

    def __init__(self, obs_dim, act_dim, size, rng):
        self.obs = rng.standard_normal((size, obs_dim)).astype(np.float32)
        self.act = rng.uniform(-1, 1, (size, act_dim)).astype(np.float32)
        self.next_obs = rng.standard_normal((size, obs_dim)).astype(np.float32)
        self.reward = rng.standard_normal((size, 1)).astype(np.float32)
        self.not_done = (rng.uniform(size=(size, 1)) > 0.01).astype(np.float32)
        self.size = size

    def sample(self, batch):
        i = np.random.randint(0, self.size, size=batch)
        return (torch.FloatTensor(self.obs[i]), torch.FloatTensor(self.act[i]), torch.FloatTensor(self.next_obs[i]),
                torch.FloatTensor(self.reward[i]), torch.FloatTensor(self.not_done[i]))


class TD3:
    def __init__(self, obs_dim, act_dim, hidden, lr=1e-3, gamma=0.99, tau=0.005, policy_noise=0.2,
                 noise_clip=0.5, policy_delay=2):
        self.actor = Actor(obs_dim, act_dim, hidden)
        self.actor_target = Actor(obs_dim, act_dim, hidden)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic = TwinQ(obs_dim, act_dim, hidden)
        self.critic_target = TwinQ(obs_dim, act_dim, hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.gamma, self.tau, self.policy_noise, self.noise_clip = gamma, tau, policy_noise, noise_clip
        self.policy_delay = policy_delay
        self.updates = 0

    def train_step(self, buffer, batch):
        self.updates += 1
        obs, act, next_obs, reward, not_done = buffer.sample(batch)
        with torch.no_grad():
            noise = (torch.randn_like(act) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_act = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            tq1, tq2 = self.critic_target(next_obs, next_act)
            target = reward + not_done * self.gamma * torch.min(tq1, tq2)
        q1, q2 = self.critic(obs, act)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        if self.updates % self.policy_delay == 0:
            actor_loss = -self.critic.q1(obs, self.actor(obs)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                for net, target_net in ((self.critic, self.critic_target), (self.actor, self.actor_target)):
                    for p, tp in zip(net.parameters(), target_net.parameters()):
                        tp.data.copy_(self.tau * p.data + (1 - self.tau) * tp.data)


def run(cmd, args):
    per_seed = []
    total_s = 0.0
    for seed in range(cmd["seeds"]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        agent = TD3(args.obs_dim, args.act_dim, args.hidden, lr=args.lr)
        buffer = NumpyBuffer(args.obs_dim, args.act_dim, args.buffer_size, np.random.default_rng(seed))
        for _ in range(cmd["warmup"]):
            agent.train_step(buffer, args.batch_size)
        t = time.perf_counter()
        for _ in range(cmd["updates"]):
            agent.train_step(buffer, args.batch_size)
        dt = time.perf_counter() - t
        total_s += dt
        per_seed.append(cmd["updates"] / dt)
    return {"seeds": cmd["seeds"], "updates_per_seed": cmd["updates"], "timed_s": total_s,
            "aggregate_updates_per_s": cmd["seeds"] * cmd["updates"] / total_s,
            "per_seed_updates_per_s": per_seed}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--obs-dim", type=int, required=True)
    p.add_argument("--act-dim", type=int, required=True)
    p.add_argument("--hidden", type=int, nargs="+", default=[400, 300])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--buffer-size", type=int, default=10_000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    hello = {"ready": True, "torch": torch.__version__, "numpy": np.__version__,
             "threads": torch.get_num_threads(), "device": "cpu"}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            break
        print(json.dumps(run(json.loads(line), args)), flush=True)


if __name__ == "__main__":
    main()
