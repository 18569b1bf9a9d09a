"""docs/weights-format.md is enough to run any zeronet file without zeronet.

tests/plain_reader.py implements the page in plain NumPy and h5py; here it
must agree with ``zeronet.load(...).predict`` on the shipped LeNet-5 files
(real MNIST digits) and on small random networks that hold every other
layer type, saved by zeronet.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import plain_reader
import zeronet
from zeronet import datasets, models
from zeronet import layers as L
from zeronet.losses import MAPLoss
from zeronet.network import Sequential

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "reproduce" / "weights").glob("*.h5"))


def test_the_reader_imports_nothing_from_zeronet():
    code = ("import sys, plain_reader; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'zeronet'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"plain_reader imported {proc.stdout}"


def assert_same_predictions(path, x, t=None, rtol=1e-4):
    """The plain reader's scores (and loss, given labels ``t``) match zeronet's."""
    net, plain = zeronet.load(path), plain_reader.read(path)
    expected, got = net.predict(x), plain_reader.predict(plain, x)
    assert got.shape == expected.shape and got.dtype == expected.dtype, \
        (got.shape, got.dtype, expected.shape, expected.dtype)
    scale = np.abs(expected).max()
    err = np.abs(got - expected).max() / scale
    assert err < rtol, f"{path.name}: largest score difference {err:.2e} of the largest score"
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    if t is not None:
        expected_loss = net.loss(x, t)
        got_loss = plain_reader.loss(plain, got, t)
        assert abs(got_loss - expected_loss) <= rtol * max(1.0, abs(expected_loss)), \
            (got_loss, expected_loss)
    return got


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.name.startswith("lenet")],
                         ids=lambda p: p.name)
def test_shipped_weights_predict_the_same_without_zeronet(path, mnist_dir):
    mnist = datasets.load_mnist(mnist_dir, download=False, parts=("test",))
    digits, labels = mnist.x_test[:300], mnist.y_test[:300].astype(np.int64)
    scores = assert_same_predictions(path, digits, labels)
    # The file's own claim: a LeNet-5 gets nearly all of these right.
    assert np.mean(scores.argmax(axis=1) == labels) > 0.97


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.name.startswith("alexnet")],
                         ids=lambda p: p.name)
def test_shipped_alexnet_predicts_the_same_without_zeronet(path):
    from conftest import real_data_dir
    cifar = datasets.load_cifar10(real_data_dir("cifar-10-batches-bin"), download=False)
    images, labels = cifar.x_test[:200], cifar.y_test[:200].astype(np.int64)
    scores = assert_same_predictions(path, images, labels)
    # The file's own claim: its centre-patch error on these is far from chance.
    assert np.mean(scores.argmax(axis=1) == labels) > 0.7


def randomised(net, rng):
    """Every parameter redrawn, biases and masked-out weights included, so that
    nothing the reader must apply (a bias, the C3-style table) is zero."""
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.data.shape) * 0.5
    return net


def every_other_layer_networks(rng):
    """Networks in float64 that together hold every layer type, with
    non-square kernels, strides, padding, groups, a table and ceil_mode."""
    kw = dict(dtype="float64", rng=rng)
    table = rng.integers(0, 2, (5, 4))
    table[np.arange(5), np.arange(5) % 4] = 1      # every map sees at least one input
    first = Sequential([
        ("conv", L.Convolution(4, 6, (3, 2), stride=(2, 1), pad=(1, 0), groups=2, **kw)),
        ("lrn", L.LRN(n=3, k=1.5, alpha=0.3, beta=0.6)),
        ("maxpool", L.MaxPooling(3, stride=2, pad=1, ceil_mode=True)),
        ("tanh", L.Tanh()),         # keeps the sign: a window's max can be negative
        ("avgpool", L.AvgPooling((2, 3), stride=1, pad=1)),
        ("sigmoid", L.Sigmoid()),
        ("flatten", L.Flatten()),
        ("drop", L.Dropout(0.3)),
        ("fc", L.Affine(6 * 5 * 5, 7, **kw)),
        ("relu", L.ReLU()),
        ("rbf", L.RBF(rng.choice([-1.0, 1.0], size=(5, 7)), dtype="float64")),
    ], MAPLoss(3.0))
    second = Sequential([
        ("input", L.DigitInput(29, background=0.2, ink=0.9, dtype="float64")),
        ("conv1", L.Convolution(1, 4, 3, **kw)),
        ("conv2", L.Convolution(4, 5, 3, pad=1, table=table, **kw)),
        ("sub", L.Subsampling(5, 2, **kw)),                   # 27 -> 13, one row left over
        ("squash", L.ScaledTanh()),
        ("maxpool", L.MaxPooling(2, stride=2, pad=1, ceil_mode=True)),  # 13 -> 7, not 8
        ("fc1", L.Affine(5 * 7 * 7, 9, **kw)),
        ("relu", L.ReLU()),
        ("fc2", L.Affine(9, 3, **kw)),
    ])
    # A colour input layer: a non-square mean image, a crop smaller than it.
    third = Sequential([
        ("input", L.ImageInput(rng.uniform(0, 255, (3, 9, 11)), 6, scale=0.5, dtype="float64")),
        ("conv", L.Convolution(3, 4, 3, **kw)),
        ("flatten", L.Flatten()),
        ("fc", L.Affine(4 * 4 * 4, 3, **kw)),
    ])
    return [randomised(first, rng), randomised(second, rng), randomised(third, rng)]


def test_random_networks_with_every_layer_type_predict_the_same(tmp_path):
    rng = np.random.default_rng(0)
    first, second, third = every_other_layer_networks(rng)
    inputs = [rng.standard_normal((5, 4, 11, 9)),
              rng.integers(0, 256, (5, 25, 27), dtype=np.uint8),
              rng.integers(0, 256, (5, 3, 9, 11), dtype=np.uint8)]
    for i, (net, x) in enumerate(zip((first, second, third), inputs)):
        path = tmp_path / f"net{i}.h5"
        zeronet.save(net, path)
        t = rng.integers(0, net.predict(x).shape[1], len(x))
        assert_same_predictions(path, x, t, rtol=1e-10)
    # Prepared float input passes DigitInput unchanged, in the reader too.
    prepared = second.layers["input"].forward(inputs[1])
    assert_same_predictions(tmp_path / "net1.h5", prepared, rtol=1e-10)
    # ImageInput: uint8 patches already at the crop size, and prepared floats.
    patches = inputs[2][:, :, 2:8, 3:9]
    assert_same_predictions(tmp_path / "net2.h5", patches, rtol=1e-10)
    assert_same_predictions(tmp_path / "net2.h5", third.layers["input"].forward(patches),
                            rtol=1e-10)


def test_the_tested_files_hold_every_layer_type_zeronet_has():
    """A new layer type must be added to docs/weights-format.md, to the reader
    and to the networks above before this passes."""
    # zeronet's own: a test elsewhere may register a layer class of its own.
    zeronets = {name for name, cls in L.LAYERS.items() if cls.__module__.startswith("zeronet.")}
    tested = {type(layer).__name__
              for net in [*every_other_layer_networks(np.random.default_rng(0)),
                          models.lenet5(np.random.default_rng(0), output="rbf")]
              for layer in net.layers.values()}
    assert tested == zeronets, sorted(zeronets ^ tested)
    assert set(plain_reader.FORWARD) == zeronets
    page = (REPO / "docs" / "weights-format.md").read_text()
    described = {name for line in page.splitlines() if line.startswith("### ")
                 for name in line[4:].split(", ")}
    missing = sorted(zeronets - described)
    assert not missing, f"docs/weights-format.md does not describe {missing}"
