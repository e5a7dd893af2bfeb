"""ResNet-18 cut into per-node bodies (spec section 1), in two variants.

- "official" (default; the authors' Keras network, clearShallowAtEase Experiment/cnn_Vanilla_ResNet.py
  and ResNet_blocks.py): the IoT is a 7x7 stride-2 conv + BN + ReLU; the edge starts with a 3x3
  stride-2 max-pool; the first block of EVERY stage has stride 2, stage 0 included; basic blocks are
  pre-activation (BN -> ReLU -> conv) except the very first conv, whose input the stem has just
  normalised; a block's shortcut takes the block's raw input, through 1x1 conv (stride) + BN when the
  shape changes. Convs have biases (the Keras default). On 32 px the maps are
  stem 16 | pool 8, stage0 4 | stage1 2 | stage2 1, stage3 1.
- "preact" (ours before issue 17; kept as a named variant, CIFAR-style): a 3x3 stride-1 stem conv,
  stage 0 at stride 1, pre-activation blocks whose projection shortcut reads the activated input.
  Maps on 32 px: 32 | 16, 16 | 8 | 4, 2. About 16x the compute of the official network per image.

Partitions (stage index ranges per node; the IoT is the stem, the edge starts with the max-pool):
    1 ("1-4-4-9" conv layers): edge stage 0, fog stage 1, cloud stages 2-3 + head
    2 ("1-8-4-5"):             edge stages 0-1, fog stage 2, cloud stage 3 + head
"""
from __future__ import annotations

import torch
from torch import nn

RESNET_VARIANTS = ("official", "preact")
RESNET_CUTS = {1: {"e": (0, 1), "f": (1, 2), "cloud": (2, 4)},
               2: {"e": (0, 2), "f": (2, 3), "cloud": (3, 4)}}


class OfficialBlock(nn.Module):
    """The official basic block: [BN -> ReLU ->] conv3x3(stride) -> BN -> ReLU -> conv3x3, plus the
    raw input x (through 1x1 conv(stride) + BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, preactivate: bool = True):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in) if preactivate else None
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, c_in, H, W] -> [B, c_out, H/s, W/s]
        out = x if self.bn1 is None else torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus identity (or 1x1 conv of the activated
    input) shortcut; no biases."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + short


def _stages(c: list[int], official: bool) -> list[nn.Sequential]:
    """The four stages of two basic blocks each; the first block of a stage carries its stride."""
    stages, c_in = [], c[0]
    for i, c_out in enumerate(c):
        if official:
            first = OfficialBlock(c_in, c_out, 2, preactivate=i > 0)
            stages.append(nn.Sequential(first, OfficialBlock(c_out, c_out, 1)))
        else:
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out, 1)))
        c_in = c_out
    return stages


def _one(mods: list[nn.Module]) -> nn.Module:
    """A single module as itself (the state-dict keys of runs saved before partition 2 existed)."""
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


def resnet18_bodies(in_channels: int, n_classes: int, width: float = 1.0, variant: str = "official",
                    partition: int = 1) -> dict[str, nn.Module]:
    c = [max(1, int(round(k * width))) for k in (64, 128, 256, 512)]
    official = variant == "official"
    stages, cuts = _stages(c, official), RESNET_CUTS[partition]
    stem = (nn.Sequential(nn.Conv2d(in_channels, c[0], 7, 2, 3), nn.BatchNorm2d(c[0]), nn.ReLU())
            if official else nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False))
    head = [nn.BatchNorm2d(c[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[3], n_classes)]
    return {
        "iot": stem,                                                       # [B, 64w, H/2, W/2] (official)
        "e": nn.Sequential(nn.MaxPool2d(3, 2, 1), *stages[slice(*cuts["e"])]),
        "f": _one(stages[slice(*cuts["f"])]),
        "cloud": nn.Sequential(*stages[slice(*cuts["cloud"])], *head),   # -> [B, n_classes]
    }
