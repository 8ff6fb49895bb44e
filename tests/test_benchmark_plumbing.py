"""Benchmark plumbing: the scale check and the result writer (metarl.driver.records), the throughput config's
validation, the peers' plumbing, the --help timings, the table's verdicts. No timing here: speed lives in
``make bench-throughput``."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from benchmarks import throughput
from benchmarks.throughput.cli_times import help_times
from metarl.cli import cli_modules
from metarl.driver.records import check_scale, write_result
from benchmarks.peers import drivers as peers


def test_parse_scale_accepts_the_named_scales():
    assert check_scale("quick") == "quick"
    assert check_scale("paper") == "paper"
    assert check_scale("tiny", ("tiny", "huge")) == "tiny"


@pytest.mark.parametrize("bad", ["Quick", "", "fast", "paper "])
def test_parse_scale_names_the_bad_value_and_the_choices(bad):
    with pytest.raises(ValueError) as e:
        check_scale(bad)
    msg = str(e.value)
    assert repr(bad) in msg and "quick" in msg and "paper" in msg


def test_throughput_cli_rejects_a_bad_scale(capsys):
    with pytest.raises(SystemExit) as e:
        throughput.main(["--scale", "huge"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'huge'" in err and "quick, medium, paper" in err


def test_named_scales_are_valid_and_match_the_paper_settings():
    for scale, counts in (("quick", (1, 8)), ("medium", (1, 8)), ("paper", (1, 2, 4, 8))):
        cfg = throughput.config_for(scale)
        assert cfg.td3_seed_counts == counts
        assert cfg.torch_seeds == 8
        assert cfg.sac_learning_starts >= 256
    assert throughput.config_for("paper").sac_steps_per_chunk > throughput.config_for("quick").sac_steps_per_chunk
    quick, medium = throughput.config_for("quick"), throughput.config_for("medium")
    assert medium.pend_train_steps > quick.pend_train_steps
    assert all(medium.repeats_for(n) >= quick.repeats_for(n) for n in medium.pend_seed_counts)
    assert (medium.repeats_for(1), medium.repeats_for(8), quick.repeats_for(32)) == (9, 5, 3)
    assert medium.curve_seeds >= 5 and medium.brax_epochs - 1 == medium.repeats_for(1)  # 9 SAC-vs-Brax pairs
    with pytest.raises(ValueError, match="'huge'"):
        throughput.config_for("huge")


@pytest.mark.parametrize("field, value, words", [
    ("td3_seed_counts", (2, 4), "start at 1"),
    ("td3_seed_counts", (1, 4, 2), "increasing"),
    ("td3_seed_counts", (1, 1, 2), "distinct"),
    ("td3_seed_counts", (), "td3_seed_counts"),
    ("brax_epochs", 1, "brax_epochs"),
    ("sac_learning_starts", 100, "256"),
    ("td3_buffer_size", 50, "100"),
    ("td3_updates_per_call", 51, "policy delay 2"),
    ("rounds", 0, "rounds"),
    ("torch_threads", -1, "torch_threads"),
    ("backend", "warp", "positional"),
])
def test_throughput_config_rejects_bad_values(field, value, words):
    cfg = dataclasses.replace(throughput.ThroughputConfig(), **{field: value})
    with pytest.raises(ValueError, match=words):
        cfg.validate()


def test_td3_update_program_runs_the_counted_update():
    """The timed TD3 update program (b, c, e) does the work its FLOP count assumes (a critic step per update,
    an actor step per 2nd): XLA's count of its loop body (one policy-delay period; a loop's body is counted
    once) per update against the counted update. Under vmap, ``agent.update``'s lax.cond is a select that
    runs both branches, two critic steps and an actor step per update: ~1.8x the count, which fails here."""
    from benchmarks.throughput.ours import OurTD3Updates, td3_flops_per_update
    from metarl.compile_clock import xla_flops

    cfg = dataclasses.replace(throughput.ThroughputConfig(), td3_updates_per_call=2, td3_buffer_size=100)
    u = OurTD3Updates(cfg, 1)
    assert xla_flops(u.fn) / u.period == pytest.approx(td3_flops_per_update(cfg), rel=0.02)


def test_no_timed_chunk_is_an_error():
    cfg = dataclasses.replace(throughput.ThroughputConfig(), sac_chunks_before=0, sac_chunks_after=0)
    with pytest.raises(ValueError, match="no timed chunk"):
        cfg.validate()


def test_write_result_is_complete_and_leaves_no_temp_file(tmp_path):
    path = os.path.join(tmp_path, "sub", "r.json")
    write_result(path, {"figure": 1.5}, config=throughput.ThroughputConfig(), wall_time_s=2.0, note="x")
    with open(path) as f:
        obj = json.load(f)
    assert obj["figure"] == 1.5 and obj["note"] == "x" and obj["wall_time_s"] == 2.0
    assert obj["config"]["td3_seed_counts"] == [1, 8]
    assert obj["versions"]["jax"] and obj["device"]["backend"]
    assert os.listdir(os.path.dirname(path)) == ["r.json"]


def _summary(ours_sac, brax_sac, agg, torch_agg):
    return {"config": dataclasses.asdict(throughput.ThroughputConfig()),
            "sac": {"ours": {"env_steps_per_s": ours_sac, "compile_time_s": 10.0},
                    "brax": {"steady_env_steps_per_s": brax_sac, "compile_time_s": 12.0}},
            "td3": {"ours_aggregate_updates_per_s": agg, "ours_compile_s": {k: 1.0 for k in agg},
                    "torch": {"aggregate_updates_per_s": torch_agg, "threads": 1}},
            "skipped": {}}


def test_table_reports_ratios_and_misses_honestly():
    agg = {"1": 100.0, "2": 150.0, "4": 180.0, "8": 190.0}
    table = throughput.make_table(_summary(ours_sac=120.0, brax_sac=100.0, agg=agg, torch_agg=50.0))
    rows = {line.split("|")[1].strip()[:12]: line for line in table.splitlines() if line.startswith("| ")}
    sac_row = next(r for k, r in rows.items() if k.startswith("SAC env"))
    assert "1.2x" in sac_row and "| met |" in sac_row
    vmap_row = next(line for line in table.splitlines() if "vmapped seeds vs 1 seed" in line)
    assert "1.9x" in vmap_row and "MISSED" in vmap_row  # 190 / 100 < 2
    torch_row = next(line for line in table.splitlines() if "PyTorch eager" in line)
    assert "3.8x" in torch_row and "| met |" in torch_row  # 190 / 50 >= 3
    assert "| 4 | 180 | 45.0 | 1.8x |" in table


def _pairs(ratios, brax=200.0):
    return [{"brax_epoch": i + 2, "brax_env_steps_per_s": brax, "ours_env_steps_per_s": brax * r, "ratio": r}
            for i, r in enumerate(ratios)]


def test_sac_against_brax_reads_the_paired_epochs():
    from benchmarks.throughput.tables import sac_target

    s = _summary(ours_sac=150.0, brax_sac=300.0, agg={"1": 100.0, "8": 190.0}, torch_agg=50.0)
    # without pairs (runs before the pairing): all our chunks against Brax's steady rate
    assert sac_target(s["sac"]) == {"target": 1.0, "ratio": 0.5, "ratio_samples": None, "met": False}
    s["sac"]["pairs"] = _pairs([0.9, 1.06, 1.1, 1.2])
    t = sac_target(s["sac"])
    assert t["ratio"] == pytest.approx(1.08) and t["ratio_samples"] == [0.9, 1.06, 1.1, 1.2]
    assert t["met"] is None and "not resolved" in t["verdict"]
    row = next(line for line in throughput.make_table(s).splitlines() if line.startswith("| SAC env"))
    # the medians of the paired chunks and epochs, not the figures over all chunks (150 / 300)
    assert "| 216 | Brax trainer 200 | 1.08x (0.90-1.20, 4 paired epochs) |" in row and "not resolved" in row
    s["sac"]["pairs"] = _pairs([1.01, 1.02])
    assert sac_target(s["sac"])["met"] is True
    s["sac"]["pairs"] = _pairs([0.97, 0.99])
    assert sac_target(s["sac"])["met"] is False
    assert "MISSED" in next(ln for ln in throughput.make_table(s).splitlines() if ln.startswith("| SAC env"))


def test_each_brax_epoch_after_the_first_is_paired_with_the_chunk_after_it():
    from benchmarks.throughput.ours import OurSAC, PairedChunks

    class Ours:  # OurSAC's timing, with chunk times given in turn (and evaluations timed apart, as at paper scale)
        steps_per_chunk, last_chunk_rate = 500, OurSAC.last_chunk_rate

        def __init__(self, times):
            self.times, self.chunk_s, self.eval_s = list(times), [], []

        def time_chunks(self, n):
            for _ in range(n):
                self.chunk_s.append(self.times.pop(0))
                self.eval_s.append(0.5)

    ours = Ours([3.0, 3.5, 2.5, 2.0])
    paired = PairedChunks(ours)
    for rec in ({"env_steps": 0}, {"training/sps": 40.0}, {"training/sps": 250.0}, {"training/sps": 200.0}):
        paired(rec)
    assert ours.chunk_s == [3.0, 3.5, 2.5, 2.0]  # one chunk at every report, the first evaluation's included
    # epoch 1 (compilation) unpaired; epoch 2 with the chunk after it (2.5 s, 0.5 s of it the evaluation)
    assert paired.pairs == [
        {"brax_epoch": 2, "brax_env_steps_per_s": 250.0, "ours_env_steps_per_s": 250.0, "ratio": 1.0},
        {"brax_epoch": 3, "brax_env_steps_per_s": 200.0, "ours_env_steps_per_s": pytest.approx(333.33, rel=1e-4),
         "ratio": pytest.approx(1.6667, rel=1e-4)}]


# A stand-in for benchmarks/peers/brax_sac.py --pause: three progress reports, each waiting for a line on stdin;
# it writes the time it waited into its final record, and its stderr (noise) goes to a file.
_PAUSED_PEER = r"""
import json, sys, time
waits = []
for step in (0, 500, 1000):
    print("noise on stderr " * 50, file=sys.stderr, flush=True)
    rec = {"env_steps": step} if step == 0 else {"env_steps": step, "training/sps": 100.0 + step}
    print(json.dumps({"progress": rec}), flush=True)
    t = time.perf_counter()
    if not sys.stdin.readline():
        sys.exit(3)
    waits.append(time.perf_counter() - t)
