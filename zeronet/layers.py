"""Layers in the book's forward/backward style (ゼロから作る Deep Learning, ch. 5-7).

Every layer has ``forward(x, *, train=False) -> y`` and ``backward(dout) ->
dx``; what backward needs is kept on named attributes during forward.
``backward`` never modifies ``dout``. A layer owns its parameters
(``self.params``: local name -> :class:`Parameter`), fills their ``grad`` in
backward, and the optimizer updates their ``data`` in place.

Shape letters: ``N, C, H, W`` input; ``OC, KH, KW`` weights; ``OH, OW`` output.
"""
import math
from types import MappingProxyType

import numpy as np

from zeronet import initializers, kernels
from zeronet._validate import (FLOAT_DTYPES, conv_output_size, count, float_dtype, pair,
                               sizes_check, values_check)


class Parameter:
    """A trainable array with its gradient.

    ``name`` is qualified (``"conv1/W"``) once the layer joins a network.
    ``mask`` (same shape, bool) marks the entries that exist: LeNet-5's C3
    connection table makes some weights structurally zero. ``decay`` says
    whether weight decay applies (weights yes, biases no).
    """

    def __init__(self, data, name, *, mask=None, decay=True):
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name
        self.mask = mask
        self.decay = decay

    @property
    def trainable_size(self):
        """Number of free entries (masked-out entries do not count)."""
        return int(self.mask.sum()) if self.mask is not None else self.data.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


LAYERS = {}


