"""The kernels (im2col, col2im, max pooling forward and backward, and the
convolution built on im2col), in both implementations: the compiled core
``zeronet._core`` and the NumPy ``zeronet.reference``.

Both are checked against ``tests/naive.py``, a plain-loop oracle written from
the contract alone, so the core and the reference cannot pass by sharing a
mistake. Copies (im2col, pooling output and argmax) must match the oracle
exactly; sums (col2im, pooling backward) within a tolerance per dtype, because
they add the same numbers in a different order.

Compiled-core cases are skipped, with the reason shown, when ``_core`` is not
built; ``tests/test_build.py`` makes that a failure on CI.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import naive
import zeronet
from zeronet import reference

CORE_MISSING = ("zeronet._core does not import (not built, or a broken build): run "
                "`python setup.py build_ext --inplace` in the zeronet source folder")

DTYPES = [np.float32, np.float64]

# Sums taken in a different order differ by a few ulps of the largest term.
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12)}

# (x_shape, kernel_size, stride, pad). Non-square kernels come first because
# an index bug that swaps KH and KW is invisible with square ones.
CONV_CASES = [
    pytest.param((2, 2, 6, 7), (2, 3), 1, 0, id="kernel2x3"),
    pytest.param((1, 3, 7, 9), (3, 2), (2, 3), 0, id="kernel3x2-stride2x3"),
    pytest.param((2, 2, 5, 6), 3, 1, (1, 2), id="pad1x2"),
    pytest.param((2, 3, 9, 8), (3, 2), (2, 1), (2, 1), id="all-per-axis"),
    pytest.param((3, 1, 7, 5), 3, 2, 1, id="odd-sizes-stride2"),
    pytest.param((2, 3, 5, 5), 3, 1, 1, id="3x3-same"),
    pytest.param((1, 2, 4, 4), 2, 2, 0, id="batch1"),
    pytest.param((2, 1, 6, 5), 2, 1, (0, 1), id="C1"),
    pytest.param((2, 3, 4, 5), (6, 5), 1, (1, 0), id="kernel-is-padded-input"),
    pytest.param((2, 4, 3, 3), 1, 1, 0, id="1x1"),
    pytest.param((1, 2, 8, 9), 2, (3, 4), 0, id="stride-wider-than-kernel"),
    # Windows that lie wholly in the padding (and see the wide-pad test below).
    pytest.param((2, 2, 3, 4), (1, 2), (2, 3), (2, 3), id="pad-wider-than-kernel"),
]

# (x_shape, kernel_size, stride, pad, ceil_mode)
POOL_CASES = [
    pytest.param((2, 3, 6, 8), 2, 2, 0, False, id="2x2s2"),
    pytest.param((2, 2, 7, 9), 3, 2, 0, False, id="3x3s2-overlap"),
    pytest.param((2, 2, 8, 10), 3, 2, 0, True, id="3x3s2-overlap-ceil"),
    pytest.param((1, 3, 5, 6), 3, 1, 1, False, id="3x3s1-pad1"),
    pytest.param((2, 2, 7, 6), (3, 2), (2, 1), (1, 0), False, id="all-per-axis"),
    pytest.param((2, 2, 7, 8), 3, (2, 3), 1, True, id="ceil-pad"),
    pytest.param((1, 1, 9, 7), (2, 3), (3, 2), 0, True, id="kernel2x3-ceil"),
    # The ceil-mode window that would start in the right padding is dropped.
    pytest.param((1, 2, 5, 5), 2, 2, 1, True, id="ceil-drops-window-in-pad"),
    pytest.param((1, 1, 5, 5), 2, 2, 0, True, id="batch1-C1-odd-ceil"),
    pytest.param((2, 3, 4, 5), (4, 5), 1, 0, False, id="global"),
    pytest.param((2, 1, 3, 4), (5, 4), 1, (1, 0), False, id="kernel-is-padded-input"),
    pytest.param((2, 2, 5, 4), 1, 2, 0, False, id="1x1s2"),
]

conv_cases = pytest.mark.parametrize("x_shape, kernel, stride, pad", CONV_CASES)
pool_cases = pytest.mark.parametrize("x_shape, kernel, stride, pad, ceil_mode", POOL_CASES)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


def load_core():
    return pytest.importorskip("zeronet._core", reason=CORE_MISSING, exc_type=ImportError)


@pytest.fixture(params=["compiled", "numpy"])
def impl(request):
    """Each implementation of the kernel contract in turn."""
    return load_core() if request.param == "compiled" else reference


@pytest.fixture
def core():
    return load_core()


# ------------------------------------------------------------- helpers ----

def how_far(actual, expected, bad=None):
    """One line saying how far ``actual`` is from ``expected``: the largest
    absolute difference, where it is, and how many elements are wrong."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.size == 0:
        return "both empty"
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - e))
    # NaN on one side only (or inf against a number) is as far off as it gets.
    diff[np.isnan(diff)] = np.inf
    at = np.unravel_index(np.argmax(diff), diff.shape)
    bad = ~same if bad is None else bad
    return (f"max |diff| = {diff[at]:.3g} at index {tuple(int(i) for i in at)} "
            f"(got {a[at]:.9g}, expected {e[at]:.9g}); "
            f"{np.count_nonzero(bad)} of {a.size} elements are off")


def check_layout(actual, expected, what):
    assert isinstance(actual, np.ndarray), f"{what}: got a {type(actual).__name__}"
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}")
    assert actual.dtype == expected.dtype, (
        f"{what}: dtype {actual.dtype}, expected {expected.dtype}")


def assert_same(actual, expected, what):
    """Exact equality (NaN equals NaN): for kernels that only copy values."""
    check_layout(actual, expected, what)
    if not np.array_equal(actual, expected, equal_nan=True):
        pytest.fail(f"{what} differs: {how_far(actual, expected)}")


def assert_close(actual, expected, what):
    """Equality up to the dtype's tolerance: for kernels that sum values."""
    check_layout(actual, expected, what)
    tol = TOL[expected.dtype]
    ok = np.isclose(actual, expected, equal_nan=True, **tol)
    if not ok.all():
        pytest.fail(f"{what} differs beyond rtol={tol['rtol']}, atol={tol['atol']}: "
                    f"{how_far(actual, expected, ~ok)}")


def assert_bit_identical(actual, expected, what):
    """Same bytes, so even -0.0 against 0.0 or two NaN payloads count."""
    check_layout(actual, expected, what)
    if actual.tobytes() != expected.tobytes():
        if np.array_equal(actual, expected, equal_nan=True):
            pytest.fail(f"{what} is equal in value but not in bytes "
                        "(a signed zero or a NaN payload differs)")
        pytest.fail(f"{what} is not bit-identical: {how_far(actual, expected)}")


def pair(v):
    return (v, v) if isinstance(v, int) else v


