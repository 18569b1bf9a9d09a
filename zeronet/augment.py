"""Data augmentation: LeNet-5's affine distortions, AlexNet's crops, flips and
colour jitter, and AlexNet's ten test views.

Everything here works on whole batches, vectorised, and draws its random
numbers only from the ``numpy.random.Generator`` it is given, in an order
that each docstring states, so a run is reproduced exactly from its seed.

LeNet-5: random affine distortions
----------------------------------
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

AlexNet: crops, flips, PCA colour jitter and ten test views
-----------------------------------------------------------
Krizhevsky et al. 2012 §4.1 fight overfitting with two label-preserving
transformations, both made afresh for every batch:

- :func:`random_crops`: a random ``size x size`` patch of every image and,
  with probability 0.5, its mirror image (224 of 256 in the paper, 24 of 32
  in cuda-convnet's CIFAR-10 nets);
- :class:`ColourPCA`: principal components of the training set's RGB
  pixel values; every image gets its own random shift of all its pixels
  along them, a change of the colour and intensity of the illumination.

:class:`CifarAugment` combines them into the ``augment`` of a
:class:`~zeronet.trainer.Trainer`. At test time the network sees
:func:`ten_views` of every image (the four corner patches, the centre
patch, and their mirror images) and :func:`predict_views` averages its
softmax outputs over them.

Images stay uint8 (pixels 0..255) until the batch is cut: a float32 copy of
CIFAR-10's training set would take 600 MB.

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

import operator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from zeronet.layers import ImageInput

__all__ = ["RandomAffine", "affine_matrix", "warp", "warp_scipy",
           "random_crops", "draw_crops", "cut_patches", "ten_views", "VIEW_NAMES",
           "ColourPCA", "CifarAugment", "predict_views"]

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
    once: ``scipy.ndimage`` resamples one image per call (:func:`warp_scipy`,
    kept as the reference the tests hold this one to), which costs a Python
    call and a pass per image; one ``map_coordinates`` call on the batch as
    a 3-D array would pay for trilinear weights where bilinear ones suffice.

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
    # blocks keep them in the CPU cache and reuse the same memory, where one
    # pass over the whole batch would stream every temporary through memory.
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


# ------------------------------------------------- AlexNet (Krizhevsky 2012) ----

# The order of the ten test views of ten_views() (and of the crop positions of
# _view_offsets): the four corners and the centre, then the same five mirrored.
VIEW_NAMES = ("top left", "top right", "bottom left", "bottom right", "centre",
              "top left, mirrored", "top right, mirrored", "bottom left, mirrored",
              "bottom right, mirrored", "centre, mirrored")


def _check_uint8_images(x, name="x"):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 images (pixels 0..255), got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {x.shape}")


def _batch_shape(layer):
    """``"(N, 3, 32, 32)"``: a batch at the size of an ImageInput's mean image."""
    return "(N, " + ", ".join(map(str, layer.mean.shape)) + ")"


def _check_size(size, h, w):
    try:
        size = operator.index(size)
    except TypeError:
        raise TypeError(f"crop size must be an integer, got {size!r}") from None
    if not 1 <= size <= min(h, w):
        raise ValueError(f"crop size must be between 1 and {min(h, w)} for {h}x{w} images, "
                         f"got {size}")
    return size


def draw_crops(n, h, w, size, rng):
    """Random patch positions and mirror flags for ``n`` images of ``h x w``.

    Draws ``n`` tops uniform in ``0..h - size``, then ``n`` lefts in ``0..w -
    size``, then ``n`` uniforms in [0, 1) of which those below 0.5 mean
    "mirror". Returns ``tops, lefts`` (int64) and ``mirror`` (bool), each
    ``(n,)``, for :func:`cut_patches`.
    """
    tops = rng.integers(0, h - size + 1, size=n)
    lefts = rng.integers(0, w - size + 1, size=n)
    mirror = rng.random(n) < 0.5
    return tops, lefts, mirror


