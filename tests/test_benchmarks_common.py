"""Benchmark plumbing: scale parsing, the throughput config's validation, result writing, the table's
verdicts. No timing here: speed lives in ``make bench-throughput``."""
import dataclasses
import json
import os

import pytest

from benchmarks import common, throughput


def test_parse_scale_accepts_the_named_scales():
    assert common.parse_scale("quick") == "quick"
    assert common.parse_scale("paper") == "paper"
    assert common.parse_scale("tiny", ("tiny", "huge")) == "tiny"


@pytest.mark.parametrize("bad", ["Quick", "", "fast", "paper "])
def test_parse_scale_names_the_bad_value_and_the_choices(bad):
    with pytest.raises(ValueError) as e:
        common.parse_scale(bad)
    msg = str(e.value)
    assert repr(bad) in msg and "quick" in msg and "paper" in msg


def test_throughput_cli_rejects_a_bad_scale(capsys):
    with pytest.raises(SystemExit) as e:
        throughput.main(["--scale", "huge"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'huge'" in err and "quick, paper" in err


def test_named_scales_are_valid_and_match_the_paper_settings():
    for scale in ("quick", "paper"):
        cfg = throughput.config_for(scale)
        assert cfg.td3_seed_counts == (1, 2, 4, 8)
        assert cfg.torch_seeds == 8
        assert cfg.sac_learning_starts >= 256
    assert throughput.config_for("paper").sac_steps_per_chunk > throughput.config_for("quick").sac_steps_per_chunk
    with pytest.raises(ValueError, match="'medium'"):
        throughput.config_for("medium")


@pytest.mark.parametrize("field, value, words", [
    ("td3_seed_counts", (2, 4), "start at 1"),
    ("td3_seed_counts", (1, 4, 2), "increasing"),
    ("td3_seed_counts", (1, 1, 2), "distinct"),
    ("td3_seed_counts", (), "td3_seed_counts"),
    ("brax_epochs", 1, "brax_epochs"),
    ("sac_learning_starts", 100, "256"),
    ("td3_buffer_size", 50, "100"),
    ("rounds", 0, "rounds"),
    ("torch_threads", -1, "torch_threads"),
    ("backend", "warp", "positional"),
])
def test_throughput_config_rejects_bad_values(field, value, words):
    cfg = dataclasses.replace(throughput.ThroughputConfig(), **{field: value})
    with pytest.raises(ValueError, match=words):
        cfg.validate()


def test_no_timed_chunk_is_an_error():
    cfg = dataclasses.replace(throughput.ThroughputConfig(), sac_chunks_before=0, sac_chunks_after=0)
    with pytest.raises(ValueError, match="no timed chunk"):
        cfg.validate()


def test_write_result_is_complete_and_leaves_no_temp_file(tmp_path):
    path = os.path.join(tmp_path, "sub", "r.json")
    common.write_result(path, {"figure": 1.5}, config=throughput.ThroughputConfig(), wall_time_s=2.0, note="x")
    with open(path) as f:
        obj = json.load(f)
    assert obj["figure"] == 1.5 and obj["note"] == "x" and obj["wall_time_s"] == 2.0
    assert obj["config"]["td3_seed_counts"] == [1, 2, 4, 8]
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


def test_venv_stamp_detects_missing_and_stale_envs(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("pkg==1.0\n")
    venv = tmp_path / "venv"
    assert not throughput.venv_ready(str(venv), str(req))
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".metarl-peer-stamp").write_text(throughput._stamp_of(str(req)) + "\n")
    assert throughput.venv_ready(str(venv), str(req))
    req.write_text("pkg==2.0\n")  # the pins changed: the venv must be rebuilt
    assert not throughput.venv_ready(str(venv), str(req))
