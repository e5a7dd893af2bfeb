"""A partitioned DNN: one `PhysicalNode` module per physical node (spec sections 1-2).

Each node is separately callable, so a distributed runtime can host one per process:

    sent = node(inputs, alive)
    # inputs: {producer name: tensor the producer sent to this node, or None if nothing arrived}
    # alive:  {producer name: 1.0 / 0.0 (or [B] per sample)} (`topology.producer_flags`); a dead
    #         producer's input counts as 0; the IoT's only producer is INPUT, the sensor reading
    # sent:   {consumer name: tensor} -- what this node sends on each outgoing link; skip
    #         projections are computed here, on the SENDING node. The cloud returns {LOGITS: ...}.

`PartitionedModel.forward(x, alive)` runs the whole chain in one process with an alive mask
(`AliveMask.floats()`, or per-sample `alive_columns`): that is the simulation the paper uses, and
what training and evaluation call.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from lab.errors import UserError

from .backbones import conv_projection, keras_init, linear_projection, mlp_bodies, mobilenet_bodies, set_batchnorm
from .config import ModelConfig
from .hyperconnections import METHODS, Alive, combine, hyperconnection_weights
from .resnet import resnet18_bodies
from .topology import INPUT, LOGITS, Topology, parse_skips, topology_for


class PhysicalNode(nn.Module):
    """One physical node: combine producers' inputs by the method's rule, run the node's layers,
    send the activation to each consumer (through a skip projection where one is needed)."""

    def __init__(self, name: str, producers: tuple[str, ...], weights: dict[str, float], rule: str,
                 body: nn.Module, consumers: tuple[str, ...], projections: dict[str, nn.Module]):
        super().__init__()
        self.name, self.producers, self.consumers, self.rule = name, producers, consumers, rule
        self.weights = weights  # {producer: fixed scalar hyperconnection weight}
        self.body = body
        self.projections = nn.ModuleDict(projections)  # {skip consumer: projection}
        self.in_shape: tuple[int, ...] = ()  # per-example shape of the combined input (set by build_model)

    def combine_inputs(self, inputs: Mapping[str, torch.Tensor | None], alive: Mapping[str, Alive]) -> torch.Tensor | None:
        links = [(inputs.get(p), alive.get(p, 1.0), self.weights[p]) for p in self.producers]
        return combine(self.rule, links)

    def forward(self, inputs: Mapping[str, torch.Tensor | None], alive: Mapping[str, Alive],
                batch_size: int | None = None) -> dict[str, torch.Tensor]:
        x = self.combine_inputs(inputs, alive)
        if x is None:  # nothing arrived: the node computes on zeros (as the Keras original does)
            x = self.zero_input(inputs, batch_size)
        h = self.body(x)
        return self.send(h)

    def zero_input(self, inputs: Mapping[str, torch.Tensor | None], batch_size: int | None) -> torch.Tensor:
        ref = next((t for t in inputs.values() if t is not None), None)
        if ref is not None:
            return ref.new_zeros((ref.shape[0], *self.in_shape))
        if batch_size is None:
            raise ValueError(f"node {self.name}: nothing arrived; pass batch_size for the zero input")
        p = next(self.parameters(), None)
        return torch.zeros((batch_size, *self.in_shape), device=p.device if p is not None else None)

    def passes_input_to(self, consumer: str) -> bool:
        """Does this node send `consumer` the request's input unchanged? (The MLP's IoT node has no
        layers: its link to the edge carries the raw input.)"""
        return (self.producers == (INPUT,) and self.weights[INPUT] == 1.0 and isinstance(self.body, nn.Identity)
                and consumer in self.consumers and consumer not in self.projections)

    def send(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.consumers:
            return {LOGITS: h}
        return {c: (self.projections[c](h) if c in self.projections else h) for c in self.consumers}


class PartitionedModel(nn.Module):
    def __init__(self, topology: Topology, nodes: dict[str, PhysicalNode], input_shape: tuple[int, ...]):
        super().__init__()
        self.topology = topology
        self.nodes = nn.ModuleDict(nodes)
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor, alive: Mapping[str, Alive] | None = None) -> torch.Tensor:
        """x [B, *input_shape] -> logits [B, n_classes]; alive {failure-prone node: 0/1 or [B]}
        (missing nodes are alive)."""
        alive = dict(alive or {})
        sent: dict[str, dict[str, torch.Tensor]] = {INPUT: {self.topology.iot: x}}
        for name in self.topology.chain:
            node = self.nodes[name]
            sent[name] = node({p: sent[p][name] for p in node.producers}, alive)
        return sent[self.topology.cloud][LOGITS]


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int, seed: int = 0) -> PartitionedModel:
    """Build the partitioned model for `input_shape` (per example: (F,) for the MLP, (C, H, W) for
    CNNs). Skip projections get their shapes from a dry run of the chain."""
    method = METHODS[cfg.method]
    base = topology_for(cfg.arch)
    topology = base.with_skips(parse_skips(base, cfg.skips) if method.skips else ())
    weights = hyperconnection_weights(topology, cfg.weight_scheme, topology.reliabilities(cfg.weight_setting), seed)
    bodies = _bodies(cfg, input_shape, n_classes)
    in_shape, out_shape = _dry_run(topology, bodies, input_shape)
    nodes = {}
    for name in topology.chain:   # chain order: the projections draw their initial weights in it
        producers = (INPUT,) if name == topology.iot else topology.producers(name)
        w = {INPUT: 1.0} if name == topology.iot else {p: weights[(p, name)] for p in producers}
        nodes[name] = PhysicalNode(name, producers, w, method.rule, bodies[name], topology.consumers(name),
                                   _skip_projections(topology, name, in_shape, out_shape))
        nodes[name].in_shape = in_shape[name]
    model = PartitionedModel(topology, nodes, tuple(input_shape))
    if cfg.keras_init:
        keras_init(model, he=cfg.arch == "resnet18")
    set_batchnorm(model, cfg.bn_momentum, cfg.bn_eps)
    return model


def _bodies(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> dict[str, nn.Module]:
    """Each node's layers of the architecture (the config has checked arch and partition)."""
    if cfg.arch == "mlp":
        if len(input_shape) != 1:
            raise UserError(f"the MLP chain needs flat features, got input shape {input_shape}")
        return mlp_bodies(input_shape[0], n_classes, cfg.hidden_units, cfg.partition)
    if len(input_shape) != 3:
        raise UserError(f"{cfg.arch} needs image input [C, H, W], got input shape {input_shape}")
    if cfg.arch == "mobilenet":
        return mobilenet_bodies(input_shape[0], n_classes, cfg.width, cfg.small_input, partition=cfg.partition)
    return resnet18_bodies(input_shape[0], n_classes, cfg.width, cfg.resnet, cfg.partition)


Shapes = dict[str, tuple[int, ...]]   # node -> per-example shape


def _dry_run(topology: Topology, bodies: dict[str, nn.Module], input_shape: tuple[int, ...]) -> tuple[Shapes, Shapes]:
    """Run the chain once (eval mode, batch of 2) to learn every node's (input, output) shape."""
    out_shape: Shapes = {}
    with torch.no_grad():
        h = torch.zeros(2, *input_shape)
        for name in topology.chain:
            h = bodies[name].eval()(h)
            out_shape[name] = tuple(h.shape[1:])
    in_shape = {topology.iot: tuple(input_shape)}
    in_shape.update({c: out_shape[p] for p, c in topology.chain_links})
    return in_shape, out_shape


def _skip_projections(topology: Topology, name: str, in_shape: Shapes, out_shape: Shapes) -> dict[str, nn.Module]:
    """{skip consumer: projection of `name`'s output onto the consumer's input shape}; computed on
    the sending node (spec section 2)."""
    projections = {}
    for c in topology.consumers(name):
        if topology.is_skip(name, c):
            src, dst = out_shape[name], in_shape[c]
            projections[c] = linear_projection(src[0], dst[0]) if len(src) == 1 else conv_projection(src, dst)
    return projections
