"""The lossless sparse encoding of activations between node processes."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from resilinet.runtime.sparse import SparseArray, decode, encode


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 9), st.integers(0, 40)),
              elements=st.one_of(st.just(0.0), st.floats(-1e6, 1e6, width=32), st.just(np.inf), st.just(np.nan))))
def test_decode_gives_back_the_array(a):
    out = decode(encode(a))
    assert out.dtype == np.float32 and out.shape == a.shape
    assert np.array_equal(out, a, equal_nan=True)     # a -0.0 may come back as 0.0, which equals it


def test_a_mostly_zero_array_travels_sparse_and_a_dense_one_as_it_is():
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.standard_normal((64, 250)).astype(np.float32) - 0.4, 0)   # ~65% zeros
    packed = encode(relu)
    assert isinstance(packed, SparseArray) and packed.nbytes < 0.45 * relu.nbytes
    dense = rng.standard_normal((64, 250)).astype(np.float32)
    assert encode(dense) is dense or np.shares_memory(encode(dense), dense)
    assert decode(dense) is dense
