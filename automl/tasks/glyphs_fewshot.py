"""``glyphs-fewshot``: procedural multi-attribute glyphs for LeadNet's ambiguous few-shot setting.

Every example is a 3x12x12 image of one glyph with four attributes -- *colour*, *shape*, *size* and
*texture*, 15 values each -- and is labelled by all four at once (``y`` is ``(examples, 4)``, class id
``concept * 15 + value``), so an episode's labels may follow any one of them. The pools are disjoint in
every attribute: value ``v`` belongs to pool ``v % 3`` (base, val, novel), five values per concept per
pool, the novel values interleaving the base ones; an example of a pool draws each attribute uniformly
from its pool's values. Nothing is downloaded: the pools are generated from ``seed`` with numpy.

* colour: 15 evenly spaced hues at full saturation and value;
* shape: :data:`SHAPES` (disc, square, ring, ...), antialiased by 8x supersampling;
* size: the glyph's half-width, 15 values evenly from 2.5 to 6 pixels (:data:`SIZES`);
* texture: a brightness pattern over the canvas in [0.3, 1] (:data:`TEXTURES`: solid, stripes, checkers).

The image is ``shape mask * colour * texture`` on black, the glyph's centre jittered by up to half a
pixel, plus Gaussian pixel noise (``noise``), clipped to [0, 1].
"""
from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.episodic import EpisodicData, EpisodicInfo, EpisodicTask, LabelledPool

#: the attributes every glyph has, in the order of ``y``'s columns
CONCEPTS: tuple[str, ...] = ("colour", "shape", "size", "texture")
#: values per attribute (class id of value ``v`` of concept ``c``: ``c * VALUES + v``)
VALUES = 15
#: the pools, in order; value ``v`` of every concept belongs to ``POOLS[v % 3]``
POOLS: tuple[str, ...] = ("base", "val", "novel")
#: the canvas side in pixels
CANVAS = 12
#: supersampling factor of the shape masks (antialiasing)
SUPERSAMPLE = 8
#: the glyph's half-width in pixels by size value
SIZES: np.ndarray = np.linspace(2.5, 6.0, VALUES)
#: shape names by shape value
SHAPES: tuple[str, ...] = ("disc", "square", "ring", "hollow square", "triangle up", "triangle down", "diamond",
                           "plus", "x cross", "horizontal bar", "vertical bar", "half-disc", "L", "T", "two dots")
#: texture names by texture value (periods in pixels; dark rows/columns at 0.3 of the colour's brightness)
TEXTURES: tuple[str, ...] = ("solid", "horizontal stripes 2", "horizontal stripes 3", "horizontal stripes 4",
                             "vertical stripes 2", "vertical stripes 3", "vertical stripes 4", "diagonal stripes 3",
                             "diagonal stripes 4", "diagonal stripes 6", "anti-diagonal stripes 3",
                             "anti-diagonal stripes 4", "anti-diagonal stripes 6", "checker 1", "checker 2")
#: the darkest a texture makes a pixel
TEXTURE_LOW = 0.3

_Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


#: shape masks of normalised glyph coordinates (u right, v down; the glyph spans [-1, 1] in both)
_SHAPE_FUNCTIONS: tuple[_Shape, ...] = (
    lambda u, v: u * u + v * v <= 1.0,  # disc
    lambda u, v: np.maximum(abs(u), abs(v)) <= 0.85,  # square
    lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.5 ** 2),  # ring
    lambda u, v: (np.maximum(abs(u), abs(v)) <= 0.9) & (np.maximum(abs(u), abs(v)) >= 0.45),  # hollow square
    lambda u, v: (v <= 0.9) & (abs(u) <= (v + 0.9) / 1.8),  # triangle up (apex at the top)
    lambda u, v: (v >= -0.9) & (abs(u) <= (0.9 - v) / 1.8),  # triangle down
    lambda u, v: abs(u) + abs(v) <= 1.0,  # diamond
    lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0)),  # plus
    lambda u, v: ((abs(u - v) <= 0.4) | (abs(u + v) <= 0.4)) & (np.maximum(abs(u), abs(v)) <= 0.9),  # x cross
    lambda u, v: _box(u, v, -1.0, 1.0, -0.3, 0.3),  # horizontal bar
    lambda u, v: _box(u, v, -0.3, 0.3, -1.0, 1.0),  # vertical bar
    lambda u, v: (u * u + (v - 0.4) ** 2 <= 1.0) & (v <= 0.4),  # half-disc (flat side down)
    lambda u, v: _box(u, v, -0.9, -0.3, -0.9, 0.9) | _box(u, v, -0.9, 0.9, 0.3, 0.9),  # L
    lambda u, v: _box(u, v, -0.9, 0.9, -0.9, -0.3) | _box(u, v, -0.3, 0.3, -0.9, 0.9),  # T
    lambda u, v: ((u - 0.5) ** 2 + v * v <= 0.4 ** 2) | ((u + 0.5) ** 2 + v * v <= 0.4 ** 2),  # two dots
)


def colours() -> np.ndarray:
    """RGB in [0, 1] by colour value: ``(15, 3)``, hues evenly spaced at full saturation and value."""
    return np.array([colorsys.hsv_to_rgb(k / VALUES, 1.0, 1.0) for k in range(VALUES)], dtype=np.float32)


