"""The GPU kit's run: set-up, the watchdog, the budget's deadlines, compiling every program ahead of time,
the parts in turn, and writing the outputs after each."""
from __future__ import annotations

import time

import json
import os
import sys
import threading
import traceback
import warnings

from benchmarks.gpu.plan import OUTPUT_FILES, PARTS, SHARES, TITLES, T_START, load_costs, make_plan, sizes_for
from benchmarks.gpu.programs import (Programs, build_env_smoke, build_mbc, build_metagenrl, build_metagenrl_test,
                                     build_offpolicy, build_snake, one_line, train_kwargs)
from benchmarks.gpu.parts import Parts
from benchmarks.gpu.report import _jsonable, figures, plan_text, summary_markdown


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------
class Kit(Parts):
    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.out = args.out
        self.budget = args.budget_s
        self.t0 = T_START
        self.lock = threading.RLock()
        self.sizes = sizes_for(self.dry)
        self.costs = load_costs(args.costs, self.dry)
        self.workers = args.workers or (2 if self.dry else 12)  # the H200 machine has 16 cores
        self.plan = make_plan(self.sizes, self.costs, self.budget, self.dry, self.workers)
        # Deadlines are cumulative (time a part leaves unused rolls over). In the dry run the CPU compiles
        # for minutes and the load of a shared machine varies, so its parts share the whole budget instead.
        cum, self.deadline = 0.0, {}
        for p in PARTS:
            cum += SHARES[p]
            self.deadline[p] = self.t0 + (1.0 if self.dry else cum) * self.budget
        self.summary = dict(mode=self.plan["mode"], budget_s=self.budget, complete=False, wall_s=None,
                            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)), device=None,
                            versions=None, parts={p: dict(status="pending", title=TITLES[p], wall_s=None,
                                                          box_s=next(x["box_s"] for x in self.plan["parts"]
                                                                     if x["name"] == p),
                                                          predicted_s=next(x["predicted_s"] for x in self.plan["parts"]
                                                                           if x["name"] == p), results={})
                                                  for p in PARTS},
                            warnings=[], measured_costs={"compile": {}, "step": {}}, outputs=list(OUTPUT_FILES))
        self.current = None
        self._seen_warnings = set()

    # -- bookkeeping ---------------------------------------------------------------------------------
    def left(self, part) -> float:
        return self.deadline[part] - time.time()

    def record_warning(self, message, category, filename, lineno, file=None, line=None):
        key = (category.__name__, str(message)[:200], os.path.basename(str(filename)))
        with self.lock:
            if key in self._seen_warnings:
                return
            self._seen_warnings.add(key)
            self.summary["warnings"].append(dict(category=category.__name__, message=str(message)[:300],
                                                 where=f"{filename}:{lineno}"))
        print(f"[warning] {category.__name__}: {str(message)[:200]} ({os.path.basename(str(filename))}:{lineno})",
              file=sys.stderr, flush=True)

    def log(self, msg: str):
        print(f"[{time.time() - self.t0:6.1f}s] {msg}", flush=True)

    def cost(self, kind: str, name: str, value: float):
        with self.lock:
            old = self.summary["measured_costs"][kind].get(name)
            self.summary["measured_costs"][kind][name] = value if old is None else max(old, value) \
                if kind == "compile" else min(old, value)

    def write(self, final: bool = False, figure: bool = True):
        """summary.json and summary.md (cheap: after every chunk) and figures.png (at the end of a part)."""
        from metarl.driver import write_text

        with self.lock:
            self.summary["wall_s"] = round(time.time() - self.t0, 1)
            self.summary["complete"] = bool(final)
            text = json.dumps(self.summary, indent=1, default=_jsonable)
            md = summary_markdown(self.plan, self.summary)
        write_text(os.path.join(self.out, "summary.json"), text + "\n")
        write_text(os.path.join(self.out, "summary.md"), md)
        if not figure or (self.dry and not final):  # the dry run draws it once, at the end (CPU time)
            return
        try:
            figures(self.summary, os.path.join(self.out, "figures.png"))
        except Exception as e:  # a figure must never cost the numbers
            self.log(f"figure not written: {one_line(e)}")

    # -- main --------------------------------------------------------------------------------------
    def run(self):
        from metarl.driver import write_text

        os.makedirs(self.out, exist_ok=True)
        write_text(os.path.join(self.out, "plan.json"), json.dumps(self.plan, indent=1, default=_jsonable) + "\n")
        print(plan_text(self.plan), flush=True)
        warnings.simplefilter("default")
        warnings.showwarning = self.record_warning
        self.write(figure=False)
        watchdog = threading.Thread(target=self._watchdog, daemon=True)
        watchdog.start()
        import_ok = self.setup()
        self.programs = Programs(self.workers)
        if import_ok:
            self.submit_all()
        for part in PARTS:
            if time.time() > self.t0 + self.budget:
                break
            self.current = part
            rec = self.summary["parts"][part]
            rec["status"] = "running"
            t = time.time()
            try:
                if not import_ok and part != "projection":
                    raise RuntimeError("metarl could not be imported (see the smoke lines)")
                getattr(self, f"part_{part}")(rec["results"])
                rec["status"] = "cut" if rec["results"].get("cut") else "done"
            except Exception as e:
                rec["status"] = "error"
                rec["error"] = one_line(e)
                rec["traceback"] = traceback.format_exc()[-3000:]
                self.log(f"part {part} failed: {one_line(e)}")
            rec["wall_s"] = round(time.time() - t, 1)
            self.log(f"part {part}: {rec['status']} in {rec['wall_s']} s")
            self.write()
        self.current = None
        self.programs.shutdown()
        self.write(final=True)
        self.log(f"done in {time.time() - self.t0:.0f} s; results in {self.out}")

    def _watchdog(self):
        """Past the budget (plus a grace), write what there is and end the process: a program that runs
        past its deadline (a compile or a long GPU call) must not cost the results."""
        grace = max(10.0, 0.05 * self.budget)
        time.sleep(max(0.0, self.t0 + self.budget + grace - time.time()))
        if self.summary["complete"]:
            return
        with self.lock:
            if self.current:
                rec = self.summary["parts"][self.current]
                rec["status"] = "cut"
                rec["results"]["cut"] = "the budget ran out inside this part (watchdog)"
        self.log("budget exhausted: writing what there is and exiting")
        self.write(final=False)
        os._exit(3)

    def setup(self) -> bool:
        """Imports, device and versions: the smoke's first lines."""
        lines = self.summary["parts"]["smoke"]["results"].setdefault("lines", [])
        import importlib

        try:
            # Before anything compiles: jax decides on its first compilation whether the persistent cache
            # is used, for the whole process (some of the imports below compile small constants).
            import jax

            from metarl import enable_compilation_cache

            if self.dry:
                jax.config.update("jax_disable_most_optimizations", True)
            enable_compilation_cache()
        except Exception as e:
            lines.append(f"FAIL import jax: {one_line(e)}")
            return False
        mods = ["jax", "jaxlib", "flax", "optax", "chex", "orbax.checkpoint", "numpy", "matplotlib", "mujoco",
                "brax", "brax.envs", "gymnax", "jumanji", "distrax", "tensorflow_probability.substrates.jax"]
        for m in mods:
            try:
                importlib.import_module(m)
                lines.append(f"OK   import {m}")
            except Exception as e:
                lines.append(f"FAIL import {m}: {one_line(e)}")
        ok = True
        try:
            import pkgutil

            import metarl

            # a module that fails is one line; the checks and parts that need it fail on their own
            for m in sorted(x.name for x in pkgutil.walk_packages(metarl.__path__, "metarl.")):
                try:
                    importlib.import_module(m)
                except Exception as e:
                    lines.append(f"FAIL import {m}: {one_line(e)}")
            from importlib.metadata import PackageNotFoundError, version

            self.summary["device"] = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                                      "device_count": jax.device_count(), "cpu_count": os.cpu_count()}
            versions = {}
            for p in ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "brax", "gymnax",
                      "jumanji", "distrax", "tfp-nightly", "mujoco", "mujoco-mjx"):
                try:
                    versions[p] = version(p)
                except PackageNotFoundError:
                    versions[p] = None
            self.summary["versions"] = {**versions, "python": sys.version.split()[0]}
            lines.append(f"OK   metarl on {self.summary['device']['devices']} (jax {jax.__version__})")
        except Exception as e:
            lines.append(f"FAIL import metarl: {one_line(e)}")
            ok = False
        for ln in lines:
            self.log(ln)
        self.write(figure=False)
        return ok

    # -- what gets compiled, in the order the parts need it --------------------------------------------
    def submit_all(self):
        P, S = self.programs, self.sizes
        sm = S["smoke"]
        for name in sm["envs"]:
            P.submit(f"env|{name}", lambda n=name: build_env_smoke(n))
        for algo, t in sm["train"].items():
            P.submit(self.train_key(t), lambda t=t: build_offpolicy(self.train_args(t)))
        t = sm["meta_critic"]
        P.submit(self.train_key(t, ("vanilla", "mc")), lambda t=t: build_offpolicy(self.train_args(t), ("vanilla", "mc")))
        P.submit(self.snake_key(sm["snake"]), lambda: build_snake(sm["snake"]))
        P.submit(self.mg_key(sm["metagenrl"]), lambda: build_metagenrl(sm["metagenrl"]))
        P.submit("mbc", lambda: build_mbc(sm["model_based_critic"]))
        # Then the longest compiles first (MetaGenRL, Snake, Meta-Critic; they run last but compile for
        # minutes), then (a) in the order it runs: the cheap Pendulum programs and the two ends of the seed
        # range before the middle.
        P.submit(self.mg_key(S["metagenrl"]), lambda: build_metagenrl(S["metagenrl"]))
        P.submit("mg_test", lambda: build_metagenrl_test(S["metagenrl"]))
        P.submit(self.snake_key(S["snake"]), lambda: build_snake(S["snake"]))
        for c in self.meta_critic_configs():
            P.submit(self.train_key(c, ("vanilla", "mc")), lambda c=c: build_offpolicy(self.train_args(c), ("vanilla", "mc")))
        for c in self.throughput_order():
            P.submit(self.train_key(c), lambda c=c: build_offpolicy(self.train_args(c)))

    def throughput_order(self) -> list[dict]:
        top = max(self.sizes["throughput"]["seeds"])
        return sorted(self.throughput_configs(),
                      key=lambda c: (c["env"].startswith("brax"), c["seeds"] not in (1, top), c["seeds"], c["algo"]))

    @staticmethod
    def train_args(c: dict) -> dict:
        return train_kwargs(c["algo"], c["env"], c["seeds"], c["learning_starts"], c["eval_every"], c["chunks"],
                            c["eval_episodes"], c["max_episode_steps"], c["agent"])

    @staticmethod
    def train_key(c: dict, variants=()) -> str:
        return "train|" + json.dumps({**c, "variants": list(variants)}, sort_keys=True, default=list)

    @staticmethod
    def snake_key(sz: dict) -> str:
        return "snake|" + json.dumps({k: sz[k] for k in ("num_envs", "horizon", "hidden", "seeds", "updates_per_log",
                                                         "logs_per_chunk", "agents")}, sort_keys=True)

    @staticmethod
    def mg_key(sz: dict) -> str:
        return "metagenrl|" + json.dumps({k: v for k, v in sz.items() if not k.startswith("test")}, sort_keys=True)

    def throughput_configs(self) -> list[dict]:
        th = self.sizes["throughput"]
        if self.dry:  # the smoke's own programs: the dry run compiles them once
            return [self.sizes["smoke"]["train"][a] for a in th["algos"]]
        return [dict(algo=a, env=e, seeds=n, learning_starts=th["learning_starts"], eval_every=th["steps_per_chunk"],
                     chunks=th["chunks"], eval_episodes=th["eval_episodes"], max_episode_steps=th["max_episode_steps"],
                     agent=th["agent"]) for e in th["envs"] for a in th["algos"] for n in th["seeds"]]

    def meta_critic_configs(self) -> list[dict]:
        mc = self.sizes["meta_critic"]
        if self.dry:
            return [self.sizes["smoke"]["meta_critic"]]
        return [dict(algo=a, env=e, seeds=mc["seeds"], learning_starts=mc["learning_starts"], eval_every=mc["eval_every"],
                     chunks=mc["max_chunks"], eval_episodes=mc["eval_episodes"],
                     max_episode_steps=mc["max_episode_steps"], agent=mc["agent"])
                for e in mc["envs"] for a in mc["algos"]]
