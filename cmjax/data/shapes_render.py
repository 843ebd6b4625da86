"""Numpy rasteriser for the ``shapes`` dataset.

Each shape is a signed distance function (SDF) in pixel units, negative
inside. Coverage of a pixel is ``clip(0.5 - d, 0, 1)``, a one-pixel soft edge
that antialiases without supersampling; it is evaluated only on the object's
bounding patch, which is what keeps a 64x64 scene well under 1 ms.

Polygon SDFs are ``max`` over edge half-planes: exact inside, slightly
underestimated just outside corners, which only matters inside the one-pixel
antialiasing band. Non-convex shapes are ``min`` (union) of convex parts.
"""

from __future__ import annotations

import numpy as np

# Canonical order = class index. Every shape is symmetric under left/right
# mirroring and none is a rotation of another (no rotation is applied, so a
# square never turns into a diamond).
SHAPE_KINDS = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")

# RGB of the 8 colors in domain 0, chosen far apart in RGB and with distinct
# names. Domain 1 maps them through _DOMAIN1_MIX (same order, new palette).
PALETTE = np.array(
  [
    (225, 35, 35),  # red
    (40, 185, 60),  # green
    (45, 85, 235),  # blue
    (240, 225, 40),  # yellow
    (155, 60, 205),  # purple
    (250, 140, 25),  # orange
    (40, 215, 225),  # cyan
    (245, 245, 245),  # white
  ],
  np.float32,
)

# Domain 1 "shifted palette": a fixed channel mix plus a warm offset. The hue
# ordering is kept (so names still make sense) but the colour statistics move,
# which is the point of a domain-shift benchmark.
_DOMAIN1_MIX = np.array([[0.78, 0.12, 0.10], [0.10, 0.75, 0.15], [0.12, 0.18, 0.70]], np.float32)
_DOMAIN1_OFFSET = np.array([18.0, 6.0, -10.0], np.float32)
DOMAIN1_PALETTE = np.clip(PALETTE @ _DOMAIN1_MIX.T + _DOMAIN1_OFFSET, 0, 255)

# Radius (half the bounding size) as a fraction of the image side, per size
# class. At 64 px: small ~10 px across, large ~19 px across.
SIZE_RADIUS_FRACTION = (0.11, 0.18)

_BACKGROUND_DOMAIN0 = np.array([18, 18, 24], np.float32)


def _convex(px, py, normals, offsets):
  """SDF of a convex polygon given outward unit normals [k,2] and offsets [k]."""
  d = px[..., None] * normals[:, 0] + py[..., None] * normals[:, 1] - offsets
  return d.max(-1)


def _regular_normals(n, start_angle):
  """Outward normals of a regular n-gon's edges (angles in radians)."""
  a = start_angle + 2 * np.pi * np.arange(n) / n
  return np.stack([np.cos(a), np.sin(a)], -1).astype(np.float32)


# Unit-radius geometry, precomputed once. y points down (image rows).
_TRI_N = _regular_normals(3, np.pi / 2)  # apex up: one edge normal points down
_HEX_N = _regular_normals(6, 0.0)  # flat left/right sides
_STAR_OUTER, _STAR_INNER = 1.0, 0.45


