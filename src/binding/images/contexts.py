"""Context variants of the task (spec §3, §4): noise tokens in the text context, and the context as an image.

Both start from a text example (`task.Batch`) and change only what sits between <bos> and [CTX_END];
associations and query stay text, and the answer is the same item.

Noise (spec §4). K = max(0, fill_to - 2N) <noise> tokens are inserted between the (colour, shape)
pairs, at random gaps (a pair is never split), so the context always spans at least `fill_to`
positions. They are *unattendable* (the model's `attendable` mask: no other position may attend
to them) and carry no loss, so they change only the positions, hence the query-to-context
distances, that the real tokens sit at. Worked example (N = 2, fill_to = 6; 2 noise tokens):

    <bos> <noise> rgb012 shape041 <noise> rgb530 shape007 [CTX_END] shape007 pear shape041 key [QUE] rgb530

Image (spec §3). The N objects are drawn on a canvas (`render.Renderer`, random cells), a frozen
encoder + trainable projector (`encoders.build_visual_frontend`) turns the image into n_tokens patch
tokens [B, n_tokens, d_model], and they take positions 1..n_tokens:

    <bos> [img_1 ... img_K] [CTX_END] s_p(1) t_p(1) ... s_p(N) t_p(N) [QUE] c_q      (K = n_tokens)

The token id at image positions is <pad> (never embedded: `input_embeds` replaces it). The image's
colour/shape vocabularies may be smaller than the text ones (`image_vocab`): image examples then
draw only the first `render.n_colors` colours and `render.n_shapes` shapes, in text ids.

Feature grounding (spec §3, DEFAULT), both directions, on a fraction of image batches:
    image -> text  at each object's patch token, the final residual read out through the
                   unembedding predicts the object's colour token and its shape token;
    text -> image  at the query colour, a linear `where` head predicts which patch holds the
                   object of that colour.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .encoders import EncoderConfig, build_visual_frontend, object_token_index
from .render import Renderer, RenderConfig
from ..task import BOS, CTX_END, NOISE, PAD, Batch, Layout, TaskConfig, Vocab, sample_batch


@dataclass
class ContextBatch:
    """A model input whose context may hold noise or image tokens; `text` keeps the symbols."""
    text: Batch                     # the source example (answer, hop_target, colours, shapes, ...)
    tokens: torch.Tensor            # [B, T] int64
    query_pos: torch.Tensor         # [B] position of the query colour
    text_mask: torch.Tensor         # [B, T] bool: a real text token (not pad, noise or image)
    attendable: torch.Tensor | None = None   # [B, T] bool, False at noise tokens
    images: torch.Tensor | None = None       # [B, 3, H, W] float in [0, 1]
    n_image_tokens: int = 0                  # image tokens occupy positions 1..n_image_tokens
    object_token: torch.Tensor | None = None  # [B, Nmax] patch index of each object (-1 = none)

    @property
    def mode(self) -> str:
        return "image" if self.images is not None else "noise" if self.attendable is not None else "text"

    def __len__(self) -> int:
        return self.tokens.shape[0]


def as_context(batch: Batch) -> ContextBatch:
    """A plain text batch."""
    return ContextBatch(batch, batch.tokens, batch.query_pos, batch.tokens != PAD)


def _tail(batch: Batch) -> list[list[int]]:
    """Each row's tokens from [CTX_END] to the query colour, inclusive."""
    out = []
    for i in range(len(batch)):
        lay = Layout(int(batch.n[i]))
        out.append(batch.tokens[i, lay.ctx_end: lay.length].tolist())
    return out