def textures() -> np.ndarray:
    """Brightness patterns over the canvas by texture value: ``(15, 12, 12)`` in [0.3, 1]."""
    r, c = np.meshgrid(np.arange(CANVAS), np.arange(CANVAS), indexing="ij")

    def stripes(t: np.ndarray, period: int) -> np.ndarray:
        return (t % period) < period / 2

    bright = [np.ones((CANVAS, CANVAS), dtype=bool)]
    bright += [stripes(r, p) for p in (2, 3, 4)]
    bright += [stripes(c, p) for p in (2, 3, 4)]
    bright += [stripes(r + c, p) for p in (3, 4, 6)]
    bright += [stripes(r - c + 2 * CANVAS, p) for p in (3, 4, 6)]
    bright += [(r + c) % 2 == 0, (r // 2 + c // 2) % 2 == 0]
    return np.where(np.stack(bright), 1.0, TEXTURE_LOW).astype(np.float32)


def render_glyphs(values: Any, *, seed: int | np.random.Generator = 0, noise: float = 0.03,
                  jitter: float = 0.5) -> np.ndarray:
    """Glyph images of explicit attribute values: ``values`` is ``(n, 4)`` integers in 0..14 (colour, shape,
    size, texture, as :data:`CONCEPTS` orders them); returns float32 ``(n, 3, 12, 12)`` in [0, 1]. The centre
    jitter (uniform within ``jitter`` pixels) and pixel noise (std ``noise``) are drawn from ``seed`` (a seed
    or a numpy Generator)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(CONCEPTS) or (values.size and (
            values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= VALUES)):
        raise ValueError(f"values must be (n, {len(CONCEPTS)}) integers in 0..{VALUES - 1}, got "
                         f"{values.dtype} {values.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(values)
    centre = CANVAS / 2 + rng.uniform(-jitter, jitter, size=(n, 2)).astype(np.float32)
    half = SIZES[values[:, 2]].astype(np.float32)
    grid = ((np.arange(CANVAS * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE)
    u = (grid[None, None, :] - centre[:, 0, None, None]) / half[:, None, None]  # (n, 1, W): columns
    v = (grid[None, :, None] - centre[:, 1, None, None]) / half[:, None, None]  # (n, H, 1): rows
    mask = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    for shape, draw in enumerate(_SHAPE_FUNCTIONS):
        index = np.flatnonzero(values[:, 1] == shape)
        for chunk in np.array_split(index, max(1, index.size // 512)):  # bounded memory at any n
            if chunk.size:
                fine = draw(u[chunk], v[chunk]).reshape(chunk.size, CANVAS, SUPERSAMPLE, CANVAS, SUPERSAMPLE)
                mask[chunk] = fine.mean(axis=(2, 4), dtype=np.float32)
    images = mask[:, None] * colours()[values[:, 0]][:, :, None, None] * textures()[values[:, 3]][:, None]
    if noise:
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    out: np.ndarray = images.astype(np.float32, copy=False)
    return out


def pool_values(pool: int) -> np.ndarray:
    """The attribute values of pool ``pool`` (0 base, 1 val, 2 novel): ``v`` with ``v % 3 == pool``."""
    return np.arange(pool, VALUES, len(POOLS))


@lru_cache(maxsize=8)
def glyph_pools(per_pool: int = 1500, seed: int = 0, noise: float = 0.03) -> EpisodicData:
    """The three pools of ``per_pool`` glyphs each, generated from ``seed`` (cached)."""
    pools = []
    for pool in range(len(POOLS)):
        rng = np.random.default_rng([seed, pool])
        values = rng.choice(pool_values(pool), size=(per_pool, len(CONCEPTS)))
        x = render_glyphs(values, seed=rng, noise=noise)
        y = values + VALUES * np.arange(len(CONCEPTS))
        pools.append(LabelledPool(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))))
    return EpisodicData(*pools)


def _integer(task: str, field: str, value: object, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"{task}: {field} must be an integer {bound}{why}, got {value!r}", field=field)
    return int(value)


@tasks.register("glyphs-fewshot")
class GlyphsFewshotTask(EpisodicTask):
    """Options: ``n_way`` (5; at most 5, the values per concept a pool holds), ``k_shot`` (1), ``n_query``
    (5), ``per_pool`` (1500 glyphs per pool), ``seed`` (0), ``noise`` (0.03, the pixel noise's std)."""

    def __init__(self, n_way: int = 5, k_shot: int = 1, n_query: int = 5, per_pool: int = 1500, seed: int = 0,
                 noise: float = 0.03, **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        name = "glyphs-fewshot"
        per = VALUES // len(POOLS)
        self.n_way = _integer(name, "n_way", n_way, 2, per, f" (each pool holds {per} values per concept)")
        self.k_shot = _integer(name, "k_shot", k_shot, 1)
        self.n_query = _integer(name, "n_query", n_query, 1)
        self.per_pool = _integer(name, "per_pool", per_pool, 1)
        self.seed = _integer(name, "seed", seed, 0)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
            raise ConfigError(f"{name}: noise must be a number in [0, 1] (the pixel noise's std), got {noise!r}",
                              field="noise")
        self.noise = float(noise)

    @property
    def info(self) -> EpisodicInfo:
        return EpisodicInfo(input_shape=(3, CANVAS, CANVAS), n_way=self.n_way, k_shot=self.k_shot,
                            n_query=self.n_query, concepts=CONCEPTS)

    def load(self) -> EpisodicData:
        return glyph_pools(self.per_pool, self.seed, self.noise)