if "fail" in sys.argv:
    print("the peer's last words", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"peer": "stand-in", "waits": waits}))
"""


def test_a_paused_peer_alternates_with_our_side(tmp_path):
    import time

    script = tmp_path / "peer.py"
    script.write_text(_PAUSED_PEER)
    seen = []

    def between(rec):  # our side: runs while the peer waits
        seen.append(rec)
        time.sleep(0.2)

    rc, out, err, progress = peers._run_paused([sys.executable, str(script)], str(tmp_path), 60, between)
    assert rc == 0 and progress == seen and [r["env_steps"] for r in seen] == [0, 500, 1000]
    final = json.loads(out.strip().splitlines()[-1])
    assert final["peer"] == "stand-in" and min(final["waits"]) >= 0.2  # the peer waited for each of our turns
    assert "noise on stderr" in err and '"progress"' not in out
    rc, out, err, _ = peers._run_paused([sys.executable, str(script), "fail"], str(tmp_path), 60, lambda r: None)
    assert rc == 2 and "the peer's last words" in err
    # a peer that outlives the timeout is killed, not waited on forever
    t = time.perf_counter()
    rc, *_ = peers._run_paused([sys.executable, str(script)], str(tmp_path), 1, lambda r: time.sleep(3))
    assert rc != 0 and time.perf_counter() - t < 30


def test_venv_stamp_detects_missing_and_stale_envs(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("pkg==1.0\n")
    venv = tmp_path / "venv"
    assert not peers.venv_ready(str(venv), str(req))
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".metarl-peer-stamp").write_text(peers._stamp_of(str(req)) + "\n")
    assert peers.venv_ready(str(venv), str(req))
    req.write_text("pkg==2.0\n")  # the pins changed: the venv must be rebuilt
    assert not peers.venv_ready(str(venv), str(req))


def _pend_row(rate):
    return {"env_steps_per_s": rate, "compile_s": 2.0}


def test_rejax_ratios_and_roofline_fraction_on_fixed_numbers():
    rejax = {"td3": {"ours": {"1": _pend_row(50.0), "8": _pend_row(120.0)}, "rejax": {"8": _pend_row(100.0)}},
             "sac": {"ours": {"8": _pend_row(90.0)}, "rejax": {"8": _pend_row(100.0)}},
             "ppo": {"ours": {"8": _pend_row(3000.0)}, "rejax": {}}}  # PPO peer row missing
    gemm = {"n": 64, "jax_gflops": 80.0, "numpy_gflops": 100.0, "attainable_gflops": 100.0}
    r = throughput.summary_ratios(rejax, td3_gflops=70.0, sac_gflops=None, gemm=gemm)
    assert set(r) >= {"td3_vs_rejax", "sac_vs_rejax", "ppo_vs_rejax", "td3_gemm_fraction"}
    assert r["td3_vs_rejax"] == 1.2 and r["sac_vs_rejax"] == 0.9
    assert r["ppo_vs_rejax"] is None and r["sac_gemm_fraction"] is None
    assert r["td3_gemm_fraction"] == 0.7
    assert throughput.summary_ratios({}, None, None, None)["td3_gemm_fraction"] is None


def test_rejax_table_verdicts_and_missing_peer():
    cfg = dataclasses.asdict(throughput.ThroughputConfig())
    rejax = {a: {"ours": {str(c): _pend_row(100.0) for c in cfg["pend_seed_counts"]},
                 "rejax": {str(c): _pend_row(80.0 if a == "td3" else 125.0) for c in cfg["pend_seed_counts"]}}
             for a in ("td3", "sac")}
    rejax["ppo"] = {"ours": {str(c): _pend_row(100.0) for c in cfg["pend_seed_counts"]}, "rejax": {}}
    roof = {"gemm": {"n": 64, "jax_gflops": 80.0, "numpy_gflops": 100.0, "attainable_gflops": 100.0},
            "updates": [{"algo": "td3", "seeds": 8, "updates_per_s": 200.0, "flops_per_update": 3.5e8, "gflops": 70.0,
                         "gemm_fraction": 0.7}]}
    table = throughput.rejax_table({"config": cfg, "rejax": rejax, "roofline": roof})
    td3 = [ln for ln in table.splitlines() if ln.startswith("| TD3 | 8 |")][0]
    assert "1.2x" in td3 and td3.endswith("| met |")
    sac = [ln for ln in table.splitlines() if ln.startswith("| SAC | 8 |")][0]
    assert "0.8x" in sac and "MISSED" in sac
    ppo = [ln for ln in table.splitlines() if ln.startswith("| PPO | 8 |")][0]
    assert "not measured" in ppo
    assert "| TD3 | 8 | 200 | 350 | 70.0 | 70% | met |" in table


def test_pendulum_requests_carry_our_settings_to_both_sides():
    cfg = throughput.ThroughputConfig()
    td3 = throughput.pendulum_request(cfg, "td3", 8)
    assert (td3["hidden"], td3["batch_size"], td3["policy_delay"], td3["seeds"]) == ([400, 300], 100, 2, 8)
    assert td3["total_steps"] == cfg.pend_learning_starts + cfg.pend_train_steps
    sac = throughput.pendulum_request(cfg, "sac", 1, curve=True)
    assert (sac["hidden"], sac["batch_size"], sac["lr"]) == ([256, 256], 256, 3e-4)
    assert sac["total_steps"] == cfg.curve_learning_starts + cfg.curve_train_steps
    ppo = throughput.pendulum_request(cfg, "ppo", 32)
    assert ppo["total_steps"] == cfg.ppo_rollouts * ppo["rollout"] and ppo["rollout"] % ppo["minibatch_size"] == 0
    with pytest.raises(ValueError, match="unknown algo"):
        throughput.pendulum_request(cfg, "dqn", 1)


def test_rejax_peer_unavailable_is_one_line(tmp_path, monkeypatch):
    log = tmp_path / "rejax-peer-venv.log"
    log.write_text("WARNING: ignored index\nERROR: Could not find a version that satisfies rejax==0.1.3\n\n")
    assert peers._last_log_line(str(log)).startswith("ERROR: Could not find")
    line = peers.peer_unavailable_line("rejax", "could not build\nthe venv:\n" + "x" * 500)
    assert "\n" not in line and line.startswith("rejax peer not measured") and len(line) <= 300
    # no venv and no network: start_venv's install fails and finish_venv says why, without raising
    monkeypatch.setattr(peers, "venv_ready", lambda path, req: False)
    assert peers.finish_venv(None, str(tmp_path / "none"), str(log), str(log)).startswith("could not create")


def test_build_venvs_says_which_it_built_and_why_one_failed(tmp_path, monkeypatch):
    """make bench's peer-venvs step and the throughput part share build_venvs: a venv already matching its
    requirements is kept (not created), one missing is started and, if it cannot be made, reported."""
    started = []

    class Done:
        def wait(self):
            return 0

    def start(path, req, log):
        started.append((path, req, log))
        return Done()

    monkeypatch.setattr(peers, "start_venv", lambda path, req, log: None if path.endswith("ready") else start(path, req, log))
    monkeypatch.setattr(peers, "venv_ready", lambda path, req: path.endswith("ready"))
    monkeypatch.setattr(peers, "PEER_VENVS", {"a": (str(tmp_path / "ready"), "brax_requirements.txt"),
                                              "b": (str(tmp_path / "broken"), "torch_requirements.txt")})
    out = peers.build_venvs(["a", "b"], str(tmp_path / "logs"))
    assert out["a"] == (False, None)
    assert out["b"][0] is True and out["b"][1].startswith("could not create")
    assert started == [(str(tmp_path / "broken"), os.path.join(peers.PEERS, "torch_requirements.txt"),
                        peers.venv_log(str(tmp_path / "logs"), "b"))]


def test_peer_venvs_command_rejects_an_unknown_peer():
    p = subprocess.run([sys.executable, "-m", "benchmarks.peers.drivers", "brax", "tensorflow"], capture_output=True,
                       text=True, cwd=peers.ROOT)
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "benchmarks.peers.drivers: unknown peer(s) tensorflow; valid: brax, torch, rejax"]


def test_throughput_config_rejects_bad_pendulum_settings():
    with pytest.raises(ValueError, match="pend_seed_counts"):
        dataclasses.replace(throughput.ThroughputConfig(), pend_seed_counts=(8, 1)).validate()
    with pytest.raises(ValueError, match="multiple of an even eval_every"):
        dataclasses.replace(throughput.ThroughputConfig(), pend_train_steps=500).validate()
    for bad in ((3, 5), (3, 0, 5)):  # one per seed count (1, 8, 32), each >= 1
        with pytest.raises(ValueError, match=r"pend_repeats must be one positive integer or one per"):
            dataclasses.replace(throughput.ThroughputConfig(), pend_repeats=bad).validate()
    with pytest.raises(ValueError, match="pend_repeats must be >= 1"):
        dataclasses.replace(throughput.ThroughputConfig(), pend_repeats=0).validate()


def test_pendulum_pair_keeps_our_side_when_the_peer_fails(monkeypatch):
    from benchmarks.throughput import pendulum  # where pendulum_pair looks its two sides up

    monkeypatch.setattr(pendulum, "compile_our_pendulum", lambda req: ("fn", "keys", 1.0))
    monkeypatch.setattr(pendulum, "our_pendulum_run", lambda req, compiled: {"env_steps_per_s": 10.0})

    class Broken:
        def send(self, req):
            pass

        def receive(self):
            raise RuntimeError("rejax peer: TypeError: boom\nsecond line")

        def run(self, req):
            raise AssertionError("not reached after a failure")

    errors = []
    ours, theirs = throughput.pendulum_pair({"algo": "td3"}, Broken(), overlap_compile=True, errors=errors)
    assert ours == {"env_steps_per_s": 10.0} and theirs is None
    assert errors == ["rejax peer: TypeError: boom second line"]
    assert throughput.pendulum_pair({"algo": "td3"}, None) == ({"env_steps_per_s": 10.0}, None)


def test_help_times_runs_each_cli_in_a_fresh_interpreter():
    """The throughput part's --help timing: every CLI module is found, and a run reports its exit status."""
    mods = cli_modules()
    assert "metarl.train" in mods and "experiments.outer_value_chain" in mods and "benchmarks.throughput.cli_times" not in mods
    t = help_times(["metarl.report", "benchmarks.no_such_module"])
    assert t["metarl.report"]["ok"] and t["metarl.report"]["wall_s"] > 0
    assert not t["benchmarks.no_such_module"]["ok"]
    table = throughput.help_table(t)
    assert "| metarl.report |" in table and "FAILED (non-zero exit)" in table


