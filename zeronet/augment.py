"""Data augmentation: random planar affine distortions of images.

LeCun et al. 1998, §III.C.2, trained LeNet-5 a second time on MNIST with
distorted copies of the training images added, and brought the test error
from 0.95% to 0.8% (the "LeNet-5 [distortions]" entry of Fig. 9). The
distortions were random combinations of planar affine transformations:
horizontal and vertical translation, scaling, squeezing (compressing one axis
while stretching the other) and horizontal shearing. The paper does not give
their magnitudes, so :class:`RandomAffine`'s defaults are ours (small enough
that a 4 stays a 4); they are recorded by ``config()`` in every run.
The paper made its distorted images once, in advance; here every minibatch
is distorted afresh, so no two epochs see the same images.

Pieces, in the order they run:

- :func:`affine_matrix` builds the matrix of one transformation (or of many
  at once) from its parameters;
- :meth:`RandomAffine.sample` draws random parameters for a batch;
- :func:`warp` resamples a batch of images through their matrices with
  bilinear interpolation. :func:`warp_scipy` does the same one image at a
  time with ``scipy.ndimage.affine_transform``: it is the reference that
  :func:`warp` is tested against, and 2-3x slower.

Coordinates are ``(row, col)`` in pixels, rows pointing down, measured from
the image centre ``((H - 1) / 2, (W - 1) / 2)``, so scaling and shearing
leave the centre where it is.

Example
-------
>>> import numpy as np
>>> from zeronet.augment import RandomAffine
>>> rng = np.random.default_rng(0)
>>> aug = RandomAffine()
>>> x = np.full((128, 1, 32, 32), -0.1, dtype=np.float32)
>>> aug(x, rng).shape
(128, 1, 32, 32)
"""
import math

import numpy as np
from scipy import ndimage

