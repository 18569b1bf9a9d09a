"""Every layer's backward against a numerical gradient, plus the behaviour a
gradient check cannot see: dtypes, forward formulas, Dropout's two modes,
the loss's label handling, and masked weights staying masked.

Gradient checks run in float64 through ``zeronet.gradcheck.check_layer``,
which compares ``backward`` with central differences of
``sum(forward(x) * R)`` for a fixed random ``R``. Inputs to max pooling and
ReLU are distinct values spaced far wider than the difference step, so no tie
or kink can flip while a value is nudged.
"""
import numpy as np
import pytest

from zeronet import gradcheck, kernels, optimizers
from zeronet import layers as L
from zeronet.losses import MAPLoss, SoftmaxWithLoss

TOL = 1e-5      # relative error allowed between analytic and numerical gradients (float64)


def distinct(shape, rng, spacing=0.01):
    """Values ``spacing`` apart, none of them zero, in random order."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2 + 0.5) * spacing).reshape(shape)


def assert_gradients(layer, x, rng, *, train=False):
    errors = gradcheck.check_layer(layer, x, rng=rng, train=train)
    assert set(errors) == {"x", *layer.params}, errors
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, (
        f"{layer!r}: gradient of {worst!r} is off by relative error {errors[worst]:.3g} "
        f"(allowed {TOL:g}); all errors: {errors}")


def assert_close(actual, expected, rtol, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = gradcheck.relative_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3g} exceeds {rtol:g}"


# ------------------------------------------------------- gradcheck itself ----

def test_numerical_gradient_of_known_function():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    before = x.copy()
    c = rng.standard_normal((3, 4))
    # f(x) = sum(x^3 + c x) has gradient 3 x^2 + c.
    grad = gradcheck.numerical_gradient(lambda: float(np.sum(x ** 3 + c * x)), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert_close(grad, 3 * x ** 2 + c, 1e-7, "numerical gradient of sum(x^3 + c x)")
    assert np.array_equal(x, before), "numerical_gradient did not restore x"


def test_check_layer_catches_a_wrong_backward():
    class Doubling(L.Layer):
        def forward(self, x, *, train=False):
            return 2 * x

        def backward(self, dout):
            return 3 * dout          # wrong on purpose

    rng = np.random.default_rng(2)
    errors = gradcheck.check_layer(Doubling(), rng.standard_normal((2, 3)), rng=rng)
    assert errors["x"] > 0.1, f"a wrong backward passed the check: {errors}"


def test_relative_error():
    assert gradcheck.relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert gradcheck.relative_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 2.2)
    assert gradcheck.relative_error([], []) == 0.0


# ---------------------------------------------------------- convolution ----

def conv_direct(x, W, b, stride, pad, groups):
    """Convolution as the definition's loops (the oracle for the forward pass)."""
    N, C, H, Wd = x.shape
    OC, CG, KH, KW = W.shape
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    OH, OW = (H + 2 * ph - KH) // sh + 1, (Wd + 2 * pw - KW) // sw + 1
    y = np.zeros((N, OC, OH, OW))
    per_group = OC // groups
    for n in range(N):
        for o in range(OC):
            c0 = (o // per_group) * CG
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, c0:c0 + CG, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    y[n, o, i, j] = np.sum(window * W[o]) + b[o]
    return y


CONV_CASES = {
    # name: (constructor kwargs, input shape)
    "nonsquare_stride_pad": (dict(in_channels=3, out_channels=4, kernel_size=(3, 2),
                                  stride=(2, 1), pad=(1, 0)), (2, 3, 7, 5)),
    "groups2": (dict(in_channels=4, out_channels=6, kernel_size=(2, 3), stride=(1, 2),
                     pad=(0, 1), groups=2), (2, 4, 5, 7)),
    "table": (dict(in_channels=3, out_channels=4, kernel_size=3,
                   table=[[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]]), (2, 3, 5, 6)),
    "batch_of_one_odd": (dict(in_channels=2, out_channels=3, kernel_size=(3, 1), stride=(1, 3),
                              pad=(2, 1)), (1, 2, 5, 7)),
    # 3x3 and 5x5 kernels, stride 1: Winograd's algorithm applies.
    "3x3_same_groups2": (dict(in_channels=4, out_channels=6, kernel_size=3, pad=1, groups=2),
                         (2, 4, 5, 7)),
    "5x5_same": (dict(in_channels=2, out_channels=3, kernel_size=5, pad=2), (1, 2, 6, 5)),
    # The window is the whole image (LeNet-5's C5).
    "window_is_image": (dict(in_channels=3, out_channels=4, kernel_size=(4, 3)), (2, 3, 4, 3)),
    "window_is_image_groups": (dict(in_channels=4, out_channels=2, kernel_size=(2, 3), groups=2),
                               (3, 4, 2, 3)),
}


def make_conv(kwargs, rng, dtype="float64"):
    # A random bias, so a bias that is ignored in forward would show.
    return L.Convolution(**kwargs, dtype=dtype, rng=rng, bias_init={"type": "Gaussian", "std": 0.5})


def use_conv_path(path, monkeypatch, kwargs):
    """Send every Convolution through one of the computations of
    ``zeronet.kernels`` (see ``kernels.conv_path``); skip the test where
    that computation does not apply. Returns the list of paths taken."""
    if path not in kernels.CONV_PATHS:
        pytest.skip(f"the {path} convolution is part of the compiled core")
    layer = L.Convolution(**kwargs)
    if path == "winograd" and not kernels.winograd_fits(layer.weights(), layer.stride, layer.pad,
                                                        layer.groups, min_channels=1):
        pytest.skip("Winograd's algorithm takes stride 1, a 3x3 or 5x5 kernel, the same pad")
    taken = []

    def chosen(*args):
        taken.append(path)
        return path
    monkeypatch.setattr(kernels, "conv_path", chosen)
    if path == "chunked":
        # One image per chunk: even these small batches are split in chunks
        # (and threads) and the weight gradient in partial sums.
        monkeypatch.setattr(kernels._core, "CHUNK_BYTES", 1)
    if path == "winograd":      # the same, by slabs
        monkeypatch.setattr(kernels._core, "WINOGRAD_SLAB_BYTES", 1)
        monkeypatch.setattr(kernels._core, "WINOGRAD_MIN_ROWS", 1)
    return taken


CONV_PATHS = ["numpy", "chunked", "winograd"]


@pytest.mark.parametrize("path", CONV_PATHS)
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_gradients(case, path, monkeypatch):
    # Every case runs through every computation that applies to it.
    kwargs, shape = CONV_CASES[case]
    taken = use_conv_path(path, monkeypatch, kwargs)
    rng = np.random.default_rng(10)
    layer = make_conv(kwargs, rng)
    assert_gradients(layer, rng.standard_normal(shape), rng)
    assert taken and set(taken) == {path}, f"{case} did not take the {path} path"


@pytest.mark.parametrize("kwargs, shape", [
    (dict(in_channels=2, out_channels=3, kernel_size=4), (2, 2, 4, 4)),    # 1x1 output
    (dict(in_channels=2, out_channels=1, kernel_size=2), (2, 2, 4, 4)),    # one output map
    (dict(in_channels=2, out_channels=3, kernel_size=2), (2, 2, 4, 4)),
])
def test_convolution_output_survives_the_next_forward(kwargs, shape):
    # The layer reuses its scratch arrays between calls; what it returned
    # must not be one of them (predict_batched keeps every batch's scores).
    rng = np.random.default_rng(12)
    layer = make_conv(kwargs, rng, dtype="float32")
    x1, x2 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    y1 = layer.forward(x1)
    kept = y1.copy()
    layer.forward(x2)
    assert np.array_equal(y1, kept), "the second forward overwrote the first one's output"


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_forward_matches_direct_loops(case):
    rng = np.random.default_rng(11)
    kwargs, shape = CONV_CASES[case]
    layer = make_conv(kwargs, rng)
    x = rng.standard_normal(shape)
    W, b = layer.params["W"].data, layer.params["b"].data
    expected = conv_direct(x, W, b, layer.stride, layer.pad, layer.groups)
    assert_close(layer.forward(x), expected, 1e-10, f"convolution {case} forward")


def test_table_convolution_masks_weights_and_gradients():
    rng = np.random.default_rng(12)
    table = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]])
    layer = L.Convolution(3, 4, 3, table=table, dtype="float64", rng=rng)
    W = layer.params["W"]
    off = ~table.astype(bool)
    assert np.all(W.data[off] == 0), "weights outside the table are not zero at creation"
    assert W.trainable_size == table.sum() * 9
    layer.forward(rng.standard_normal((2, 3, 5, 5)))
    layer.backward(rng.standard_normal((2, 4, 3, 3)))
    assert np.all(W.grad[off] == 0), "gradient leaks into weights outside the table"
    assert np.any(W.grad[~off] != 0)


