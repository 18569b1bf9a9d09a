"""Results do not depend on the thread count: whole networks, forward and
backward, give bit-identical outputs and gradients with 1 and 2 threads.

The kernels' parallel loops only write disjoint outputs (see _core.pyx), so
this holds exactly, not just to rounding.
"""
import numpy as np
import pytest

import zeronet
from zeronet import kernels, models
from zeronet import layers as L
from zeronet.network import Sequential

pytestmark = pytest.mark.skipif(zeronet.backend() != "compiled",
                                reason="the compiled core is not in use (NumPy reference)")


@pytest.fixture
def restore_threads():
    # Small arrays normally run on one thread; here every loop must be split.
    core = kernels._core
    before, min_work = kernels.get_num_threads(), core.get_min_parallel_work()
    core.set_min_parallel_work(0)
    yield
    kernels.set_num_threads(before)
    core.set_min_parallel_work(min_work)
    assert kernels.get_num_threads() == before


def pooling_net(rng, dtype):
    """Exercises every kernel: im2col/col2im with groups, stride and padding,
    overlapping max pooling with padding and ceil mode."""
    return Sequential([
        ("conv1", L.Convolution(3, 8, (5, 3), stride=(1, 2), pad=(2, 1), dtype=dtype, rng=rng)),
        ("relu1", L.ReLU()),
        ("pool1", L.MaxPooling(3, 2, pad=1, ceil_mode=True)),
        ("conv2", L.Convolution(8, 8, 3, pad=1, groups=2, dtype=dtype, rng=rng)),
        ("lrn", L.LRN()),
        ("pool2", L.AvgPooling(2)),
        ("fc", L.Affine(8 * 4 * 2, 10, dtype=dtype, rng=rng)),
    ], input_grad=True)


def forward_backward(net, x, t, threads):
    kernels.set_num_threads(threads)
    assert kernels.get_num_threads() == (threads if kernels.HAS_OPENMP else 1)
    loss = net.loss(x, t)
    dx = net.backward()
    return loss, net.loss_layer.y.copy(), dx, {p.name: p.grad.copy() for p in net.parameters()}


