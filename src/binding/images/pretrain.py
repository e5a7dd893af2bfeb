"""Pretraining the embedded visual encoders ("cnn", "vit") on the project's own rendered shapes.

`pretrain_encoder` trains an encoder to read, for every grid cell, whether an object is there and
its colour and shape, through *linear* heads on the patch tokens (`CellHead`), so the frozen
tokens carry colour and shape per location in a linearly decodable form. Training images: N ~
U{1..min(n_colors, n_shapes, cells)} objects, distinct colours and shapes, drawn exactly as the
binding task draws them. Output: `encoder.safetensors` + `encoder.json` (`encoders.save_encoder`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lab.checkpoint import module_state
from lab.errors import UserError
from lab.seeding import step_rng

from .encoders import FORMAT, build_embedded, default_arch, load_encoder, load_encoder_file, save_encoder
from .render import RenderConfig, Renderer, config_dict, config_from_dict, random_objects, shape_names

class CellHead(nn.Module):
    """Linear read-out of per-cell logits from tokens on a (h x h) patch grid for a (G x G) cell grid:
    patches smaller than cells are averaged per cell; patches larger than cells predict r x r cells."""

    def __init__(self, dim: int, n_out: int, token_grid: int, cell_grid: int):
        super().__init__()
        if token_grid % cell_grid and cell_grid % token_grid:
            raise UserError(f"patch grid {token_grid} and cell grid {cell_grid} must divide one another")
        self.h, self.G, self.n_out = token_grid, cell_grid, n_out
        self.r = max(1, cell_grid // token_grid)
        self.linear = nn.Linear(dim, n_out * self.r * self.r)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, h*h, C] -> [B, G, G, n_out]
        B, T, C = tokens.shape
        fmap = tokens.transpose(1, 2).reshape(B, C, self.h, self.h)
        if self.h > self.G:
            fmap = F.avg_pool2d(fmap, self.h // self.G)
        out = self.linear(fmap.permute(0, 2, 3, 1))  # [B, g, g, n_out*r*r]
        if self.r > 1:
            out = F.pixel_shuffle(out.permute(0, 3, 1, 2), self.r).permute(0, 2, 3, 1)
        return out


def cell_targets(positions: np.ndarray, colors: np.ndarray, shapes: np.ndarray, grid: int):
    """Per-cell labels from render output: present [B, G, G] float, colour and shape [B, G, G] long
    (-100 = empty cell, ignored by cross-entropy)."""
    B = positions.shape[0]
    present = np.zeros((B, grid, grid), np.float32)
    col = np.full((B, grid, grid), -100, np.int64)
    shp = np.full((B, grid, grid), -100, np.int64)
    b, s = np.nonzero(positions[..., 0] >= 0)
    r, c = positions[b, s, 0], positions[b, s, 1]
    present[b, r, c] = 1
    col[b, r, c] = colors[b, s]
    shp[b, r, c] = shapes[b, s]
    return torch.from_numpy(present), torch.from_numpy(col), torch.from_numpy(shp)


def _batch(renderer: Renderer, batch: int, rng: np.random.Generator):
    cfg = renderer.cfg
    n_max = min(cfg.n_colors, cfg.n_shapes, cfg.max_objects)
    colors, shapes, n = random_objects(cfg, batch, 1, n_max, rng)
    images, positions = renderer.render(colors, shapes, n, rng, as_tensor=True)
    return images, cell_targets(positions, colors, shapes, cfg.grid)


def _head_loss(logits: torch.Tensor, present, col, shp, n_colors: int):
    """logits [B, G, G, 1 + n_colors + n_shapes] -> (loss, accuracy counts)."""
    p_logit, c_logit, s_logit = logits[..., 0], logits[..., 1:1 + n_colors], logits[..., 1 + n_colors:]
    loss = (F.binary_cross_entropy_with_logits(p_logit, present)
            + F.cross_entropy(c_logit.reshape(-1, n_colors), col.reshape(-1))
            + F.cross_entropy(s_logit.reshape(-1, s_logit.shape[-1]), shp.reshape(-1)))
    occ = col >= 0
    c_ok, s_ok = c_logit.argmax(-1) == col, s_logit.argmax(-1) == shp
    counts = {"cells": present.numel(), "present_ok": int(((p_logit > 0).float() == present).sum()),
              "objects": int(occ.sum()), "color_ok": int(c_ok[occ].sum()), "shape_ok": int(s_ok[occ].sum()),
              "both_ok": int((c_ok & s_ok)[occ].sum())}
    return loss, counts


def _accuracies(counts: dict) -> dict:
    return {"presence_acc": counts["present_ok"] / counts["cells"],
            "color_acc": counts["color_ok"] / max(1, counts["objects"]),
            "shape_acc": counts["shape_ok"] / max(1, counts["objects"]),
            "object_acc": counts["both_ok"] / max(1, counts["objects"])}


@torch.no_grad()
def evaluate_encoder(encoder: nn.Module, head: nn.Module, render_cfg: RenderConfig, n_images: int = 1024,
                     seed: int = 12345, batch: int = 256) -> dict:
    """Per-cell presence accuracy and, over occupied cells, colour / shape / both accuracy, on fresh
    images from a fixed evaluation seed (disjoint from the training stream)."""
    encoder.eval(), head.eval()
    renderer, rng = Renderer(render_cfg), np.random.default_rng([seed, 7])
    total: dict[str, int] = {}
    for start in range(0, n_images, batch):
        images, (present, col, shp) = _batch(renderer, min(batch, n_images - start), rng)
        _, counts = _head_loss(head(encoder(images)), present, col, shp, render_cfg.n_colors)
        total = {k: total.get(k, 0) + v for k, v in counts.items()}
    return _accuracies(total)

def pretrain_encoder(kind: str, render_cfg: RenderConfig, steps: int, out_dir: str | Path, seed: int = 0, *,
                     batch_size: int = 64, lr: float = 2e-3, eval_images: int = 1024,
                     log: Callable[[str], None] | None = print, log_every: int = 100) -> dict:
    """Pretrain an embedded encoder ("cnn" or "vit") on rendered shapes and save it as
    out_dir/encoder.safetensors + out_dir/encoder.json. Returns the JSON metadata (with the
    held-out accuracies under "eval"). Training images: N ~ U{1..min(n_colors, n_shapes, cells)}
    objects, distinct colours and shapes, drawn exactly as the binding task draws them."""
    render_cfg = render_cfg.validate()
    if steps < 1 or batch_size < 1:
        raise UserError(f"steps and batch_size must be >= 1 (got {steps}, {batch_size})")
    arch = default_arch(kind, render_cfg)
    torch.manual_seed(seed)
    encoder = build_embedded(kind, arch)
    token_grid = render_cfg.canvas_px // render_cfg.patch_px
    n_out = 1 + render_cfg.n_colors + render_cfg.n_shapes
    head = CellHead(encoder.out_dim, n_out, token_grid, render_cfg.grid)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    renderer = Renderer(render_cfg)
    t0, window = time.time(), {}
    encoder.train(), head.train()
    for step in range(steps):
        images, (present, col, shp) = _batch(renderer, batch_size, step_rng(seed, step, stream=11))
        loss, counts = _head_loss(head(encoder(images)), present, col, shp, render_cfg.n_colors)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        window = {k: window.get(k, 0) + v for k, v in counts.items()}
        if log and ((step + 1) % log_every == 0 or step + 1 == steps):
            acc = _accuracies(window)
            log(f"step {step + 1}/{steps}  loss {loss.item():.4f}  colour {acc['color_acc']:.3f}  "
                f"shape {acc['shape_acc']:.3f}  presence {acc['presence_acc']:.3f}  ({time.time() - t0:.0f}s)")
            window = {}
    train_s = time.time() - t0
    acc = evaluate_encoder(encoder, head, render_cfg, eval_images)
    meta = {
        "kind": kind, "arch": arch, "out_dim": encoder.out_dim,
        "render": config_dict(render_cfg), "shape_names": list(shape_names(render_cfg)),
        "pretrain": {"steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
                     "train_s": round(train_s, 1), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "eval": {"images": eval_images, **{k: round(v, 4) for k, v in acc.items()}},
    }
    stem = save_encoder(out_dir, {"encoder": encoder, "head": head}, meta)
    if log:
        log(f"saved {stem}.safetensors (+ .json): colour {acc['color_acc']:.4f}  shape {acc['shape_acc']:.4f}  "
            f"presence {acc['presence_acc']:.4f}  object {acc['object_acc']:.4f}  train {train_s:.0f}s")
    return {"format": FORMAT, **meta, "path": str(stem)}


def load_encoder_and_head(path: str | Path) -> tuple[nn.Module, nn.Module, dict]:
    """A pretrained encoder with its pretraining head (eval mode): (encoder, head, meta)."""
    encoder, meta = load_encoder(path)
    tensors, _ = load_encoder_file(path)
    rc = config_from_dict(meta["render"])
    head = CellHead(encoder.out_dim, 1 + rc.n_colors + rc.n_shapes, rc.canvas_px // rc.patch_px, rc.grid)
    head.load_state_dict(module_state(tensors, "head"))
    return encoder, head.eval(), meta
