"""The paper's optimizer: stochastic diagonal Levenberg-Marquardt (SDLM).

Its curvature pass must compute, for every layer, the squared-Jacobian
propagation of LeCun et al. 1998, Appendix C:

    d2E/dx_j^2 = sum_i (dy_i/dx_j)^2 d2E/dy_i^2,   h_k = sum_i (dy_i/dw_k)^2 d2E/dy_i^2

The oracle builds the Jacobian row by row from ``backward`` (already checked
against numerical gradients in test_layers.py) and squares it: nothing of
the curvature code (zeronet/sdlm.py) is shared with it.
"""
import numpy as np
import pytest

from zeronet import models
from zeronet import layers as L
from zeronet.losses import MAPLoss, SoftmaxWithLoss
from zeronet.network import Sequential
from zeronet.sdlm import (SDLM, curvature_rule, layer_curvature, loss_curvature,
                          network_curvature)
from test_layers import CONV_CASES, CONV_PATHS, assert_close, distinct, make_conv, use_conv_path
from test_trainer import blobs, quiet_trainer

TOL = 1e-12     # float64; the oracle and the layer do the same sums in another order


def squared_jacobian_oracle(layer, x, d2out, train=False):
    """``(d2x, {param: curvature})`` from one-hot backward passes."""
    y = layer.forward(x, train=train)
    d2x = np.zeros_like(x)
    curvature = {k: np.zeros_like(p.data) for k, p in layer.params.items()}
    for i in range(y.size):
        unit = np.zeros_like(y)
        unit.flat[i] = 1.0
        d2x += layer.backward(unit) ** 2 * d2out.flat[i]     # row i of dy/dx
        for k, p in layer.params.items():
            curvature[k] += p.grad ** 2 * d2out.flat[i]
    return d2x, curvature


def assert_curvature_matches_oracle(make, x, rng, train=False):
    """``make()`` builds the layer afresh: the same parameters and, for
    Dropout, the same mask for the oracle's forward and the layer's."""
    layer = make()
    d2out = rng.uniform(0.1, 2.0, layer.forward(x, train=train).shape)   # never negative
    d2x_expected, curvature_expected = squared_jacobian_oracle(make(), x, d2out, train)
    layer = make()
    layer.forward(x, train=train)
    grads = {k: p.grad.copy() for k, p in layer.params.items()}
    d2x, curvature = layer_curvature(layer, d2out)
    assert_close(d2x, d2x_expected, TOL, f"{layer!r}: d2E/dx2")
    assert curvature.keys() == layer.params.keys()
    for k, p in layer.params.items():
        assert curvature[k].shape == p.data.shape and curvature[k].dtype == p.data.dtype
        assert_close(curvature[k], curvature_expected[k], TOL, f"{layer!r}: curvature of {k}")
        # The Trainer runs the pass between backward and the update.
        assert np.array_equal(p.grad, grads[k]), f"{layer!r}: the pass changed {k}'s grad"


@pytest.mark.parametrize("path", CONV_PATHS)
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_curvature(case, path, monkeypatch):
    kwargs, shape = CONV_CASES[case]
    use_conv_path(path, monkeypatch, kwargs)
    rng = np.random.default_rng(200)
    assert_curvature_matches_oracle(lambda: make_conv(kwargs, np.random.default_rng(7)),
                                    rng.standard_normal(shape), rng)


def test_table_convolution_keeps_missing_connections_at_zero_curvature():
    rng = np.random.default_rng(201)
    kwargs, shape = CONV_CASES["table"]
    layer = make_conv(kwargs, rng)
    y = layer.forward(rng.standard_normal(shape))
    _, curvature = layer_curvature(layer, rng.uniform(0.1, 1, y.shape))
    mask = layer.params["W"].mask
    assert np.all(curvature["W"][~mask] == 0) and np.all(curvature["W"][mask] > 0)


