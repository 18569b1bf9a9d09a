"""Networks, model builders, initialisers, optimizers and schedules.

A network is tested by overfitting one batch; LeNet-5 by its parameter count
and connection table against the paper; optimizers against updates computed
by hand from their published rules.
"""
import numpy as np
import pytest

from zeronet import initializers, models, optimizers
from zeronet import layers as L
from zeronet.layers import Parameter
from zeronet.losses import MAPLoss, SoftmaxWithLoss
from zeronet.network import Sequential
from zeronet.trainer import Trainer


def small_convnet(rng, dtype="float32", num_classes=4, **kwargs):
    """conv - relu - pool - affine - relu - affine on (N, 1, 8, 8)."""
    return Sequential([
        ("conv1", L.Convolution(1, 6, 3, pad=1, dtype=dtype, rng=rng)),
        ("relu1", L.ReLU()),
        ("pool1", L.MaxPooling(2)),
        ("fc1", L.Affine(6 * 4 * 4, 32, dtype=dtype, rng=rng)),
        ("relu2", L.ReLU()),
        ("fc2", L.Affine(32, num_classes, dtype=dtype, rng=rng)),
    ], **kwargs)


# ------------------------------------------------------------ Sequential ----

def test_parameters_get_qualified_names():
    net = small_convnet(np.random.default_rng(0))
    names = [p.name for p in net.parameters()]
    assert names == ["conv1/W", "conv1/b", "fc1/W", "fc1/b", "fc2/W", "fc2/b"]
    assert list(net.layers) == ["conv1", "relu1", "pool1", "fc1", "relu2", "fc2"]
    assert net.num_parameters() == (6 * 9 + 6) + (96 * 32 + 32) + (32 * 4 + 4)


@pytest.mark.parametrize("names", [("a", "a"), ("a", ""), ("a", "b/c")])
def test_bad_layer_names_raise(names):
    with pytest.raises(ValueError, match="unique"):
        Sequential([(name, L.ReLU()) for name in names])


@pytest.mark.parametrize("input_grad", ["yes", 1, None])
def test_input_grad_must_be_a_flag(input_grad):
    with pytest.raises(TypeError, match="input_grad must be True or False"):
        Sequential([("fc", L.Affine(4, 2))], input_grad=input_grad)


@pytest.mark.parametrize("input_grad", [False, True])
def test_backward_fills_every_grad(input_grad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 8, 8))
    t = np.array([0, 1, 2])
    net = small_convnet(np.random.default_rng(1), dtype="float64", input_grad=input_grad)
    net.loss(x, t)
    dx = net.backward()
    if input_grad:
        assert dx.shape == x.shape and dx.dtype == np.float64
    else:
        assert dx is None, "by default the input gradient is skipped"
    grads = {p.name: p.grad.copy() for p in net.parameters()}
    for name, g in grads.items():
        assert np.any(g != 0), f"{name} got no gradient"
    # Skipping the input gradient must not change the parameter gradients.
    other = small_convnet(np.random.default_rng(1), dtype="float64", input_grad=not input_grad)
    other.loss(x, t)
    other.backward()
    for p in other.parameters():
        assert np.array_equal(p.grad, grads[p.name]), p.name


def test_network_gradient_matches_numerical():
    from zeronet.gradcheck import numerical_gradient, relative_error
    rng = np.random.default_rng(2)
    net = Sequential([
        ("conv", L.Convolution(2, 3, (3, 2), stride=(1, 2), pad=1, dtype="float64", rng=rng)),
        ("act", L.Tanh()),
        ("pool", L.AvgPooling(2)),
        ("fc", L.Affine(3 * 2 * 1, 3, dtype="float64", rng=rng)),
    ], input_grad=True)
    x, t = rng.standard_normal((2, 2, 5, 5)), np.array([0, 2])
    net.loss(x, t)
    dx = net.backward()
    for name, analytic, array in [("x", dx, x), *((p.name, p.grad, p.data)
                                                   for p in net.parameters())]:
        numeric = numerical_gradient(lambda: net.loss(x, t), array)
        err = relative_error(analytic, numeric)
        assert err < 1e-5, f"{name}: relative error {err:.3g}"


