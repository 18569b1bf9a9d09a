"""The one place that chooses between the compiled core and the NumPy reference,
and between the ways of computing a convolution (see :func:`conv_path`).

Everything else in zeronet calls ``zeronet.kernels.conv_forward`` and
friends and never imports ``_core`` or ``reference`` directly.

- ``ZERONET_FORCE_NUMPY=1`` in the environment selects the NumPy reference even
  when the compiled core is built (to feel the difference in speed).
- If the core is not built, the reference is used with one warning that says
  how to build it.
- The core's convolution calls NumPy's own BLAS when NumPy brings one it can
  call safely (pip's NumPy does), else SciPy's; ``ZERONET_BLAS=scipy``
  selects SciPy's. ``blas_in_use()`` says which.
"""
import contextlib
import os
import threading
import warnings

from zeronet import reference
from zeronet._validate import count, window_args

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
FORCED_SCIPY_BLAS = os.environ.get("ZERONET_BLAS", "") == "scipy"
im2col = _impl.im2col
col2im = _impl.col2im
maxpool_forward = _impl.maxpool_forward
maxpool_backward = _impl.maxpool_backward
lrn_forward = _impl.lrn_forward
lrn_backward = _impl.lrn_backward
relu_forward = _impl.relu_forward
relu_backward = _impl.relu_backward


# ----------------------------------------------------------- convolution ----
#
# One convolution, three ways to compute it (tests/test_kernels.py holds each
# against the NumPy reference and a loop oracle):
#
# - "numpy": reference.conv_forward, the book's im2col of the whole batch
#   and one matrix product per group (§7.4.3). The only way without the core.
# - "chunked": _core.conv_forward, the same products a few images at a time
#   in each thread, so that each chunk's im2col rows stay in cache.
# - "winograd": _core.winograd_conv_forward, Winograd's minimal filtering
#   (Lavin & Gray 2016) for stride 1 and 3x3 or 5x5 kernels: 9 outputs with
#   25 (3x3) or 49 (5x5) multiplications instead of 81 or 225, for the
#   price of transforming tiles of input and output. A NaN or an inf in x
#   reaches every output of its tiles, not only the windows that hold it.

CONV_PATHS = {"numpy": (reference.conv_forward, reference.conv_backward)}
if USING_CORE:
    CONV_PATHS["chunked"] = (_core.conv_forward, _core.conv_backward)
    CONV_PATHS["winograd"] = (_core.winograd_conv_forward, _core.winograd_conv_backward)

# Winograd's products have C/groups and OC/groups for two of their sizes:
# with fewer channels than this (LeNet-5's C1 and C3, the first layer of an
# RGB network), transforming the tiles costs more than it saves.
WINOGRAD_MIN_CHANNELS = 16


def conv_path(x, W, stride=1, pad=0, groups=1):
    """The name of the computation :func:`conv_forward` and
    :func:`conv_backward` use for these arguments (a key of CONV_PATHS)."""
    if not USING_CORE:
        return "numpy"
    if winograd_fits(W, stride, pad, groups) and winograd_pays(x, W, pad):
        return "winograd"
    return "chunked"