LAYER_CASES = {
    # name: (layer maker, input shape, train)
    "subsampling": (lambda: L.Subsampling(3, dtype="float64", rng=np.random.default_rng(1)),
                    (2, 3, 6, 4), False),
    "subsampling_odd": (lambda: L.Subsampling(2, (2, 3), dtype="float64",
                                              rng=np.random.default_rng(2)), (1, 2, 5, 7), False),
    "affine": (lambda: L.Affine(5, 4, dtype="float64", rng=np.random.default_rng(3)),
               (3, 5), False),
    "affine_4d": (lambda: L.Affine(8, 3, dtype="float64", rng=np.random.default_rng(4)),
                  (2, 2, 2, 2), False),
    "flatten": (L.Flatten, (2, 3, 2, 2), False),
    "max_pooling_overlapping": (lambda: L.MaxPooling(3, 2, 1, ceil_mode=True), (2, 2, 6, 7),
                                False),
    "avg_pooling_overlapping": (lambda: L.AvgPooling(3, 2, 1), (2, 2, 7, 6), False),
    "relu": (L.ReLU, (3, 7), False),
    "sigmoid": (L.Sigmoid, (3, 7), False),
    "tanh": (L.Tanh, (3, 7), False),
    "scaled_tanh": (L.ScaledTanh, (2, 3, 4), False),
    "dropout_train": (lambda: L.Dropout(0.4, rng=np.random.default_rng(6)), (4, 6), True),
    "dropout_test": (lambda: L.Dropout(0.4, rng=np.random.default_rng(6)), (4, 6), False),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_curvature(case):
    rng = np.random.default_rng(202)
    make, shape, train = LAYER_CASES[case]
    # Distinct values: no ties in max pooling, no zeros at ReLU's kink.
    assert_curvature_matches_oracle(make, distinct(shape, rng, 0.1), rng, train)


def test_layer_without_a_curvature_rule_says_so():
    layer = L.LRN()
    layer.forward(np.ones((1, 3, 2, 2)))
    with pytest.raises(NotImplementedError, match="LRN has no curvature rule"):
        layer_curvature(layer, np.ones((1, 3, 2, 2)))


def test_a_layer_of_your_own_gets_a_curvature_rule(monkeypatch):
    class Halving(L.Layer):
        def forward(self, x, *, train=False):
            return x / 2

        def backward(self, dout):
            return dout / 2

    class LoudTanh(L.Tanh):     # a subclass computes what its base computes
        pass

    monkeypatch.setattr("zeronet.sdlm.CURVATURE_RULES", {})
    with pytest.raises(NotImplementedError, match="Halving has no curvature rule"):
        layer_curvature(Halving(), np.ones((2, 3)))
    curvature_rule(Halving)(lambda layer, d2out: (d2out / 4, {}))
    curvature_rule(L.Tanh)(lambda layer, d2out: (layer.backward(layer.backward(d2out)), {}))
    assert np.array_equal(layer_curvature(Halving(), np.ones((2, 3)))[0], np.full((2, 3), 0.25))
    tanh = LoudTanh()
    tanh.forward(np.zeros((2, 3)))
    assert np.array_equal(layer_curvature(tanh, np.ones((2, 3)))[0], np.ones((2, 3)))


def test_plain_layers_and_parameters_carry_no_curvature_machinery():
    layer = L.Affine(3, 2)
    assert not any("curvature" in name for name in dir(layer))
    assert not any("curvature" in name for name in dir(layer.params["W"]))
    assert not any("curvature" in name for name in dir(Sequential([("fc", layer)])))
    assert not any("curvature" in name for name in dir(MAPLoss()))


def numerical_hessian_diagonal(gradient, x, eps=1e-6):
    """Central differences of ``gradient()`` (an array shaped as ``x``, the
    gradient of a scalar with respect to ``x``), entry i in direction i:
    d2f/dx_i^2. (Second differences of f itself lose six digits.)"""
    diag = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + eps
        g_plus = gradient()[i]
        x[i] = original - eps
        g_minus = gradient()[i]
        x[i] = original
        diag[i] = (g_plus - g_minus) / (2 * eps)
    return diag


def test_softmax_loss_curvature_is_the_exact_hessian_diagonal():
    rng = np.random.default_rng(203)
    loss = SoftmaxWithLoss()
    score = rng.normal(0, 2, (5, 4))
    t = rng.integers(0, 4, size=5)
    def gradient():
        loss.forward(score, t)
        return loss.backward()
    numeric = numerical_hessian_diagonal(gradient, score)
    loss.forward(score, t)
    assert_close(loss_curvature(loss), numeric, 1e-8, "SoftmaxWithLoss curvature")


def test_network_curvature_is_exact_for_an_affine_layer_into_the_loss():
    # With nothing between the weights and the loss, each weight moves one
    # score only, so the diagonal Gauss-Newton estimate is the true Hessian
    # diagonal: the whole pass checked against second differences of L.
    rng = np.random.default_rng(204)
    net = Sequential([("flat", L.Flatten()),
                      ("fc", L.Affine(6, 4, dtype="float64", rng=rng))])
    x, t = rng.standard_normal((7, 2, 3)), rng.integers(0, 4, size=7)
    def gradient_of(p):
        net.loss(x, t)
        net.backward()
        return p.grad.copy()
    for p in net.parameters():
        numeric = numerical_hessian_diagonal(lambda: gradient_of(p), p.data)
        net.loss(x, t)
        assert_close(network_curvature(net)[p.name], numeric, 1e-8, f"curvature of {p.name}")


def test_rbf_and_map_loss_give_the_papers_mse_curvature():
    # The paper estimates the curvature with the criterion y_D = |x - w_D|^2
    # (Appendix C). Through one affine layer that criterion is quadratic in
    # the weights, so the curvature pass must give its Hessian diagonal
    # exactly: checked against second differences of the criterion itself.
    rng = np.random.default_rng(207)
    codes = rng.choice([-1.0, 1.0], size=(3, 4))
    net = Sequential([("fc", L.Affine(5, 4, dtype="float64", rng=rng)),
                      ("rbf", L.RBF(codes, dtype="float64"))], MAPLoss(j=2.0))
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 3, size=6)

    def criterion():
        return np.mean(-net.predict(x)[np.arange(6), t])       # mean y_D

    eps = 1e-3      # a quadratic: second differences have no truncation error
    for p in net.parameters():
        numeric = np.zeros_like(p.data)
        for i in np.ndindex(p.data.shape):
            original = p.data[i]
            values = []
            for shift in (eps, 0.0, -eps):
                p.data[i] = original + shift
                values.append(criterion())
            p.data[i] = original
            numeric[i] = (values[0] - 2 * values[1] + values[2]) / eps ** 2
        net.loss(x, t)
        assert_close(network_curvature(net)[p.name], numeric, 1e-7, f"curvature of {p.name}")
    # At the RBF's input: 2 per input, for every example (mean over 6).
    net.loss(x, t)
    d2x, _ = layer_curvature(net.layers["rbf"], loss_curvature(net.loss_layer))
    assert np.allclose(d2x, 2 / 6)


