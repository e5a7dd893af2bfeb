"""Visual encoders (spec §3): a frozen encoder turns the rendered context image into patch tokens, a
trainable projector maps them to d_model, and they take the place of the text context.

    frontend = build_visual_frontend(EncoderConfig(kind="cnn", path="runs/enc-cnn"), d_model, render_cfg)
    tokens = frontend(images)        # images [B, 3, H, W] float in [0, 1] -> [B, frontend.n_tokens, d_model]

Kinds
- "cnn", "vit": small encoders the project pretrains itself on its own rendered shapes (ImageNet or
  DINO weights cannot be downloaded where the project is tested). `pretrain_encoder` trains one to
  read, for every grid cell, whether an object is there and its colour and shape, through *linear*
  heads on the patch tokens, so the frozen tokens carry colour and shape per location in a linearly
  decodable form. Saved as `encoder.safetensors` + `encoder.json` (architecture and render config
  inside: the encoder is rebuilt from the JSON alone).
- "hf": a Hugging Face vision backbone (ViT, DINOv2, DINOv3, ResNet, ...) loaded from a local folder
  with `AutoModel.from_pretrained(path, local_files_only=True)`; needs the optional dependency
  `transformers`. Tokens: `last_hidden_state` without the CLS/register tokens for transformers, the
  flattened last feature map for CNNs. Images are resized to `hf_image_px` and normalised with the
  folder's preprocessor_config.json mean/std (ImageNet's when absent).
- "linear": no frozen encoder; a trainable linear patch embedding (ablation).

The encoder is frozen: its parameters have requires_grad False, it runs under torch.no_grad and
stays in eval mode even when the frontend is put in train mode. The projector (LayerNorm, then a
linear map or a 2-layer MLP) is the trainable part. The encoder is registered as the submodule
`encoder`, so a frontend state_dict holds it under "encoder." (drop those keys to keep checkpoints
small with a large HF backbone; it is rebuilt from its path).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lab.checkpoint import load_checkpoint, save_checkpoint
from lab.errors import UserError
from lab.seeding import step_rng

from .render import RenderConfig, Renderer, config_dict, config_from_dict, palette_rgb, random_objects, shape_names

FORMAT = "binding-visual-encoder/1"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    kind: Literal["cnn", "vit", "linear", "hf"] = field(default="cnn", metadata={
        "help": "cnn/vit: pretrained by pretrain_encoder; hf: local Hugging Face folder; linear: trainable patch embedding"})
    path: str = field(default="", metadata={
        "help": "cnn/vit: pretrain_encoder output folder (or its encoder.json); hf: local model folder"})
    projector: Literal["linear", "mlp"] = field(default="mlp", metadata={"help": "trainable map to d_model"})
    hf_image_px: int = field(default=0, metadata={
        "help": "hf: input side in px (0 = the backbone's config.image_size, else 224)"})


# ---------------------------------------------------------------------------------------------
# Embedded encoders: images [B, 3, H, W] in [0, 1] -> tokens [B, T, C], T = (H/patch_px) * (W/patch_px)


class ShapeCNN(nn.Module):
    """Patchify stem, then two stride-2 stages of 3x3 convs: one token per patch_px x patch_px patch."""

    def __init__(self, patch_px: int = 16, widths: tuple[int, int, int] = (32, 64, 128), n_down: int = -1):
        super().__init__()
        if n_down < 0:  # stride-2 stages: up to 2, as the patch allows, keeping the stem stride >= 4
            n_down = min(2, (patch_px & -patch_px).bit_length() - 1, max(0, int(math.log2(patch_px / 4))))
        stem = patch_px // 2 ** n_down
        self.patch_px, self.out_dim = patch_px, widths[-1]
        self.arch = {"patch_px": patch_px, "widths": list(widths), "n_down": n_down}
        # BatchNorm, not GroupNorm: frozen (eval) it is a fixed per-channel affine map, so a cell's
        # features never depend on the other objects in the image beyond the receptive field.
        def conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, stride=stride, padding=(k // 2 if stride < k else 0), bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        layers = conv(3, widths[0], stem, stem) if stem > 1 else conv(3, widths[0], 3)
        layers += conv(widths[0], widths[0], 3)
        for i in range(n_down):
            layers += conv(widths[i], widths[i + 1], 3, 2) + conv(widths[i + 1], widths[i + 1], 3)
        layers += [nn.Conv2d(widths[n_down], self.out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images - 0.5)  # [B, C, H/p, W/p]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_map(images).flatten(2).transpose(1, 2)  # [B, T, C]

    def token_hw(self, canvas_px: int) -> tuple[int, int]:
        return canvas_px // self.patch_px, canvas_px // self.patch_px


class ShapeViT(nn.Module):
    """Linear patch embedding + learned position embedding + pre-LN transformer blocks; no CLS token."""

    def __init__(self, canvas_px: int = 64, patch_px: int = 16, dim: int = 128, depth: int = 3, heads: int = 4):
        super().__init__()
        self.patch_px, self.grid, self.out_dim = patch_px, canvas_px // patch_px, dim
        self.arch = {"canvas_px": canvas_px, "patch_px": patch_px, "dim": dim, "depth": depth, "heads": heads}
        self.embed = nn.Linear(3 * patch_px * patch_px, dim)
        self.pos = nn.Parameter(torch.randn(self.grid * self.grid, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        p = self.patch_px
        if H != W or H // p != self.grid:
            raise UserError(f"this ViT encoder was built for {self.grid * p}-px images, got {H}x{W}")
        x = (images - 0.5).unfold(2, p, p).unfold(3, p, p)  # [B, 3, g, g, p, p]
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(B, self.grid * self.grid, 3 * p * p)
        return self.norm(self.blocks(self.embed(x) + self.pos))  # [B, T, dim]

    def token_hw(self, canvas_px: int) -> tuple[int, int]:
        return self.grid, self.grid


def _build_embedded(kind: str, arch: dict) -> nn.Module:
    if kind == "cnn":
        return ShapeCNN(arch["patch_px"], tuple(arch["widths"]), arch.get("n_down", -1))
    if kind == "vit":
        return ShapeViT(arch["canvas_px"], arch["patch_px"], arch["dim"], arch["depth"], arch["heads"])
    raise UserError(f"unknown embedded encoder kind {kind!r}; expected 'cnn' or 'vit'")


def default_arch(kind: str, render: RenderConfig) -> dict:
    if kind == "cnn":
        return ShapeCNN(render.patch_px).arch
    if kind == "vit":
        return {"canvas_px": render.canvas_px, "patch_px": render.patch_px, "dim": 128, "depth": 3, "heads": 4}
    raise UserError(f"pretrain_encoder kind must be 'cnn' or 'vit', got {kind!r}")


# ---------------------------------------------------------------------------------------------
# Pretraining: per grid cell, is an object there, and which colour and shape is it?


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


def encoder_stem(path: str | Path) -> Path:
    """A pretrain_encoder output folder, its encoder.json / encoder.safetensors, or the stem."""
    p = Path(path)
    if p.is_dir():
        return p / "encoder"
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


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
    encoder = _build_embedded(kind, arch)
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
        "format": FORMAT, "kind": kind, "arch": arch, "out_dim": encoder.out_dim,
        "render": config_dict(render_cfg), "shape_names": list(shape_names(render_cfg)),
        "pretrain": {"steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
                     "train_s": round(train_s, 1), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "eval": {"images": eval_images, **{k: round(v, 4) for k, v in acc.items()}},
    }
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
    stem = Path(out_dir) / "encoder"
    save_checkpoint(stem, tensors, meta)
    if log:
        log(f"saved {stem}.safetensors (+ .json): colour {acc['color_acc']:.4f}  shape {acc['shape_acc']:.4f}  "
            f"presence {acc['presence_acc']:.4f}  object {acc['object_acc']:.4f}  train {train_s:.0f}s")
    return {**meta, "path": str(stem)}


def load_encoder(path: str | Path, with_head: bool = False):
    """Rebuild a pretrained embedded encoder from its JSON and load its weights.
    Returns (encoder, meta), or (encoder, head, meta) with with_head; both in eval mode."""
    stem = encoder_stem(path)
    tensors, meta = load_checkpoint(stem)
    if meta.get("format") != FORMAT:
        raise UserError(f"{stem}.json is not a pretrained visual encoder (format {meta.get('format')!r})")
    encoder = _build_embedded(meta["kind"], meta["arch"])
    encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
    encoder.eval()
    if not with_head:
        return encoder, meta
    rc = config_from_dict(meta["render"])
    head = CellHead(encoder.out_dim, 1 + rc.n_colors + rc.n_shapes, rc.canvas_px // rc.patch_px, rc.grid)
    head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    return encoder, head.eval(), meta


def check_render_compatible(meta: dict, run: RenderConfig) -> None:
    """The run must draw only what the encoder saw in pretraining: same cell/sprite/patch sizes and
    background, its colours a subset of the encoder's, its shapes a prefix of the encoder's."""
    pre = config_from_dict(meta["render"])
    problems = [f"{f}={getattr(run, f)} (encoder: {getattr(pre, f)})"
                for f in ("cell_px", "sprite_px", "patch_px", "background_rgb", "min_diff_px")
                if getattr(run, f) != getattr(pre, f)]
    if meta["kind"] == "vit" and run.canvas_px != pre.canvas_px:
        problems.append(f"canvas_px={run.canvas_px} (ViT encoder: {pre.canvas_px})")
    if not problems:
        seen = {tuple(c) for c in palette_rgb(pre).tolist()}
        unseen = [i for i, c in enumerate(palette_rgb(run).tolist()) if tuple(c) not in seen]
        if unseen:
            problems.append(f"colour ids {unseen[:5]}{'...' if len(unseen) > 5 else ''} have RGB values the "
                            "encoder never saw")
        if run.n_shapes > pre.n_shapes:
            problems.append(f"n_shapes={run.n_shapes} (encoder saw {pre.n_shapes})")
    if problems:
        raise UserError("render config does not match the pretrained encoder: " + "; ".join(problems)
                        + ". Pretrain an encoder for this render config.")


# ---------------------------------------------------------------------------------------------
# Hugging Face backbones (optional dependency)


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("encoder kind 'hf' needs the optional dependency transformers: "
                        "pip install 'seeing-resilient[hf]' (or pip install transformers)") from None
    return transformers


class HFBackbone(nn.Module):
    """A local Hugging Face vision model as a token encoder: images [B,3,H,W] in [0,1] -> [B, T, C]."""

    def __init__(self, path: str | Path, image_px: int = 0):
        super().__init__()
        transformers = _import_transformers()
        path = Path(path)
        if not (path / "config.json").exists():
            raise UserError(f"no Hugging Face model folder at {path} (config.json missing); "
                            "save one with model.save_pretrained(path)")
        hf_log = transformers.utils.logging
        verbosity, bars = hf_log.get_verbosity(), hf_log.is_progress_bar_enabled()
        hf_log.set_verbosity_error()  # no load report about an unused pooler, no progress bars
        hf_log.disable_progress_bar()
        try:
            self.model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot load a Hugging Face model from {path}: {e}") from None
        finally:
            hf_log.set_verbosity(verbosity)
            if bars:
                hf_log.enable_progress_bar()
        cfg = self.model.config
        size = getattr(cfg, "image_size", None)
        size = size[0] if isinstance(size, (list, tuple)) else size
        self.image_px = image_px or size or 224
        self.patch_size = getattr(cfg, "patch_size", None)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        pp = path / "preprocessor_config.json"
        if pp.exists():
            pj = json.loads(pp.read_text())
            mean, std = pj.get("image_mean", mean), pj.get("image_std", std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        params = inspect.signature(self.model.forward).parameters
        self._interpolate = "interpolate_pos_encoding" in params and size is not None and self.image_px != size
        self.arch = {"path": str(path), "model_type": cfg.model_type, "image_px": self.image_px}
        with torch.no_grad():
            t = self.forward(torch.zeros(1, 3, self.image_px, self.image_px))
        self.n_tokens, self.out_dim = t.shape[1], t.shape[2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if x.shape[-2:] != (self.image_px, self.image_px):
            x = F.interpolate(x, size=(self.image_px, self.image_px), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate else {}
        h = self.model(pixel_values=x, **kwargs).last_hidden_state
        if h.ndim == 4:  # CNN feature map [B, C, h, w]
            return h.flatten(2).transpose(1, 2)
        if self.patch_size:  # transformer: patches are the last tokens, after CLS (and registers)
            n_patch = (self.image_px // self.patch_size) ** 2
            return h[:, h.shape[1] - n_patch:]
        return h[:, 1:]  # pooled token first, then the spatial map (e.g. DINOv3 ConvNeXt)

    def token_hw(self, canvas_px: int) -> tuple[int, int]:
        side = int(round(math.sqrt(self.n_tokens)))
        return side, self.n_tokens // side


# ---------------------------------------------------------------------------------------------
# The frontend used by the binding model


class VisualFrontend(nn.Module):
    """images [B, 3, H, W] float in [0, 1] -> tokens [B, n_tokens, d_model].

    encoder (frozen, may be None for kind="linear") -> LayerNorm -> projector (trainable)."""

    def __init__(self, encoder: nn.Module | None, in_dim: int, d_model: int, projector: str, n_tokens: int,
                 token_hw: tuple[int, int], patch_px: int = 0):
        super().__init__()
        self.encoder, self.n_tokens, self.token_hw = encoder, n_tokens, token_hw
        if encoder is None:  # linear ablation: the patch embedding is the trainable part
            self.projector = nn.Conv2d(3, d_model, patch_px, stride=patch_px)
        else:
            encoder.requires_grad_(False)
            encoder.eval()
            if projector == "linear":
                self.projector = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d_model))
            elif projector == "mlp":
                self.projector = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d_model), nn.GELU(),
                                               nn.Linear(d_model, d_model))
            else:
                raise UserError(f"projector={projector!r} is not one of ['linear', 'mlp']")

    def train(self, mode: bool = True) -> "VisualFrontend":
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: no dropout / batch-stat updates, ever
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return self.projector(images - 0.5).flatten(2).transpose(1, 2)  # [B, T, d_model]
        with torch.no_grad():
            feats = self.encoder(images)  # [B, T, C]
        return self.projector(feats)  # [B, T, d_model]


def build_visual_frontend(cfg: EncoderConfig, d_model: int, render: RenderConfig) -> VisualFrontend:
    """The frozen encoder + trainable projector for images drawn with `render`."""
    render = render.validate()
    if cfg.kind == "linear":
        g = render.canvas_px // render.patch_px
        return VisualFrontend(None, 3, d_model, cfg.projector, g * g, (g, g), render.patch_px)
    if cfg.kind in ("cnn", "vit"):
        if not cfg.path:
            raise UserError(f"encoder kind {cfg.kind!r} needs encoder.path: pretrain one with "
                            f"`binding pretrain-encoder --kind {cfg.kind} --out DIR`, then set encoder.path=DIR")
        encoder, meta = load_encoder(cfg.path)
        if meta["kind"] != cfg.kind:
            raise UserError(f"{cfg.path} holds a {meta['kind']!r} encoder, but encoder.kind={cfg.kind!r}")
        check_render_compatible(meta, render)
        h, w = encoder.token_hw(render.canvas_px)
        return VisualFrontend(encoder, encoder.out_dim, d_model, cfg.projector, h * w, (h, w))
    if cfg.kind == "hf":
        if not cfg.path:
            raise UserError("encoder kind 'hf' needs encoder.path=<local Hugging Face model folder>")
        encoder = HFBackbone(cfg.path, cfg.hf_image_px)
        return VisualFrontend(encoder, encoder.out_dim, d_model, cfg.projector, encoder.n_tokens,
                              encoder.token_hw(render.canvas_px))
    raise UserError(f"encoder kind {cfg.kind!r} is not one of ['cnn', 'vit', 'linear', 'hf']")


def object_token_index(positions: np.ndarray, render: RenderConfig, token_hw: tuple[int, int]) -> np.ndarray:
    """Token holding the centre of each object's cell: int [B, Nmax] (-1 for empty slots), for the
    feature-grounding auxiliary task. positions: [B, Nmax, 2] grid cells from Renderer.render."""
    h, w = token_hw
    centre = (positions.astype(np.float64) + 0.5) * render.cell_px / render.canvas_px  # in [0, 1)
    idx = np.floor(centre[..., 0] * h).astype(np.int64) * w + np.floor(centre[..., 1] * w).astype(np.int64)
    return np.where(positions[..., 0] >= 0, idx, -1)


def encoder_config_dict(cfg: EncoderConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
