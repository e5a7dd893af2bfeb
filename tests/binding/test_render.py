"""The image context (spec §3): N coloured shapes at random, non-overlapping places on a canvas."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binding.images.render import (RenderConfig, Renderer, _shift_distance, grid_rgb, images_to_tensor, max_shapes,
                            palette_ids, palette_rgb, random_objects, save_sample_grid, shape_family, shape_masks)
from lab.errors import UserError

CFG = RenderConfig()  # 64-px canvas, 16-px cells (4x4), 14-px sprites, 32 colours, 32 shapes, jitter


def draw(cfg=CFG, batch=8, n_min=2, n_max=8, seed=0):
    rng = np.random.default_rng(seed)
    colors, shapes, n = random_objects(cfg, batch, n_min, n_max, rng)
    images, positions, offsets = Renderer(cfg).render(colors, shapes, n, rng, return_offsets=True)
    return colors, shapes, n, images, positions, offsets


def cell(img, pos, cfg=CFG):
    r, c = pos
    return img[r * cfg.cell_px:(r + 1) * cfg.cell_px, c * cfg.cell_px:(c + 1) * cfg.cell_px]


def test_same_seed_gives_the_same_images_and_places():
    a, b = draw(seed=3), draw(seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = draw(seed=4)
    assert not np.array_equal(a[3], c[3])


def test_palette_is_the_6x6x6_rgb_grid_in_r_major_order():
    assert grid_rgb(0).tolist() == [0, 0, 0]
    assert grid_rgb(1).tolist() == [0, 0, 51]
    assert grid_rgb(6).tolist() == [0, 51, 0]
    assert grid_rgb(36).tolist() == [51, 0, 0]
    assert grid_rgb(215).tolist() == [255, 255, 255]
    assert palette_ids(RenderConfig(n_colors=216)).tolist() == list(range(216))  # full vocabulary: identity
    assert palette_ids(RenderConfig(n_colors=5, color_subset="first")).tolist() == [0, 1, 2, 3, 4]
    assert palette_ids(RenderConfig(n_colors=3, color_ids=(7, 100, 3))).tolist() == [7, 100, 3]


def test_spread_colours_are_distinct_and_far_from_the_background():
    rgb = palette_rgb(CFG).astype(int)
    assert len({tuple(c) for c in rgb.tolist()}) == CFG.n_colors
    assert np.abs(rgb - np.array(CFG.background_rgb)).max(1).min() >= 25


def test_a_colour_equal_to_the_background_is_refused():
    with pytest.raises(UserError, match="background"):
        palette_ids(RenderConfig(n_colors=216, background_rgb=(255, 255, 255)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_max=st.integers(1, 16), batch=st.integers(1, 6))
def test_objects_never_overlap_and_padding_slots_are_not_drawn(seed, n_max, batch):
    colors, shapes, n, images, positions, _ = draw(batch=batch, n_min=0, n_max=n_max, seed=seed)
    bg = np.array(CFG.background_rgb)
    for b in range(batch):
        placed = positions[b, :n[b]]
        assert (positions[b, n[b]:] == -1).all()
        assert len({tuple(p) for p in placed.tolist()}) == n[b]  # one object per cell
        drawn = {(r, c) for r in range(CFG.grid) for c in range(CFG.grid)
                 if (cell(images[b], (r, c)) != bg).any()}
        assert drawn == {tuple(p) for p in placed.tolist()}  # nothing outside the objects' cells


def test_each_objects_colour_and_shape_are_recoverable_from_its_pixels():
    colors, shapes, n, images, positions, offsets = draw(batch=16, n_max=16)
    bg, rgb, masks = np.array(CFG.background_rgb), palette_rgb(CFG), shape_masks(CFG)
    s = CFG.sprite_px
    for b in range(16):
        for i in range(n[b]):
            px = cell(images[b], positions[b, i])
            fg = (px != bg).any(-1)
            assert (px[fg] == rgb[colors[b, i]]).all()  # every object pixel has exactly its colour
            oy, ox = offsets[b, i]
            assert 0 <= oy <= CFG.cell_px - s and 0 <= ox <= CFG.cell_px - s
            assert np.array_equal(fg[oy:oy + s, ox:ox + s], masks[shapes[b, i]])  # mask is the sprite
            assert fg.sum() == masks[shapes[b, i]].sum()  # and nothing else is drawn in the cell


def test_without_jitter_sprites_are_centred():
    cfg = RenderConfig(jitter=False)
    *_, positions, offsets = draw(cfg)
    assert (offsets[positions[..., 0] >= 0] == (cfg.cell_px - cfg.sprite_px) // 2).all()


def test_tensor_output_is_the_same_image_in_0_1():
    rng = np.random.default_rng(0)
    colors, shapes, n = random_objects(CFG, 3, 1, 4, rng)
    u8, _ = Renderer(CFG).render(colors, shapes, n, np.random.default_rng(1))
    t, _ = Renderer(CFG).render(colors, shapes, n, np.random.default_rng(1), as_tensor=True)
    assert t.shape == (3, 3, 64, 64) and t.dtype == torch.float32
    assert torch.equal(t, images_to_tensor(u8)) and 0 <= t.min() and t.max() <= 1


def test_too_many_objects_for_the_canvas_is_a_user_error_naming_the_numbers():
    ids = np.tile(np.arange(17) % 8, (1, 1))
    with pytest.raises(UserError, match=r"N=17 .*64-px canvas with 16-px cells \(4x4 = 16 cells\)"):
        Renderer(RenderConfig(n_colors=8, n_shapes=8)).render(ids, ids, np.array([17]), np.random.default_rng(0))


def test_too_many_shapes_for_the_sprite_size_is_a_user_error():
    with pytest.raises(UserError, match=r"n_shapes=200 but only \d+ shapes .* sprite_px=14"):
        Renderer(RenderConfig(n_shapes=200))


def test_ids_outside_the_vocabulary_and_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match="shape id 40"):
        Renderer(CFG).render(np.array([[0]]), np.array([[40]]), np.array([1]), np.random.default_rng(0))
    with pytest.raises(UserError, match="not a multiple"):
        RenderConfig(canvas_px=60).validate()
    with pytest.raises(UserError, match="does not fit"):
        RenderConfig(sprite_px=20).validate()


def test_at_least_64_distinguishable_shapes_at_12_to_16_px():
    for px in (12, 14, 16):
        assert max_shapes(px) >= 64


def test_shape_ids_are_a_prefix_and_pairwise_distinct_even_after_a_one_pixel_shift():
    names, masks = shape_family(14)
    small = RenderConfig(n_shapes=10)
    assert np.array_equal(shape_masks(small), masks[:10])
    need = max(3, int(np.ceil(14 * 14 / 10)))
    for i in range(1, len(masks)):
        assert _shift_distance(masks[i], masks[:i]).min() >= need, names[i]


def test_save_sample_grid_writes_a_png(tmp_path):
    from PIL import Image

    path = save_sample_grid(tmp_path / "samples.png", CFG, n_images=6, scale=2, columns=3)
    img = Image.open(path)
    assert img.size == (3 * (128 + 4) + 4, 2 * (128 + 4) + 4)