def test_convolution_rejects_bad_arguments():
    rng = np.random.default_rng(13)
    with pytest.raises(ValueError, match="groups"):
        L.Convolution(3, 4, 3, groups=2, rng=rng)
    with pytest.raises(ValueError, match="table"):
        L.Convolution(3, 4, 3, table=np.ones((3, 4)), rng=rng)
    layer = L.Convolution(3, 4, 3, rng=rng)
    with pytest.raises(ValueError, match="channels"):
        layer.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer.forward(np.zeros((3, 5, 5), np.float32))


# -------------------------------------------------------------- pooling ----

@pytest.mark.parametrize("kernel, stride, pad, ceil_mode, shape", [
    (2, 2, 0, False, (2, 3, 6, 6)),
    (3, 2, 0, False, (2, 2, 7, 7)),          # overlapping 3x3 / 2
    (3, 2, 0, True, (2, 2, 8, 6)),           # ceil mode: the last window hangs off
    (3, 2, 1, False, (1, 2, 7, 8)),          # padding acts as -inf
    (3, 2, 1, True, (2, 2, 6, 7)),
    ((3, 2), (2, 1), (1, 0), True, (1, 3, 7, 5)),
])
def test_max_pooling_gradients(kernel, stride, pad, ceil_mode, shape):
    rng = np.random.default_rng(20)
    layer = L.MaxPooling(kernel, stride, pad=pad, ceil_mode=ceil_mode)
    assert_gradients(layer, distinct(shape, rng), rng)


