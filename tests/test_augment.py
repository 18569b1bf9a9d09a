"""Tests for zeronet.augment: the affine matrices, the warp, RandomAffine.

The fast NumPy :func:`warp` is checked against :func:`warp_scipy` (one
``scipy.ndimage.affine_transform`` call per image) and against pixels whose
destination can be worked out by hand. Images are non-square so that a
swapped row/column axis cannot pass unnoticed.
"""
import json

import numpy as np
import pytest

from zeronet import augment
from zeronet.augment import RandomAffine, affine_matrix, warp, warp_scipy

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}     # warp vs warp_scipy, per dtype
IDENTITY = dict(max_shift=0.0, scale=(1.0, 1.0), squeeze=0.0, shear=0.0)


def blobs(n, h, w, rng, fill=-0.1, ink=1.175, dtype=np.float64):
    """``n`` images of a smooth Gaussian blob of ink near the centre.

    Values run from ``fill`` (background, LeNet-5's white) towards ``ink``,
    like a normalised MNIST digit, and the blob fades out well inside the
    frame, so small distortions neither cut it off nor pull in the border.
    """
    rows, cols = np.mgrid[0:h, 0:w]
    centre = rng.uniform(-2, 2, size=(n, 2)) + ((h - 1) / 2, (w - 1) / 2)
    sigma = rng.uniform(2.0, 3.0, size=(n, 2))
    shape = np.exp(-0.5 * (((rows - centre[:, 0, None, None]) / sigma[:, 0, None, None]) ** 2
                           + ((cols - centre[:, 1, None, None]) / sigma[:, 1, None, None]) ** 2))
    return (fill + (ink - fill) * shape)[:, None].astype(dtype)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------- affine_matrix

def test_affine_matrix_identity_and_translation():
    np.testing.assert_array_equal(affine_matrix(), np.eye(3))
    m = affine_matrix(shift=(2.0, -3.0))
    np.testing.assert_array_equal(m, [[1, 0, 2], [0, 1, -3], [0, 0, 1]])


def test_affine_matrix_parts_mean_what_the_docstring_says():
    s, q, k = 1.1, 0.2, 0.3
    a = affine_matrix(scale=s, squeeze=q, shear=k)[:2, :2]
    assert abs(np.linalg.det(a) - s * s) < 1e-12, "squeezing and shearing must keep the area"
    assert abs(a[1, 1] / a[0, 0] - (1 + q)) < 1e-12, "squeeze changes width/height by 1 + q"
    # A point one (scaled) pixel below the centre moves `shear` pixels right.
    below = affine_matrix(shear=k) @ [1.0, 0.0, 1.0]
    np.testing.assert_allclose(below, [1.0, k, 1.0])


def test_affine_matrix_broadcasts_over_a_batch():
    m = affine_matrix(shift=np.zeros((4, 2)), scale=np.linspace(0.9, 1.1, 4), squeeze=0.1,
                      shear=0.0)
    assert m.shape == (4, 3, 3)
    np.testing.assert_allclose(np.linalg.det(m[:, :2, :2]), np.linspace(0.9, 1.1, 4) ** 2)
    with pytest.raises(ValueError, match="shift"):
        affine_matrix(shift=(1.0, 2.0, 3.0))


# ---------------------------------------------------------------- warp

@pytest.mark.parametrize("warp_fn", [warp, warp_scipy])
@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_shift_moves_a_bright_pixel_by_that_amount(warp_fn, dtype):
    x = np.zeros((1, 1, 9, 12), dtype=dtype)
    x[0, 0, 4, 5] = 1.0
    y = warp_fn(x, affine_matrix(shift=(2.0, -3.0))[None], fill=0.0)
    expected = np.zeros_like(x)
    expected[0, 0, 6, 2] = 1.0                    # 2 down, 3 left
    assert max_diff(y, expected) < 1e-6, f"pixel landed at {np.argwhere(y[0, 0] > 0.5)}"


@pytest.mark.parametrize("warp_fn", [warp, warp_scipy])
def test_scaling_is_about_the_centre(warp_fn):
    # 11x15 has a centre pixel (5, 7); a pixel 2 right of it, scaled by 2,
    # lands 4 right of it, and the centre stays put.
    x = np.zeros((1, 1, 11, 15))
    x[0, 0, 5, 7] = x[0, 0, 5, 9] = 1.0
    y = warp_fn(x, affine_matrix(scale=2.0)[None], fill=0.0)[0, 0]
    assert y[5, 7] == pytest.approx(1.0) and y[5, 11] == pytest.approx(1.0)
    assert y[5, 9] == pytest.approx(0.0), "the old position must be empty after scaling"


@pytest.mark.parametrize("dtype", DTYPES)
def test_warp_matches_scipy_reference(dtype, monkeypatch):
    # Strong distortions, 3 channels, non-square images, and a block size
    # that does not divide the batch, so every branch of warp is exercised.
    monkeypatch.setattr(augment, "BLOCK_PIXELS", 3 * 13 * 17)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3, 13, 17)).astype(dtype)
    m = RandomAffine(max_shift=8, scale=(0.5, 1.8), squeeze=0.6, shear=0.8).sample(10, rng)
    fast, reference = warp(x, m, fill=0.25), warp_scipy(x, m, fill=0.25)
    assert fast.dtype == reference.dtype == dtype
    err = max_diff(fast, reference)
    assert err < TOL[dtype], f"warp differs from warp_scipy by {err:.3g} ({dtype.__name__})"


