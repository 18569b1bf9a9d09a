"""The one place that chooses between the compiled core and the NumPy reference.

Everything else in zeronet calls ``zeronet.kernels.im2col`` and friends and
never imports ``_core`` or ``reference`` directly.

- ``ZERONET_FORCE_NUMPY=1`` in the environment selects the NumPy reference even
  when the compiled core is built (to feel the difference in speed).
- If the core is not built, the reference is used with one warning that says
  how to build it.
"""
import os
import warnings

from zeronet import reference

FORCED_NUMPY = os.environ.get("ZERONET_FORCE_NUMPY", "") not in ("", "0")

try:
    from zeronet import _core
except ImportError as exc:  # not built: fall back, loudly
    _core = None
    if not FORCED_NUMPY:
        warnings.warn(
            "zeronet's compiled core is not built, so the slow NumPy reference is used "
            f"({exc}). Build it with `pip install -e .` (or `python setup.py build_ext "
            "--inplace`) in the zeronet source folder.",
            RuntimeWarning, stacklevel=2)

HAS_CORE = _core is not None
USING_CORE = HAS_CORE and not FORCED_NUMPY
HAS_OPENMP = USING_CORE and _core.HAS_OPENMP

_impl = _core if USING_CORE else reference
im2col = _impl.im2col
col2im = _impl.col2im
maxpool_forward = _impl.maxpool_forward
maxpool_backward = _impl.maxpool_backward


def backend():
    """``"compiled"`` or ``"numpy"``: which kernels are in use."""
    return "compiled" if USING_CORE else "numpy"


def get_num_threads():
    """Threads the kernels use (always 1 on the NumPy path)."""
    return _core.get_num_threads() if USING_CORE else 1


def set_num_threads(n):
    """Set the kernels' thread count; results are identical for any count."""
    if USING_CORE:
        _core.set_num_threads(n)


def get_blas_threads():
    """Threads of the BLAS library behind NumPy's matrix products (None if
    threadpoolctl finds none)."""
    from threadpoolctl import threadpool_info
    counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return counts[0] if counts else None


def set_blas_threads(n):
    """Limit the BLAS library behind NumPy's matrix products to ``n`` threads.

    Small networks lose time when BLAS splits their small products between
    threads (LeNet-5 at batch 16: 5.7 ms per step with 2 BLAS threads, 4.2 ms
    with 1, on a 2-core machine). Unlike the compiled kernels, BLAS may round
    differently with a different thread count.
    """
    from threadpoolctl import threadpool_limits
    if n < 1:
        raise ValueError(f"number of BLAS threads must be >= 1, got {n}")
    threadpool_limits(limits=int(n), user_api="blas")