def cut_patches(x, tops, lefts, size, mirror):
    """Patch ``x[i, :, tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]`` of
    every image, mirrored left-right where ``mirror[i]``. (N, C, H, W) ->
    (N, C, size, size), a new array of x's dtype. The positions must lie
    inside the images (as :func:`draw_crops` makes them)."""
    _check_uint8_images(x)
    n, _, h, w = x.shape
    size = _check_size(size, h, w)
    tops, lefts = np.asarray(tops), np.asarray(lefts)
    mirror = np.asarray(mirror)
    if (not tops.shape == lefts.shape == mirror.shape == (n,) or mirror.dtype != bool
            or not all(np.issubdtype(a.dtype, np.integer) for a in (tops, lefts))):
        raise ValueError(f"need {n} integer tops and lefts and {n} bool mirror flags, got "
                         f"{tops.dtype}{tops.shape}, {lefts.dtype}{lefts.shape}, "
                         f"{mirror.dtype}{mirror.shape}")
    # Negative positions would silently wrap around in the index below.
    if n and not (0 <= tops.min() and tops.max() <= h - size
                  and 0 <= lefts.min() and lefts.max() <= w - size):
        raise ValueError(f"patch positions must lie in 0..{h - size} (top) and "
                         f"0..{w - size} (left)")
    # All size x size windows of every image, as a view (nothing is copied);
    # one fancy index then copies each image's own window.
    windows = sliding_window_view(x, (size, size), axis=(2, 3))    # (N, C, H', W', size, size)
    patches = windows[np.arange(len(x)), :, tops, lefts]          # (N, C, size, size)
    patches[mirror] = patches[mirror, :, :, ::-1]
    return patches


def random_crops(x, size, rng, *, flip=True):
    """A random ``size x size`` patch of every image, mirrored with
    probability 0.5 (Krizhevsky et al. 2012 §4.1).

    Every image gets its own position, uniform over all ``(H - size + 1) x
    (W - size + 1)`` places, and its own coin for the mirror image (a
    left-right reflection of the patch). The paper cuts 224x224 patches of
    256x256 images; cuda-convnet's CIFAR-10 nets cut 24x24 patches of 32x32.

    Draws from ``rng``, always in this order whatever ``flip`` is: ``N``
    tops (integers ``0..H - size``), ``N`` lefts (``0..W - size``), ``N``
    uniforms for the mirror coins (below 0.5: mirrored). So switching
    ``flip`` off keeps the same patches. It is :func:`draw_crops` followed
    by :func:`cut_patches`; call those two to know where the patches were cut.

    Parameters
    ----------
    x : ndarray, uint8
        Images; every channel of an image is cut at the same place.
    size : int
        Side of the patches, ``1 <= size <= min(H, W)``.
    rng : numpy.random.Generator
        The only source of randomness.
    flip : bool
        Mirror half of the patches (on average).

    Returns
    -------
    patches : ndarray, uint8, a new array

    Shapes
    ------
    x : (N, C, H, W)
    patches : (N, C, size, size)
    """
    _check_uint8_images(x)
    n, _, h, w = x.shape
    size = _check_size(size, h, w)
    tops, lefts, mirror = draw_crops(n, h, w, size, rng)
    return cut_patches(x, tops, lefts, size, mirror & bool(flip))


def _view_offsets(h, w, size):
    """``(top, left)`` of the five test patches in :data:`VIEW_NAMES` order.
    The centre rounds up and left, as :class:`~zeronet.layers.ImageInput`'s."""
    bottom, right = h - size, w - size
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def ten_views(x, size):
    """The ten test patches of every image (Krizhevsky et al. 2012 §4.1).

    The four corner patches and the centre patch, then the mirror images of
    the same five, in the order of :data:`VIEW_NAMES`: top left, top right,
    bottom left, bottom right, centre; views 5-9 are views 0-4 reflected
    left-right. The centre patch starts at ``((H - size) // 2, (W - size) //
    2)``, the same as :class:`~zeronet.layers.ImageInput`'s centre crop.

    Parameters
    ----------
    x : ndarray, uint8
    size : int
        Side of the patches, ``1 <= size <= min(H, W)``.

    Returns
    -------
    views : ndarray, uint8 (ten copies of the patches: keep N moderate; see
        :func:`predict_views`)

    Shapes
    ------
    x : (N, C, H, W)
    views : (10, N, C, size, size)
    """
    _check_uint8_images(x)
    n, c, h, w = x.shape
    size = _check_size(size, h, w)
    views = np.empty((10, n, c, size, size), dtype=x.dtype)
    for v, (top, left) in enumerate(_view_offsets(h, w, size)):
        views[v] = x[:, :, top:top + size, left:left + size]
    views[5:] = views[:5, :, :, :, ::-1]
    return views


