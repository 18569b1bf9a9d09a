"""Pure-NumPy kernels: the readable reference and the oracle for ``_core``.

Same contract as the compiled core (``zeronet/_core.pyx``): same arguments,
same checks, same errors, same outputs. Copies (im2col, pooling forward and
its argmax, ReLU) agree exactly; accumulations (col2im, pooling backward,
the convolution, LRN) agree up to rounding, because the sums are taken in a
different order (or, for LRN's powers, computed another way).

Layouts (the book's, ch. 7.4):

- ``col``: ``(N*OH*OW, C*KH*KW)``, one row per output position in
  ``(n, oh, ow)`` order, one column per ``(c, ky, kx)``.
- ``argmax``: ``(N, C, OH, OW)`` int32, the position of the maximum *inside
  its window*, ``ky*KW + kx``; padding counts as a position holding -inf.
"""
import numpy as np

from zeronet._validate import (ARGMAX_DTYPE, conv_args, conv_grad_args, conv_output_size,
                               float_any, float_array, lrn_args, lrn_grad_args, output_array,
                               relu_grad_args,
                               pool_grad_check, pool_output_size, pool_window_check, shape4,
                               sizes_check, window_args)


def im2col(x, kernel_size, stride=1, pad=0, out=None):
    """Unfold every convolution window of ``x`` into one row.

    Shapes: x ``(N, C, H, W)`` -> col ``(N*OH*OW, C*KH*KW)``, zero padding.
    ``out``, if given, is filled and returned instead of a new array.
    """
    float_array(x, "x", 4)
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = shape4(x.shape, "x")
    oh = conv_output_size(h, kh, sh, ph, "height")
    ow = conv_output_size(w, kw, sw, pw, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    result = output_array(out, (n * oh * ow, c * kh * kw), x.dtype, "out", x)
    img = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    col = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    # One strided slice per kernel offset: each (ky, kx) sees a shifted,
    # subsampled copy of the image.
    for ky in range(kh):
        for kx in range(kw):
            col[:, :, ky, kx] = img[:, :, ky:ky + sh * oh:sh, kx:kx + sw * ow:sw]
    result.reshape(n, oh, ow, c, kh, kw)[...] = col.transpose(0, 4, 5, 1, 2, 3)
    return result


def col2im(col, x_shape, kernel_size, stride=1, pad=0, out=None):
    """Adjoint of :func:`im2col`: fold rows back, summing overlapping windows.

    Shapes: col ``(N*OH*OW, C*KH*KW)`` -> dx ``x_shape = (N, C, H, W)``.
    ``out``, if given, is filled and returned instead of a new array.
    """
    float_array(col, "col", 2)
    n, c, h, w = shape4(x_shape, "x_shape")
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    oh = conv_output_size(h, kh, sh, ph, "height")
    ow = conv_output_size(w, kw, sw, pw, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    if col.shape != (n * oh * ow, c * kh * kw):
        raise ValueError(f"col must have shape {(n * oh * ow, c * kh * kw)} for x_shape "
                         f"{x_shape}, got {col.shape}")
    result = output_array(out, (n, c, h, w), col.dtype, "out", col)
    col6 = col.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * ph + sh - 1, w + 2 * pw + sw - 1), dtype=col.dtype)
    for ky in range(kh):
        for kx in range(kw):
            img[:, :, ky:ky + sh * oh:sh, kx:kx + sw * ow:sw] += col6[:, :, ky, kx]
    result[...] = img[:, :, ph:ph + h, pw:pw + w]
    return result