def test_fill_is_used_outside_the_image():
    x = np.ones((2, 1, 8, 16))
    y = warp(x, affine_matrix(shift=[(0.0, 10.0), (-30.0, 0.0)]), fill=-0.5)
    assert np.all(y[0, 0, :, :10] == -0.5) and np.all(y[0, 0, :, 10:] == 1.0)
    assert np.all(y[1] == -0.5), "an image shifted out of the frame must be all fill"
    # Shrunk by half, the corners show background.
    y = RandomAffine(max_shift=0, scale=(0.5, 0.5), squeeze=0, shear=0, fill=-0.1)(
        np.ones((3, 1, 20, 24), np.float32), np.random.default_rng(0))
    assert np.all(y[:, :, [0, -1]][:, :, :, [0, -1]] == np.float32(-0.1))
    assert np.all(y[:, :, 10, 12] == 1.0)


def test_warp_rejects_bad_input():
    m = np.eye(3)[None]
    with pytest.raises(TypeError, match="float32 or float64"):
        warp(np.zeros((1, 1, 4, 4), np.uint8), m)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        warp(np.zeros((1, 4, 4)), m)
    with pytest.raises(ValueError, match="matrices"):
        warp(np.zeros((2, 1, 4, 4)), m)


# ---------------------------------------------------------------- RandomAffine

@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_parameters_return_the_input(dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.1, 1.175, size=(5, 1, 28, 31)).astype(dtype)
    y = RandomAffine(**IDENTITY)(x, rng)
    assert y is not x
    err = max_diff(y, x)
    assert err < 1e-6, f"identity distortion changed the images by up to {err:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 1, 32, 32), (2, 2, 17, 23), (0, 1, 8, 8)])
def test_shape_and_dtype_preserved_and_input_untouched(dtype, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    before = x.copy()
    y = RandomAffine()(x, rng)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(x, before)


def test_same_seed_same_output_different_seed_different_output():
    x = blobs(6, 32, 32, np.random.default_rng(3))
    aug = RandomAffine()
    first = aug(x, np.random.default_rng(7))
    again = aug(x, np.random.default_rng(7))
    other = aug(x, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert max_diff(first, other) > 0.1
    # Each image gets its own parameters: the same image, repeated, comes
    # out differently.
    same = aug(np.repeat(x[:1], 2, axis=0), np.random.default_rng(7))
    assert max_diff(same[0], same[1]) > 0.1


def test_sample_always_draws_five_uniforms_per_image():
    # Whatever the ranges (even empty ones), sample(n) advances the generator
    # by exactly 5n uniforms, so the rest of a run's random stream does not
    # depend on the augmentation settings.
    for aug in (RandomAffine(), RandomAffine(**IDENTITY)):
        rng, twin = np.random.default_rng(4), np.random.default_rng(4)
        aug.sample(7, rng)
        twin.random(5 * 7)
        assert rng.random() == twin.random()


def test_sampled_parameters_stay_in_their_ranges():
    aug = RandomAffine(max_shift=1.5, scale=(0.8, 1.2), squeeze=0.2, shear=0.3)
    m = aug.sample(2000, np.random.default_rng(5))
    assert np.all(np.abs(m[:, :2, 2]) <= 1.5)
    det = np.linalg.det(m[:, :2, :2])               # = scale ** 2
    assert 0.8 ** 2 <= det.min() and det.max() <= 1.2 ** 2
    aspect = m[:, 1, 1] / m[:, 0, 0]                # = 1 + squeeze
    assert 0.8 <= aspect.min() and aspect.max() <= 1.2
    shear = m[:, 1, 0] / m[:, 0, 0]
    assert np.all(np.abs(shear) <= 0.3)
    # ...and actually use them: not all near the middle.
    assert np.abs(m[:, :2, 2]).max() > 1.4 and np.abs(shear).max() > 0.29


def test_ink_is_preserved_up_to_the_change_of_area():
    # Small distortions of smooth blobs: the amount of ink (intensity above
    # the background) changes by the area factor det(A) = scale**2 and
    # otherwise stays put; over a batch the mean intensity barely moves.
    rng = np.random.default_rng(6)
    x = blobs(64, 32, 32, rng)
    aug = RandomAffine()
    m = aug.sample(len(x), np.random.default_rng(9))
    y = warp(x, m, fill=aug.fill)
    ink_x = (x - aug.fill).sum(axis=(1, 2, 3))
    ink_y = (y - aug.fill).sum(axis=(1, 2, 3))
    ratio = ink_y / (ink_x * np.linalg.det(m[:, :2, :2]))
    worst = np.abs(ratio - 1).max()
    assert worst < 0.02, f"ink / (det(A) * original ink) is off by up to {worst:.3g}"
    y_random = aug(x, rng)
    assert abs(y_random.mean() / x.mean() - 1) < 0.05


def test_config_is_json_and_rebuilds_the_same_augmenter():
    aug = RandomAffine(max_shift=1.0, scale=(0.95, 1.05), squeeze=0.05, shear=0.1, fill=0.0)
    config = json.loads(json.dumps(aug.config()))
    assert config == {"type": "RandomAffine", "max_shift": 1.0, "scale": [0.95, 1.05],
                      "squeeze": 0.05, "shear": 0.1, "fill": 0.0}
    rebuilt = RandomAffine(**{k: v for k, v in config.items() if k != "type"})
    x = blobs(3, 28, 28, np.random.default_rng(0))
    np.testing.assert_array_equal(aug(x, np.random.default_rng(1)),
                                  rebuilt(x, np.random.default_rng(1)))


@pytest.mark.parametrize("kwargs", [dict(max_shift=-1), dict(scale=(1.1, 0.9)),
                                    dict(scale=(0.0, 1.0)), dict(squeeze=1.0),
                                    dict(shear=-0.1), dict(fill=float("nan"))])
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        RandomAffine(**kwargs)