class ColourPCA:
    """PCA colour jitter (Krizhevsky et al. 2012 §4.1).

    The paper performs PCA on the set of RGB pixel values throughout the
    training set: the 3x3 covariance of the (R, G, B) triples of every pixel
    of every training image, with eigenvectors ``p_i`` and eigenvalues
    ``lambda_i``. To every pixel of a training image it adds the same
    ``[p1 p2 p3] [a1 w1, a2 w2, a3 w3]^T`` with ``a_i ~ N(0, std)``, drawn
    once per image each time the image is used, ``std = 0.1``. The offset
    is in the units of the network's input before any ``scale``: pixel units
    0..255 with the mean image subtracted, as the paper's (§2).

    What ``w_i`` is (``weighting``):

    - ``"sqrt"`` (default): ``w_i = sqrt(lambda_i)``, the standard deviation
      of the pixels along ``p_i``, so every ``a_i`` moves the colour by a
      tenth of the spread along its axis whatever the pixel units. On
      CIFAR-10 in pixel units this moves pixels by about 11 levels along
      ``p1`` (brightness) and 3 and 1.4 along ``p2`` and ``p3``. Krizhevsky's
      later cuda-convnet2 scales its colour noise by "stdevs" in the same way.
    - ``"eigenvalue"``: the paper's formula as printed, ``w_i = lambda_i``,
      with ``lambda_i`` measured on pixels scaled to 0..1 (``lambda_i /
      255**2``) and the offset converted back to pixel units (so ``w_i =
      lambda_i / 255``): the common reading of re-implementations. Read in
      pixel units, ``a_i lambda_i`` would move CIFAR-10's pixels by about
      1,100 levels, four times the whole range, which cannot be what the
      paper did.

    Parameters
    ----------
    eigenvalues : array_like, shape (3,)
        Variances along the principal axes, pixel units squared, descending.
    eigenvectors : array_like, shape (3, 3)
        Orthonormal; column ``i`` is ``p_i`` (R, G, B components).
    mean : array_like, shape (3,), optional
        Mean pixel colour of the training set (pixel units). The jitter does
        not use it; figures centre their swatches of the axes on it.
    weighting : {"sqrt", "eigenvalue"}

    Attributes
    ----------
    eigenvalues, eigenvectors, mean : ndarray, float64
    """

    WEIGHTINGS = ("sqrt", "eigenvalue")

    def __init__(self, eigenvalues, eigenvectors, mean=None, *, weighting="sqrt"):
        self.eigenvalues = np.array(eigenvalues, dtype=np.float64)
        self.eigenvectors = np.array(eigenvectors, dtype=np.float64)
        self.mean = None if mean is None else np.array(mean, dtype=np.float64)
        if self.eigenvalues.shape != (3,) or self.eigenvectors.shape != (3, 3):
            raise ValueError(f"need eigenvalues (3,) and eigenvectors (3, 3), got "
                             f"{self.eigenvalues.shape} and {self.eigenvectors.shape}")
        if self.mean is not None and (self.mean.shape != (3,) or not np.isfinite(self.mean).all()):
            raise ValueError(f"mean must be 3 finite numbers, got {mean!r}")
        if not (np.isfinite(self.eigenvalues).all() and (self.eigenvalues >= 0).all()
                and (np.diff(self.eigenvalues) <= 0).all()):
            raise ValueError(f"eigenvalues must be finite, >= 0 and descending, "
                             f"got {eigenvalues!r}")
        if not (np.isfinite(self.eigenvectors).all()
                and np.allclose(self.eigenvectors.T @ self.eigenvectors, np.eye(3), atol=1e-6)):
            raise ValueError("eigenvectors must be orthonormal columns")
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"weighting must be one of {self.WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    @classmethod
    def fit(cls, x, *, chunk=1024, weighting="sqrt"):
        """Principal components of the RGB values of every pixel of ``x``.

        The covariance is the unbiased one (divided by the number of pixels
        minus one, as ``numpy.cov``), in pixel units, computed in float64
        from sums over ``chunk`` images at a time, so the whole set is never
        copied to floats. (Every partial sum of uint8 values and of their
        products is an integer below 2**53, so float64 holds it exactly.)
        The sign of each eigenvector is chosen so that its largest component
        is positive: the jitter does not care (``a_i`` is symmetric) but the
        record is reproducible.

        Parameters
        ----------
        x : ndarray, uint8, shape (N, 3, H, W)
            The training images (pixels 0..255).
        chunk : int
            Images per block.
        weighting : {"sqrt", "eigenvalue"}
            See the class docstring.
        """
        _check_uint8_images(x)
        n, c, h, w = x.shape
        if c != 3 or n * h * w < 2:
            raise ValueError(f"need RGB images (N, 3, H, W) with at least 2 pixels, got {x.shape}")
        chunk = max(1, int(chunk))
        total = np.zeros(3)
        products = np.zeros((3, 3))
        for i in range(0, n, chunk):
            pixels = x[i:i + chunk].reshape(-1, 3, h * w).astype(np.float64)   # (n', 3, HW)
            total += pixels.sum(axis=(0, 2))
            products += np.einsum("ncp,ndp->cd", pixels, pixels)
        count = n * h * w
        mean = total / count
        covariance = (products - np.outer(total, total) / count) / (count - 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)     # ascending
        eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
        biggest = np.abs(eigenvectors).argmax(axis=0)
        eigenvectors = eigenvectors * np.sign(eigenvectors[biggest, np.arange(3)])
        # Rounding can leave a zero eigenvalue (a grey training set) slightly negative.
        return cls(np.maximum(eigenvalues, 0.0), eigenvectors, mean, weighting=weighting)

    def weights(self):
        """``w_i`` of the offset formula (see the class docstring), (3,)."""
        if self.weighting == "sqrt":
            return np.sqrt(self.eigenvalues)
        return self.eigenvalues / 255.0

    def offsets(self, n, rng, std=0.1):
        """RGB offsets of ``n`` images, ``[p1 p2 p3] [a1 w1, a2 w2, a3 w3]^T``.

        Draws ``n x 3`` normals ``a ~ N(0, std)`` from ``rng`` (row ``i`` is
        image ``i``'s ``a_1, a_2, a_3``). Returns ``(n, 3)`` float64 in pixel
        units (0..255 scale, mean subtracted, as the paper's): add row ``i``
        to every pixel of image ``i``. ``std = 0`` gives zeros.
        """
        alpha = rng.normal(0.0, std, size=(n, 3))
        return (alpha * self.weights()) @ self.eigenvectors.T

    def config(self):
        """JSON-friendly record; ``ColourPCA(**config)`` rebuilds it exactly."""
        return {"eigenvalues": self.eigenvalues.tolist(),
                "eigenvectors": self.eigenvectors.tolist(),
                "mean": None if self.mean is None else self.mean.tolist(),
                "weighting": self.weighting}

    def __repr__(self):
        return (f"ColourPCA(eigenvalues={np.round(self.eigenvalues, 2).tolist()}, "
                f"weighting={self.weighting!r})")


