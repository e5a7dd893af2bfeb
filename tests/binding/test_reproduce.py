"""`binding reproduce`'s job scheduler: dependency order, and the analysis jobs beside the training."""
import sys
from pathlib import Path

import pytest

from binding import report, reproduce
from lab.errors import UserError


def fake_commands(monkeypatch, tmp_path, fail: str = "", hang: str = ""):
    """Each job appends "start NAME" / "end NAME" to a log instead of training; `fail` names one that
    fails, `hang` one that would run for a minute."""
    log = tmp_path / "order.txt"

    def command(preset, out, overrides, job):
        name = reproduce._job_name(job)
        code = (f"import time; open({str(log)!r}, 'a').write('start {name}\\n'); "
                f"time.sleep({60 if name == hang else 0.05}); "
                f"open({str(log)!r}, 'a').write('end {name}\\n'); raise SystemExit({int(name == fail)})")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(reproduce, "_command", command)
    return log


def test_jobs_start_after_their_dependencies_and_analyses_after_their_regime(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path)
    reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=True)
    events = log.read_text().split("\n")[:-1]
    at = {e: i for i, e in enumerate(events)}
    for regime, deps in reproduce.DEPENDS.items():
        for d in reproduce.FOLLOWERS.get(regime, deps):   # a follower starts early (it waits itself)
            dep = "encoder" if d == "@encoder" else f"{d}-seed0"
            assert at[f"end {dep}"] < at[f"start {regime}-seed0"]
        assert at[f"end {regime}-seed0"] < at[f"start analyze-{regime}-seed0"]
    assert sum(e.startswith("start analyze-") for e in events) == len(reproduce.REGIME_ORDER)


def test_the_equal_compute_control_starts_after_the_text_stage_beside_the_workers(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path)
    reproduce.run_jobs("smoke", tmp_path, [0], [], workers=1, quiet=True, analysis=False)
    events = log.read_text().split("\n")[:-1]
    at = {e: i for i, e in enumerate(events)}
    assert at["end text-only-seed0"] < at["start text-only-equal-compute-seed0"] < at["end noise-text-seed0"]
    others = [e for e in events if "equal-compute" not in e]   # one worker: the rest ran one at a time
    assert all(a.startswith("start") and b == "end" + a[5:] for a, b in zip(others[::2], others[1::2]))


def test_a_follower_is_stopped_when_a_regime_it_waits_for_fails(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path, fail="noise-text-seed0", hang="text-only-equal-compute-seed0")
    with pytest.raises(UserError, match="text-only-equal-compute-seed0"):
        reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=False)
    events = log.read_text()
    assert "start text-only-equal-compute-seed0" in events and "end text-only-equal-compute-seed0" not in events


def test_without_analysis_no_analysis_job_runs(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path)
    reproduce.run_jobs("smoke", tmp_path, [0, 1], [], workers=2, quiet=True, analysis=False)
    events = log.read_text().split("\n")[:-1]
    assert not any("analyze-" in e for e in events)
    assert sum(e.startswith("start") for e in events) == 1 + 2 * len(reproduce.REGIME_ORDER)   # the encoder, then every regime of 2 seeds


def test_a_failed_job_blocks_what_depends_on_it_and_is_named(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path, fail="noise-text-seed0")
    with pytest.raises(UserError, match="noise-text-seed0.*noise-image-text-seed0"):
        reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=True)
    events = log.read_text()
    assert "start image-text-seed0" in events and "start noise-image-text-seed0" not in events


def test_each_job_is_a_binding_curriculum_command():
    train = reproduce._command("cpu", Path("o"), ["train.lr=1e-3"], ("image-text", 1))
    analyse = reproduce._command("cpu", Path("o"), ["train.lr=1e-3"], (reproduce.ANALYZE + "image-text", 1))
    assert train[2:4] == ["binding.cli", "curriculum"] and train[-1] == "train.lr=1e-3"
    assert "--analyze" not in train and analyse == train[:-1] + ["--analyze", "train.lr=1e-3"]
    assert "--encoder-only" in reproduce._command("cpu", Path("o"), [], ("@encoder", 0))
    assert "--follow" in reproduce._command("cpu", Path("o"), [], ("text-only-equal-compute", 0))
    assert "--follow" not in train


def fake_reproduce_folder(root, seeds, ood):
    """seedS/<regime>/regime.json as `binding reproduce` writes them; ood: regime -> accuracy per seed."""
    import json
    for s in seeds:
        for regime, acc in ood.items():
            d = root / f"seed{s}" / regime
            d.mkdir(parents=True)
            (d / "regime.json").write_text(json.dumps({
                "regime": regime, "seed": s, "ood_accuracy": acc[s], "id_accuracy": 1.0, "total_steps": 100,
                "accuracy_by_n": {"2": 1.0, "9": acc[s]}, "id_range": [2, 8], "ood_range": [9, 9],
                "stages": [{"stage": "text", "steps": 100, "reached_threshold": True}]}))


