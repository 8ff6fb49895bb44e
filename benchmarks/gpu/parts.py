"""The GPU kit's parts (a)-(e) as methods of :class:`Parts`, which :class:`benchmarks.gpu.kit.Kit` extends,
and the projection of paper-scale times from the rates measured."""
from __future__ import annotations

import time

from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from benchmarks.gpu.plan import PAPER_WORKLOADS
from benchmarks.gpu.programs import PAPER_AGENT_NAMES, TEST_VARIANTS, _block
from benchmarks.gpu.programs import finite, one_line


class Parts:
    """The parts' bodies; the state they use (sizes, deadlines, programs, summary) is the Kit's."""

    # -- part 0 ----------------------------------------------------------------------------------------
    def part_smoke(self, res):
        sm = self.sizes["smoke"]
        items = [(f"env {n}", f"env|{n}") for n in sm["envs"]]
        items += [(f"{a.upper()} via metarl.train", self.train_key(t)) for a, t in sm["train"].items()]
        items += [("TD3-MC (meta_critic wrapper)", self.train_key(sm["meta_critic"], ("vanilla", "mc"))),
                  (f"outer value Snake ({len(sm['snake']['agents'] or PAPER_AGENT_NAMES)} agents)",
                   self.snake_key(sm["snake"])),
                  ("MetaGenRL meta-train", self.mg_key(sm["metagenrl"])),
                  ("model-based critic (reacher)", "mbc")]
        res["items"] = {}
        self.run_smoke_items(res, items, self.deadline["smoke"])

    def run_smoke_items(self, res, items, deadline: float, late: bool = False):
        """One line per check: OK (compile and run times), NAN, FAIL (the error in one line) or CUT (not
        compiled by the deadline; such checks are retried, without waiting, before the projection)."""
        lines = res["lines"]
        res["pending"] = []
        for label, key in items:
            tag = " (after the smoke's deadline)" if late else ""
            try:
                b = self.programs.get(key, deadline)
                t = time.time()
                if "run" in b:
                    out = _block(b["run"]())
                    dt_run = time.time() - t
                else:
                    s = _block(b["init"]())
                    t1 = time.time()
                    s, m = b["step"](s, 0)
                    _block(m)
                    dt_run = time.time() - t1
                    if key == "mbc":  # a second, warm call: the per-iteration rate used in (e)
                        t1 = time.time()
                        s, m = b["step"](s, 1)
                        _block(m)
                        dt_run = time.time() - t1
                        res["mbc_s_per_iteration"] = dt_run / b["iterations_per_chunk"]
                        self.cost("step", "mbc_iteration", res["mbc_s_per_iteration"])
                    out = m
                    del s
                ok = finite(b["must_be_finite"](out))
                c = sum(b["compile_s"].values())
                res["items"][label] = dict(ok=ok, compile_s=round(c, 2), run_s=round(dt_run, 3), late=late)
                lines.append(f"{'OK  ' if ok else 'NAN '} {label} (compile {c:.1f} s, run {dt_run:.2f} s){tag}"
                             + ("" if ok else ": non-finite outputs"))
            except FutureTimeout:
                res["items"][label] = dict(ok=False, error="not compiled by the smoke's deadline")
                lines.append(f"CUT  {label}: not compiled by the smoke's deadline")
                res["pending"].append((label, key))
                res["cut"] = "some checks did not compile by the smoke's deadline (retried before the projection)"
            except Exception as e:
                res["items"][label] = dict(ok=False, error=one_line(e))
                lines.append(f"FAIL {label}: {one_line(e)}{tag}")
            self.log(lines[-1])
        res["failed"] = [k for k, v in res["items"].items() if not v["ok"]]

    def late_smoke(self):
        """Smoke checks whose programs compiled after the smoke's deadline: run them now (no waiting), so
        the one-line verdicts are complete wherever the programs did compile."""
        res = self.summary["parts"]["smoke"]["results"]
        late = [(label, key) for label, key in res.get("pending", [])
                if self.programs.futures.get(key) is not None and self.programs.futures[key].done()]
        if late:
            self.run_smoke_items(res, late, deadline=time.time(), late=True)

    # -- part (a) ----------------------------------------------------------------------------------------
    def part_throughput(self, res):
        th = self.sizes["throughput"]
        rows = res.setdefault("rows", {})
        for c in self.throughput_order():
            key = f"{c['algo']}|{c['env']}|{c['seeds']}"
            left = self.left("throughput")
            if left <= 1.0:
                rows[key] = dict(status="cut", reason="the part's deadline")
                res["cut"] = "deadline reached before every configuration ran"
                continue
            try:
                b = self.programs.get(self.train_key(c), self.deadline["throughput"])
            except FutureTimeout:
                rows[key] = dict(status="cut", reason="not compiled by the part's deadline")
                res["cut"] = "deadline reached before every configuration compiled"
                continue
            except Exception as e:
                rows[key] = dict(status="error", error=one_line(e))
                self.log(f"(a) {key}: {one_line(e)}")
                continue
            st = self.costs["step"]
            est = (c["learning_starts"] + c["chunks"] * c["eval_every"]) * (st["train"] + c["seeds"] * st.get("train_per_run", 0.0))
            done = [r for r in rows.values() if r.get("status") == "done" and r["algo"] == c["algo"] and r["env"] == c["env"]]
            if done:  # a measured configuration of this algo and env with at least as many seeds bounds it
                ref = max(done, key=lambda r: r["seeds"])
                measured = ref["init_s"] + sum(ref["chunk_s"])
                est = measured if ref["seeds"] >= c["seeds"] else max(est, measured)
            if time.time() + est > self.deadline["throughput"]:
                rows[key] = dict(status="cut", reason=f"the part's deadline (expected {est:.0f} s)")
                res["cut"] = "deadline reached before every configuration ran"
                continue
            try:
                n = b["runs"]
                t = time.perf_counter()
                state = _block(b["init"]())
                init_s = time.perf_counter() - t
                chunk_s = []
                for i in range(c["chunks"]):
                    if i and time.time() + chunk_s[-1] > self.deadline["throughput"]:
                        break
                    t = time.perf_counter()
                    state, m = b["step"](state, i)
                    _block(m)
                    chunk_s.append(time.perf_counter() - t)
                best = min(chunk_s[1:] or chunk_s)
                steps = c["eval_every"] * n
                row = dict(status="done", algo=c["algo"], env=c["env"], seeds=n, compile_s=b["compile_s"],
                           build_s=round(b["build_s"], 2), init_s=init_s, chunk_s=chunk_s,
                           random_env_steps_per_s=c["learning_starts"] * n / init_s,
                           updates_per_s=steps / best, updates_per_s_per_seed=c["eval_every"] / best,
                           env_steps_per_s=steps / best, eval_return=float(np.nanmean(np.asarray(m["eval_return"]))),
                           background_compiles=self.programs.pending())
                rows[key] = row
                self.cost("step", "train" if n == 1 else f"train_{c['env']}_{c['algo']}_{n}", best / c["eval_every"])
                self.cost("compile", "train", sum(b["compile_s"].values()))
                self.log(f"(a) {key}: {row['updates_per_s']:,.0f} updates/s ({row['updates_per_s_per_seed']:,.0f} per "
                         f"seed), random env steps/s {row['random_env_steps_per_s']:,.0f}, compile "
                         f"{sum(b['compile_s'].values()):.0f} s")
                del state, m
            except Exception as e:
                rows[key] = dict(status="error", error=one_line(e))
                self.log(f"(a) {key}: {one_line(e)}")
            self.write(figure=False)
        for (algo, env) in {(r["algo"], r["env"]) for r in rows.values() if r.get("status") == "done"}:
            one = rows.get(f"{algo}|{env}|1")
            for r in rows.values():
                if r.get("status") == "done" and r["algo"] == algo and r["env"] == env and one:
                    r["speedup_vs_1_seed"] = r["updates_per_s"] / one["updates_per_s"]

    # -- part (b) ----------------------------------------------------------------------------------------
    def part_meta_critic(self, res):
        from metarl.meta.meta_critic_runs import paper_metrics

        from benchmarks.meta_critic import ENV_ROWS, paper_value, read_paper_table

        progs = {}
        for c in self.meta_critic_configs():
            key = f"{c['env']}|{c['algo']}"
            try:
                b = self.programs.get(self.train_key(c, ("vanilla", "mc")), self.deadline["meta_critic"] - 5.0)
                t = time.perf_counter()
                state = _block(b["init"]())
                progs[key] = dict(b=b, state=state, c=c, history=[], chunk_s=[], init_s=time.perf_counter() - t)
            except FutureTimeout:
                res.setdefault("programs", {})[key] = dict(status="cut", reason="not compiled by the part's deadline")
                res["cut"] = "some programs did not compile in time"
            except Exception as e:
                res.setdefault("programs", {})[key] = dict(status="error", error=one_line(e))
                self.log(f"(b) {key}: {one_line(e)}")
        # Round robin, one chunk of each program per round, until the deadline.
        i = 0
        st = self.costs["step"]
        while progs and i < max(p["c"]["chunks"] for p in progs.values()):
            # a round's expected time: the measured chunks, or the cost model before the first one
            est = sum(max(p["chunk_s"]) if p["chunk_s"] else p["c"]["eval_every"] * (
                st["meta_critic"] + p["b"]["runs"] * st.get("meta_critic_per_run", 0.0)) for p in progs.values())
            if time.time() + est > self.deadline["meta_critic"]:
                break
            for key, p in list(progs.items()):
                if i >= p["c"]["chunks"]:
                    continue
                try:
                    t = time.perf_counter()
                    p["state"], m = p["b"]["step"](p["state"], i)
                    m = {k: np.asarray(v) for k, v in _block(m).items()}
                    p["chunk_s"].append(time.perf_counter() - t)
                    p["history"].append(m)
                except Exception as e:
                    res.setdefault("programs", {})[key] = dict(status="error", error=one_line(e))
                    self.log(f"(b) {key}: {one_line(e)}")
                    del progs[key]
            i += 1
            self.meta_critic_results(res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table)
            self.write(figure=False)
        self.meta_critic_results(res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table)
        for p in progs.values():
            del p["state"]

    def meta_critic_results(self, res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table):
        t1 = read_paper_table(1)
        out = res.setdefault("programs", {})
        for key, p in progs.items():
            if not p["history"]:
                continue
            env, algo = key.split("|")
            c, b = p["c"], p["b"]
            ev = np.concatenate([h["eval_return"] for h in p["history"]], axis=1)  # [runs, evals]
            steps = int(np.asarray(p["history"][-1]["env_steps"]).reshape(-1)[0])
            runs_per_s = c["eval_every"] * b["runs"] / np.median(p["chunk_s"])
            rows = {}
            for j, v in enumerate(b["variants"]):
                seg = ev[j * c["seeds"]:(j + 1) * c["seeds"]]
                col = algo.upper() + ("-MC" if v == "mc" else "")
                rows[col] = dict(paper_metrics(seg), paper=paper_value(t1, "environment", ENV_ROWS.get(env, env), col),
                                 eval_return=seg.tolist())
            out[key] = dict(status="done", env_steps_per_run=steps, chunks=len(p["chunk_s"]), runs=b["runs"],
                            compile_s=b["compile_s"], init_s=p["init_s"], chunk_s=p["chunk_s"],
                            env_steps_per_s_all_runs=runs_per_s, env_steps_per_s_per_run=runs_per_s / b["runs"],
                            table1=rows)
            self.cost("step", "meta_critic" if self.dry else f"meta_critic_{env}_{algo}",
                      float(np.median(p["chunk_s"])) / c["eval_every"])
            self.cost("compile", "meta_critic", sum(b["compile_s"].values()))

    # -- part (c) ----------------------------------------------------------------------------------------
    def part_snake(self, res):
        from metarl.meta.outer_value_outputs import summarise
        from metarl.meta.outer_value.config import SNAKE_PAPER as PAPER

        sz = self.sizes["snake"]
        dl = self.deadline["snake"]
        try:
            b = self.programs.get(self.snake_key(sz), dl - 2.0)
        except FutureTimeout:
            res["cut"] = "the Snake program did not compile by the part's deadline"
            return
        t = time.perf_counter()
        state = _block(b["init"]())
        res.update(compile_s=b["compile_s"], init_s=time.perf_counter() - t, seeds=b["seeds"],
                   updates_per_chunk=b["updates_per_chunk"], env_steps_per_update=b["steps_per_update"])
        parts, chunk_s = [], []
        prior = b["updates_per_chunk"] * self.costs["step"]["snake_update"]
        for i in range(sz["max_chunks"]):
            if time.time() + (max(chunk_s) if chunk_s else prior) > dl:
                res["cut"] = "deadline (as many updates as fit)"
                break
            t = time.perf_counter()
            state, logs = b["step"](state, i)
            parts.append(jax_get(logs))
            chunk_s.append(time.perf_counter() - t)
            logs_np = {a: {m: np.concatenate([np.asarray(p[a][m]) for p in parts], axis=0) for m in parts[0][a]}
                       for a in parts[0]}
            summ = summarise(logs_np)
            res.update(updates=len(parts) * b["updates_per_chunk"], chunk_s=chunk_s,
                       updates_per_s=b["updates_per_chunk"] / float(np.median(chunk_s[1:] or chunk_s)),
                       summary=summ,
                       paper={a: PAPER.get(a, {}) for a in summ},
                       curves={a: {"return": np.nanmean(logs_np[a]["return"], axis=1).tolist(),
                                   "gamma": np.mean(logs_np[a]["gamma"], axis=1).tolist()} for a in logs_np})
            self.cost("step", "snake_update", 1.0 / res["updates_per_s"])
            self.write(figure=False)
        self.cost("compile", "snake", sum(b["compile_s"].values()))
        del state

    # -- part (d) ----------------------------------------------------------------------------------------
    def part_metagenrl(self, res):
        sz = self.sizes["metagenrl"]
        dl = self.deadline["metagenrl"]
        t_part = time.time()
        try:
            b = self.programs.get(self.mg_key(sz), dl - 5.0)
        except FutureTimeout:
            res["cut"] = "meta-training did not compile by the part's deadline"
            return
        t = time.perf_counter()
        state = _block(b["init"]())
        train = dict(compile_s=b["compile_s"], init_s=time.perf_counter() - t, agents=b["agents"], groups=b["groups"],
                     segment_s=[], eval_return={g: [] for g in b["groups"]}, meta_grad_norm=[])
        res["meta_train"] = train
        # Meta-training gets 60% of what is left; meta-test the rest (its program compiles meanwhile).
        train_end = t_part + 0.6 * (dl - t_part)
        prior = b["config"].eval_every / 2 * self.costs["step"]["metagenrl_cycle"]
        for i in range(sz["max_segments"]):
            if time.time() + (max(train["segment_s"]) if train["segment_s"] else prior) > train_end:
                if not train["segment_s"]:
                    res["cut"] = "no time left for a meta-training segment"
                break
            t = time.perf_counter()
            state, m = b["step"](state, i)
            m = jax_get(m)
            train["segment_s"].append(time.perf_counter() - t)
            for g in b["groups"]:
                train["eval_return"][g].append(np.asarray(m[g]["eval_return"]).tolist())
            train["meta_grad_norm"].append(float(m["meta_grad_norm"]))
            train["env_steps_per_agent"] = int(np.asarray(m[b["groups"][0]]["env_steps"]).reshape(-1)[0])
            train["cycles_per_s"] = b["config"].eval_every / 2 / float(np.median(train["segment_s"]))
            self.cost("step", "metagenrl_cycle", 1.0 / train["cycles_per_s"])
            self.write(figure=False)
        self.cost("compile", "metagenrl", sum(b["compile_s"].values()))
        alpha = state.alpha
        del state
        try:
            tb = self.programs.get("mg_test", dl - 2.0)
        except FutureTimeout:
            res["cut"] = "meta-test did not compile by the part's deadline"
            return
        t = time.perf_counter()
        tstate = _block(tb["init"](alpha))
        test = dict(compile_s=tb["compile_s"], init_s=time.perf_counter() - t, env=tb["group"], seeds=tb["seeds"],
                    variants=list(TEST_VARIANTS), segment_s=[], eval_return=[])
        res["meta_test"] = test
        prior = 0.5 * tb["config"].eval_every / 2 * self.costs["step"]["metagenrl_cycle"]
        for i in range(sz["test_max_segments"]):
            if time.time() + (max(test["segment_s"]) if test["segment_s"] else prior) > dl:
                res["cut"] = "deadline (as long as fits)"
                break
            t = time.perf_counter()
            tstate, m = tb["step"](tstate, i)
            m = jax_get(m)
            test["segment_s"].append(time.perf_counter() - t)
            test["eval_return"].append(np.asarray(m[tb["group"]]["eval_return"]).tolist())
            test["env_steps_per_agent"] = int(np.asarray(m[tb["group"]]["env_steps"]).reshape(-1)[0])
            test["cycles_per_s"] = tb["config"].eval_every / 2 / float(np.median(test["segment_s"]))
            ev = np.asarray(test["eval_return"])  # [segments, variants * seeds]
            s = tb["seeds"]
            test["final"] = {v: float(ev[-1, j * s:(j + 1) * s].mean()) for j, v in enumerate(TEST_VARIANTS)}
            self.write(figure=False)
        self.cost("compile", "metagenrl_test", sum(tb["compile_s"].values()))

    # -- part (e) ----------------------------------------------------------------------------------------
    def part_projection(self, res):
        self.late_smoke()
        res["rows"] = projection(self.summary, self.dry)
        res["device"] = (self.summary.get("device") or {}).get("devices")


