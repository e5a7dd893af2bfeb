"""The combined demo report lifts each study's headline and links its figures."""
import json

from lab.demo_report import write

TEXT_RESULTS = {"accuracy_by_n": {"2": 1.0, "9": 0.5}, "id_accuracy": 1.0, "ood_accuracy": 0.5, "id_range": [2, 8],
                "ood_range": [9, 9], "samples_per_n": 10, "steps": 5, "train_seconds": 1.0, "mistakes": []}


def test_report_combines_both_studies_and_says_what_is_missing(tmp_path):
    out = write(tmp_path)
    text = out.read_text()
    assert "binding/seed0/text/results.json is missing" in text and "resilinet/report.md is missing" in text

    run = tmp_path / "binding" / "seed0" / "text"      # `binding reproduce --out DEMO/binding`
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(TEXT_RESULTS))
    (tmp_path / "binding" / "report.md").write_text("# Binding\n| regime |\n## Mechanism\n![by N](accuracy_by_n.png)\n")
    (tmp_path / "resilinet").mkdir()
    (tmp_path / "resilinet" / "report.md").write_text("# ResiliNet\n![fig](mlp.png)\n")
    text = write(tmp_path).read_text()
    assert "**0.500**" in text and "![fig](resilinet/mlp.png)" in text
    assert "![by N](binding/accuracy_by_n.png)" in text and "\n### Mechanism\n" in text  # its headings one level down


def test_report_lifts_the_demo_models_mechanism(tmp_path):
    (tmp_path / "binding" / "seed0" / "text").mkdir(parents=True)
    (tmp_path / "binding" / "seed0" / "text" / "results.json").write_text(json.dumps(TEXT_RESULTS))
    mech = tmp_path / "binding" / "seed0" / "text-only" / "mechanism"
    mech.mkdir(parents=True)
    zero = {"positional": 0.0, "symbolic": 0.0, "reflexive": 0.0, "no_effect": 0.0, "other": 0.0}
    (mech / "mechanism.json").write_text(json.dumps({
        "proportions_by_layer": [{**zero, "positional": 0.8, "symbolic": 0.2}, {**zero, "reflexive": 1.0}],
        "peak_layer": 0, "symbolic_positional_ratio": 0.25, "n_pairs": 90}))
    text = write(tmp_path).read_text()
    assert "over 90 pairs" in text and "0.80 : 0.20 : 0.00 / 0.00 : 0.00 : 1.00" in text and "ratio 0.2" in text
    assert "](binding/seed0/text-only/mechanism/outcomes.png)" in text
