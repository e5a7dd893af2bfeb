"""The optimizer of a training stage (`train.optimizer`): AdamW, or Muon on the blocks' matrices.

    adamw  torch.optim.AdamW on every parameter (betas 0.9, 0.98), as before this option existed.
    muon   torch.optim.Muon on the 2-D weight matrices inside the transformer blocks (attention's
           qkv and output projections, the MLP), with `adjust_lr_fn="match_rms_adamw"` so the same
           learning rate and weight decay serve both (Moonshot's scaling); AdamW on everything
           else (embeddings, unembedding, norms, biases, an image side's trainable parts).
           Muon orthogonalises each matrix's update, which is reported to shorten the saddle-point
           plateaus this task's two hops sit on. qkv is one matrix here, orthogonalised as one.

Two optimizers behave as one (`Optimizers`): the stage sets the rate on `param_groups`, calls
`zero_grad` / `step`, and checkpoints `state_dict()`, whose parameter ids are numbered across both
so the checkpoint format of lab.checkpoint holds either.
"""
from __future__ import annotations

import torch
from torch import nn

BETAS = (0.9, 0.98)


def muon_matrices(model: nn.Module) -> list[torch.nn.Parameter]:
    """The 2-D weights inside the transformer blocks (what Muon updates)."""
    return [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.ndim == 2]


class Optimizers:
    """Several optimizers stepped together, with one state dict (ids numbered across them)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for opt in self.optimizers:
            sd = opt.state_dict()
            state |= {offset + pid: st for pid, st in sd["state"].items()}
            groups += [{**g, "params": [offset + p for p in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in sd["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups, offset = list(sd["param_groups"]), 0
        for opt in self.optimizers:
            mine, groups = groups[:len(opt.param_groups)], groups[len(opt.param_groups):]
            n = sum(len(g["params"]) for g in mine)
            opt.load_state_dict({
                "state": {pid - offset: st for pid, st in sd["state"].items() if offset <= int(pid) < offset + n},
                "param_groups": [{**g, "params": [p - offset for p in g["params"]]} for g in mine]})
            offset += n


def build_optimizer(kind: str, params: list[torch.nn.Parameter], model: nn.Module, lr: float,
                    weight_decay: float) -> torch.optim.Optimizer | Optimizers:
    """The stage's optimizer over `params` (the model's and any trainable image-side parameters)."""
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=BETAS)
    matrices = {id(p) for p in muon_matrices(model)}
    muon = [p for p in params if id(p) in matrices]
    rest = [p for p in params if id(p) not in matrices]
    return Optimizers([torch.optim.Muon(muon, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"),
                       torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, betas=BETAS)])