class Layer:
    """Base class: subclasses are registered by class name so that a network
    can be rebuilt from its JSON description (see :mod:`zeronet.io`)."""

    params = MappingProxyType({})   # layers without parameters share this empty, read-only map
    _dout_spec = None               # (shape, dtype) of the last forward's output: see _check_dout

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYERS[cls.__name__] = cls

    def forward(self, x, *, train=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def config(self):
        """Constructor arguments as JSON-friendly values."""
        return {}

    @classmethod
    def parameter_shapes(cls, args):
        """``{name: shape}`` of the parameters that ``cls(**args)`` would
        create, without creating them: :func:`zeronet.io.load` compares a
        file's claims with its datasets before allocating anything. ``args``
        holds every constructor argument (defaults filled in). A layer with
        parameters must say them here, or files that hold it do not load."""
        return {}

    def generators(self):
        """Random generators the layer draws from during training (Dropout)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _check_dtype(x, dtype, layer):
    _check_array(x, layer)
    # float64 into a float32 layer would silently upcast everything after it.
    if x.dtype != dtype:
        raise TypeError(f"{type(layer).__name__} holds {np.dtype(dtype)} parameters but got "
                        f"{x.dtype} input; cast one of them (x.astype(...))")


def _expect_dout(layer, x, y_shape=None):
    """Forward's note for backward: ``x`` must be a batch of float32 or
    float64 values, and the ``dout`` that backward gets must then have the
    output's shape ``y_shape`` (default: x's own) and x's dtype (checked by
    :func:`_check_dout`)."""
    _check_array(x, layer)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{type(layer).__name__} expects float32 or float64 input, "
                        f"got {x.dtype}")
    layer._dout_spec = (tuple(x.shape if y_shape is None else y_shape), x.dtype)


def _check_array(x, layer):
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        got = "a 0-d array" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{type(layer).__name__} expects a batch as a numpy.ndarray "
                        f"(N, ...), got {got}")


def _check_dout(layer, dout):
    """Backward's first step: ``dout`` must have the shape and dtype of the
    output of the last forward. (NumPy would broadcast a wrong shape into a
    wrong gradient, or upcast a wrong dtype through every layer below.)"""
    name = type(layer).__name__
    if layer._dout_spec is None:
        raise RuntimeError(f"{name}.backward was called before {name}.forward")
    shape, dtype = layer._dout_spec
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{name}.backward expects dout as a numpy.ndarray, "
                        f"got {type(dout).__name__}")
    if dout.dtype != dtype:
        raise TypeError(f"{name}.backward expects dout of {dtype} like its output, "
                        f"got {dout.dtype}")
    if dout.shape != shape:
        raise ValueError(f"{name}.backward expects dout of shape {shape} like its output, "
                         f"got {dout.shape}")


def _generator(rng):
    """The generator to draw from: the one given, else a fixed-seed one (a
    network rebuilt from a file overwrites these draws when it loads)."""
    return rng if rng is not None else np.random.default_rng(0)


def _check_ndim(x, ndim, layer, what="(N, C, H, W)"):
    _check_array(x, layer)
    if x.ndim != ndim:
        raise ValueError(f"{type(layer).__name__} expects input of shape {what}, got {x.shape}")


# ---------------------------------------------------------------- layers ----

class DigitInput(Layer):
    """Raw digit images in, the network's input out (LeCun et al. 1998 §II.B).

    uint8 pixels ``(N, H, W)`` or ``(N, 1, H, W)`` (0 = white background,
    255 = ink) become ``(N, 1, side, side)`` floats with the background at
    ``background`` and full ink at ``ink``, centred in a ``side`` field padded
    with background. Float input already of shape ``(N, 1, side, side)`` is
    taken as prepared and passed through unchanged. So a saved LeNet's
    ``predict`` accepts MNIST digits as they come.

    Nothing here is trainable and nothing below it needs a gradient:
    ``backward`` returns None.
    """

    def __init__(self, side=32, background=-0.1, ink=1.175, dtype="float32"):
        # Digits are 28x28: a side beyond 1024 is a mistake (predict would
        # allocate side**2 values per digit).
        self.side = count(side, "side", 1, 1024)
        self.background, self.ink = float(background), float(ink)
        self.dtype = float_dtype(dtype)

    def config(self):
        return {"side": self.side, "background": self.background, "ink": self.ink,
                "dtype": self.dtype.name}

    def forward(self, x, *, train=False):
        _check_array(x, self)
        if x.dtype != np.uint8:
            if x.shape[1:] != (1, self.side, self.side):
                raise ValueError(f"DigitInput expects uint8 digits (N, H, W) or prepared input "
                                 f"(N, 1, {self.side}, {self.side}), got {x.dtype}{x.shape}")
            _check_dtype(x, self.dtype, self)
            return x
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1] > self.side or x.shape[2] > self.side:
            raise ValueError(f"DigitInput expects digits (N, H, W) no larger than "
                             f"{self.side}x{self.side}, got {x.shape}")
        t = self.dtype.type
        scaled = x.astype(self.dtype) * t((self.ink - self.background) / 255) + t(self.background)
        top, left = (self.side - x.shape[1]) // 2, (self.side - x.shape[2]) // 2
        out = np.full((x.shape[0], 1, self.side, self.side), self.background, dtype=self.dtype)
        out[:, 0, top:top + x.shape[1], left:left + x.shape[2]] = scaled
        return out

    def backward(self, dout):
        return None


class ImageInput(Layer):
    """Colour images in, the network's input out (Krizhevsky et al. 2012 §2, §4.1).

    The paper's only preprocessing is to subtract the training set's mean
    image from every pixel (§2); the network sees ``crop x crop`` patches
    (§4.1). So:

    - uint8 images ``(N, C, H, W)`` at the mean image's size (pixels 0..255)
      become their centre crop, minus the centre crop of ``mean``, times
      ``scale``: ``(N, C, crop, crop)`` floats. A saved network's
      ``predict`` therefore takes CIFAR-10 images as they come.
    - uint8 patches already ``crop x crop`` (a random training crop, one of
      the ten test views, chosen elsewhere) get the same treatment without
      the crop: every patch has the *centre* crop of the mean subtracted,
      wherever it was cut from (cuda-convnet's choice for its CIFAR-10 nets;
      the mean image is smooth, so the difference is small).
    - float input of shape ``(N, C, crop, crop)`` is taken as prepared and
      passed through unchanged (augmentation that works in floats, such as
      the PCA colour jitter, prepares its batches with :meth:`prepare`).

    ``mean``: ``(C, H, W)``, in pixel units (0..255). ``scale``: 1 keeps the
    paper's units (pixels 0..255, mean subtracted).
    Nothing here is trainable and nothing below it needs a gradient:
    ``backward`` returns None.
    """

    def __init__(self, mean, crop, scale=1.0, dtype="float32"):
        self.dtype = float_dtype(dtype)
        self.mean = np.array(mean, dtype=self.dtype)
        if self.mean.ndim != 3:
            raise ValueError(f"ImageInput's mean image must be (C, H, W), got {self.mean.shape}")
        if not np.isfinite(self.mean).all():
            raise ValueError("ImageInput's mean image must be finite")
        c, h, w = self.mean.shape
        self.crop, self.scale = int(crop), float(scale)
        if self.crop != crop or not 1 <= self.crop <= min(h, w):
            raise ValueError(f"crop must be a whole number between 1 and {min(h, w)}, got {crop}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        top, left = (h - self.crop) // 2, (w - self.crop) // 2
        self._centre = (slice(None), slice(top, top + self.crop), slice(left, left + self.crop))

    def config(self):
        return {"mean": self.mean.tolist(), "crop": self.crop, "scale": self.scale,
                "dtype": self.dtype.name}

    def __repr__(self):     # the mean image would fill the screen
        return f"ImageInput(mean={self.mean.shape}, crop={self.crop}, scale={self.scale:g})"

    def prepare(self, patches):
        """uint8 patches ``(N, C, crop, crop)`` -> floats of the same shape,
        the centre of the mean image subtracted and ``scale`` applied."""
        t = self.dtype.type
        out = patches.astype(self.dtype)
        out -= self.mean[self._centre]
        if self.scale != 1.0:
            out *= t(self.scale)
        return out

    def forward(self, x, *, train=False):
        c, h, w = self.mean.shape
        _check_ndim(x, 4, self)
        if x.dtype != np.uint8:
            if x.shape[1:] != (c, self.crop, self.crop):
                raise ValueError(f"ImageInput expects uint8 images (N, {c}, {h}, {w}) or "
                                 f"(N, {c}, {self.crop}, {self.crop}), or prepared floats "
                                 f"(N, {c}, {self.crop}, {self.crop}); got {x.dtype}{x.shape}")
            _check_dtype(x, self.dtype, self)
            return x
        if x.shape[1:] == (c, h, w):
            x = x[(slice(None),) + self._centre]
        elif x.shape[1:] != (c, self.crop, self.crop):
            raise ValueError(f"ImageInput expects uint8 images (N, {c}, {h}, {w}) or patches "
                             f"(N, {c}, {self.crop}, {self.crop}), got {x.shape}")
        return self.prepare(x)

    def backward(self, dout):
        return None


class Convolution(Layer):
    """2-D convolution (book §7.4.3), with groups and an optional connection table.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, OC, OH, OW)``;
    W ``(OC, C // groups, KH, KW)``, b ``(OC,)``.

    ``groups=2`` splits channels into two towers that do not see each other
    (Krizhevsky et al. 2012 §3.5). ``table`` is an ``(OC, C)`` 0/1 matrix: output
    map ``o`` sees input map ``c`` only where ``table[o][c]`` is 1 (LeCun et al.
    1998, Table 1); the other weights are held at zero by a mask.

    The book unfolds every window into a row of ``col`` (im2col) and takes
    one matrix product; :func:`zeronet.kernels.conv_forward` does that, or an
    equivalent that is faster for the shapes at hand, and keeps what it
    needs for backward (such as ``col``) in the layer's ``work`` dict.
    Saved for backward: ``x`` (not copied: leave it unchanged until then).

    ``input_grad = False`` makes ``backward`` skip ``dx`` and return None: a
    network's first layer has no layer below it to send a gradient to.
    """

    input_grad = True

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, pad=0,
                 groups=1, table=None, dtype="float32", rng=None,
                 weight_init="He", bias_init=0.0):
        self.in_channels = count(in_channels, "in_channels")
        self.out_channels = count(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride, self.pad = pair(stride, "stride", 1), pair(pad, "pad", 0)
        self.groups = count(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.dtype = float_dtype(dtype)
        kh, kw = self.kernel_size
        shape = (out_channels, in_channels // groups, kh, kw)
        values_check(shape, "W")
        mask = None
        if table is not None:
            table = np.asarray(table, dtype=bool)
            if groups != 1 or table.shape != (out_channels, in_channels):
                raise ValueError(f"table must be ({out_channels}, {in_channels}) with groups=1, "
                                 f"got {table.shape} with groups={groups}")
            mask = np.broadcast_to(table[:, :, None, None], shape).copy()
        self.table = table
        fan_in = mask.sum(axis=(1, 2, 3), keepdims=True) if mask is not None else shape[1] * kh * kw
        rng = _generator(rng)
        W = initializers.get(weight_init)(shape, fan_in, out_channels * kh * kw, rng, self.dtype)
        if mask is not None:
            W *= mask
        b = initializers.get(bias_init)((out_channels,), fan_in, out_channels, rng, self.dtype)
        self.params = {"W": Parameter(W, "W", mask=mask), "b": Parameter(b, "b", decay=False)}
        self.work = {}

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "pad": list(self.pad), "groups": self.groups,
                "table": None if self.table is None else self.table.astype(int).tolist(),
                "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, args):
        oc = count(args["out_channels"], "out_channels")
        c = count(args["in_channels"], "in_channels")
        groups = count(args["groups"], "groups")
        if c % groups or oc % groups:
            raise ValueError(f"groups={groups} must divide in_channels={c} and out_channels={oc}")
        return {"W": (oc, c // groups, *pair(args["kernel_size"], "kernel_size", 1)), "b": (oc,)}

    def forward(self, x, *, train=False):
        _check_ndim(x, 4, self)
        _check_dtype(x, self.dtype, self)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Convolution expects {self.in_channels} input channels, got {x.shape}")
        OH, OW = self.output_hw(x.shape[2:])
        _expect_dout(self, x, (x.shape[0], self.out_channels, OH, OW))
        self.x = np.ascontiguousarray(x)
        return kernels.conv_forward(self.x, self.weights(), self.params["b"].data, self.stride,
                                    self.pad, self.groups, work=self.work)

    def backward(self, dout):
        _check_dout(self, dout)
        W, b = self.params["W"], self.params["b"]
        dout = np.ascontiguousarray(dout, dtype=self.dtype)
        dx, W.grad[...], b.grad[...] = kernels.conv_backward(
            self.x, self.weights(), dout, self.stride, self.pad, self.groups, self.input_grad,
            work=self.work, bias_grad=True)
        if W.mask is not None:
            W.grad *= W.mask
        return dx

    def weights(self):
        """W with the connection table applied (W itself without one)."""
        W = self.params["W"]
        return W.data * W.mask if W.mask is not None else W.data

    def output_hw(self, hw):
        """``(OH, OW)`` for an input of height and width ``hw``."""
        return tuple(conv_output_size(s, k, st, p, a) for s, k, st, p, a in
                     zip(hw, self.kernel_size, self.stride, self.pad, ("height", "width")))


class MaxPooling(Layer):
    """Max pooling (book §7.4.4), overlapping windows allowed.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, OH, OW)``. ``stride`` defaults to
    the kernel size. Padding acts as -inf. ``ceil_mode`` lets the last window
    hang off the edge (cuda-convnet's 24 -> 12 -> 6 with 3x3 stride 2).

    Saved for backward: ``x_shape``, ``arg_max`` (position in each window).
    """

    def __init__(self, kernel_size, stride=None, pad=0, ceil_mode=False):
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", 1)
        self.pad = pair(pad, "pad", 0)
        self.ceil_mode = bool(ceil_mode)

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "pad": list(self.pad), "ceil_mode": self.ceil_mode}

    def forward(self, x, *, train=False):
        _check_ndim(x, 4, self)
        self.x_shape = x.shape
        out, self.arg_max = kernels.maxpool_forward(
            np.ascontiguousarray(x), self.kernel_size, self.stride, self.pad, self.ceil_mode)
        _expect_dout(self, x, out.shape)
        return out

    def backward(self, dout):
        _check_dout(self, dout)
        return kernels.maxpool_backward(np.ascontiguousarray(dout), self.arg_max, self.x_shape,
                                        self.kernel_size, self.stride, self.pad)


def _sum_of_shifts(a, axis, kernel, stride, count):
    """``sum over k < kernel of a[k : k + stride*count : stride]`` along ``axis``:
    the sums of ``count`` windows of length ``kernel`` along that axis."""
    def shifted(k):
        index = [slice(None)] * a.ndim
        index[axis] = slice(k, k + stride * count, stride)
        return a[tuple(index)]
    total = shifted(0) + shifted(1) if kernel > 1 else shifted(0).copy()
    for k in range(2, kernel):
        total += shifted(k)
    return total


def _spread_shifts(g, axis, kernel, stride, length):
    """Adjoint of :func:`_sum_of_shifts`: each window's gradient ``g`` goes to
    every element of the window; the result has ``length`` along ``axis``."""
    count = g.shape[axis]
    if stride == kernel:
        # Windows tile the axis: repeat each value, zeros after the last window.
        spread = np.repeat(g, kernel, axis=axis)
        tail = [(0, 0)] * g.ndim
        tail[axis] = (0, length - count * kernel)
        return np.pad(spread, tail) if length > count * kernel else spread
    shape = list(g.shape)
    shape[axis] = length
    out = np.zeros(shape, dtype=g.dtype)
    for k in range(kernel):
        index = [slice(None)] * g.ndim
        index[axis] = slice(k, k + stride * count, stride)
        out[tuple(index)] += g
    return out


def _window_sums(x, kernel_size, stride, pad):
    """Sum of every window, each channel on its own: ``(N, C, OH, OW)``.

    A window sum is separable: sum along the width first, then along the
    height of that smaller array. KH + KW whole-array additions instead of
    a Python loop over windows.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, pad
    oh = conv_output_size(x.shape[2], kh, sh, ph, "height")
    ow = conv_output_size(x.shape[3], kw, sw, pw, "width")
    sizes_check(*x.shape, ph, pw, oh, ow)
    img = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)]) if ph or pw else x
    return _sum_of_shifts(_sum_of_shifts(img, 3, kw, sw, ow), 2, kh, sh, oh)


