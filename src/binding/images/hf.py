"""Hugging Face vision backbones as frozen encoders (optional dependency `transformers`).

A ViT, DINOv2, DINOv3, ResNet, ... loaded from a local folder with
`AutoModel.from_pretrained(path, local_files_only=True)`. Tokens: `last_hidden_state` without the
CLS/register tokens for transformers, the flattened last feature map for CNNs. Images are resized
to `hf_image_px` and normalised with the folder's preprocessor_config.json mean/std (ImageNet's
when absent).
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lab.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
