"""metarl.report: the generated results page and the README's results-at-a-glance block (cheap: no jax)."""
import json
import os
import subprocess
import sys

import pytest

from metarl import report

README = """# metarl

Intro text that must not change.

## Results at a glance

<!-- results:begin -->
old generated text
<!-- results:end -->

## After

Text after the block | with a pipe, must not change.
"""


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _json(path, obj):
    return _write(path, json.dumps(obj, indent=1))


@pytest.fixture
def tree(tmp_path):
    """A results tree in the shapes the benchmarks write (and the shape issue 16 asks for)."""
    root = tmp_path / "results"
    versions = {"jax": "0.10.2", "flax": "0.12.8", "python": "3.11.9"}
    device = {"backend": "cpu", "devices": ["TFRT_CPU_0"], "device_count": 1}
    # Interval rows, as metarl.stats.summary_row + verdict and metarl.stats.compare write them.
    _json(root / "meta_critic" / "summary.json", {
        "config": {"seeds": 5}, "scale": "quick", "versions": versions, "device": device, "wall_time_s": 445.2,
        "compile_time_s": 61.0,
        "rows": {"Table 1 / brax/inverted_pendulum / DDPG-MC": {"iqm": 111.2, "ci": [40.0, 180.5], "n": 5,
                                                                "paper": 1000.0, "verdict": "contradicts"},
                 "Table 2 / Eq. 9 vs Eq. 8": {"iqm_a": -829.0, "ci_a": [-850.0, -800.0], "n_a": 5,
                                              "iqm_b": -909.0, "ci_b": [-990.0, -850.0], "n_b": 5,
                                              "p_improvement": 0.8, "p_improvement_ci": [0.6, 1.0],
                                              "verdict": "better", "claim_verdict": "reproduces"}}})
    _write(root / "meta_critic" / "tables.md", "# Online Meta-Critic tables\n\n| a | b |\n")
    _write(root / "meta_critic" / "curves_gymnax_Pendulum-v1_td3.png", "png")
    _json(root / "meta_critic" / "overhead.json", {"td3": {"time_overhead": 0.7}})
    # A summary without intervals (today's throughput shape): shown as such.
    _json(root / "throughput" / "summary.json", {
        "config": {"scale": "quick"}, "versions": versions, "device": device, "wall_time_s": 171.0,
        "written_at": "2025-01-01T00:00:00Z", "scale": "quick",
        "sac": {"ours": {"env_steps_per_s": 236.0, "compile_s": 25.3}}, "td3": {"ours_compile_s": {"1": 11.5, "8": 17.9}},
        "targets": {"sac_ours_over_brax": {"target": 1.0, "ratio": 0.9, "met": False}}})
    _write(root / "throughput" / "table.md", "# Throughput (quick scale)\n")
    # A folder with records but no summary.json (today's outer-value shape), a nested run and a checkpoint.
    _json(root / "outer_value_chain" / "result.json", {
        "scale": "quick", "wall_time_s": 239.0, "config": {"num_seeds": 5},
        "environment": {"python": "3.11.9", "device": "TFRT_CPU_0", "jax": "0.10.2", "flax": "0.12.8"}})
    _write(root / "outer_value_chain" / "summary.md", "# Chain\n")
    _write(root / "outer_value_chain" / "summary.csv", "agent,gamma\n")
    _write(root / "outer_value_chain" / "curves.png", "png")
    _json(root / "metagenrl" / "runs" / "td3" / "meta.json", {
        "versions": versions, "device": device, "wall_time_s": 12.5, "compile_time_s": 4.0, "num_runs": 2})
    _write(root / "metagenrl" / "runs" / "td3" / "metrics.csv", "x\n")
    ck = root / "metagenrl" / "objectives" / "final"
    _write(ck / "_CHECKPOINT_METADATA", "{}")
    _write(ck / "d" / "abc", "bin")
    seg = root / "metagenrl" / "objectives" / "set_1" / "checkpoint"  # a segment loop's checkpoint folder
    _json(seg / "COMPLETE.json", {"chunk": 1})
    _json(seg / "segments.json", {"done": 1, "history": []})
    _write(seg / "state" / "_CHECKPOINT_METADATA", "{}")
    _write(root / "metagenrl" / "notes.txt", "free text")
    _write(root / "gpu_probe" / "log.txt", "a folder no paper claims")
    readme = _write(tmp_path / "README.md", README)
    return tmp_path, root, readme


def _all_files(root):
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in fs]
    return sorted(out)


