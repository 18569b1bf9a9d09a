"""Weight initialisers.

Each initialiser is called as ``init(shape, fan_in, fan_out, rng, dtype)`` and
returns a new array. ``fan_in`` may be an array that broadcasts against
``shape`` (LeNet-5's C3 maps do not all have the same number of inputs).
All randomness comes from the ``numpy.random.Generator`` passed in.
"""
import numpy as np


class Initializer:
    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        raise NotImplementedError

    def config(self):
        return {"type": type(self).__name__, **vars(self)}


class Constant(Initializer):
    """Every weight ``value`` (biases; AlexNet's positive biases use 1)."""

    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        return np.full(shape, self.value, dtype=dtype)


class Gaussian(Initializer):
    """Zero-mean normal with a fixed ``std`` (Krizhevsky et al. 2012 §5: 0.01)."""

    def __init__(self, std=0.01):
        self.std = float(std)

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        return (rng.standard_normal(shape) * self.std).astype(dtype)


class LeCunUniform(Initializer):
    """Uniform in ``±2.4 / fan_in`` (LeCun et al. 1998, Appendix C)."""

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        bound = 2.4 / np.asarray(fan_in, dtype=np.float64)
        return (rng.uniform(-1.0, 1.0, shape) * bound).astype(dtype)


class Xavier(Initializer):
    """Normal with std ``sqrt(1 / fan_in)`` (the book's choice for sigmoid/tanh, §6.2.2)."""

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        std = np.sqrt(1.0 / np.asarray(fan_in, dtype=np.float64))
        return (rng.standard_normal(shape) * std).astype(dtype)


class He(Initializer):
    """Normal with std ``sqrt(2 / fan_in)`` (He et al. 2015; the book's choice for ReLU)."""

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        std = np.sqrt(2.0 / np.asarray(fan_in, dtype=np.float64))
        return (rng.standard_normal(shape) * std).astype(dtype)


_REGISTRY = {cls.__name__: cls for cls in (Constant, Gaussian, LeCunUniform, Xavier, He)}


def get(spec):
    """An initialiser from an instance, a number (a constant), a class name
    (``"He"``) or a config dict."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict) and spec.get("type") in _REGISTRY:
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        return _REGISTRY[spec["type"]](**kwargs)
    raise ValueError(f"unknown initialiser {spec!r}; choose from {sorted(_REGISTRY)}")
