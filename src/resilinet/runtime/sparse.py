"""Lossless sparse encoding of the activations sent between node processes.

The links of the MLP chain carry ReLU outputs, most of them exact zeros (62-68% for the trained
MLP). Ray's cost of carrying an object grows with its bytes (docs/RESULTS.md, "Where the floor
is"), so a link is sent as a bit mask of its non-zero entries plus their values when that is
smaller, and as the dense array otherwise:

    sent = encode(a)        # a float32 array -> SparseArray, or `a` itself when dense is smaller
    a2 = decode(sent)       # -> float32 array equal to a (a -0.0 comes back as 0.0)

Written by hand because no library does this for numpy arrays at this cost: scipy.sparse is
2-D and stores an index per value (4 bytes against one bit here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseArray:
    shape: tuple[int, ...]
    mask_bits: np.ndarray    # uint8, np.packbits of (array != 0), C order
    values: np.ndarray       # float32, the non-zero entries in C order

    @property
    def nbytes(self) -> int:
        return self.mask_bits.nbytes + self.values.nbytes


def encode(a: np.ndarray) -> np.ndarray | SparseArray:
    """A float32 array as a SparseArray if that takes fewer bytes, else the array itself."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    flat = a.reshape(-1)
    mask = flat != 0
    nonzero = int(np.count_nonzero(mask))
    if nonzero * 4 + (a.size + 7) // 8 >= a.nbytes:
        return a
    # np.compress and assignment at np.flatnonzero are 3-5x faster than boolean indexing here
    return SparseArray(tuple(a.shape), np.packbits(mask), np.compress(mask, flat))


def decode(x) -> np.ndarray:
    """The dense float32 array back (an array passes through unchanged)."""
    if not isinstance(x, SparseArray):
        return x
    size = math.prod(x.shape)
    out = np.zeros(size, dtype=np.float32)
    out[np.flatnonzero(np.unpackbits(x.mask_bits, count=size).view(bool))] = x.values
    return out.reshape(x.shape)