def _pack(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
    return out


def add_noise(batch: Batch, fill_to: int, rng: np.random.Generator) -> ContextBatch:
    """Insert max(0, fill_to - 2N) unattendable <noise> tokens at random gaps between context pairs."""
    lay = Layout(0)                                                # object positions do not depend on N
    rows, noise_rows = [], []
    for i, tail in enumerate(_tail(batch)):
        n = int(batch.n[i])
        k = max(0, fill_to - 2 * n)
        is_noise = np.zeros(n + k, dtype=bool)                      # unit order: objects keep theirs
        is_noise[rng.choice(n + k, size=k, replace=False)] = True
        seq, noise, obj = [BOS], [False], 0
        for unit_is_noise in is_noise:
            if unit_is_noise:
                seq.append(NOISE)
                noise.append(True)
            else:
                seq += batch.tokens[i, lay.color(obj): lay.shape(obj) + 1].tolist()
                noise += [False, False]
                obj += 1
        rows.append(seq + tail)
        noise_rows.append(noise + [False] * len(tail))
    tokens = _pack(rows)
    noise_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, m in enumerate(noise_rows):
        noise_mask[i, :len(m)] = torch.tensor(m)
    query_pos = torch.tensor([len(r) - 1 for r in rows])
    return ContextBatch(batch, tokens, query_pos, (tokens != PAD) & ~noise_mask, attendable=~noise_mask)


def image_vocab(task: TaskConfig, render: RenderConfig) -> TaskConfig:
    """The task as image examples can draw it: colours and shapes limited to what the renderer draws."""
    n_colors, n_shapes = min(task.n_colors, render.n_colors), min(task.n_shapes, render.n_shapes)
    cap = min(n_colors, n_shapes, task.n_items)

    def clip(r: tuple[int, int]) -> tuple[int, int]:   # image examples are drawn with train_n or a given
        return min(r[0], cap), min(r[1], cap)          # N: the evaluation ranges need only stay valid

    return dataclasses.replace(task, n_colors=n_colors, n_shapes=n_shapes, id_n=clip(task.id_n),
                               ood_n=clip(task.ood_n))


def to_image(batch: Batch, renderer: Renderer, token_hw: tuple[int, int], rng: np.random.Generator,
             task: TaskConfig) -> ContextBatch:
    """Replace the text context by n_tokens image positions; draw the image of the N objects.

    `batch` must come from `image_vocab(task, ...)` sampling; its tokens are re-read in `task` ids."""
    voc = Vocab.of(task)
    if int(batch.colors.max()) >= renderer.cfg.n_colors or int(batch.shapes.max()) >= renderer.cfg.n_shapes:
        raise ValueError("image batch uses colours/shapes beyond the rendered vocabulary (use image_vocab)")
    k = token_hw[0] * token_hw[1]
    rows = []
    for i in range(len(batch)):
        n = int(batch.n[i])
        order = batch.assoc_order[i, :n]
        assoc = []
        for obj in order.tolist():
            assoc += [voc.shape0 + int(batch.shapes[i, obj]), voc.item0 + int(batch.items[i, obj])]
        # [QUE] (or a first-hop query's marker), then the query colour (or shape, for a one-hop query)
        text, image = Layout(n), Layout(n, context_len=k)
        marker, query = batch.tokens[i, text.que: text.length].tolist()
        row = [BOS] + [PAD] * k + [CTX_END] + assoc + [marker, query]
        assert len(row) == image.length and row[image.ctx_end] == CTX_END
        rows.append(row)
    tokens = _pack(rows)
    images, positions = renderer.render(batch.colors.numpy(), batch.shapes.numpy(), batch.n.numpy(), rng,
                                        as_tensor=True)
    obj_tok = torch.from_numpy(object_token_index(positions, renderer.cfg, token_hw))
    text_mask = tokens != PAD
    text_mask[:, 0] = True
    query_pos = torch.tensor([len(r) - 1 for r in rows])
    return ContextBatch(batch, tokens, query_pos, text_mask, images=images, n_image_tokens=k, object_token=obj_tok)


class ImageSide(nn.Module):
    """The frozen encoder + trainable projector, and the text -> image grounding head."""

    def __init__(self, enc: EncoderConfig, render: RenderConfig, d_model: int):
        super().__init__()
        self.frontend = build_visual_frontend(enc, d_model, render)
        self.where = nn.Linear(d_model, self.frontend.n_tokens)
        self.renderer = Renderer(render)

    @property
    def token_hw(self) -> tuple[int, int]:
        return self.frontend.token_hw


def model_inputs(cb: ContextBatch, d_model: int, image_side: ImageSide | None, device: str) -> dict:
    """Keyword arguments for `Transformer.forward` (tokens, attendable, input_embeds, embeds_at)."""
    kw = {"tokens": cb.tokens.to(device)}
    if cb.attendable is not None:
        kw["attendable"] = cb.attendable.to(device)
    if cb.images is not None:
        b, t = cb.tokens.shape
        patches = image_side.frontend(cb.images.to(device))                      # [B, K, D]
        embeds = torch.zeros(b, t, d_model, device=device, dtype=patches.dtype)
        embeds[:, 1:1 + cb.n_image_tokens] = patches
        at = torch.zeros(b, t, dtype=torch.bool, device=device)
        at[:, 1:1 + cb.n_image_tokens] = True
        kw.update(input_embeds=embeds, embeds_at=at)
    return kw


def grounding_loss(model, image_side: ImageSide, cb: ContextBatch, resid: torch.Tensor, task: TaskConfig,
                   device: str, input_embeds: torch.Tensor | None = None, embed_weight: float = 0.0
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Both grounding directions from the final residual stream resid [B, T, D]; with embed_weight,
    also pull each object's projected patch token toward embed(colour) + embed(shape) (input level)."""
    voc = Vocab.of(task)
    b_idx, o_idx = torch.nonzero(cb.object_token >= 0, as_tuple=True)
    pos = (1 + cb.object_token[b_idx, o_idx]).to(device)                          # image positions
    logits = model.readout(resid[b_idx.to(device), pos])                          # [M, V]
    colour_t = (voc.color0 + cb.text.colors[b_idx, o_idx]).to(device)
    shape_t = (voc.shape0 + cb.text.shapes[b_idx, o_idx]).to(device)
    img2text = F.cross_entropy(logits, colour_t) + F.cross_entropy(logits, shape_t)
    if embed_weight > 0 and input_embeds is not None:
        target = (model.embed(colour_t) + model.embed(shape_t)).detach()         # [M, D]
        img2text = img2text + embed_weight * F.mse_loss(input_embeds[b_idx.to(device), pos], target)
    rows = torch.arange(len(cb))
    where_t = cb.object_token[rows, cb.text.query_slot].to(device)                 # [B]
    where_logits = image_side.where(resid[rows.to(device), cb.query_pos.to(device)])
    text2img = F.cross_entropy(where_logits, where_t)
    return img2text + text2img, {"ground_img2text": img2text.item(), "ground_text2img": text2img.item()}


def sample_context(mode: str, task: TaskConfig, batch_size: int, rng: np.random.Generator, *,
                   noise_fill_to: int = 0, image_side: ImageSide | None = None, n_range=None,
                   split: str = "train", one_hop_fraction: float = 0.0,
                   first_hop_fraction: float = 0.0) -> ContextBatch:
    """One batch of `mode` text | noise | image (mix stages choose the mode per batch)."""
    if mode == "image":
        small = image_vocab(task, image_side.renderer.cfg)
        batch = sample_batch(small, batch_size, rng, n_range, split, one_hop_fraction, first_hop_fraction)
        batch = _retokenize(batch, small, task)
        return to_image(batch, image_side.renderer, image_side.token_hw, rng, task)
    batch = sample_batch(task, batch_size, rng, n_range, split, one_hop_fraction, first_hop_fraction)
    if mode == "noise":
        return add_noise(batch, noise_fill_to, rng)
    return as_context(batch)


def _retokenize(batch: Batch, small: TaskConfig, task: TaskConfig) -> Batch:
    """Token ids of a batch sampled with a smaller vocabulary, rewritten in the full vocabulary."""
    if small == task:
        return batch
    a, b = Vocab.of(small), Vocab.of(task)
    t = batch.tokens.clone()
    for lo, hi, new in ((a.color0, a.shape0, b.color0), (a.shape0, a.item0, b.shape0), (a.item0, a.size, b.item0)):
        sel = (batch.tokens >= lo) & (batch.tokens < hi)
        t[sel] = batch.tokens[sel] - lo + new
    ans = torch.where(batch.answer >= a.item0, batch.answer - a.item0 + b.item0,   # a first-hop query's
                      batch.answer - a.shape0 + b.shape0)                          # answer is a shape
    hop = batch.hop_target - a.shape0 + b.shape0
    return dataclasses.replace(batch, tokens=t, answer=ans, hop_target=hop)
