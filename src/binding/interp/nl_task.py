"""The two-hop task in natural language, for pretrained language models (spec §6).

A `Batch` of the task (colour -> shape -> item) becomes an English prompt; the model's answer is
the next token after "Answer: the". Worked example (N = 3)::

    The red object is a circle. The blue object is a square. The green object is a star.
    The square holds the key. The star holds the book. The circle holds the cup.
    Question: what does the blue object hold?
    Answer: the                                                        -> " key"

The context sentences follow the example's object (slot) order, the "holds" sentences its
association order, so `make_pairs`' counterfactuals (same objects in another slot order, rebound
items) read naturally. The model's prediction is decided among the *candidate items* only: the
items of the original and the counterfactual example (which include all four strategy items), by
comparing the logit of each candidate's first token at the answer position (`Words.item_token`).

Words are chosen per tokenizer: from each list below, the words that are one token after
"Answer: the" come first (in list order), then longer ones; items must have distinct first tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.errors import UserError

import numpy as np

from ..task import Batch
from .counterfactual import Pairs

COLOR_WORDS = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "pink", "orange", "purple", "gray",
    "gold", "silver", "violet", "navy", "olive", "teal", "lime", "tan", "cyan", "maroon", "beige",
    "ivory", "coral", "amber", "indigo", "crimson", "magenta", "khaki", "turquoise", "lavender", "bronze",
)
SHAPE_WORDS = (
    "circle", "square", "triangle", "star", "heart", "cube", "cone", "diamond", "oval", "cross",
    "arrow", "sphere", "cylinder", "pyramid", "hexagon", "rectangle", "crescent", "spiral", "disk",
    "prism", "moon", "wedge", "dot", "arc", "loop", "knot", "zigzag", "pentagon", "octagon", "rhombus",
    "tube", "shell",
)
ITEM_WORDS = (
    "key", "book", "lamp", "cup", "pen", "hat", "ball", "box", "coin", "bell", "map", "fork", "drum",
    "kite", "sock", "vase", "shoe", "clock", "chair", "phone", "bottle", "spoon", "brush", "watch",
    "glove", "rope", "candle", "basket", "mirror", "knife", "plate", "ticket",
)
ANSWER_PREFIX = "Answer: the"


@dataclass(frozen=True)
class Words:
    colors: tuple[str, ...]
    shapes: tuple[str, ...]
    items: tuple[str, ...]
    item_token: torch.Tensor  # [n_items] first token id of each item after "Answer: the"


def word_tokens(tokenizer, word: str) -> list[int]:
    """The token ids `word` adds after "Answer: the" (as in the prompt's answer position)."""
    head = tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False)
    full = tokenizer.encode(f"{ANSWER_PREFIX} {word}", add_special_tokens=False)
    if full[: len(head)] == head and len(full) > len(head):
        return full[len(head):]
    return tokenizer.encode(f" {word}", add_special_tokens=False)  # merged across the boundary


def _pick(tokenizer, candidates: tuple[str, ...], n: int, kind: str, distinct_first: bool = False
          ) -> tuple[list[str], list[int]]:
    toks = {w: word_tokens(tokenizer, w) for w in candidates}
    chosen, firsts = [], []
    for w in sorted(candidates, key=lambda w: len(toks[w])):  # stable: single tokens first, list order
        if not toks[w] or (distinct_first and toks[w][0] in firsts):
            continue
        chosen.append(w)
        firsts.append(toks[w][0])
        if len(chosen) == n:
            return chosen, firsts
    raise UserError(f"the tokenizer gives only {len(chosen)} usable {kind} words, {n} needed "
                    f"(lower --words)")


def choose_words(tokenizer, n_colors: int, n_shapes: int, n_items: int) -> Words:
    if max(n_colors, n_shapes, n_items) > len(ITEM_WORDS):
        raise UserError(f"at most {len(ITEM_WORDS)} words per vocabulary, asked for "
                        f"{max(n_colors, n_shapes, n_items)}")
    colors, _ = _pick(tokenizer, COLOR_WORDS, n_colors, "colour")
    shapes, _ = _pick(tokenizer, SHAPE_WORDS, n_shapes, "shape")
    items, first = _pick(tokenizer, ITEM_WORDS, n_items, "item", distinct_first=True)
    return Words(tuple(colors), tuple(shapes), tuple(items), torch.tensor(first))


def prompt(batch: Batch, i: int, words: Words) -> str:
    """Example i of `batch` in English, ending with "Answer: the" (the answer is the next token)."""
    n = int(batch.n[i])
    color = [words.colors[c] for c in batch.colors[i, :n].tolist()]
    shape = [words.shapes[s] for s in batch.shapes[i, :n].tolist()]
    item = [words.items[t] for t in batch.items[i, :n].tolist()]
    objects = [f"The {color[k]} object is a {shape[k]}." for k in range(n)]
    holds = [f"The {shape[k]} holds the {item[k]}." for k in batch.assoc_order[i, :n].tolist()]
    q = color[int(batch.query_slot[i])]
    return " ".join(objects + holds) + f"\nQuestion: what does the {q} object hold?\n{ANSWER_PREFIX}"


def answer_word(batch: Batch, i: int, words: Words) -> str:
    return words.items[int(batch.items[i, int(batch.query_slot[i])])]


def render(pairs: Pairs, words: Words, tokenizer) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """Token ids of each pair's original and counterfactual prompt, and which pairs keep equal lengths."""
    enc = [[tokenizer.encode(prompt(b, i, words)) for i in range(len(pairs))]
           for b in (pairs.original, pairs.counterfactual)]
    keep = np.array([len(o) == len(c) for o, c in zip(*enc)])
    return enc[0], enc[1], keep


def choose(logits: torch.Tensor, pairs: Pairs, words: Words, item0: int) -> torch.Tensor:
    """The predicted item (task token id) per pair: the candidate whose first token has the largest
    logit; candidates are the items of the original and the counterfactual example."""
    cand = torch.cat([pairs.original.items, pairs.counterfactual.items], dim=1)   # [B, 2 Nmax], -1 = none
    scores = logits.gather(1, words.item_token[cand.clamp(min=0)])
    scores = scores.masked_fill(cand < 0, float("-inf"))
    return item0 + cand.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