def test_small_convnet_overfits_one_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    t = np.arange(16) % 4
    net = small_convnet(rng)
    adam = optimizers.Adam(lr=0.01)
    params = net.parameters()
    for step in range(300):
        loss = net.loss(x, t)
        net.backward()
        adam.update(params)
        if step % 10 == 0 and net.accuracy(x, t) == 1.0:
            break
    accuracy = net.accuracy(x, t)
    assert accuracy == 1.0, f"training accuracy {accuracy:.3f} after {step + 1} steps, loss {loss:.4f}"
    assert net.predict(x).dtype == np.float32


def test_dropout_network_differs_between_train_and_test():
    rng = np.random.default_rng(4)
    net = Sequential([("fc1", L.Affine(10, 20, rng=rng)), ("relu", L.ReLU()),
                      ("drop", L.Dropout(0.5, rng=np.random.default_rng(5))),
                      ("fc2", L.Affine(20, 3, rng=rng))])
    x = rng.standard_normal((4, 10)).astype(np.float32)
    a, b = net.predict(x, train=True), net.predict(x, train=False)
    assert not np.array_equal(a, b)
    assert np.array_equal(b, net.predict(x, train=False)), "test mode must be deterministic"
    assert not np.array_equal(a, net.predict(x, train=True)), "train mode must draw new masks"
    assert set(net.generators()) == {"drop/rng"}


def test_predict_batched_and_accuracy():
    rng = np.random.default_rng(6)
    net = models.mlp(rng, (8,), in_features=5, num_classes=3)
    x = rng.standard_normal((25, 5)).astype(np.float32)
    assert np.array_equal(net.predict_batched(x, batch_size=7), net.predict(x))
    t = net.predict(x).argmax(axis=1)
    assert net.accuracy(x, t, batch_size=4) == 1.0
    assert net.accuracy(x, (t + 1) % 3) == 0.0