def conv_out_shape(x_shape, kernel, stride, pad):
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(pad)
    _, _, h, w = x_shape
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def make_input(shape, dtype, rng, values="normal"):
    """``normal`` values (ties practically impossible) or ``ties``: integers in
    0..2, so most pooling windows hold several equal maxima."""
    if values == "ties":
        return rng.integers(0, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def dot64(a, b):
    """Sum of the elementwise product, in float64, and the sum of its
    magnitudes (the scale a rounding error should be measured against)."""
    prod = a.astype(np.float64) * b.astype(np.float64)
    return prod.sum(), np.abs(prod).sum()


# ------------------------------------------------- against the oracle ----

@dtypes
@conv_cases
def test_im2col_matches_naive(impl, dtype, x_shape, kernel, stride, pad):
    x = make_input(x_shape, dtype, np.random.default_rng(1))
    x_before = x.copy()
    col = impl.im2col(x, kernel, stride, pad)
    assert_same(col, naive.im2col(x, kernel, stride, pad), "im2col")
    assert_same(x, x_before, "x after im2col (must not be modified)")


@dtypes
@conv_cases
def test_col2im_matches_naive(impl, dtype, x_shape, kernel, stride, pad):
    (kh, kw), (oh, ow) = pair(kernel), conv_out_shape(x_shape, kernel, stride, pad)
    n, c = x_shape[:2]
    col = make_input((n * oh * ow, c * kh * kw), dtype, np.random.default_rng(2))
    col_before = col.copy()
    dx = impl.col2im(col, x_shape, kernel, stride, pad)
    assert_close(dx, naive.col2im(col, x_shape, kernel, stride, pad), "col2im")
    assert_same(col, col_before, "col after col2im (must not be modified)")


@dtypes
@conv_cases
def test_out_buffers_are_filled_completely(impl, dtype, x_shape, kernel, stride, pad):
    # A reused buffer holds the previous call's values (here NaN): every
    # element must be overwritten, padding zeros included.
    rng = np.random.default_rng(4)
    x = make_input(x_shape, dtype, rng)
    col_buffer = np.full(impl.im2col(x, kernel, stride, pad).shape, np.nan, dtype=dtype)
    col = impl.im2col(x, kernel, stride, pad, out=col_buffer)
    assert col is col_buffer
    assert_same(col, naive.im2col(x, kernel, stride, pad), "im2col into out")
    dx_buffer = np.full(x_shape, np.nan, dtype=dtype)
    dx = impl.col2im(col, x_shape, kernel, stride, pad, out=dx_buffer)
    assert dx is dx_buffer
    assert_close(dx, naive.col2im(col, x_shape, kernel, stride, pad), "col2im into out")


@dtypes
@conv_cases
def test_col2im_is_adjoint_of_im2col(impl, dtype, x_shape, kernel, stride, pad):
    # <im2col(x), c> == <x, col2im(c)>: the identity that makes col2im the
    # correct backward pass of im2col, whatever the layout.
    rng = np.random.default_rng(3)
    x = make_input(x_shape, dtype, rng)
    col_x = impl.im2col(x, kernel, stride, pad)
    c = make_input(col_x.shape, dtype, rng)
    lhs, scale = dot64(col_x, c)
    rhs, _ = dot64(x, impl.col2im(c, x_shape, kernel, stride, pad))
    tol = TOL[np.dtype(dtype)]
    assert abs(lhs - rhs) <= tol["rtol"] * scale + tol["atol"], (
        f"<im2col(x), c> = {lhs:.12g} but <x, col2im(c)> = {rhs:.12g}: "
        f"off by {abs(lhs - rhs):.3g} against a scale of {scale:.3g}")


@dtypes
@pool_cases
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_maxpool_forward_matches_naive(impl, dtype, values, x_shape, kernel, stride, pad,
                                       ceil_mode):
    x = make_input(x_shape, dtype, np.random.default_rng(4), values)
    x_before = x.copy()
    out, argmax = impl.maxpool_forward(x, kernel, stride, pad, ceil_mode=ceil_mode)
    want_out, want_argmax = naive.maxpool_forward(x, kernel, stride, pad, ceil_mode)
    assert_same(out, want_out, "maxpool_forward out")
    assert_same(argmax, want_argmax, "maxpool_forward argmax")
    assert_same(x, x_before, "x after maxpool_forward (must not be modified)")


@dtypes
@pool_cases
def test_maxpool_backward_matches_naive(impl, dtype, x_shape, kernel, stride, pad, ceil_mode):
    # Any argmax in range is valid input, and random ones point into the
    # padding and at shared elements far more often than real winners do.
    rng = np.random.default_rng(5)
    kh, kw = pair(kernel)
    oh = naive.pool_out(x_shape[2], kh, pair(stride)[0], pair(pad)[0], ceil_mode)
    ow = naive.pool_out(x_shape[3], kw, pair(stride)[1], pair(pad)[1], ceil_mode)
    out_shape = x_shape[:2] + (oh, ow)
    dout = make_input(out_shape, dtype, rng)
    argmax = rng.integers(0, kh * kw, size=out_shape).astype(np.int32)
    dout_before, argmax_before = dout.copy(), argmax.copy()
    dx = impl.maxpool_backward(dout, argmax, x_shape, kernel, stride, pad)
    assert_close(dx, naive.maxpool_backward(dout, argmax, x_shape, kernel, stride, pad),
                 "maxpool_backward")
    assert_same(dout, dout_before, "dout after maxpool_backward (must not be modified)")
    assert_same(argmax, argmax_before, "argmax after maxpool_backward (must not be modified)")


@dtypes
@pool_cases
def test_maxpool_backward_is_adjoint_of_forward(impl, dtype, x_shape, kernel, stride, pad,
                                                ceil_mode):
    # With finite x every winner is a real element, so out = gather(x) and
    # backward is its transpose: <out, dout> == <x, dx>.
    rng = np.random.default_rng(6)
    x = make_input(x_shape, dtype, rng)
    out, argmax = impl.maxpool_forward(x, kernel, stride, pad, ceil_mode=ceil_mode)
    dout = make_input(out.shape, dtype, rng)
    lhs, scale = dot64(out, dout)
    rhs, _ = dot64(x, impl.maxpool_backward(dout, argmax, x_shape, kernel, stride, pad))
    tol = TOL[np.dtype(dtype)]
    assert abs(lhs - rhs) <= tol["rtol"] * scale + tol["atol"], (
        f"<out, dout> = {lhs:.12g} but <x, dx> = {rhs:.12g}: "
        f"off by {abs(lhs - rhs):.3g} against a scale of {scale:.3g}")


WIDE_PAD_CHILD = """
import numpy as np
from zeronet import _core
x = np.ones((1, 1, 1, 1))
for _ in range(3):
    col = _core.im2col(x, 1, stride=(1, 1_000_000), pad=(0, 1_000_000))
    assert col.tolist() == [[0.0], [1.0], [0.0]], col
junk = [np.ones(n) for n in range(1, 3000)]  # malloc/free: trips on a damaged heap
print("ok")
"""


def test_im2col_window_far_inside_padding_stays_in_bounds(core):
    # A window lying wholly in a pad wider than the kernel once made the
    # compiled loop zero-fill past the end of its row, and past the end of
    # col: the values still came out right but the heap was damaged. A child
    # process turns the resulting crash into a failure with a message.
    root = os.path.dirname(os.path.dirname(zeronet.__file__))
    child = subprocess.run([sys.executable, "-c", WIDE_PAD_CHILD], cwd=root,
                           capture_output=True, text=True, timeout=120)
    if child.returncode != 0 or child.stdout.strip() != "ok":
        pytest.fail(f"im2col with pad 1e6 around a 1x1 kernel: exit code {child.returncode} "
                    f"(negative: killed by that signal), stderr:\n{child.stderr[-2000:]}")


# ------------------------------------------------------- output sizes ----

@pytest.mark.parametrize("size, kernel, stride, pad, ceil_mode, expected", [
    (24, 3, 2, 0, True, 12),
    (12, 3, 2, 0, True, 6),
    (24, 3, 2, 0, False, 11),
    (11, 3, 2, 0, False, 5),
    (8, 3, 2, 0, True, 4),      # last window hangs one past the edge
    (8, 3, 2, 0, False, 3),
    (4, 3, 2, 1, True, 3),      # last window starts on the last real element
    (5, 2, 2, 1, True, 3),      # a 4th window would start in the padding
    (6, 3, 3, 0, True, 2),      # exact fit: ceil and floor agree
])
def test_pool_output_size(impl, size, kernel, stride, pad, ceil_mode, expected):
    x = np.zeros((1, 1, size, size), dtype=np.float32)
    out, argmax = impl.maxpool_forward(x, kernel, stride, pad, ceil_mode=ceil_mode)
    assert out.shape == argmax.shape == (1, 1, expected, expected)


def test_pool_ceil_chain_24_12_6(impl):
    # The AlexNet-style stack of 3x3/2 pools: ceil mode halves exactly.
    x = np.zeros((2, 3, 24, 24), dtype=np.float32)
    out, _ = impl.maxpool_forward(x, 3, 2, ceil_mode=True)
    out, _ = impl.maxpool_forward(out, 3, 2, ceil_mode=True)
    assert out.shape == (2, 3, 6, 6)
    out, _ = impl.maxpool_forward(x, 3, 2)
    out, _ = impl.maxpool_forward(out, 3, 2)
    assert out.shape == (2, 3, 5, 5)


def test_pool_output_size_per_axis(impl):
    x = np.zeros((1, 2, 24, 10), dtype=np.float64)
    out, _ = impl.maxpool_forward(x, (3, 2), (2, 3), (1, 0), ceil_mode=True)
    assert out.shape == (1, 2, 13, 4)
    out, _ = impl.maxpool_forward(x, (3, 2), (2, 3), (1, 0))
    assert out.shape == (1, 2, 12, 3)


def test_im2col_output_shape(impl):
    x = np.zeros((2, 3, 7, 9), dtype=np.float32)
    col = impl.im2col(x, (3, 2), (2, 3), (1, 0))
    assert col.shape == (2 * 4 * 3, 3 * 3 * 2)


@dtypes
def test_dtype_kept_and_outputs_contiguous(impl, dtype):
    # No silent upcast, and every output can be fed straight back into the
    # kernels, which accept only C-contiguous arrays.
    rng = np.random.default_rng(7)
    x = make_input((2, 3, 6, 5), dtype, rng)
    col = impl.im2col(x, (3, 2), 1, 1)
    dx = impl.col2im(col, x.shape, (3, 2), 1, 1)
    out, argmax = impl.maxpool_forward(x, 3, 2, 1, ceil_mode=True)
    dxp = impl.maxpool_backward(out, argmax, x.shape, 3, 2, 1)
    for name, arr, want in [("im2col", col, dtype), ("col2im", dx, dtype),
                            ("maxpool_forward out", out, dtype),
                            ("maxpool_forward argmax", argmax, np.int32),
                            ("maxpool_backward", dxp, dtype)]:
        assert arr.dtype == np.dtype(want), f"{name}: dtype {arr.dtype}, expected {np.dtype(want)}"
        assert arr.flags.c_contiguous, f"{name}: output is not C-contiguous"


@dtypes
def test_read_only_inputs_accepted(impl, dtype):
    # Arrays from np.load(mmap_mode="r") or broadcasting are read-only; the
    # kernels only read their inputs, so they must take them.
    rng = np.random.default_rng(8)
    x = make_input((2, 2, 5, 6), dtype, rng)
    col = impl.im2col(x, 2, 1, 1)
    out, argmax = impl.maxpool_forward(x, 2, 2, 1)
    expected = [col, impl.col2im(col, x.shape, 2, 1, 1), out, argmax,
                impl.maxpool_backward(out, argmax, x.shape, 2, 2, 1)]
    for arr in (x, col, out, argmax):
        arr.setflags(write=False)
    got = [impl.im2col(x, 2, 1, 1), impl.col2im(col, x.shape, 2, 1, 1),
           *impl.maxpool_forward(x, 2, 2, 1),
           impl.maxpool_backward(out, argmax, x.shape, 2, 2, 1)]
    for name, g, e in zip(["im2col", "col2im", "out", "argmax", "maxpool_backward"],
                          got, expected):
        assert_same(g, e, f"{name} with read-only inputs")


# ------------------------------------------------------ ties and NaN ----

@dtypes
def test_ties_go_to_first_max(impl, dtype):
    x = np.array([[[[1, 3, 2, 2],
                    [3, 0, 2, 2],
                    [5, 5, 0, 1],
                    [4, 5, 1, 1]]]], dtype=dtype)
    out, argmax = impl.maxpool_forward(x, 2, 2)
    assert_same(out, np.array([[[[3, 2], [5, 1]]]], dtype=dtype), "out")
    assert_same(argmax, np.array([[[[1, 0], [0, 1]]]], dtype=np.int32), "argmax")


@dtypes
def test_all_equal_windows_pick_first_real_element(impl, dtype):
    # Padding is -inf, so it never ties with a real value: in a corner window
    # of a constant image the winner is the first element inside the image.
    x = np.full((1, 2, 5, 4), 7.0, dtype=dtype)
    out, argmax = impl.maxpool_forward(x, 3, 2, 1)
    want_out, want_argmax = naive.maxpool_forward(x, 3, 2, 1)
    assert_same(out, want_out, "out")
    assert_same(argmax, want_argmax, "argmax")
    assert np.all(out == 7.0)
    assert argmax[0, 0, 0, 0] == 1 * 3 + 1     # (ky, kx) = (1, 1): first real element
    assert argmax[0, 0, 1, 1] == 0             # interior window: its first element


@dtypes
def test_nan_wins_and_first_nan_is_kept(impl, dtype):
    nan, inf = np.nan, np.inf
    x = np.array([[[[1, nan, inf, 2, nan, nan],
                    [5, nan, nan, 3, nan, nan]]]], dtype=dtype)
    out, argmax = impl.maxpool_forward(x, 2, 2)
    # numpy.argmax is the rule: NaN beats everything, even +inf.
    assert_same(argmax, np.array([[[[1, 2, 0]]]], dtype=np.int32), "argmax")
    assert np.isnan(out).all(), f"out should be all NaN, got {out}"
    dx = impl.maxpool_backward(np.ones_like(out), argmax, x.shape, 2, 2)
    want = np.zeros_like(x)
    want[0, 0, 0, 1] = want[0, 0, 1, 2] = want[0, 0, 0, 4] = 1
    assert_same(dx, want, "gradient through the first NaN")


@dtypes
@pytest.mark.parametrize("pad", [0, 1])
def test_all_minus_inf_window(impl, dtype, pad):
    # Real values of -inf tie with the -inf padding: position 0 wins (as in
    # numpy.argmax), so when it is padding its gradient is dropped.
    x = np.full((1, 1, 4, 5), -np.inf, dtype=dtype)
    x[0, 0, 3, 4] = 2.0     # one finite window, so all-(-inf) ones sit beside it
    out, argmax = impl.maxpool_forward(x, 2, 2, pad, ceil_mode=True)
    want_out, want_argmax = naive.maxpool_forward(x, 2, 2, pad, True)
    assert_same(out, want_out, "out")
    assert_same(argmax, want_argmax, "argmax")
    assert np.isneginf(out).sum() == out.size - 1
    dout = make_input(out.shape, dtype, np.random.default_rng(9))
    assert_close(impl.maxpool_backward(dout, argmax, x.shape, 2, 2, pad),
                 naive.maxpool_backward(dout, argmax, x.shape, 2, 2, pad),
                 "maxpool_backward")


# --------------------------------------------------------- convolution ----

# A convolution sums up to C*KH*KW products per output: its float32 rounding
# is measured against the size of the values, not against 1e-6.
CONV_TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
            np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12)}


