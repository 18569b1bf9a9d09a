"""Argument checks shared by the compiled core and the NumPy reference.

Both implementations call these *before* touching any data, so a bad call
raises the same clear ``TypeError``/``ValueError`` whichever path is in use,
and the compiled loops only ever see arrays they can index safely.
"""
import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ARGMAX_DTYPE = np.dtype(np.int32)

# Every length, kernel size, stride, pad, channel count and output length is
# at most MAX_SIZE. The compiled core combines a few of them at a time in
# 64-bit integers (``oh * SH - PH + ky``, ``need + SW - 1``), which then
# cannot overflow; and no real array is that long along one axis.
MAX_SIZE = 2**31 - 1
# An array that zeronet creates from sizes alone (an ``x_shape``, the output
# of a huge pad) holds at most this many values (16 GiB of float32): more is
# a mistake, not a large batch (AlexNet's largest im2col matrix at batch 128
# holds 140 M), and far larger counts would overflow NumPy's own size
# arithmetic. Within the limit, a machine without the memory says MemoryError.
MAX_VALUES = 2**32


def flag(value, name):
    """A yes/no argument: True or False (NumPy's too), not anything that
    merely has a truth value (the string "no" would count as yes)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def is_int(value):
    """True for a Python or NumPy integer (``bool`` is not one here)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def count(value, name, minimum=1, maximum=MAX_SIZE):
    """Return ``value`` as an int in ``[minimum, maximum]``: a channel count,
    a number of features, a size."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value!r}")
    return int(value)


def pair(value, name, minimum, maximum=MAX_SIZE):
    """Return ``value`` as a pair of ints ``(a, b)``, each in ``[minimum, maximum]``."""
    if is_int(value):
        value = (value, value)
    if isinstance(value, (str, bytes)):      # "33" would unpack into two characters
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if not is_int(v):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if v > maximum:
            raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return int(a), int(b)


def values_check(shape, name):
    """Check that an array of ``shape`` would hold at most MAX_VALUES values."""
    size = math.prod(shape)
    if size > MAX_VALUES:
        raise ValueError(f"{name} would hold {size} values ({' x '.join(map(str, shape))}), "
                         f"more than the {MAX_VALUES} zeronet allows")


def window_args(kernel_size, stride, pad):
    """``((KH, KW), (SH, SW), (PH, PW))`` from ints or pairs, checked."""
    return pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1), pair(pad, "pad", 0)


def float_dtype(dtype, name="dtype"):
    """``dtype`` as a NumPy dtype, which must be float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}")
    return dt


