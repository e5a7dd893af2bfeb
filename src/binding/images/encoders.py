"""Visual encoders (spec §3): a frozen encoder turns the rendered context image into patch tokens, a
trainable projector maps them to d_model, and they take the place of the text context.

    frontend = build_visual_frontend(EncoderConfig(kind="cnn", path="runs/enc-cnn"), d_model, render_cfg)
    tokens = frontend(images)        # images [B, 3, H, W] float in [0, 1] -> [B, frontend.n_tokens, d_model]

Kinds
- "cnn", "vit": small encoders the project pretrains itself on its own rendered shapes (ImageNet or
  DINO weights cannot be downloaded where the project is tested; `pretrain.py` trains them).
  Saved as `encoder.safetensors` + `encoder.json` (architecture and render config inside: the
  encoder is rebuilt from the JSON alone, `load_encoder`).
- "hf": a Hugging Face vision backbone from a local folder (`hf.py`; optional dependency).
- "linear": no frozen encoder; a trainable linear patch embedding (ablation).

The encoder is frozen: its parameters have requires_grad False, it runs under torch.no_grad and
stays in eval mode even when the frontend is put in train mode. The projector (LayerNorm, then a
linear map or a 2-layer MLP) is the trainable part. The encoder is registered as the submodule
`encoder`, so a frontend state_dict holds it under "encoder." (drop those keys to keep checkpoints
small with a large HF backbone; it is rebuilt from its path).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from lab.checkpoint import load_checkpoint, module_state, save_checkpoint
from lab.errors import UserError

from .render import RenderConfig, config_from_dict, palette_rgb

FORMAT = "binding-visual-encoder/1"


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


def build_embedded(kind: str, arch: dict) -> nn.Module:
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

def encoder_stem(path: str | Path) -> Path:
    """A pretrain_encoder output folder, its encoder.json / encoder.safetensors, or the stem."""
    p = Path(path)
    if p.is_dir():
        return p / "encoder"
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p

def load_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a pretrained embedded encoder from its JSON and load its weights (eval mode).
    Returns (encoder, meta); meta is the JSON sidecar (kind, arch, render config, pretraining)."""
    tensors, meta = load_encoder_file(path)
    encoder = build_embedded(meta["kind"], meta["arch"])
    encoder.load_state_dict(module_state(tensors, "encoder"))
    return encoder.eval(), meta


def load_encoder_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and sidecar of a `pretrain_encoder` output (folder, stem or either file)."""
    stem = encoder_stem(path)
    tensors, meta = load_checkpoint(stem)
    if meta.get("format") != FORMAT:
        raise UserError(f"{stem}.json is not a pretrained visual encoder (format {meta.get('format')!r})")
    return tensors, meta


def save_encoder(out_dir: str | Path, modules: dict[str, nn.Module], meta: dict) -> Path:
    """Write modules (encoder, and its pretraining head) under their prefixes + the JSON meta."""
    tensors = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    stem = Path(out_dir) / "encoder"
    save_checkpoint(stem, tensors, {"format": FORMAT, **meta})
    return stem


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
        from .hf import HFBackbone   # needs the optional dependency transformers

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
