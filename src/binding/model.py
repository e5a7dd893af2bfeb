"""Model: a decoder-only transformer trained from scratch (spec §2).

Pre-LN blocks (attention, then a GELU MLP), no dropout, positional encoding `rope` (default, as in
the paper), `nope` (none: causal masking alone) or `learned` (absolute embeddings).

Hook points (read them with `hooks.run_with_cache`, patch them with `hooks.hooks`):
    hook_embed                       [batch, pos, d_model]  token (or given) embeddings (+ learned pos)
    blocks.{l}.hook_resid_pre        [batch, pos, d_model]  residual stream entering block l
    blocks.{l}.attn.hook_attn_scores [batch, head, q, k]    pre-softmax scores, masked entries -inf
    blocks.{l}.attn.hook_pattern     [batch, head, q, k]    attention probabilities
    blocks.{l}.hook_attn_out         [batch, pos, d_model]  attention output added to the residual
    blocks.{l}.hook_mlp_out          [batch, pos, d_model]  MLP output added to the residual
    blocks.{l}.hook_resid_post       [batch, pos, d_model]  block output (= resid_pre of block l+1)
When a score or pattern hook is registered, attention is computed explicitly; otherwise it runs
through PyTorch's fused `scaled_dot_product_attention`.

Two inputs beyond tokens:
    attendable [batch, pos] bool  False marks positions no *other* query may attend to (noise tokens).
                                  A position still attends to itself, so no attention row is empty.
    input_embeds [batch, pos, d_model] with embeds_at [batch, pos] bool: at those positions the
                                  given vectors replace the token embeddings (image patch tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import UserError

from .hooks import HookPoint

PosEncoding = Literal["rope", "nope", "learned"]
ATTN_INITS = ("default", "mimetic")
# Mimetic initialisation (Trockman & Kolter 2023, "Mimetic initialization of self-attention layers"):
# the values they use for Vision Transformers; W_q W_k^T = a Z + b I, W_v W_o = a Z - b I.
MIMETIC_QK = (0.7, 0.7)
MIMETIC_VO = (0.4, 0.4)


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = field(default=12, metadata={"help": "transformer blocks"})
    d_model: int = field(default=128, metadata={"help": "residual stream width"})
    n_heads: int = field(default=4, metadata={"help": "attention heads"})
    d_ff: int = field(default=512, metadata={"help": "MLP hidden width"})
    pos_encoding: PosEncoding = field(default="rope", metadata={"help": "rope | nope | learned"})
    max_len: int = field(default=512, metadata={"help": "longest sequence (learned positions, RoPE cache)"})
    rope_base: float = field(default=10000.0, metadata={"help": "RoPE frequency base"})
    tie_embeddings: bool = field(default=False, metadata={"help": "unembedding shares the token embedding"})
    init_std: float = field(default=0.02, metadata={
        "help": "normal init std of linear and embedding weights (0 = PyTorch's default inits)"})
    attn_init: str = field(default="default", metadata={
        "help": "default | mimetic: attention starts with W_q W_k^T ~ 0.7 I and W_v W_o ~ -0.4 I plus noise "
                "(Trockman & Kolter 2023), so equal tokens attract from step 0"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "ModelConfig":
        if min(self.n_layers, self.d_model, self.n_heads, self.d_ff) < 1:
            raise UserError("model.n_layers, d_model, n_heads and d_ff must all be >= 1")
        if self.d_model % self.n_heads:
            raise UserError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")
        if self.attn_init not in ATTN_INITS:
            raise UserError(f"model.attn_init must be one of {ATTN_INITS}, got {self.attn_init!r}")
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise UserError(f"RoPE needs an even head dimension; d_model/n_heads = {self.d_model // self.n_heads}")
        return self


def rope_tables(head_dim: int, max_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.arange(max_len, dtype=torch.float32)[:, None] * inv[None, :]   # [T, hd/2]
    ang = torch.cat([ang, ang], dim=-1)                                           # [T, hd]
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, hd]; rotate pairs (i, i + hd/2) by position-dependent angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _factor(alpha: float, beta: float, d: int, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, R) with L @ R = alpha Z + sign beta I, Z ~ N(0, 1/d), singular values shared evenly;
    columns of L (rows of R) in order of decreasing singular value."""
    m = alpha * torch.randn(d, d) / math.sqrt(d) + sign * beta * torch.eye(d)
    u, s, vh = torch.linalg.svd(m)
    return u * s.sqrt(), s.sqrt()[:, None] * vh


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()

    @torch.no_grad()
    def mimetic_init(self) -> None:
        """Per head, W_q^T W_k (d x d, rank head_dim) is the best rank-head_dim approximation of
        a Z + b I, Z ~ N(0, 1/d) (equal tokens attract); over all heads, W_v^T W_o^T = a Z - b I
        (an attended token's own features come back with a minus sign). The factors come from an
        SVD, split evenly (U sqrt(S), sqrt(S) V^T). Biases start at zero."""
        d, hd = self.qkv.in_features, self.head_dim
        w = self.qkv.weight.view(3, self.n_heads, hd, d)           # [q|k|v, head, hd, d]
        for h in range(self.n_heads):
            left, right = _factor(*MIMETIC_QK, d, sign=1.0)
            w[0, h], w[1, h] = left[:, :hd].T, right[:hd]
        left, right = _factor(*MIMETIC_VO, d, sign=-1.0)         # x W_v^T W_o^T = x (a Z - b I)
        w[2] = left.T.reshape(self.n_heads, hd, d)
        self.out.weight.copy_(right.T)
        self.qkv.bias.zero_()
        self.out.bias.zero_()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rope: tuple[torch.Tensor, torch.Tensor] | None
                ) -> torch.Tensor:
        """mask: [B or 1, 1, T, T] bool (True = may attend), or None for plain causal attention."""
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3,B,H,T,hd]
        if rope is not None:  # rotate q and k in one call: fewer small ops, which dominate on CPU
            q, k = apply_rope(qkv[:2], *rope).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        if self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks():
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)            # [B,H,T,T]
            if mask is None:
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            y = pattern @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rope) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x), mask, rope))
        x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.pos_encoding == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.hook_embed = HookPoint()
        if cfg.pos_encoding == "rope":
            cos, sin = rope_tables(cfg.d_model // cfg.n_heads, cfg.max_len, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if cfg.init_std > 0:
            self.apply(self._init)
        if cfg.attn_init == "mimetic":
            for block in self.blocks:
                block.attn.mimetic_init()
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.cfg.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def attention_mask(self, t: int, attendable: torch.Tensor | None, device) -> torch.Tensor | None:
        """[B, 1, T, T] bool, True = may attend: causal, minus unattendable keys (but self).
        None when every position is attendable: plain causal attention (the fused kernel's fast path)."""
        if attendable is None:
            return None
        causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
        eye = torch.eye(t, dtype=torch.bool, device=device)
        return (causal & (attendable[:, None, :] | eye))[:, None]

    def forward(self, tokens: torch.Tensor, attendable: torch.Tensor | None = None,
                input_embeds: torch.Tensor | None = None, embeds_at: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, return_resid: bool = False):
        """tokens [B, T] -> logits [B, T, V], or [B, V] at `positions` [B] when given.

        With return_resid=True also returns the final residual stream [B, T, d_model].
        """
        b, t = tokens.shape
        if t > self.cfg.max_len:
            raise UserError(f"sequence of {t} tokens exceeds model.max_len={self.cfg.max_len}")
        x = self.embed(tokens)                                                     # [B, T, D]
        if input_embeds is not None:
            x = torch.where(embeds_at[..., None], input_embeds.to(x.dtype), x)
        if self.pos_embed is not None:
            x = x + self.pos_embed.weight[:t]
        x = self.hook_embed(x)
        return self.run_blocks(x, 0, attendable, positions, return_resid)

    def run_blocks(self, x: torch.Tensor, start: int, attendable: torch.Tensor | None = None,
                   positions: torch.Tensor | None = None, return_resid: bool = False):
        """Blocks start.. on the residual stream x [B, T, D] entering block `start`, then the readout
        (as in forward). Interventions use it to resume a run from a patched residual."""
        b, t, _ = x.shape
        rope = (self.rope_cos[:t], self.rope_sin[:t]) if self.cfg.pos_encoding == "rope" else None
        mask = self.attention_mask(t, attendable, x.device)
        for block in self.blocks[start:]:
            x = block(x, mask, rope)
        resid = x
        if positions is not None:
            x = x[torch.arange(b, device=x.device), positions]                     # [B, D]
        logits = self.readout(x)
        return (logits, resid) if return_resid else logits

    def readout(self, resid: torch.Tensor) -> torch.Tensor:
        """Final layer norm + unembedding; also used to read intermediate layers (logit lens)."""
        return self.unembed(self.ln_f(resid))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
