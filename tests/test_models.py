"""The scaled AlexNet of zeronet.models (Krizhevsky et al. 2012 §3-5 at CIFAR-10 scale).

Shapes and parameter counts are worked out here by hand from the layer sizes,
for the defaults and for each option; a tiny-width AlexNet is checked end to
end against numerical gradients in float64; a saved AlexNet must predict
exactly as the one it was saved from.
"""
import numpy as np
import pytest

import zeronet
from zeronet import layers as L
from zeronet import models
from zeronet.augment import predict_views
from zeronet.gradcheck import numerical_gradient, relative_error


def cifar_like(n, seed=0, side=32):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, side, side), dtype=np.uint8)


def mean_image(side=32, seed=1):
    return np.random.default_rng(seed).uniform(100, 150, size=(3, side, side))


def conv(c_in, c_out, k, groups=1):
    """Weights and biases of a k x k convolution with ``groups`` towers."""
    return c_in // groups * c_out * k * k + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


# Each variant: builder options, the parameter count of every weight layer,
# and the output shape (per image) of every layer, all worked out by hand.
# Defaults: widths 64, 192, 384, 256, 256 (towers on conv2, conv4, conv5),
# fc 384, 384, 10; maps 24 -> pool 12 -> pool 6 -> pool 3 (ceil mode).
DEFAULT_PARAMS = {"conv1": conv(3, 64, 5), "conv2": conv(64, 192, 5, groups=2),
                  "conv3": conv(192, 384, 3), "conv4": conv(384, 256, 3, groups=2),
                  "conv5": conv(256, 256, 3, groups=2), "fc6": fc(256 * 3 * 3, 384),
                  "fc7": fc(384, 384), "fc8": fc(384, 10)}
DEFAULT_SHAPES = {"input": (3, 24, 24), "conv1": (64, 24, 24), "relu1": (64, 24, 24),
                  "lrn1": (64, 24, 24), "pool1": (64, 12, 12), "conv2": (192, 12, 12),
                  "relu2": (192, 12, 12), "lrn2": (192, 12, 12), "pool2": (192, 6, 6),
                  "conv3": (384, 6, 6), "relu3": (384, 6, 6), "conv4": (256, 6, 6),
                  "relu4": (256, 6, 6), "conv5": (256, 6, 6), "relu5": (256, 6, 6),
                  "pool5": (256, 3, 3), "flatten": (2304,), "fc6": (384,), "relu6": (384,),
                  "drop6": (384,), "fc7": (384,), "relu7": (384,), "drop7": (384,),
                  "fc8": (10,)}


def variant(params=(), shapes=(), drop=()):
    """The defaults with some entries replaced and some layers removed."""
    p = {**DEFAULT_PARAMS, **dict(params)}
    s = {**DEFAULT_SHAPES, **dict(shapes)}
    for name in drop:
        p.pop(name, None)
        s.pop(name)
    return p, s


