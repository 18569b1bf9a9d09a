"""Tests for zeronet.augment and the ImageInput layer it feeds.

LeNet-5's distortions: the fast NumPy :func:`warp` is checked against
:func:`warp_scipy` (one ``scipy.ndimage.affine_transform`` call per image)
and against pixels whose destination can be worked out by hand.

AlexNet's: every crop, flip and test view is checked against plain slicing,
with the random draws replayed from a twin generator in the documented
order; the colour PCA against a covariance computed naively; predict_views
against a loop over images and views.

Images are non-square so that a swapped row/column axis cannot pass
unnoticed.
"""
import json

import numpy as np
import pytest

import zeronet
from zeronet import augment
from zeronet import layers as L
from zeronet.augment import (CifarAugment, ColourPCA, RandomAffine, affine_matrix,
                             predict_views, random_crops, ten_views, warp, warp_scipy)
from zeronet.network import Sequential
from zeronet.trainer import Trainer
from zeronet.optimizers import SGD

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


# ================================================= AlexNet (Krizhevsky 2012) ====

def images(n, c=3, h=9, w=13, seed=0):
    """Random uint8 images, non-square (so rows and columns cannot be swapped)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def replay_crops(n, h, w, size, seed):
    """The draws random_crops documents, replayed from a twin generator."""
    twin = np.random.default_rng(seed)
    tops = twin.integers(0, h - size + 1, size=n)
    lefts = twin.integers(0, w - size + 1, size=n)
    mirror = twin.random(n) < 0.5
    return tops, lefts, mirror, twin


def sliced(x, i, top, left, size, mirror):
    patch = x[i, :, top:top + size, left:left + size]
    return patch[:, :, ::-1] if mirror else patch


# ---------------------------------------------------------------- random_crops

@pytest.mark.parametrize("size", [1, 5, 9])
def test_random_crops_equal_slicing_at_the_documented_draws(size):
    x = images(40)
    patches = random_crops(x, size, np.random.default_rng(3))
    assert patches.shape == (40, 3, size, size) and patches.dtype == np.uint8
    tops, lefts, mirror, _ = replay_crops(40, 9, 13, size, seed=3)
    for i in range(40):
        np.testing.assert_array_equal(patches[i], sliced(x, i, tops[i], lefts[i], size, mirror[i]),
                                      err_msg=f"image {i}")
    assert 0 < mirror.sum() < 40


def test_random_crops_without_flip_cut_the_same_places_unmirrored():
    x = images(30)
    plain = random_crops(x, 4, np.random.default_rng(5), flip=False)
    tops, lefts, _, _ = replay_crops(30, 9, 13, 4, seed=5)
    for i in range(30):
        np.testing.assert_array_equal(plain[i], sliced(x, i, tops[i], lefts[i], 4, False))


def test_random_crops_reach_every_offset_and_flip_half():
    # Pixel value = its position, so a patch's top-left pixel says where it was cut.
    h, w, size = 6, 7, 3
    x = np.broadcast_to(np.arange(h * w, dtype=np.uint8).reshape(1, 1, h, w), (4000, 1, h, w))
    patches = random_crops(np.ascontiguousarray(x), size, np.random.default_rng(0))
    mirrored = patches[:, 0, 0, 0] > patches[:, 0, 0, -1]
    corner = np.where(mirrored, patches[:, 0, 0, -1], patches[:, 0, 0, 0]).astype(int)
    seen = set(zip(corner // w, corner % w))
    assert seen == {(r, c) for r in range(h - size + 1) for c in range(w - size + 1)}
    assert 0.45 < mirrored.mean() < 0.55


def test_random_crops_are_reproducible_from_the_seed():
    x = images(20)
    a = random_crops(x, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, random_crops(x, 5, np.random.default_rng(1)))
    assert not np.array_equal(a, random_crops(x, 5, np.random.default_rng(2)))


def test_random_crops_are_draw_crops_then_cut_patches():
    x = images(10)
    tops, lefts, mirror = augment.draw_crops(10, 9, 13, 6, np.random.default_rng(4))
    np.testing.assert_array_equal(augment.cut_patches(x, tops, lefts, 6, mirror),
                                  random_crops(x, 6, np.random.default_rng(4)))


@pytest.mark.parametrize("tops, lefts, mirror", [
    ([-1, 0], [0, 0], [False, False]),          # would wrap around to the last window
    ([0, 5], [0, 0], [False, False]),           # 9 - 5 = 4 is the last top
    ([0, 0], [0, 9], [False, False]),
    ([0.0, 1.0], [0, 0], [False, False]),
    ([0, 0], [0, 0], [0, 1]),
    ([0], [0], [False]),
])
def test_cut_patches_rejects_positions_outside_the_images(tops, lefts, mirror):
    with pytest.raises(ValueError, match="tops|positions"):
        augment.cut_patches(images(2), np.array(tops), np.array(lefts), 5, np.array(mirror))


def test_random_crops_leave_the_input_alone():
    x = images(8)
    before = x.copy()
    patches = random_crops(x, 9, np.random.default_rng(0))
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(patches, x)


@pytest.mark.parametrize("bad, error", [(np.zeros((2, 3, 9, 13), np.float32), TypeError),
                                        (np.zeros((3, 9, 13), np.uint8), ValueError),
                                        ([[[[0]]]], TypeError)])
def test_crops_and_views_reject_bad_images(bad, error):
    with pytest.raises(error):
        random_crops(bad, 1, np.random.default_rng(0))
    with pytest.raises(error):
        ten_views(bad, 1)


@pytest.mark.parametrize("size, error", [(0, ValueError), (10, ValueError), (2.5, TypeError)])
def test_crops_and_views_reject_bad_sizes(size, error):
    with pytest.raises(error, match="crop size"):
        random_crops(images(2), size, np.random.default_rng(0))
    with pytest.raises(error, match="crop size"):
        ten_views(images(2), size)


# ------------------------------------------------------------------ ten_views

@pytest.mark.parametrize("size", [4, 9])
def test_ten_views_are_the_corners_the_centre_and_their_mirrors(size):
    x = images(5)
    views = ten_views(x, size)
    assert views.shape == (10, 5, 3, size, size) and views.dtype == np.uint8
    bottom, right = 9 - size, 13 - size
    corners = {"top left": (0, 0), "top right": (0, right), "bottom left": (bottom, 0),
               "bottom right": (bottom, right), "centre": (bottom // 2, right // 2)}
    for v, name in enumerate(augment.VIEW_NAMES):
        top, left = corners[name.replace(", mirrored", "")]
        expected = x[:, :, top:top + size, left:left + size]
        if name.endswith("mirrored"):
            expected = expected[:, :, :, ::-1]
        np.testing.assert_array_equal(views[v], expected, err_msg=name)


def test_ten_views_centre_is_the_input_layers_centre_crop():
    x = images(4)
    layer = L.ImageInput(np.zeros((3, 9, 13)), crop=4)
    np.testing.assert_array_equal(layer.forward(x), layer.forward(ten_views(x, 4)[4]))


# ------------------------------------------------------------------ ColourPCA

def correlated_colours(n, h=5, w=7, seed=0):
    """uint8 RGB images whose channels are strongly correlated, as in photos."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(40, 200, size=(n, 1, h, w))
    tint = rng.normal(0, [[[12]], [[6]], [[20]]], size=(n, 3, 1, 1))
    noise = rng.normal(0, 4, size=(n, 3, h, w))
    return np.clip(grey + tint + noise, 0, 255).round().astype(np.uint8)