class CifarAugment:
    """Krizhevsky et al. 2012 §4.1's training augmentation, as a trainer's
    ``augment``: uint8 images in, the network's float input out.

    For every image of the batch, in order: a random ``crop x crop`` patch
    (``crop`` is the input layer's; the centre patch when ``crop=False``),
    mirrored with probability 0.5 if ``flip``; the input layer's
    :meth:`~zeronet.layers.ImageInput.prepare` (mean image subtracted,
    ``scale`` applied); then, if ``pca`` is given, the image's own
    :meth:`ColourPCA.offsets` times the input layer's ``scale`` added to
    every pixel. Nothing is drawn once and reused: every call draws afresh,
    so an image gets new ``a_i`` each time it is used (§4.1).

    Draws from ``rng`` in this order: ``N`` tops, ``N`` lefts, ``N`` mirror
    coins (always, as :func:`random_crops`, even when ``crop`` or ``flip`` is
    off), then ``N x 3`` normals for the colour (only with ``pca``).

    Parameters
    ----------
    input_layer : zeronet.layers.ImageInput
        The network's first layer: its mean image, crop and scale.
    crop, flip : bool
    pca : ColourPCA or None
    std : float
        Standard deviation of the ``a_i`` (§4.1: 0.1).

    Shapes
    ------
    x : (N, 3, H, W) uint8, H x W the size of the input layer's mean image
    out : (N, 3, crop, crop), the input layer's dtype
    """

    def __init__(self, input_layer, *, crop=True, flip=True, pca=None, std=0.1):
        if not isinstance(input_layer, ImageInput):
            raise TypeError(f"input_layer must be a zeronet.layers.ImageInput, "
                            f"got {type(input_layer).__name__}")
        if pca is not None and not isinstance(pca, ColourPCA):
            raise TypeError(f"pca must be a ColourPCA or None, got {type(pca).__name__}")
        if pca is not None and input_layer.mean.shape[0] != 3:
            raise ValueError(f"colour jitter needs RGB images; the input layer's mean image "
                             f"has {input_layer.mean.shape[0]} channels")
        self.std = float(std)
        if not (math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"std must be finite and >= 0, got {std!r}")
        self.input_layer, self.pca = input_layer, pca
        self.crop, self.flip = bool(crop), bool(flip)

    def __call__(self, x, rng):
        _check_uint8_images(x)
        layer = self.input_layer
        if x.shape[1:] != layer.mean.shape:
            raise ValueError(f"CifarAugment expects uint8 images {_batch_shape(layer)} like "
                             f"the input layer's mean image, got {x.shape}")
        n, _, h, w = x.shape
        size = layer.crop
        tops, lefts, mirror = draw_crops(n, h, w, size, rng)
        if not self.crop:
            tops[:], lefts[:] = _view_offsets(h, w, size)[4]
        out = layer.prepare(cut_patches(x, tops, lefts, size, mirror & self.flip))
        if self.pca is not None:
            shift = self.pca.offsets(n, rng, self.std) * layer.scale
            out += shift.astype(out.dtype)[:, :, None, None]
        return out

    def config(self):
        """The settings as a JSON-friendly dict, for run records (the input
        layer's mean image is recorded with the network)."""
        return {"type": type(self).__name__, "crop": self.crop, "flip": self.flip,
                "size": self.input_layer.crop, "std": self.std,
                "pca": None if self.pca is None else self.pca.config()}

    @classmethod
    def from_config(cls, config, input_layer):
        """Rebuild from :meth:`config` and the network's input layer."""
        pca = config["pca"]
        return cls(input_layer, crop=config["crop"], flip=config["flip"],
                   pca=None if pca is None else ColourPCA(**pca), std=config["std"])

    def __repr__(self):
        return (f"CifarAugment(crop={self.crop}, flip={self.flip}, pca={self.pca!r}, "
                f"std={self.std:g})")