def test_pendulum_pair_repeats_in_turn_and_reports_medians_and_paired_ratios(monkeypatch):
    """With a peer, each side is timed ``repeats`` times in turn; the row holds the median and every call, our
    side the paired ratios; the table shows their range and resolves a verdict only when all agree."""
    from benchmarks.throughput import pendulum, tables

    ours_rates, their_rates, order = iter([10.0, 30.0, 20.0]), iter([20.0, 20.0, 20.0]), []
    monkeypatch.setattr(pendulum, "compile_our_pendulum", lambda req: ("fn", "keys", 1.0))

    def ours_run(req, compiled):
        order.append("ours")
        return {"env_steps_per_s": next(ours_rates), "run_s": 1.0, "compile_s": 1.0}

    class Peer:
        def run(self, req):
            order.append("rejax")
            return {"env_steps_per_s": next(their_rates), "run_s": 1.0, "compile_s": 2.0}

    monkeypatch.setattr(pendulum, "our_pendulum_run", ours_run)
    ours, theirs = throughput.pendulum_pair({"algo": "sac"}, Peer(), repeats=3)
    assert order == ["ours", "rejax"] * 3
    assert ours["env_steps_per_s"] == 20.0 and ours["env_steps_per_s_samples"] == [10.0, 30.0, 20.0]
    assert ours["ratio_samples"] == [0.5, 1.5, 1.0] and theirs["env_steps_per_s"] == 20.0
    s = {"config": {"pend_seed_counts": [1]}, "rejax": {"sac": {"ours": {"1": ours}, "rejax": {"1": theirs}}}}
    row = next(line for line in tables.rejax_table(s).splitlines() if line.startswith("| SAC | 1 |"))
    assert "1.00x (0.50-1.50)" in row and "not resolved" in row, row
    # The figure is the median of the pairs, not the ratio of the sides' medians: when the machine's speed moves
    # between calls, both sides move with it and only the pairs cancel it (here 1.11 against 20 / 27 = 0.74).
    ours.update(env_steps_per_s=20.0, ratio_samples=[10 / 9, 20 / 30, 30 / 27])
    theirs.update(env_steps_per_s=27.0)
    row = next(line for line in tables.rejax_table(s).splitlines() if line.startswith("| SAC | 1 |"))
    assert "1.11x (0.67-1.11)" in row, row
    assert (tables.paired_met([1.0, 1.2], 1.0), tables.paired_met([0.9, 0.99], 1.0),
            tables.paired_met([0.9, 1.1], 1.0)) == (True, False, None)
    rejax = {"sac": {"ours": {"8": dict(ours)}}, "td3": {"ours": {"8": {"ratio_samples": [1.1, 1.2]}}},
             "ppo": {"ours": {"8": _pend_row(1.0)}}}  # PPO without pairs: the medians' ratio decides
    rejax["sac"]["rejax"] = {"8": dict(theirs)}
    rejax["td3"]["rejax"] = {"8": _pend_row(100.0)}
    rejax["td3"]["ours"]["8"].update(_pend_row(115.0))
    rejax["ppo"]["rejax"] = {"8": _pend_row(1 / 0.9)}
    t = tables.rejax_targets(rejax)
    sac, td3, ppo = (t[f"{a}_ours_over_rejax_8_seeds"] for a in ("sac", "td3", "ppo"))
    assert sac["ratio"] == pytest.approx(10 / 9) and sac["medians_ratio"] == 20 / 27 and sac["met"] is None
    assert sac["verdict"].startswith("not resolved") and td3["met"] is True and td3["verdict"] == "target met"
    assert ppo["met"] is False and ppo["ratio"] == pytest.approx(0.9) and "verdict" not in ppo
    # The summary's "ratios" (read by checks) are the same figures as the targets' and the table's: the pairs'
    # median where the calls were paired (not the medians' ratio 20 / 27), else the medians' ratio
    r = throughput.summary_ratios(rejax, None, None, None)
    assert r["sac_vs_rejax"] == pytest.approx(10 / 9) and r["td3_vs_rejax"] == pytest.approx(1.15)
    assert r["ppo_vs_rejax"] == pytest.approx(0.9)
    ours["ratio_samples"] = [1.1, 1.2, 1.05]
    assert "| met |" in next(line for line in tables.rejax_table(s).splitlines() if line.startswith("| SAC | 1 |"))
    ours["ratio_samples"] = [0.9, 0.95, 0.8]
    assert "MISSED" in next(line for line in tables.rejax_table(s).splitlines() if line.startswith("| SAC | 1 |"))