VARIANTS = {
    "defaults": ({}, variant()),
    # footnote 2: one tower, half the kernels in conv1-4, conv5 full size
    "towers=1": (dict(towers=1), variant(
        params={"conv1": conv(3, 32, 5), "conv2": conv(32, 96, 5), "conv3": conv(96, 192, 3),
                "conv4": conv(192, 128, 3), "conv5": conv(128, 256, 3)},
        shapes={"conv1": (32, 24, 24), "relu1": (32, 24, 24), "lrn1": (32, 24, 24),
                "pool1": (32, 12, 12), "conv2": (96, 12, 12), "relu2": (96, 12, 12),
                "lrn2": (96, 12, 12), "pool2": (96, 6, 6), "conv3": (192, 6, 6),
                "relu3": (192, 6, 6), "conv4": (128, 6, 6), "relu4": (128, 6, 6)})),
    "lrn=False": (dict(lrn=False), variant(drop=["lrn1", "lrn2"])),
    "pool=(2,2)": (dict(pool=(2, 2)), variant()),             # 24 -> 12 -> 6 -> 3 as well
    "depth=4": (dict(depth=4), variant(params={"conv5": conv(384, 256, 3, groups=2)},
                                       drop=["conv4", "relu4"])),
    "dropout=0": (dict(dropout=0), variant(drop=["drop6", "drop7"])),
    # the activation layers are named after the activation
    "tanh": (dict(activation="tanh"), (DEFAULT_PARAMS, {
        name.replace("relu", "tanh"): shape for name, shape in DEFAULT_SHAPES.items()})),
    # 28 -> 14 -> 7 -> 3
    "crop=28": (dict(crop=28), variant(shapes={
        "input": (3, 28, 28), "conv1": (64, 28, 28), "relu1": (64, 28, 28),
        "lrn1": (64, 28, 28), "pool1": (64, 14, 14), "conv2": (192, 14, 14),
        "relu2": (192, 14, 14), "lrn2": (192, 14, 14), "pool2": (192, 7, 7),
        "conv3": (384, 7, 7), "relu3": (384, 7, 7), "conv4": (256, 7, 7), "relu4": (256, 7, 7),
        "conv5": (256, 7, 7), "relu5": (256, 7, 7)})),
    # 32 -> 16 -> 8 -> 4: fc6 sees 256 x 4 x 4
    "crop=32": (dict(crop=32), variant(params={"fc6": fc(256 * 4 * 4, 384)}, shapes={
        "input": (3, 32, 32), "conv1": (64, 32, 32), "relu1": (64, 32, 32),
        "lrn1": (64, 32, 32), "pool1": (64, 16, 16), "conv2": (192, 16, 16),
        "relu2": (192, 16, 16), "lrn2": (192, 16, 16), "pool2": (192, 8, 8),
        "conv3": (384, 8, 8), "relu3": (384, 8, 8), "conv4": (256, 8, 8), "relu4": (256, 8, 8),
        "conv5": (256, 8, 8), "relu5": (256, 8, 8), "pool5": (256, 4, 4), "flatten": (4096,)})),
}


def test_default_parameter_count_by_hand():
    # conv1 3*64*25+64, conv2 32*192*25+192, conv3 192*384*9+384,
    # conv4 192*256*9+256, conv5 128*256*9+256, fc6 2304*384+384,
    # fc7 384*384+384, fc8 384*10+10
    assert sum(DEFAULT_PARAMS.values()) == 2_597_194
    net = models.alexnet_cifar(np.random.default_rng(0), mean_image())
    assert net.num_parameters() == 2_597_194


@pytest.mark.parametrize("name", list(VARIANTS))
def test_alexnet_shapes_and_parameter_count(name):
    options, (params, shapes) = VARIANTS[name]
    net = models.alexnet_cifar(np.random.default_rng(0), mean_image(), **options)
    assert list(net.layers) == list(shapes), "layers present, in order"
    counts = {layer: sum(p.data.size for p in net.layers[layer].params.values())
              for layer in net.layers if net.layers[layer].params}
    assert counts == params
    assert net.num_parameters() == sum(params.values())
    x = cifar_like(2)
    for layer_name, layer in net.layers.items():
        x = layer.forward(x)
        assert x.shape == (2,) + shapes[layer_name], f"{name}: {layer_name}"
        assert x.dtype == np.float32


@pytest.mark.parametrize("name, kind", [("defaults", L.ReLU), ("tanh", L.Tanh)])
def test_alexnet_activation_follows_every_conv_and_hidden_fc(name, kind):
    net = models.alexnet_cifar(np.random.default_rng(0), mean_image(), **VARIANTS[name][0])
    names = list(net.layers)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        assert isinstance(net.layers[names[names.index(layer) + 1]], kind)
    assert names[-1] == "fc8"