def naive_covariance(x):
    pixels = x.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    return centred @ centred.T / (pixels.shape[1] - 1)


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_pca_reconstructs_the_naive_covariance(chunk):
    x = correlated_colours(50)
    pca = ColourPCA.fit(x, chunk=chunk)
    v, lam = pca.eigenvectors, pca.eigenvalues
    expected = naive_covariance(x)
    rebuilt = v @ np.diag(lam) @ v.T
    err = np.abs(rebuilt - expected).max() / np.abs(expected).max()
    assert err < 1e-12, f"V diag(lambda) V^T is off the covariance by {err:.3g} (relative)"
    np.testing.assert_allclose(pca.mean, x.reshape(50, 3, -1).mean(axis=(0, 2)), rtol=1e-13)


def test_pca_eigenvectors_orthonormal_eigenvalues_descending():
    pca = ColourPCA.fit(correlated_colours(30, seed=2))
    np.testing.assert_allclose(pca.eigenvectors.T @ pca.eigenvectors, np.eye(3), atol=1e-12)
    assert pca.eigenvalues.shape == (3,) and np.all(np.diff(pca.eigenvalues) < 0)
    # Each eigenvector's largest component is positive (the documented sign).
    v = pca.eigenvectors
    assert np.all(v[np.abs(v).argmax(axis=0), np.arange(3)] > 0)
    # A grey-dominated set: the first axis is brightness, about (1, 1, 1) / sqrt(3).
    assert v[:, 0] @ np.full(3, 3 ** -0.5) > 0.95


