"""Checkpoints: safetensors + JSON sidecar, atomic, verified on load, optimizer state included."""
import pytest
import torch

from lab.checkpoint import (load_checkpoint, optimizer_from_tensors, optimizer_to_tensors,
                            save_checkpoint)
from lab.errors import UserError
from lab.rundir import MetricsLog


def test_round_trip_restores_tensors_and_metadata(tmp_path):
    t = {"w": torch.randn(3, 4), "step_bytes": torch.tensor([1, 2], dtype=torch.uint8)}
    save_checkpoint(tmp_path / "ck", t, {"step": 7, "note": "x"})
    back, meta = load_checkpoint(tmp_path / "ck")
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["step_bytes"], t["step_bytes"])
    assert meta["step"] == 7 and meta["note"] == "x"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_tensor_file_that_does_not_match_its_sidecar_is_rejected(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(2)}, {"step": 1})
    first = (tmp_path / "ck.safetensors").read_bytes()
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {"step": 2})
    (tmp_path / "ck.safetensors").write_bytes(first)  # as if a crash fell between the two renames
    with pytest.raises(UserError, match="does not match"):
        load_checkpoint(tmp_path / "ck")


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(UserError, match="ck.safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_optimizer_state_survives_the_round_trip(tmp_path):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1)

    model, opt = make()
    for _ in range(3):
        opt.zero_grad(); model(torch.ones(1, 3)).sum().backward(); opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    save_checkpoint(tmp_path / "ck", tensors | {f"m.{k}": v for k, v in model.state_dict().items()}, {"opt": meta})
    model2, opt2 = make()
    back, meta2 = load_checkpoint(tmp_path / "ck")
    model2.load_state_dict({k[2:]: v for k, v in back.items() if k.startswith("m.")})
    optimizer_from_tensors(opt2, back, meta2["opt"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad(); m(torch.ones(1, 3)).sum().backward(); o.step()
    assert torch.equal(model.weight, model2.weight)


def test_metrics_log_drops_rows_after_a_step_and_a_torn_last_line(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for s in (10, 20, 30):
        log.append({"step": s})
    with open(log.path, "a") as f:
        f.write('{"step": 4')  # torn write
    assert [r["step"] for r in log.rows()] == [10, 20, 30]
    log.truncate_after(20)
    assert [r["step"] for r in log.rows()] == [10, 20]