def test_max_pooling_output_sizes():
    x = distinct((1, 1, 24, 24), np.random.default_rng(21)).astype(np.float32)
    # cuda-convnet's 24 -> 12 -> 6 with 3x3 windows, stride 2, needs ceil mode.
    y = L.MaxPooling(3, 2, ceil_mode=True).forward(x)
    assert y.shape == (1, 1, 12, 12)
    assert L.MaxPooling(3, 2, ceil_mode=True).forward(y).shape == (1, 1, 6, 6)
    assert L.MaxPooling(3, 2).forward(x).shape == (1, 1, 11, 11)
    assert L.MaxPooling(3, 2, pad=1).forward(x).shape == (1, 1, 12, 12)


def test_max_pooling_padding_never_wins():
    x = -1.0 - distinct((1, 1, 4, 4), np.random.default_rng(22)) ** 2     # all negative
    y = L.MaxPooling(3, 2, pad=1).forward(x)
    corner = x[0, 0, :2, :2].max()
    assert y[0, 0, 0, 0] == corner, f"padding won the max: {y[0, 0, 0, 0]} instead of {corner}"


@pytest.mark.parametrize("kernel, stride, pad, shape", [
    (2, 2, 0, (2, 3, 6, 6)),
    (3, 2, 1, (2, 2, 7, 6)),
    ((2, 3), (1, 2), (1, 0), (1, 2, 5, 7)),
    ((2, 3), (2, 3), 1, (1, 2, 5, 8)),        # tiling windows, a leftover row and column
    (1, 1, 0, (1, 2, 3, 4)),
])
def test_avg_pooling_gradients(kernel, stride, pad, shape):
    rng = np.random.default_rng(30)
    assert_gradients(L.AvgPooling(kernel, stride, pad=pad), rng.standard_normal(shape), rng)


