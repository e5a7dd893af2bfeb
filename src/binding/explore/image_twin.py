"""Image-context examples of an image-trained run (an image or mix stage, or any stage after one),
each beside its text twin: the same objects, associations and query, the context drawn as an
image (`images.contexts.sample_context("image", ...)`, as the image stages draw their batches).

The run's image side (frozen encoder + trained projector) is rebuilt from its config and the
checkpoint's "image." weights, so the page shows what the model answers on the image and on the
text. The encoder config's path is relative to where training ran; it is also looked for beside
the run's ancestor folders (a `binding reproduce` folder keeps it in OUT/encoder).
"""
from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from lab.checkpoint import load_checkpoint, module_state
from lab.errors import UserError
from lab.io import read_json

from ..evaluate import token_predictor
from ..images.contexts import ImageSide, model_inputs, sample_context
from ..images.render import palette_rgb
from ..run import CHECKPOINT
from ..task import Vocab, describe
from .inputs import ExploredRun

IMAGE_MODES = ("image", "mix")
PER_N = 2


def image_trained(run_dir: Path) -> bool:
    """Whether the stage in run_dir, or a stage before it (stage folders nest), trained on images."""
    for d in [run_dir, *run_dir.resolve().parents]:
        if not (d / "config.json").exists():
            break
        if read_json(d / "config.json", "run config").get("stage", {}).get("mode") in IMAGE_MODES:
            return True
    return False


def _encoder_path(run: ExploredRun) -> str:
    enc = run.cfg.curriculum.encoder
    if not enc.path or Path(enc.path).exists():
        return enc.path
    for d in run.path.resolve().parents:
        if (d / Path(enc.path).name).exists():
            return str(d / Path(enc.path).name)
    raise UserError(f"the encoder {enc.path} of {run.path} is not there (nor beside its parent folders)")


def load_image_side(run: ExploredRun) -> ImageSide:
    cur = run.cfg.curriculum
    enc = dataclasses.replace(cur.encoder, path=_encoder_path(run))
    side = ImageSide(enc, cur.render, run.cfg.model.d_model)
    side.load_state_dict(module_state(load_checkpoint(run.path / CHECKPOINT)[0], "image"))
    return side.eval()


def png_data_uri(image: torch.Tensor) -> str:
    """[3, H, W] float in [0, 1] -> a PNG data URI."""
    from PIL import Image

    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _sides(runs: list[ExploredRun]) -> tuple[list[ImageSide | None], list[str]]:
    sides, notes = [], []
    for run in runs:
        if not image_trained(run.path):
            sides.append(None)
            continue
        try:
            sides.append(load_image_side(run))
        except UserError as e:
            sides.append(None)
            notes.append(f"{run.name}: image side not loaded ({e})")
    return sides, notes


def image_examples(runs: list[ExploredRun], n_values: list[int], seed: int) -> dict | None:
    """Per N that fits the canvas, PER_N image examples with their text twins and every run's answers."""
    sides, notes = _sides(runs)
    if not any(sides) and not notes:
        return None
    maker = next((s for s in sides if s is not None), None)
    if maker is None:
        return {"examples": [], "note": "; ".join(notes)}
    task, render = runs[0].cfg.task, maker.renderer.cfg
    fits = [n for n in n_values if n <= min(render.max_objects, render.n_colors, render.n_shapes, task.n_items)]
    examples = []
    for n in fits:
        cb = sample_context("image", task, PER_N, np.random.default_rng([seed, n]), image_side=maker,
                            n_range=(n, n), split="eval")
        examples += _entries(cb, runs, sides, maker)
    return {"examples": examples, "note": "; ".join(notes), "render": dataclasses.asdict(render)}


@torch.no_grad()
def _entries(cb, runs: list[ExploredRun], sides: list, maker: ImageSide) -> list[dict]:
    vocab = Vocab.of(runs[0].cfg.task)
    rgb = palette_rgb(maker.renderer.cfg)
    text_preds = [token_predictor(r.model)(cb.text) for r in runs]
    image_preds = [r.model(**model_inputs(cb, r.cfg.model.d_model, s, "cpu"), positions=cb.query_pos).argmax(-1)
                   if s is not None and s.renderer.cfg == maker.renderer.cfg else None for r, s in zip(runs, sides)]
    out = []
    for i in range(len(cb)):
        n = int(cb.text.n[i])
        colours = cb.text.colors[i, :n].tolist()
        out.append({"n": n, "png": png_data_uri(cb.images[i]), "text": describe(cb.text, i, vocab),
                    "answer": int(cb.text.answer[i]),
                    "legend": [[vocab.color0 + c, "#%02x%02x%02x" % tuple(rgb[c])] for c in colours],
                    "text_predictions": [int(p[i]) for p in text_preds],
                    "image_predictions": [None if p is None else int(p[i]) for p in image_preds]})
    return out