def test_network_curvature_chains_the_layers_oracles():
    # Through several layers the pass is the paper's approximation, not the
    # true Hessian diagonal: what must hold is that the network hands each
    # layer's d2E/dx2 down to the layer below, from the loss's curvature.
    rng = np.random.default_rng(208)
    net = Sequential([("fc1", L.Affine(5, 6, dtype="float64", rng=rng)), ("act", L.Tanh()),
                      ("fc2", L.Affine(6, 3, dtype="float64", rng=rng))], input_grad=True)
    x, t = rng.standard_normal((4, 5)), rng.integers(0, 3, size=4)
    net.loss(x, t)
    d2 = loss_curvature(net.loss_layer)
    inputs = [x, net.layers["fc1"].forward(x)]
    inputs.append(net.layers["act"].forward(inputs[1]))
    expected = {}
    for (name, layer), layer_input in reversed(list(zip(net.layers.items(), inputs))):
        d2, curvature = squared_jacobian_oracle(layer, layer_input, d2)
        expected.update({f"{name}/{k}": v for k, v in curvature.items()})
    net.loss(x, t)
    net.backward()
    grads = {p.name: p.grad.copy() for p in net.parameters()}
    curvature = network_curvature(net)
    assert curvature.keys() == {p.name for p in net.parameters()}
    for p in net.parameters():
        assert_close(curvature[p.name], expected[p.name], TOL, f"curvature of {p.name}")
        assert np.array_equal(p.grad, grads[p.name]), f"the pass changed {p.name}'s grad"


