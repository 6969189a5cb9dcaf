"""Keras-style zoom and shift augmentation (``TrainConfig.zoom`` / ``shift``), checked by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ngl.io.config import ConfigError
from ngl.train import TrainConfig, augment_batch, zoom_shift

W = 8
C = (W - 1) / 2  # the centre pixel coordinate zoom is about


def ramps(b: int = 1) -> torch.Tensor:
    """Channel 0 is the column minus the centre, channel 1 the row minus the centre."""
    col = (torch.arange(W, dtype=torch.float32) - C).expand(W, W)
    return torch.stack([col, col.T]).expand(b, 2, W, W).clone()


def bright_pixel(row: int, col: int, b: int = 1) -> torch.Tensor:
    x = torch.zeros(b, 1, W, W)
    x[:, 0, row, col] = 1.0
    return x


def test_defaults_are_off_and_keep_the_batch_exactly():
    cfg = TrainConfig()
    assert cfg.zoom == 0.0 and cfg.shift == 0.0
    x = torch.randn(3, 2, W, W)
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    assert augment_batch(x, cfg, g) is x
    assert torch.equal(g.get_state(), before)  # nothing drawn: old runs keep their random stream
    # with a flip only, the stream and result are those of a config without zoom/shift fields
    flip = TrainConfig(hflip=True, zoom=0.0, shift=0.0)
    a = augment_batch(x, flip, torch.Generator().manual_seed(3))
    flips = torch.rand(3, generator=torch.Generator().manual_seed(3)) < 0.5
    assert torch.equal(a, torch.where(flips[:, None, None, None], x.flip(-1), x))


@pytest.mark.parametrize("field", ["zoom", "shift"])
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_ranges_are_validated(field, bad):
    with pytest.raises((ValueError, ConfigError), match=field):
        TrainConfig(**{field: bad})
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict({field: bad})


def test_new_fields_round_trip():
    cfg = TrainConfig(zoom=0.2, shift=0.1, hflip=True)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert TrainConfig.from_dict({"zoom": 0, "shift": 0}) == TrainConfig()  # int where a float is


@pytest.mark.parametrize(("dx", "dy", "row", "col"), [
    (0.25, 0.0, 3, 2),    # 2 px right
    (-0.25, 0.0, 3, 2),   # 2 px left
    (0.0, 0.375, 1, 5),   # 3 px down
    (0.125, -0.125, 4, 4),  # 1 px right, 1 px up
])
def test_shift_moves_a_bright_pixel_by_whole_pixels(dx, dy, row, col):
    x = bright_pixel(row, col)
    out = zoom_shift(x, torch.ones(1, 2), torch.tensor([[dx, dy]]))
    expected = bright_pixel(row + round(dy * W), col + round(dx * W))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_half_pixel_shift_interpolates_bilinearly():
    out = zoom_shift(bright_pixel(3, 2), torch.ones(1, 2), torch.tensor([[0.5 / W, 0.0]]))
    assert out[0, 0, 3, 2] == pytest.approx(0.5, abs=1e-5)
    assert out[0, 0, 3, 3] == pytest.approx(0.5, abs=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)


def test_shift_fills_from_the_nearest_edge_pixel():
    x = ramps()
    out = zoom_shift(x, torch.ones(1, 2), torch.tensor([[0.25, 0.0]]))  # 2 px right
    # columns 2.. hold the old columns 0..; columns 0, 1 repeat the old edge (Keras "nearest")
    torch.testing.assert_close(out[0, 0, :, 2:], x[0, 0, :, :-2], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 0, :, :2], x[0, 0, :, :1].expand(W, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1], x[0, 1], atol=1e-5, rtol=0)  # rows untouched


@pytest.mark.parametrize(("zx", "zy"), [(0.5, 0.75), (0.8, 1.0), (1.0, 0.9)])
def test_zoom_in_scales_a_centred_ramp(zx, zy):
    # Output pixel j samples the input at cx + zx (j - cx); bilinear interpolation of a linear
    # ramp is exact, so the ramp's slope becomes zx (columns) and zy (rows).
    out = zoom_shift(ramps(), torch.tensor([[zx, zy]]), torch.zeros(1, 2))
    torch.testing.assert_close(out[0, 0], zx * ramps()[0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1], zy * ramps()[0, 1], atol=1e-5, rtol=0)


def test_zoom_out_shrinks_a_centred_square_and_clamps_at_the_edges():
    out = zoom_shift(ramps(), torch.tensor([[1.5, 1.2]]), torch.zeros(1, 2))
    torch.testing.assert_close(out[0, 0], (1.5 * ramps()[0, 0]).clamp(-C, C), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1], (1.2 * ramps()[0, 1]).clamp(-C, C), atol=1e-5, rtol=0)
    # a centred 4x4 square zoomed in by 2 (scale 0.5) covers the centre 8x8 of a 16x16 image
    x = torch.zeros(1, 1, 16, 16)
    x[..., 6:10, 6:10] = 1.0
    big = zoom_shift(x, torch.tensor([[0.5, 0.5]]), torch.zeros(1, 2))[0, 0]
    assert torch.all(big[5:11, 5:11] > 0.99) and torch.all(big[:3] == 0) and torch.all(big[:, 13:] == 0)
    assert float(big.sum()) == pytest.approx(4 * float(x.sum()), abs=1e-4)  # area x 2^2


def test_zoom_shift_rejects_bad_inputs():
    with pytest.raises(TypeError, match="floating"):
        zoom_shift(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.ones(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        zoom_shift(torch.zeros(2, 1, 4, 4), torch.ones(1, 2), torch.zeros(2, 2))


AUG = TrainConfig(zoom=0.2, shift=0.1, hflip=True)


def test_same_seed_same_output_other_seed_other_output():
    x = torch.randn(6, 3, W, W, generator=torch.Generator().manual_seed(0))
    a = augment_batch(x, AUG, torch.Generator().manual_seed(1))
    b = augment_batch(x, AUG, torch.Generator().manual_seed(1))
    c = augment_batch(x, AUG, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_kept(dtype):
    x = torch.randn(4, 3, 6, 10, dtype=dtype)
    out = augment_batch(x, dataclasses.replace(AUG, random_crop=2), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    if torch.cuda.is_available():  # the draws stay on the CPU generator: same result on the GPU
        cuda = augment_batch(x.cuda(), AUG, torch.Generator().manual_seed(5))
        cpu = augment_batch(x, AUG, torch.Generator().manual_seed(5))
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)


def test_draws_stay_in_the_keras_ranges():
    """On a ramp each image's slope is its zoom factor and its offset its shift (in pixels)."""
    b = 64
    g = torch.Generator().manual_seed(0)
    # columns 1 and W - 2 sample inside the image for any zoom factor up to 1.2: no edge fill
    out = augment_batch(ramps(b), TrainConfig(zoom=0.2), g)
    slope_x = (out[:, 0, :, -2] - out[:, 0, :, 1]).mean(dim=1) / (W - 3)
    slope_y = (out[:, 1, -2, :] - out[:, 1, 1, :]).mean(dim=1) / (W - 3)
    for s in (slope_x, slope_y):
        assert torch.all((s > 0.8 - 1e-4) & (s < 1.2 + 1e-4)) and float(s.std()) > 0.05
    assert not torch.allclose(slope_x, slope_y)  # zx and zy drawn independently, as in Keras
    out = augment_batch(ramps(b), TrainConfig(shift=0.25), g)
    # the centre of a shifted ramp reads -shift * W (no zoom: slope 1, interior away from edges)
    centre = out[:, 0, :, 3:5].mean(dim=(1, 2))
    assert torch.all(centre.abs() <= 0.25 * W + 1e-4) and float(centre.std()) > 0.3
    # no zoom drawn: the interior slope is exactly 1 where no edge is reached
    torch.testing.assert_close(out[:, 0, :, 4] - out[:, 0, :, 3], torch.ones(b, W), atol=1e-4,
                               rtol=0)