def test_best_gemm_takes_the_best_reading_and_keeps_each():
    """The roofline's attainable rate is the best of its GEMM readings (a low one would flatter every fraction)."""
    from benchmarks.throughput.tables import best_gemm

    r = lambda j, n: {"n": 64, "reps": 2, "flop_per_product": 2.0 * 64 ** 3, "jax_gflops": j, "numpy_gflops": n,
                      "attainable_gflops": max(j, n)}
    g = best_gemm([r(204.0, 212.0), r(389.0, 218.0)])
    assert (g["jax_gflops"], g["numpy_gflops"], g["attainable_gflops"]) == (389.0, 218.0, 389.0)
    assert g["readings"] == [{"jax_gflops": 204.0, "numpy_gflops": 212.0}, {"jax_gflops": 389.0, "numpy_gflops": 218.0}]
    s = {"config": {"pend_seed_counts": [1]}, "rejax": {}, "roofline": {"gemm": g, "updates": []}}
    assert "readings jax 204 / numpy 212, jax 389 / numpy 218; attainable = 389 GFLOP/s" in throughput.rejax_table(s)


def test_pendulum_pair_keeps_our_calls_when_the_peer_fails_in_a_repeat(monkeypatch):
    """A peer that fails on its second call: our side keeps its calls (their median), theirs is None, the error
    is one line, and no further call is made."""
    from benchmarks.throughput import pendulum

    rates, calls = iter([10.0, 30.0, 20.0]), []
    monkeypatch.setattr(pendulum, "compile_our_pendulum", lambda req: ("fn", "keys", 1.0))
    monkeypatch.setattr(pendulum, "our_pendulum_run",
                        lambda req, compiled: calls.append("ours") or {"env_steps_per_s": next(rates), "run_s": 1.0})

    class Flaky:
        def run(self, req):
            calls.append("rejax")
            if calls.count("rejax") == 2:
                raise RuntimeError("rejax peer: died\nmid-run")
            return {"env_steps_per_s": 20.0, "run_s": 1.0}

    errors = []
    ours, theirs = throughput.pendulum_pair({"algo": "sac"}, Flaky(), errors=errors, repeats=3)
    assert calls == ["ours", "rejax", "ours", "rejax"] and theirs is None
    assert ours["env_steps_per_s_samples"] == [10.0, 30.0] and ours["env_steps_per_s"] == 20.0
    assert "ratio_samples" not in ours and errors == ["rejax peer: died mid-run"]