def test_alexnet_options_pick_their_mechanism():
    rng = np.random.default_rng(0)
    net = models.alexnet_cifar(rng, mean_image())
    assert [net.layers[c].groups for c in ("conv1", "conv2", "conv3", "conv4", "conv5")] == \
        [1, 2, 1, 2, 2]                                                     # §3.5
    lrn = net.layers["lrn1"]
    assert (lrn.k, lrn.n, lrn.alpha, lrn.beta) == (2.0, 5, 1e-4, 0.75)     # §3.3
    assert net.layers["pool1"].kernel_size == (3, 3) and net.layers["pool1"].stride == (2, 2)
    assert net.layers["drop6"].ratio == 0.5                                 # §4.2
    one = models.alexnet_cifar(rng, mean_image(), towers=1)
    assert all(one.layers[c].groups == 1 for c in ("conv2", "conv4", "conv5"))
    plain = models.alexnet_cifar(rng, mean_image(), pool=(2, 2))
    assert plain.layers["pool5"].kernel_size == (2, 2) and plain.layers["pool5"].stride == (2, 2)


def test_alexnet_paper_initialisation():
    """§5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0."""
    net = models.alexnet_cifar(np.random.default_rng(0), mean_image())
    for name in ("conv3", "fc6"):
        w = net.layers[name].params["W"].data
        assert abs(w.std() - 0.01) < 0.0005 and abs(w.mean()) < 0.0005
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(net.layers[name].params["b"].data, expected, err_msg=name)
    he = models.alexnet_cifar(np.random.default_rng(0), mean_image(), init="he")
    assert all(not p.data.any() for p in he.parameters() if p.name.endswith("/b"))
    w = he.layers["conv3"].params["W"].data
    assert abs(w.std() / np.sqrt(2 / (192 * 9)) - 1) < 0.05


@pytest.mark.parametrize("kwargs", [dict(depth=3), dict(towers=3), dict(init="xavier"),
                                    dict(activation="swish")])
def test_alexnet_rejects_unknown_options(kwargs):
    with pytest.raises((ValueError, KeyError)):
        models.alexnet_cifar(np.random.default_rng(0), mean_image(), **kwargs)


def test_alexnet_is_reproducible_from_its_seed():
    a = models.alexnet_cifar(np.random.default_rng(3), mean_image())
    b = models.alexnet_cifar(np.random.default_rng(3), mean_image())
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_tiny_alexnet_gradient_check_end_to_end():
    """Every parameter of a tiny AlexNet (two towers, LRN, overlapping
    pooling, dropout) against central differences of the loss, in float64.
    Dropout's generators are rewound before every forward pass, so each
    pass drops the same units (a fixed mask)."""
    rng = np.random.default_rng(0)
    net = models.alexnet_cifar(rng, mean_image(side=14), crop=12, widths=(4, 4, 4, 4, 4),
                               hidden=8, init="he", scale=1 / 64, dtype="float64")
    # Random biases: with zero biases a unit whose inputs are all switched
    # off sits exactly on ReLU's kink, where the central difference is wrong.
    for p in net.parameters():
        if p.name.endswith("/b"):
            p.data[...] = rng.normal(0.0, 0.1, size=p.data.shape)
    x = cifar_like(3, side=14)
    t = np.array([1, 7, 3])
    generators = net.generators()
    assert set(generators) == {"drop6/rng", "drop7/rng"}
    states = {k: g.bit_generator.state for k, g in generators.items()}

    def loss():
        for k, g in generators.items():
            g.bit_generator.state = states[k]
        return net.loss(x, t, train=True)

    loss()
    mask = net.layers["drop6"].mask
    assert 0 < mask.sum() < mask.size, "dropout must drop some units and keep others"
    net.backward()
    for p in net.parameters():
        analytic = p.grad.copy()
        numeric = numerical_gradient(loss, p.data)
        err = relative_error(analytic, numeric)
        assert err < 1e-6, f"{p.name}: relative error {err:.3g}"


def test_saved_alexnet_predicts_identically(tmp_path):
    rng = np.random.default_rng(5)
    net = models.alexnet_cifar(rng, mean_image(), widths=(8, 8, 16, 8, 8), hidden=16,
                               init="he", scale=1 / 64)
    path = tmp_path / "alexnet.h5"
    zeronet.save(net, path, metadata={"note": "test"})
    loaded = zeronet.load(path)
    assert loaded.config() == net.config()
    assert loaded.metadata == {"note": "test"}
    x = cifar_like(6, seed=9)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    np.testing.assert_array_equal(predict_views(loaded, x, batch_size=4),
                                  predict_views(net, x, batch_size=4))