def _window_sums_backward(dsum, x_shape, kernel_size, stride, pad):
    """Adjoint of :func:`_window_sums`: every element of a window gets the
    window's gradient (the two passes in reverse order)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, pad
    N, C, H, W = x_shape
    drows = _spread_shifts(dsum, 2, kh, sh, H + 2 * ph)
    dimg = _spread_shifts(drows, 3, kw, sw, W + 2 * pw)
    return dimg[:, :, ph:ph + H, pw:pw + W]


class AvgPooling(Layer):
    """Average pooling; zero padding counts in the average.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, OH, OW)``. Saved: ``x_shape``.
    """

    def __init__(self, kernel_size, stride=None, pad=0):
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", 1)
        self.pad = pair(pad, "pad", 0)

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "pad": list(self.pad)}

    def forward(self, x, *, train=False):
        _check_ndim(x, 4, self)
        self.x_shape = x.shape
        kk = self.kernel_size[0] * self.kernel_size[1]
        y = _window_sums(x, self.kernel_size, self.stride, self.pad) / x.dtype.type(kk)
        _expect_dout(self, x, y.shape)
        return y

    def backward(self, dout):
        _check_dout(self, dout)
        kk = self.kernel_size[0] * self.kernel_size[1]
        return _window_sums_backward(dout / dout.dtype.type(kk), self.x_shape,
                                     self.kernel_size, self.stride, self.pad)


class Subsampling(Layer):
    """LeNet's trainable subsampling (LeCun et al. 1998 §II.B, layer S2):
    each 2x2 window is summed, multiplied by a trainable coefficient of its
    map and shifted by a trainable bias of its map. The squashing function
    is a separate layer.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, H/2, W/2)``; coeff, b ``(C,)``.
    Saved for backward: ``window_sum``, ``x_shape``.
    """

    def __init__(self, channels, kernel_size=2, *, dtype="float32", rng=None,
                 weight_init="LeCunUniform"):
        self.channels = count(channels, "channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.dtype = float_dtype(dtype)
        fan_in = self.kernel_size[0] * self.kernel_size[1]
        rng = _generator(rng)
        coeff = initializers.get(weight_init)((channels,), fan_in, 1, rng, self.dtype)
        self.params = {"coeff": Parameter(coeff, "coeff"),
                       "b": Parameter(np.zeros(channels, dtype=self.dtype), "b", decay=False)}

    def config(self):
        return {"channels": self.channels, "kernel_size": list(self.kernel_size),
                "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, args):
        channels = count(args["channels"], "channels")
        return {"coeff": (channels,), "b": (channels,)}

    def forward(self, x, *, train=False):
        _check_ndim(x, 4, self)
        _check_dtype(x, self.dtype, self)
        if x.shape[1] != self.channels:
            raise ValueError(f"Subsampling expects {self.channels} channels, got {x.shape}")
        self.x_shape = x.shape
        self.window_sum = _window_sums(x, self.kernel_size, self.kernel_size, (0, 0))
        _expect_dout(self, x, self.window_sum.shape)
        coeff, b = self.params["coeff"].data, self.params["b"].data
        return self.window_sum * coeff[:, None, None] + b[:, None, None]

    def backward(self, dout):
        _check_dout(self, dout)
        coeff, b = self.params["coeff"], self.params["b"]
        coeff.grad[...] = np.einsum("nchw,nchw->c", dout, self.window_sum)
        b.grad[...] = np.einsum("nchw->c", dout)
        return _window_sums_backward(dout * coeff.data[:, None, None], self.x_shape,
                                     self.kernel_size, self.kernel_size, (0, 0))


class Affine(Layer):
    """Fully connected layer ``y = x W + b`` (book §5.6.2).

    Shapes: x ``(N, D)`` or ``(N, ...)`` flattened to ``(N, D)`` -> y ``(N, M)``;
    W ``(D, M)``, b ``(M,)``. Saved for backward: ``x`` (2-D), ``x_shape``.
    """

    def __init__(self, in_features, out_features, *, dtype="float32", rng=None,
                 weight_init="He", bias_init=0.0):
        self.in_features = count(in_features, "in_features")
        self.out_features = count(out_features, "out_features")
        self.dtype = float_dtype(dtype)
        rng = _generator(rng)
        values_check((in_features, out_features), "W")
        W = initializers.get(weight_init)((in_features, out_features), in_features,
                                          out_features, rng, self.dtype)
        b = initializers.get(bias_init)((out_features,), in_features, out_features, rng, self.dtype)
        self.params = {"W": Parameter(W, "W"), "b": Parameter(b, "b", decay=False)}

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, args):
        shape = (count(args["in_features"], "in_features"),
                 count(args["out_features"], "out_features"))
        return {"W": shape, "b": shape[1:]}

    def forward(self, x, *, train=False):
        _check_dtype(x, self.dtype, self)
        _expect_dout(self, x, (x.shape[0], self.out_features))
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], math.prod(x.shape[1:]))     # -1 fails on an empty batch
        if self.x.shape[1] != self.in_features:
            raise ValueError(f"Affine expects {self.in_features} features per example, "
                             f"got input of shape {x.shape}")
        return self.x @ self.params["W"].data + self.params["b"].data

    def backward(self, dout):
        _check_dout(self, dout)
        W, b = self.params["W"], self.params["b"]
        np.matmul(self.x.T, dout, out=W.grad)
        b.grad[...] = dout.sum(axis=0)
        return (dout @ W.data.T).reshape(self.x_shape)


class RBF(Layer):
    """LeNet-5's output layer (LeCun et al. 1998 §II.B, eq. 7): one Euclidean
    radial basis function unit per class, each measuring how far its input
    lies from the class's fixed code vector.

    The paper's unit outputs the penalty ``y_i = sum_j (x_j - w_ij)^2``;
    this layer returns the *score* ``-y_i``, so that the highest score wins
    as for every other output layer (``argmax``, :class:`SoftmaxWithLoss`).
    The codes are fixed (the paper chose them by hand and kept them fixed),
    so the layer has no trainable parameters.

    Shapes: x ``(N, D)`` -> scores ``(N, K)``; codes ``(K, D)``. Saved: ``x``.
    """

    def __init__(self, codes, *, dtype="float32"):
        self.dtype = float_dtype(dtype)
        self.codes = np.array(codes, dtype=self.dtype)
        if self.codes.ndim != 2:
            raise ValueError(f"RBF codes must have shape (K, D), got {self.codes.shape}")
        self._code_norms = np.square(self.codes).sum(axis=1)

    def config(self):
        return {"codes": self.codes.tolist(), "dtype": self.dtype.name}

    def __repr__(self):     # the codes themselves would fill the screen
        return f"RBF(classes={self.codes.shape[0]}, features={self.codes.shape[1]})"

    def forward(self, x, *, train=False):
        _check_dtype(x, self.dtype, self)
        _check_ndim(x, 2, self, "(N, D)")
        if x.shape[1] != self.codes.shape[1]:
            raise ValueError(f"RBF expects {self.codes.shape[1]} features per example, "
                             f"got input of shape {x.shape}")
        _expect_dout(self, x, (x.shape[0], self.codes.shape[0]))
        self.x = x
        # -|x - w|^2 = 2 x.w - |x|^2 - |w|^2: one matrix product instead of
        # an (N, K, D) array of differences.
        score = x @ self.codes.T
        score *= self.dtype.type(2)
        score -= np.square(x).sum(axis=1, keepdims=True)
        score -= self._code_norms
        return score

    def backward(self, dout):
        _check_dout(self, dout)
        # d(-y_i)/dx = 2 (w_i - x), summed over the classes with weights dout.
        dx = dout @ self.codes
        dx -= self.x * dout.sum(axis=1, keepdims=True)
        dx *= self.dtype.type(2)
        return dx


class Flatten(Layer):
    """``(N, C, H, W)`` -> ``(N, C*H*W)``. Saved: ``x_shape``."""

    def forward(self, x, *, train=False):
        self.x_shape = np.shape(x)
        _expect_dout(self, x, self.x_shape[:1] + (math.prod(self.x_shape[1:]),))
        return x.reshape(self._dout_spec[0])     # not (N, -1): that fails on an empty batch

    def backward(self, dout):
        _check_dout(self, dout)
        return dout.reshape(self.x_shape)


# ----------------------------------------------------------- activations ----

class ReLU(Layer):
    """``max(0, x)`` (book §5.5.1). Saved: ``out``, which is 0 exactly where
    x <= 0: the book's ``mask`` is ``out <= 0``."""

    def forward(self, x, *, train=False):
        _expect_dout(self, x)
        self.out = kernels.relu_forward(x)
        return self.out

    def backward(self, dout):
        _check_dout(self, dout)
        return kernels.relu_backward(self.out, dout)