def test_pca_of_grey_images_has_one_axis():
    grey = np.repeat(images(10, c=1), 3, axis=1)
    pca = ColourPCA.fit(grey)
    assert pca.eigenvalues[0] > 1000 and np.all(pca.eigenvalues[1:] < 1e-8)


def test_pca_offsets_follow_the_formula_at_the_documented_draws():
    pca = ColourPCA.fit(correlated_colours(20))
    offsets = pca.offsets(6, np.random.default_rng(4), std=0.1)
    alpha = np.random.default_rng(4).normal(0.0, 0.1, size=(6, 3))
    p, lam = pca.eigenvectors, pca.eigenvalues
    expected = np.stack([sum(p[:, j] * alpha[i, j] * lam[j] ** 0.5 for j in range(3))
                         for i in range(6)])
    np.testing.assert_allclose(offsets, expected, rtol=1e-12, atol=1e-12)
    paper = ColourPCA(lam, p, weighting="eigenvalue")
    np.testing.assert_allclose(paper.offsets(6, np.random.default_rng(4)),
                               (alpha * lam / 255.0) @ p.T, rtol=1e-12)


def test_pca_offsets_spread_as_the_eigenvalues_say():
    pca = ColourPCA.fit(correlated_colours(40))
    offsets = pca.offsets(50_000, np.random.default_rng(0), std=0.1)
    along = offsets @ pca.eigenvectors                     # coordinates along p1, p2, p3
    np.testing.assert_allclose(along.std(axis=0), 0.1 * np.sqrt(pca.eigenvalues), rtol=0.02)
    assert np.abs(np.corrcoef(along.T) - np.eye(3)).max() < 0.02


def test_pca_with_zero_std_is_the_identity():
    pca = ColourPCA.fit(correlated_colours(10))
    np.testing.assert_array_equal(pca.offsets(5, np.random.default_rng(0), std=0.0), 0.0)
    layer = L.ImageInput(np.full((3, 9, 13), 100.0), crop=5)
    x = images(6)
    plain = CifarAugment(layer)(x, np.random.default_rng(1))
    jittered = CifarAugment(layer, pca=pca, std=0.0)(x, np.random.default_rng(1))
    np.testing.assert_array_equal(jittered, plain)


def test_pca_config_is_json_and_rebuilds_exactly():
    pca = ColourPCA.fit(correlated_colours(10), weighting="eigenvalue")
    config = json.loads(json.dumps(pca.config()))
    rebuilt = ColourPCA(**config)
    np.testing.assert_array_equal(rebuilt.eigenvalues, pca.eigenvalues)
    np.testing.assert_array_equal(rebuilt.eigenvectors, pca.eigenvectors)
    np.testing.assert_array_equal(rebuilt.mean, pca.mean)
    assert rebuilt.weighting == "eigenvalue"
    np.testing.assert_array_equal(rebuilt.offsets(3, np.random.default_rng(0)),
                                  pca.offsets(3, np.random.default_rng(0)))