def winograd_fits(W, stride=1, pad=0, groups=1, min_channels=None):
    """Whether the Winograd convolution applies (stride 1, a square kernel
    of a size it knows, the same pad on both axes) and has at least
    ``min_channels`` (default WINOGRAD_MIN_CHANNELS) channels per group in
    and out."""
    min_channels = WINOGRAD_MIN_CHANNELS if min_channels is None else min_channels
    try:
        (sh, sw), (ph, pw) = window_args(1, stride, pad)[1:]
        oc, cg, kh, kw = W.shape
        groups = int(groups)
    except (TypeError, ValueError, AttributeError):
        return False            # bad arguments: the chunked path says what is wrong
    return ("winograd" in CONV_PATHS and (sh, sw) == (1, 1) and ph == pw and kh == kw
            and kh in _core.WINOGRAD and groups >= 1 and cg >= min_channels
            and oc // groups >= min_channels)


def winograd_pays(x, W, pad=0):
    """Whether Winograd's blocks save at least half the multiplications on
    maps of x's size: its m x m blocks cover the output whole, at a*a
    products each, so maps barely larger than the kernel (LeNet-5's C5: one
    output each) waste most of a block."""
    try:
        r = W.shape[2]
        m = _core.WINOGRAD[r][0]
        ph = window_args(1, 1, pad)[2][0]
        oh, ow = (size + 2 * ph - r + 1 for size in x.shape[2:])
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return False
    blocks = -(-oh // m) * -(-ow // m)
    return oh > 0 and ow > 0 and 2 * (m + r - 1) ** 2 * blocks <= r * r * oh * ow


def conv_forward(x, W, b, stride=1, pad=0, groups=1, work=None):
    """Convolution: ``y = im2col(x) @ W.reshape(OC, -1).T + b``, per group,
    computed the way :func:`conv_path` picks.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, b ``(OC,)`` ->
    y ``(N, OC, OH, OW)``. With ``groups`` > 1, output maps of group g see
    only input channels of group g (Krizhevsky et al. 2012's two towers).
    ``work``: a dict kept from call to call (one per layer), where the
    computation keeps its scratch arrays.
    """
    forward, _ = CONV_PATHS[conv_path(x, W, stride, pad, groups)]
    with _blas_on_one_thread():
        return forward(x, W, b, stride, pad, groups, work)


def conv_backward(x, W, dout, stride=1, pad=0, groups=1, input_grad=True, work=None,
                  bias_grad=False):
    """Gradients of :func:`conv_forward`: ``(dx, dW)``, dx None unless
    ``input_grad``; with ``bias_grad``, ``(dx, dW, db)``, db being dout
    summed over N, OH, OW.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, dout
    ``(N, OC, OH, OW)`` -> dx like x, dW like W, db ``(OC,)``.
    """
    _, backward = CONV_PATHS[conv_path(x, W, stride, pad, groups)]
    with _blas_on_one_thread():
        return backward(x, W, dout, stride, pad, groups, input_grad, work, bias_grad)


def blas_in_use():
    """The BLAS library the compiled convolution calls (None on the NumPy path,
    whose products all go through NumPy)."""
    return _core.blas_in_use() if USING_CORE else None


def backend():
    """``"compiled"`` or ``"numpy"``: which kernels are in use."""
    return "compiled" if USING_CORE else "numpy"


def get_num_threads():
    """Threads the kernels use (always 1 on the NumPy path)."""
    return _core.get_num_threads() if USING_CORE else 1


# More threads than this would only make libgomp abort the interpreter.
MAX_THREADS = 256


def set_num_threads(n):
    """Set the kernels' thread count; results are identical for any count."""
    n = count(n, "number of threads", 1, MAX_THREADS)
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
    threads (LeNet-5 at its training batch of 16, for one). Unlike the
    compiled kernels, BLAS may round differently with a different thread
    count.
    """
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=count(n, "number of BLAS threads", 1, 1 << 16), user_api="blas")


_blas_libraries = None
_blas_lock = threading.Lock()
_blas_holders = 0      # calls inside _blas_on_one_thread now
_blas_saved = []       # the thread counts to restore when the last one leaves


@contextlib.contextmanager
def _blas_on_one_thread():
    """Keep each BLAS call on its caller's thread while the compiled
    convolution runs: its threads call BLAS at the same time, and a BLAS
    that split each call again would put more threads on the cores than
    there are cores, and all of them would wait on each other.

    With one thread of ours, BLAS stays on one thread as well: its result
    may depend on how many threads share a product, and ours must not.

    The convolution releases the GIL, so several Python threads may be
    inside at once: the first one in saves the counts, the last one out
    restores them."""
    global _blas_libraries, _blas_holders, _blas_saved
    if not USING_CORE:
        yield
        return
    with _blas_lock:
        if _blas_libraries is None:
            _blas_libraries = _blas_libraries_core_calls()
        if _blas_holders == 0:
            _blas_saved = [(lib, lib.num_threads) for lib in _blas_libraries]
            for lib, n in _blas_saved:
                if n is not None:
                    lib.set_num_threads(1)
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                for lib, n in _blas_saved:
                    if n is not None:
                        lib.set_num_threads(n)


def _package_owns(package, lib):
    """Whether threadpoolctl's library controller ``lib`` was loaded from the
    installed ``package`` (a module) or the folder of libraries its wheel
    brings beside it (``numpy.libs``, ``scipy.libs``)."""
    from pathlib import Path
    folder = Path(package.__file__).resolve().parent
    owned = (folder, folder.parent / f"{folder.name}.libs")
    return any(Path(lib.filepath).resolve().is_relative_to(d) for d in owned)


def _blas_controllers():
    from threadpoolctl import ThreadpoolController
    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


# NumPy's wheels bring OpenBLAS built with 64-bit integers, its Fortran
# symbols renamed with a "_64_" suffix: the suffix is what guarantees that
# signature, so only these names are ever called.
NUMPY_GEMM_SYMBOLS = [("scipy_sgemm_64_", "scipy_dgemm_64_"), ("sgemm_64_", "dgemm_64_")]


def _numpy_blas64():
    """NumPy's BLAS as ``(controller, sgemm address, dgemm address)``, or
    None when NumPy has no BLAS of its own with 64-bit integer gemm."""
    import ctypes

    import numpy
    for lib in _blas_controllers():
        if not _package_owns(numpy, lib):
            continue
        try:
            dll = ctypes.CDLL(lib.filepath)     # already loaded: the same handle
        except OSError:     # not loadable by path (moved, or a static build): SciPy's then
            continue
        for sgemm_name, dgemm_name in NUMPY_GEMM_SYMBOLS:
            if hasattr(dll, sgemm_name) and hasattr(dll, dgemm_name):
                address = lambda name: ctypes.cast(getattr(dll, name), ctypes.c_void_p).value
                return lib, address(sgemm_name), address(dgemm_name)
    return None


_core_blas = None       # threadpoolctl's controller of the BLAS the core calls, if known


def _choose_core_blas():
    global _core_blas
    found = None if FORCED_SCIPY_BLAS else _numpy_blas64()
    if found is not None:
        _core_blas, sgemm_address, dgemm_address = found
        _core._use_blas64(sgemm_address, dgemm_address,
                          f"NumPy's {_core_blas.internal_api} {_core_blas.version} "
                          f"({os.path.basename(_core_blas.filepath)})")


def _blas_libraries_core_calls():
    """The BLAS libraries the compiled convolution may call: NumPy's when the
    core calls it; else SciPy's own copy where it has one, else every BLAS
    library loaded.

    Pip's NumPy and SciPy each bring their own OpenBLAS. Where SciPy's
    library cannot be told apart (a BLAS shared with NumPy, or one that
    threadpoolctl does not list), every library is limited while the
    convolution runs.
    """
    if _core_blas is not None:
        return [_core_blas]
    import scipy
    libraries = _blas_controllers()
    return [lib for lib in libraries if _package_owns(scipy, lib)] or libraries


if USING_CORE:
    _choose_core_blas()