def assert_conv_close(actual, expected, what, winograd=False):
    """``winograd``: Winograd's rounding error follows the size of the
    outputs around (those of a tile), not each output's own: so the
    absolute tolerance is measured against the largest output."""
    check_layout(actual, expected.astype(actual.dtype), what)
    tol = dict(CONV_TOL[actual.dtype])
    if winograd and expected.size:
        tol["atol"] *= 2 * max(1.0, float(np.abs(expected).max()))
    ok = np.isclose(actual, expected, **tol)
    if not ok.all():
        pytest.fail(f"{what} differs beyond rtol={tol['rtol']}, atol={tol['atol']}: "
                    f"{how_far(actual, expected, ~ok)}")


@pytest.fixture(params=["one chunk", "one image per chunk"])
def chunking(request, monkeypatch):
    """The compiled convolution's chunks: as many images per chunk as fit
    (here: the whole small batch), or one image each, so that the batch is
    split into chunks and the weight gradient into partial sums."""
    if request.param == "one image per chunk":
        monkeypatch.setattr(load_core(), "CHUNK_BYTES", 1)
    return request.param


# Every case as one group, and as two where its channels split in two.
CONV_GROUP_CASES = [pytest.param(*case.values, 1, id=case.id) for case in CONV_CASES] + [
    pytest.param(*case.values, 2, id=f"{case.id}-groups2")
    for case in CONV_CASES if case.values[0][1] % 2 == 0]


