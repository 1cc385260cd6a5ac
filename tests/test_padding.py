"""decoding.padding.pad_batch: the one padding helper and each way it is called."""

import numpy as np
import pytest

from spec_cascade_jax.decoding.padding import pad_batch


def test_rounds_the_longest_row_up_to_a_multiple():
  out = pad_batch([[5, 1], [7, 8, 9, 1]], multiple=4)   # decoding.greedy, benchmarks
  np.testing.assert_array_equal(out, [[5, 1, 0, 0], [7, 8, 9, 1]])
  assert out.dtype == np.int32
  assert pad_batch([[3] * 17]).shape == (1, 32)          # default multiple 16


def test_a_fixed_length():
  out = pad_batch([[5, 1], [1]], 6)                      # training buckets, benchmarks
  np.testing.assert_array_equal(out, [[5, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
  with pytest.raises(ValueError, match="more than the padded length 2"):
    pad_batch([[5, 6, 1]], 2)


def test_filler_rows_hold_a_lone_eos():
  out = pad_batch([[5, 6, 1]], 4, rows=3)                # evaluation batches
  np.testing.assert_array_equal(out, [[5, 6, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
  with pytest.raises(ValueError, match="2 rows do not fit in a batch of 1"):
    pad_batch([[1], [1]], 4, rows=1)


def test_no_rows():
  assert pad_batch([], 8).shape == (0, 8)