def test_predict_until_a_layer_gives_its_features():
    rng = np.random.default_rng(8)
    net = small_convnet(rng)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    by_hand = x
    for name in ("conv1", "relu1", "pool1", "fc1", "relu2"):
        by_hand = net.layers[name].forward(by_hand)
    features = net.predict(x, until="relu2")
    assert features.shape == (5, 32) and np.array_equal(features, by_hand)
    # Other batch sizes may sum in another order: equal up to rounding.
    np.testing.assert_allclose(net.predict_batched(x, batch_size=2, until="relu2"), features,
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(net.predict(x, until="fc2"), net.predict(x))    # the last layer
    with pytest.raises(ValueError, match="no layer named 'relu7'"):
        net.predict(x, until="relu7")


def test_config_round_trip():
    rng = np.random.default_rng(7)
    net = models.lenet5(rng)
    rebuilt = Sequential.from_config(net.config())
    assert rebuilt.config() == net.config()
    assert [p.name for p in rebuilt.parameters()] == [p.name for p in net.parameters()]
    with pytest.raises(ValueError, match="unknown layer type"):
        Sequential.from_config({"layers": [{"name": "x", "type": "Nope", "config": {}}]})
    with pytest.raises(ValueError, match="unknown loss type"):
        Sequential.from_config({"layers": [], "loss": {"type": "Nope", "config": {}}})


def test_config_records_only_a_non_default_loss():
    # Files written before losses were recorded must still match their nets.
    assert "loss" not in models.lenet5(np.random.default_rng(7)).config()
    rbf = models.lenet5(np.random.default_rng(7), output="rbf", rubbish_penalty=3.0)
    assert rbf.config()["loss"] == {"type": "MAPLoss", "config": {"j": 3.0}}
    rebuilt = Sequential.from_config(rbf.config())
    assert isinstance(rebuilt.loss_layer, MAPLoss) and rebuilt.loss_layer.j == 3.0


# ---------------------------------------------------------------- models ----

# LeCun et al. 1998, Table 1, as printed: rows are S2 maps 0-5, columns are
# C3 maps 0-15; X marks a connection.
PAPER_TABLE_1 = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def paper_c3_table():
    rows = PAPER_TABLE_1.split()
    return np.array([[c == "X" for c in row] for row in rows]).T.astype(int)   # (16, 6)


def test_lenet5_c3_table_matches_paper():
    table = paper_c3_table()
    assert table.shape == (16, 6) and table.sum() == 60
    assert np.array_equal(models.lenet5_c3_table(), table), (
        "C3 rows differing from Table 1: "
        f"{np.flatnonzero((models.lenet5_c3_table() != table).any(axis=1)).tolist()}")
    c3 = models.lenet5(np.random.default_rng(8)).layers["c3"]
    assert np.array_equal(c3.table, table.astype(bool))
    off = ~table.astype(bool)
    assert np.all(c3.params["W"].data[off] == 0)


def test_lenet5_has_60000_parameters_through_f6():
    net = models.lenet5(np.random.default_rng(9))
    counts = {name: sum(p.trainable_size for p in layer.params.values())
              for name, layer in net.layers.items() if layer.params}
    expected = {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    for name, n in expected.items():
        assert counts[name] == n, f"{name} has {counts[name]} trainable parameters, paper: {n}"
    assert sum(expected.values()) == 60000
    assert counts["output"] == 84 * 10 + 10
    assert net.num_parameters() == 60000 + 850


def test_lenet5_with_rbf_output_has_exactly_60000_parameters():
    # The paper's count: the RBF codes are fixed, so nothing is added.
    net = models.lenet5(np.random.default_rng(9), output="rbf")
    assert net.num_parameters() == 60000
    assert isinstance(net.loss_layer, MAPLoss)
    digits = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert net.predict(digits).shape == (3, 10)
    with pytest.raises(ValueError, match="output"):
        models.lenet5(np.random.default_rng(9), output="rbf2")
    with pytest.raises(ValueError, match="10 digits"):
        models.lenet5(np.random.default_rng(9), output="rbf", num_classes=4)


def test_digit_codes_are_distinct_7x12_bitmaps():
    codes = models.digit_codes()
    assert codes.shape == (10, 84) and codes.dtype == np.float32
    assert set(np.unique(codes)) == {-1.0, 1.0}
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    off_diagonal = hamming[~np.eye(10, dtype=bool)]
    # 8 differing bits (6 against 8) is the closest pair: at a code, the
    # penalty of the nearest wrong code is 4 * 8 = 32.
    assert off_diagonal.min() >= 8, hamming


@pytest.mark.parametrize("num_classes", [1, 10, 83])
def test_hadamard_codes_are_balanced_and_equidistant(num_classes):
    codes = models.hadamard_codes(num_classes, dtype="float64")
    assert codes.shape == (num_classes, 84)
    assert set(np.unique(codes)) == {-1.0, 1.0}
    # Orthogonal rows (H H^T = 84 I), each with as many +1 as -1: so every
    # two codes differ in exactly half of their 84 places.
    assert np.array_equal(codes @ codes.T, 84 * np.eye(num_classes))
    assert np.array_equal(codes.sum(axis=1), np.zeros(num_classes))
    assert models.hadamard_codes().dtype == np.float32


def test_hadamard_codes_reject_more_classes_than_the_matrix_has():
    with pytest.raises(ValueError, match="84"):
        models.hadamard_codes(84)
    with pytest.raises(ValueError, match="84"):
        models.hadamard_codes(0)


def test_lenet5_takes_either_set_of_codes():
    rng = np.random.default_rng(5)
    net = models.lenet5(rng, output="rbf", codes="hadamard")
    assert np.array_equal(net.layers["output"].codes, models.hadamard_codes())
    assert net.num_parameters() == 60000        # the codes are fixed, not trained
    assert np.array_equal(models.lenet5(rng, output="rbf").layers["output"].codes,
                          models.digit_codes())
    with pytest.raises(ValueError, match="codes"):
        models.lenet5(rng, output="rbf", codes="random")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet5_shapes(dtype):
    net = models.lenet5(np.random.default_rng(10), dtype=dtype)
    x = np.random.default_rng(11).standard_normal((3, 1, 32, 32)).astype(dtype)
    y = net.predict(x)
    assert y.shape == (3, 10) and y.dtype == np.dtype(dtype)
    assert models.lenet5(np.random.default_rng(10), num_classes=4).predict(
        x.astype(np.float32)).shape == (3, 4)
    full = models.lenet5(np.random.default_rng(10), full_c3=True)
    assert full.layers["c3"].table is None
    assert full.num_parameters() == 60000 + 850 + (96 - 60) * 25


def test_lenet5_is_reproducible_from_its_seed():
    a = models.lenet5(np.random.default_rng(12)).parameters()
    b = models.lenet5(np.random.default_rng(12)).parameters()
    c = models.lenet5(np.random.default_rng(13)).parameters()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a, b))
    assert not np.array_equal(a[0].data, c[0].data)