def test_combine_makes_one_table_over_the_seeds_of_several_folders(tmp_path):
    import json
    ood = {"text-only": {0: 0.4, 1: 0.5, 2: 0.6}, "image-text": {0: 0.6, 1: 0.8, 2: 0.6}}
    fake_reproduce_folder(tmp_path / "cpu", [0, 1], ood)
    fake_reproduce_folder(tmp_path / "gpu", [2], ood)
    table = report.combine([tmp_path / "cpu", tmp_path / "gpu"], tmp_path / "all")
    by = {e["regime"]: e for e in table}
    assert by["text-only"]["seeds"] == [0, 1, 2] and by["text-only"]["ood_accuracy_mean"] == pytest.approx(0.5)
    assert by["image-text"]["run_dirs"][2] == str(tmp_path / "gpu" / "seed2" / "image-text")
    ratio = report.effect_ratio(table)
    assert ratio["ratio"] == pytest.approx(2.0 / 1.5) and ratio["per_seed"] == pytest.approx([1.5, 1.6, 1.0])
    assert 1.0 <= ratio["p5"] <= ratio["ratio"] <= ratio["p95"] <= 1.6
    assert json.loads((tmp_path / "all" / "table.json").read_text())[0]["regime"] == "text-only"
    text = (tmp_path / "all" / "report.md").read_text()
    assert "**1.33x** over 3 seed(s)" in text
    assert "| text-only | 3 | 0.500 +- 0.100 |" in text and "| image-text | 3 | 0.667 +- 0.115 |" in text   # per OOD N


def test_combine_rejects_a_seed_in_two_folders_and_a_folder_without_seeds(tmp_path):
    ood = {"text-only": {0: 0.4}}
    fake_reproduce_folder(tmp_path / "a", [0], ood)
    fake_reproduce_folder(tmp_path / "b", [0], ood)
    with pytest.raises(UserError, match="seed0 is in both"):
        report.combine([tmp_path / "a", tmp_path / "b"], tmp_path / "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no seedS folders"):
        report.combine([tmp_path / "a", tmp_path / "empty"], tmp_path / "all")
    assert not (tmp_path / "all").exists()


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def local_ray():
    """One loopback Ray cluster for the module's tests; none of its processes may outlive it."""
    import os
    import shutil
    import tempfile

    from lab import ray_local

    tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")   # short: Ray's socket paths have a length limit
    os.environ["RAY_TMPDIR"] = tmp
    try:
        ray_local.init_local(num_cpus=2)
        pids = ray_local.cluster_pids()
        yield
        ray_local.shutdown()
        import time
        time.sleep(1)
        left = [p for p in ray_local.alive_pids(pids) if p != os.getpid()]
        assert not left, f"Ray processes left behind: {left}"
    finally:
        os.environ.pop("RAY_TMPDIR", None)
        shutil.rmtree(tmp, ignore_errors=True)


def test_on_ray_jobs_keep_their_order_and_a_stopped_follower_leaves_no_process(monkeypatch, tmp_path, local_ray):
    log = fake_commands(monkeypatch, tmp_path, fail="noise-text-seed0", hang="text-only-equal-compute-seed0")
    with pytest.raises(UserError, match="noise-text-seed0.*text-only-equal-compute-seed0"):
        reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=False,
                           launcher=reproduce.RayJobs(2, None))
    events = log.read_text().split("\n")[:-1]
    at = {e: i for i, e in enumerate(events)}
    assert at["end text-only-seed0"] < at["start noise-text-seed0"] and "start noise-image-text-seed0" not in at
    assert "start text-only-equal-compute-seed0" in at
    import time
    time.sleep(1.0)
    from lab.ray_local import alive_pids
    jobs_left = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                 and str(log).encode() in _cmdline(d)]
    assert not alive_pids(jobs_left), "the cancelled follower's command outlived its Ray task"
    assert (tmp_path / "logs" / "text-only-seed0.log").exists()


def test_reproduce_on_ray_refuses_a_gpu_share_for_cpu_jobs_before_anything_starts(tmp_path):
    with pytest.raises(UserError, match="--gpus-per-task 0.5 but preset 'smoke' trains on train.device=cpu"):
        reproduce.reproduce("smoke", tmp_path / "r", ray=True, gpus_per_task=0.5, quiet=True)
    with pytest.raises(UserError, match="train.device=cuda: give each Ray task a GPU share"):
        reproduce.reproduce("smoke", tmp_path / "r", overrides=["train.device=cuda"], ray=True, quiet=True)
    assert not (tmp_path / "r").exists()