def jax_get(x):
    import jax

    return jax.device_get(x)


def projection(summary: dict, dry: bool) -> list[dict]:
    """Projected seconds of every paper-scale workload, from the rates this run measured."""
    parts = summary["parts"]
    rows = []
    for w in PAPER_WORKLOADS:
        row = dict(workload=w["name"], source=w["source"], seconds=None, basis=None)
        try:
            if w["source"] == "throughput":
                r = parts["throughput"]["results"].get("rows", {}).get(w["key"])
                if r and r.get("status") == "done":
                    row["seconds"] = w["steps"] / r["updates_per_s_per_seed"]
                    row["basis"] = f"{r['updates_per_s']:,.0f} updates/s aggregate at {r['seeds']} seeds"
            elif w["source"] == "meta_critic":
                row.update(meta_critic_projection(parts["meta_critic"]["results"].get("programs", {}), w["table"]))
            elif w["source"] == "snake":
                r = parts["snake"]["results"]
                if r.get("updates_per_s"):
                    row["seconds"] = w["updates"] / r["updates_per_s"] * w["seeds"] / r["seeds"]
                    n_agents = len(r.get("summary") or {})
                    row["basis"] = (f"{r['updates_per_s']:.2f} updates/s of {n_agents} agents at {r['seeds']} seeds; "
                                    f"cost assumed proportional to seeds ({w['seeds']})"
                                    + ("" if n_agents == 5 else f" and to agents (5); measured {n_agents}"))
                    row["seconds"] *= 5 / max(n_agents, 1)
            elif w["source"] == "metagenrl":
                r = parts["metagenrl"]["results"]
                tr, te = r.get("meta_train", {}), r.get("meta_test", {})
                if tr.get("cycles_per_s"):
                    train = 5 * (1_000_000 - 10_000) / 2 / tr["cycles_per_s"]
                    # meta-test: per env one program of 7 variants x 6 seeds = 42 agents; ours measured
                    # 3 variants x test_seeds; cost assumed proportional to agents
                    test = None
                    if te.get("cycles_per_s"):
                        test = 3 * (1_000_000 - 10_000) / 2 / te["cycles_per_s"] * 42 / (3 * te["seeds"])
                    row["seconds"] = train + (test or 0.0)
                    row["basis"] = (f"meta-train {tr['cycles_per_s']:.1f} cycles/s with {tr['agents']} agents on "
                                    f"{'+'.join(tr['groups'])}" + (f"; meta-test {te['cycles_per_s']:.1f} cycles/s "
                                    f"({3 * te['seeds']} agents), scaled to 42 agents" if test else
                                    "; meta-test not measured (excluded)"))
            elif w["source"] == "model_based_critic":
                r = parts["smoke"]["results"]
                if r.get("mbc_s_per_iteration"):
                    # ours + DDPG + Meta-Critic baselines, 3000 iterations each; seeds vmapped, assumed x1..x5
                    row["seconds"] = 3 * w["iterations"] * r["mbc_s_per_iteration"] * w["seeds"]
                    row["basis"] = (f"{r['mbc_s_per_iteration']:.3f} s per meta-iteration at 1 seed (smoke), x3 "
                                    f"methods, cost assumed proportional to seeds (upper bound)")
        except Exception as e:
            row["basis"] = f"error: {one_line(e)}"
        if row["seconds"] is not None:
            row["hours"] = row["seconds"] / 3600
        if dry:
            row["note"] = "CPU dry run at tiny sizes: NOT a device projection"
        rows.append(row)
    return rows