def test_mlp_shapes():
    rng = np.random.default_rng(14)
    net = models.mlp(rng, (300, 100))
    shapes = [(p.name, p.data.shape) for p in net.parameters()]
    assert shapes == [("fc1/W", (784, 300)), ("fc1/b", (300,)), ("fc2/W", (300, 100)),
                      ("fc2/b", (100,)), ("output/W", (100, 10)), ("output/b", (10,))]
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert net.predict(x).shape == (2, 10)
    linear = models.mlp(rng, (), in_features=20, num_classes=3)
    assert [p.data.shape for p in linear.parameters()] == [(20, 3), (3,)]
    assert models.mlp(rng, (5,), activation="relu").layers["fc1_act"].__class__ is L.ReLU


# ---------------------------------------------------------- initialisers ----

def test_lecun_uniform_bounds():
    rng = np.random.default_rng(15)
    W = L.Affine(100, 200, rng=rng, weight_init="LeCunUniform").params["W"].data
    bound = 2.4 / 100
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.99 * bound, "weights do not fill the range"
    assert abs(W.mean()) < 0.02 * bound


def test_lecun_uniform_uses_per_map_fan_in_for_a_table_convolution():
    c3 = models.lenet5(np.random.default_rng(16)).layers["c3"]
    W = c3.params["W"].data.astype(np.float64)
    for o, inputs in enumerate(models.LENET5_C3_INPUTS):
        fan_in = len(inputs) * 25
        largest = np.abs(W[o]).max()
        assert largest <= 2.4 / fan_in * (1 + 1e-6), (
            f"C3 map {o}: |w| up to {largest:.4g}, bound 2.4/{fan_in} = {2.4 / fan_in:.4g}")
        assert largest > 0.8 * 2.4 / fan_in, f"C3 map {o}: weights far inside the bound"


@pytest.mark.parametrize("name, fan_in, std", [
    ({"type": "Gaussian", "std": 0.01}, 50, 0.01),
    ("He", 50, np.sqrt(2 / 50)),
    ("Xavier", 50, np.sqrt(1 / 50)),
])
def test_gaussian_initialisers_std(name, fan_in, std):
    init = initializers.get(name)
    w = init((400, 500), fan_in, 500, np.random.default_rng(17), np.float32)
    assert w.dtype == np.float32 and w.shape == (400, 500)
    assert abs(w.std() / std - 1) < 0.01, f"std {w.std():.5g}, expected {std:.5g}"
    assert abs(w.mean()) < 0.01 * std


def test_initialiser_lookup():
    rng = np.random.default_rng(18)
    assert np.array_equal(initializers.get(1.0)((3,), 1, 1, rng, np.float64), np.ones(3))
    assert isinstance(initializers.get({"type": "Gaussian", "std": 2.0}), initializers.Gaussian)
    with pytest.raises(ValueError, match="unknown initialiser"):
        initializers.get("Glorot")
    with pytest.raises(ValueError, match="unknown initialiser"):
        initializers.get(True)


# ------------------------------------------------------------ optimizers ----

def two_parameters(grad_w, grad_b, w0, b0):
    w = Parameter(np.array(w0, dtype=np.float64), "layer/W")
    b = Parameter(np.array(b0, dtype=np.float64), "layer/b", decay=False)
    w.grad[...], b.grad[...] = grad_w, grad_b
    return w, b


def assert_exact(actual, expected, what):
    err = np.max(np.abs(np.asarray(actual) - np.asarray(expected)))
    assert err <= 1e-15, f"{what}: off by {err:.3g}: {actual} vs {expected}"


