"""Local response normalisation (Krizhevsky et al. 2012 §3.3) in both
implementations, the compiled core and the NumPy reference, against a plain
loop oracle written from the paper's formula, in float64.

The window of every map is summed on its own: a NaN or a huge value in one
map must reach only the maps whose window holds it, and float32 results must
be as exact as float32 allows (relative error <= 1e-6 against float64).
"""
import numpy as np
import pytest

from zeronet import gradcheck, reference
from zeronet import layers as L

CORE_MISSING = ("zeronet._core does not import (not built, or a broken build): run "
                "`python setup.py build_ext --inplace` in the zeronet source folder")
PAPER = dict(n=5, k=2.0, alpha=1e-4, beta=0.75)

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                 ids=lambda d: np.dtype(d).name)
# Each result is a handful of roundings from the float64 value.
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}


def load_core():
    return pytest.importorskip("zeronet._core", reason=CORE_MISSING, exc_type=ImportError)


@pytest.fixture(params=["compiled", "numpy"])
def impl(request):
    return load_core() if request.param == "compiled" else reference


# -------------------------------------------------------------- oracle ----

def window(c, n, channels):
    """The maps in map c's window: c - n//2 .. c + n//2, those that exist."""
    return range(max(0, c - n // 2), min(channels, c + n // 2 + 1))


def naive_scale(x, n, k, alpha, i, c, h, w):
    return k + alpha * sum(float(x[i, j, h, w]) ** 2 for j in window(c, n, x.shape[1]))


def naive_forward(x, n, k, alpha, beta):
    """y[i, c, h, w] = x / (k + alpha * sum of x^2 over c's window) ** beta, in float64."""
    y = np.zeros(x.shape)
    for i, c, h, w in np.ndindex(*x.shape):
        y[i, c, h, w] = float(x[i, c, h, w]) / naive_scale(x, n, k, alpha, i, c, h, w) ** beta
    return y


def naive_backward(x, dout, n, k, alpha, beta):
    """dx by the chain rule, term by term: y_j depends on x_c when c is in j's
    window, with dy_j/dx_c = [j == c] s_j^-beta - 2 alpha beta x_j x_c s_j^(-beta-1)."""
    dx = np.zeros(x.shape)
    for i, c, h, w in np.ndindex(*x.shape):
        total = 0.0
        for j in window(c, n, x.shape[1]):      # c in j's window <=> j in c's window
            s = naive_scale(x, n, k, alpha, i, j, h, w)
            dy = -2 * alpha * beta * float(x[i, j, h, w]) * float(x[i, c, h, w]) * s ** (-beta - 1)
            if j == c:
                dy += s ** -beta
            total += float(dout[i, j, h, w]) * dy
        dx[i, c, h, w] = total
    return dx


def relative_error(actual, expected):
    """Largest |actual - expected| / |expected|, element by element."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(a - e) / np.maximum(np.abs(e), 1e-300))) if a.size else 0.0


def assert_close(actual, expected, dtype, what, rtol=None):
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    rtol = RTOL[np.dtype(dtype)] if rtol is None else rtol
    err = relative_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3g} exceeds {rtol:g}"


def assert_close_to_scale(actual, expected, dtype, what):
    """For gradients, whose terms cancel: error relative to the largest term."""
    err = gradcheck.relative_error(actual, expected)
    rtol = RTOL[np.dtype(dtype)]
    assert err <= rtol, f"{what}: error {err:.3g} relative to its scale exceeds {rtol:g}"


# (x_shape, n): odd and even C, C smaller than the window, N = 1, a 1x1 map.
CASES = [
    pytest.param((2, 7, 3, 4), 5, id="C7-n5"),
    pytest.param((2, 6, 2, 3), 5, id="C6-n5"),
    pytest.param((1, 3, 4, 3), 5, id="C3-smaller-than-n-N1"),
    pytest.param((2, 1, 3, 3), 5, id="C1"),
    pytest.param((3, 8, 1, 1), 3, id="C8-n3-1x1"),
    pytest.param((1, 5, 2, 2), 1, id="n1"),
    pytest.param((2, 4, 3, 2), 9, id="window-wider-than-2C"),
]
PARAMS = [dict(k=2.0, alpha=1e-4, beta=0.75), dict(k=1.0, alpha=0.3, beta=0.6)]


@dtypes
@pytest.mark.parametrize("params", PARAMS, ids=["paper", "other-beta"])
@pytest.mark.parametrize("x_shape, n", CASES)
def test_lrn_matches_naive(impl, dtype, params, x_shape, n):
    rng = np.random.default_rng(1)
    # Large values, so that alpha * sum is not lost next to k.
    x = (30 * rng.standard_normal(x_shape)).astype(dtype)
    dout = rng.standard_normal(x_shape).astype(dtype)
    x_before, dout_before = x.copy(), dout.copy()
    y = impl.lrn_forward(x, n, **params)
    assert_close(y, naive_forward(x, n, **params), dtype, "lrn_forward")
    dx = impl.lrn_backward(x, dout, n, **params)
    assert_close_to_scale(dx, naive_backward(x, dout, n, **params), dtype, "lrn_backward")
    assert dx.dtype == np.dtype(dtype)
    assert np.array_equal(x, x_before) and np.array_equal(dout, dout_before), "inputs modified"
    assert y.flags.c_contiguous and dx.flags.c_contiguous


@dtypes
def test_core_matches_reference_on_alexnet_like_maps(dtype):
    # Many positions and channels, so that every block of positions runs.
    core = load_core()
    rng = np.random.default_rng(2)
    x = np.maximum(40 * rng.standard_normal((3, 24, 9, 13)), 0).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert_close(core.lrn_forward(x, **PAPER), reference.lrn_forward(x, **PAPER), dtype,
                 "core against reference, forward")
    assert_close_to_scale(core.lrn_backward(x, dout, **PAPER),
                          reference.lrn_backward(x, dout, **PAPER), dtype,
                          "core against reference, backward")


@dtypes
def test_non_contiguous_input(impl, dtype):
    rng = np.random.default_rng(3)
    base = (30 * rng.standard_normal((4, 3, 6, 10))).astype(dtype)
    x = base.transpose(1, 0, 3, 2)[:, ::2]          # (3, 2, 10, 6), strided
    dout = rng.standard_normal((2, 3, 10, 6)).astype(dtype).transpose(1, 0, 2, 3)
    assert not x.flags.c_contiguous and not dout.flags.c_contiguous
    assert_close(impl.lrn_forward(x, **PAPER), naive_forward(x, **PAPER), dtype, "forward")
    assert_close_to_scale(impl.lrn_backward(x, dout, **PAPER),
                          naive_backward(x, dout, **PAPER), dtype, "backward")


def cumsum_lrn(x, n, k, alpha, beta):
    """The layer's former forward pass (window sums as differences of a
    running sum): kept here to show that the regression cases below catch it."""
    half, t = n // 2, x.dtype.type
    csum = np.cumsum(np.pad(x * x, [(0, 0), (half + 1, half), (0, 0), (0, 0)]), axis=1)
    return x * (t(k) + t(alpha) * (csum[:, n:] - csum[:, :-n])) ** t(-beta)


def test_float32_exact_to_rounding_on_256_channels(impl):
    # A running sum over 256 channels (the cumsum the layer used) was off by
    # up to 4e-4; each window summed on its own is exact to float32 rounding.
    rng = np.random.default_rng(4)
    x = np.maximum(1000 * rng.standard_normal((2, 256, 3, 3)), 0).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    exact = reference.lrn_forward(x.astype(np.float64), **PAPER)
    assert relative_error(cumsum_lrn(x, **PAPER), exact) > 1e-5     # the old failure
    err = relative_error(impl.lrn_forward(x, **PAPER), exact)
    assert err <= 1e-6, f"float32 forward off by {err:.3g} relative to float64"
    exact_dx = reference.lrn_backward(x.astype(np.float64), dout.astype(np.float64), **PAPER)
    err = gradcheck.relative_error(impl.lrn_backward(x, dout, **PAPER), exact_dx)
    assert err <= 1e-6, f"float32 backward off by {err:.3g} relative to float64"


def test_huge_channel_reaches_only_its_window(impl):
    # One huge map first, ones after it: a running sum loses the ones next
    # to 9e8 in float32 and gave 1.0 for every later map, instead of
    # 1 / (1 + 3) ** 0.75 = 0.354.
    x = np.ones((1, 8, 1, 1), np.float32)
    x[0, 0] = 3e4
    params = dict(n=3, k=1.0, alpha=1.0, beta=0.75)
    expected = np.float32(4 ** -0.75)
    assert cumsum_lrn(x, **params)[0, 7, 0, 0] == 1.0        # the old failure
    y = impl.lrn_forward(x, **params)
    assert np.allclose(y[0, 2:7, 0, 0], expected, rtol=1e-6), y.ravel()
    assert_close(y, naive_forward(x, **params), np.float32, "forward next to a huge map")


@dtypes
@pytest.mark.parametrize("what", ["x", "dout"])
def test_nan_reaches_only_the_maps_whose_window_holds_it(impl, dtype, what):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 12, 3, 4)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    clean_y, clean_dx = impl.lrn_forward(x, **PAPER), impl.lrn_backward(x, dout, **PAPER)
    poisoned = x.copy() if what == "x" else dout.copy()
    poisoned[1, 4, 2, 1] = np.nan
    args = (poisoned, dout) if what == "x" else (x, poisoned)
    dx = impl.lrn_backward(*args, **PAPER)
    # A NaN in x reaches, through s, the maps 2..6 around map 4; in the
    # gradient it reaches them once more (through their terms), so 0..8.
    outputs = [("dx", dx, clean_dx, range(0, 9) if what == "x" else range(2, 7))]
    if what == "x":
        outputs.append(("y", impl.lrn_forward(poisoned, **PAPER), clean_y, range(2, 7)))
    for name, got, clean, hit in outputs:
        nan_maps = sorted({int(c) for c in np.argwhere(np.isnan(got))[:, 1]})
        assert nan_maps == list(hit), f"NaN in {what} spread to maps {nan_maps} of {name}"
        untouched = np.ones(got.shape, bool)
        untouched[1, list(hit), 2, 1] = False
        assert np.array_equal(got[untouched], clean[untouched]), (
            f"{name} changed outside the window of the NaN in {what}")


@pytest.mark.parametrize("threads", [2, 3])
def test_results_do_not_depend_on_thread_count(threads):
    core = load_core()
    before, min_work = core.get_num_threads(), core.get_min_parallel_work()
    if not core.HAS_OPENMP:
        pytest.skip("zeronet._core was built without OpenMP: it always runs on one thread")
    rng = np.random.default_rng(6)
    # Several images and, with 300 channels, several blocks of positions per image.
    x = np.maximum(30 * rng.standard_normal((3, 300, 17, 19)), 0).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    try:
        core.set_min_parallel_work(0)
        core.set_num_threads(1)
        serial = core.lrn_forward(x, **PAPER), core.lrn_backward(x, dout, **PAPER)
        core.set_num_threads(threads)
        for _ in range(5):
            parallel = core.lrn_forward(x, **PAPER), core.lrn_backward(x, dout, **PAPER)
            for name, a, b in zip(["forward", "backward"], parallel, serial):
                assert a.tobytes() == b.tobytes(), f"{name} differs with {threads} threads"
    finally:
        core.set_num_threads(before)
        core.set_min_parallel_work(min_work)


@pytest.mark.parametrize("n, channels", [(5, 7), (3, 4), (5, 2), (5, 12)])
def test_layer_gradients_float64(n, channels):
    rng = np.random.default_rng(7)
    # A large alpha, so that the cross-channel term of the gradient matters.
    layer = L.LRN(n=n, k=2.0, alpha=0.5, beta=0.75)
    errors = gradcheck.check_layer(layer, rng.standard_normal((2, channels, 3, 3)), rng=rng)
    assert errors["x"] < 1e-7, f"LRN gradient off by relative error {errors['x']:.3g}"


def test_empty_batch(impl):
    x = np.zeros((0, 4, 3, 3), np.float32)
    assert impl.lrn_forward(x, **PAPER).shape == x.shape
    assert impl.lrn_backward(x, x, **PAPER).shape == x.shape


X = np.ones((1, 3, 2, 2), np.float32)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.lrn_forward(X, 4, 2.0, 1e-4, 0.75), ValueError, "positive odd"),
    (lambda m: m.lrn_forward(X, True, 2.0, 1e-4, 0.75), ValueError, "positive odd"),
    (lambda m: m.lrn_forward(X[0], 5, 2.0, 1e-4, 0.75), ValueError, "4 dimensions"),
    (lambda m: m.lrn_forward(X.astype(int), 5, 2.0, 1e-4, 0.75), TypeError, "float32"),
    (lambda m: m.lrn_forward(X.tolist(), 5, 2.0, 1e-4, 0.75), TypeError, "ndarray"),
    (lambda m: m.lrn_forward(np.ones((1, 0, 2, 2), np.float32), 5, 2.0, 1e-4, 0.75),
     ValueError, "C, H, W >= 1"),
    (lambda m: m.lrn_backward(X, X[:, :2], 5, 2.0, 1e-4, 0.75), ValueError, "x's shape"),
    (lambda m: m.lrn_backward(X, X.astype(np.float64), 5, 2.0, 1e-4, 0.75), TypeError,
     "float32 like x"),
])
def test_bad_input_raises(impl, call, error, match):
    with pytest.raises(error, match=match):
        call(impl)