@pytest.mark.parametrize("kwargs", [
    dict(eigenvalues=[1.0, 2.0, 3.0]),                          # ascending
    dict(eigenvalues=[3.0, 2.0, -1.0]),
    dict(eigenvalues=[3.0, 2.0, float("nan")]),
    dict(eigenvalues=[3.0, 2.0]),
    dict(eigenvectors=np.ones((3, 3))),                         # not orthonormal
    dict(eigenvectors=np.eye(2)),
    dict(mean=[1.0, 2.0]),
    dict(weighting="variance"),
])
def test_pca_rejects_bad_eigen_data(kwargs):
    args = {"eigenvalues": [3.0, 2.0, 1.0], "eigenvectors": np.eye(3), **kwargs}
    with pytest.raises(ValueError):
        ColourPCA(**args)


@pytest.mark.parametrize("bad", [np.zeros((4, 1, 5, 5), np.uint8), np.zeros((4, 3, 5, 5)),
                                 np.zeros((1, 3, 1, 1), np.uint8)])
def test_pca_fit_rejects_what_is_not_an_rgb_set(bad):
    with pytest.raises((TypeError, ValueError)):
        ColourPCA.fit(bad)


# --------------------------------------------------------------- CifarAugment

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cifar_augment_output_dtype_and_shape(dtype):
    layer = L.ImageInput(np.full((3, 9, 13), 127.5), crop=6, dtype=dtype)
    pca = ColourPCA.fit(correlated_colours(10, h=9, w=13))
    out = CifarAugment(layer, pca=pca)(images(7), np.random.default_rng(0))
    assert out.shape == (7, 3, 6, 6) and out.dtype == np.dtype(dtype)


def test_cifar_augment_without_randomness_is_the_input_layers_centre_crop():
    mean = np.random.default_rng(9).uniform(0, 255, size=(3, 9, 13))
    layer = L.ImageInput(mean, crop=5, scale=1 / 64)
    x = images(6)
    out = CifarAugment(layer, crop=False, flip=False, pca=None)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(out, layer.forward(x))


def test_cifar_augment_centre_crop_with_flips_mirrors_the_centre():
    layer = L.ImageInput(np.zeros((3, 9, 13)), crop=5)
    x = images(30)
    out = CifarAugment(layer, crop=False)(x, np.random.default_rng(2))
    _, _, mirror, _ = replay_crops(30, 9, 13, 5, seed=2)
    centre = layer.forward(x)
    np.testing.assert_array_equal(out[mirror], centre[mirror][..., ::-1])
    np.testing.assert_array_equal(out[~mirror], centre[~mirror])


def test_cifar_augment_is_crop_flip_prepare_then_jitter_in_the_documented_order():
    mean = np.random.default_rng(9).uniform(0, 255, size=(3, 9, 13))
    scale = 1 / 64
    layer = L.ImageInput(mean, crop=5, scale=scale, dtype="float64")
    pca = ColourPCA.fit(correlated_colours(10))
    x = images(12)
    out = CifarAugment(layer, pca=pca, std=0.3)(x, np.random.default_rng(8))
    tops, lefts, mirror, twin = replay_crops(12, 9, 13, 5, seed=8)
    alpha = twin.normal(0.0, 0.3, size=(12, 3))
    shift = (alpha * np.sqrt(pca.eigenvalues)) @ pca.eigenvectors.T         # pixel units
    for i in range(12):
        patch = sliced(x, i, tops[i], lefts[i], 5, mirror[i]).astype(np.float64)
        expected = (patch - mean[:, 2:7, 4:9]) * scale + shift[i][:, None, None] * scale
        np.testing.assert_allclose(out[i], expected, rtol=0, atol=1e-12, err_msg=f"image {i}")


def test_cifar_augment_draws_new_jitter_every_call():
    layer = L.ImageInput(np.zeros((3, 9, 13)), crop=5)
    aug = CifarAugment(layer, crop=False, flip=False, pca=ColourPCA.fit(correlated_colours(5)))
    x = images(4)
    rng = np.random.default_rng(0)
    first, second = aug(x, rng), aug(x, rng)
    # Every image is shifted by one colour, a different one each call.
    shift = second - first
    assert np.all(np.abs(shift[:, :, 0, 0]) > 0)
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :, :1, :1], shift.shape), atol=1e-4)