def test_sgd_with_weight_decay():
    w, b = two_parameters([0.5, -1.0], [2.0], [1.0, 3.0], [4.0])
    opt = optimizers.SGD(lr=0.1, weight_decay=0.01)
    opt.update([w, b])
    assert_exact(w.data, [1.0 - 0.1 * (0.5 + 0.01 * 1.0), 3.0 - 0.1 * (-1.0 + 0.01 * 3.0)], "W")
    assert_exact(b.data, [4.0 - 0.1 * 2.0], "bias (no decay)")
    assert opt.t == 1


def test_momentum_follows_krizhevsky_rule():
    # v <- 0.9 v - 0.0005 lr w - lr g;  w <- w + v   (Krizhevsky et al. 2012 §5)
    lr = 0.01
    w, b = two_parameters([0.5, -1.0], [2.0], [1.0, 3.0], [4.0])
    opt = optimizers.Momentum(lr=lr)
    assert (opt.momentum, opt.weight_decay) == (0.9, 0.0005)
    g1w, g1b = np.array([0.5, -1.0]), np.array([2.0])
    g2w, g2b = np.array([-0.25, 0.75]), np.array([-1.0])
    w_ref, b_ref = np.array([1.0, 3.0]), np.array([4.0])
    vw, vb = np.zeros(2), np.zeros(1)
    for gw, gb in ((g1w, g1b), (g2w, g2b)):
        w.grad[...], b.grad[...] = gw, gb
        opt.update([w, b])
        vw = 0.9 * vw - 0.0005 * lr * w_ref - lr * gw
        vb = 0.9 * vb - lr * gb                   # biases are not decayed
        w_ref, b_ref = w_ref + vw, b_ref + vb
        assert_exact(w.data, w_ref, f"Momentum W after step {opt.t}")
        assert_exact(b.data, b_ref, f"Momentum b after step {opt.t}")
    assert_exact(opt.slots["v/layer/W"], vw, "velocity slot")
    # Step two by hand with numbers: v2 = 0.9 v1 - 5e-6 w1 - 0.01 g2.
    v1 = -0.0005 * 0.01 * np.array([1.0, 3.0]) - 0.01 * g1w
    w1 = np.array([1.0, 3.0]) + v1
    assert_exact(w.data, w1 + 0.9 * v1 - 5e-6 * w1 - 0.01 * g2w, "Momentum W, written out")


def test_adam_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, b = two_parameters([0.5, -1.0], [2.0], [1.0, 3.0], [4.0])
    opt = optimizers.Adam(lr=lr, beta1=b1, beta2=b2, eps=eps)
    grads = [np.array([0.5, -1.0]), np.array([-0.25, 0.75])]
    m, v, w_ref = np.zeros(2), np.zeros(2), np.array([1.0, 3.0])
    for step, g in enumerate(grads, start=1):
        w.grad[...] = g
        opt.update([w])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        # The book's form (§6.1.6): bias correction folded into the rate.
        lr_t = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        w_ref = w_ref - lr_t * m / (np.sqrt(v) + eps)
        err = np.max(np.abs(w.data - w_ref))
        assert err < 1e-15, f"Adam step {step}: W off by {err:.3g}"
    # Step 1 of Adam moves every weight by about lr against its gradient's sign.
    # After two steps with these gradients, written out from the paper's form:
    m_hat = m / (1 - b1 ** 2)
    v_hat = v / (1 - b2 ** 2)
    first = np.array([1.0, 3.0]) - lr * np.sign(grads[0])
    paper = first - lr * m_hat / (np.sqrt(v_hat) + eps)
    assert np.max(np.abs(w.data - paper)) < 1e-8
    assert opt.t == 2 and set(opt.slots) == {"m/layer/W", "v/layer/W"}


def test_optimizer_state_dict_round_trip():
    w, _ = two_parameters([0.5, -1.0], [0.0], [1.0, 3.0], [0.0])
    opt = optimizers.Momentum(lr=0.1)
    opt.update([w])
    state = opt.state_dict()
    other = optimizers.Momentum(lr=0.5)
    other.load_state_dict(state)
    assert other.lr == 0.1 and other.t == 1
    assert np.array_equal(other.slots["v/layer/W"], opt.slots["v/layer/W"])
    other.slots["v/layer/W"][0] = 99.0
    assert opt.slots["v/layer/W"][0] != 99.0, "loaded state must not alias the original"