def test_paired_verdicts_come_from_the_sign_test_interval_of_the_median():
    """Up to 8 pairs the interval is the pairs' range (every pair must clear the target); from 9 it leaves out
    the lowest and highest, so one pair caught alone in the machine's slow state no longer decides, while two
    still do. The cell shows the interval and, where it differs, the range; the summary keeps both."""
    from benchmarks.throughput import tables

    nine = [1.1, 1.2, 0.84, 1.15, 1.12, 1.3, 1.05, 1.18, 1.2]
    assert tables.paired_met(nine, 1.0) is True
    assert tables.paired_met(nine[:8], 1.0) is None  # 8 pairs: the range, 0.84 decides
    assert tables.paired_met([0.9] * 2 + nine[2:], 1.0) is None  # two low pairs of 9 still do
    assert tables.paired_met([1 / r for r in nine], 1.0) is False
    assert tables.paired_cell(1.15, nine) == "1.15x (1.05-1.20; range 0.84-1.30)"
    assert tables.paired_cell(1.15, nine[:8], "8 paired epochs") == "1.14x (0.84-1.30, 8 paired epochs)".replace(
        "1.14", "1.15")
    t = tables.paired_target(1.15, nine, "calls")
    assert t["met"] is True and t["interval"] == [1.05, 1.2] and t["interval_coverage"] == pytest.approx(0.9609375)
    assert t["verdict"] == "target met"
    t = tables.paired_target(1.15, nine[:8], "epochs")
    assert t["met"] is None and "straddles" in t["verdict"] and t["interval"] == [0.84, 1.3]


