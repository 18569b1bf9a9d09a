"""Speed of zeronet's convolution, max pooling and a LeNet-5 training step.

Prints, for each case (batch 128, float32): the median time of the compiled
path, of the NumPy reference path (ZERONET_FORCE_NUMPY=1) and, when PyTorch
is installed, of ``torch.nn.functional`` on the CPU with the same number of
threads. Each of the three runs in its own subprocess of this script: in one
process, PyTorch's OpenMP threads and zeronet's (and OpenBLAS's) spin against
each other and both look several times slower than they are.

    python benchmarks/bench_kernels.py [--threads 2] [--repeat 10] [--rounds 3] [--no-numpy]

Run it on a quiet machine: anything else running skews the numbers.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

# The environment as the user started this script. Importing zeronet adds its
# own defaults to os.environ (OMP_WAIT_POLICY=PASSIVE, for one); PyTorch must
# not inherit them: passive OpenMP threads made its C3 convolution 1.5x and
# its LeNet-5 step 1.5-2x slower than in a plain Python process.
USER_ENV = dict(os.environ)

BATCH = 128
# (name, C, H, W, OC, K, pad)
CONV_CASES = [
    ("conv LeNet C1 1x32x32->6@5x5", 1, 32, 32, 6, 5, 0),
    ("conv LeNet C3 6x14x14->16@5x5", 6, 14, 14, 16, 5, 0),
    ("conv 3x24x24->64@5x5 pad 2", 3, 24, 24, 64, 5, 2),
    ("conv 64x12x12->64@5x5 pad 2", 64, 12, 12, 64, 5, 2),
    ("conv 64x6x6->128@3x3 pad 1", 64, 6, 6, 128, 3, 1),
]
# (name, C, H, W, K, stride)
POOL_CASES = [
    ("maxpool 3x3/2 on 64x24x24", 64, 24, 24, 3, 2),
    ("maxpool 2x2/2 on 6x28x28", 6, 28, 28, 2, 2),
]
LENET_CASE = "LeNet-5 training step"


# Each case runs at least `repeat` times and for at least MIN_SECONDS (at
# most MAX_RUNS times): the median of a case that takes a few milliseconds
# then spans more than one passing burst of other work on the machine.
MIN_SECONDS = 0.3
MAX_RUNS = 1000


def median_time(fn, repeat, warmup=2):
    """The median time of ``fn()`` in seconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < MIN_SECONDS
                                  and len(times) < MAX_RUNS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# --------------------------------------------------------------- zeronet ----

def _forward_backward(layer, x, dout):
    layer.forward(x, train=True)
    return layer.backward(dout)


def zeronet_times(repeat):
    import zeronet
    from zeronet import layers, models
    from zeronet.optimizers import SGD

    rng = np.random.default_rng(0)
    results = {}
    for name, c, h, w, oc, k, pad in CONV_CASES:
        conv = layers.Convolution(c, oc, k, pad=pad, rng=rng)
        x = rng.standard_normal((BATCH, c, h, w)).astype(np.float32)
        dout = rng.standard_normal((BATCH, oc, *conv.output_hw((h, w)))).astype(np.float32)
        results[name] = (median_time(lambda: conv.forward(x), repeat),
                         median_time(lambda: _forward_backward(conv, x, dout), repeat))
    for name, c, h, w, k, s in POOL_CASES:
        pool = layers.MaxPooling(k, s)
        x = rng.standard_normal((BATCH, c, h, w)).astype(np.float32)
        dout = pool.forward(x).copy()
        results[name] = (median_time(lambda: pool.forward(x), repeat),
                         median_time(lambda: _forward_backward(pool, x, dout), repeat))
    net = models.lenet5(rng, full_c3=True)
    opt = SGD(0.01)
    x = rng.standard_normal((BATCH, 1, 32, 32)).astype(np.float32)
    t = rng.integers(0, 10, BATCH)

    def step():
        net.loss(x, t)
        net.backward()
        opt.update(net.parameters())
    results[LENET_CASE] = (None, median_time(step, repeat))
    return {"backend": zeronet.backend(), "results": results}