class Sigmoid(Layer):
    """Logistic ``1 / (1 + exp(-x))`` (book §5.5.2). Saved: ``out``."""

    def forward(self, x, *, train=False):
        _expect_dout(self, x)
        # exp of a large positive number overflows; this form never does.
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, dout):
        _check_dout(self, dout)
        return dout * (1 - self.out) * self.out


class Tanh(Layer):
    """Hyperbolic tangent. Saved: ``out``."""

    def forward(self, x, *, train=False):
        _expect_dout(self, x)
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        _check_dout(self, dout)
        return dout * (1 - self.out * self.out)


class ScaledTanh(Layer):
    """LeCun's squashing function ``f(a) = A tanh(S a)``, ``A = 1.7159``,
    ``S = 2/3`` (LeCun et al. 1998 §II.A and Appendix A): ``f(±1) = ±1``.
    Saved: ``out``."""

    A = 1.7159
    S = 2.0 / 3.0

    def forward(self, x, *, train=False):
        _expect_dout(self, x)
        t = x.dtype.type
        # A tanh(S a) = A - 2A / (exp(2 S a) + 1): NumPy's float32 exp is
        # vectorised and its tanh is not (1.7x faster on LeNet's C1 maps).
        # Near a = 0 the subtraction cancels: the error stays below one
        # float ulp of A (1e-7 in float32), harmless to training, but tiny
        # outputs are not accurate relative to their own size.
        # exp overflows to inf for large a, which gives exactly A: not an
        # error, so its warning is silenced (cheaper than capping a first).
        out = np.multiply(x, t(2 * self.S))
        with np.errstate(over="ignore"):
            np.exp(out, out=out)
        out += t(1)
        np.divide(t(-2 * self.A), out, out=out)
        out += t(self.A)
        self.out = out
        return out

    def backward(self, dout):
        _check_dout(self, dout)
        # f'(a) = A S (1 - tanh(S a)^2) = A S - (S / A) f(a)^2.
        t = dout.dtype.type
        dx = np.square(self.out)
        dx *= t(-self.S / self.A)
        dx += t(self.A * self.S)
        dx *= dout
        return dx