def test_avg_pooling_forward():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    y = L.AvgPooling(2).forward(x)
    assert np.array_equal(y[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("shape", [(2, 3, 6, 6), (1, 3, 7, 5)])
def test_subsampling_gradients(shape):
    rng = np.random.default_rng(40)
    layer = L.Subsampling(3, dtype="float64", rng=rng)
    layer.params["b"].data[...] = rng.standard_normal(3)
    assert_gradients(layer, rng.standard_normal(shape), rng)


def test_subsampling_forward():
    rng = np.random.default_rng(41)
    layer = L.Subsampling(2, dtype="float64", rng=rng)
    coeff, b = layer.params["coeff"].data, layer.params["b"].data
    b[...] = [0.5, -1.0]
    x = rng.standard_normal((1, 2, 4, 4))
    y = layer.forward(x)
    for c in range(2):
        expected = x[0, c, 0:2, 2:4].sum() * coeff[c] + b[c]
        assert y[0, c, 0, 1] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------- affine, flatten ----

@pytest.mark.parametrize("shape", [(3, 12), (2, 3, 2, 2)])
def test_affine_gradients(shape):
    rng = np.random.default_rng(50)
    layer = L.Affine(12, 5, dtype="float64", rng=rng, bias_init={"type": "Gaussian", "std": 1.0})
    assert_gradients(layer, rng.standard_normal(shape), rng)


def test_affine_forward_and_shape_check():
    rng = np.random.default_rng(51)
    layer = L.Affine(12, 5, dtype="float64", rng=rng)
    x = rng.standard_normal((2, 3, 2, 2))
    W, b = layer.params["W"].data, layer.params["b"].data
    assert_close(layer.forward(x), x.reshape(2, 12) @ W + b, 1e-12, "affine forward")
    assert layer.backward(np.ones((2, 5))).shape == x.shape
    with pytest.raises(ValueError, match="12 features"):
        layer.forward(rng.standard_normal((2, 11)))


def test_flatten_gradients():
    rng = np.random.default_rng(52)
    layer = L.Flatten()
    x = rng.standard_normal((2, 3, 2, 2))
    assert layer.forward(x).shape == (2, 12)
    assert_gradients(layer, x, rng)


# ---------------------------------------------------------- activations ----

@pytest.mark.parametrize("make", [L.ReLU, L.Sigmoid, L.Tanh, L.ScaledTanh],
                         ids=lambda c: c.__name__)
def test_activation_gradients(make):
    rng = np.random.default_rng(60)
    # Distinct, nonzero, spread over the saturating range too.
    assert_gradients(make(), distinct((3, 4, 5), rng, spacing=0.05), rng)


def test_activation_forwards():
    x = np.array([-800.0, -2.0, -0.5, 0.0, 0.5, 2.0, 800.0])
    assert np.array_equal(L.ReLU().forward(x), np.maximum(x, 0))
    sig = L.Sigmoid().forward(x)
    assert np.all(np.isfinite(sig)), "sigmoid overflowed"
    assert_close(sig[1:-1], 1 / (1 + np.exp(-x[1:-1])), 1e-15, "sigmoid")
    assert sig[0] == 0.0 and sig[-1] == 1.0
    assert np.array_equal(L.Tanh().forward(x), np.tanh(x))
    assert_close(L.ScaledTanh().forward(x), 1.7159 * np.tanh(2 * x / 3), 1e-15, "scaled tanh")


def test_scaled_tanh_maps_plus_minus_one_to_itself():
    # LeCun et al. 1998, Appendix A: f(1) = 1 and f(-1) = -1.
    y = L.ScaledTanh().forward(np.array([1.0, -1.0]))
    assert abs(y[0] - 1) < 1e-3 and abs(y[1] + 1) < 1e-3, f"f(1), f(-1) = {y}"


# ------------------------------------------------------------------ LRN ----

def lrn_direct(a, k, n, alpha, beta):
    """The paper's formula as loops: b_i = a_i / (k + alpha sum_j a_j^2)^beta,
    j from max(0, i - n/2) to min(C - 1, i + n/2)."""
    C = a.shape[1]
    b = np.empty_like(a)
    for i in range(C):
        lo, hi = max(0, i - n // 2), min(C - 1, i + n // 2)
        b[:, i] = a[:, i] / (k + alpha * np.sum(a[:, lo:hi + 1] ** 2, axis=1)) ** beta
    return b


@pytest.mark.parametrize("channels", [3, 8])
def test_lrn_forward_matches_paper_formula(channels):
    rng = np.random.default_rng(70)
    # Large activations, so that alpha = 1e-4 makes a visible difference.
    a = 30 * rng.standard_normal((2, channels, 3, 4))
    layer = L.LRN()               # paper values: n=5, k=2, alpha=1e-4, beta=0.75
    assert (layer.n, layer.k, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    expected = lrn_direct(a, k=2.0, n=5, alpha=1e-4, beta=0.75)
    assert_close(layer.forward(a), expected, 1e-12, "LRN forward vs the paper's formula")
    # And the normalisation really does something at this scale.
    assert gradcheck.relative_error(expected, a / 2.0 ** 0.75) > 1e-3


@pytest.mark.parametrize("n, channels", [(5, 7), (3, 4), (5, 2)])
def test_lrn_gradients(n, channels):
    rng = np.random.default_rng(71)
    # A large alpha, so the cross-channel term of the gradient matters.
    layer = L.LRN(n=n, k=2.0, alpha=0.5, beta=0.75)
    assert_gradients(layer, rng.standard_normal((2, channels, 3, 3)), rng)


def test_lrn_rejects_even_size():
    with pytest.raises(ValueError, match="odd"):
        L.LRN(n=4)


# -------------------------------------------------------------- Dropout ----

def test_dropout_train_and_test_modes():
    ratio = 0.3
    layer = L.Dropout(ratio, rng=np.random.default_rng(80))
    x = np.ones((200, 500), dtype=np.float32)
    y_train = layer.forward(x, train=True)
    zeroed = float(np.mean(y_train == 0))
    assert abs(zeroed - ratio) < 0.01, f"train mode zeroed {zeroed:.4f} of units, expected {ratio}"
    assert np.all((y_train == 0) | (y_train == 1)), "kept units must pass unchanged"
    y_test = layer.forward(x, train=False)
    assert y_test.dtype == np.float32
    assert np.array_equal(y_test, np.full_like(x, 1 - ratio)), "test mode must scale by 1 - ratio"
    assert not np.array_equal(y_train, y_test)


def test_dropout_uses_its_own_generator():
    x = np.ones((4, 50))
    a = L.Dropout(0.5, rng=np.random.default_rng(5)).forward(x, train=True)
    b = L.Dropout(0.5, rng=np.random.default_rng(5)).forward(x, train=True)
    c = L.Dropout(0.5, rng=np.random.default_rng(6)).forward(x, train=True)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("train", [True, False])
def test_dropout_gradients(train):
    rng = np.random.default_rng(81)
    layer = L.Dropout(0.4, rng=np.random.default_rng(82))
    assert_gradients(layer, rng.standard_normal((4, 6)), rng, train=train)


def test_dropout_rejects_bad_ratio():
    for ratio in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ratio"):
            L.Dropout(ratio)


# ----------------------------------------------------------------- loss ----

@pytest.mark.parametrize("dout", [1.0, 0.25])
def test_softmax_with_loss_gradient(dout):
    rng = np.random.default_rng(90)
    score = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, size=5)
    loss = SoftmaxWithLoss()
    f = lambda: dout * loss.forward(score, t)   # noqa: E731
    numeric = gradcheck.numerical_gradient(f, score)
    loss.forward(score, t)
    analytic = loss.backward(dout)
    assert_close(analytic, numeric, TOL, "SoftmaxWithLoss gradient")


def test_softmax_with_loss_value():
    score = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = np.array([2, 0])
    p = np.exp(score) / np.exp(score).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[[0, 1], t]))
    assert SoftmaxWithLoss().forward(score, t) == pytest.approx(expected, rel=1e-14)


def test_softmax_with_loss_one_hot_equals_index_labels():
    rng = np.random.default_rng(91)
    score = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, size=6)
    by_index, by_one_hot = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert by_index.forward(score, t) == by_one_hot.forward(score, np.eye(5)[t])
    assert np.array_equal(by_index.backward(), by_one_hot.backward())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_with_loss_huge_scores(dtype):
    score = np.array([[1e30, -1e30, 0.0], [0.0, 5e4, -5e4]], dtype=dtype)
    loss = SoftmaxWithLoss()
    value = loss.forward(score, np.array([1, 1]))
    assert np.isfinite(value) and value > 1e29, f"loss {value} for a confidently wrong answer"
    assert loss.forward(score, np.array([0, 1])) == 0.0
    assert np.all(np.isfinite(loss.backward()))


