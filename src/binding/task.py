"""Task: indirect (two-hop) retrieval, spec §1.

Three closed vocabularies: colours (attributes), shapes (entities) and items. An example with N
objects (colour c_i, shape s_i; all symbols distinct within the example) reads

    <bos> c_1 s_1 ... c_N s_N [CTX_END] s_p(1) t_p(1) ... s_p(N) t_p(N) [QUE] c_q   -> t_q

The context lists the N (colour, shape) objects; the associations bind each shape to an item, in
an order p that is an independent random permutation (or the context order when
`shuffle_associations=False`); the query is a colour, and the answer is the item bound to the
shape of the object with that colour: two hops, colour -> shape -> item.

Worked example (N = 3; rendered with `describe(batch, 0)`)::

    <bos> rgb012 shape041 rgb530 shape007 rgb201 shape120 [CTX_END]
          shape007 pear shape120 key shape041 lamp [QUE] rgb530   -> pear

    rgb530 is the colour of object 2, whose shape is shape007; shape007 is bound to pear.

Token layout (positions are 0-based; the sequence has 4N + 4 tokens):
    0            <bos>
    1 + 2i       colour of object i          (i = 0..N-1; "ordinal slot" i)
    2 + 2i       shape of object i
    1 + 2N       [CTX_END]
    2 + 2N + 2j  shape of association j
    3 + 2N + 2j  item of association j
    2 + 4N       [QUE]
    3 + 4N       query colour; the model predicts the answer item here
`Layout` computes these positions (and those of the image and noise contexts); nothing else in
the project repeats the formulas. Batches mix N and are right-padded with <pad>; causal attention means padding never reaches the
query position.

Train and evaluation examples are disjoint by construction: a hash of the token sequence puts a
fixed `heldout_fraction` of the example space aside for evaluation, and training never samples it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lab.errors import UserError

SPECIALS = ("<pad>", "<bos>", "[CTX_END]", "[QUE]", "<noise>")
PAD, BOS, CTX_END, QUE, NOISE = range(len(SPECIALS))

ITEM_NAMES = (
    "apple", "key", "lamp", "pear", "coin", "book", "drum", "fork", "hat", "kite", "map", "nail",
    "oar", "pen", "ring", "sock", "tent", "urn", "vase", "whip", "yarn", "zip", "bell", "cup",
    "dice", "egg", "fan", "gem", "horn", "ink", "jar", "leaf",
)


@dataclass(frozen=True)
class TaskConfig:
    n_colors: int = field(default=216, metadata={"help": "colour vocabulary size (216 = 6x6x6 RGB grid)"})
    n_shapes: int = field(default=216, metadata={"help": "shape vocabulary size"})
    n_items: int = field(default=32, metadata={"help": "item vocabulary size (caps N)"})
    train_n: tuple[int, int] = field(default=(2, 8), metadata={"help": "training N range, inclusive"})
    id_n: tuple[int, int] = field(default=(2, 8), metadata={"help": "in-distribution evaluation N range"})
    ood_n: tuple[int, int] = field(default=(9, 32), metadata={"help": "out-of-distribution evaluation N range"})
    shuffle_associations: bool = field(default=True, metadata={"help": "associations in random order"})
    heldout_fraction: float = field(default=0.1, metadata={"help": "share of example space kept for evaluation only"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TaskConfig":
        for name in ("n_colors", "n_shapes", "n_items"):
            if getattr(self, name) < 1:
                raise UserError(f"task.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_n", "id_n", "ood_n"):
            lo, hi = getattr(self, name)
            if lo < 1 or hi < lo:
                raise UserError(f"task.{name}={lo},{hi} is an empty range (need 1 <= lo <= hi)")
            cap = min(self.n_colors, self.n_shapes, self.n_items)
            if hi > cap:
                raise UserError(
                    f"task.{name}={lo},{hi}: N={hi} objects need {hi} distinct colours, shapes and items, "
                    f"but the vocabularies are {self.n_colors} colours x {self.n_shapes} shapes x "
                    f"{self.n_items} items (max N = {cap})")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise UserError(f"task.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        return self

    @property
    def max_n(self) -> int:
        return max(self.train_n[1], self.id_n[1], self.ood_n[1])


@dataclass(frozen=True)
class Vocab:
    """Token ids: specials, then colours, shapes, items."""
    n_colors: int
    n_shapes: int
    n_items: int

    @classmethod
    def of(cls, cfg: TaskConfig) -> "Vocab":
        return cls(cfg.n_colors, cfg.n_shapes, cfg.n_items)

    @property
    def color0(self) -> int:
        return len(SPECIALS)

    @property
    def shape0(self) -> int:
        return self.color0 + self.n_colors

    @property
    def item0(self) -> int:
        return self.shape0 + self.n_shapes

    @property
    def size(self) -> int:
        return self.item0 + self.n_items

    def word(self, token: int) -> str:
        token = int(token)
        if token < self.color0:
            return SPECIALS[token]
        if token < self.shape0:
            k = token - self.color0  # index into the 6x6x6 grid, r-major
            return f"rgb{k // 36 % 6}{k // 6 % 6}{k % 6}" + (f"+{k // 216}" if k >= 216 else "")
        if token < self.item0:
            return f"shape{token - self.shape0:03d}"
        k = token - self.item0
        return ITEM_NAMES[k] if k < len(ITEM_NAMES) else f"item{k:02d}"


@dataclass
class Batch:
    """A batch of examples; symbol indices are per vocabulary (0-based), -1 past an example's N."""
    tokens: torch.Tensor       # [B, T] int64, right-padded with PAD
    n: torch.Tensor            # [B] number of objects
    colors: torch.Tensor       # [B, Nmax] colour index of object i (context order)
    shapes: torch.Tensor       # [B, Nmax] shape index of object i
    items: torch.Tensor        # [B, Nmax] item bound to object i's shape
    assoc_order: torch.Tensor  # [B, Nmax] p: association j is about object assoc_order[j]
    query_slot: torch.Tensor   # [B] ordinal slot (object index) of the queried colour
    query_pos: torch.Tensor    # [B] position of the query colour (the last real token)
    answer: torch.Tensor       # [B] token id of the answer item
    hop_target: torch.Tensor   # [B] token id of the queried object's shape (the first hop)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, idx: torch.Tensor | np.ndarray) -> "Batch":
        idx = torch.as_tensor(idx)
        return Batch(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class Layout:
    """Where everything sits in an example with `n` objects (the token layout of the module
    docstring), for a context of `context_len` tokens: 2N for the text context (the default), the
    image's patch tokens or the noise-filled span for the other contexts (binding.images). `n` (and
    `context_len`) may be ints or arrays of them, numpy or torch: every position is plain
    arithmetic on them, so one Layout describes a whole batch.

        lay = Layout(3)        # text, N = 3
        lay.color(0), lay.shape(0), lay.ctx_end, lay.assoc_shape(0), lay.que, lay.query, lay.length
        # 1, 2, 7, 8, 14, 15, 16
    """
    n: Any
    context_len: Any = None

    @property
    def context(self) -> Any:
        """Context tokens between <bos> and [CTX_END]."""
        return 2 * self.n if self.context_len is None else self.context_len

    def color(self, i: Any) -> Any:
        """Position of object i's colour (text context)."""
        return 1 + 2 * i

    def shape(self, i: Any) -> Any:
        """Position of object i's shape (text context)."""
        return 2 + 2 * i

    @property
    def ctx_end(self) -> Any:
        return 1 + self.context

    @property
    def assoc_start(self) -> Any:
        """First token of the associations."""
        return 2 + self.context

    def assoc_shape(self, j: Any) -> Any:
        return self.assoc_start + 2 * j

    def assoc_item(self, j: Any) -> Any:
        return self.assoc_start + 2 * j + 1

    @property
    def que(self) -> Any:
        """The [QUE] marker (one past the associations)."""
        return self.assoc_start + 2 * self.n

    @property
    def query(self) -> Any:
        """The query colour: the model's answer is read out here."""
        return self.que + 1

    @property
    def length(self) -> Any:
        return self.query + 1

    def length_with_queries(self, k: Any) -> Any:
        """The length when k queries are asked, `[QUE] colour` after `[QUE] colour` (`more_queries`)."""
        return self.length + 2 * (k - 1)


def seq_len(n: Any) -> Any:
    """Tokens in a text example with n objects (4N + 4)."""
    return Layout(n).length


def _distinct(rng: np.random.Generator, b: int, vocab: int, k: int) -> np.ndarray:
    """[b, k] samples without replacement from range(vocab), each row independent."""
    if k * k <= vocab:  # few collisions expected (birthday bound): rejection beats a full argsort
        out = rng.integers(0, vocab, size=(b, k))
        for _ in range(64):
            srt = np.sort(out, axis=1)
            bad = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
            if not bad.any():
                return out
            out[bad] = rng.integers(0, vocab, size=(int(bad.sum()), k))
    return np.argsort(rng.random((b, vocab)), axis=1)[:, :k]


def _hash_rows(tokens: np.ndarray) -> np.ndarray:
    """A 64-bit polynomial hash of each token row (pads included; rows are padded identically)."""
    h = np.zeros(tokens.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in tokens.T.astype(np.uint64):
            h = h * np.uint64(1_000_003) + col + np.uint64(1)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h


def is_heldout(tokens: np.ndarray, fraction: float) -> np.ndarray:
    """True for examples reserved for evaluation (a fixed slice of the example space)."""
    return (_hash_rows(tokens) % np.uint64(1 << 20)).astype(np.float64) < fraction * (1 << 20)


def _build(cfg: TaskConfig, rng: np.random.Generator, n: np.ndarray, one_hop_fraction: float = 0.0,
           first_hop_fraction: float = 0.0) -> dict[str, np.ndarray]:
    b, nmax = len(n), int(n.max())
    slot = np.arange(nmax)[None, :]
    real = slot < n[:, None]                                     # [B, Nmax]
    colors = _distinct(rng, b, cfg.n_colors, nmax)
    shapes = _distinct(rng, b, cfg.n_shapes, nmax)
    items = _distinct(rng, b, cfg.n_items, nmax)
    if cfg.shuffle_associations:
        keys = np.where(real, rng.random((b, nmax)), np.inf)
        order = np.argsort(keys, axis=1)                          # a permutation of the first n slots
    else:
        order = np.broadcast_to(slot, (b, nmax)).copy()
    query_slot = (rng.random(b) * n).astype(np.int64)
    # a one-hop example asks with the shape itself (shape -> item): a training aid, never evaluated
    one_hop = rng.random(b) < one_hop_fraction if one_hop_fraction > 0 else np.zeros(b, dtype=bool)
    # a first-hop example asks for the colour's shape (colour -> shape), marked by [CTX_END] where
    # [QUE] stands: also a training aid, never evaluated (drawn only when asked for, so the
    # random stream of every run without it is unchanged)
    first_hop = (~one_hop & (rng.random(b) < first_hop_fraction)) if first_hop_fraction > 0 else None
    return encode(cfg, n, colors, shapes, items, order, query_slot, one_hop, first_hop)


def encode(cfg: TaskConfig, n: np.ndarray, colors: np.ndarray, shapes: np.ndarray, items: np.ndarray,
           order: np.ndarray, query_slot: np.ndarray, one_hop: np.ndarray | None = None,
           first_hop: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Lay out examples given by their symbols (per-vocabulary indices, [B, Nmax]; entries past an
    example's N are ignored) as token rows. Returns the fields of a `Batch` as numpy arrays.
    one_hop / first_hop [B] bool: rows that ask shape -> item / colour -> shape (training aids)."""
    b, nmax = len(n), int(n.max())
    voc = Vocab.of(cfg)
    slot = np.arange(nmax)[None, :]
    real = slot < n[:, None]                                     # [B, Nmax]
    colors, shapes, items, order = (np.asarray(a)[:, :nmax] for a in (colors, shapes, items, order))
    tokens = np.full((b, seq_len(nmax)), PAD, dtype=np.int64)
    tokens[:, 0] = BOS
    lay = Layout(n)                                                # [B] positions
    rr, cc = np.nonzero(real)
    tokens[rr, lay.color(cc)] = voc.color0 + colors[rr, cc]
    tokens[rr, lay.shape(cc)] = voc.shape0 + shapes[rr, cc]
    tokens[np.arange(b), lay.ctx_end] = CTX_END
    obj = order[rr, cc]                                            # association cc is about object obj
    row = Layout(n[rr])
    tokens[rr, row.assoc_shape(cc)] = voc.shape0 + shapes[rr, obj]
    tokens[rr, row.assoc_item(cc)] = voc.item0 + items[rr, obj]
    first_hop = np.zeros(b, dtype=bool) if first_hop is None else first_hop
    tokens[np.arange(b), lay.que] = np.where(first_hop, CTX_END, QUE)
    query_pos = lay.query
    one_hop = np.zeros(b, dtype=bool) if one_hop is None else one_hop
    tokens[np.arange(b), query_pos] = np.where(one_hop, voc.shape0 + shapes[np.arange(b), query_slot],
                                               voc.color0 + colors[np.arange(b), query_slot])
    shape_t = voc.shape0 + shapes[np.arange(b), query_slot]
    return dict(
        tokens=tokens, n=n, colors=np.where(real, colors, -1), shapes=np.where(real, shapes, -1),
        items=np.where(real, items, -1), assoc_order=np.where(real, order, -1),
        query_slot=query_slot, query_pos=query_pos,
        answer=np.where(first_hop, shape_t, voc.item0 + items[np.arange(b), query_slot]),
        hop_target=shape_t,
    )


def sample_batch(cfg: TaskConfig, batch_size: int, rng: np.random.Generator,
                 n_range: tuple[int, int] | None = None, split: str = "train",
                 one_hop_fraction: float = 0.0, first_hop_fraction: float = 0.0) -> Batch:
    """Sample `batch_size` examples with N ~ U{n_range} (default cfg.train_n).

    one_hop_fraction: share of examples whose query is the shape instead of the colour (the
    one-hop sub-task, a training aid; spec §7).
    first_hop_fraction: share of examples that ask for the query colour's shape instead of the
    item (the first hop as a task of its own; the query marker is [CTX_END] instead of [QUE]).
    One-hop queries are training-only; first-hop questions are drawn in either split (training
    passes them as an aid, `binding evaluate --first-hop` asks held-out ones).

    split="train" never returns a held-out example; split="eval" returns only held-out ones.
    """
    lo, hi = n_range or cfg.train_n
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    parts: list[dict[str, np.ndarray]] = []
    need = batch_size
    while need > 0:
        draw = need if split == "train" else max(64, int(need / cfg.heldout_fraction * 1.3))
        n = rng.integers(lo, hi + 1, size=draw + (draw // 8 + 4 if split == "train" else 0))
        ex = _build(cfg, rng, n, one_hop_fraction if split == "train" else 0.0, first_hop_fraction)
        keep = is_heldout(ex["tokens"], cfg.heldout_fraction)
        keep = keep if split == "eval" else ~keep
        idx = np.nonzero(keep)[0][:need]
        parts.append({k: v[idx] for k, v in ex.items()})
        need -= len(idx)
    return collate(parts)


def more_queries(batch: Batch, cfg: TaskConfig, k: int, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ask up to k distinct colours of each example's context instead of one (a training aid).

    The example's own query stays where it is; up to k - 1 more follow it, each `[QUE] colour`,
    other objects of the same context in random order (never more queries than objects). Every
    query is answered at its own position, and no answer appears in the sequence, so a later query
    learns nothing from an earlier one: the aid adds answer signal per sequence without saying how
    to answer. Returns tokens [B, T'], query positions [B, K] and answer token ids [B, K], K =
    min(k, the batch's largest N) (-100 where an example has fewer than K objects).
    """
    b, nmax = batch.colors.shape
    k = min(k, nmax)
    n = batch.n.numpy()
    rows = np.arange(b)
    keys = np.where(np.arange(nmax)[None, :] < n[:, None], rng.random((b, nmax)), np.inf)
    keys[rows, batch.query_slot.numpy()] = np.inf                 # the example's own query
    slots = np.argsort(keys, axis=1)[:, :k - 1]                   # [B, k-1] other objects, shuffled
    asked = np.arange(k - 1)[None, :] < (n - 1)[:, None]          # at most n queries per example
    voc = Vocab.of(cfg)
    tokens = np.full((b, seq_len(nmax) + 2 * (k - 1)), PAD, dtype=np.int64)
    tokens[:, :seq_len(nmax)] = batch.tokens.numpy()
    que = seq_len(n)[:, None] + 2 * np.arange(k - 1)[None, :]     # [B, k-1] where each [QUE] goes
    rr, jj = np.nonzero(asked)
    tokens[rr, que[rr, jj]] = QUE
    tokens[rr, que[rr, jj] + 1] = voc.color0 + batch.colors.numpy()[rr, slots[rr, jj]]
    items = batch.items.numpy()
    answers = np.where(asked, voc.item0 + items[rows[:, None], slots], -100)
    positions = np.where(asked, que + 1, 0)
    width = int((tokens != PAD).sum(axis=1).max())                # rows are right-padded
    return (torch.from_numpy(tokens[:, :width]),
            torch.cat([batch.query_pos[:, None], torch.from_numpy(positions)], dim=1),
            torch.cat([batch.answer[:, None], torch.from_numpy(answers)], dim=1))


def collate(parts: list[dict[str, np.ndarray]]) -> Batch:
    """One Batch from parts of `encode` output (numpy fields), padded to the widest and trimmed to
    the longest example."""
    width = max(p["colors"].shape[1] for p in parts)          # widest part, before trimming
    out: dict[str, list[np.ndarray]] = {}
    for p in parts:
        for k, v in p.items():
            if k == "tokens":
                v = np.pad(v, ((0, 0), (0, seq_len(width) - v.shape[1])), constant_values=PAD)
            elif v.ndim == 2:
                v = np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=-1)
            out.setdefault(k, []).append(v)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    nmax = int(arrays["n"].max())                               # trim padding no example needs
    arrays = {k: (v[:, :seq_len(nmax)] if k == "tokens" else v[:, :nmax] if v.ndim == 2 else v)
              for k, v in arrays.items()}
    return Batch(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})


def concat(batches: list[Batch]) -> Batch:
    """Batches one after the other, padded to the widest and trimmed to the longest example."""
    return collate([{f.name: getattr(b, f.name).numpy() for f in dataclasses.fields(b)} for b in batches])


def describe(batch: Batch, i: int, vocab: Vocab, prediction: int | None = None) -> str:
    """One example in words: the sequence, then the two hops of the answer (and a prediction)."""
    n = int(batch.n[i])
    lay = Layout(n)
    toks = batch.tokens[i, : lay.length].tolist()
    w = vocab.word
    q = int(batch.query_slot[i])
    ctx = " ".join(f"[{w(toks[lay.color(k)])} {w(toks[lay.shape(k)])}]" for k in range(n))
    assoc = ", ".join(f"{w(toks[lay.assoc_shape(j)])}->{w(toks[lay.assoc_item(j)])}" for j in range(n))
    line = f"N={n}  context: {ctx}\n      associations: {assoc}\n"
    if toks[lay.que] == CTX_END:   # a first-hop question (training aid): colour -> shape
        line += f"      first-hop query: {w(toks[-1])} -> answer {w(batch.answer[i])} (object {q + 1})"
    else:
        line += (f"      query: {w(toks[-1])} -> answer {w(batch.answer[i])} "
                 f"(object {q + 1} is {w(toks[-1])} {w(batch.hop_target[i])}; "
                 f"{w(batch.hop_target[i])} is bound to {w(batch.answer[i])})")
    if prediction is not None:
        ok = int(prediction) == int(batch.answer[i])
        line += f"\n      model says {w(prediction)}" + ("" if ok else "  <- wrong")
    return line
