"""Physical topology (spec section 1-2, 5): nodes, links, skip hyperconnections, reliabilities.

A topology is data. The chain IoT -> edge -> fog(s) -> cloud carries the DNN's main path; a skip
hyperconnection is an extra physical link that bypasses exactly one failure-prone node. A new
partition or a new deployment is a new `Topology(...)`, not new code:

    HEALTH = Topology(
        name="health",
        chain=("iot", "e", "f2", "f1", "cloud"),
        failure_prone=("f1", "f2", "e"),            # the order every reliability list uses
        skips=(("iot", "f2"), ("e", "f1"), ("f2", "cloud")),
    )

Worked example (Health, poor setting r = [f1 .95, f2 .91, e .87]): with every skip the cloud is
cut off only when f2 is dead AND (f1 or e is dead): P(no path) = .09 * (1 - .95 * .87) = 0.015615,
the spec's bracket. Without skips (vanilla) any failure cuts it: 1 - .95 * .91 * .87 = 0.247885.

Which nodes are alive is one type, `AliveMask` (a 0/1 pattern over the failure-prone nodes in spec
order), with the forms the rest of the code reads:

    mask = AliveMask.from_pattern(HEALTH, (1, 0, 1))   # f2 dead
    mask.pattern          -> (1, 0, 1)          results JSON "alive", chaos tallies
    mask.failure_prone()  -> {f1: True, f2: False, e: True}      what the runtime reports
    mask.alive_nodes()    -> {iot: True, e: True, f2: False, f1: True, cloud: True}
    mask.floats()         -> the same as 1.0 / 0.0: `PartitionedModel.forward(x, alive)`
    mask.connected        -> True (e -> f1 -> cloud survives)
    producer_flags(node.producers, delivered)  -> {producer: 1.0 / 0.0}: `PhysicalNode.forward`
    alive_columns(HEALTH, draws)  # draws [B, 3] of 0/1 -> {f1: [B], f2: [B], e: [B]}, per sample
    pattern_indices(HEALTH, draws)  # [B]: each row's index in `patterns()` (Monte-Carlo lookups)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Collection, Iterable, Iterator, Sequence

import torch

from lab.errors import UserError

Link = tuple[str, str]  # (producer, consumer)
INPUT = "input"    # the IoT's only producer: the sensor reading
LOGITS = "logits"  # the cloud's only output

# Spec section 5, in each topology's failure-prone order ([f1, f2, e] for Health, [f, e] for CNNs).
RELIABILITY_SETTINGS: dict[str, dict[str, tuple[float, ...]]] = {
    "health": {
        "no failure": (1.0, 1.0, 1.0),
        "normal": (0.99, 0.96, 0.92),
        "poor": (0.95, 0.91, 0.87),
        "hazardous": (0.85, 0.80, 0.78),
    },
    "cnn": {
        "no failure": (1.0, 1.0),
        "normal": (0.98, 0.96),
        "poor": (0.95, 0.90),
        "hazardous": (0.85, 0.80),
    },
}

# Spec section 5's analytic brackets: P(no path from IoT to cloud), (vanilla, all skips).
ANALYTIC_P_NO_PATH: dict[str, dict[str, tuple[float, float]]] = {
    "health": {"normal": (0.125632, 0.003568), "poor": (0.247885, 0.015615),
               "hazardous": (0.469600, 0.067400)},
    "cnn": {"normal": (0.0592, 0.0008), "poor": (0.145, 0.005), "hazardous": (0.32, 0.03)},
}


@dataclass(frozen=True)
class Topology:
    name: str                       # key into RELIABILITY_SETTINGS ("health" | "cnn")
    chain: tuple[str, ...]          # chain[0] is the IoT (source), chain[-1] the cloud (sink)
    failure_prone: tuple[str, ...]  # spec order; IoT and cloud never fail
    skips: tuple[Link, ...] = ()    # skip hyperconnections present in this deployment
    all_skips: tuple[Link, ...] = field(default=())  # every skip the design allows (for subsets)

    def __post_init__(self) -> None:
        if not self.all_skips:
            object.__setattr__(self, "all_skips", self.skips)
        pos = {n: i for i, n in enumerate(self.chain)}
        for n in self.failure_prone:
            if n not in pos or n in (self.iot, self.cloud):
                raise ValueError(f"failure-prone node {n!r} must be an inner chain node")
        for a, b in self.all_skips:
            # "bypasses exactly one node" is the paper's design; enforcing it keeps the mux's
            # priority (chain first, then skip) well defined.
            if a not in pos or b not in pos or pos[b] - pos[a] != 2:
                raise ValueError(f"skip {a}->{b} must bypass exactly one chain node")
        for s in self.skips:
            if s not in self.all_skips:
                raise ValueError(f"skip {s} is not one of {self.all_skips}")

    # -- structure -----------------------------------------------------------------------------
    @property
    def iot(self) -> str:
        return self.chain[0]

    @property
    def cloud(self) -> str:
        return self.chain[-1]

    @property
    def chain_links(self) -> tuple[Link, ...]:
        return tuple(zip(self.chain[:-1], self.chain[1:]))

    def producers(self, node: str) -> tuple[str, ...]:
        """Producers of `node` in the multiplexer's priority order: the chain node below first,
        then skip sources. (`node`'s input combines these; spec section 2.)"""
        i = self.chain.index(node)
        below = (self.chain[i - 1],) if i > 0 else ()
        return below + tuple(a for a, b in self.skips if b == node)

    def consumers(self, node: str) -> tuple[str, ...]:
        """Where `node` sends its output: the next chain node, then skip destinations."""
        i = self.chain.index(node)
        nxt = (self.chain[i + 1],) if i + 1 < len(self.chain) else ()
        return nxt + tuple(b for a, b in self.skips if a == node)

    def is_skip(self, producer: str, consumer: str) -> bool:
        return (producer, consumer) in self.skips

    def upstream(self, node: str) -> tuple[str, ...]:
        """Failure-prone nodes whose alive state can change `node`'s input (its ancestors)."""
        seen: set[str] = set()
        stack = list(self.producers(node))
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(self.producers(p))
        return tuple(n for n in self.failure_prone if n in seen)

    def with_skips(self, skips: Sequence[Link]) -> "Topology":
        return Topology(self.name, self.chain, self.failure_prone, tuple(skips), self.all_skips)

    # -- failures ------------------------------------------------------------------------------
    def connected(self, alive: "AliveMask | Sequence[int | bool]") -> bool:
        """Does an all-alive path from IoT to cloud survive (chain links + present skips)?"""
        mask = alive if isinstance(alive, AliveMask) else AliveMask.from_pattern(self, alive)
        up = mask.alive_nodes()
        reach = {self.iot}
        for node in self.chain[1:]:  # chain order is a topological order: links only go up
            if up[node] and any(p in reach for p in self.producers(node)):
                reach.add(node)
        return self.cloud in reach

    def patterns(self) -> Iterator[tuple[int, ...]]:
        """All 2^n alive patterns, all-alive first (1 = alive), spec order."""
        yield from itertools.product((1, 0), repeat=len(self.failure_prone))

    def reliabilities(self, setting: str) -> tuple[float, ...]:
        table = RELIABILITY_SETTINGS[self.name]
        if setting not in table:
            raise UserError(f"unknown reliability setting {setting!r}; expected one of {list(table)}")
        return table[setting]

    def settings(self) -> dict[str, tuple[float, ...]]:
        return dict(RELIABILITY_SETTINGS[self.name])


@dataclass(frozen=True)
class AliveMask:
    """Which failure-prone nodes are alive: `pattern` holds 0/1 per failure-prone node in the
    topology's (spec) order. The IoT and the cloud never fail, so they are alive in every form."""
    topology: Topology
    pattern: tuple[int, ...]

    @classmethod
    def from_pattern(cls, topology: Topology, pattern: Sequence[int | bool]) -> "AliveMask":
        if len(pattern) != len(topology.failure_prone):
            raise ValueError(f"alive pattern needs {len(topology.failure_prone)} entries, got {len(pattern)}")
        return cls(topology, tuple(int(bool(a)) for a in pattern))

    @classmethod
    def from_nodes(cls, topology: Topology, alive: Collection[str]) -> "AliveMask":
        """From the names of the nodes that are alive (e.g. those that delivered a request)."""
        return cls(topology, tuple(int(n in alive) for n in topology.failure_prone))

    @classmethod
    def all_alive(cls, topology: Topology) -> "AliveMask":
        return cls(topology, (1,) * len(topology.failure_prone))

    def failure_prone(self) -> dict[str, bool]:
        """{failure-prone node: alive}, spec order."""
        return {n: bool(a) for n, a in zip(self.topology.failure_prone, self.pattern)}

    def alive_nodes(self) -> dict[str, bool]:
        """{node: alive} for every chain node (IoT and cloud True)."""
        return {n: True for n in self.topology.chain} | self.failure_prone()

    def floats(self) -> dict[str, float]:
        """{node: 1.0 / 0.0} for every chain node: the alive argument of `PartitionedModel.forward`."""
        return {n: float(a) for n, a in self.alive_nodes().items()}

    def dead(self) -> tuple[str, ...]:
        return tuple(n for n, a in self.failure_prone().items() if not a)

    @property
    def connected(self) -> bool:
        return self.topology.connected(self)


def producer_flags(producers: Iterable[str], delivered: Collection[str]) -> dict[str, float]:
    """{producer: 1.0 if it delivered else 0.0}: the per-producer alive argument of
    `PhysicalNode.forward`. The sensor reading (INPUT) is always there."""
    return {p: 1.0 if p == INPUT or p in delivered else 0.0 for p in producers}


def alive_columns(topology: Topology, alive: torch.Tensor) -> dict[str, torch.Tensor]:
    """alive [B, n] of 0/1 (column k = failure-prone node k, spec order) -> {node: [B]}: per-sample
    masks for `PartitionedModel.forward`."""
    return {node: alive[:, k] for k, node in enumerate(topology.failure_prone)}


def pattern_indices(topology: Topology, alive: torch.Tensor) -> torch.Tensor:
    """alive [B, n] of 0/1 -> [B] int64: each row's index in `topology.patterns()` (all-alive is 0;
    the pattern's 0/1 read as a binary number, most significant bit first, counts down from 2^n - 1)."""
    n = len(topology.failure_prone)
    code = (alive.long() * (2 ** torch.arange(n - 1, -1, -1))).sum(1)
    return (2 ** n - 1) - code


def pattern_probability(alive: Sequence[int], reliability: Sequence[float]) -> float:
    """P(pattern) = prod_i r_i^alive_i (1 - r_i)^(1 - alive_i), nodes independent (spec 5)."""
    p = 1.0
    for a, r in zip(alive, reliability, strict=True):
        p *= r if a else 1.0 - r
    return p


def p_no_path(topology: Topology, reliability: Sequence[float]) -> float:
    """Exact probability that the cloud is cut off from the IoT."""
    return sum(pattern_probability(a, reliability) for a in topology.patterns()
               if not topology.connected(a))


# -- the paper's two deployments -----------------------------------------------------------------
HEALTH = Topology(
    name="health",
    chain=("iot", "e", "f2", "f1", "cloud"),  # f1 is the fog next to the cloud
    failure_prone=("f1", "f2", "e"),
    skips=(("iot", "f2"), ("e", "f1"), ("f2", "cloud")),
)

CNN = Topology(
    name="cnn",
    chain=("iot", "e", "f", "cloud"),
    failure_prone=("f", "e"),
    skips=(("iot", "f"), ("e", "cloud")),
)


TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (HEALTH, CNN)}