def conv_forward(x, W, b, stride=1, pad=0, groups=1, work=None):
    """Convolution: ``y = im2col(x) @ W.reshape(OC, -1).T + b``, per group.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, b ``(OC,)`` ->
    y ``(N, OC, OH, OW)``. With ``groups`` > 1, output maps of group g see
    only input channels of group g (Krizhevsky et al. 2012's two towers).
    ``work`` (a dict for the compiled core's scratch arrays) is not used.
    """
    kh, kw, sh, sw, ph, pw, oh, ow = conv_args(x, W, b, stride, pad, groups)
    col = im2col(x, (kh, kw), (sh, sw), (ph, pw))
    out = np.empty((col.shape[0], W.shape[0]), dtype=x.dtype)
    W2 = W.reshape(W.shape[0], -1)
    for maps, cols in _group_slices(W.shape, groups):
        out[:, maps] = col[:, cols] @ W2[maps].T
    y = out.reshape(x.shape[0], oh, ow, W.shape[0]).transpose(0, 3, 1, 2) + b[:, None, None]
    return np.ascontiguousarray(y)


def conv_backward(x, W, dout, stride=1, pad=0, groups=1, input_grad=True, work=None,
                  bias_grad=False):
    """Gradients of :func:`conv_forward`: ``(dx, dW)``, dx None unless
    ``input_grad``; with ``bias_grad``, ``(dx, dW, db)``, db being dout
    summed over N, OH, OW. ``work`` is not used, as in :func:`conv_forward`.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, dout
    ``(N, OC, OH, OW)`` -> dx like x, dW like W, db ``(OC,)``.
    """
    kh, kw, sh, sw, ph, pw, oh, ow = conv_args(x, W, None, stride, pad, groups, with_bias=False)
    conv_grad_args(x, W, dout, oh, ow, input_grad, bias_grad)
    col = im2col(x, (kh, kw), (sh, sw), (ph, pw))
    rows = dout.transpose(0, 2, 3, 1).reshape(col.shape[0], W.shape[0])   # like col's rows
    W2, dW = W.reshape(W.shape[0], -1), np.empty_like(W)
    dW2 = dW.reshape(W2.shape)
    dcol = np.empty_like(col) if input_grad else None
    for maps, cols in _group_slices(W.shape, groups):
        dW2[maps] = rows[:, maps].T @ col[:, cols]
        if input_grad:
            dcol[:, cols] = rows[:, maps] @ W2[maps]
    dx = col2im(dcol, x.shape, (kh, kw), (sh, sw), (ph, pw)) if input_grad else None
    return (dx, dW) + ((bias_gradient(dout),) if bias_grad else ())


def bias_gradient(dout):
    """A convolution's bias gradient: dout ``(N, OC, OH, OW)`` summed over
    N, OH and OW -> ``(OC,)``."""
    return np.einsum("nchw->c", dout)


def _group_slices(w_shape, groups):
    """``(maps, cols)`` slices of each group: its rows of W, its columns of col."""
    oc, cg, kh, kw = w_shape
    per_group, k = oc // groups, cg * kh * kw
    return [(slice(g * per_group, (g + 1) * per_group), slice(g * k, (g + 1) * k))
            for g in range(groups)]


def maxpool_forward(x, kernel_size, stride, pad=0, ceil_mode=False):
    """Max of every window, and where it was.

    Shapes: x ``(N, C, H, W)`` -> out ``(N, C, OH, OW)`` (x's dtype),
    argmax ``(N, C, OH, OW)`` int32 in ``[0, KH*KW)``. Padding is -inf; ties
    go to the first maximum in row-major order (as ``numpy.argmax``).
    """
    float_array(x, "x", 4)
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = shape4(x.shape, "x")
    pool_window_check(kh, kw)
    oh = pool_output_size(h, kh, sh, ph, ceil_mode, "height")
    ow = pool_output_size(w, kw, sw, pw, ceil_mode, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    # In ceil mode the last window may need more -inf beyond the usual pad.
    extra_h = max(0, (oh - 1) * sh + kh - (h + 2 * ph))
    extra_w = max(0, (ow - 1) * sw + kw - (w + 2 * pw))
    img = np.pad(x, [(0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)],
                 constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(img, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw][:, :, :oh, :ow].reshape(n, c, oh, ow, kh * kw)
    argmax = np.argmax(windows, axis=-1)
    out = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]
    return np.ascontiguousarray(out), argmax.astype(ARGMAX_DTYPE)


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, pad=0):
    """Send each window's gradient to the element that won its max.

    Shapes: dout, argmax ``(N, C, OH, OW)`` -> dx ``x_shape = (N, C, H, W)``.
    Overlapping windows accumulate; a winner in the padding is dropped.
    """
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = pool_grad_check(dout, argmax, x_shape, kh, kw, sh, sw, ph, pw)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= kh * kw):
        raise ValueError(f"argmax values must lie in [0, {kh * kw}) for a {kh}x{kw} window")
    oh, ow = dout.shape[2:]
    rows = np.arange(oh)[:, None] * sh + argmax // kw - ph
    cols = np.arange(ow)[None, :] * sw + argmax % kw - pw
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    nn, cc = np.indices((n, c, oh, ow))[:2]
    dx = np.zeros((n, c, h, w), dtype=dout.dtype)
    np.add.at(dx, (nn[inside], cc[inside], rows[inside], cols[inside]), dout[inside])
    return dx


