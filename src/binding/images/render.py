"""Image modality (spec §3): an example's N (colour, shape) objects drawn as coloured shapes on a canvas.

The canvas is a grid of `canvas_px / cell_px` cells per side. Each object gets its own cell, drawn at
random without replacement, so objects never overlap by construction; with `jitter` the sprite is
shifted by a random whole-pixel offset inside its cell. Worked example (defaults, 64-px canvas,
16-px cells, 14-px sprites, 4x4 = 16 cells):

    colors, shapes, n = [[3, 17, 0]], [[5, 0, 9]], [2]     # third slot is padding (n = 2)
    images, positions = Renderer(RenderConfig()).render(colors, shapes, n, np.random.default_rng(0))
    images.shape == (1, 64, 64, 3)                # uint8, mid-grey background
    positions[0] == [[2, 3], [0, 3], [-1, -1]]    # (row, col) grid cells; -1 = no object
    # object 0: colour id 3 = grid colour 12 = RGB (0, 102, 0), shape id 5 = "checker", in cell (2, 3)

Colours. The palette is the 6x6x6 RGB grid (spec §1: 216 = 6^3): grid index k has
(r, g, b) = 51 * (k // 36, k // 6 % 6, k % 6), r-major. A run uses `n_colors` of them: colour id i
(the task's vocabulary id) is drawn as grid colour `palette_ids[i]`. By default the ids are the
`n_colors` grid colours farthest from each other and from the background (greedy farthest-point,
then sorted, so `n_colors = 216` is the identity map); `color_subset="first"` takes grid indices
0..n_colors-1; `color_ids` lists them explicitly. The background is mid-grey (128, 128, 128), which
is not on the grid (levels 0, 51, ..., 255), so even black and white objects stay visible and every
object pixel differs from the background by at least 25 in every channel. A background that equals
an allowed colour is refused.

Shapes. Sprites are binary masks (no anti-aliasing, so every object pixel has exactly its palette
colour), rasterised once per config by 4x supersampling a procedural family of 119 candidates:
filled and hollow regular polygons (3..8 sides), disc and rings, filled and hollow stars (4..8
points), plus and X crosses, rotated triangles, arrows in 8 directions, half/quarter discs, half
rings, pac-men, crescents, chevrons, L/T/E shapes, flags, keys, bars, dot patterns, checkers,
hourglasses, a heart, and smaller variants. Shape ids are assigned by greedy farthest-point
selection on a shift-tolerant mask distance (pixels that differ, minimised over shifts of up to
1 px in each direction, so jitter cannot make two shapes alike): id j is the candidate farthest
from ids 0..j-1, so a smaller `n_shapes` is a prefix of a larger one and as spread out as the rule
allows. Selection stops when the farthest remaining candidate differs from a chosen one by fewer
than `min_diff_px` pixels (default ceil(sprite_px^2 / 10)); candidates covering under 15% of the
sprite (too few pixels to show a colour) are never chosen. Available (`max_shapes(sprite_px)`):

    sprite_px    8    10    12    14    16    20    24
    shapes      73    87    88    89    86    90    98

Asking for more shapes than the sprite size can draw distinctly raises UserError.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lab.errors import UserError

GRID_LEVELS = np.arange(6) * 51  # 0, 51, ..., 255
N_GRID_COLORS = 216
SUPERSAMPLE = 4


@dataclass(frozen=True)
class RenderConfig:
    canvas_px: int = field(default=64, metadata={"help": "canvas side in pixels (square)"})
    cell_px: int = field(default=16, metadata={"help": "placement grid cell side; one object per cell"})
    sprite_px: int = field(default=14, metadata={"help": "shape sprite side (<= cell_px)"})
    patch_px: int = field(default=16, metadata={"help": "encoder patch side: tokens = (canvas_px/patch_px)^2"})
    n_colors: int = field(default=32, metadata={"help": "colour vocabulary drawn (ids 0..n_colors-1)"})
    n_shapes: int = field(default=32, metadata={"help": "shape vocabulary drawn (ids 0..n_shapes-1)"})
    color_subset: Literal["spread", "first"] = field(default="spread", metadata={
        "help": "which grid colours: 'spread' = farthest apart, 'first' = grid indices 0..n_colors-1"})
    color_ids: tuple[int, ...] = field(default=(), metadata={
        "help": "explicit grid indices (0..215) for colour ids 0..n-1; overrides color_subset"})
    background_rgb: tuple[int, int, int] = field(default=(128, 128, 128), metadata={"help": "canvas colour"})
    jitter: bool = field(default=True, metadata={"help": "random whole-pixel offset of the sprite inside its cell"})
    min_diff_px: int = field(default=0, metadata={
        "help": "pixels two shape masks must differ by (0 = ceil(sprite_px^2 / 10))"})

    @property
    def grid(self) -> int:
        """Cells per side."""
        return self.canvas_px // self.cell_px

    @property
    def max_objects(self) -> int:
        return self.grid * self.grid

    @property
    def n_tokens(self) -> int:
        """Patch tokens of a patch-grid encoder (the CNN, ViT and linear kinds)."""
        return (self.canvas_px // self.patch_px) ** 2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RenderConfig":
        c = self
        if c.canvas_px <= 0 or c.cell_px <= 0 or c.sprite_px <= 0 or c.patch_px <= 0:
            raise UserError(f"render sizes must be positive (canvas_px={c.canvas_px}, cell_px={c.cell_px}, "
                            f"sprite_px={c.sprite_px}, patch_px={c.patch_px})")
        if c.canvas_px % c.cell_px:
            raise UserError(f"canvas_px={c.canvas_px} is not a multiple of cell_px={c.cell_px}")
        if c.canvas_px % c.patch_px:
            raise UserError(f"canvas_px={c.canvas_px} is not a multiple of patch_px={c.patch_px}")
        if c.sprite_px > c.cell_px:
            raise UserError(f"sprite_px={c.sprite_px} does not fit in cell_px={c.cell_px}")
        if c.n_colors < 1 or c.n_shapes < 1:
            raise UserError(f"n_colors={c.n_colors} and n_shapes={c.n_shapes} must be >= 1")
        if any(not 0 <= v <= 255 for v in c.background_rgb):
            raise UserError(f"background_rgb={c.background_rgb} must be three values in 0..255")
        if c.color_ids:
            if len(c.color_ids) != c.n_colors:
                raise UserError(f"color_ids lists {len(c.color_ids)} colours but n_colors={c.n_colors}")
            bad = [k for k in c.color_ids if not 0 <= k < N_GRID_COLORS]
            if bad:
                raise UserError(f"color_ids {bad} are outside the 6x6x6 grid (0..215)")
            if len(set(c.color_ids)) != len(c.color_ids):
                raise UserError("color_ids has repeats; every colour id needs its own grid colour")
        elif c.n_colors > N_GRID_COLORS:
            raise UserError(f"n_colors={c.n_colors} exceeds the 216 colours of the 6x6x6 RGB grid")
        if c.color_subset not in ("spread", "first"):
            raise UserError(f"color_subset={c.color_subset!r} is not one of ['spread', 'first']")
        return c


# ---------------------------------------------------------------------------------------------
# Colours


def grid_rgb(k: np.ndarray | int) -> np.ndarray:
    """Grid index k (0..215, r-major) -> RGB uint8 [..., 3]."""
    k = np.asarray(k)
    return np.stack([GRID_LEVELS[k // 36], GRID_LEVELS[k // 6 % 6], GRID_LEVELS[k % 6]], -1).astype(np.uint8)


def palette_ids(cfg: RenderConfig) -> np.ndarray:
    """Grid index of each colour id 0..n_colors-1."""
    cfg.validate()
    if cfg.color_ids:
        ids = np.asarray(cfg.color_ids, dtype=np.int64)
    elif cfg.color_subset == "first":
        ids = np.arange(cfg.n_colors)
    else:
        ids = np.sort(_farthest_colors(cfg.n_colors, tuple(cfg.background_rgb)))
    rgb = grid_rgb(ids)
    clash = ids[(rgb == np.asarray(cfg.background_rgb)).all(-1)]
    if len(clash):
        raise UserError(f"grid colour(s) {clash.tolist()} equal background_rgb={cfg.background_rgb} and would "
                        "be invisible; choose another background or colour subset")
    return ids


def palette_rgb(cfg: RenderConfig) -> np.ndarray:
    """RGB uint8 [n_colors, 3] of each colour id."""
    return grid_rgb(palette_ids(cfg))


@functools.lru_cache(maxsize=16)
def _farthest_colors(n: int, background: tuple[int, int, int]) -> np.ndarray:
    """Greedy farthest-point subset of the grid, seeded by the background so it is avoided too."""
    allc = grid_rgb(np.arange(N_GRID_COLORS)).astype(np.float64)
    dist = np.linalg.norm(allc - np.asarray(background, np.float64), axis=1)
    chosen = []
    for _ in range(n):
        k = int(np.argmax(dist))  # ties -> lowest index: deterministic
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(allc - allc[k], axis=1))
        dist[k] = -1.0
    return np.asarray(chosen, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Shapes: each is a small program of polygons, added (+1) or cut out (-1) in order, in a [-1, 1]^2
# box with y pointing down. The same program rasterises the sprite masks and drives the naive
# Pillow baseline in benchmarks/render_throughput.py.

Poly = np.ndarray  # [V, 2] (x, y)
ShapeProgram = list[tuple[int, Poly]]


def _ngon(k: int, r: float = 0.95, rot: float = 0.0, cx: float = 0.0, cy: float = 0.0) -> Poly:
    a = rot - math.pi / 2 + 2 * math.pi * np.arange(k) / k  # first vertex points up
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _disc(r: float = 0.95, cx: float = 0.0, cy: float = 0.0) -> Poly:
    return _ngon(48, r, 0.0, cx, cy)


def _star(k: int, r_out: float = 0.98, r_in: float = 0.45, rot: float = 0.0) -> Poly:
    a = rot - math.pi / 2 + math.pi * np.arange(2 * k) / k
    r = np.where(np.arange(2 * k) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _rot(p: Poly, angle: float) -> Poly:
    c, s = math.cos(angle), math.sin(angle)
    return p @ np.array([[c, s], [-s, c]])


def _square_ngon(k: int) -> float:
    """Rotation that puts a flat edge at the bottom (a square, not a diamond)."""
    return math.pi / k if k % 2 == 0 else 0.0


def _sector(a0: float, a1: float, r: float = 0.95, cx: float = 0.0, cy: float = 0.0) -> Poly:
    a = np.linspace(a0, a1, 25)
    return np.concatenate([[[cx, cy]], np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)])


def _arrow() -> Poly:  # pointing right
    return np.array([[-0.95, -0.22], [0.1, -0.22], [0.1, -0.7], [0.95, 0.0], [0.1, 0.7], [0.1, 0.22],
                     [-0.95, 0.22]])


def _chevron() -> Poly:  # pointing right
    return np.array([[-0.6, -0.95], [0.0, -0.95], [0.9, 0.0], [0.0, 0.95], [-0.6, 0.95], [0.3, 0.0]])


DIRS4 = {"right": 0.0, "down": math.pi / 2, "left": math.pi, "up": 3 * math.pi / 2}


@functools.lru_cache(maxsize=1)
def candidate_shapes() -> tuple[tuple[str, ShapeProgram], ...]:
    """The procedural family, in priority order (earlier candidates win when two look alike; the
    order fixes the shape ids, so new candidates go at the end)."""
    out: list[tuple[str, ShapeProgram]] = []

    def add(name: str, *prog) -> None:
        out.append((name, list(prog)))

    _outline_shapes(add)
    _composite_shapes(add)
    return tuple(out)


def _outline_shapes(add) -> None:
    """Polygons, discs, stars, crosses, triangles, arrows, half discs, pac-men, chevrons."""
    dirs4 = DIRS4
    for k in range(3, 9):
        add(f"polygon{k}", (1, _ngon(k, rot=_square_ngon(k))))
    add("disc", (1, _disc()))
    for k in range(3, 9):
        add(f"hollow_polygon{k}", (1, _ngon(k, rot=_square_ngon(k))), (-1, _ngon(k, 0.5, _square_ngon(k))))
    add("ring", (1, _disc()), (-1, _disc(0.55)))
    for k in range(4, 9):
        add(f"star{k}", (1, _star(k)))
    add("plus", (1, _rect(-0.3, -0.95, 0.3, 0.95)), (1, _rect(-0.95, -0.3, 0.95, 0.3)))
    add("x_cross", (1, _rot(_rect(-0.3, -1.2, 0.3, 1.2), math.pi / 4)), (1, _rot(_rect(-1.2, -0.3, 1.2, 0.3), math.pi / 4)))
    add("diamond", (1, _ngon(4)))
    for name, a in (("down", math.pi), ("left", -math.pi / 2), ("right", math.pi / 2)):
        add(f"triangle_{name}", (1, _ngon(3, rot=a)))
    for name, a in dirs4.items():
        add(f"arrow_{name}", (1, _rot(_arrow(), a)))
    for name, a in (("down_right", math.pi / 4), ("down_left", 3 * math.pi / 4), ("up_left", -3 * math.pi / 4),
                    ("up_right", -math.pi / 4)):
        add(f"arrow_{name}", (1, _rot(_arrow() * 0.95, a)))
    for name, a in dirs4.items():  # flat side opposite the named direction
        add(f"half_disc_{name}", (1, _sector(a - math.pi / 2, a + math.pi / 2)))
    for k in range(4, 9):
        add(f"hollow_star{k}", (1, _star(k)), (-1, _star(k, 0.55, 0.22)))
    for name, a in dirs4.items():
        add(f"pacman_{name}", (1, _sector(a + math.pi / 5, a + 2 * math.pi - math.pi / 5)))
    for name, a in dirs4.items():
        add(f"chevron_{name}", (1, _rot(_chevron(), a)))


def _composite_shapes(add) -> None:
    """Bars, L/T/E shapes, crescents, dot patterns, checkers, hourglasses, rings, keys, flags, ..."""
    dirs4 = DIRS4
    add("bar_h", (1, _rect(-0.95, -0.3, 0.95, 0.3)))
    add("bar_v", (1, _rect(-0.3, -0.95, 0.3, 0.95)))
    add("bar_diag", (1, _rot(_rect(-1.25, -0.28, 1.25, 0.28), math.pi / 4)))
    add("bar_antidiag", (1, _rot(_rect(-1.25, -0.28, 1.25, 0.28), -math.pi / 4)))
    for name, a in dirs4.items():  # corner of the L
        add(f"L_{name}", (1, _rot(_rect(-0.95, -0.95, -0.3, 0.95), a)), (1, _rot(_rect(-0.95, 0.3, 0.95, 0.95), a)))
    for name, a in dirs4.items():
        add(f"T_{name}", (1, _rot(_rect(-0.95, -0.95, 0.95, -0.35), a)), (1, _rot(_rect(-0.3, -0.95, 0.3, 0.95), a)))
    for name, a in dirs4.items():
        add(f"crescent_{name}", (1, _disc()), (-1, _disc(0.8, 0.45 * math.cos(a + math.pi), 0.45 * math.sin(a + math.pi))))
    add("target", (1, _disc()), (-1, _disc(0.65)), (1, _disc(0.35)))
    add("dots2_h", (1, _disc(0.42, -0.52, 0)), (1, _disc(0.42, 0.52, 0)))
    add("dots2_v", (1, _disc(0.42, 0, -0.52)), (1, _disc(0.42, 0, 0.52)))
    add("dots2_diag", (1, _disc(0.42, -0.5, -0.5)), (1, _disc(0.42, 0.5, 0.5)))
    add("dots2_antidiag", (1, _disc(0.42, 0.5, -0.5)), (1, _disc(0.42, -0.5, 0.5)))
    add("dots3", *[(1, _disc(0.38, x, y)) for x, y in _ngon(3, 0.58)])
    add("dots4", *[(1, _disc(0.38, x, y)) for x, y in ((-0.52, -0.52), (0.52, -0.52), (-0.52, 0.52), (0.52, 0.52))])
    add("dots5", *[(1, _disc(0.32, x, y)) for x, y in ((-0.6, -0.6), (0.6, -0.6), (0, 0), (-0.6, 0.6), (0.6, 0.6))])
    for name, a in (("ul", math.pi), ("ur", -math.pi / 2), ("dr", 0.0), ("dl", math.pi / 2)):
        add(f"quarter_disc_{name}", (1, _sector(a, a + math.pi / 2, 1.8, -0.9 * math.cos(a + math.pi / 4),
                                                -0.9 * math.sin(a + math.pi / 4))))
    add("hourglass_v", (1, np.array([[-0.9, -0.95], [0.9, -0.95], [-0.9, 0.95], [0.9, 0.95]])))
    add("hourglass_h", (1, np.array([[-0.95, -0.9], [-0.95, 0.9], [0.95, -0.9], [0.95, 0.9]])))
    add("checker", (1, _rect(-0.95, -0.95, 0, 0)), (1, _rect(0, 0, 0.95, 0.95)))
    add("checker_anti", (1, _rect(0, -0.95, 0.95, 0)), (1, _rect(-0.95, 0, 0, 0.95)))
    add("hollow_diamond", (1, _ngon(4)), (-1, _ngon(4, 0.5)))
    add("square_dot", (1, _rect(-0.95, -0.95, 0.95, 0.95)), (-1, _rect(-0.6, -0.6, 0.6, 0.6)), (1, _rect(-0.25, -0.25, 0.25, 0.25)))
    add("triangle_dot", (1, _ngon(3)), (-1, _ngon(3, 0.6)), (1, _disc(0.2, 0, 0.05)))
    add("hollow_plus", (1, _rect(-0.35, -0.95, 0.35, 0.95)), (1, _rect(-0.95, -0.35, 0.95, 0.35)),
        (-1, _rect(-0.12, -0.75, 0.12, 0.75)), (-1, _rect(-0.75, -0.12, 0.75, 0.12)))
    for k in (3, 5, 7):
        add(f"polygon{k}_down", (1, _ngon(k, rot=math.pi)))
    add("star5_down", (1, _star(5, rot=math.pi)))
    add("heart", (1, _disc(0.5, -0.45, -0.35)), (1, _disc(0.5, 0.45, -0.35)),
        (1, np.array([[-0.93, -0.2], [0.93, -0.2], [0.0, 0.95]])))
    for name, a in dirs4.items():
        add(f"half_ring_{name}", (1, _sector(a - math.pi / 2, a + math.pi / 2)), (-1, _disc(0.55)))
    for name, a in dirs4.items():
        add(f"corner_{name}", (1, _rot(_rect(-0.95, -0.95, 0.95, 0.95), a)), (-1, _rot(_rect(-0.4, -0.4, 1.0, 1.0), a)))
    for name, a in (("h", 0.0), ("v", math.pi / 2)):
        add(f"double_bar_{name}", (1, _rot(_rect(-0.95, -0.85, 0.95, -0.3), a)), (1, _rot(_rect(-0.95, 0.3, 0.95, 0.85), a)))
    add("small_disc", (1, _disc(0.55)))
    add("small_square", (1, _rect(-0.55, -0.55, 0.55, 0.55)))
    add("small_triangle", (1, _ngon(3, 0.6)))
    add("square_frame_thin", (1, _rect(-0.95, -0.95, 0.95, 0.95)), (-1, _rect(-0.7, -0.7, 0.7, 0.7)))
    add("ring_thin", (1, _disc()), (-1, _disc(0.75)))
    add("ring_dot", (1, _disc()), (-1, _disc(0.7)), (1, _disc(0.22)))
    for name, a in dirs4.items():
        add(f"key_{name}", (1, _rot(_disc(0.45, -0.5, 0), a)), (1, _rot(_rect(-0.2, -0.18, 0.95, 0.18), a)))
    for name, a in dirs4.items():
        add(f"flag_{name}", (1, _rot(_rect(-0.95, -0.95, -0.6, 0.95), a)), (1, _rot(np.array([[-0.6, -0.95], [0.95, -0.5], [-0.6, 0.0]]), a)))
    for name, a in dirs4.items():
        add(f"E_{name}", (1, _rot(_rect(-0.95, -0.95, 0.95, 0.95), a)), (-1, _rot(_rect(-0.4, -0.6, 1.0, -0.2), a)),
            (-1, _rot(_rect(-0.4, 0.2, 1.0, 0.6), a)))


def _inside(poly: Poly, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over points."""
    x0, y0 = poly[:, 0][:, None], poly[:, 1][:, None]
    x1, y1 = np.roll(poly[:, 0], -1)[:, None], np.roll(poly[:, 1], -1)[:, None]
    px, py = xs.ravel()[None], ys.ravel()[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        crosses = ((y0 > py) != (y1 > py)) & (px < (x1 - x0) * (py - y0) / (y1 - y0) + x0)
    return (crosses.sum(0) % 2 == 1).reshape(xs.shape)


def rasterise(program: ShapeProgram, sprite_px: int) -> np.ndarray:
    """Binary mask [sprite_px, sprite_px]: a pixel is in when >= half its 4x4 subsamples are."""
    n = sprite_px * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / n * 2 - 1
    ys, xs = np.meshgrid(c, c, indexing="ij")
    m = np.zeros((n, n), bool)
    for sign, poly in program:
        m = (m | _inside(poly, xs, ys)) if sign > 0 else (m & ~_inside(poly, xs, ys))
    cover = m.reshape(sprite_px, SUPERSAMPLE, sprite_px, SUPERSAMPLE).mean((1, 3))
    return cover >= 0.5


def _shift_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels by which mask a differs from each mask in b [K, S, S], minimised over shifts of b
    by -1..1 px in y and x (pixels shifted in from outside the sprite are background)."""
    s = a.shape[0]
    pa = np.pad(a, 1)
    pb = np.pad(b, ((0, 0), (1, 1), (1, 1)))
    best = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.zeros_like(pb)
            shifted[:, 1 + dy:1 + dy + s, 1 + dx:1 + dx + s] = b
            d = (shifted != pa[None]).sum((1, 2))
            best = d if best is None else np.minimum(best, d)
    return best


def default_min_diff_px(sprite_px: int) -> int:
    return max(3, math.ceil(sprite_px * sprite_px / 10))


@functools.lru_cache(maxsize=16)
def shape_family(sprite_px: int, min_diff_px: int = 0) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, masks [K, sprite_px, sprite_px] bool) of every distinguishable shape at this size.

    Ordered by greedy farthest-point selection on the shift-tolerant mask distance, starting from
    the triangle: shape id j is the candidate farthest from ids 0..j-1, so any prefix (a smaller
    n_shapes) is as spread out as the greedy rule can make it. Selection stops when the farthest
    remaining candidate is closer than `min_diff_px` to one already chosen."""
    min_diff = min_diff_px or default_min_diff_px(sprite_px)
    min_area = max(4, round(0.15 * sprite_px * sprite_px))
    cands = candidate_shapes()
    masks = np.stack([rasterise(prog, sprite_px) for _, prog in cands])
    dist = np.stack([_shift_distance(m, masks) for m in masks])
    dist = np.minimum(dist, dist.T).astype(np.float64)  # shifting a or b: take the closer
    dist[:, masks.sum((1, 2)) < min_area] = -1  # too small to show its colour: never chosen
    chosen = [0]
    nearest = dist[0].copy()
    nearest[0] = -1
    while True:
        j = int(np.argmax(nearest))  # ties -> earliest candidate: deterministic
        if nearest[j] < min_diff:
            break
        chosen.append(j)
        nearest = np.minimum(nearest, dist[j])
        nearest[chosen] = -1
    return tuple(cands[j][0] for j in chosen), masks[chosen]


def max_shapes(sprite_px: int, min_diff_px: int = 0) -> int:
    return len(shape_family(sprite_px, min_diff_px)[0])


def shape_masks(cfg: RenderConfig) -> np.ndarray:
    """Sprite masks [n_shapes, sprite_px, sprite_px] bool of shape ids 0..n_shapes-1."""
    cfg.validate()
    names, masks = shape_family(cfg.sprite_px, cfg.min_diff_px)
    if cfg.n_shapes > len(names):
        raise UserError(f"n_shapes={cfg.n_shapes} but only {len(names)} shapes can be drawn distinctly at "
                        f"sprite_px={cfg.sprite_px}; use a larger sprite_px (and cell_px) or fewer shapes")
    return masks[: cfg.n_shapes]


def shape_names(cfg: RenderConfig) -> tuple[str, ...]:
    return shape_family(cfg.sprite_px, cfg.min_diff_px)[0][: cfg.n_shapes]


def shape_programs(cfg: RenderConfig) -> list[ShapeProgram]:
    """Polygon programs of shape ids 0..n_shapes-1 (for drawing them with another library)."""
    progs = dict(candidate_shapes())
    return [progs[n] for n in shape_names(cfg)]


# ---------------------------------------------------------------------------------------------
# Renderer


class Renderer:
    """Draws batches of examples. Everything that does not depend on the example is prepared here,
    once: the palette, and every sprite at every jitter offset as a cell-sized mask, so `render` is
    a gather plus a scatter in numpy."""

    def __init__(self, cfg: RenderConfig):
        self.cfg = cfg.validate()
        self.rgb = palette_rgb(cfg)  # [n_colors, 3] uint8
        self.masks = shape_masks(cfg)  # [n_shapes, S, S] bool
        self.background = np.asarray(cfg.background_rgb, np.uint8)
        c, s = cfg.cell_px, cfg.sprite_px
        self.n_offsets = (c - s + 1) if cfg.jitter else 1
        base = (c - s) // 2  # centred when there is no jitter
        # cell_masks[shape, oy, ox] is the sprite placed at (oy, ox) inside its cell.
        cm = np.zeros((cfg.n_shapes, self.n_offsets, self.n_offsets, c, c), bool)
        for oy in range(self.n_offsets):
            for ox in range(self.n_offsets):
                y0, x0 = (oy, ox) if cfg.jitter else (base, base)
                cm[:, oy, ox, y0:y0 + s, x0:x0 + s] = self.masks
        self.cell_masks = cm

    def sprite_origin(self, offsets: np.ndarray) -> np.ndarray:
        """Pixel offset of the sprite inside its cell for a jitter index (identity with jitter)."""
        return offsets if self.cfg.jitter else np.full_like(offsets, (self.cfg.cell_px - self.cfg.sprite_px) // 2)

    def render(self, colors: np.ndarray, shapes: np.ndarray, n: np.ndarray, rng: np.random.Generator,
               as_tensor: bool = False, return_offsets: bool = False):
        """colors, shapes: int [B, Nmax] (slots >= n[b] are ignored); n: int [B].

        Returns (images, positions): images uint8 [B, H, W, 3] (or, with as_tensor, float32 torch
        [B, 3, H, W] in [0, 1]); positions int [B, Nmax, 2] = (row, col) grid cell of each object,
        -1 for empty slots. With return_offsets, also offsets int [B, Nmax, 2] = the sprite's
        top-left pixel inside its cell. Same rng state -> same images.
        """
        cfg = self.cfg
        colors, shapes, n = np.asarray(colors), np.asarray(shapes), np.asarray(n)
        if colors.ndim != 2 or colors.shape != shapes.shape or n.shape != colors.shape[:1]:
            raise UserError(f"render expects colors, shapes [B, Nmax] and n [B]; got {colors.shape}, "
                            f"{shapes.shape}, {n.shape}")
        B, nmax = colors.shape
        G = cfg.grid
        if B and (n.min() < 0 or n.max() > nmax):
            raise UserError(f"object counts n must be in 0..{nmax} (the slots given); got {n.min()}..{n.max()}")
        if B and n.max() > G * G:
            raise UserError(f"N={n.max()} objects do not fit a {cfg.canvas_px}-px canvas with {cfg.cell_px}-px "
                            f"cells ({G}x{G} = {G * G} cells); use a larger canvas_px or a smaller cell_px")
        valid = np.arange(nmax)[None, :] < n[:, None]  # [B, Nmax]
        for name, ids, hi in (("colour", colors, cfg.n_colors), ("shape", shapes, cfg.n_shapes)):
            bad = valid & ((ids < 0) | (ids >= hi))
            if bad.any():
                raise UserError(f"{name} id {ids[bad][0]} outside the rendered vocabulary 0..{hi - 1}")

        # Placement: distinct random cells per example, plus a jitter offset per object.
        k = min(nmax, G * G)
        cells = np.argsort(rng.random((B, G * G)), axis=1)[:, :k]  # [B, k]
        if k < nmax:
            cells = np.concatenate([cells, np.zeros((B, nmax - k), cells.dtype)], 1)
        offsets = rng.integers(0, self.n_offsets, size=(B, nmax, 2))

        c = cfg.cell_px
        # tiles [B, G*G, c, c, 3]: the canvas seen as cells
        # (filled row by row: a broadcast over the last axis of size 3 copies element by element)
        tiles = np.broadcast_to(np.tile(self.background, c * c), (B * G * G, c * c * 3)).copy()
        tiles = tiles.reshape(B, G * G, c, c, 3)
        bi, si = np.nonzero(valid)
        m = self.cell_masks[shapes[bi, si], offsets[bi, si, 0], offsets[bi, si, 1]]  # [M, c, c]
        col = self.rgb[colors[bi, si]]  # [M, 3]
        tiles[bi, cells[bi, si]] = np.where(m[..., None], col[:, None, None, :], self.background)
        images = tiles.reshape(B, G, G, c, c, 3).transpose(0, 1, 3, 2, 4, 5).reshape(B, G * c, G * c, 3)

        positions = np.stack([cells // G, cells % G], -1)
        positions[~valid] = -1
        if as_tensor:
            images = images_to_tensor(images)
        if return_offsets:
            origin = self.sprite_origin(offsets)
            origin[~valid] = -1
            return images, positions, origin
        return images, positions


def images_to_tensor(images: np.ndarray):
    """uint8 [B, H, W, 3] -> float32 torch [B, 3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def random_objects(cfg: RenderConfig, batch: int, n_min: int, n_max: int, rng: np.random.Generator):
    """Random examples as the task draws them: N ~ U{n_min..n_max}, colours and shapes distinct
    within an example. Returns colors, shapes int [B, n_max] (padding -1) and n int [B]."""
    limit = min(cfg.n_colors, cfg.n_shapes, cfg.max_objects)
    if not 0 <= n_min <= n_max <= limit:
        raise UserError(f"need 0 <= n_min <= n_max <= {limit} (min of n_colors, n_shapes, cells); "
                        f"got {n_min}..{n_max}")
    n = rng.integers(n_min, n_max + 1, size=batch)
    colors = np.argsort(rng.random((batch, cfg.n_colors)), 1)[:, :n_max]
    shapes = np.argsort(rng.random((batch, cfg.n_shapes)), 1)[:, :n_max]
    pad = np.arange(n_max)[None] >= n[:, None]
    colors[pad], shapes[pad] = -1, -1
    return colors, shapes, n


def save_sample_grid(path: str | Path, cfg: RenderConfig, n_images: int = 16, n_min: int = 2, n_max: int = 8,
                     seed: int = 0, scale: int = 3, columns: int = 4) -> Path:
    """Write a PNG grid of `n_images` random rendered examples (upscaled by `scale`, nearest) and
    return its path. `binding render-samples` calls this."""
    from PIL import Image

    if n_images < 1 or scale < 1 or columns < 1:
        raise UserError(f"n_images, scale and columns must be >= 1 (got {n_images}, {scale}, {columns})")
    rng = np.random.default_rng(seed)
    colors, shapes, n = random_objects(cfg, n_images, n_min, n_max, rng)   # refuses an impossible range
    images, _ = Renderer(cfg).render(colors, shapes, n, rng)
    rows = math.ceil(n_images / columns)
    pad, side = 4, cfg.canvas_px * scale
    sheet = np.full((rows * (side + pad) + pad, columns * (side + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        big = img.repeat(scale, 0).repeat(scale, 1)
        sheet[pad + r * (side + pad):pad + r * (side + pad) + side, pad + c * (side + pad):pad + c * (side + pad) + side] = big
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def config_dict(cfg: RenderConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> RenderConfig:
    from lab.config import from_dict

    d = dict(d)
    for key in ("color_ids", "background_rgb"):
        if key in d and isinstance(d[key], list):
            d[key] = tuple(d[key])
    return from_dict(RenderConfig, d).validate()