def _star_parts():
  """5 convex kites (center, inner, tip, inner) whose union is a star."""
  parts = []
  for k in range(5):
    tip = -np.pi / 2 + 2 * np.pi * k / 5  # first tip points up
    pts = np.array(
      [
        (0.0, 0.0),
        (_STAR_INNER * np.cos(tip - np.pi / 5), _STAR_INNER * np.sin(tip - np.pi / 5)),
        (_STAR_OUTER * np.cos(tip), _STAR_OUTER * np.sin(tip)),
        (_STAR_INNER * np.cos(tip + np.pi / 5), _STAR_INNER * np.sin(tip + np.pi / 5)),
      ],
      np.float32,
    )
    edges = np.roll(pts, -1, 0) - pts
    normals = np.stack([edges[:, 1], -edges[:, 0]], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    offsets = (normals * pts).sum(-1)
    # Orient normals outward (the centroid must be on the negative side).
    centroid = pts.mean(0)
    sign = np.where((normals @ centroid - offsets) > 0, -1.0, 1.0).astype(np.float32)
    parts.append((normals * sign[:, None], offsets * sign))
  return parts


_STAR_PARTS = _star_parts()
_STAR_SEAM = np.array([1.5, 0.0, 0.0, 1.5], np.float32)  # edges 0, 3 touch the centre


def shape_sdf(kind: int, px: np.ndarray, py: np.ndarray, r: float) -> np.ndarray:
  """Signed distance (pixels) to shape ``kind`` of radius ``r`` centred at 0.

  px, py: float32 [h, w] pixel-centre offsets from the shape centre.
  Returns float32 [h, w], negative inside.
  """
  name = SHAPE_KINDS[kind]
  if name == "circle":
    return np.sqrt(px * px + py * py) - r
  if name == "square":
    a = 0.82 * r  # same visual weight as the circle
    return np.maximum(np.abs(px), np.abs(py)) - a
  if name == "triangle":
    # Shift down so the triangle's bounding box is centred.
    return _convex(px, py - 0.25 * r, _TRI_N, np.full(3, 0.62 * r, np.float32))
  if name == "diamond":
    return (np.abs(px) + np.abs(py) - r) * np.float32(0.7071)
  if name == "star":
    # Push the kites' internal edges out by 1.5 px so neighbours overlap;
    # otherwise the shared seams sit at d = 0 and show as faint lines.
    return np.min([_convex(px, py, n, o * r + _STAR_SEAM) for n, o in _STAR_PARTS], axis=0)
  if name == "cross":
    w = 0.32 * r
    ax, ay = np.abs(px), np.abs(py)
    return np.minimum(np.maximum(ax - r, ay - w), np.maximum(ax - w, ay - r))
  if name == "hexagon":
    return _convex(px, py, _HEX_N, np.full(6, 0.9 * r, np.float32))
  if name == "ring":
    return np.abs(np.sqrt(px * px + py * py) - 0.7 * r) - 0.3 * r
  raise ValueError(f"unknown shape kind {kind}")


def object_radius(size: int, image_size: int) -> float:
  """Radius in pixels of an object of size class ``size`` (0 small, 1 large)."""
  return SIZE_RADIUS_FRACTION[size] * image_size


def background(domain: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
  """float32 [S, S, 3] background in 0..255.

  Domain 0: one flat dark colour. Domain 1: a random smooth colour field
  (bilinear upsampled 5x5 noise) with mid-grey tones plus stripes, so that
  objects sit on texture rather than on a clean backdrop.
  """
  s = image_size
  if domain == 0:
    return np.broadcast_to(_BACKGROUND_DOMAIN0, (s, s, 3)).copy()
  base = rng.uniform(50, 130, size=3).astype(np.float32)
  coarse = rng.normal(0, 22, size=(5, 5, 3)).astype(np.float32)
  # Separable linear interpolation of the coarse grid to s x s.
  t = np.linspace(0, 4, s, dtype=np.float32)
  i0 = np.minimum(t.astype(np.int32), 3)
  f = (t - i0)[:, None, None]
  rows = coarse[i0] * (1 - f) + coarse[i0 + 1] * f  # [s, 5, 3]
  fc = (t - i0)[None, :, None]
  field = rows[:, i0] * (1 - fc) + rows[:, i0 + 1] * fc  # [s, s, 3]
  angle = rng.uniform(0, np.pi)
  period = rng.uniform(5, 12)
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
  stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period))
  return base + field + stripes[..., None]


def render(
  objects: np.ndarray, image_size: int, domain: int, rng: np.random.Generator
) -> np.ndarray:
  """Draw a scene.

  Args:
    objects: int array [n, 5] of (shape, color, size, x, y); x, y are the
      centre in pixels (x to the right, y down), drawn in order.
    image_size: S.
    domain: 0 or 1 (see ``background``; domain 1 also adds pixel noise and
      uses ``DOMAIN1_PALETTE``).
    rng: randomness for the background and noise.

  Returns:
    uint8 [S, S, 3].
  """
  s = image_size
  img = background(domain, s, rng)
  palette = PALETTE if domain == 0 else DOMAIN1_PALETTE
  for shape, color, size, cx, cy in objects:
    r = object_radius(int(size), s)
    x0, x1 = max(int(cx - r - 2), 0), min(int(cx + r + 3), s)
    y0, y1 = max(int(cy - r - 2), 0), min(int(cy + r + 3), s)
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = shape_sdf(int(shape), px - cx, py - cy, r)
    alpha = np.clip(0.5 - d, 0.0, 1.0)[..., None]
    patch = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = patch + alpha * (palette[color] - patch)
  if domain == 1:
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
  return np.clip(img + 0.5, 0, 255).astype(np.uint8)