def float_array(x, name, ndim):
    """Check that ``x`` is a C-contiguous float32/float64 array of ``ndim`` dims."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return x


def output_array(out, shape, dtype, name, reads):
    """Return ``out`` if given and usable as the result (an array of exactly
    ``shape`` and ``dtype``, C-contiguous, writeable, sharing no memory with
    the array ``reads`` that is read while it is written), else a new array."""
    values_check(shape, name)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype)} like the input, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    if np.may_share_memory(out, reads):
        raise ValueError(f"{name} must not overlap the input it is computed from")
    return out


def shape4(shape, name):
    """Check an ``(N, C, H, W)`` shape: 4 ints, an empty batch (N = 0)
    allowed, C, H and W at least 1, each at most MAX_SIZE, MAX_VALUES in all."""
    if isinstance(shape, (str, bytes)):      # "1234" would pass as four digits
        raise TypeError(f"{name} must be a tuple (N, C, H, W), got {shape!r}")
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple (N, C, H, W), got {shape!r}") from None
    if not all(is_int(d) for d in dims):
        raise TypeError(f"{name} must be a tuple of 4 ints (N, C, H, W), got {shape!r}")
    if (len(dims) != 4 or dims[0] < 0 or min(dims[1:]) < 1
            or max(dims) > MAX_SIZE):
        raise ValueError(f"{name} must be 4 ints (N, C, H, W) with N >= 0 and C, H, W >= 1, "
                         f"each at most {MAX_SIZE}, got {shape!r}")
    dims = tuple(int(d) for d in dims)
    values_check(dims, name)
    return dims


def conv_output_size(size, kernel, stride, pad, axis):
    """Output length of a convolution window sliding along one axis."""
    span = size + 2 * pad - kernel
    if span < 0:
        raise ValueError(
            f"kernel {axis} {kernel} is larger than the padded input {axis} {size + 2 * pad}")
    return output_length(span // stride + 1, axis)


def sizes_check(n, c, h, w, ph, pw, oh, ow):
    """What the kernels allocate for an input ``(N, C, H, W)`` padded by
    ``(PH, PW)`` with an output ``OH x OW`` per map must fit MAX_VALUES: the
    output ``(N, C, OH, OW)`` and the zero-padded input (one image of it at
    least, which the compiled convolution pads even for an empty batch)."""
    values_check((n, c, oh, ow), "the output")
    values_check((max(n, 1), c, h + 2 * ph, w + 2 * pw), "the padded input")


def output_length(length, axis):
    """Check an output height or width against MAX_SIZE."""
    if length > MAX_SIZE:
        raise ValueError(f"output {axis} {length} is more than {MAX_SIZE} (pad too large?)")
    return length


def conv_args(x, W, b, stride, pad, groups, with_bias=True):
    """Check a convolution's arguments: x ``(N, C, H, W)``, W ``(OC, C/groups,
    KH, KW)`` and, if ``with_bias``, b ``(OC,)``, all of x's dtype. Returns
    ``KH, KW, SH, SW, PH, PW, OH, OW``."""
    float_array(x, "x", 4)
    float_array(W, "W", 4)
    n, c, h, w = shape4(x.shape, "x")
    oc, cg, kh, kw = shape4(W.shape, "W")
    if oc < 1:
        raise ValueError(f"W must have at least one output map (OC >= 1), got shape {W.shape}")
    if not is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if c % groups or oc % groups or cg != c // groups:
        raise ValueError(f"W of shape {W.shape} does not fit x of shape {x.shape} with "
                         f"groups={groups}: need (OC, C/groups, KH, KW), groups dividing OC")
    if W.dtype != x.dtype:
        raise TypeError(f"W must be {x.dtype} like x, got {W.dtype}")
    if with_bias:
        float_array(b, "b", 1)
        if b.dtype != x.dtype:
            raise TypeError(f"b must be {x.dtype} like x, got {b.dtype}")
        if b.shape != (oc,):
            raise ValueError(f"b must have shape ({oc},), got {b.shape}")
    (kh, kw), (sh, sw), (ph, pw) = window_args((kh, kw), stride, pad)
    oh = conv_output_size(h, kh, sh, ph, "height")
    ow = conv_output_size(w, kw, sw, pw, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    values_check((n, oc, oh, ow), "the output")
    return kh, kw, sh, sw, ph, pw, oh, ow


def conv_grad_args(x, W, dout, oh, ow, input_grad, bias_grad):
    """Check that dout ``(N, OC, OH, OW)`` fits a convolution of x with W,
    and that the flags saying which gradients to compute are flags."""
    flag(input_grad, "input_grad")
    flag(bias_grad, "bias_grad")
    float_array(dout, "dout", 4)
    if dout.dtype != x.dtype:
        raise TypeError(f"dout must be {x.dtype} like x, got {dout.dtype}")
    expected = (x.shape[0], W.shape[0], oh, ow)
    if dout.shape != expected:
        raise ValueError(f"dout must have shape {expected} for x {x.shape} and W {W.shape}, "
                         f"got {dout.shape}")


def pool_window_check(kh, kw):
    """The argmax of a window is stored as int32: the window must fit."""
    if kh * kw > np.iinfo(ARGMAX_DTYPE).max:
        raise ValueError(f"a {kh}x{kw} pooling window has too many positions for an "
                         f"int32 argmax")


def pool_output_size(size, kernel, stride, pad, ceil_mode, axis):
    """Output length of a pooling window; ``ceil_mode`` lets the last window
    hang off the edge, but never start past the input (so every window holds
    at least one real element)."""
    if pad >= kernel:
        raise ValueError(f"pad {pad} must be smaller than the kernel {axis} {kernel}")
    out = conv_output_size(size, kernel, stride, pad, axis)
    if ceil_mode:
        span = size + 2 * pad - kernel
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    return output_length(out, axis)


def pool_grad_check(dout, argmax, x_shape, kh, kw, sh, sw, ph, pw):
    """Check the arguments of a max-pooling backward pass; return x_shape."""
    float_array(dout, "dout", 4)
    if not isinstance(argmax, np.ndarray) or argmax.dtype != ARGMAX_DTYPE:
        raise TypeError("argmax must be the int32 array returned by maxpool_forward")
    if argmax.shape != dout.shape:
        raise ValueError(f"argmax shape {argmax.shape} differs from dout shape {dout.shape}")
    if not argmax.flags.c_contiguous:
        raise ValueError("argmax must be C-contiguous")
    n, c, h, w = shape4(x_shape, "x_shape")
    # dout may come from either rounding mode; anything else is a mismatch.
    allowed = {(pool_output_size(h, kh, sh, ph, ceil, "height"),
                pool_output_size(w, kw, sw, pw, ceil, "width")) for ceil in (False, True)}
    if dout.shape[:2] != (n, c) or dout.shape[2:] not in allowed:
        raise ValueError(f"dout shape {dout.shape} does not fit x_shape {tuple(x_shape)} "
                         f"with a {kh}x{kw} window, stride {(sh, sw)}, pad {(ph, pw)}")
    return n, c, h, w


def float_any(x, name):
    """Check that ``x`` is a float32/float64 array (any shape, any strides)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


def lrn_args(x, n, name="x"):
    """Check a local response normalisation's input: a float32/float64 array
    ``(N, C, H, W)`` (any strides; C, H, W at least 1) and a window of ``n``
    maps, a positive odd int."""
    float_any(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions (N, C, H, W), got shape {x.shape}")
    shape4(x.shape, name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or n % 2 == 0:
        raise ValueError(f"the LRN window n must be a positive odd int, got {n!r}")


def lrn_grad_args(x, dout, n):
    """Check an LRN backward pass's arguments: x as for :func:`lrn_args`,
    dout of x's shape and dtype."""
    lrn_args(x, n)
    lrn_args(dout, n, "dout")
    if dout.dtype != x.dtype:
        raise TypeError(f"dout must be {x.dtype} like x, got {dout.dtype}")
    if dout.shape != x.shape:
        raise ValueError(f"dout must have x's shape {x.shape}, got {dout.shape}")


def relu_grad_args(y, dout):
    """Check a ReLU backward pass's arguments: y and dout float arrays of one
    shape and dtype."""
    float_any(y, "y")
    float_any(dout, "dout")
    if dout.dtype != y.dtype:
        raise TypeError(f"dout must be {y.dtype} like y, got {dout.dtype}")
    if dout.shape != y.shape:
        raise ValueError(f"dout must have y's shape {y.shape}, got {dout.shape}")