def test_cifar_augment_config_is_json_and_rebuilds_the_same_augmenter():
    layer = L.ImageInput(np.full((3, 9, 13), 90.0), crop=5)
    aug = CifarAugment(layer, flip=False, pca=ColourPCA.fit(correlated_colours(5)), std=0.2)
    config = json.loads(json.dumps(aug.config()))
    assert config["type"] == "CifarAugment" and config["size"] == 5
    rebuilt = CifarAugment.from_config(config, layer)
    x = images(5)
    np.testing.assert_array_equal(aug(x, np.random.default_rng(3)),
                                  rebuilt(x, np.random.default_rng(3)))
    assert CifarAugment(layer).config()["pca"] is None


def test_cifar_augment_rejects_bad_input():
    layer = L.ImageInput(np.zeros((3, 9, 13)), crop=5)
    aug = CifarAugment(layer)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mean image"):
        aug(images(2, h=13, w=9), rng)
    with pytest.raises(TypeError, match="uint8"):
        aug(images(2).astype(np.float32), rng)
    with pytest.raises(TypeError, match="ImageInput"):
        CifarAugment(L.Flatten())
    with pytest.raises(TypeError, match="ColourPCA"):
        CifarAugment(layer, pca="yes")
    with pytest.raises(ValueError, match="std"):
        CifarAugment(layer, std=-0.1)
    with pytest.raises(ValueError, match="RGB"):
        CifarAugment(L.ImageInput(np.zeros((1, 9, 13)), crop=5),
                     pca=ColourPCA([3.0, 2.0, 1.0], np.eye(3)))


def test_cifar_augment_plugs_into_the_trainer():
    rng = np.random.default_rng(0)
    x, t = images(24), rng.integers(0, 3, size=24)
    net = tiny_image_net(rng, dtype="float32")
    aug = CifarAugment(net.layers["input"], pca=ColourPCA.fit(x))
    trainer = Trainer(net, SGD(lr=0.01), epochs=2, batch_size=8, rng=rng, augment=aug,
                      progress=False, log=lambda *a: None)
    history = trainer.fit(x, t, x, t)
    assert len(history) == 2 and all(np.isfinite(r["val_loss"]) for r in history)


# -------------------------------------------------------------- predict_views

def tiny_image_net(rng, dtype="float64", crop=5):
    """ImageInput (9x13 -> crop) - conv - relu - affine to 3 classes."""
    mean = rng.uniform(0, 255, size=(3, 9, 13))
    return Sequential([
        ("input", L.ImageInput(mean, crop, scale=1 / 64, dtype=dtype)),
        ("conv", L.Convolution(3, 4, 3, pad=1, dtype=dtype, rng=rng)), ("relu", L.ReLU()),
        ("flatten", L.Flatten()),
        ("fc", L.Affine(4 * crop * crop, 3, dtype=dtype, rng=rng)),
    ])


def softmax_one(scores):
    e = np.exp(scores - scores.max())
    return e / e.sum()


def test_predict_views_equals_a_loop_over_images_and_views():
    rng = np.random.default_rng(0)
    net = tiny_image_net(rng)
    x = images(7)
    bottom, right = 9 - 5, 13 - 5
    places = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    expected = np.zeros((7, 3))
    for i in range(7):
        for mirror in (False, True):
            for top, left in places:
                patch = sliced(x, i, top, left, 5, mirror)
                expected[i] += softmax_one(net.predict(patch[None])[0]) / 10
    for batch_size in (500, 3, 1):
        probs = predict_views(net, x, batch_size=batch_size)
        assert probs.shape == (7, 3) and probs.dtype == np.float64
        np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-15,
                                   err_msg=f"batch_size={batch_size}")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_predict_views_centre_is_the_softmax_of_predict():
    rng = np.random.default_rng(1)
    net = tiny_image_net(rng, dtype="float32")
    x = images(9)
    probs = predict_views(net, x, views="centre", batch_size=4)
    assert probs.dtype == np.float32
    scores = net.predict(x).astype(np.float64)
    expected = np.stack([softmax_one(s) for s in scores])
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)