def assert_identical(one, two, what):
    loss1, y1, dx1, grads1 = one
    loss2, y2, dx2, grads2 = two
    assert loss1 == loss2, f"{what}: loss {loss1!r} with 1 thread, {loss2!r} with 2"
    pairs = [("probabilities", y1, y2), *((k, grads1[k], grads2[k]) for k in grads1)]
    if dx1 is not None or dx2 is not None:
        pairs.append(("dx", dx1, dx2))
    for name, a, b in pairs:
        assert a.dtype == b.dtype and np.array_equal(a, b), (
            f"{what}: {name} differs between 1 and 2 threads by up to "
            f"{np.max(np.abs(a.astype(np.float64) - b)):.3g}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet5_identical_for_one_and_two_threads(dtype, restore_threads):
    rng = np.random.default_rng(0)
    net = models.lenet5(rng, dtype=dtype)
    x = rng.standard_normal((16, 1, 32, 32)).astype(dtype)
    t = rng.integers(0, 10, size=16)
    one = forward_backward(net, x, t, 1)
    two = forward_backward(net, x, t, 2)
    assert_identical(one, two, f"LeNet-5 {dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling_net_identical_for_one_and_two_threads(dtype, restore_threads):
    rng = np.random.default_rng(1)
    net = pooling_net(rng, dtype)
    x = rng.standard_normal((5, 3, 15, 13)).astype(dtype)
    t = rng.integers(0, 10, size=5)
    assert net.predict(x).shape == (5, 10)
    one = forward_backward(net, x, t, 1)
    two = forward_backward(net, x, t, 2)
    assert_identical(one, two, f"pooling net {dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_alexnet_identical_for_one_and_two_threads(dtype, restore_threads):
    # A narrow AlexNet-CIFAR: LRN, overlapping pooling in ceil mode, grouped
    # convolutions, some of them (conv3-5) computed by Winograd's algorithm.
    rng = np.random.default_rng(2)
    mean = rng.uniform(0, 255, (3, 32, 32))
    net = models.alexnet_cifar(rng, mean, widths=(8, 16, 32, 32, 32), hidden=16, dtype=dtype)
    assert kernels.conv_path(np.empty((1, 16, 6, 6)), net.layers["conv3"].weights(), 1, 1) \
        == "winograd"
    x = rng.integers(0, 256, (6, 3, 24, 24), dtype=np.uint8)
    t = rng.integers(0, 10, size=6)
    one = forward_backward(net, x, t, 1)
    two = forward_backward(net, x, t, 2)
    assert_identical(one, two, f"AlexNet-CIFAR {dtype}")


def test_chunked_convolution_keeps_blas_on_one_thread_with_one_thread_of_ours(restore_threads,
                                                                             monkeypatch):
    # With our threads set to 1, BLAS used to keep its own two threads: its
    # products then added up in another order, and dW differed from the one
    # computed with two threads of ours (by up to 6.5e-5 on AlexNet's conv2).
    if not kernels.HAS_OPENMP:
        pytest.skip("without OpenMP the convolution always runs on one thread")
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(kernels, "conv_path", lambda *args: "chunked")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 64, 12, 12)).astype(np.float32)
    W = (0.05 * rng.standard_normal((192, 32, 5, 5))).astype(np.float32)
    b = np.zeros(192, np.float32)
    dout = rng.standard_normal((32, 192, 12, 12)).astype(np.float32)
    results, seen = {}, []
    forward, backward = kernels.CONV_PATHS["chunked"]

    def spy(*args):
        seen.append(scipy_blas_threads())
        return forward(*args)
    monkeypatch.setitem(kernels.CONV_PATHS, "chunked", (spy, backward))
    with threadpool_limits(limits=2, user_api="blas"):
        for threads in (1, 2):
            kernels.set_num_threads(threads)
            seen.clear()
            y = kernels.conv_forward(x, W, b, pad=2, groups=2)
            assert seen and all(n == 1 for n in seen[0]), f"BLAS on {seen} threads inside"
            results[threads] = (y, *kernels.conv_backward(x, W, dout, pad=2, groups=2,
                                                          bias_grad=True))
        assert scipy_blas_threads() == [2] * len(scipy_blas_threads())
    for name, a, b in zip(["y", "dx", "dW", "db"], results[1], results[2]):
        assert np.array_equal(a, b), (f"{name} differs between 1 and 2 threads by up to "
                                      f"{np.max(np.abs(a - b)):.3g}")


def test_set_num_threads_round_trip(restore_threads):
    kernels.set_num_threads(1)
    assert kernels.get_num_threads() == 1
    kernels.set_num_threads(2)
    assert kernels.get_num_threads() == (2 if kernels.HAS_OPENMP else 1)


def test_blas_threads_round_trip():
    before = kernels.get_blas_threads()
    if before is None:
        pytest.skip("threadpoolctl finds no BLAS library behind NumPy")
    try:
        kernels.set_blas_threads(1)
        assert kernels.get_blas_threads() == 1
    finally:
        kernels.set_blas_threads(before)
    assert kernels.get_blas_threads() == before


def scipy_blas_threads():
    """Thread counts of the BLAS libraries the compiled convolution limits."""
    return [lib.num_threads for lib in kernels._blas_libraries_core_calls()]


def test_convolution_runs_blas_on_one_thread_and_restores_it(restore_threads, monkeypatch):
    if not kernels.HAS_OPENMP:
        pytest.skip("without OpenMP the convolution runs on one thread and leaves BLAS alone")
    from threadpoolctl import threadpool_limits
    kernels.set_num_threads(2)
    seen = []
    forward, backward = kernels.CONV_PATHS["chunked"]

    def spy(*args):
        seen.append(scipy_blas_threads())
        return forward(*args)
    monkeypatch.setitem(kernels.CONV_PATHS, "chunked", (spy, backward))
    x = np.ones((4, 2, 6, 6), np.float32)
    W = np.ones((3, 2, 3, 3), np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        before = scipy_blas_threads()
        y = kernels.conv_forward(x, W, np.zeros(3, np.float32))
        assert seen and all(n == 1 for n in seen[0]), seen
        with pytest.raises(ValueError):       # restored after an error too
            kernels.conv_backward(x, W, y[:, :2].copy())
        assert scipy_blas_threads() == before == [2] * len(before)


def test_overlapping_convolutions_restore_blas_threads(restore_threads):
    # Two Python threads can be inside the convolution at once (it releases
    # the GIL), and leave in either order: A in, B in, A out, B out. B must
    # not take A's 1 thread for the count to restore.
    if not kernels.HAS_OPENMP:
        pytest.skip("without OpenMP the convolution leaves BLAS alone")
    from threadpoolctl import threadpool_limits
    kernels.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        before = scipy_blas_threads()
        a, b = kernels._blas_on_one_thread(), kernels._blas_on_one_thread()
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        assert all(n == 1 for n in scipy_blas_threads())     # B is still inside
        b.__exit__(None, None, None)
        assert scipy_blas_threads() == before


def test_bad_thread_settings_raise(restore_threads):
    with pytest.raises(ValueError, match="BLAS threads must be between 1 and"):
        kernels.set_blas_threads(0)
    with pytest.raises(ValueError, match="min_parallel_work must be >= 0"):
        kernels._core.set_min_parallel_work(-1)


@pytest.mark.parametrize("user_env, expected", [
    ({}, ("PASSIVE", "16")),
    ({"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "28"}, ("ACTIVE", "28")),
])
def test_import_sets_idle_thread_defaults_without_overriding_the_user(user_env, expected):
    # Checked in a fresh interpreter: the variables only matter before the
    # OpenMP and OpenBLAS libraries load, i.e. at import.
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    code = ("import os, zeronet; "
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    out = subprocess.run([sys.executable, "-c", code], env={**env, **user_env},
                         check=True, capture_output=True, text=True).stdout
    assert tuple(out.split()) == expected