def topology_for(arch: str) -> Topology:
    """The deployment an architecture is partitioned over: the MLP chain on Health, the CNNs on CNN."""
    return HEALTH if arch == "mlp" else CNN


def recorded_topology(record: dict) -> Topology:
    """The full topology (every skip it allows) an evaluation's `topology` record was computed on:
    by its name, or, for evaluations written before the name was recorded, by its chain."""
    if "name" in record:
        return TOPOLOGIES[record["name"]]
    return next(t for t in TOPOLOGIES.values() if list(t.chain) == list(record["chain"]))


def parse_skips(topology: Topology, text: str) -> tuple[Link, ...]:
    """"all" | "none" | comma-separated "src-dst" names, e.g. "iot-f2,f2-cloud"."""
    text = text.strip()
    if text == "all":
        return topology.all_skips
    if text in ("none", ""):
        return ()
    out = []
    for part in text.split(","):
        pair = tuple(part.strip().split("-"))
        if pair not in topology.all_skips:
            names = ", ".join(f"{a}-{b}" for a, b in topology.all_skips)
            raise UserError(f"model.skips: {part.strip()!r} is not a skip hyperconnection of the "
                            f"{topology.name} topology; expected 'all', 'none' or some of: {names}")
        out.append(pair)
    return tuple(l for l in topology.all_skips if l in out)  # canonical order


def skip_name(link: Link) -> str:
    return f"{link[0]}-{link[1]}"