@pytest.mark.parametrize("layers, loss", [
    ([("fc", L.Affine(4, 3)), ("rbf", L.RBF(np.ones((2, 3))))], SoftmaxWithLoss()),
    ([("fc", L.Affine(4, 3))], MAPLoss()),
], ids=["rbf_with_softmax", "map_loss_without_rbf"])
def test_curvature_pass_needs_rbf_and_map_loss_together(layers, loss):
    net = Sequential(layers, loss)
    net.loss(np.ones((2, 4), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="RBF output layer and the MAPLoss together"):
        network_curvature(net)


# ------------------------------------------------------------------ SDLM ----

@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_sdlm_step_is_rate_over_mu_plus_curvature(momentum):
    rng = np.random.default_rng(205)
    net = Sequential([("fc1", L.Affine(4, 5, dtype="float64", rng=rng)), ("act", L.Tanh()),
                      ("fc2", L.Affine(5, 3, dtype="float64", rng=rng))])
    x, t = rng.standard_normal((30, 4)), rng.integers(0, 3, size=30)
    sdlm = SDLM(lr=0.3, mu=0.05, momentum=momentum)
    sdlm.estimate_curvature(net, x, t, batch_size=7)   # uneven chunks: a weighted mean
    net.loss(x, t)
    h = network_curvature(net)
    velocity = {p.name: np.zeros_like(p.data) for p in net.parameters()}
    for batch in (slice(0, 8), slice(8, 16)):
        before = {p.name: p.data.copy() for p in net.parameters()}
        net.loss(x[batch], t[batch])
        net.backward()
        sdlm.update(net.parameters())
        for p in net.parameters():
            velocity[p.name] = momentum * velocity[p.name] - 0.3 / (0.05 + h[p.name]) * p.grad
            assert_close(p.data, before[p.name] + velocity[p.name], 1e-12,
                         f"SDLM update of {p.name}")


def test_sdlm_running_curvature_follows_every_batch():
    # Appendix C's running average: h moves towards each batch's curvature
    # by the fraction `running`, and the step uses the updated h.
    rng = np.random.default_rng(209)
    net = Sequential([("fc1", L.Affine(4, 5, dtype="float64", rng=rng)), ("act", L.Tanh()),
                      ("fc2", L.Affine(5, 3, dtype="float64", rng=rng))])
    x, t = rng.standard_normal((24, 4)), rng.integers(0, 3, size=24)
    sdlm = SDLM(lr=0.3, mu=0.05, running=0.25)
    sdlm.estimate_curvature(net, x, t)
    h = {p.name: sdlm.slots[f"h/{p.name}"].copy() for p in net.parameters()}
    for batch in (slice(0, 8), slice(8, 16)):
        before = {p.name: p.data.copy() for p in net.parameters()}
        net.loss(x[batch], t[batch])
        net.backward()
        sdlm.after_backward(net)
        batch_curvature = network_curvature(net)
        for p in net.parameters():
            h[p.name] += 0.25 * (batch_curvature[p.name] - h[p.name])
        sdlm.update(net.parameters())
        for p in net.parameters():
            assert_close(p.data, before[p.name] - 0.3 / (0.05 + h[p.name]) * p.grad, 1e-12,
                         f"SDLM update of {p.name}")


def test_sdlm_running_curvature_needs_each_batchs_curvature_pass():
    # Without a fresh curvature pass, a running update would silently reuse
    # old values: it must refuse (the trainer's per-batch pass prevents it).
    rng = np.random.default_rng(210)
    net = Sequential([("fc", L.Affine(4, 3, dtype="float64", rng=rng))])
    x, t = rng.standard_normal((10, 4)), rng.integers(0, 3, size=10)
    sdlm = SDLM(running=0.5)
    sdlm.estimate_curvature(net, x, t)
    net.loss(x, t)
    net.backward()
    with pytest.raises(RuntimeError, match=r"after_backward\(network\)"):
        sdlm.update(net.parameters())
    sdlm.after_backward(net)
    sdlm.update(net.parameters())          # fresh: accepted, and used up
    assert sdlm.batch_curvature == {}
    net.loss(x, t)
    net.backward()
    with pytest.raises(RuntimeError, match=r"after_backward\(network\)"):
        sdlm.update(net.parameters())


def test_sdlm_without_running_needs_no_pass_after_backward():
    rng = np.random.default_rng(211)
    net = Sequential([("fc", L.Affine(4, 3, dtype="float64", rng=rng))])
    x, t = rng.standard_normal((10, 4)), rng.integers(0, 3, size=10)
    sdlm = SDLM()
    sdlm.estimate_curvature(net, x, t)
    net.loss(x, t)
    net.backward()
    sdlm.after_backward(net)
    assert sdlm.batch_curvature == {}
    sdlm.update(net.parameters())


def test_sdlm_without_a_curvature_estimate_raises():
    net = Sequential([("fc", L.Affine(4, 3))])
    net.loss(np.ones((2, 4), np.float32), np.array([0, 1]))
    net.backward()
    with pytest.raises(RuntimeError, match="estimate_curvature"):
        SDLM().update(net.parameters())


@pytest.mark.parametrize("mu", [0.0, -1.0])
def test_sdlm_rejects_a_mu_that_does_not_bound_the_step(mu):
    with pytest.raises(ValueError, match="mu"):
        SDLM(mu=mu)
    with pytest.raises(ValueError, match="estimates_per_pass"):
        SDLM(estimates_per_pass=0)
    with pytest.raises(ValueError, match="running"):
        SDLM(running=1.5)


@pytest.mark.parametrize("momentum, running", [(0.0, None), (0.5, None), (0.0, 0.1)])
def test_trainer_with_sdlm_learns(momentum, running):
    x, t = blobs(0, n=300)
    (x, t), (xv, tv) = (x[:200], t[:200]), (x[200:], t[200:])
    net = models.mlp(np.random.default_rng(2), (16,), in_features=6, num_classes=3)
    trainer = quiet_trainer(net, SDLM(lr=0.02, samples=64, momentum=momentum, running=running),
                            epochs=5, batch_size=16, rng=np.random.default_rng(3))
    history = trainer.fit(x, t, xv, tv)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_error"] < 0.05


@pytest.mark.parametrize("per_pass", [1, 3, 6])
def test_trainer_estimates_the_curvature_before_every_pass_or_more_often(per_pass):
    x, t = blobs(0, n=100)
    net = models.mlp(np.random.default_rng(2), (8,), in_features=6, num_classes=3)
    sdlm = SDLM(lr=0.01, samples=30, estimates_per_pass=per_pass)
    calls = []
    estimate = sdlm.estimate_curvature
    sdlm.estimate_curvature = lambda *a, **k: (calls.append(len(a[1])), estimate(*a, **k))
    quiet_trainer(net, sdlm, epochs=2, batch_size=10, rng=np.random.default_rng(3)).fit(x, t)
    assert calls == [30] * 2 * per_pass      # 10 steps a pass: 6 do not divide them


@pytest.mark.parametrize("output", ["rbf", "softmax"])
def test_lenet5_has_a_curvature_pass_through_every_layer(output):
    rng = np.random.default_rng(206)
    net = models.lenet5(rng, output=output)
    # Digit-like input: mostly background, a few strokes of ink.
    digits = np.where(rng.random((20, 28, 28)) < 0.15, 255, 0).astype(np.uint8)
    sdlm = SDLM(mu=0.02)
    sdlm.estimate_curvature(net, digits, rng.integers(0, 10, size=20))
    for p in net.parameters():
        step = sdlm.slots[f"step/{p.name}"]
        assert step.dtype == np.float32 and np.all(np.isfinite(step)), p.name
        # Between 1/(mu + largest h) and 1/mu (masked-out C3 weights have no
        # curvature, so their step is 1/mu; their gradient is always 0).
        assert np.all(step > 0) and np.all(step <= np.float32(1 / 0.02)), p.name
        # Every parameter gets some curvature: the pass reaches C1.
        h = sdlm.slots[f"h/{p.name}"]
        assert np.all(h >= 0) and np.any(h > 0), p.name
    # The output end is never flat (the last bias: F6's before the RBF,
    # whose curvature is f'(a)^2 * 2; else the affine output's, y (1 - y)).
    last = net.parameters()[-1]
    assert np.all(sdlm.slots[f"step/{last.name}"] < 0.99 / 0.02), last.name
