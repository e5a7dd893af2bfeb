"""Checkpoints: `NAME.safetensors` (tensors) + `NAME.json` (everything else), never pickle.

A training checkpoint (`save_training_state`) holds each module under its prefix ("model.",
"best.", "image.") and the optimizer under "optim."; `module_state` reads one module back.

Both files are written atomically; the JSON sidecar is written last and records the SHA-256 of
the tensor file, so a checkpoint whose two halves do not belong together (a crash between the two
renames) is detected on load instead of silently mixing states.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_json


def save_checkpoint(stem: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    stem = Path(stem)
    # clone: safetensors refuses tensors that share storage (tied embeddings); loading restores the tie
    blob = st_save({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()})
    atomic_write_bytes(stem.with_suffix(".safetensors"), blob)
    atomic_write_json(stem.with_suffix(".json"), {**meta, "sha256": hashlib.sha256(blob).hexdigest()})


REMEDY = ("rerun with a new --out, or delete the folder's checkpoint.* files (and results.json) "
          "to train this run again from the start")


def _checked_bytes(stem: Path) -> tuple[bytes, dict[str, Any]]:
    """The safetensors bytes and the sidecar, once the sidecar's sha256 vouches for the bytes."""
    st_path, js_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st_path, js_path):
        if not p.exists():
            raise UserError(f"checkpoint file missing: {p}; {REMEDY}")
    blob = st_path.read_bytes()
    try:
        meta = json.loads(js_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"checkpoint sidecar {js_path} is not valid JSON ({e}); {REMEDY}") from None
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(blob).hexdigest():
        raise UserError(f"checkpoint {st_path} does not match its sidecar {js_path} (truncated, corrupt "
                        f"or mixed); {REMEDY}")
    return blob, meta


def verify_checkpoint(stem: str | Path) -> None:
    """Raise UserError unless the checkpoint's bytes are the ones its sidecar names."""
    _checked_bytes(Path(stem))


def load_checkpoint(stem: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    stem = Path(stem)
    st_path = stem.with_suffix(".safetensors")
    blob, meta = _checked_bytes(stem)
    try:
        tensors = st_load(blob)
    except (SafetensorError, Exception) as e:  # safetensors raises several types for bad bytes
        raise UserError(f"checkpoint {st_path} is not a valid safetensors file ({e}); {REMEDY}") from None
    return tensors, meta


def checkpoint_exists(stem: str | Path) -> bool:
    stem = Path(stem)
    return stem.with_suffix(".safetensors").exists() and stem.with_suffix(".json").exists()


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and plain JSON."""
    sd = opt.state_dict()
    tensors, state_meta = {}, {}
    for pid, st in sd["state"].items():
        state_meta[str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
                state_meta[str(pid)][k] = "tensor"
            else:
                state_meta[str(pid)][k] = v
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"optim.{pid}.{k}"] if v == "tensor" else v) for k, v in st.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(stem: str | Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                        meta: dict[str, Any]) -> None:
    """A resumable checkpoint: each module's state under `PREFIX.` (e.g. "model.", "best."), the
    optimizer's under "optim.", and `meta` (loop state, configs) in the sidecar."""
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors = dict(opt_tensors)
    for prefix, module in modules.items():
        tensors |= {f"{prefix}.{k}": v for k, v in module.state_dict().items()}
    save_checkpoint(stem, tensors, {**meta, "optimizer": opt_meta})


def restore_training_state(stem: str | Path, modules: dict[str, torch.nn.Module],
                           optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load what `save_training_state` wrote into the modules and the optimizer; returns the meta."""
    tensors, meta = load_checkpoint(stem)
    for prefix, module in modules.items():
        module.load_state_dict(module_state(tensors, prefix))
    optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
    return meta


def module_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The state dict saved under `prefix` (e.g. "model") in a checkpoint's tensors."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
