"""Numerical gradient checks, for zeronet's layers and for your own.

Example::

    layer = zeronet.layers.Affine(4, 3, dtype="float64", rng=rng)
    x = rng.standard_normal((2, 4))
    report = check_layer(layer, x, rng=rng)   # {"x": 3e-10, "W": 1e-10, "b": 2e-11}
    assert max(report.values()) < 1e-6

Use float64: in float32 the central difference is dominated by rounding.
"""
import warnings

import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f()`` with respect
    to the array ``x``, which ``f`` reads and which is perturbed in place
    (and restored). Shapes: ``x`` any -> gradient of the same shape."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        original = x[i]
        x[i] = original + eps
        f_plus = f()
        x[i] = original - eps
        f_minus = f()
        x[i] = original
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """``max |a - b| / max(max |a|, max |b|)``: the worst difference relative
    to the gradient's size. (Entry by entry, a gradient of 1e-6 that is off
    by rounding noise would look like a failure.)"""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a.size:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)
    return float(np.max(np.abs(a - b)) / scale)


def check_layer(layer, x, *, rng, train=False, eps=1e-6):
    """Compare ``layer.backward`` with numerical gradients.

    The scalar checked is ``sum(forward(x) * R)`` for a fixed random ``R``,
    so every output element matters. Returns ``{"x": err, "<param>": err,
    ...}`` with the relative error of the input gradient and of each
    parameter's gradient. ``train=True`` checks training behaviour; layers
    that draw random numbers in training (Dropout) must draw the same ones on
    every call, e.g. by being given a fresh generator each time.
    """
    x = np.array(x)
    if x.dtype != np.float64:
        warnings.warn("gradient checks need float64: in float32 the central difference "
                      "is mostly rounding error", stacklevel=2)
    out = layer.forward(x, train=train)
    weights = rng.standard_normal(out.shape).astype(out.dtype)
    state = {k: g.bit_generator.state for k, g in layer.generators().items()}

    def f():
        for k, g in layer.generators().items():
            g.bit_generator.state = state[k]
        return float(np.sum(layer.forward(x, train=train) * weights))

    f()
    dx = layer.backward(weights.copy())
    analytic = {"x": dx, **{k: p.grad.copy() for k, p in layer.params.items()}}
    numeric = {"x": numerical_gradient(f, x, eps)}
    for k, p in layer.params.items():
        numeric[k] = numerical_gradient(f, p.data, eps)
        if p.mask is not None:
            numeric[k] *= p.mask
    return {k: relative_error(analytic[k], numeric[k]) for k in analytic}