@pytest.mark.parametrize("t", [
    np.array([0, 1, 2]),                # too few labels
    np.array([[0, 1, 2, 3]]),           # wrong 2-D shape
    np.zeros((4, 1, 1), dtype=int),     # 3-D
    np.array([0, 1, 2, 4]),             # label == K
    np.array([0, -1, 2, 3]),            # negative
    np.eye(5)[[0, 1, 2, 3]],            # one-hot of the wrong width
], ids=["short", "2d_wrong", "3d", "too_big", "negative", "one_hot_wrong_width"])
def test_softmax_with_loss_rejects_bad_labels(t):
    score = np.zeros((4, 4))
    with pytest.raises(ValueError, match="label"):
        SoftmaxWithLoss().forward(score, t)


def test_softmax_with_loss_rejects_bad_scores():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        SoftmaxWithLoss().forward(np.zeros((2, 3, 1)), np.array([0, 1]))


# ------------------------------------------------ RBF output, MAP loss ----

def test_rbf_gradients():
    rng = np.random.default_rng(95)
    codes = rng.choice([-1.0, 1.0], size=(4, 6))
    assert_gradients(L.RBF(codes, dtype="float64"), rng.standard_normal((3, 6)), rng)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rbf_forward_is_minus_squared_distance(dtype):
    rng = np.random.default_rng(96)
    codes = rng.choice([-1.0, 1.0], size=(5, 7))
    x = rng.uniform(-1.7, 1.7, (4, 7)).astype(dtype)
    penalty = ((x[:, None, :].astype(np.float64) - codes[None]) ** 2).sum(axis=2)   # eq. 7
    score = L.RBF(codes, dtype=dtype).forward(x)
    assert score.dtype == np.dtype(dtype)
    assert_close(score, -penalty, 1e-6 if dtype == "float32" else 1e-13, "RBF scores")


