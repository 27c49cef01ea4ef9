"""glyphs-fewshot: procedural four-attribute glyphs, pools disjoint in every attribute, every concept usable."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from automl.components import construct
from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.episodic import LabelledPool, fixed_episodes, sample_episode
from automl.tasks.glyphs_fewshot import (
    CONCEPTS,
    SHAPES,
    TEXTURES,
    VALUES,
    GlyphsFewshotTask,
    colours,
    glyph_pools,
    pool_values,
    render_glyphs,
    textures,
)

SMALL = {"per_pool": 300}


def test_registered_with_the_four_concepts_and_cheap_info():
    task = construct(tasks.get("glyphs-fewshot"), {}, kind="task", name="glyphs-fewshot")
    info = task.info
    assert info.input_shape == (3, 12, 12) and info.concepts == CONCEPTS == ("colour", "shape", "size", "texture")
    assert (info.n_way, info.k_shot, info.n_query) == (5, 1, 5)
    assert task.family == "episodic" and len(SHAPES) == len(TEXTURES) == VALUES == 15


def test_pools_shapes_dtypes_and_range():
    data = GlyphsFewshotTask(**SMALL).load()
    for name in ("base", "val", "novel"):
        pool = data.pool(name)
        assert pool.x.shape == (300, 3, 12, 12) and pool.x.dtype == torch.float32
        assert pool.y.shape == (300, 4) and pool.y.dtype == torch.int64
        assert 0.0 <= float(pool.x.min()) and float(pool.x.max()) <= 1.0
        assert float(pool.x.max()) > 0.9  # full-value colours are there


def test_default_generation_is_fast():
    glyph_pools.cache_clear()
    start = time.perf_counter()
    data = GlyphsFewshotTask().load()
    assert time.perf_counter() - start < 2.0
    assert len(data.base.x) == len(data.val.x) == len(data.novel.x) == 1500


def test_pools_are_disjoint_in_every_attribute_and_hold_all_their_values():
    data = GlyphsFewshotTask(**SMALL).load()
    for p, name in enumerate(("base", "val", "novel")):
        y = data.pool(name).y
        for c in range(len(CONCEPTS)):
            expected = {c * VALUES + int(v) for v in pool_values(p)}
            assert set(y[:, c].tolist()) == expected  # its five values, every one present
            assert all(v % 3 == p for v in (y[:, c] - c * VALUES).tolist())
    classes = [set(data.pool(n).classes) for n in ("base", "val", "novel")]
    assert not (classes[0] & classes[1]) and not (classes[0] & classes[2]) and not (classes[1] & classes[2])
    assert list(pool_values(2)) == [2, 5, 8, 11, 14]  # novel values interleave the base ones


def test_deterministic_by_seed():
    a, b = GlyphsFewshotTask(seed=3, **SMALL).load(), GlyphsFewshotTask(seed=3, **SMALL).load()
    glyph_pools.cache_clear()
    c = GlyphsFewshotTask(seed=3, **SMALL).load()  # regenerated, not the cached object
    other = GlyphsFewshotTask(seed=4, **SMALL).load()
    for name in ("base", "val", "novel"):
        assert torch.equal(a.pool(name).x, c.pool(name).x) and torch.equal(a.pool(name).y, c.pool(name).y)
        assert not torch.equal(a.pool(name).y, other.pool(name).y)
    assert a is b
    assert GlyphsFewshotTask(seed=3, **SMALL).fingerprint() != GlyphsFewshotTask(seed=4, **SMALL).fingerprint()


def test_render_glyphs_attributes_are_distinct_and_noise_free_background_is_black():
    shapes = render_glyphs([[0, s, 14, 0] for s in range(VALUES)], noise=0.0, jitter=0.0)
    assert shapes.shape == (VALUES, 3, 12, 12) and shapes.dtype == np.float32
    masks = shapes[:, 0].reshape(VALUES, -1)
    gaps = np.abs(masks[:, None] - masks[None]).sum(-1)
    assert (gaps + np.eye(VALUES) * 1e9).min() > 3.0  # 15 clearly different shapes
    assert (shapes[:, 1:] == 0).all()  # colour 0 is pure red: nothing in green and blue
    smaller = render_glyphs([[0, s, 7, 0] for s in range(VALUES)], noise=0.0, jitter=0.0)
    assert smaller[:, 0, :2, :2].max() == 0.0  # black background around a glyph of middle size
    hues = colours()
    assert hues.shape == (VALUES, 3) and len({tuple(h) for h in hues.round(3)}) == VALUES
    patterns = textures()
    assert patterns.shape == (VALUES, 12, 12) and patterns.min() >= 0.3 - 1e-6 and patterns.max() <= 1.0
    assert len({p.tobytes() for p in patterns}) == VALUES
    sizes = render_glyphs([[0, 1, z, 0] for z in range(VALUES)], noise=0.0, jitter=0.0)[:, 0].sum((1, 2))
    assert (np.diff(sizes) > 0).all()  # larger size values cover more pixels
    assert np.array_equal(render_glyphs([[1, 2, 3, 4]], seed=5), render_glyphs([[1, 2, 3, 4]], seed=5))
    with pytest.raises(ValueError):
        render_glyphs([[0, 15, 0, 0]])


def test_every_concept_labels_episodes_and_items_share_only_the_labelling_attribute():
    data = GlyphsFewshotTask(**SMALL).load()
    y = data.base.y
    index_pool = LabelledPool(torch.arange(len(y)), y)  # episodes of example indices
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        ep = sample_episode(index_pool, 5, 1, 5, rng)
        seen.add(ep.concept)
        items = torch.cat([ep.support_x, ep.query_x])
        labels = torch.cat([ep.support_y, ep.query_y])
        attrs = y[items]
        for i, cls in enumerate(ep.classes):
            members = attrs[labels == i]
            assert (members[:, ep.concept] == cls).all()
        assert len(set(attrs[:, ep.concept].tolist())) == 5
        for other in set(range(4)) - {ep.concept}:
            assert len(set(attrs[:, other].tolist())) > 1  # the other attributes vary
    assert seen == {0, 1, 2, 3}
    episode = fixed_episodes(data.novel, 5, 1, 5, count=2)[0]
    assert episode.support_x.shape == (5, 3, 12, 12) and episode.query_x.shape == (25, 3, 12, 12)


def test_attributes_are_visible_in_the_pixels():
    from sklearn.linear_model import LogisticRegression

    data = GlyphsFewshotTask(per_pool=600).load()
    for name in ("base", "novel"):
        pool = data.pool(name)
        x, y = pool.x.reshape(len(pool.x), -1).numpy(), pool.y.numpy()
        colour = y[:, 0]
        values = np.unique(colour)
        centroids = np.stack([x[:400][colour[:400] == v].mean(0) for v in values])
        nearest = values[((x[400:, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
        assert (nearest == colour[400:]).mean() > 0.8  # chance: 0.2
        for c in range(1, 4):
            probe = LogisticRegression(max_iter=300).fit(x[:400], y[:400, c])
            assert probe.score(x[400:], y[400:, c]) > 0.5, CONCEPTS[c]


def test_check_passes_and_bad_options_name_the_field():
    GlyphsFewshotTask(**SMALL).check()
    bad = [({"n_way": 6}, "n_way"), ({"n_way": 1}, "n_way"), ({"k_shot": 0}, "k_shot"), ({"n_query": "5"}, "n_query"),
           ({"per_pool": 0}, "per_pool"), ({"seed": -1}, "seed"), ({"noise": -0.1}, "noise"),
           ({"noise": True}, "noise"), ({"colours": 3}, "colours")]
    for options, field in bad:
        with pytest.raises(ConfigError) as err:
            GlyphsFewshotTask(**options)  # type: ignore[arg-type]
        assert err.value.field == field and field in str(err.value), options


def test_check_reports_pools_too_small_for_the_episodes():
    with pytest.raises(ConfigError, match="base pool"):
        GlyphsFewshotTask(per_pool=10, k_shot=5, n_query=5).check()
