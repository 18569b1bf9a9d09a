"""A reader of zeronet weights files written from docs/weights-format.md alone.

Plain NumPy, h5py and json: nothing from zeronet (tests/test_weights_format.py
checks that importing this module imports no zeronet). Each layer is the
formula on that page, written as directly as NumPy allows, not for speed.

    network = read("reproduce/weights/lenet5.h5")
    scores = predict(network, digits)          # (N, K); argmax is the class
"""
import json

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def read(path):
    """``{"layers": [(type, config, {param: array}), ...], "loss": ...,
    "metadata": ...}`` from a weights file."""
    with h5py.File(path, "r") as f:
        if f.attrs["format"] != "zeronet-weights" or f.attrs["format_version"] != 2:
            raise ValueError(f"{path}: not a version 2 zeronet weights file")
        architecture = json.loads(f.attrs["architecture"])
        layers = []
        for spec in architecture["layers"]:
            group = f[spec["name"]] if spec["name"] in f else {}
            params = {key: group[key][()] for key in group}
            layers.append((spec["type"], spec["config"], params))
        return {"layers": layers, "loss": architecture.get("loss"),
                "metadata": json.loads(f.attrs["metadata"])}


def predict(network, x):
    """Apply every layer's forward pass in order, in test mode."""
    for kind, config, params in network["layers"]:
        x = FORWARD[kind](x, config, params)
    return x


def loss(network, scores, t):
    """The mean loss of the scores ``(N, K)`` against the classes ``t (N,)``."""
    spec = network["loss"] or {"type": "SoftmaxWithLoss", "config": {}}
    if spec["type"] == "MAPLoss":
        rubbish = np.full((len(scores), 1), -spec["config"]["j"])
        scores = np.concatenate([scores, rubbish], axis=1)
    elif spec["type"] != "SoftmaxWithLoss":
        raise ValueError(f"unknown loss {spec['type']}")
    scores = scores.astype(np.float64)
    top = scores.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(scores - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - scores[np.arange(len(t)), t]))


def digit_input(x, config, params):
    side, dtype = config["side"], np.dtype(config["dtype"])
    if x.dtype != np.uint8:
        assert x.shape[1:] == (1, side, side), x.shape
        return x
    x = x.reshape(len(x), x.shape[-2], x.shape[-1])
    factor = dtype.type((config["ink"] - config["background"]) / 255)
    background = dtype.type(config["background"])
    out = np.full((len(x), 1, side, side), background, dtype=dtype)
    top, left = (side - x.shape[1]) // 2, (side - x.shape[2]) // 2
    out[:, 0, top:top + x.shape[1], left:left + x.shape[2]] = x.astype(dtype) * factor + background
    return out


def image_input(x, config, params):
    dtype, crop = np.dtype(config["dtype"]), config["crop"]
    mean = np.array(config["mean"], dtype=dtype)
    top, left = (mean.shape[1] - crop) // 2, (mean.shape[2] - crop) // 2
    centre = mean[:, top:top + crop, left:left + crop]
    if x.dtype != np.uint8:
        assert x.shape[1:] == centre.shape, x.shape
        return x
    if x.shape[1:] == mean.shape:
        x = x[:, :, top:top + crop, left:left + crop]
    out = x.astype(dtype) - centre
    return out * dtype.type(config["scale"]) if config["scale"] != 1 else out


def windows(x, kernel_size, stride, pad, fill, out_hw=None):
    """Every window of ``x (N, C, H, W)``: ``(N, C, OH, OW, KH, KW)``. The
    padding holds ``fill``; ``out_hw`` may ask for more windows than fit
    (MaxPooling's ceil_mode), which then see ``fill`` past the edge too."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, pad
    h, w = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    oh, ow = out_hw or ((h - kh) // sh + 1, (w - kw) // sw + 1)
    extra_h, extra_w = max(0, (oh - 1) * sh + kh - h), max(0, (ow - 1) * sw + kw - w)
    padded = np.pad(x, [(0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)],
                    constant_values=fill)
    return sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]


def convolution(x, config, params):
    W, b = params["W"], params["b"]
    if config["table"] is not None:
        W = W * np.array(config["table"], dtype=W.dtype)[:, :, None, None]
    groups, out_channels = config["groups"], config["out_channels"]
    patches = windows(x, config["kernel_size"], config["stride"], config["pad"], 0)
    in_per_group, out_per_group = x.shape[1] // groups, out_channels // groups
    y = []
    for g in range(groups):
        inputs = patches[:, g * in_per_group:(g + 1) * in_per_group]
        kernels = W[g * out_per_group:(g + 1) * out_per_group]
        y.append(np.einsum("ncijyx,ocyx->noij", inputs, kernels))
    return np.concatenate(y, axis=1) + b[:, None, None]


def max_pooling(x, config, params):
    (kh, kw), (sh, sw), (ph, pw) = config["kernel_size"], config["stride"], config["pad"]
    out_hw = []
    for size, k, s, p in ((x.shape[2], kh, sh, ph), (x.shape[3], kw, sw, pw)):
        if config["ceil_mode"]:
            out = -(-(size + 2 * p - k) // s) + 1
            if (out - 1) * s >= size + p:
                out -= 1
        else:
            out = (size + 2 * p - k) // s + 1
        out_hw.append(out)
    patches = windows(x, (kh, kw), (sh, sw), (ph, pw), -np.inf, tuple(out_hw))
    return patches.max(axis=(4, 5))


def avg_pooling(x, config, params):
    (kh, kw) = config["kernel_size"]
    patches = windows(x, config["kernel_size"], config["stride"], config["pad"], 0)
    return patches.sum(axis=(4, 5)) / x.dtype.type(kh * kw)


def subsampling(x, config, params):
    k = config["kernel_size"]
    sums = windows(x, k, k, (0, 0), 0).sum(axis=(4, 5))
    return sums * params["coeff"][:, None, None] + params["b"][:, None, None]


def affine(x, config, params):
    return x.reshape(len(x), -1) @ params["W"] + params["b"]


def rbf(x, config, params):
    codes = np.array(config["codes"], dtype=config["dtype"])
    return -np.square(x[:, None, :] - codes[None, :, :]).sum(axis=2)


def lrn(x, config, params):
    n, k, alpha, beta = config["n"], config["k"], config["alpha"], config["beta"]
    channels = x.shape[1]
    y = np.empty_like(x)
    for c in range(channels):
        near = x[:, max(0, c - n // 2):min(channels - 1, c + n // 2) + 1]
        y[:, c] = x[:, c] / (k + alpha * np.square(near).sum(axis=1)) ** beta
    return y


FORWARD = {
    "DigitInput": digit_input,
    "ImageInput": image_input,
    "Convolution": convolution,
    "MaxPooling": max_pooling,
    "AvgPooling": avg_pooling,
    "Subsampling": subsampling,
    "Affine": affine,
    "RBF": rbf,
    "Flatten": lambda x, config, params: x.reshape(len(x), -1),
    "ReLU": lambda x, config, params: np.maximum(x, 0),
    "Sigmoid": lambda x, config, params: 1 / (1 + np.exp(-x)),
    "Tanh": lambda x, config, params: np.tanh(x),
    "ScaledTanh": lambda x, config, params: 1.7159 * np.tanh(2 / 3 * x),
    "LRN": lrn,
    "Dropout": lambda x, config, params: x * (1 - config["ratio"]),
}
