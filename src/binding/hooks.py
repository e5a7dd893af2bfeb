"""Named hook points (TransformerLens style) and helpers to read and patch them.

A `HookPoint` is an identity module; a forward hook registered on it can read its activation or
return a replacement. The model names them by their place (`blocks.3.hook_resid_pre`), so an
intervention reads like the paper: "patch resid_pre at the last token, layer by layer".
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks)


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


@contextlib.contextmanager
def hooks(model: nn.Module, fwd_hooks: list[tuple[str, HookFn]]) -> Iterator[None]:
    """Within the block, `fn(activation, name)` runs at each named hook point; a non-None return
    value replaces the activation."""
    points = hook_points(model)
    handles = []
    try:
        for name, fn in fwd_hooks:
            if name not in points:
                raise KeyError(f"no hook point {name!r}; known: {sorted(points)[:8]} ...")
            handles.append(points[name].register_forward_hook(
                lambda mod, inp, out, fn=fn, name=name: fn(out, name)))
        yield
    finally:
        for h in handles:
            h.remove()


def run_with_cache(model: nn.Module, names: list[str], *args, detach: bool = True, **kwargs
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the model and return (output, {hook name: activation})."""
    cache: dict[str, torch.Tensor] = {}

    def save(x: torch.Tensor, name: str) -> None:
        cache[name] = x.detach() if detach else x

    with hooks(model, [(n, save) for n in names]):
        out = model(*args, **kwargs)
    return out, cache
