"""Runs that cannot lie (issue 12): resume validation, run-directory policy, checkpoint integrity, the
NaN/inf guard, one-line CLI errors, SIGINT, --seed-index. Each test injects one fault; docs/reliability.md
lists them with what the program does.

Cost: two compiled programs (the 2-run base and the 1-run --seed-index); every other run reuses the base
program through the persistent compilation cache (same shapes: a 2-combo sweep with 1 seed is laid out
like 2 seeds)."""
import dataclasses
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from metarl import train as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = T.TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=2, total_steps=700, learning_starts=100,
                     eval_every=200, eval_episodes=2, max_episode_steps=50,
                     agent=dict(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=32),
                     hp={"actor_lr": 1e-3, "critic_lr": 1e-3})
# The same run from the command line (and so the same compiled program).
CLI = ["--algo", "td3", "--env", "gymnax/Pendulum-v1", "--seeds", "2", "--steps", "700", "--learning-starts", "100",
       "--eval-every", "200", "--eval-episodes", "2", "--max-episode-steps", "50", "--no-progress",
       "--set", "actor_hidden=32,32", "--set", "critic_hidden=32,32", "--set", "batch_size=32",
       "--set", "actor_lr=1e-3;critic_lr=1e-3"]


def snapshot(d) -> dict:
    """Every file under d with its bytes (to show that nothing was written)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def strict_json(path):
    def no_constants(c):
        raise ValueError(f"{path} holds the bare constant {c} (not valid JSON)")

    with open(path) as f:
        return json.load(f, parse_constant=no_constants)


def one_line_err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def cli_exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        T.main(argv)
    return e.value.code, one_line_err(capsys)


class KeepCheckpoints(T.Runner):
    """A Runner that keeps a copy of every checkpoint it writes (ck1, ck2, ... beside the run)."""

    def save(self, run, chunk_idx, history):
        super().save(run, chunk_idx, history)
        shutil.copytree(self._ckpt_dir(), os.path.join(os.path.dirname(self.run_dir), f"ck{chunk_idx}"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The base run (3 chunks), with a copy of the checkpoints after chunks 1 and 2."""
    root = tmp_path_factory.mktemp("base")
    d = root / "run"
    _, metrics = KeepCheckpoints(BASE, str(d), progress=False).run()
    return dict(dir=d, ck1=root / "ck1", ck2=root / "ck2", metrics=metrics)