def relu_forward(x):
    """``max(0, x)`` elementwise (book §5.5.1): 0 where x <= 0, else x (so a
    NaN stays NaN). Shapes: any -> the same, contiguous, x's dtype."""
    float_any(x, "x")
    return np.asarray(np.where(x <= 0, x.dtype.type(0), x), order="C")


def relu_backward(y, dout):
    """Gradient of :func:`relu_forward` from its output y: 0 where y <= 0
    (exactly where x <= 0), else dout. Shapes: y, dout alike -> dx."""
    relu_grad_args(y, dout)
    return np.asarray(np.where(y <= 0, dout.dtype.type(0), dout), order="C")


def channel_window_sums(a, n):
    """Sum over the ``n`` maps around each map, zeros beyond the edges:
    ``out[:, c] = a[:, c - n//2] + ... + a[:, c + n//2]``, added in that order.

    Each window is summed on its own (n shifted slices, not a running sum),
    so a NaN or a huge value in one map reaches only the maps whose window
    holds it. Shapes: a ``(N, C, H, W)`` -> same.
    """
    half, channels = n // 2, a.shape[1]
    padded = np.pad(a, [(0, 0), (half, half), (0, 0), (0, 0)])
    total = padded[:, 0:channels].copy()
    for shift in range(1, n):
        total += padded[:, shift:shift + channels]
    return total


def lrn_forward(x, n, k, alpha, beta):
    """Local response normalisation across maps (Krizhevsky et al. 2012 §3.3):

    ``y_c = x_c * s_c ** -beta``,  ``s_c = k + alpha * sum of x_j^2 over the
    n maps j around c``, in x's dtype.

    Shapes: x ``(N, C, H, W)`` (any strides) -> y ``(N, C, H, W)``, contiguous.
    """
    lrn_args(x, n)
    t = x.dtype.type
    scale = t(k) + t(alpha) * channel_window_sums(x * x, n)
    return np.ascontiguousarray(x * scale ** t(-beta))


def lrn_backward(x, dout, n, k, alpha, beta):
    """Gradient of :func:`lrn_forward` with respect to x, from x itself (the
    window sums are recomputed rather than kept).

    ``dx_i = dout_i * s_i ** -beta - 2 alpha beta x_i * sum over the maps j
    whose window holds i of dout_j x_j s_j ** -beta / s_j``: i lies in j's
    window exactly when j lies in i's, so that sum is again a window sum.
    Shapes: x, dout ``(N, C, H, W)`` (any strides) -> dx ``(N, C, H, W)``.
    """
    lrn_grad_args(x, dout, n)
    t = x.dtype.type
    scale = t(k) + t(alpha) * channel_window_sums(x * x, n)
    power = scale ** t(-beta)
    cross = channel_window_sums(dout * x * power / scale, n)
    return np.ascontiguousarray(dout * power - t(2 * alpha * beta) * x * cross)