__all__ = ["RandomAffine", "affine_matrix", "warp", "warp_scipy"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# warp() works through a batch in blocks of about this many output pixels.
BLOCK_PIXELS = 16 * 1024


def affine_matrix(shift=(0.0, 0.0), scale=1.0, squeeze=0.0, shear=0.0):
    """Forward matrices of affine transformations about the image centre.

    The transformation maps a point ``p = (row, col)`` of the input, measured
    from the centre, to the point ``A @ p + shift`` of the output, where::

        A = [[1,     0],     @  [[s / sqrt(1 + q), 0              ],
             [shear, 1]]         [0,               s * sqrt(1 + q)]]

    with ``s = scale`` and ``q = squeeze``: first scale (the width by
    ``s * sqrt(1 + q)``, the height by ``s / sqrt(1 + q)``, so the aspect
    ratio width/height changes by ``1 + q`` while the area changes by ``s**2``
    only), then shear horizontally (a point moves right by ``shear`` pixels
    for every pixel it lies below the centre), then translate.

    Every argument broadcasts, so one call builds the matrices of a whole
    batch.

    Parameters
    ----------
    shift : array_like, shape (..., 2)
        ``(down, right)`` translation in pixels.
    scale : array_like, shape (...)
        Isotropic scale factor, > 0 (1 = unchanged).
    squeeze : array_like, shape (...)
        Relative change of the aspect ratio, > -1 (0 = unchanged; 0.1 makes
        the image about 5% wider and 5% shorter).
    shear : array_like, shape (...)
        Horizontal shear factor (0 = unchanged).

    Returns
    -------
    matrix : ndarray, shape (..., 3, 3), float64
        Homogeneous forward matrices ``[[A, shift], [0, 0, 1]]``.
    """
    shift = np.asarray(shift, dtype=np.float64)
    if shift.shape[-1:] != (2,):
        raise ValueError(f"shift must have shape (..., 2), got {shift.shape}")
    scale, squeeze, shear = (np.asarray(v, dtype=np.float64) for v in (scale, squeeze, shear))
    batch = np.broadcast_shapes(shift.shape[:-1], scale.shape, squeeze.shape, shear.shape)
    aspect = np.sqrt(1.0 + squeeze)
    s_row, s_col = scale / aspect, scale * aspect
    matrix = np.zeros(batch + (3, 3))
    matrix[..., 0, 0] = s_row
    matrix[..., 1, 0] = shear * s_row
    matrix[..., 1, 1] = s_col
    matrix[..., :2, 2] = shift
    matrix[..., 2, 2] = 1.0
    return matrix


def _check_images(x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {x.shape}")


def _check_matrices(matrices, n):
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.shape != (n, 3, 3):
        raise ValueError(f"matrices must have shape ({n}, 3, 3), got {matrices.shape}")
    return matrices


def _source_coordinates(matrices, h, w):
    """Where in the input each output pixel comes from.

    Resampling runs backwards: for every output pixel ``out`` we need the
    input point that the forward matrix sends onto it,
    ``A^-1 @ (out - centre - shift) + centre``.

    Returns ``rows, cols``, each (N, H, W) float64, in input pixel indices.
    """
    inverse = np.linalg.inv(matrices[:, :2, :2])[:, :, :, None, None]  # (N, 2, 2, 1, 1)
    shift = matrices[:, :2, 2, None, None]                              # (N, 2, 1, 1)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dr = (np.arange(h) - cy)[:, None] - shift[:, 0]                     # (N, H, 1)
    dc = (np.arange(w) - cx)[None, :] - shift[:, 1]                     # (N, 1, W)
    # The row and column terms are added last, so that only this one
    # addition runs over all N * H * W pixels.
    rows = (inverse[:, 0, 0] * dr + cy) + inverse[:, 0, 1] * dc
    cols = (inverse[:, 1, 0] * dr + cx) + inverse[:, 1, 1] * dc
    return rows, cols


def warp(x, matrices, fill=-0.1):
    """Resample every image through its own affine matrix (bilinear).

    The images are treated as lying on an infinite background of ``fill``:
    an output pixel whose source point falls between the border pixels and
    the background blends the two, one that falls further out is ``fill``
    (``scipy.ndimage``'s ``mode="grid-constant"``).

    The bilinear interpolation is written out in NumPy over many images at
    once. ``scipy.ndimage`` resamples one image per call, which was 2-3x
    slower on batches of 128 32x32 images (:func:`warp_scipy`, kept as the
    reference); one ``map_coordinates`` call on the batch as a 3-D array,
    which pays for trilinear weights, was 3-5x slower. With this version,
    distorting MNIST's 60,000 images takes about 1.5 s per epoch.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Images; every channel of an image gets the same transformation.
    matrices : array_like, float
        Forward matrices about the image centre, from :func:`affine_matrix`.
    fill : float
        Background value (``-0.1`` is LeNet-5's white, §II.A).

    Returns
    -------
    y : ndarray, same dtype as ``x``
        A new array; ``x`` is not modified.

    Shapes
    ------
    x : (N, C, H, W)
    matrices : (N, 3, 3)
    y : (N, C, H, W)
    """
    _check_images(x)
    n, c, h, w = x.shape
    matrices = _check_matrices(matrices, n)
    y = np.empty_like(x)
    # Work through the batch in blocks of about BLOCK_PIXELS output pixels.
    # Each step below makes a temporary array as large as the block; small
    # blocks keep them in the CPU cache and reuse the same memory, which made
    # a batch of 128 32x32 images about 2.5x faster than one pass over it all.
    step = max(1, BLOCK_PIXELS // (h * w))
    for i in range(0, n, step):
        y[i:i + step] = _warp_block(x[i:i + step], matrices[i:i + step], fill)
    return y


def _warp_block(x, matrices, fill):
    """:func:`warp` of a few images at once; the bilinear interpolation itself."""
    n, c, h, w = x.shape
    rows, cols = _source_coordinates(matrices, h, w)

    # Surround every image with a one-pixel frame of background, then clip
    # the source points into the framed image: a point beyond the frame lands
    # exactly on it, so it reads ``fill`` and the four neighbours below can
    # never reach into another image.
    framed = np.full((n, c, h + 2, w + 2), fill, dtype=x.dtype)
    framed[:, :, 1:-1, 1:-1] = x
    rows = np.clip(rows + 1.0, 0.0, h + 1.0)
    cols = np.clip(cols + 1.0, 0.0, w + 1.0)
    # The upper-left neighbour; capping it at h (not h + 1) keeps its lower
    # and right neighbours inside the frame, with weight 1 on the frame.
    r0 = np.minimum(np.floor(rows), h)
    c0 = np.minimum(np.floor(cols), w)
    fr = (rows - r0).astype(x.dtype)[:, None]                     # (N, 1, H, W)
    fc = (cols - c0).astype(x.dtype)[:, None]

    # Flat indices of the four neighbours in the whole framed block: the
    # offset of image i, channel j's plane, plus the position within it.
    plane = (h + 2) * (w + 2)
    start = (np.arange(n * c, dtype=np.intp) * plane).reshape(n, c, 1, 1)
    top_left = start + (r0.astype(np.intp) * (w + 2) + c0.astype(np.intp))[:, None]
    flat = framed.reshape(-1)
    a, b = flat.take(top_left), flat.take(top_left + 1)                   # upper left, right
    d, e = flat.take(top_left + (w + 2)), flat.take(top_left + (w + 3))   # lower left, right
    upper = a + fc * (b - a)
    lower = d + fc * (e - d)
    return upper + fr * (lower - upper)


def warp_scipy(x, matrices, fill=-0.1):
    """:func:`warp` done one image at a time by ``scipy.ndimage.affine_transform``.

    The reference implementation: slower, but every line is a documented
    SciPy call. Same arguments, shapes and result as :func:`warp`.

    ``mode="grid-constant"`` rather than ``"constant"``: with ``"constant"``
    SciPy interpolates only inside the outermost pixel centres, so a point
    half a pixel outside the border would jump straight to ``fill`` instead
    of blending into it.
    """
    _check_images(x)
    n, c, h, w = x.shape
    matrices = _check_matrices(matrices, n)
    inverse = np.linalg.inv(matrices[:, :2, :2])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    y = np.empty_like(x)
    for i in range(n):
        # affine_transform maps output indices to input indices:
        # in = inverse @ (out - centre - shift) + centre = inverse @ out + offset.
        offset = centre - inverse[i] @ (centre + matrices[i, :2, 2])
        for j in range(c):
            ndimage.affine_transform(x[i, j], inverse[i], offset=offset, output=y[i, j],
                                     order=1, mode="grid-constant", cval=fill)
    return y


class RandomAffine:
    """Random planar affine distortion of every image, drawn afresh per call.

    LeCun et al. 1998, §III.C.2: translation, scaling, squeezing and
    horizontal shearing. Each image gets its own parameters, each drawn
    uniformly from the ranges below; see :func:`affine_matrix` for how they
    combine. Use it as a trainer's ``augment``: ``y = aug(x, rng)``.

    Parameters
    ----------
    max_shift : float
        Largest translation in pixels, along each axis independently:
        ``(down, right) ~ U(-max_shift, max_shift)``.
    scale : (float, float)
        Range ``(low, high)`` of the isotropic scale factor (1 = unchanged).
    squeeze : float
        Largest relative change of the horizontal vs the vertical scale:
        the aspect ratio width/height is multiplied by ``1 + q``,
        ``q ~ U(-squeeze, squeeze)``, without changing the area. In [0, 1).
    shear : float
        Largest horizontal shear factor: ``U(-shear, shear)`` pixels to the
        right per pixel below the centre.
    fill : float
        Background value used where the distorted image uncovers the area
        outside the original (-0.1: LeNet-5's white, §II.A).

    Shapes
    ------
    x : (N, C, H, W), float32 or float64 (MNIST: C = 1; any H, W)
    y : (N, C, H, W), same dtype as x
    """

    def __init__(self, max_shift=2.0, scale=(0.9, 1.1), squeeze=0.1, shear=0.15, fill=-0.1):
        low, high = (float(v) for v in scale)
        self.max_shift, self.scale = float(max_shift), (low, high)
        self.squeeze, self.shear, self.fill = float(squeeze), float(shear), float(fill)
        if not self.max_shift >= 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift!r}")
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}")
        if not 0 <= self.squeeze < 1:
            raise ValueError(f"squeeze must be in [0, 1), got {squeeze!r}")
        if not self.shear >= 0:
            raise ValueError(f"shear must be >= 0, got {shear!r}")
        if not math.isfinite(self.fill):
            raise ValueError(f"fill must be finite, got {fill!r}")

    def sample(self, n, rng):
        """Draw the forward matrices of ``n`` random transformations.

        Always draws, in this order, ``n`` shift pairs, ``n`` scales, ``n``
        squeezes and ``n`` shears (5n uniforms), even when a range is empty,
        so the generator advances the same way whatever the parameters and
        the result depends only on the generator's state.

        Returns
        -------
        matrices : ndarray, shape (n, 3, 3), float64
        """
        shift = rng.uniform(-self.max_shift, self.max_shift, size=(n, 2))
        scale = rng.uniform(self.scale[0], self.scale[1], size=n)
        squeeze = rng.uniform(-self.squeeze, self.squeeze, size=n)
        shear = rng.uniform(-self.shear, self.shear, size=n)
        return affine_matrix(shift, scale, squeeze, shear)

    def __call__(self, x, rng):
        """Distort every image of ``x`` with its own random transformation.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W), float32 or float64
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        y : ndarray, shape (N, C, H, W), same dtype as ``x``; a new array.
        """
        _check_images(x)
        return warp(x, self.sample(x.shape[0], rng), self.fill)

    def config(self):
        """The parameters as a JSON-friendly dict, for run records."""
        return {"type": type(self).__name__, "max_shift": self.max_shift,
                "scale": list(self.scale), "squeeze": self.squeeze, "shear": self.shear,
                "fill": self.fill}

    def __repr__(self):
        return (f"RandomAffine(max_shift={self.max_shift}, scale={self.scale}, "
                f"squeeze={self.squeeze}, shear={self.shear}, fill={self.fill})")
