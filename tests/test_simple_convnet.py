"""The book's SimpleConvNet (§7.5): zeronet.models.simple_convnet and the
training template reproduce/simple_convnet.py."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zeronet
from zeronet import datasets, models, optimizers

SCRIPT = Path(__file__).resolve().parent.parent / "reproduce" / "simple_convnet.py"


def test_simple_convnet_is_the_books_network():
    net = models.simple_convnet(np.random.default_rng(0))
    kinds = [(name, type(layer).__name__) for name, layer in net.layers.items()]
    assert kinds == [("input", "DigitInput"), ("conv1", "Convolution"), ("relu1", "ReLU"),
                     ("pool1", "MaxPooling"), ("affine1", "Affine"), ("relu2", "ReLU"),
                     ("affine2", "Affine")]
    shapes = {p.name: p.data.shape for p in net.parameters()}
    assert shapes == {"conv1/W": (30, 1, 5, 5), "conv1/b": (30,), "affine1/W": (4320, 100),
                      "affine1/b": (100,), "affine2/W": (100, 10), "affine2/b": (10,)}
    assert net.num_parameters() == 433_890
    assert type(net.loss_layer).__name__ == "SoftmaxWithLoss"
    # The book's init: N(0, 0.01^2) weights, zero biases.
    for p in net.parameters():
        if p.name.endswith("/b"):
            assert not p.data.any(), p.name
        else:
            assert abs(p.data.std() - 0.01) < 0.001, (p.name, p.data.std())


def test_simple_convnet_scales_digits_as_the_books_load_mnist():
    digits = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    net = models.simple_convnet(np.random.default_rng(0))
    scaled = net.layers["input"].forward(digits)
    assert scaled.shape == (3, 1, 28, 28) and scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[:, 0], digits / 255.0, rtol=1e-6)
    # Input already scaled gives the same scores.
    np.testing.assert_array_equal(net.predict(digits), net.predict(scaled))


def test_simple_convnet_other_input_and_sizes():
    net = models.simple_convnet(np.random.default_rng(0), input_dim=(3, 16, 12), filter_num=4,
                                filter_size=3, pad=1, hidden_size=7, output_size=5,
                                dtype="float64")
    assert "input" not in net.layers      # no digit scaling for colour or non-square input
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 12))
    scores = net.predict(x)
    assert scores.shape == (2, 5) and scores.dtype == np.float64
    assert net.layers["affine1"].in_features == 4 * 8 * 6


def test_simple_convnet_overfits_one_batch():
    rng = np.random.default_rng(2)
    digits = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    net = models.simple_convnet(rng)
    adam = optimizers.Adam(lr=0.001)
    for step in range(100):
        loss = net.loss(digits, labels, train=True)
        net.backward()
        adam.update(net.parameters())
        if step % 10 == 9 and net.accuracy(digits, labels) == 1.0:
            break
    accuracy = net.accuracy(digits, labels)
    assert accuracy == 1.0, f"training accuracy {accuracy:.2f} after {step + 1} steps, loss {loss:.4f}"


@pytest.mark.slow
def test_simple_convnet_script_quick_trains_and_saves(mnist_dir, tmp_path):
    weights = tmp_path / "simple_convnet.h5"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--data-dir", str(mnist_dir),
           "--save", str(weights)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    found = re.search(r"test accuracy (\d+\.\d+)% on 1,000 digits \(the book: 98\.96%\)",
                      proc.stdout)
    assert found, proc.stdout
    # Two passes over 2,000 digits are far above chance (10%).
    assert float(found.group(1)) > 50, proc.stdout
    # The saved file gives back the accuracy the script printed.
    mnist = datasets.load_mnist(mnist_dir, download=False, parts=("test",))
    accuracy = zeronet.load(weights).accuracy(mnist.x_test[:1000], mnist.y_test[:1000])
    assert f"{accuracy:.2%}" == f"{found.group(1)}%"