# --------------------------------------------------------------- PyTorch ----

def torch_times(repeat, threads):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    results = {}

    def fwd_bwd(op, x, params, dout):
        for p in (x, *params):
            p.grad = None
        op().backward(dout)

    for name, c, h, w, oc, k, pad in CONV_CASES:
        x = torch.randn(BATCH, c, h, w, generator=g, requires_grad=True)
        weight = torch.randn(oc, c, k, k, generator=g, requires_grad=True)
        bias = torch.randn(oc, generator=g, requires_grad=True)
        op = lambda: F.conv2d(x, weight, bias, padding=pad)  # noqa: E731
        with torch.no_grad():
            dout = torch.randn_like(op())
        results[name] = (median_time(_no_grad(op), repeat),
                         median_time(lambda: fwd_bwd(op, x, (weight, bias), dout), repeat))
    for name, c, h, w, k, s in POOL_CASES:
        x = torch.randn(BATCH, c, h, w, generator=g, requires_grad=True)
        op = lambda: F.max_pool2d(x, k, s)  # noqa: E731
        with torch.no_grad():
            dout = torch.randn_like(op())
        results[name] = (median_time(_no_grad(op), repeat),
                         median_time(lambda: fwd_bwd(op, x, (), dout), repeat))
    results[LENET_CASE] = (None, median_time(_torch_lenet_step(torch, F, g), repeat))
    return {"version": torch.__version__, "results": results}


def _no_grad(op):
    import torch

    def run():
        with torch.no_grad():
            op()
    return run


def _torch_lenet_step(torch, F, g):
    """The same LeNet-5 as zeronet's ``models.lenet5(full_c3=True)``: scaled
    tanh after every layer up to F6, trainable subsampling as a 2x2 sum times
    a coefficient per map plus a bias per map, softmax cross-entropy, SGD."""
    def p(*shape):
        return (torch.randn(*shape, generator=g) * 0.1).requires_grad_(True)
    params = [p(6, 1, 5, 5), p(6), p(6), p(6), p(16, 6, 5, 5), p(16), p(16), p(16),
              p(120, 16, 5, 5), p(120), p(84, 120), p(84), p(10, 84), p(10)]
    x = torch.randn(BATCH, 1, 32, 32, generator=g)
    t = torch.randint(0, 10, (BATCH,), generator=g)

    def squash(a):
        return 1.7159 * torch.tanh(a * (2 / 3))

    def subsample(a, coeff, bias):
        return F.avg_pool2d(a, 2) * 4 * coeff.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

    def step():
        (c1w, c1b, s2c, s2b, c3w, c3b, s4c, s4b, c5w, c5b, f6w, f6b, ow, ob) = params
        h = squash(F.conv2d(x, c1w, c1b))
        h = squash(subsample(h, s2c, s2b))
        h = squash(F.conv2d(h, c3w, c3b))
        h = squash(subsample(h, s4c, s4b))
        h = squash(F.conv2d(h, c5w, c5b)).flatten(1)
        h = squash(F.linear(h, f6w, f6b))
        loss = F.cross_entropy(F.linear(h, ow, ob), t)
        for q in params:
            q.grad = None
        loss.backward()
        with torch.no_grad():
            for q in params:
                q -= 0.01 * q.grad
    return step


# ---------------------------------------------------------------- report ----