@dtypes
@pytest.mark.parametrize("x_shape, kernel, stride, pad, groups", CONV_GROUP_CASES)
def test_conv_matches_naive(impl, chunking, dtype, x_shape, kernel, stride, pad, groups):
    rng = np.random.default_rng(20)
    x = make_input(x_shape, dtype, rng)
    kh, kw = pair(kernel)
    W = make_input((4, x_shape[1] // groups, kh, kw), dtype, rng)
    b = make_input((4,), dtype, rng)
    y = impl.conv_forward(x, W, b, stride, pad, groups)
    assert_conv_close(y, naive.conv_forward(x, W, b, stride, pad, groups), "conv_forward")
    dout = make_input(y.shape, dtype, rng)
    dx, dW = impl.conv_backward(x, W, dout, stride, pad, groups)
    dx_naive, dW_naive = naive.conv_backward(x, W, dout, stride, pad, groups)
    assert_conv_close(dx, dx_naive, "conv_backward dx")
    assert_conv_close(dW, dW_naive, "conv_backward dW")
    no_dx, dW_alone = impl.conv_backward(x, W, dout, stride, pad, groups, input_grad=False)
    assert no_dx is None
    assert_bit_identical(dW_alone, dW, "dW computed without dx")
    check_bias_gradient(impl.conv_backward, (x, W, dout, stride, pad, groups), dx, dW)


def check_bias_gradient(backward, args, dx, dW, winograd=False):
    """``backward(*args, bias_grad=True)`` adds db, right against the naive
    sum, and leaves dx and dW bit for bit as they were without it (with and
    without dx)."""
    x, dout = args[0], args[2]
    got_dx, got_dW, db = backward(*args, bias_grad=True)
    assert_bit_identical(got_dx, dx, "dx computed with db")
    assert_bit_identical(got_dW, dW, "dW computed with db")
    assert db.shape == (dout.shape[1],) and db.dtype == x.dtype
    assert_conv_close(db, naive.conv_bias_backward(dout), "conv_backward db", winograd)
    no_dx, got_dW, db_alone = backward(*args, input_grad=False, bias_grad=True)
    assert no_dx is None
    assert_bit_identical(got_dW, dW, "dW computed with db, without dx")
    assert_bit_identical(db_alone, db, "db computed without dx")


def test_conv_scratch_arrays_are_kept_and_reused(impl):
    # The same dict through calls of two shapes: each result stays right.
    rng = np.random.default_rng(21)
    work = {}
    for shape in [(3, 2, 6, 5), (5, 2, 7, 7), (3, 2, 6, 5)]:
        x = make_input(shape, np.float32, rng)
        W = make_input((3, 2, 3, 2), np.float32, rng)
        b = np.zeros(3, np.float32)
        y = impl.conv_forward(x, W, b, 1, 1, work=work)
        assert_bit_identical(y, impl.conv_forward(x, W, b, 1, 1), "conv_forward with work")
        dout = make_input(y.shape, np.float32, rng)
        with_work = impl.conv_backward(x, W, dout, 1, 1, work=work)
        without = impl.conv_backward(x, W, dout, 1, 1)
        for got, expected, name in zip(with_work, without, ["dx", "dW"]):
            assert_bit_identical(got, expected, f"conv_backward {name} with work")
    if impl is not reference:
        assert work and all(isinstance(a, np.ndarray) for a in work.values())
        kept = dict(work)
        impl.conv_forward(x, W, b, 1, 1, work=work)
        assert all(work[k] is kept[k] for k in kept), "scratch arrays were made again"


# Output positions an image: 5 x 8, where the chunked passes multiply image
# by image, and 3 x 3, where they multiply a chunk at once.
@pytest.mark.parametrize("stride, pad, per_image", [((2, 1), (2, 1), True),
                                                    ((3, 3), (1, 1), False)],
                         ids=["image-by-image", "chunk-at-once"])
def test_conv_ignores_what_the_scratch_arrays_held(impl, monkeypatch, stride, pad, per_image):
    # Several images per chunk and a short last chunk (7 images, 3 a chunk),
    # padding on both axes and a height stride: the results do not depend on
    # what an earlier call left in the scratch arrays, NaN included.
    rng = np.random.default_rng(22)
    x = make_input((7, 3, 8, 7), np.float64, rng)
    W = make_input((4, 3, 3, 2), np.float64, rng)
    b = make_input((4,), np.float64, rng)
    window = dict(stride=stride, pad=pad)
    oh, ow = conv_out_shape(x.shape, (3, 2), **window)
    if impl is not reference:
        monkeypatch.setattr(impl, "CHUNK_BYTES", 3 * oh * ow * 3 * 3 * 2 * x.itemsize)
        assert (oh * ow >= impl.PER_IMAGE_POSITIONS) == per_image
    dout = make_input((7, 4, oh, ow), np.float64, rng)
    work = {}
    y = impl.conv_forward(x, W, b, **window, work=work)
    dx, dW, db = impl.conv_backward(x, W, dout, **window, work=work, bias_grad=True)
    assert_conv_close(y, naive.conv_forward(x, W, b, **window), "conv_forward")
    for got, expected, name in zip((dx, dW, db), (*naive.conv_backward(x, W, dout, **window),
                                                  naive.conv_bias_backward(dout)),
                                   ["dx", "dW", "db"]):
        assert_conv_close(got, expected, f"conv_backward {name}")
    for scratch in work.values():
        scratch.fill(np.nan)
    assert_bit_identical(impl.conv_forward(x, W, b, **window, work=work), y,
                         "conv_forward after NaN in its scratch arrays")
    for got, expected, name in zip(impl.conv_backward(x, W, dout, **window, work=work,
                                                      bias_grad=True),
                                   (dx, dW, db), ["dx", "dW", "db"]):
        assert_bit_identical(got, expected, f"conv_backward {name} after NaN in its scratch")


@pytest.fixture
def scipy_blas(core):
    """The compiled convolution on SciPy's BLAS (the fallback when NumPy has
    none it can call), then back to the BLAS it had."""
    saved = zeronet.kernels._core_blas
    core._use_blas64(0, 0, "")
    yield core
    if saved is not None:
        zeronet.kernels._choose_core_blas()


@dtypes
def test_conv_on_scipy_blas_matches_naive(scipy_blas, dtype, monkeypatch):
    # The default run of test_conv_matches_naive covers the BLAS that
    # kernels.py chose (NumPy's under pip); this one the other.
    assert scipy_blas.blas_in_use() == "scipy.linalg.cython_blas"
    monkeypatch.setattr(scipy_blas, "CHUNK_BYTES", 1)
    rng = np.random.default_rng(22)
    for case in CONV_GROUP_CASES:
        x_shape, kernel, stride, pad, groups = case.values
        x = make_input(x_shape, dtype, rng)
        kh, kw = pair(kernel)
        W = make_input((4, x_shape[1] // groups, kh, kw), dtype, rng)
        b = make_input((4,), dtype, rng)
        y = scipy_blas.conv_forward(x, W, b, stride, pad, groups)
        assert_conv_close(y, naive.conv_forward(x, W, b, stride, pad, groups),
                          f"conv_forward {case.id}")
        dout = make_input(y.shape, dtype, rng)
        dx, dW = scipy_blas.conv_backward(x, W, dout, stride, pad, groups)
        dx_naive, dW_naive = naive.conv_backward(x, W, dout, stride, pad, groups)
        assert_conv_close(dx, dx_naive, f"conv_backward dx {case.id}")
        assert_conv_close(dW, dW_naive, f"conv_backward dW {case.id}")


def test_core_calls_numpys_blas_when_numpy_brings_one(core):
    # pip's NumPy brings OpenBLAS with 64-bit gemm: then the core calls it,
    # unless ZERONET_BLAS=scipy (or the core is not in use at all).
    found = zeronet.kernels._numpy_blas64()
    if found is None or zeronet.kernels.FORCED_SCIPY_BLAS or not zeronet.kernels.USING_CORE:
        assert core.blas_in_use() == "scipy.linalg.cython_blas"
    else:
        assert core.blas_in_use().startswith("NumPy's")
        limited = zeronet.kernels._blas_libraries_core_calls()
        assert [lib.filepath for lib in limited] == [found[0].filepath]


def test_numpy_blas_that_cannot_be_opened_is_passed_over(core, monkeypatch):
    # Then the core stays on SciPy's BLAS instead of failing at import.
    import ctypes

    def unloadable(path, *args, **kwargs):
        raise OSError(f"{path}: cannot open shared object file")
    monkeypatch.setattr(ctypes, "CDLL", unloadable)
    assert zeronet.kernels._numpy_blas64() is None


def test_use_blas64_needs_both_addresses(core):
    with pytest.raises(ValueError, match="both"):
        core._use_blas64(1, 0, "half")


# ---------------------------------------------------------------- ReLU ----

def naive_relu(x, dout):
    """y and dx one value at a time: y = 0 where x <= 0, else x (NaN stays);
    dx = 0 where x <= 0, else dout."""
    y, dx = np.empty_like(x), np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = 0 if x[i] <= 0 else x[i]
        dx[i] = 0 if x[i] <= 0 else dout[i]
    return y, dx


@dtypes
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (3, 1), (0, 4), ()])
def test_relu_matches_naive(impl, dtype, shape):
    rng = np.random.default_rng(40)
    x = make_input(shape, dtype, rng)
    if x.size >= 4:     # the edge cases: -0.0, NaN, +-inf
        x.flat[:4] = [-0.0, np.nan, np.inf, -np.inf]
    dout = make_input(shape, dtype, rng)
    y_naive, dx_naive = naive_relu(x, dout)
    y = impl.relu_forward(x)
    assert_bit_identical(y, y_naive, "relu_forward")
    assert_bit_identical(impl.relu_backward(y, dout), dx_naive, "relu_backward")


@dtypes
def test_relu_takes_non_contiguous_input(impl, dtype):
    rng = np.random.default_rng(41)
    x = make_input((4, 6, 5), dtype, rng).transpose(2, 0, 1)[:, ::2]
    dout = make_input((5, 2, 12), dtype, rng)[:, :, ::2]
    y_naive, dx_naive = naive_relu(x, dout)
    assert_bit_identical(impl.relu_forward(x), y_naive, "relu_forward")
    assert_bit_identical(impl.relu_backward(impl.relu_forward(x), dout), dx_naive, "relu_backward")


@pytest.mark.parametrize("call, error, match", [
    (lambda k: k.relu_forward(np.ones(3, np.int32)), TypeError, "float32 or float64"),
    (lambda k: k.relu_forward([1.0, -1.0]), TypeError, "numpy.ndarray"),
    (lambda k: k.relu_backward(np.ones(3), np.ones(4)), ValueError, "y's shape"),
    (lambda k: k.relu_backward(np.ones(3), np.ones(3, np.float32)), TypeError, "float64 like y"),
])
def test_relu_bad_input_raises(impl, call, error, match):
    with pytest.raises(error, match=match):
        call(impl)


# ------------------------------------------------------------ Winograd ----

@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("swapped", [False, True], ids=["F(m,r)", "F(r,m)"])
def test_winograd_matrices_compute_correlations(core, r, swapped):
    # In one dimension, AT ((G g) * (BT d)) is the correlation of d with g,
    # for F(m, r) (the convolution) and F(r, m) (its weight gradient).
    m, points = core.WINOGRAD[r]
    out, taps = (r, m) if swapped else (m, r)
    AT, G, BT = core.winograd_matrices(out, taps, points)
    assert np.array_equal(BT, core.winograd_matrices(m, r, points)[2]), "F(r, m) has its own BT"
    rng = np.random.default_rng(30)
    for _ in range(5):
        d, g = rng.standard_normal(out + taps - 1), rng.standard_normal(taps)
        expected = [sum(d[i + k] * g[k] for k in range(taps)) for i in range(out)]
        got = AT @ ((G @ g) * (BT @ d))
        assert np.allclose(got, expected, rtol=1e-12, atol=1e-12), f"{got} != {expected}"


def test_winograd_matrices_need_distinct_points(core):
    with pytest.raises(ValueError, match="distinct points"):
        core.winograd_matrices(2, 3, (0, 1, 1))
    with pytest.raises(ValueError, match="distinct points"):
        core.winograd_matrices(2, 3, (0, 1))


# (x_shape, OC, r, pad, groups): maps not a multiple of the m x m blocks,
# non-square, smaller than one tile, a pad of 0, or wider than r - 1 (then
# dx crops dout instead of padding it), N = 1, two groups.
WINOGRAD_CASES = [
    pytest.param((2, 4, 6, 6), 6, 3, 1, 1, id="3x3-same"),
    pytest.param((3, 4, 7, 5), 4, 3, 1, 2, id="3x3-odd-groups2"),
    pytest.param((1, 3, 8, 4), 5, 3, 0, 1, id="3x3-pad0-N1"),
    pytest.param((2, 2, 2, 3), 3, 3, 2, 1, id="3x3-pad2-tiny"),
    pytest.param((2, 2, 3, 3), 2, 3, 4, 1, id="3x3-pad-wider-than-kernel"),
    pytest.param((2, 6, 12, 11), 4, 5, 2, 2, id="5x5-same-groups2"),
    pytest.param((2, 3, 9, 10), 2, 5, 0, 1, id="5x5-pad0"),
    pytest.param((1, 2, 3, 3), 2, 5, 3, 1, id="5x5-pad3-tiny"),
]


@pytest.fixture(params=["whole batch", "one image per slab"])
def slabs(request, monkeypatch):
    """The Winograd convolution's slabs: the whole small batch in one, or
    one image each (so that the weight gradient sums over several)."""
    core = load_core()
    if request.param == "one image per slab":
        monkeypatch.setattr(core, "WINOGRAD_SLAB_BYTES", 1)
        monkeypatch.setattr(core, "WINOGRAD_MIN_ROWS", 1)
    return core


@dtypes
@pytest.mark.parametrize("x_shape, oc, r, pad, groups", WINOGRAD_CASES)
def test_winograd_conv_matches_naive_and_reference(slabs, dtype, x_shape, oc, r, pad, groups):
    core = slabs
    rng = np.random.default_rng(31)
    x = make_input(x_shape, dtype, rng)
    W = make_input((oc, x_shape[1] // groups, r, r), dtype, rng)
    b = make_input((oc,), dtype, rng)
    y = core.winograd_conv_forward(x, W, b, 1, pad, groups)
    assert_conv_close(y, naive.conv_forward(x, W, b, 1, pad, groups), "winograd forward", True)
    assert_conv_close(y, reference.conv_forward(x, W, b, 1, pad, groups),
                      "winograd forward against the reference", True)
    dout = make_input(y.shape, dtype, rng)
    dx, dW = core.winograd_conv_backward(x, W, dout, 1, pad, groups)
    for got, expected, name in zip((dx, dW), naive.conv_backward(x, W, dout, 1, pad, groups),
                                   ["dx", "dW"]):
        assert_conv_close(got, expected, f"winograd backward {name}", True)
    for got, expected, name in zip((dx, dW), reference.conv_backward(x, W, dout, 1, pad, groups),
                                   ["dx", "dW"]):
        assert_conv_close(got, expected, f"winograd backward {name} against the reference", True)
    no_dx, dW_alone = core.winograd_conv_backward(x, W, dout, 1, pad, groups, input_grad=False)
    assert no_dx is None
    assert_bit_identical(dW_alone, dW, "dW computed without dx")
    check_bias_gradient(core.winograd_conv_backward, (x, W, dout, 1, pad, groups), dx, dW, True)


def test_winograd_conv_ignores_what_the_scratch_arrays_held(slabs):
    core = slabs
    rng = np.random.default_rng(32)
    x = make_input((5, 4, 7, 6), np.float64, rng)
    W = make_input((6, 2, 3, 3), np.float64, rng)
    b = make_input((6,), np.float64, rng)
    work = {}
    y = core.winograd_conv_forward(x, W, b, 1, 1, 2, work)
    dout = make_input(y.shape, np.float64, rng)
    dx, dW = core.winograd_conv_backward(x, W, dout, 1, 1, 2, True, work)
    assert work and all(isinstance(a, np.ndarray) for a in work.values())
    for scratch in work.values():
        scratch.fill(np.nan)
    assert_bit_identical(core.winograd_conv_forward(x, W, b, 1, 1, 2, work), y,
                         "winograd forward after NaN in its scratch arrays")
    for got, expected, name in zip(core.winograd_conv_backward(x, W, dout, 1, 1, 2, True, work),
                                   (dx, dW), ["dx", "dW"]):
        assert_bit_identical(got, expected, f"winograd backward {name} after NaN in its scratch")


def test_winograd_empty_batch(core):
    x = np.zeros((0, 2, 5, 5), dtype=np.float32)
    W = np.ones((3, 2, 3, 3), dtype=np.float32)
    y = core.winograd_conv_forward(x, W, np.ones(3, np.float32), 1, 1)
    assert y.shape == (0, 3, 5, 5)
    dx, dW = core.winograd_conv_backward(x, W, y, 1, 1)
    assert dx.shape == x.shape and dW.shape == W.shape and not dW.any()


@pytest.mark.parametrize("W_shape, stride, pad, match", [
    ((3, 2, 3, 3), 2, 1, "stride 1"),
    ((3, 2, 3, 2), 1, 1, "square kernel"),
    ((3, 2, 2, 2), 1, 0, "square kernel of size"),
    ((3, 2, 3, 3), 1, (1, 0), "same pad"),
])
def test_winograd_refuses_what_it_cannot_compute(core, W_shape, stride, pad, match):
    x = np.zeros((1, 2, 6, 6), np.float32)
    W, b = np.zeros(W_shape, np.float32), np.zeros(3, np.float32)
    dout = reference.conv_forward(x, W, b, stride, pad)
    with pytest.raises(ValueError, match=match):
        core.winograd_conv_forward(x, W, b, stride, pad)
    with pytest.raises(ValueError, match=match):
        core.winograd_conv_backward(x, W, dout, stride, pad)


def test_conv_path_choice():
    kernels = zeronet.kernels
    W3 = np.zeros((384, 192, 3, 3), np.float32)       # AlexNet-CIFAR's conv3
    W1 = np.zeros((64, 3, 5, 5), np.float32)          # its conv1: 3 input channels
    x = np.zeros((2, 192, 6, 6), np.float32)
    if not kernels.USING_CORE:
        assert kernels.conv_path(x, W3, 1, 1) == "numpy"
        return
    assert kernels.conv_path(x, W3, 1, 1) == "winograd"
    assert kernels.conv_path(x, np.zeros((192, 32, 5, 5), np.float32), 1, 2, 2) == "winograd"
    assert kernels.conv_path(x, W1, 1, 2) == "chunked"
    assert kernels.conv_path(x, W3, 2, 1) == "chunked"                 # stride 2
    assert kernels.conv_path(x, W3, 1, (1, 0)) == "chunked"            # pads differ
    assert kernels.conv_path(x, np.zeros((384, 192, 3, 2), np.float32), 1, 1) == "chunked"
    assert kernels.conv_path(x, W3[:8], 1, 1) == "chunked"            # 8 maps out
    assert kernels.conv_path(x, W3, 1, -1) == "chunked"                # bad: the checks say so
    # LeNet-5's C5: 16 maps of 5x5 into a 5x5 kernel, one output per map.
    assert kernels.conv_path(np.zeros((2, 16, 5, 5), np.float32),
                             np.zeros((120, 16, 5, 5), np.float32), 1, 0) == "chunked"


# -------------------------------------------- thread-count determinism ----

@pytest.fixture
def restore_threads(core):
    # Small arrays normally run on one thread; these tests need every loop
    # split between threads.
    before, min_work = core.get_num_threads(), core.get_min_parallel_work()
    core.set_min_parallel_work(0)
    yield core
    core.set_num_threads(before)
    core.set_min_parallel_work(min_work)


# Wide kernel and pad: many windows cross the left and right edges, where
# the loops compute per-thread bounds that a race would mix up.
THREAD_CONV = dict(kernel_size=(3, 5), stride=(1, 2), pad=(1, 3))


def run_every_kernel(core, x, col, dout_seed):
    """Every compiled kernel once, on shapes where each thread gets work."""
    cols = core.im2col(x, **THREAD_CONV)
    dx = core.col2im(col, x.shape, **THREAD_CONV)
    out, argmax = core.maxpool_forward(x, 3, 2, 1, ceil_mode=True)
    dout = make_input(out.shape, x.dtype, np.random.default_rng(dout_seed))
    dxp = core.maxpool_backward(dout, argmax, x.shape, 3, 2, 1)
    # Through zeronet.kernels, which keeps BLAS on one thread per caller as
    # the layers see it.
    W = make_input((6, 5, 3, 5), x.dtype, np.random.default_rng(dout_seed + 1))
    b = make_input((6,), x.dtype, np.random.default_rng(dout_seed + 2))
    window = dict(stride=THREAD_CONV["stride"], pad=THREAD_CONV["pad"])
    y = zeronet.kernels.conv_forward(x, W, b, **window)
    dy = make_input(y.shape, x.dtype, np.random.default_rng(dout_seed + 3))
    dx_conv, dW = zeronet.kernels.conv_backward(x, W, dy, **window)
    # And without padding (the images are unfolded where they lie), stride in height.
    y_unpadded = zeronet.kernels.conv_forward(x, W, b, stride=(2, 1))
    dy = make_input(y_unpadded.shape, x.dtype, np.random.default_rng(dout_seed + 4))
    dx_unpadded, dW_unpadded = zeronet.kernels.conv_backward(x, W, dy, stride=(2, 1))
    # The Winograd convolution: 3x3 and 5x5 kernels, one image per slab
    # (set by the caller), so that the weight gradient sums over slabs.
    forward, backward = core.winograd_conv_forward, core.winograd_conv_backward
    winograd = {}
    for r in (3, 5):
        Ww = make_input((4, 5, r, r), x.dtype, np.random.default_rng(dout_seed + r))
        with zeronet.kernels._blas_on_one_thread():
            yw = forward(x, Ww, b[:4], 1, r // 2)
            dyw = make_input(yw.shape, x.dtype, np.random.default_rng(dout_seed + 5))
            dxw, dWw = backward(x, Ww, dyw, 1, r // 2)
        winograd.update({f"winograd {r}x{r} y": yw, f"winograd {r}x{r} dx": dxw,
                         f"winograd {r}x{r} dW": dWw})
    dlrn = make_input(x.shape, x.dtype, np.random.default_rng(dout_seed + 6))
    # ReLU over several blocks of its loop.
    big = make_input((5, 13, 31, 29), x.dtype, np.random.default_rng(dout_seed + 7))
    relu = {"relu_forward": core.relu_forward(big),
            "relu_backward": core.relu_backward(core.relu_forward(big), big[::-1].copy())}
    lrn = {"lrn_forward": core.lrn_forward(x, 5, 2.0, 1e-3, 0.75),
           "lrn_backward": core.lrn_backward(x, dlrn, 5, 2.0, 1e-3, 0.75)}
    return {"im2col": cols, "col2im": dx, "maxpool out": out, "maxpool argmax": argmax,
            "maxpool_backward": dxp, "conv_forward": y, "conv_backward dx": dx_conv,
            "conv_backward dW": dW, "conv_forward unpadded": y_unpadded,
            "conv_backward dx unpadded": dx_unpadded, "conv_backward dW unpadded": dW_unpadded,
            **winograd, **lrn, **relu}


@dtypes
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_results_do_not_depend_on_thread_count(restore_threads, dtype, threads, monkeypatch):
    core = restore_threads
    # One image per convolution chunk: 8 chunks, 8 weight-gradient partials;
    # one per Winograd slab.
    monkeypatch.setattr(core, "CHUNK_BYTES", 1)
    monkeypatch.setattr(core, "WINOGRAD_SLAB_BYTES", 1)
    monkeypatch.setattr(core, "WINOGRAD_MIN_ROWS", 1)
    if not core.HAS_OPENMP:
        pytest.skip("zeronet._core was built without OpenMP: it always runs on one thread")
    rng = np.random.default_rng(10)
    # Integers in a small range give ties, and so shared winners in backward.
    x = make_input((8, 5, 13, 11), dtype, rng, "ties")
    oh, ow = conv_out_shape(x.shape, THREAD_CONV["kernel_size"], THREAD_CONV["stride"],
                            THREAD_CONV["pad"])
    col = make_input((8 * oh * ow, 5 * 3 * 5), dtype, rng)
    core.set_num_threads(1)
    assert core.get_num_threads() == 1
    serial = run_every_kernel(core, x, col, 11)
    core.set_num_threads(threads)
    assert core.get_num_threads() == threads
    # A data race shows up only now and then, so give it several chances.
    for attempt in range(20):
        parallel = run_every_kernel(core, x, col, 11)
        for name in serial:
            assert_bit_identical(parallel[name], serial[name],
                                 f"{name} with {threads} threads against 1 (run {attempt + 1})")


@pytest.mark.parametrize("n", [0, -1, 100_000])
def test_set_num_threads_rejects_absurd_counts(restore_threads, n):
    # 100,000 threads would make libgomp abort the interpreter.
    with pytest.raises(ValueError, match=r"must be in \[1, "):
        restore_threads.set_num_threads(n)


# ---------------------------------------------------------- bad inputs ----

X = np.zeros((1, 2, 4, 4), dtype=np.float32)
COL = np.zeros((1 * 3 * 3, 2 * 2 * 2), dtype=np.float32)     # im2col(X, 2) shape
DOUT = np.zeros((1, 2, 2, 2), dtype=np.float32)               # 2x2/2 pool of X
ARGMAX = np.zeros((1, 2, 2, 2), dtype=np.int32)
W = np.zeros((3, 2, 2, 2), dtype=np.float32)                  # 3 maps, 2x2 kernel
B = np.zeros(3, dtype=np.float32)
DY = np.zeros((1, 3, 3, 3), dtype=np.float32)                 # conv of X with W

BAD_CALLS = [
    # im2col
    pytest.param(lambda k: k.im2col(X.tolist(), 2), TypeError, "numpy.ndarray", id="im2col-list"),
    pytest.param(lambda k: k.im2col(X.astype(np.int64), 2), TypeError, "float32 or float64",
                 id="im2col-int"),
    pytest.param(lambda k: k.im2col(X.astype(np.float16), 2), TypeError, "float32 or float64",
                 id="im2col-float16"),
    pytest.param(lambda k: k.im2col(X.astype(">f4"), 2), TypeError, "float32 or float64",
                 id="im2col-big-endian"),
    pytest.param(lambda k: k.im2col(X[0], 2), ValueError, "4 dimensions", id="im2col-3d"),
    pytest.param(lambda k: k.im2col(X[..., ::2], 1), ValueError, "C-contiguous",
                 id="im2col-strided"),
    pytest.param(lambda k: k.im2col(np.asfortranarray(X), 2), ValueError, "C-contiguous",
                 id="im2col-fortran"),
    pytest.param(lambda k: k.im2col(X, 5), ValueError, "larger than the padded input",
                 id="im2col-kernel-too-big"),
    pytest.param(lambda k: k.im2col(X, (2, 7), pad=1), ValueError, "kernel width 7",
                 id="im2col-kernel-too-wide"),
    pytest.param(lambda k: k.im2col(X, 0), ValueError, "kernel_size must be >= 1",
                 id="im2col-kernel0"),
    pytest.param(lambda k: k.im2col(X, 2, stride=0), ValueError, "stride must be >= 1",
                 id="im2col-stride0"),
    pytest.param(lambda k: k.im2col(X, 2, stride=(1, 0)), ValueError, "stride must be >= 1",
                 id="im2col-stride-w0"),
    pytest.param(lambda k: k.im2col(X, 2, pad=-1), ValueError, "pad must be >= 0",
                 id="im2col-pad-negative"),
    pytest.param(lambda k: k.im2col(X, 2.0), TypeError, "kernel_size must be an int",
                 id="im2col-float-kernel"),
    pytest.param(lambda k: k.im2col(X, (2, 2, 2)), TypeError, "kernel_size must be an int",
                 id="im2col-kernel-triple"),
    pytest.param(lambda k: k.im2col(X, 2, out=COL.astype(np.float64)), TypeError,
                 "out must be float32", id="im2col-out-dtype"),
    pytest.param(lambda k: k.im2col(X, 2, out=COL[:-1]), ValueError, "out must have shape",
                 id="im2col-out-shape"),
    pytest.param(lambda k: k.im2col(X, 2, out=COL.tolist()), TypeError, "out must be a numpy",
                 id="im2col-out-list"),
    pytest.param(lambda k: k.im2col(X, 2, out=np.asfortranarray(COL)), ValueError,
                 "C-contiguous and writeable", id="im2col-out-fortran"),
    pytest.param(lambda k: k.im2col(X, 2, out=np.broadcast_to(COL[:1], COL.shape)), ValueError,
                 "C-contiguous and writeable", id="im2col-out-read-only"),
    # col2im
    pytest.param(lambda k: k.col2im(COL, X.shape, 2, out=np.zeros(X.shape, np.float64)),
                 TypeError, "out must be float32", id="col2im-out-dtype"),
    pytest.param(lambda k: k.col2im(COL, X.shape, 2, out=np.zeros((1, 2, 4, 3), np.float32)),
                 ValueError, "out must have shape", id="col2im-out-shape"),
    pytest.param(lambda k: k.col2im(COL.tolist(), X.shape, 2), TypeError, "numpy.ndarray",
                 id="col2im-list"),
    pytest.param(lambda k: k.col2im(COL.astype(np.int32), X.shape, 2), TypeError,
                 "float32 or float64", id="col2im-int"),
    pytest.param(lambda k: k.col2im(COL[None], X.shape, 2), ValueError, "2 dimensions",
                 id="col2im-3d"),
    pytest.param(lambda k: k.col2im(COL[:, :-1], X.shape, 2), ValueError, "C-contiguous",
                 id="col2im-strided"),
    pytest.param(lambda k: k.col2im(COL[:-1], X.shape, 2), ValueError, "col must have shape",
                 id="col2im-wrong-rows"),
    pytest.param(lambda k: k.col2im(COL, X.shape, (2, 3)), ValueError, "col must have shape",
                 id="col2im-wrong-kernel"),
    pytest.param(lambda k: k.col2im(COL, X.shape[1:], 2), ValueError, r"x_shape must be 4 ints",
                 id="col2im-x_shape-3"),
    pytest.param(lambda k: k.col2im(COL, X.shape, 5), ValueError, "larger than the padded input",
                 id="col2im-kernel-too-big"),
    # maxpool_forward
    pytest.param(lambda k: k.maxpool_forward(X.astype(np.int32), 2, 2), TypeError,
                 "float32 or float64", id="pool-int"),
    pytest.param(lambda k: k.maxpool_forward(X.astype(np.float16), 2, 2), TypeError,
                 "float32 or float64", id="pool-float16"),
    pytest.param(lambda k: k.maxpool_forward(X[0], 2, 2), ValueError, "4 dimensions",
                 id="pool-3d"),
    pytest.param(lambda k: k.maxpool_forward(X.transpose(0, 1, 3, 2), 2, 2), ValueError,
                 "C-contiguous", id="pool-transposed"),
    pytest.param(lambda k: k.maxpool_forward(X, 2, 2, pad=2), ValueError,
                 "pad 2 must be smaller than the kernel", id="pool-pad-equals-kernel"),
    pytest.param(lambda k: k.maxpool_forward(X, (3, 2), 2, pad=(1, 2)), ValueError,
                 "smaller than the kernel width", id="pool-pad-w-equals-kernel"),
    pytest.param(lambda k: k.maxpool_forward(X, 2, 0), ValueError, "stride must be >= 1",
                 id="pool-stride0"),
    pytest.param(lambda k: k.maxpool_forward(X, 7, 1, 1), ValueError,
                 "larger than the padded input", id="pool-kernel-too-big"),
    # maxpool_backward
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX.astype(np.int64), X.shape, 2, 2),
                 TypeError, "argmax must be the int32", id="poolback-argmax-int64"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX.tolist(), X.shape, 2, 2),
                 TypeError, "argmax must be the int32", id="poolback-argmax-list"),
    pytest.param(lambda k: k.maxpool_backward(DOUT.astype(np.float16), ARGMAX, X.shape, 2, 2),
                 TypeError, "float32 or float64", id="poolback-dout-float16"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX + 4, X.shape, 2, 2),
                 ValueError, r"argmax values must lie in \[0, 4\)", id="poolback-argmax-too-big"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX - 1, X.shape, 2, 2),
                 ValueError, r"argmax values must lie in \[0, 4\)", id="poolback-argmax-negative"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX[..., :1], X.shape, 2, 2),
                 ValueError, "argmax shape", id="poolback-argmax-shape"),
    pytest.param(lambda k: k.maxpool_backward(
                     DOUT, np.zeros((1, 2, 2, 4), np.int32)[..., ::2], X.shape, 2, 2),
                 ValueError, "argmax must be C-contiguous", id="poolback-argmax-strided"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX, (1, 2, 8, 8), 2, 2),
                 ValueError, "does not fit x_shape", id="poolback-dout-wrong-hw"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX, (1, 3, 4, 4), 2, 2),
                 ValueError, "does not fit x_shape", id="poolback-dout-wrong-channels"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX, X.shape, 2, 2, pad=2),
                 ValueError, "must be smaller than the kernel", id="poolback-pad-equals-kernel"),
    pytest.param(lambda k: k.maxpool_backward(DOUT, ARGMAX, X.shape, 2, 0),
                 ValueError, "stride must be >= 1", id="poolback-stride0"),
    # conv_forward, conv_backward
    pytest.param(lambda k: k.conv_forward(X.astype(np.int32), W, B), TypeError,
                 "x must be float32 or float64", id="conv-x-int"),
    pytest.param(lambda k: k.conv_forward(X, W.astype(np.float64), B), TypeError,
                 "W must be float32 like x", id="conv-W-dtype"),
    pytest.param(lambda k: k.conv_forward(X, W, B.astype(np.float64)), TypeError,
                 "b must be float32 like x", id="conv-b-dtype"),
    pytest.param(lambda k: k.conv_forward(X, W, B[:2]), ValueError, r"b must have shape \(3,\)",
                 id="conv-b-shape"),
    pytest.param(lambda k: k.conv_forward(X, W, None), TypeError, "b must be a numpy.ndarray",
                 id="conv-no-b"),
    pytest.param(lambda k: k.conv_forward(X, W[:, :1].copy(), B), ValueError, "does not fit x",
                 id="conv-W-channels"),
    pytest.param(lambda k: k.conv_forward(X, W[0], B), ValueError, "W must have 4 dimensions",
                 id="conv-W-3d"),
    pytest.param(lambda k: k.conv_forward(X, W[..., ::2], B), ValueError, "C-contiguous",
                 id="conv-W-strided"),
    pytest.param(lambda k: k.conv_forward(X[..., ::2], W, B), ValueError, "C-contiguous",
                 id="conv-x-strided"),
    pytest.param(lambda k: k.conv_forward(X, W[:, :1].copy(), B, groups=2), ValueError,
                 "groups dividing OC", id="conv-groups-not-dividing-OC"),
    pytest.param(lambda k: k.conv_forward(X, W, B, groups=0), ValueError,
                 "groups must be a positive int", id="conv-groups0"),
    pytest.param(lambda k: k.conv_forward(X, W, B, groups=True), ValueError,
                 "groups must be a positive int", id="conv-groups-bool"),
    pytest.param(lambda k: k.conv_forward(X, np.zeros((3, 2, 5, 2), np.float32), B), ValueError,
                 "larger than the padded input", id="conv-kernel-too-big"),
    pytest.param(lambda k: k.conv_forward(X, W, B, stride=0), ValueError, "stride must be >= 1",
                 id="conv-stride0"),
    pytest.param(lambda k: k.conv_backward(X, W, DY[..., :2].copy()), ValueError,
                 r"dout must have shape \(1, 3, 3, 3\)", id="conv-dout-shape"),
    pytest.param(lambda k: k.conv_backward(X, W, DY.astype(np.float64)), TypeError,
                 "dout must be float32 like x", id="conv-dout-dtype"),
    pytest.param(lambda k: k.conv_backward(X, W, DY.tolist()), TypeError,
                 "dout must be a numpy.ndarray", id="conv-dout-list"),
    # A truth value is not a flag: "no" would count as yes.
    pytest.param(lambda k: k.conv_backward(X, W, DY, input_grad="no"), TypeError,
                 "input_grad must be True or False, got str", id="conv-input_grad-str"),
    pytest.param(lambda k: k.conv_backward(X, W, DY, bias_grad=1), TypeError,
                 "bias_grad must be True or False, got int", id="conv-bias_grad-int"),
    pytest.param(lambda k: k.conv_backward(X, W, DY, bias_grad=np.ones(2, bool)), TypeError,
                 "bias_grad must be True or False, got ndarray", id="conv-bias_grad-array"),
]