def test_rbf_rejects_bad_input():
    layer = L.RBF(np.ones((3, 4)), dtype="float64")
    with pytest.raises(ValueError, match="4 features"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        layer.forward(np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        L.RBF(np.ones(4))


@pytest.mark.parametrize("dout", [1.0, 0.25])
def test_map_loss_gradient(dout):
    rng = np.random.default_rng(97)
    score = -rng.uniform(0, 5, (5, 4))
    t = rng.integers(0, 4, size=5)
    loss = MAPLoss(j=2.0)
    numeric = gradcheck.numerical_gradient(lambda: dout * loss.forward(score, t), score)
    loss.forward(score, t)
    assert_close(loss.backward(dout), numeric, TOL, "MAPLoss gradient")


def test_map_loss_is_the_papers_equation_9():
    rng = np.random.default_rng(98)
    penalty = rng.uniform(0, 30, (6, 10))
    t = rng.integers(0, 10, size=6)
    j = 10.0
    expected = np.mean(penalty[np.arange(6), t] + np.log(np.exp(-j) + np.exp(-penalty).sum(axis=1)))
    loss = MAPLoss(j)
    assert loss.forward(-penalty, t) == pytest.approx(expected, rel=1e-12)
    # Its probabilities cover the K classes only: argmax picks a real class.
    assert loss.y.shape == (6, 10) and np.all(loss.y.sum(axis=1) < 1)


def test_map_loss_stops_pushing_when_wrong_penalties_exceed_j():
    # Right penalty far below j, wrong ones far above: nothing left to learn.
    score = -np.array([[0.5, 200.0, 300.0]])
    loss = MAPLoss(j=50.0)
    assert loss.forward(score, np.array([0])) < 1e-20
    assert np.abs(loss.backward()).max() < 1e-20


def test_map_loss_predictions_survive_underflowing_probabilities():
    # Every penalty far above j: float32 probabilities underflow to zero,
    # and the trainer must still count class 1 (the smallest penalty) right.
    score = -np.array([[120.0, 115.0, 130.0]], dtype=np.float32)
    loss = MAPLoss(j=10.0)
    loss.forward(score, np.array([1]))
    assert loss.score.argmax(axis=1)[0] == 1
    assert np.isfinite(loss.backward()).all()


# -------------------------------------------------------- dtypes, dout ----

def make_layer(name, dtype, rng):
    """A layer and a suitable input, for the tests that run over all layers."""
    table = [[1, 0, 1], [0, 1, 1]]
    makers = {
        "Convolution": lambda: (L.Convolution(3, 4, (3, 2), stride=(2, 1), pad=1, dtype=dtype,
                                              rng=rng), (2, 3, 6, 5)),
        "ConvolutionGroups": lambda: (L.Convolution(4, 2, 3, groups=2, dtype=dtype, rng=rng),
                                      (2, 4, 5, 5)),
        "ConvolutionTable": lambda: (L.Convolution(3, 2, 3, table=table, dtype=dtype, rng=rng),
                                     (2, 3, 5, 5)),
        "MaxPooling": lambda: (L.MaxPooling(3, 2, pad=1, ceil_mode=True), (2, 3, 6, 5)),
        "AvgPooling": lambda: (L.AvgPooling(3, 2, pad=1), (2, 3, 6, 5)),
        "Subsampling": lambda: (L.Subsampling(3, dtype=dtype, rng=rng), (2, 3, 6, 6)),
        "Affine": lambda: (L.Affine(12, 5, dtype=dtype, rng=rng), (2, 3, 2, 2)),
        "Flatten": lambda: (L.Flatten(), (2, 3, 2, 2)),
        "ReLU": lambda: (L.ReLU(), (2, 3, 4)),
        "Sigmoid": lambda: (L.Sigmoid(), (2, 3, 4)),
        "Tanh": lambda: (L.Tanh(), (2, 3, 4)),
        "ScaledTanh": lambda: (L.ScaledTanh(), (2, 3, 4)),
        "LRN": lambda: (L.LRN(alpha=0.1), (2, 6, 3, 3)),
        "DropoutTrain": lambda: (L.Dropout(0.5, rng=rng), (2, 3, 4)),
        "DropoutTest": lambda: (L.Dropout(0.5, rng=rng), (2, 3, 4)),
        "RBF": lambda: (L.RBF(rng.choice([-1.0, 1.0], size=(3, 4)), dtype=dtype), (2, 4)),
    }
    layer, shape = makers[name]()
    return layer, distinct(shape, rng, spacing=0.1).astype(dtype)


ALL_LAYERS = ["Convolution", "ConvolutionGroups", "ConvolutionTable", "MaxPooling", "AvgPooling",
              "Subsampling", "Affine", "Flatten", "ReLU", "Sigmoid", "Tanh", "ScaledTanh", "LRN",
              "DropoutTrain", "DropoutTest", "RBF"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL_LAYERS)
def test_dtype_is_preserved(name, dtype):
    rng = np.random.default_rng(100)
    layer, x = make_layer(name, dtype, rng)
    y = layer.forward(x, train=name == "DropoutTrain")
    assert y.dtype == np.dtype(dtype), f"{name}: {dtype} input gave {y.dtype} output"
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.dtype(dtype), f"{name}: {dtype} dout gave {dx.dtype} dx"
    assert dx.shape == x.shape
    for key, p in layer.params.items():
        assert p.data.dtype == p.grad.dtype == np.dtype(dtype), f"{name}/{key}: {p!r}"


@pytest.mark.parametrize("name", ["Convolution", "ConvolutionTable", "Subsampling", "Affine",
                                  "RBF"])
def test_float64_input_to_float32_layer_raises(name):
    rng = np.random.default_rng(101)
    layer, x = make_layer(name, "float32", rng)
    with pytest.raises(TypeError, match="float32"):
        layer.forward(x.astype(np.float64))


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_backward_does_not_modify_dout(name):
    rng = np.random.default_rng(102)
    layer, x = make_layer(name, "float64", rng)
    y = layer.forward(x, train=name == "DropoutTrain")
    dout = rng.standard_normal(y.shape)
    passed = dout.copy()
    dx = layer.backward(passed)
    assert np.array_equal(passed, dout), f"{name}.backward modified dout"
    # Nor may the returned gradient share memory with dout, or a later
    # in-place update of dx would reach back into the layer above.
    assert not np.shares_memory(dx, passed) or name == "Flatten"


def test_softmax_backward_keeps_its_probabilities():
    rng = np.random.default_rng(103)
    loss = SoftmaxWithLoss()
    loss.forward(rng.standard_normal((3, 4)), np.array([0, 1, 2]))
    y = loss.y.copy()
    first = loss.backward()
    assert np.array_equal(loss.y, y)
    assert np.array_equal(loss.backward(), first), "backward is not repeatable"


# ------------------------------------------------------ masked weights ----

@pytest.mark.parametrize("make_optimizer", [
    lambda: optimizers.SGD(lr=0.1, weight_decay=0.01),
    lambda: optimizers.Momentum(lr=0.1, momentum=0.9, weight_decay=0.0005),
    lambda: optimizers.Adam(lr=0.01),
], ids=["SGD", "Momentum", "Adam"])
def test_masked_weights_stay_zero_under_updates(make_optimizer):
    rng = np.random.default_rng(110)
    table = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    layer = L.Convolution(3, 4, 3, table=table, dtype="float32", rng=rng)
    W = layer.params["W"]
    W.name, layer.params["b"].name = "conv/W", "conv/b"
    optimizer = make_optimizer()
    off = ~table.astype(bool)
    before = W.data.copy()
    for _ in range(5):
        y = layer.forward(rng.standard_normal((2, 3, 5, 5)).astype(np.float32), train=True)
        layer.backward(rng.standard_normal(y.shape).astype(np.float32))
        optimizer.update(list(layer.params.values()))
    assert np.all(W.data[off] == 0), (
        f"masked weights moved: largest {np.abs(W.data[off]).max():.3g}")
    assert not np.array_equal(W.data[~off], before[~off]), "the free weights did not train"