@pytest.fixture
def copy(base, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(base["dir"], d)
    return d


def test_base_run_is_consistent(base):
    d = base["dir"]
    meta = strict_json(d / "meta.json")
    assert meta["status"] == "finished" and meta["chunks_done"] == 3
    assert json.loads((d / "checkpoint" / T.MARKER).read_text())["chunk"] == 3
    assert sorted(os.listdir(d)) == ["checkpoint", "config.json", "learning_curve.png", "meta.json", "metrics.csv",
                                     "metrics.json"]
    m = base["metrics"]
    assert m["eval_return"].shape == (2, 3) and (m["nonfinite_step"] == -1).all()


# ---------------------------------------------------------------------------------------------------
# 1. resume = the same run, or a one-line refusal with nothing written
# ---------------------------------------------------------------------------------------------------
def test_resume_with_changed_number_is_refused(copy):
    before = snapshot(copy)
    cfg = dataclasses.replace(BASE, seed=7, hp={"actor_lr": 1e-3, "critic_lr": 3e-4})
    with pytest.raises(T.ConfigMismatch) as e:
        T.Runner(cfg, str(copy), progress=False).run(resume=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert "hp.critic_lr (0.001 -> 0.0003)" in msg and "seed (0 -> 7)" in msg, msg
    assert snapshot(copy) == before


@pytest.mark.parametrize("extra,field", [(["--steps", "900"], "total_steps (700 -> 900)"),
                                         (["--seeds", "3"], "seeds (2 -> 3)"),
                                         (["--eval-episodes", "3"], "eval_episodes (2 -> 3)")])
def test_resume_with_changed_shape_is_refused_in_one_line(copy, capsys, extra, field):
    before = snapshot(copy)
    code, line = cli_exit(CLI + ["--run-dir", str(copy), "--resume"] + extra, capsys)
    assert code == 2 and field in line and line.startswith("python -m metarl.train: error: cannot resume"), line
    assert snapshot(copy) == before


def test_resume_with_other_package_versions(copy, monkeypatch):
    meta = json.loads((copy / "meta.json").read_text())
    meta["versions"]["jax"] = "0.0.1"
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(T.ConfigMismatch, match=r"package versions differ.*jax \('0.0.1' -> '"):
        T.Runner(BASE, str(copy), progress=False).run(resume=True)
    # Allowed explicitly, and recorded (a finished run: restores and rewrites its results, no compile).
    T.Runner(BASE, str(copy), progress=False, allow_version_change=True).run(resume=True)
    meta = strict_json(copy / "meta.json")
    assert meta["status"] == "finished" and "jax ('0.0.1' -> " in meta["version_changes"][0]["changes"][0]


# ---------------------------------------------------------------------------------------------------
# 2. run-directory policy
# ---------------------------------------------------------------------------------------------------
def test_existing_dir_is_refused_without_overwrite(copy, capsys):
    before = snapshot(copy)
    code, line = cli_exit(CLI + ["--run-dir", str(copy)], capsys)
    assert code == 2 and "is not empty (a finished run)" in line and "--overwrite" in line, line
    with pytest.raises(T.RunDirError, match="is not empty"):
        T.Runner(BASE, str(copy), progress=False).run()
    assert snapshot(copy) == before


def test_overwrite_replaces_stale_run_files(base, tmp_path):
    d = tmp_path / "stale"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"seeds": 1}))  # an older run's files
    shutil.copytree(base["ck1"], d / "checkpoint.old")
    (d / "notes.txt").write_text("mine")  # not a run file: kept
    tb = tmp_path / "tb"  # and the TensorBoard view of the run (--tensorboard), outside the run folder
    _, m = T.Runner(BASE, str(d), progress=False, overwrite=True, tensorboard=str(tb)).run()
    assert sorted(os.listdir(d)) == ["checkpoint", "config.json", "learning_curve.png", "meta.json", "metrics.csv",
                                     "metrics.json", "notes.txt"]
    assert strict_json(d / "config.json")["seeds"] == 2
    for k in base["metrics"]:
        np.testing.assert_array_equal(m[k], base["metrics"][k], err_msg=k)
    from metarl.tensorboard import read_scalars

    s = read_scalars(str(tb))
    ev = np.asarray(m["eval_return"], float)  # [runs, evaluations]
    assert [step for step, _ in s["eval_return"]] == np.asarray(m["env_steps"])[0].tolist()
    np.testing.assert_allclose([v for _, v in s["eval_return"]], ev.mean(0), rtol=1e-5)
    np.testing.assert_allclose([v for _, v in s["eval_return/run_1"]], ev[1], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# 3. checkpoints: complete marker, fall-back order, content hashes
# ---------------------------------------------------------------------------------------------------
def test_kill_between_renames_resumes_from_the_newest_complete_checkpoint(base, copy):
    # The swap is checkpoint -> checkpoint.old, checkpoint.partial -> checkpoint: killed in between.
    shutil.rmtree(copy / "checkpoint")
    shutil.copytree(base["ck1"], copy / "checkpoint.old")
    shutil.copytree(base["ck2"], copy / "checkpoint.partial")
    runner = T.Runner(BASE, str(copy), progress=False)
    assert os.path.basename(runner.find_checkpoint()[0]) == "checkpoint.partial"
    os.remove(copy / "checkpoint.partial" / T.MARKER)  # a partial without its marker is never used
    assert os.path.basename(runner.find_checkpoint()[0]) == "checkpoint.old"
    shutil.copy(base["ck2"] / T.MARKER, copy / "checkpoint.partial" / T.MARKER)
    _, m = runner.run(resume=True)
    resumed = strict_json(copy / "meta.json")["sessions"][-1]
    assert resumed["from_chunk"] == 2 and resumed["checkpoint"] == "checkpoint.partial"
    for k in base["metrics"]:
        np.testing.assert_array_equal(m[k], base["metrics"][k], err_msg=k)
    assert not os.path.exists(copy / "checkpoint.old") and not os.path.exists(copy / "checkpoint.partial")


def _largest_file(d):
    files = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_checkpoint_file_is_a_one_line_error(copy, capsys, damage):
    path = _largest_file(copy / "checkpoint" / "state")
    data = bytearray(open(path, "rb").read())
    if damage == "flip":
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])  # same size
    else:
        data = data[: len(data) // 2]
    open(path, "wb").write(bytes(data))
    before = snapshot(copy)
    code, line = cli_exit(CLI + ["--run-dir", str(copy), "--resume"], capsys)
    rel = os.path.relpath(path, copy)
    assert code == 1 and f"checkpoint file {rel} does not match its recorded sha256" in line, line
    assert snapshot(copy) == before


def test_array_hash_mismatch_names_the_leaf(copy):
    marker = json.loads((copy / "checkpoint" / T.MARKER).read_text())
    leaf = next(k for k in marker["leaves"] if "critic" in k)
    marker["leaves"][leaf] = "0" * 64
    (copy / "checkpoint" / T.MARKER).write_text(json.dumps(marker))
    with pytest.raises(T.CheckpointError, match=re.escape(f"array {leaf} does not match its recorded sha256")):
        T.Runner(BASE, str(copy), progress=False).run(resume=True)


def test_checkpoint_without_marker_is_not_resumed(copy):
    os.remove(copy / "checkpoint" / T.MARKER)
    with pytest.raises(T.CheckpointMissing, match="checkpoint present but without COMPLETE.json"):
        T.Runner(BASE, str(copy), progress=False).run(resume=True)


# ---------------------------------------------------------------------------------------------------
# 4. NaN/inf guard
# ---------------------------------------------------------------------------------------------------
NAN_CLI = [x if x != "actor_lr=1e-3;critic_lr=1e-3" else "actor_lr=1e-3;critic_lr=1e-3,1e30" for x in CLI]
NAN_CLI[NAN_CLI.index("--seeds") + 1] = "1"  # a 2-combo sweep x 1 seed: the base's shapes
NAN_CFG = dataclasses.replace(BASE, seeds=1, hp={"actor_lr": 1e-3, "critic_lr": [1e-3, 1e30]})


def test_nonfinite_stops_the_run_with_its_step(tmp_path, capsys):
    d = tmp_path / "nan"
    code, line = cli_exit(NAN_CLI + ["--run-dir", str(d)], capsys)
    assert code == 1, line
    assert "run 1 (seed 0, actor_lr=0.001, critic_lr=1e+30) went non-finite: critic_loss at env step" in line, line
    step = int(line.split("env step ")[1].split()[0].rstrip(";"))
    assert 101 <= step <= 300  # in the first chunk (updates start at step 101)
    block = strict_json(d / "metrics.json")["blocks"][0]  # valid JSON: non-finite values are null
    runs, metrics = block["runs"], block["metrics"]
    assert runs[0]["status"] == "ok" and runs[1]["status"] == "failed"
    assert runs[1]["nonfinite_metric"] == "critic_loss" and runs[0]["nonfinite_metric"] == ""
    assert None in metrics["critic_loss"][1] and metrics["nonfinite_step"][1][0] == step
    meta = strict_json(d / "meta.json")
    assert meta["status"] == "failed" and meta["failed_runs"]["1"]["step"] == step
    assert "checkpoint" not in os.listdir(d)  # the failing state is never saved as a checkpoint


def test_nonfinite_continue_keeps_the_other_runs(tmp_path, capsys):
    d = tmp_path / "nan_continue"
    runner = T.Runner(NAN_CFG, str(d), progress=False, on_nonfinite="continue")
    _, m = runner.run()
    line = one_line_err(capsys)
    assert line.startswith("warning: run 1 (seed 0, actor_lr=0.001, critic_lr=1e+30) went non-finite"), line
    assert list(runner.failures) == [1] and (m["nonfinite_step"][0] == -1).all()
    assert np.isfinite(m["eval_return"][0]).all() and np.isfinite(m["critic_loss"][0]).all()
    metrics = strict_json(d / "metrics.json")
    assert [r["status"] for r in metrics["blocks"][0]["runs"]] == ["ok", "failed"]
    meta = strict_json(d / "meta.json")
    assert meta["status"] == "finished" and list(meta["failed_runs"]) == ["1"]


# ---------------------------------------------------------------------------------------------------
# 5. bad input: one line on stderr, exit status 2, before compiling or writing anything
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,expect", [
    (["--env", "gymnax/Pendulum-v9"], "--env 'gymnax/Pendulum-v9': unknown gymnax environment; did you mean gymnax/Pendulum-v1?"),
    (["--env", "Pendulum-v1"], "names are '<source>/<env>'"),
    (["--env", "gymnax/CartPole-v1"], "td3 needs a continuous action space; gymnax/CartPole-v1 is discrete"),
    (["--set", "batch_size=abc"], "--set batch_size=abc: invalid value for td3's batch_size; it takes a whole number >= 1"),
    (["--set", "actor_hidden=abc"], "--set actor_hidden=abc: invalid value for td3's actor_hidden; it takes whole numbers"),
    (["--set", "actor_hidden=64,0"], "invalid value for td3's actor_hidden"),
    (["--set", "actor_lr=1e6,critic_lr=1e6"], "looks like two overrides; use --set twice"),
    (["--set", "actor_lr=abc"], "'abc' is not a number"),
    (["--set", "actor_lr=-1"], "actor_lr must be > 0"),
    (["--set", "gamma=2"], "gamma must be in [0, 1]"),
    (["--set", "lr=1e-3"], "unknown override 'lr' for td3"),
    (["--seeds", "0"], "argument --seeds: 0 is not allowed; give a whole number >= 1"),
    (["--steps", "-700"], "argument --steps: -700 is not allowed"),
    (["--eval-every", "abc"], "argument --eval-every: 'abc' is not an integer"),
    (["--learning-starts", "-1"], "argument --learning-starts: -1 is not allowed; give a whole number >= 0"),
    (["--max-episode-steps", "0"], "argument --max-episode-steps: 0 is not allowed"),
    (["--steps", "750"], "must be a positive multiple of eval_every"),
    (["--algo", "ppo"], "argument --algo: invalid choice 'ppo'; valid: ddpg, td3, sac"),
    (["--on-nonfinite", "ignore"], "argument --on-nonfinite: invalid choice 'ignore'; valid: stop, continue"),
    (["--buffer-size", "0"], "argument --buffer-size: 0 is not allowed; give a whole number >= 1"),
    (["--seed-index", "2"], "seed_index 2 is out of range: this config has 2 run(s), valid seed_index 0..1"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--tensorboard", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
])
def test_bad_cli_input_is_one_line(tmp_path, capsys, extra, expect):
    d = tmp_path / "never"
    code, line = cli_exit(CLI + ["--run-dir", str(d)] + extra, capsys)
    assert code == 2 and expect in line, line
    assert line.startswith("python -m metarl.train: error: ")
    assert not d.exists()