@pytest.mark.parametrize("call, error, match", BAD_CALLS)
def test_bad_input_raises(impl, call, error, match):
    with pytest.raises(error, match=match):
        call(impl)


def test_empty_batch_gives_empty_results(impl):
    x = np.zeros((0, 2, 5, 5), dtype=np.float32)
    col = impl.im2col(x, 3)
    assert col.shape == (0, 18)
    assert impl.col2im(col, x.shape, 3).shape == x.shape
    out, argmax = impl.maxpool_forward(x, 2, 2)
    assert out.shape == argmax.shape == (0, 2, 2, 2)
    assert impl.maxpool_backward(out, argmax, x.shape, 2, 2).shape == x.shape
    W = np.ones((3, 2, 3, 3), dtype=np.float32)
    y = impl.conv_forward(x, W, np.ones(3, np.float32), pad=1)
    assert y.shape == (0, 3, 5, 5)
    dx, dW, db = impl.conv_backward(x, W, y, pad=1, bias_grad=np.True_)
    assert dx.shape == x.shape
    assert dW.shape == W.shape and not dW.any()     # no image, no gradient
    assert db.shape == (3,) and db.dtype == x.dtype and not db.any()


@pytest.mark.parametrize("shape", [(1, 0, 4, 4), (1, 2, 0, 4)])
def test_input_without_channels_or_rows_is_refused(impl, shape):
    x = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError, match=r"x must be 4 ints \(N, C, H, W\) with N >= 0"):
        impl.im2col(x, 1)
    with pytest.raises(ValueError, match=r"x must be 4 ints \(N, C, H, W\) with N >= 0"):
        impl.maxpool_forward(x, 1, 1)


def test_out_overlapping_the_input_is_refused(impl):
    # Writing col while reading x from the same memory would read values
    # already overwritten.
    memory = np.zeros(2 * 4 * 4 + 2 * 4 * 4, dtype=np.float32)
    x = memory[:32].reshape(1, 2, 4, 4)
    col = memory[16:48].reshape(16, 2)
    with pytest.raises(ValueError, match="must not overlap"):
        impl.im2col(x, 1, out=col)
    with pytest.raises(ValueError, match="must not overlap"):
        impl.col2im(col, (1, 2, 4, 4), 1, out=x)
