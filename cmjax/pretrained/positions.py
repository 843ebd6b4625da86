"""Resizing a ViT's learned position table to another grid of patches.

A checkpoint trained on 224-pixel images with 16-pixel patches has a 14 x 14
table (plus one row for the class token, CLIP); a run on 384-pixel images needs
24 x 24. The grid is resized bicubically (the cubic kernel with a = -0.75,
half-pixel centres, edges clamped), as PyTorch's `interpolate(mode='bicubic',
align_corners=False)` does and therefore as Hugging Face's
`interpolate_pos_encoding` computes it (tests/test_pretrained_clip_siglip.py);
rows before the grid (class token) are kept.
"""

from __future__ import annotations

import math

import numpy as np

_A = -0.75  # PyTorch's bicubic coefficient


def _cubic(t: np.ndarray) -> np.ndarray:
  t = np.abs(t)
  near = ((_A + 2) * t - (_A + 3)) * t * t + 1
  far = ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """`[size_out, size_in]`: bicubic interpolation along one axis, as a matrix."""
  out = np.zeros((size_out, size_in), np.float64)
  scale = size_in / size_out
  for i in range(size_out):
    src = (i + 0.5) * scale - 0.5
    base = math.floor(src)
    for k in range(-1, 3):
      out[i, min(max(base + k, 0), size_in - 1)] += _cubic(np.float64(src - (base + k)))
  return out


def grid_side(rows: int, prefix: int) -> int | None:
  """The side of a square grid of `rows - prefix` positions, or None."""
  n = rows - prefix
  side = math.isqrt(max(n, 0))
  return side if n > 0 and side * side == n else None


def resize(table: np.ndarray, rows: int) -> np.ndarray:
  """A position table `[n, width]` (a square grid, maybe after one class-token
  row) resized to `[rows, width]` with the same prefix; raises ValueError when
  either side is not a square grid."""
  table = np.asarray(table)
  if table.ndim != 2:
    raise ValueError(f"a position table is [positions, width]; got shape {table.shape}")
  for prefix in (0, 1):
    side_in, side_out = grid_side(table.shape[0], prefix), grid_side(rows, prefix)
    if side_in and side_out:
      break
  else:
    raise ValueError(
      f"cannot resize a position table of {table.shape[0]} rows to {rows}: neither is a "
      "square grid of patches (with or without one class-token row)"
    )
  grid = table[prefix:].astype(np.float64).reshape(side_in, side_in, -1)
  m = resize_matrix(side_in, side_out)
  grid = np.einsum("ij,jkc,lk->ilc", m, grid, m)
  out = np.concatenate([table[:prefix].astype(np.float64), grid.reshape(rows - prefix, -1)])
  return out.astype(table.dtype)