def _curve(rng, seeds, evals, mean):
    return {"eval_returns": rng.normal(mean, 50.0, (seeds, evals)).tolist()}


def test_learning_curves_align_at_the_end_and_compare_final_returns_from_five_seeds(tmp_path):
    """rejax evaluates once more (at the end of its warm-up): the curves are compared at the env steps both
    evaluated, the final return of a seed is the mean of its last evaluations, and only from 5 seeds a side
    is there a reading, from the interval of P(ours > rejax)."""
    import numpy as np

    from benchmarks.throughput import tables

    rng = np.random.default_rng(0)
    c = {"seeds": 8, "total_steps": 6000, "learning_starts": 1000, "eval_every": 1000, "eval_episodes": 5,
         "ours": _curve(rng, 8, 5, -300.0), "rejax": _curve(rng, 8, 6, -600.0)}
    c["rejax"]["eval_returns"] = [[-1500.0] + row[1:] for row in c["rejax"]["eval_returns"]]  # the extra first one
    steps, ys = tables.aligned_curves(c)
    assert steps == [2000, 3000, 4000, 5000, 6000] and ys["ours"].shape == ys["rejax"].shape == (8, 5)
    assert np.all(ys["rejax"] > -1500.0)  # the warm-up evaluation is the one left out
    f = tables.curve_final(c, 3)
    want = np.asarray(c["ours"]["eval_returns"])[:, -3:].mean(1)
    assert np.allclose(f["ours"], want) and f["reading"] == "ours higher" and f["p_improvement"] == 1.0
    assert f["verdict"] == "descriptive (no claim)" and "claim_verdict" not in f  # no paper claim in the index
    c["final"] = f
    c["rejax"]["eval_returns"] = (np.asarray(c["rejax"]["eval_returns"]) + 300.0).tolist()  # same distribution
    assert tables.curve_final(c, 3)["reading"] == "no difference resolved"
    c["ours"]["eval_returns"] = (np.asarray(c["ours"]["eval_returns"]) - 1000.0).tolist()
    assert tables.curve_final(c, 3)["reading"] == "rejax higher"
    assert tables.curve_final(c, 9)["last_evals"] == 5  # no more than the 5 aligned evaluations
    two = dict(c, ours={"eval_returns": c["ours"]["eval_returns"][:2]})
    assert "reading" not in tables.curve_final(two, 3) and tables.curve_final(dict(c, rejax=None), 3) is None
    s = {"config": {"pend_seed_counts": [1]}, "rejax": {}, "curves": {"td3": dict(c, final=f)}}
    table = tables.rejax_table(s)
    assert "| TD3 (evaluations every 1000 steps after 1000 warm-up) | 8 | 2000 / 3000 / 4000 / 5000 / 6000 |" in table
    assert "| TD3, last 3 evaluations | 8 / 8 |" in table and table.rstrip().endswith("| ours higher |")
    long = {"seeds": 2, "total_steps": 150 * 2048, "learning_starts": 0, "eval_every": 2048, "eval_episodes": 5,
            "ours": _curve(rng, 2, 150, 0.0), "rejax": _curve(rng, 2, 150, 0.0)}
    row = next(ln for ln in tables.rejax_table({"config": {"pend_seed_counts": [1]}, "rejax": {},
                                                 "curves": {"ppo": long}}).splitlines() if ln.startswith("| PPO ("))
    assert row.split(" | ")[2].split(" / ")[-1] == str(150 * 2048) and len(row.split(" | ")[2].split(" / ")) == 10
    tables.curve_figure({"td3": c, "ppo": long}, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_throughput_command_times_chosen_seed_counts_with_chosen_pairs(capsys):
    """--pend-seeds / --pend-repeats re-measure some rejax rows alone (e.g. 32 seeds over 9 pairs); without
    --pend-repeats a count keeps the scale's pairs, and one the scale does not time gets the most of them. Bad
    values are one line on stderr, before anything runs."""
    Bench = throughput.ThroughputBench
    cfg = Bench(pend_seeds=(32,), pend_repeats=9).config()
    assert cfg.pend_seed_counts == (32,) and cfg.repeats_for(32) == 9
    cfg = Bench(scale="medium", pend_seeds=(8, 1)).config()
    assert cfg.pend_seed_counts == (1, 8) and (cfg.repeats_for(1), cfg.repeats_for(8)) == (9, 5)
    assert Bench(scale="medium", pend_seeds=(32,)).config().repeats_for(32) == 9
    assert Bench(scale="medium", pend_repeats=4).config().pend_repeats == 4
    assert Bench().config() == throughput.config_for("quick")
    cfg = Bench(rejax_only=True).config()
    assert (cfg.run_brax, cfg.run_torch, cfg.rounds, cfg.td3_seed_counts) == (False, False, 1, (1, 8))
    for argv, words in ((["--pend-seeds", "8", "8"], "--pend-seeds must not repeat a seed count, got 8 8"),
                        (["--pend-seeds", "0"], "0")):
        with pytest.raises(SystemExit) as e:
            throughput.main(argv + ["--out", "/nonexistent/never-written"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_curves_only_runs_the_learning_curves_alone_and_writes_them(tmp_path, monkeypatch, capsys):
    """--curves-only: each algorithm's learning curve, one call a side, written as summary.json, table.md and
    curves.png; without a peer (here: --no-rejax) our side alone, and one line says why."""
    import numpy as np

    from benchmarks.throughput import command, pendulum

    calls = []

    def ours(req, compiled):
        calls.append((req["algo"], req["seeds"], req["total_steps"], req["eval_mean"]))
        evals = req["total_steps"] // req["eval_every"] - (req["learning_starts"] // req["eval_every"])
        return {"env_steps_per_s": 1.0, "run_s": 1.0, "compile_s": 1.0,
                "eval_returns": np.full((req["seeds"], evals), -100.0).tolist()}

    monkeypatch.setattr(pendulum, "compile_our_pendulum", lambda req: ("fn", "keys", 1.0))
    monkeypatch.setattr(pendulum, "our_pendulum_run", ours)
    s = command.main(["--curves-only", "--no-rejax", "--scale", "medium", "--out", str(tmp_path)])
    cfg = throughput.config_for("medium")
    assert [c[0] for c in calls] == ["td3", "sac", "ppo"] and all(c[1] == cfg.curve_seeds and c[3] for c in calls)
    assert calls[2][2] == cfg.ppo_curve_rollouts * 2048
    assert s["curves_only"] and set(s["curves"]) == {"td3", "sac", "ppo"} and s["skipped"]["rejax peer"] == "--no-rejax"
    assert all(c["rejax"] is None and c["final"] is None for c in s["curves"].values())
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "summary.json", "table.md"]
    table = (tmp_path / "table.md").read_text()
    assert "| TD3 (evaluations every 1000 steps after 1000 warm-up) | 8 |" in table and "rejax peer not measured" in table
    assert "rejax peer not measured" in capsys.readouterr().out