def test_predict_views_rejects_bad_arguments():
    net = tiny_image_net(np.random.default_rng(0))
    with pytest.raises(ValueError, match="ten"):
        predict_views(net, images(2), views="five")
    with pytest.raises(ValueError, match="non-empty"):
        predict_views(net, images(0))
    with pytest.raises(ValueError, match="non-empty"):
        predict_views(net, images(2, h=32, w=32))
    with pytest.raises(ValueError, match="batch_size"):
        predict_views(net, images(2), batch_size=0)
    with pytest.raises(ValueError, match="ImageInput"):
        predict_views(Sequential([("fc", L.Affine(3, 2))]), images(2))


# ----------------------------------------------------------------- ImageInput

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1 / 64])
def test_image_input_centre_crops_subtracts_the_mean_and_scales(dtype, scale):
    mean = np.random.default_rng(2).uniform(0, 255, size=(3, 32, 32))
    layer = L.ImageInput(mean, crop=24, scale=scale, dtype=dtype)
    x = np.random.default_rng(3).integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    out = layer.forward(x)
    assert out.shape == (4, 3, 24, 24) and out.dtype == np.dtype(dtype)
    mean_as_stored = mean.astype(dtype).astype(np.float64)
    expected = (x[:, :, 4:28, 4:28] - mean_as_stored[:, 4:28, 4:28]) * scale
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == "float32" else 1e-14,
                               atol=1e-4 if dtype == "float32" else 1e-12)


def test_image_input_centre_of_odd_margins_and_non_square_images():
    mean = np.zeros((3, 9, 13))
    layer = L.ImageInput(mean, crop=4)
    x = images(2)
    # margins 5 and 9: the centre crop starts at 5 // 2 = 2 and 9 // 2 = 4
    np.testing.assert_array_equal(layer.forward(x), x[:, :, 2:6, 4:8].astype(np.float32))


def test_image_input_takes_uint8_crops_and_passes_prepared_floats_through():
    mean = np.random.default_rng(2).uniform(0, 255, size=(3, 9, 13))
    layer = L.ImageInput(mean, crop=5, scale=0.5)
    patches = images(3, h=5, w=5)
    expected = (patches - mean.astype(np.float32)[:, 2:7, 4:9]) * np.float32(0.5)
    np.testing.assert_allclose(layer.forward(patches), expected, rtol=1e-6)
    np.testing.assert_array_equal(layer.prepare(patches), layer.forward(patches))
    prepared = layer.prepare(patches)
    assert layer.forward(prepared) is prepared
    assert layer.backward(np.ones_like(prepared)) is None


def test_image_input_errors():
    layer = L.ImageInput(np.zeros((3, 9, 13)), crop=5)
    with pytest.raises(ValueError, match="uint8 images"):
        layer.forward(images(2, h=7, w=7))                       # neither the image nor the crop
    with pytest.raises(ValueError, match="prepared floats"):
        layer.forward(np.zeros((2, 3, 9, 13), np.float32))       # floats must already be cropped
    with pytest.raises(TypeError, match="float64"):
        layer.forward(np.zeros((2, 3, 5, 5), np.float64))        # no silent upcast
    with pytest.raises(ValueError, match="N, C, H, W"):
        layer.forward(np.zeros((3, 9, 13), np.uint8))
    with pytest.raises(ValueError, match="mean image"):
        L.ImageInput(np.zeros((9, 13)), crop=5)
    for crop in (0, 10, 4.5):
        with pytest.raises(ValueError, match="crop"):
            L.ImageInput(np.zeros((3, 9, 13)), crop=crop)
    with pytest.raises(ValueError, match="finite"):             # a stranger's weights file
        L.ImageInput(np.full((3, 9, 13), np.nan), crop=5)
    for scale in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="scale"):
            L.ImageInput(np.zeros((3, 9, 13)), crop=5, scale=scale)


def test_image_input_round_trips_through_a_weights_file(tmp_path):
    rng = np.random.default_rng(4)
    net = tiny_image_net(rng, dtype="float32")
    path = tmp_path / "tiny.h5"
    zeronet.save(net, path)
    loaded = zeronet.load(path)
    assert loaded.config() == net.config()
    assert repr(loaded.layers["input"]) == "ImageInput(mean=(3, 9, 13), crop=5, scale=0.015625)"
    np.testing.assert_array_equal(loaded.layers["input"].mean, net.layers["input"].mean)
    x = images(5)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