def test_unwritable_run_dir_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, line = cli_exit(CLI + ["--run-dir", str(tmp_path / "file" / "run")], capsys)
    assert code == 2 and "is not a directory" in line, line
    code, line = cli_exit(CLI + ["--run-dir", str(tmp_path / "file")], capsys)
    assert code == 2 and "exists and is not a directory" in line, line


def test_bad_cli_input_in_a_subprocess(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for extra, expect in ((["--set", "batch_size=abc"], "batch_size=abc"),
                          (["--env", "gymnax/Nope-v0"], "unknown gymnax environment")):
        out = subprocess.run([sys.executable, "-m", "metarl.train", *CLI, "--run-dir", str(tmp_path / "r"), *extra],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert out.returncode == 2 and len(lines) == 1 and expect in lines[0], out.stderr
    assert not (tmp_path / "r").exists()


def test_overrides_several_ways():
    hp, agent = T.parse_overrides(["actor_lr=3e-4", "critic_lr=1e-3,3e-4", "actor_hidden=64,64", "layer_norm=true"],
                                  "td3")
    assert hp == {"actor_lr": 3e-4, "critic_lr": [1e-3, 3e-4]} and agent == {"actor_hidden": (64, 64), "layer_norm": True}
    assert T.parse_overrides(["actor_lr=1", "actor_lr=2"], "td3")[0] == {"actor_lr": 2.0}  # the last one counts
    with pytest.raises(ValueError, match="takes a whole number >= 1"):  # the Python API checks types too
        T.TrainConfig(agent={"batch_size": "abc"}).validate()


SCALE_CLIS = [("benchmarks.meta_critic", []), ("benchmarks.metagenrl", []), ("benchmarks.model_based_critic", []),
              ("benchmarks.outer_value", []), ("benchmarks.throughput", []), ("experiments.metagenrl", ["meta-train"]),
              ("experiments.model_based_critic_arm7", []), ("experiments.model_based_critic_pointmass", []),
              ("experiments.model_based_critic_reacher", []), ("experiments.model_based_critic_toy", []),
              ("experiments.outer_value_chain", []), ("experiments.outer_value_snake", [])]


@pytest.mark.parametrize("module,pre", SCALE_CLIS, ids=[m for m, _ in SCALE_CLIS])
def test_bad_scale_is_one_line(module, pre, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as e:
        mod.main(pre + ["--scale", "huge"])
    line = one_line_err(capsys)
    assert e.value.code == 2 and "argument --scale: unknown scale 'huge'; valid scales: quick, " in line, line
    assert os.listdir(tmp_path) == []


# Bad inputs of the experiment and benchmark CLIs beyond --scale: one line, exit status 2, nothing written
# (not even the output folder), before anything is compiled. "{out}" is a folder in tmp_path that must
# not appear; "/proc/nope" cannot be created.
BAD_INPUTS = [
    ("experiments.meta_critic", ["--algo", "bogus"], "argument --algo: invalid choice 'bogus'; valid: ddpg, td3, sac"),
    ("experiments.meta_critic", ["--algo", "td3", "sac"], "argument --algo: one algorithm unless --overhead"),
    ("experiments.meta_critic", ["--env", "bogus/x"], "--env 'bogus/x': names are '<source>/<env>'"),
    ("experiments.meta_critic", ["--env", "gymnax/CartPole-v1"], "--env 'gymnax/CartPole-v1' is discrete"),
    ("experiments.meta_critic", ["--variants", "mc", "bogus"], "argument --variants: invalid choice 'bogus'"),
    ("experiments.meta_critic", ["--lookahead", "half"], "argument --lookahead: invalid choice 'half'"),
    ("experiments.meta_critic", ["--hidden", "64", "abc"], "argument --hidden: '64 abc' is not"),
    ("experiments.meta_critic", ["--hidden", "64", "0"], "argument --hidden: '64 0' is not"),
    ("experiments.meta_critic", ["--updates-k-from", "cpu"], "argument --updates-k-from: invalid choice 'cpu'; valid: wall, flops"),
    ("experiments.meta_critic", ["--algo", "sac", "--sac-batch", "-1"], "argument --sac-batch: -1 is not allowed"),
    ("experiments.meta_critic", ["--overhead", "--rounds", "0"], "argument --rounds: 0 is not allowed"),
    ("experiments.meta_critic", ["--tabular", "--mdp", "grid"], "argument --mdp: invalid choice 'grid'"),
    ("experiments.meta_critic", ["--tabular", "--tab-actor", "relu"], "argument --tab-actor: invalid choice 'relu'"),
    ("experiments.meta_critic", ["--steps", "3000", "--learning-starts", "5000"], "must be a positive multiple"),
    ("experiments.meta_critic", ["--out", "/proc/nope"], "run directory '/proc/nope': "),
    ("experiments.outer_value_chain", ["--critic", "bogus"], "argument --critic: invalid choice 'bogus'; valid: analytic, learned"),
    ("experiments.outer_value_chain", ["--lam", "-1"], "argument --lam: -1 is not allowed; give a number in [0, 1]"),
    ("experiments.outer_value_chain", ["--outer-lam", "nan"], "argument --outer-lam: nan is not allowed"),
    ("experiments.outer_value_chain", ["--meta-lambda", "--lam-init", "1"], "strictly between 0 and 1"),
    ("experiments.outer_value_chain", ["--out", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
    ("experiments.outer_value_chain", ["--updates", "150"], "argument --updates: 150 is not a multiple of the chunk"),
    ("experiments.outer_value_chain", ["--tensorboard", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
    ("experiments.outer_value_snake", ["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    ("experiments.outer_value_snake", ["--on-nonfinite", "skip"], "argument --on-nonfinite: invalid choice 'skip'; valid: stop, continue"),
    ("experiments.outer_value_snake", ["--num-envs", "0"], "argument --num-envs: 0 is not allowed; give a whole number >= 1"),
    ("experiments.outer_value_snake", ["--actor-hidden", "64", "x"], "argument --actor-hidden: Could not find valid parse for arguments: ['64', 'x']"),
    ("experiments.outer_value_snake", ["--updates-per-log", "30"], "argument --updates: 200 is not a multiple of the chunk of 150"),
    ("experiments.outer_value_chain", ["--gamma-init", "0.99", "--gamma-high", "0.98"], "--gamma-init: 0.99 is not strictly between"),
    ("experiments.outer_value_chain", ["--meta-lr"], "Missing value for argument '--meta-lr'"),
    ("experiments.outer_value_chain", ["--bogus", "3"], "Unrecognized options: --bogus"),
    ("experiments.outer_value_snake", ["--out", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
    ("experiments.model_based_critic_reacher", ["--out", "/proc/nope"], "run directory '/proc/nope': "),
    ("experiments.metagenrl", ["meta-train", "--train", "Pendulum", "Ant"], "--train: unknown environment label(s) Ant"),
    ("experiments.metagenrl", ["--no-t"], "Missing from python -m experiments.metagenrl: {meta-train,meta-test}"),
    ("experiments.metagenrl", ["meta-train", "--total-steps", "1500"], "invalid meta-training settings at scale quick"),
    ("experiments.metagenrl", ["meta-train", "--inner-steps", "99"], "batch_windows"),
    ("experiments.metagenrl", ["meta-train", "--resume"], "nothing to resume in"),
    ("experiments.metagenrl", ["meta-test", "--test", "Hopper"], "--test: unknown environment label(s) Hopper"),
    ("experiments.metagenrl", ["meta-test", "--objective", "L=/nonexistent"], "--objective: '/nonexistent' is not"),
    ("experiments.metagenrl", ["meta-test", "--no-baselines"], "meta-test: nothing to test"),
    ("experiments.metagenrl", ["meta-train", "--out", "/proc/nope"], "run directory '/proc/nope': "),
    ("benchmarks.meta_critic", ["--tables", "1", "4"], "argument --tables: invalid choice '4'; valid: 1, 2, 3, fig6, ppo"),
    ("benchmarks.meta_critic", ["--scale", "medium", "--only", "brax/ant"], "unknown job(s) ['brax/ant']"),
    ("benchmarks.meta_critic", ["--out", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
    ("benchmarks.outer_value", ["--results", "/proc/nope"], "output folder '/proc/nope' cannot be used"),
    ("benchmarks.model_based_critic", ["--parts", "toy", "arm9"], "argument --parts: invalid choice 'arm9'; valid: toy, pointmass, reacher, arm7"),
    ("benchmarks.gpu", ["--budget-s", "-5", "--out", "{out}"], "argument --budget-s: -5 is not allowed"),
    ("benchmarks.gpu", ["--workers", "0", "--out", "{out}"], "argument --workers: 0 is not allowed"),
    ("benchmarks.gpu", ["--costs", "/nonexistent.json", "--out", "{out}"], "argument --costs: '/nonexistent.json' is not"),
]


@pytest.mark.parametrize("module,args,message", BAD_INPUTS, ids=[f"{m}:{' '.join(a)}" for m, a, _ in BAD_INPUTS])
def test_bad_cli_input_is_one_line_before_anything_is_written(module, args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    out = tmp_path / "out"
    argv = [a.replace("{out}", str(out)) for a in args]
    if module.startswith("experiments.") and "--out" not in argv:
        argv += ["--out", str(out)]
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    line = one_line_err(capsys)
    assert e.value.code == 2 and message in line, line
    assert os.listdir(tmp_path) == []


# The run-directory policy of the experiment CLIs outside the shared Driver: a new run refuses a folder
# holding an earlier run's files unless --resume or --overwrite; --resume needs something to resume;
# each refusal is one line (exit 2) before anything is compiled, and leaves the folder as it was.
EARLIER_RUN = [("experiments.epg", "epg.json", True), ("experiments.rl2", "rl2.json", True),
               ("experiments.lirpg", "config.json", True),
               ("experiments.model_based_critic_reacher", "checkpoints/reacher_ours/COMPLETE.json", True),
               ("experiments.model_based_critic_arm7", "arm7_summary.json", True),
               ("experiments.model_based_critic_toy", "toy_summary.json", True),
               ("experiments.model_based_critic_pointmass", "checkpoints/pointmass_raw/COMPLETE.json", True),
               ("experiments.metagenrl", "checkpoint/COMPLETE.json", True), ("experiments.meta_critic", "main/config.json", True)]


@pytest.mark.parametrize("module,planted,resumable", EARLIER_RUN, ids=[m for m, _, _ in EARLIER_RUN])
def test_earlier_run_is_refused_without_resume_or_overwrite(module, planted, resumable, capsys, tmp_path):
    mod = importlib.import_module(module)
    pre = ["meta-train"] if module == "experiments.metagenrl" else []
    out = tmp_path / "out"
    (out / os.path.dirname(planted)).mkdir(parents=True, exist_ok=True)
    (out / planted).write_text("earlier")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    cases = [([], "holds an earlier run")]
    if module != "experiments.meta_critic":  # (no --scale there) a bad input is refused first, nothing touched
        cases += [(["--scale", "huge"], "unknown scale 'huge'")]
    if resumable:
        cases += [(["--resume", "--overwrite"], "--resume and --overwrite exclude each other")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as e:
            mod.main(pre + ["--out", str(out)] + extra)
        line = one_line_err(capsys)
        assert e.value.code == 2 and message in line, line
        if message == "holds an earlier run":
            assert planted.split("/")[0] in line and "--resume" in line and "--overwrite" in line, line
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (out / planted).read_text() == "earlier"
    if resumable:  # --resume where no run was started: nothing to resume, nothing written
        empty = tmp_path / "empty"
        with pytest.raises(SystemExit) as e:
            mod.main(pre + ["--out", str(empty), "--resume"])
        line = one_line_err(capsys)
        assert e.value.code == 2 and "nothing to resume" in line and "without --resume" in line, line
        assert not empty.exists()


def test_overwrite_removes_only_the_runs_files(tmp_path):
    """--overwrite (metarl.driver.prepare_out_dir) removes the earlier run's files, nothing else."""
    from metarl.driver import CheckpointMissing, RunDirError, prepare_out_dir

    d = tmp_path / "out"
    (d / "checkpoints").mkdir(parents=True)
    for name in ("rl2.json", "checkpoint", "checkpoints/reacher_ours", "notes.txt", "checkpoints/keep.npz"):
        (d / name).write_text("x")
    files = ("rl2.json", "checkpoint", "checkpoints/reacher_ours")
    with pytest.raises(RunDirError, match="holds an earlier run: rl2.json, checkpoint, checkpoints/reacher_ours"):
        prepare_out_dir(str(d), False, False, files)
    prepare_out_dir(str(d), True, False, files, resume_from=("checkpoint",))  # resume: nothing touched
    assert (d / "rl2.json").exists()
    prepare_out_dir(str(d), False, True, files)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == ["checkpoints", "checkpoints/keep.npz", "notes.txt"]
    with pytest.raises(CheckpointMissing, match="nothing to resume"):
        prepare_out_dir(str(d), True, False, files, resume_from=("checkpoint",))


def test_model_based_critic_benchmark_refuses_an_unfinished_meta_training(tmp_path, capsys):
    """`make bench-model-based-critic` regenerates a finished run, but not over a meta-training left unfinished
    (continue it with --resume); --resume with no checkpoint is one line too."""
    from benchmarks import model_based_critic as bench
    from metarl.driver.segments import save_checkpoint

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(out), "--parts", "reacher", "--resume"])
    assert e.value.code == 2 and "nothing to resume" in one_line_err(capsys) and not out.exists()
    (out / "checkpoints").mkdir(parents=True)
    save_checkpoint(str(out / "checkpoints" / "reacher_ddpg"), {"w": np.zeros(2)}, 1, [], {}, {}, total=3)
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(out), "--parts", "toy", "reacher"])
    line = one_line_err(capsys)
    assert e.value.code == 2 and "unfinished meta-training (checkpoints/reacher_ddpg: 1 of 3 chunks)" in line, line
    assert sorted(os.listdir(out)) == ["checkpoints"]


def test_outer_value_updates_zero_is_refused(capsys):
    from experiments import outer_value_chain

    with pytest.raises(SystemExit) as e:
        outer_value_chain.main(["--updates", "0"])
    assert e.value.code == 2 and "argument --updates: 0 is not allowed" in one_line_err(capsys)


# ---------------------------------------------------------------------------------------------------
# 6. SIGINT: the checkpoint is finished (or abandoned whole), status interrupted, a resume command
# ---------------------------------------------------------------------------------------------------
SIGINT_SCRIPT = r"""
import os, signal, sys
import orbax.checkpoint as ocp
from metarl import train as T

orig, calls = ocp.StandardCheckpointer.save, [0]

def save(self, *a, **k):  # SIGINT while the async write of the 2nd checkpoint is in flight
    r = orig(self, *a, **k)
    calls[0] += 1
    if calls[0] == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return r

ocp.StandardCheckpointer.save = save
T.main(sys.argv[1:])
"""


def _check_interrupted(d, line, chunk, base, capsys):
    assert line.startswith(f"python -m metarl.train: error: interrupted after chunk {chunk}; resume with: "
                           "python -m metarl.train --algo td3"), line
    assert line.endswith(" --resume")
    assert strict_json(d / "meta.json")["status"] == "interrupted"
    assert json.loads((d / "checkpoint" / T.MARKER).read_text())["chunk"] == chunk
    assert sorted(os.listdir(d)) == ["checkpoint", "config.json", "meta.json", "metrics.csv", "metrics.json"]
    T.main(shlex.split(line.split("resume with: python -m metarl.train ")[1]))  # the printed command
    capsys.readouterr()
    m = strict_json(d / "metrics.json")["blocks"][0]["metrics"]
    np.testing.assert_array_equal(m["eval_return"], base["metrics"]["eval_return"])
    assert strict_json(d / "meta.json")["status"] == "finished"


def test_sigint_in_a_subprocess_finishes_the_checkpoint(base, tmp_path, capsys):
    d = tmp_path / "sigint"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, ".jax_cache"))
    out = subprocess.run([sys.executable, "-c", SIGINT_SCRIPT, *CLI, "--run-dir", str(d)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert out.returncode == 130 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    _check_interrupted(d, lines[0], 2, base, capsys)


def test_second_sigint_abandons_the_checkpoint_in_flight(base, tmp_path, capsys, monkeypatch):
    import signal

    import orbax.checkpoint as ocp

    orig, calls = ocp.StandardCheckpointer.save, [0]

    def save(self, *a, **k):  # two SIGINTs during the 2nd checkpoint's async write: it is dropped whole
        r = orig(self, *a, **k)
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return r

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", save)
    d = tmp_path / "sigint2"
    code, line = cli_exit(CLI + ["--run-dir", str(d)], capsys)
    monkeypatch.undo()
    assert code == 130 and not os.path.exists(d / "checkpoint.partial")
    _check_interrupted(d, line, 1, base, capsys)


# ---------------------------------------------------------------------------------------------------
# 7. --seed-index i = run i of the vmapped set
# ---------------------------------------------------------------------------------------------------
def test_seed_index_matches_the_vmapped_run(base):
    runner = T.Runner(dataclasses.replace(BASE, seed_index=1), None, progress=False)
    assert runner.num_runs == 1 and runner.run_labels() == [(0, 1)]
    _, m = runner.run()
    ref = base["metrics"]
    diffs = {k: float(np.max(np.abs(m[k][0] - ref[k][1]))) for k in ref}
    print("seed-index 1 vs vmapped run 1, max abs difference per metric:", diffs)
    # The tolerances documented in metarl.train.run_keys_and_hp: the same keys and data, float drift only.
    for k in ("env_steps", "nonfinite_step"):
        np.testing.assert_array_equal(m[k][0], ref[k][1], err_msg=k)
    for k in ref:
        np.testing.assert_allclose(m[k][0, 0], ref[k][1, 0], rtol=1e-5, atol=1e-5, err_msg=k)  # first evaluation
    for k in ("critic_loss", "actor_loss", "q_mean"):
        np.testing.assert_allclose(m[k][0], ref[k][1], rtol=1e-3, atol=1e-4, err_msg=k)
    for k in ("eval_return", "train_return"):
        np.testing.assert_allclose(m[k][0], ref[k][1], rtol=1e-2, err_msg=k)
