"""The three DNNs of the paper, cut into per-node bodies (spec section 1).

Each builder returns {node name: nn.Module} for the nodes of its topology; the module maps the
node's combined input to its output activation (the cloud's ends in class logits).

- Health MLP chain (HEALTH topology: iot, e, f2, f1, cloud). Hidden layers Dense(250)+ReLU.
  Partition 1: edge 1, fog2 2, fog1 3, cloud 4 layers (+ output layer). Partition 2: 2, 3, 2, 3.
  The IoT only senses: its body is the identity (x [B, F]).
- MobileNet v1 (CNN topology: iot, e, f, cloud), width `alpha` (0.75 in the paper). CIFAR strides
  (`small_input=True`): the first conv and depthwise block 2 do not downsample.
  Partition 1 ("1-3-5-5", cnn_Vanilla_MobileNet.py:13): IoT = first conv; edge = blocks 1-3;
  fog = blocks 4-8; cloud = blocks 9-13 + head. Partition 2 ("2-2-4-6"): IoT = first conv +
  block 1; edge = blocks 2-3; fog = blocks 4-7; cloud = blocks 8-13 + head.
- ResNet-18 (CNN topology), the official network and our earlier pre-activation variant: resnet.py.
Input shapes follow the dataset: [B, 1, 28, 28] Fashion-MNIST, [B, 3, 32, 32] CIFAR, [B, F] tabular.
"""
from __future__ import annotations

from torch import nn

MLP_PARTITIONS = {1: {"e": 1, "f2": 2, "f1": 3, "cloud": 4}, 2: {"e": 2, "f2": 3, "f1": 2, "cloud": 3}}

# (pointwise filters at width 1, stride) for the 13 depthwise-separable blocks of MobileNet v1.
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                    (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
# block index ranges [lo, hi) per node and partition; the IoT also holds the first conv
MOBILENET_CUTS = {1: {"iot": (0, 0), "e": (0, 3), "f": (3, 8), "cloud": (8, 13)},
                  2: {"iot": (0, 1), "e": (1, 3), "f": (3, 7), "cloud": (7, 13)}}


def _dense_relu(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.ReLU()]


def mlp_bodies(n_features: int, n_classes: int, hidden: int = 250, partition: int = 1) -> dict[str, nn.Module]:
    layers = MLP_PARTITIONS[partition]
    bodies: dict[str, nn.Module] = {"iot": nn.Identity()}  # x [B, F]
    n_in = n_features
    for node in ("e", "f2", "f1", "cloud"):
        mods: list[nn.Module] = []
        for _ in range(layers[node]):
            mods += _dense_relu(n_in, hidden)
            n_in = hidden
        if node == "cloud":
            mods.append(nn.Linear(hidden, n_classes))  # logits; softmax lives in the loss
        bodies[node] = nn.Sequential(*mods)  # [B, hidden] (cloud: [B, n_classes])
    return bodies


# -- MobileNet v1 -------------------------------------------------------------------------------
def _conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class DepthwiseBlock(nn.Sequential):
    """3x3 depthwise conv -> BN -> ReLU6 -> 1x1 pointwise conv -> BN -> ReLU6."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(_conv_bn(c_in, c_in, 3, stride, groups=c_in), _conv_bn(c_in, c_out, 1, 1))


def mobilenet_bodies(in_channels: int, n_classes: int, alpha: float = 0.75, small_input: bool = True,
                     dropout: float = 1e-3, partition: int = 1) -> dict[str, nn.Module]:
    def width(c: int) -> int:
        return max(1, int(c * alpha))

    blocks, c_in = [], width(32)
    for i, (c, s) in enumerate(MOBILENET_BLOCKS):
        if small_input and i == 1:
            s = 1  # CIFAR variant: block 2 keeps the resolution
        blocks.append(DepthwiseBlock(c_in, width(c), s))
        c_in = width(c)
    cut = {node: blocks[lo:hi] for node, (lo, hi) in MOBILENET_CUTS[partition].items()}
    # [B, C, H, W] -> [B, 32a, H, W] (CIFAR strides) or [B, 32a, H/2, W/2]
    first = _conv_bn(in_channels, width(32), 3, 1 if small_input else 2)
    return {
        "iot": nn.Sequential(first, *cut["iot"]) if cut["iot"] else first,
        "e": nn.Sequential(*cut["e"]),     # partition 1 -> [B, 128a, H, W] (CIFAR strides)
        "f": nn.Sequential(*cut["f"]),     # partition 1 -> [B, 512a, H/4, W/4]
        "cloud": nn.Sequential(*cut["cloud"],  # -> [B, 1024a, H/8, W/8]
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                               nn.Linear(c_in, n_classes)),  # -> [B, n_classes]
    }


def conv_projection(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nn.Module:
    """The learned part of a skip hyperconnection between conv nodes: a 1x1 conv without bias,
    strided to match the consumer's expected resolution (computed on the sending node)."""
    (c_in, h_in, w_in), (c_out, h_out, w_out) = in_shape, out_shape
    if (c_in, h_in, w_in) == (c_out, h_out, w_out):
        return nn.Identity()
    stride = -(-h_in // h_out)  # ceil
    if (h_in - 1) // stride + 1 != h_out or (w_in - 1) // stride + 1 != w_out:
        raise ValueError(f"cannot match {in_shape} to {out_shape} with a strided 1x1 conv")
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


def linear_projection(n_in: int, n_out: int) -> nn.Module:
    """Health skips: IoT->f2 maps raw features to hidden units (a linear layer); the other Health
    skips connect equal widths and need no projection."""
    return nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out)


def keras_init(module: nn.Module, he: bool = False) -> None:
    """Keras-parity initialisation: glorot-uniform weights (he-normal for ResNet), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            (nn.init.kaiming_normal_ if he else nn.init.xavier_uniform_)(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def set_batchnorm(module: nn.Module, momentum: float, eps: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = momentum, eps