def test_index_lists_every_file(tree):
    repo, root, _ = tree
    out = report.build(root, repo=repo)
    index = (root / "index.md").read_text()
    assert out["index"] == root / "index.md"
    for rel in _all_files(root):
        if rel == "index.md":
            continue
        if rel.startswith(("metagenrl/objectives/final/", "metagenrl/objectives/set_1/checkpoint/")):
            continue  # a checkpoint is one entry with its file count
        assert f"]({rel})" in index, rel
    assert "](metagenrl/objectives/final)" in index and "checkpoint (2 files)" in index
    assert "](metagenrl/objectives/set_1/checkpoint)" in index and "checkpoint (3 files)" in index
    # papers in their order, each with its docs page; run records carry what the JSON has
    assert index.index("## Online Meta-Critic") < index.index("## MetaGenRL") < index.index("## Outer value")
    assert index.index("## Outer value") < index.index("## Throughput") < index.index("## Other runs")
    assert "(../docs/online-meta-critic.md)" in index
    line = next(s for s in index.splitlines() if "run record [summary.json](meta_critic/summary.json)" in s)
    for part in ("scale quick", "5 seeds", "device cpu TFRT_CPU_0", "wall 445 s", "compile_time_s 61 s",
                 "jax 0.10.2"):
        assert part in line, (part, line)
    line = next(s for s in index.splitlines() if "(outer_value_chain/result.json)" in s)
    assert "5 seeds" in line and "device TFRT_CPU_0" in line and "flax 0.12.8" in line
    line = next(s for s in index.splitlines() if "(metagenrl/runs/td3/meta.json)" in s)
    assert "compile_time_s 4.0 s" in line
    line = next(s for s in index.splitlines() if "(throughput/summary.json)" in s and "run record" in s)
    assert "sac.ours.compile_s 25 s" in line and "td3.ours_compile_s: 1 12 s, 8 18 s" in line
    assert "Data (JSON without run-record fields):\n- [overhead.json](meta_critic/overhead.json)" in index
    assert "Online Meta-Critic tables" in index  # a table's own heading
    # rerunning gives the same page and leaves no temporary files behind
    report.build(root, repo=repo)
    assert (root / "index.md").read_text() == index
    assert not [f for f in _all_files(root) if ".tmp" in f]


def test_rows_with_and_without_intervals(tree):
    repo, root, _ = tree
    index = report.index_markdown(report.scan(root, repo), root, repo, "cmd")
    row = next(s for s in index.splitlines() if "DDPG-MC" in s)
    assert "111.2 [40, 180.5], n=5" in row and "paper 1000" in row and "contradicts" in row
    row = next(s for s in index.splitlines() if "Eq. 9 vs Eq. 8" in s)
    assert "-829 [-850, -800]" in row and "baseline -909 [-990, -850]" in row and "| reproduces |" in row
    row = next(s for s in index.splitlines() if "sac_ours_over_brax" in s)
    assert "0.9 (no interval yet)" in row and "target 1" in row and "target missed" in row


def test_readme_block_replaced_between_markers_only(tree):
    repo, root, readme = tree
    report.build(root, readme=readme, repo=repo)
    text = readme.read_text()
    before, rest = README.split("<!-- results:begin -->")
    _, after = rest.split("<!-- results:end -->")
    assert text.startswith(before + "<!-- results:begin -->\n")
    assert text.endswith("<!-- results:end -->" + after)
    block = text[len(before):len(text) - len(after)]
    assert "old generated text" not in block
    assert "| [Online Meta-Critic (Zhou et al., NeurIPS 2020)](docs/online-meta-critic.md) |" in block
    assert "reproduces 1, contradicts 1" in block
    assert "(results/meta_critic/summary.json)" in block
    # throughput: a summary without intervals is shown as such
    tp = next(s for s in block.splitlines() if s.startswith("| [Throughput"))
    assert "no interval yet" in tp
    # a folder with no summary.json says so too
    ov = next(s for s in block.splitlines() if s.startswith("| [Outer value"))
    assert ov.endswith("| 0 | no interval yet |")
    # idempotent
    report.build(root, readme=readme, repo=repo)
    assert readme.read_text() == text


def test_readme_without_markers_is_left_alone(tree):
    repo, root, _ = tree
    bad = _write(repo / "OTHER.md", "no markers here\n")
    with pytest.raises(ValueError, match="exactly one"):
        report.build(root, readme=bad, repo=repo)
    assert bad.read_text() == "no markers here\n"


def test_missing_root_and_outside_paths(tree, tmp_path_factory):
    repo, _, readme = tree
    out = report.build(repo / "reports", readme=readme, repo=repo)  # no tracked reports yet
    assert out["index"] is None and "No reports under `reports/` yet" in readme.read_text()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(SystemExit, match="outside the repository"):
        report.build(elsewhere, repo=repo)
    os.symlink(elsewhere, repo / "escape")
    with pytest.raises(SystemExit, match="outside the repository"):
        report.build(repo / "escape", repo=repo)
    # a link inside results that leads out is listed, never read
    _json(elsewhere / "secret.json", {"scale": "SECRET"})
    os.symlink(elsewhere / "secret.json", repo / "results" / "meta_critic" / "link.json")
    report.build(repo / "results", repo=repo)
    index = (repo / "results" / "index.md").read_text()
    assert "](meta_critic/link.json)" in index and "SECRET" not in index


def test_cli_does_not_import_jax():
    code = ("import sys, metarl.report; assert 'jax' not in sys.modules and 'matplotlib' not in sys.modules; "
            "sys.exit(metarl.report.main(['--root', 'no-such-folder-for-the-test']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    assert "does not exist" in r.stdout


def test_hyphenated_report_folders_belong_to_their_paper():
    assert report.paper_of("meta-critic-medium")[0].startswith("Online Meta-Critic")
    assert report.paper_of("metagenrl-medium")[0].startswith("MetaGenRL")
    assert report.paper_of("outer-value-chain-paper")[0].startswith("Outer value")
    assert report.paper_of("meta_critic")[0].startswith("Online Meta-Critic")
    assert report.paper_of("gpu-2026-12-02") == report.OTHER