def meta_critic_projection(programs: dict, table) -> dict:
    """Programs x 1M steps at the measured env steps/s of a (vanilla + MC) x 5-seed program; locomotion
    tasks at hopper's rate, the pendulums at inverted_double_pendulum's, DDPG at TD3's."""
    rate = {}
    for key, p in programs.items():
        if p.get("status") == "done":
            env, algo = key.split("|")
            rate[(env, algo)] = p["env_steps_per_s_all_runs"] / p["runs"]  # steps/s of the program
    if not rate:
        return {}

    def rate_for(env, algo):
        algo = "td3" if algo == "ddpg" else algo
        pend = "pendulum" in env
        cands = [(e, a) for (e, a) in rate if a == algo and (("pendulum" in e) == pend)] or \
                [(e, a) for (e, a) in rate if a == algo] or list(rate)
        return rate[cands[0]], cands[0]

    from benchmarks.meta_critic import ALGOS, ENV_ROWS, bench_config, plan

    if table == 1:
        jobs = [(env, algo, ("vanilla", "mc")) for env in ENV_ROWS for algo in ALGOS]
    else:
        jobs = plan(bench_config("paper"))
    total, used = 0.0, set()
    for env, algo, variants in jobs:
        r, src = rate_for(env, algo)
        used.add(src)
        shared = [v for v in variants if v in ("vanilla", "updates", "mc", "mc_plain")]
        own = [v for v in variants if v not in shared]
        # a shared program's cost grows with its runs (measured at 2 variants); own programs: 1 variant
        # at roughly half a 2-variant program's cost
        total += 1_000_000 / r * (max(1.0, len(shared) / 2) + 0.5 * len(own))
    return dict(seconds=total, basis=f"{len(jobs)} jobs x 1M steps at the rates of "
                                     f"{', '.join(f'{a} on {e}' for e, a in sorted(used))}; programs run one after "
                                     f"another, DDPG at TD3's rate")