class DtypeSpy(np.ndarray):
    """An array that records the dtype of every array a NumPy ufunc makes
    from it, so a test can see the temporaries, not only the final result
    (an in-place ``p.data -= float64_temp`` casts back and hides them)."""

    made = []

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, DtypeSpy) else x for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, DtypeSpy) else o
                                  for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        DtypeSpy.made.append((ufunc.__name__, result.dtype))
        # Keep spying on whatever is computed from this temporary too.
        return result.view(DtypeSpy) if isinstance(result, np.ndarray) else result


@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(lr=0.5, average=0.75),
    lambda: optimizers.Momentum(lr=0.5, weight_decay=0.0, average=0.75),
    lambda: optimizers.Adam(lr=0.5, average=0.75),
], ids=["SGD", "Momentum", "Adam"])
def test_weight_average_by_hand(make):
    # a_1 = w_1 (the weights after the first update); then
    # a_t = a + (1 - d_t) (w_t - a) with d_t = min(0.75, (1 + t) / (10 + t)).
    w, b = two_parameters([0.5, -1.0], [2.0], [1.0, 3.0], [4.0])
    opt = make()
    average = None
    for step in range(1, 25):
        w.grad[...], b.grad[...] = [0.5 - step, -1.0], [2.0 + step]
        opt.update([w, b])
        decay = min(0.75, (1 + step) / (10 + step))
        average = w.data.copy() if average is None else average + (1 - decay) * (w.data - average)
    assert_exact(opt.slots["avg/layer/W"], average, "average of W")
    trained = w.data.copy()
    with opt.averaged([w, b]):
        assert_exact(w.data, average, "W inside averaged()")
    assert np.array_equal(w.data, trained), "averaged() must give the trained weights back"
    opt.apply_average([w, b])
    assert_exact(w.data, average, "W after apply_average()")


def test_weight_average_off_changes_nothing():
    w, b = two_parameters([0.5, -1.0], [2.0], [1.0, 3.0], [4.0])
    opt = optimizers.SGD(lr=0.1)
    opt.update([w, b])
    before = w.data.copy()
    with opt.averaged([w, b]):
        assert np.array_equal(w.data, before)
    opt.apply_average([w, b])
    assert np.array_equal(w.data, before) and not any(k.startswith("avg/") for k in opt.slots)


@pytest.mark.parametrize("average", [0.0, 1.0, -0.5])
def test_weight_average_outside_0_1_raises(average):
    with pytest.raises(ValueError, match=r"average must be in \(0, 1\)"):
        optimizers.Momentum(average=average)


@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(lr=0.1, weight_decay=0.01),
    lambda: optimizers.Momentum(lr=0.1),
    lambda: optimizers.Adam(lr=0.1),
    lambda: optimizers.Momentum(lr=0.1, average=0.999),
], ids=["SGD", "Momentum", "Adam", "Momentum-averaged"])
# A NumPy float64 rate is what a schedule written with NumPy might set.
@pytest.mark.parametrize("lr", [0.05, np.float64(0.05)], ids=["float", "np.float64"])
def test_float32_updates_make_no_float64_temporaries(make, lr):
    rng = np.random.default_rng(0)
    w = Parameter(rng.standard_normal((3, 2)).astype(np.float32).view(DtypeSpy), "layer/W")
    w.grad[...] = rng.standard_normal((3, 2))
    opt = make()
    opt.lr = lr
    DtypeSpy.made.clear()
    for _ in range(2):
        opt.update([w])
    upcast = sorted({name for name, dtype in DtypeSpy.made if dtype != np.float32})
    assert not upcast, f"{type(opt).__name__} made non-float32 temporaries in {upcast}"
    assert w.data.dtype == np.float32
    assert all(s.dtype == np.float32 for s in opt.slots.values()), \
        {k: s.dtype for k, s in opt.slots.items()}


# ------------------------------------------------------------- schedules ----