def _softmax(scores):
    """Row-wise softmax of ``(N, K)`` scores, in their dtype."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _image_input(network):
    for layer in network.layers.values():
        if isinstance(layer, ImageInput):
            return layer
    raise ValueError("predict_views needs a network whose input layer is an ImageInput")


def predict_views(network, x, *, views="ten", batch_size=500):
    """Class probabilities averaged over test views (Krizhevsky et al. 2012 §4.1).

    ``views="ten"``: the network's softmax outputs for the ten patches of
    :func:`ten_views`, averaged ("averaging the predictions made by the
    network's softmax layer on the ten patches"). ``views="centre"``: the
    softmax of the centre patch alone. The patch side is the network's
    :class:`~zeronet.layers.ImageInput` crop. Images are taken
    ``batch_size`` at a time and each view is one ``predict`` call, so at
    most ``batch_size`` patches are in flight.

    Parameters
    ----------
    network : Sequential
        With an :class:`~zeronet.layers.ImageInput` layer; run in test mode
        (Dropout scales).
    x : ndarray, uint8
        Images at the size of the input layer's mean image.
    views : {"ten", "centre"}
    batch_size : int

    Returns
    -------
    probs : ndarray, the network's dtype; rows sum to 1

    Shapes
    ------
    x : (N, C, H, W)
    probs : (N, K)
    """
    _check_uint8_images(x)
    layer = _image_input(network)
    if x.shape[1:] != layer.mean.shape or len(x) == 0:
        raise ValueError(f"predict_views expects a non-empty batch of uint8 images "
                         f"{_batch_shape(layer)}, got {x.shape}")
    if views not in ("ten", "centre"):
        raise ValueError(f"views must be 'ten' or 'centre', got {views!r}")
    batch_size = operator.index(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _, _, h, w = x.shape
    top, left = _view_offsets(h, w, layer.crop)[4]
    parts = []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        if views == "ten":
            patches = ten_views(batch, layer.crop)
        else:
            patches = batch[None, :, :, top:top + layer.crop, left:left + layer.crop]
        probs = _softmax(network.predict(patches[0]))
        for view in patches[1:]:
            probs += _softmax(network.predict(view))
        probs /= probs.dtype.type(len(patches))
        parts.append(probs)
    return np.concatenate(parts)