def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def best_of(runs):
    """Each case's fastest time over several runs of one implementation
    (None stays None, e.g. no forward-only time for the LeNet step)."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    best = {name: [min((r["results"][name][i] for r in runs if r["results"][name][i] is not None),
                       default=None) for i in range(2)]
            for name in runs[0]["results"]}
    return {**runs[0], "results": best}


def fmt(t):
    return "-" if t is None else f"{t * 1e3:.2f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def at_least(least):
    """An argparse type: an integer of at least ``least``."""
    def parse(text):
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    parse.__name__ = "integer"      # argparse's word for a value int() rejects
    return parse


def arguments(doc):
    """The options both benchmarks take: threads, repeats, rounds, and the
    hidden one that makes a subprocess measure one implementation."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--threads", type=at_least(1), default=2)
    ap.add_argument("--repeat", type=at_least(1), default=10)
    ap.add_argument("--rounds", type=at_least(1), default=3,
                    help="alternate zeronet and PyTorch this many times; keep the best")
    ap.add_argument("--measure", choices=["zeronet", "torch"], help=argparse.SUPPRESS)
    return ap


def main():
    ap = arguments(__doc__)
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference run")
    args = ap.parse_args()

    if args.measure:  # one implementation, alone in this process
        if args.measure == "torch":
            print(json.dumps(torch_times(args.repeat, args.threads)))
        else:
            import zeronet
            zeronet.kernels.set_num_threads(args.threads)
            print(json.dumps(zeronet_times(args.repeat)))
        return

    def measure(kind, repeat, **env):
        # zeronet's matrix products run in OpenBLAS: give it the same thread
        # count as the kernels and PyTorch, or --threads 1 would not mean 1.
        # zeronet runs with the thread settings it makes on import (now in
        # os.environ), PyTorch without them.
        threads = str(args.threads)
        base = os.environ if kind == "zeronet" else USER_ENV
        env = dict(base, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, **env)
        out = subprocess.run([sys.executable, __file__, "--measure", kind, "--repeat",
                              str(repeat), "--threads", threads],
                             env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    import zeronet
    # Neighbours on a shared machine slow some runs down for seconds at a
    # time. Alternating zeronet and PyTorch, round after round, and keeping
    # each case's fastest median lets both sides be measured at their best.
    rounds = {"zeronet": [], "torch": []}
    for _ in range(args.rounds):
        for kind in rounds:
            rounds[kind].append(measure(kind, args.repeat))
    compiled, torch_run = best_of(rounds["zeronet"]), best_of(rounds["torch"])
    numpy_run = None if args.no_numpy else measure("zeronet", max(3, args.repeat // 3),
                                                    ZERONET_FORCE_NUMPY="1")

    print(f"machine: {machine()}")
    print(f"zeronet {zeronet.__version__} ({compiled['backend']}, OpenMP "
          f"{'on' if zeronet.kernels.HAS_OPENMP else 'off'}, {args.threads} threads), "
          f"numpy {np.__version__}, torch {torch_run['version'] if torch_run else 'not installed'}")
    if zeronet.kernels.USING_CORE:
        print(f"the compiled convolution's BLAS: {zeronet.kernels.blas_in_use()}")
    print(f"batch {BATCH}, float32, times in ms: the median of at least {args.repeat} runs "
          f"and {MIN_SECONDS} s, the fastest such median of {args.rounds} alternating rounds "
          f"(NumPy: one round)\n")
    header = ("| case | pass | compiled | NumPy ref | PyTorch | compiled / PyTorch "
              "| NumPy / compiled |")
    print(header)
    print("|" + "---|" * 7)
    for name in compiled["results"]:
        for i, label in enumerate(("forward", "fwd+bwd")):
            c = compiled["results"][name][i]
            if c is None:
                continue
            n = numpy_run["results"][name][i] if numpy_run else None
            t = torch_run["results"][name][i] if torch_run else None
            label = "step" if name == LENET_CASE else label
            print(f"| {name} | {label} | {fmt(c)} | {fmt(n)} | {fmt(t)} | {ratio(c, t)} "
                  f"| {ratio(n, c)} |")
    if torch_run:
        c, t = compiled["results"][LENET_CASE][1], torch_run["results"][LENET_CASE][1]
        print(f"\nLeNet-5 images/s: zeronet {BATCH / c:.0f}, PyTorch {BATCH / t:.0f} "
              f"({t / c:.2f}x PyTorch's throughput)")


if __name__ == "__main__":
    main()
