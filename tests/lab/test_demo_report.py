"""The combined demo report lifts each study's headline and links its figures."""
import json

from lab.demo_report import write


def test_report_combines_both_studies_and_says_what_is_missing(tmp_path):
    out = write(tmp_path)
    text = out.read_text()
    assert "binding/text-only/results.json is missing" in text and "resilinet/report.md is missing" in text

    run = tmp_path / "binding" / "text-only"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "accuracy_by_n": {"2": 1.0, "9": 0.5}, "id_accuracy": 1.0, "ood_accuracy": 0.5, "id_range": [2, 8],
        "ood_range": [9, 9], "samples_per_n": 10, "steps": 5, "train_seconds": 1.0, "mistakes": []}))
    (tmp_path / "resilinet").mkdir()
    (tmp_path / "resilinet" / "report.md").write_text("# ResiliNet\n![fig](mlp.png)\n")
    text = write(tmp_path).read_text()
    assert "**0.500**" in text and "![fig](resilinet/mlp.png)" in text


def test_report_lifts_the_demo_models_mechanism(tmp_path):
    run = tmp_path / "binding" / "text-only"
    (run / "mechanism").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "accuracy_by_n": {"2": 1.0}, "id_accuracy": 1.0, "ood_accuracy": 0.5, "id_range": [2, 8],
        "ood_range": [9, 9], "samples_per_n": 10, "steps": 5, "train_seconds": 1.0}))
    zero = {"positional": 0.0, "symbolic": 0.0, "reflexive": 0.0, "no_effect": 0.0, "other": 0.0}
    (run / "mechanism" / "mechanism.json").write_text(json.dumps({
        "proportions_by_layer": [{**zero, "positional": 0.8, "symbolic": 0.2}, {**zero, "reflexive": 1.0}],
        "peak_layer": 0, "symbolic_positional_ratio": 0.25, "n_pairs": 90}))
    text = write(tmp_path).read_text()
    assert "over 90 pairs" in text and "0.80 : 0.20 : 0.00 / 0.00 : 0.00 : 1.00" in text and "ratio 0.2" in text
