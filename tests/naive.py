"""Naive loop oracle for the kernels: one element at a time.

Written from the kernel contract alone, not from ``zeronet/reference.py`` or
``zeronet/_core.pyx``, and as plainly as possible, so that a mistake shared by
those two is unlikely to be shared by this file too. Pure Python loops over
``n, c, oh, ow, ky, kx``: use small inputs only.

Layouts (the book's, ch. 7.4):

- ``col``: ``(N*OH*OW, C*KH*KW)``, row ``(n*OH + oh)*OW + ow``, column
  ``(c*KH + ky)*KW + kx``.
- ``argmax``: ``(N, C, OH, OW)`` int32, ``ky*KW + kx`` inside the window.
"""
import math

import numpy as np


def as_pair(value):
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    a, b = value
    return int(a), int(b)


def conv_out(size, kernel, stride, pad):
    """Number of window positions along one axis (floor rounding)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_out(size, kernel, stride, pad, ceil_mode):
    """Like :func:`conv_out`, but ceil mode keeps a last window that hangs off
    the end, unless that window would start past the input and its left pad."""
    if not ceil_mode:
        return conv_out(size, kernel, stride, pad)
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def im2col(x, kernel_size, stride=1, pad=0):
    """x ``(N, C, H, W)`` -> col ``(N*OH*OW, C*KH*KW)``, zero padding."""
    N, C, H, W = x.shape
    KH, KW = as_pair(kernel_size)
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    OH = conv_out(H, KH, SH, PH)
    OW = conv_out(W, KW, SW, PW)
    col = np.zeros((N * OH * OW, C * KH * KW), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                row = (n * OH + oh) * OW + ow
                for c in range(C):
                    for ky in range(KH):
                        for kx in range(KW):
                            ih = oh * SH - PH + ky
                            iw = ow * SW - PW + kx
                            if 0 <= ih < H and 0 <= iw < W:
                                col[row, (c * KH + ky) * KW + kx] = x[n, c, ih, iw]
    return col


def col2im(col, x_shape, kernel_size, stride=1, pad=0):
    """col ``(N*OH*OW, C*KH*KW)`` -> dx ``x_shape``; overlaps are summed and
    entries that fall in the padding are dropped."""
    N, C, H, W = x_shape
    KH, KW = as_pair(kernel_size)
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    OH = conv_out(H, KH, SH, PH)
    OW = conv_out(W, KW, SW, PW)
    dx = np.zeros((N, C, H, W), dtype=col.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                row = (n * OH + oh) * OW + ow
                for c in range(C):
                    for ky in range(KH):
                        for kx in range(KW):
                            ih = oh * SH - PH + ky
                            iw = ow * SW - PW + kx
                            if 0 <= ih < H and 0 <= iw < W:
                                dx[n, c, ih, iw] += col[row, (c * KH + ky) * KW + kx]
    return dx


def first_max(values):
    """Index of the maximum under numpy.argmax's rules: the first NaN if there
    is one, otherwise the first of the tied maxima."""
    best = 0
    for k in range(1, len(values)):
        if math.isnan(values[best]):
            break
        if math.isnan(values[k]) or values[k] > values[best]:
            best = k
    return best


def maxpool_forward(x, kernel_size, stride, pad=0, ceil_mode=False):
    """x ``(N, C, H, W)`` -> out ``(N, C, OH, OW)``, argmax int32; padding
    (including the overhang of ceil mode) counts as -inf."""
    N, C, H, W = x.shape
    KH, KW = as_pair(kernel_size)
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    OH = pool_out(H, KH, SH, PH, ceil_mode)
    OW = pool_out(W, KW, SW, PW, ceil_mode)
    out = np.zeros((N, C, OH, OW), dtype=x.dtype)
    argmax = np.zeros((N, C, OH, OW), dtype=np.int32)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = []     # row-major, so list position == ky*KW + kx
                    for ky in range(KH):
                        for kx in range(KW):
                            ih = oh * SH - PH + ky
                            iw = ow * SW - PW + kx
                            if 0 <= ih < H and 0 <= iw < W:
                                window.append(float(x[n, c, ih, iw]))
                            else:
                                window.append(-math.inf)
                    k = first_max(window)
                    out[n, c, oh, ow] = window[k]
                    argmax[n, c, oh, ow] = k
    return out, argmax


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, pad=0):
    """dout, argmax ``(N, C, OH, OW)`` -> dx ``x_shape``: each window's
    gradient goes to its winner; winners in the padding are dropped."""
    N, C, H, W = x_shape
    _, _, OH, OW = dout.shape
    KH, KW = as_pair(kernel_size)
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    ky, kx = divmod(int(argmax[n, c, oh, ow]), KW)
                    ih = oh * SH - PH + ky
                    iw = ow * SW - PW + kx
                    if 0 <= ih < H and 0 <= iw < W:
                        dx[n, c, ih, iw] += dout[n, c, oh, ow]
    return dx


def conv_forward(x, W, b, stride=1, pad=0, groups=1):
    """y[n, o, oh, ow] = b[o] + sum over the window of x * W[o], the window
    reaching only group g's input channels for an output map o of group g."""
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    OH, OW = conv_out(H, KH, SH, PH), conv_out(Wd, KW, SW, PW)
    y = np.zeros((N, OC, OH, OW), dtype=np.float64)
    for n in range(N):
        for o in range(OC):
            first_channel = (o // (OC // groups)) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    total = float(b[o])
                    for c in range(Cg):
                        for ky in range(KH):
                            for kx in range(KW):
                                ih, iw = oh * SH - PH + ky, ow * SW - PW + kx
                                if 0 <= ih < H and 0 <= iw < Wd:
                                    total += float(x[n, first_channel + c, ih, iw]) * float(
                                        W[o, c, ky, kx])
                    y[n, o, oh, ow] = total
    return y


def conv_backward(x, W, dout, stride=1, pad=0, groups=1):
    """(dx, dW) of :func:`conv_forward`: each product x * W in the forward sum
    sends dout * W to its x and dout * x to its W."""
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    SH, SW = as_pair(stride)
    PH, PW = as_pair(pad)
    dx = np.zeros(x.shape, dtype=np.float64)
    dW = np.zeros(W.shape, dtype=np.float64)
    for n in range(N):
        for o in range(OC):
            first_channel = (o // (OC // groups)) * Cg
            for oh in range(dout.shape[2]):
                for ow in range(dout.shape[3]):
                    d = float(dout[n, o, oh, ow])
                    for c in range(Cg):
                        for ky in range(KH):
                            for kx in range(KW):
                                ih, iw = oh * SH - PH + ky, ow * SW - PW + kx
                                if 0 <= ih < H and 0 <= iw < Wd:
                                    dx[n, first_channel + c, ih, iw] += d * float(W[o, c, ky, kx])
                                    dW[o, c, ky, kx] += d * float(x[n, first_channel + c, ih, iw])
    return dx, dW


def conv_bias_backward(dout):
    """db of :func:`conv_forward`: every output of map o adds b[o], so b[o]
    gets the sum of map o's dout, over all images and positions."""
    db = np.zeros(dout.shape[1], dtype=np.float64)
    for n, o, oh, ow in np.ndindex(*dout.shape):
        db[o] += float(dout[n, o, oh, ow])
    return db
