"""End to end: `resilinet reproduce` and `resilinet ablate` write a report with every table."""
import json

import pytest

from resilinet.cli import main

TINY = ["data.name=digits", "data.limit=200", "train.epochs=1", "model.hidden_units=16"]


@pytest.mark.slow
def test_reproduce_writes_report_tables_checks_and_figures(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--out", str(out), "--seeds", "0", "--jobs", "1", *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("Expected accuracy (%)", "per failure pattern", "P(no path) vanilla / skips",
                   "vanilla = P(all alive) x clean", "ResiliNet > deepFogGuard > vanilla", "e dead"):
        assert needle in report, needle
    for png in ("mlp_expected_accuracy.png", "mlp_patterns.png", "resnet18_expected_accuracy.png"):
        assert (out / png).stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 8
    assert all(r["checks"]["inside_brackets"] for r in summary["runs"].values())
    # a second invocation reuses finished runs instead of retraining
    assert main(["reproduce", "--out", str(out), "--seeds", "0", "--jobs", "1", *TINY]) == 0


@pytest.mark.slow
def test_ablate_one_group(tmp_path):
    out = tmp_path / "abl"
    assert main(["ablate", "--out", str(out), "--seeds", "0", "--jobs", "1", "--only", "partition 2", *TINY]) == 0
    report = (out / "report.md").read_text()
    for arch in ("mlp", "resnet18"):   # the MLP chain and the CNN, each with the ordering check
        section = report.split(f"## {arch}: partition 2")[1].split("## ")[0]
        assert "ResiliNet+" in section and "hazardous: ResiliNet+ >= ResiliNet > deepFogGuard > vanilla" in section