class LRN(Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012 §3.3):

    ``b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta``

    with the sum over the ``n`` neighbouring maps that exist (zeros beyond the
    edges). Paper values: ``k=2, n=5, alpha=1e-4, beta=0.75``; alpha is *not*
    divided by n here (PyTorch and Caffe divide it). The window sums are
    :func:`~zeronet.kernels.lrn_forward`'s.

    Shapes: x ``(N, C, H, W)`` -> y same. Saved: ``x`` (backward sums the
    windows again rather than keep them).
    """

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75):
        if n < 1 or n % 2 == 0:
            raise ValueError(f"LRN size n must be a positive odd number, got {n}")
        self.n, self.k, self.alpha, self.beta = int(n), float(k), float(alpha), float(beta)

    def config(self):
        return {"n": self.n, "k": self.k, "alpha": self.alpha, "beta": self.beta}

    def forward(self, x, *, train=False):
        _check_ndim(x, 4, self)
        _expect_dout(self, x)
        self.x = x
        return kernels.lrn_forward(x, self.n, self.k, self.alpha, self.beta)

    def backward(self, dout):
        _check_dout(self, dout)
        return kernels.lrn_backward(self.x, dout, self.n, self.k, self.alpha, self.beta)


class Dropout(Layer):
    """Dropout (book §6.4.3; Krizhevsky et al. 2012 §4.2).

    Training: each unit is kept with probability ``1 - ratio`` and zeroed
    otherwise. Test: every unit is kept and scaled by ``1 - ratio``, so the
    expected output matches (the paper's "multiply their outputs by 0.5").
    Shapes: any. Saved: ``mask``. Draws from ``rng`` (checkpointed).
    """

    def __init__(self, ratio=0.5, *, rng=None):
        if not 0 <= ratio < 1:
            raise ValueError(f"dropout ratio must be in [0, 1), got {ratio}")
        self.ratio = float(ratio)
        self.rng = _generator(rng)

    def config(self):
        return {"ratio": self.ratio}

    def generators(self):
        return {"rng": self.rng}

    def forward(self, x, *, train=False):
        _expect_dout(self, x)
        if train:
            self.mask = self.rng.random(x.shape) >= self.ratio
            return x * self.mask
        self.mask = None
        return x * x.dtype.type(1 - self.ratio)

    def backward(self, dout):
        _check_dout(self, dout)
        if self.mask is None:
            return dout * dout.dtype.type(1 - self.ratio)
        return dout * self.mask