def test_piecewise_constant():
    schedule = optimizers.PiecewiseConstant([2, 5], [0.1, 0.01, 0.001])
    assert [schedule.lr(e) for e in range(7)] == [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(ValueError):
        optimizers.PiecewiseConstant([2, 5], [0.1, 0.01])
    with pytest.raises(ValueError):
        optimizers.PiecewiseConstant([5, 2], [0.1, 0.01, 0.001])


def test_reduce_on_plateau_divides_by_ten_after_patience_epochs():
    schedule = optimizers.ReduceOnPlateau(0.1, patience=2)
    rates = []
    for epoch, val_error in enumerate([0.5, 0.4, 0.4, 0.45, 0.3, 0.31, 0.32, 0.33, 0.34]):
        rates.append(schedule.lr(epoch))
        schedule.observe(epoch, val_error)
    rates.append(schedule.lr(9))
    expected = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.0001]
    assert rates == pytest.approx(expected, rel=1e-12), rates
    assert schedule.reductions == 3


def test_reduce_on_plateau_state_and_floor():
    schedule = optimizers.ReduceOnPlateau(0.1, patience=1, min_lr=0.005)
    for epoch, val_error in enumerate([0.5, 0.6, 0.6, 0.6]):
        schedule.observe(epoch, val_error)
    assert schedule.lr(4) == pytest.approx(0.01), "min_lr must stop the reductions"
    copy = optimizers.ReduceOnPlateau(1.0)
    copy.load_state_dict(schedule.state_dict())
    assert copy.state_dict() == schedule.state_dict()


def test_reduce_on_plateau_deadlines_and_termination():
    # Steady progress: no plateau, so only the deadlines divide the rate.
    schedule = optimizers.ReduceOnPlateau(1.0, patience=2, latest=[3, 5], max_reductions=2)
    rates = []
    for epoch in range(7):
        rates.append(schedule.lr(epoch))
        schedule.observe(epoch, 1.0 - 0.1 * epoch)
    assert rates == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-12), rates
    assert not schedule.finished, "still improving: training goes on"
    # Two reductions made; the next plateau (patience 2) ends training.
    schedule.observe(7, 0.5)
    assert not schedule.finished
    schedule.observe(8, 0.5)
    assert schedule.finished and schedule.lr(9) == pytest.approx(0.01)
    copy = optimizers.ReduceOnPlateau(1.0)
    copy.load_state_dict(schedule.state_dict())
    assert copy.finished


def test_the_trainer_stops_when_the_schedule_has_finished(tmp_path):
    rng = np.random.default_rng(0)
    net = Sequential([("fc", L.Affine(4, 3, rng=rng))], SoftmaxWithLoss())
    x, t = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    # min_delta=1: no epoch after the first can count as an improvement.
    schedule = optimizers.ReduceOnPlateau(0.1, patience=1, min_delta=1.0, max_reductions=0)
    trainer = Trainer(net, optimizers.SGD(lr=0.1), epochs=10, batch_size=8, rng=rng,
                      schedule=schedule, checkpoint=tmp_path / "ck.h5", progress=False,
                      log=lambda line: None)
    # The first epoch sets the best, the second cannot improve on it, and
    # with max_reductions=0 that plateau ends training.
    history = trainer.fit(x, t, x[:8], t[:8])
    assert len(history) == 2 and schedule.finished
    resumed = Trainer(net, optimizers.SGD(lr=0.1), epochs=10, batch_size=8, rng=rng,
                      schedule=optimizers.ReduceOnPlateau(0.1), checkpoint=tmp_path / "ck.h5",
                      progress=False, log=lambda line: None)
    assert len(resumed.fit(x, t, x[:8], t[:8], resume=True)) == 2, "resuming a finished run"


def test_a_loss_of_your_own_still_saves_without_being_recorded():
    class L2:
        def forward(self, score, t):
            self.score = score
            return float(np.mean(score ** 2))

    net = Sequential([("fc", L.Affine(3, 2, rng=np.random.default_rng(0)))], L2())
    assert "loss" not in net.config()


def test_map_loss_rejects_a_non_positive_j():
    for j in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            MAPLoss(j)
