"""Speed of the AlexNet-CIFAR training step: zeronet against PyTorch.

The network is ``zeronet.models.alexnet_cifar`` with its defaults (the one
the reproduction trains, Krizhevsky et al. 2012 scaled to 24x24 crops of
CIFAR-10), and the same network written with ``torch.nn`` below, with
zeronet's weights copied in. Before timing, both must give the same scores,
loss and gradients on one batch (dropout off). Then, for batch 128 in
float32, each in its own subprocess (so that the two OpenMP runtimes do not
spin against each other), rounds alternating between the two:

- one training step: forward with dropout, backward, momentum update
  (Krizhevsky et al. 2012 §5: momentum 0.9, weight decay 0.0005);
- every layer alone, forward and backward, on the input it sees in the net;
- local response normalisation at conv1's and conv2's outputs, with the
  cumsum version zeronet used before (NumPy) as a third column;
- the five convolutions, forward and forward + backward;
- zeronet's data pipeline, ``zeronet.augment.CifarAugment`` as the
  reproduction builds it (§4.1: random 24x24 crops of the 32x32 images,
  mirrored with probability 0.5, PCA colour jitter with std 0.1), on a uint8
  batch of 128 CIFAR-10 training images (synthetic uint8 images of the same
  shape when CIFAR-10 is not found; the output says which), also as a share
  of zeronet's training step.

Each case keeps its fastest median over the rounds. Last, once each: the
10-crop evaluation of the 10,000 test images (random uint8 views here: the
time does not depend on the pixels), batch 1000, in seconds.

    python benchmarks/bench_alexnet.py [--threads 2] [--repeat 10] [--rounds 3]
                                       [--eval-images 10000]

Run it on a quiet machine: anything else running skews the numbers, the
ratios less than the times.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_kernels import MIN_SECONDS, arguments, at_least, fmt, machine, median_time, ratio

USER_ENV = dict(os.environ)      # see bench_kernels.py: PyTorch runs without zeronet's defaults

BATCH = 128
CHECK_BATCH = 16       # images for the check that both networks compute the same
SEED = 0
LRN_SHAPES = {"LRN at conv1 (64x24x24)": (BATCH, 64, 24, 24),
              "LRN at conv2 (192x12x12)": (BATCH, 192, 12, 12)}
CONVS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
PAPER_LRN = dict(n=5, k=2.0, alpha=1e-4, beta=0.75)      # Krizhevsky et al. 2012 §3.3
PCA_STD = 0.1           # Krizhevsky et al. 2012 §4.1: the colour jitter's alpha_i ~ N(0, 0.1)
PIPELINE_TARGET = 0.03  # the data pipeline's share of a training step we aim to stay under


def problem():
    """The mean image, one training batch and its labels, the same in every process."""
    rng = np.random.default_rng(SEED)
    mean = rng.uniform(100, 140, (3, 32, 32))
    x = rng.integers(0, 256, (BATCH, 3, 24, 24), dtype=np.uint8)
    t = rng.integers(0, 10, BATCH)
    return mean, x, t


def zeronet_net():
    from zeronet import models
    mean, _, _ = problem()
    return models.alexnet_cifar(np.random.default_rng(SEED + 1), mean)


def cumsum_lrn(x, dout, n, k, alpha, beta):
    """zeronet's LRN before it was compiled: window sums as differences of a
    running sum along the channels (inexact in float32)."""
    t, half = x.dtype.type, n // 2

    def window_sums(a):
        csum = np.cumsum(np.pad(a, [(0, 0), (half + 1, half), (0, 0), (0, 0)]), axis=1)
        return csum[:, n:] - csum[:, :-n]
    scale = t(k) + t(alpha) * window_sums(x * x)
    out = x * scale ** t(-beta)
    cross = window_sums(dout * out / scale)
    return dout * scale ** t(-beta) - t(2 * alpha * beta) * x * cross


def pipeline_problem():
    """The data pipeline's input: ``BATCH`` uint8 CIFAR-10 training images
    drawn at random, and the colour PCA of the whole training set (fitted as
    reproduce/alexnet.py fits it). Without CIFAR-10, synthetic uint8 images
    of the same shape and their PCA. Returns ``(arrays, source)``: arrays to
    store for the zeronet process, and which images they are."""
    from zeronet import augment, datasets
    rng = np.random.default_rng(SEED + 4)
    try:
        x_train = datasets.load_cifar10(download=False, progress=False).x_train
        source = "CIFAR-10 training images"
    except datasets.DatasetError as exc:
        x_train = rng.integers(0, 256, (BATCH, 3, 32, 32), dtype=np.uint8)
        source = f"synthetic uint8 images ({str(exc).split('. ')[0]})"
    pca = augment.ColourPCA.fit(x_train)
    images = x_train[np.sort(rng.choice(len(x_train), BATCH, replace=False))]
    return {"pipeline_images": images, "pca_eigenvalues": pca.eigenvalues,
            "pca_eigenvectors": pca.eigenvectors, "pca_mean": pca.mean}, source


def eval_views(count, seed):
    """``count`` images of 10 random 24x24 uint8 views each, as batches of
    1000 views (100 images)."""
    rng = np.random.default_rng(seed)
    for first in range(0, count, 100):
        images = min(100, count - first)
        yield rng.integers(0, 256, (images * 10, 3, 24, 24), dtype=np.uint8), images


# --------------------------------------------------------------- zeronet ----

def zeronet_times(repeat, params_file, eval_images):
    import zeronet
    from zeronet import augment, kernels
    from zeronet.optimizers import Momentum

    net = zeronet_net()
    _, x, t = problem()
    opt = Momentum(lr=0.01, momentum=0.9, weight_decay=0.0005)
    results = {}

    def step():
        net.loss(x, t, train=True)
        net.backward()
        opt.update(net.parameters())
    results["step"] = (None, median_time(step, repeat))

    # The pipeline that feeds every step, as reproduce/alexnet.py builds it.
    stored = np.load(params_file)
    pca = augment.ColourPCA(stored["pca_eigenvalues"], stored["pca_eigenvectors"],
                            stored["pca_mean"])
    pipeline = augment.CifarAugment(net.layers["input"], crop=True, flip=True, pca=pca,
                                    std=PCA_STD)
    images, pipeline_rng = stored["pipeline_images"], np.random.default_rng(SEED + 5)
    results["pipeline"] = (None, median_time(lambda: pipeline(images, pipeline_rng), repeat))

    # Every layer alone, on the input it sees in the network.
    rng = np.random.default_rng(SEED + 2)
    h = x
    for name, layer in net.layers.items():
        out = layer.forward(h, train=True)
        if name != "input":
            dout = rng.standard_normal(out.shape).astype(np.float32)

            def both(layer=layer, h=h, dout=dout):
                layer.forward(h, train=True)
                layer.backward(dout)
            results[f"layer {name}"] = (None, median_time(both, repeat))
            if name in CONVS:
                results[f"{name} {conv_label(layer)}"] = (
                    median_time(lambda layer=layer, h=h: layer.forward(h), repeat),
                    results[f"layer {name}"][1])
        h = out

    for label, shape in LRN_SHAPES.items():
        a = np.maximum(rng.standard_normal(shape).astype(np.float32), 0)
        d = rng.standard_normal(shape).astype(np.float32)

        def both(a=a, d=d):
            kernels.lrn_forward(a, **PAPER_LRN)
            kernels.lrn_backward(a, d, **PAPER_LRN)
        results[label] = (None, median_time(both, repeat),
                          median_time(lambda: cumsum_lrn(a, d, **PAPER_LRN), max(3, repeat // 3)))

    evaluation = None
    if eval_images:
        t0 = time.perf_counter()
        for views, images in eval_views(eval_images, SEED + 3):
            scores = net.predict(views)
            np.exp(scores - scores.max(axis=1, keepdims=True)).reshape(images, 10, -1).mean(1)
        evaluation = time.perf_counter() - t0
    return {"results": results, "eval": evaluation, "backend": zeronet.backend(),
            "blas": kernels.blas_in_use(), "simd": getattr(kernels._core, "SIMD", None),
            "blas_arch": blas_architecture()}


def conv_label(conv):
    c, oc, (kh, kw) = conv.in_channels, conv.out_channels, conv.kernel_size
    groups = f" groups {conv.groups}" if conv.groups > 1 else ""
    return f"{c}->{oc} {kh}x{kw} pad {conv.pad[0]}{groups}"


def blas_architecture():
    """NumPy's own BLAS as threadpoolctl describes it (SciPy's, which the
    compiled core also loads, may be another library of another version);
    the first BLAS found, said so, when NumPy's is not one threadpoolctl
    can place (a NumPy built against the system's BLAS)."""
    from zeronet import kernels
    found = kernels._blas_controllers()
    own = [lib for lib in found if kernels._package_owns(np, lib)]
    if not (own or found):
        return None
    info = (own or found)[0].info()
    where = "" if own else ", not placed as NumPy's own"
    return f"{info['internal_api']} {info['version']} ({info.get('architecture')} kernels{where})"


# --------------------------------------------------------------- PyTorch ----

def torch_net(torch, params, mean):
    """AlexNet-CIFAR with ``torch.nn``, zeronet's weights in ``params``
    (layer name -> {"W", "b"}); Affine's W is (in, out), Linear's (out, in)."""
    nn = torch.nn

    class Dropout(nn.Module):     # zeronet's (the paper's, §4.2): at test time, times 1 - p
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            if self.training:
                return x * (torch.rand_like(x) >= self.p)
            return x * (1 - self.p)

    class Input(nn.Module):         # zeronet's ImageInput: the centre of the mean image subtracted
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean[:, 4:28, 4:28], dtype=torch.float32))

        def forward(self, x):
            return x.to(self.mean.dtype) - self.mean

    def conv(name, c, oc, k, pad, groups=1):
        layer = nn.Conv2d(c, oc, k, padding=pad, groups=groups)
        layer.weight.data = torch.tensor(params[name]["W"])
        layer.bias.data = torch.tensor(params[name]["b"])
        return layer

    def linear(name):
        W = params[name]["W"]
        layer = nn.Linear(*W.shape)
        layer.weight.data = torch.tensor(np.ascontiguousarray(W.T))
        layer.bias.data = torch.tensor(params[name]["b"])
        return layer

    def lrn():      # PyTorch divides alpha by n, the paper does not
        return nn.LocalResponseNorm(PAPER_LRN["n"], PAPER_LRN["alpha"] * PAPER_LRN["n"],
                                    PAPER_LRN["beta"], PAPER_LRN["k"])

    def pool():
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    layers = [
        ("input", Input()),
        ("conv1", conv("conv1", 3, 64, 5, 2)), ("relu1", nn.ReLU()), ("lrn1", lrn()),
        ("pool1", pool()),
        ("conv2", conv("conv2", 64, 192, 5, 2, 2)), ("relu2", nn.ReLU()), ("lrn2", lrn()),
        ("pool2", pool()),
        ("conv3", conv("conv3", 192, 384, 3, 1)), ("relu3", nn.ReLU()),
        ("conv4", conv("conv4", 384, 256, 3, 1, 2)), ("relu4", nn.ReLU()),
        ("conv5", conv("conv5", 256, 256, 3, 1, 2)), ("relu5", nn.ReLU()), ("pool5", pool()),
        ("flatten", nn.Flatten()),
        ("fc6", linear("fc6")), ("relu6", nn.ReLU()), ("drop6", Dropout(0.5)),
        ("fc7", linear("fc7")), ("relu7", nn.ReLU()), ("drop7", Dropout(0.5)),
        ("fc8", linear("fc8")),
    ]
    return layers, nn.Sequential(*[layer for _, layer in layers])


def torch_times(repeat, threads, params_file, eval_images):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    stored = np.load(params_file)
    params = {}
    for key in stored.files:
        if "/" in key:
            layer, name = key.split("/")
            params.setdefault(layer, {})[name] = stored[key]
    mean, x_np, t_np = problem()
    layers, net = torch_net(torch, params, mean)
    x, t = torch.tensor(x_np), torch.tensor(t_np)

    # The same network? Scores, loss and weight gradients without dropout,
    # in float64: in float32, a max-pooling window whose two largest values
    # lie within rounding of each other may send its gradient elsewhere.
    net.double().eval()
    scores = net(x[:CHECK_BATCH])
    loss = F.cross_entropy(scores, t[:CHECK_BATCH])
    loss.backward()
    check = {"scores": rel(scores.detach().numpy(), stored["check_scores"]),
             "loss": abs(loss.item() - float(stored["check_loss"])) / abs(float(stored["check_loss"]))}
    for name, module in layers:
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            grad = module.weight.grad.numpy()
            expected = stored[f"check_grad/{name}"]
            check[f"d{name}/W"] = rel(grad.T if grad.ndim == 2 else grad, expected)
    net.float().train()

    decay = [m.weight for _, m in layers if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    biases = [m.bias for _, m in layers if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 0.0005},
                           {"params": biases, "weight_decay": 0.0}], lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), t).backward()
        opt.step()
    results = {"step": (None, median_time(step, repeat))}

    h = x
    first_trainable = True
    for name, module in layers:
        with torch.no_grad():
            out = module(h)
        if name != "input":
            inp = h.detach().clone().requires_grad_(not first_trainable)
            first_trainable = False if isinstance(module, torch.nn.Conv2d) else first_trainable
            dout = torch.randn_like(out)

            def both(module=module, inp=inp, dout=dout):
                module.zero_grad(set_to_none=True)
                inp.grad = None
                module(inp).backward(dout)
            results[f"layer {name}"] = (None, median_time(both, repeat))
            if name in CONVS:
                def forward(module=module, inp=inp):
                    with torch.no_grad():
                        module(inp)
                results[f"conv {name}"] = (median_time(forward, repeat),
                                           results[f"layer {name}"][1])
        h = out

    lrn = layers[3][1]
    for label, shape in LRN_SHAPES.items():
        a = torch.relu(torch.randn(shape)).requires_grad_(True)
        d = torch.randn(shape)

        def both(a=a, d=d):
            a.grad = None
            lrn(a).backward(d)
        results[label] = (None, median_time(both, repeat))

    evaluation = None
    if eval_images:
        net.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            for views, images in eval_views(eval_images, SEED + 3):
                torch.softmax(net(torch.tensor(views)), 1).reshape(images, 10, -1).mean(1)
        evaluation = time.perf_counter() - t0
    return {"results": results, "eval": evaluation, "version": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "check": check}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ---------------------------------------------------------------- report ----

def write_params(path):
    """zeronet's initial weights for PyTorch to copy, and, to check the copy
    against: the same network's scores, loss and weight gradients on
    CHECK_BATCH images without dropout, in float64. Also the data pipeline's
    batch and colour PCA (:func:`pipeline_problem`); returns its source."""
    from zeronet import models
    net = zeronet_net()
    mean, x, t = problem()
    arrays, source = pipeline_problem()
    arrays.update({p.name: p.data for p in net.parameters()})
    net64 = models.alexnet_cifar(np.random.default_rng(SEED + 1), mean, dtype="float64")
    for p, p64 in zip(net.parameters(), net64.parameters()):
        p64.data[...] = p.data
    arrays["check_scores"] = net64.predict(x[:CHECK_BATCH])
    arrays["check_loss"] = np.array(net64.loss(x[:CHECK_BATCH], t[:CHECK_BATCH]))
    net64.backward()
    for p in net64.parameters():
        if p.name.endswith("/W"):
            arrays[f"check_grad/{p.name.split('/')[0]}"] = p.grad.copy()
    np.savez(path, **arrays)
    return source


def best_of(runs):
    """Each case's fastest time over the rounds (per column)."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    best = {}
    for name in runs[0]["results"]:
        columns = zip(*(r["results"][name] for r in runs))
        best[name] = [min((v for v in column if v is not None), default=None) for column in columns]
    return {**runs[0], "results": best}


def report(args, zn, pt, pipeline_source):
    import zeronet
    print(f"machine: {machine()}")
    print(f"zeronet {zeronet.__version__} ({zn['backend']}, OpenMP "
          f"{'on' if zeronet.kernels.HAS_OPENMP else 'off'}, {args.threads} threads; its loops "
          f"built for {zn['simd']}), numpy {np.__version__}")
    print(f"zeronet's BLAS: {zn['blas']}; BLAS behind NumPy: {zn['blas_arch']}")
    if pt:
        print(f"PyTorch {pt['version']} ({args.threads} threads, {pt['capability']} kernels)")
        worst = max(pt["check"].values())
        print(f"same network: largest relative difference of scores, loss and weight gradients "
              f"(dropout off, float64, {CHECK_BATCH} images) {worst:.1e}")
    print(f"batch {BATCH}, float32, times in ms: the median of at least {args.repeat} runs and "
          f"{MIN_SECONDS} s, the fastest such median of {args.rounds} alternating rounds\n")

    z, p = zn["results"], pt["results"] if pt else {}
    step_z, step_p = z["step"][1], p.get("step", (None, None))[1]
    print("| AlexNet-CIFAR training step | zeronet | PyTorch | zeronet / PyTorch |")
    print("|---|---|---|---|")
    print(f"| forward + backward + momentum update | {fmt(step_z)} | {fmt(step_p)} "
          f"| {ratio(step_z, step_p)} |")
    if step_p:
        print(f"\nimages/s: zeronet {BATCH / step_z:.0f}, PyTorch {BATCH / step_p:.0f}: "
              f"{step_p / step_z:.2f}x PyTorch's throughput\n")

    print("| layer (forward + backward) | zeronet | PyTorch | zeronet / PyTorch |")
    print("|---|---|---|---|")
    for name in [k for k in z if k.startswith("layer ")]:
        zt, ptt = z[name][1], p.get(name, (None, None))[1]
        print(f"| {name[6:]} | {fmt(zt)} | {fmt(ptt)} | {ratio(zt, ptt)} |")
    print(f"| sum of the layers | {fmt(sum(v[1] for k, v in z.items() if k.startswith('layer ')))} "
          f"| {fmt(sum(v[1] for k, v in p.items() if k.startswith('layer '))) if p else '-'} | |")

    print("\n| convolution | pass | zeronet | PyTorch | zeronet / PyTorch |")
    print("|---|---|---|---|---|")
    for name in CONVS:
        key = next(k for k in z if k.startswith(f"{name} "))
        for i, label in enumerate(("forward", "fwd+bwd")):
            zt, ptt = z[key][i], p.get(f"conv {name}", (None, None))[i]
            print(f"| {key} | {label} | {fmt(zt)} | {fmt(ptt)} | {ratio(zt, ptt)} |")

    print("\n| LRN, forward + backward | zeronet | PyTorch | old zeronet (cumsum) "
          "| zeronet / PyTorch | old / zeronet |")
    print("|---|---|---|---|---|---|")
    for label in LRN_SHAPES:
        zt, old = z[label][1], z[label][2]
        ptt = p.get(label, (None, None))[1]
        print(f"| {label} | {fmt(zt)} | {fmt(ptt)} | {fmt(old)} | {ratio(zt, ptt)} "
              f"| {ratio(old, zt)} |")

    pipe = z["pipeline"][1]
    share = pipe / step_z
    print(f"\n| data pipeline, batch {BATCH} | ms per batch | share of zeronet's step | target |")
    print("|---|---|---|---|")
    print(f"| random 24x24 crops of 32x32, flips, PCA colour jitter (std {PCA_STD:g}) "
          f"| {fmt(pipe)} | {share:.2%} | ≤ {PIPELINE_TARGET:.0%}: "
          f"{'met' if share <= PIPELINE_TARGET else 'missed'} |")
    print(f"\nthe pipeline's batch: {pipeline_source}")

    if zn["eval"] is not None:
        print(f"\n10-crop evaluation of {args.eval_images} images (10 views of 24x24 each, "
              f"batch 1000): zeronet {zn['eval']:.1f} s"
              + (f", PyTorch {pt['eval']:.1f} s ({ratio(zn['eval'], pt['eval'])})"
                 if pt and pt["eval"] is not None else ""))


def main():
    ap = arguments(__doc__)
    ap.add_argument("--eval-images", type=at_least(0), default=10000,
                    help="images for the 10-crop evaluation timing (0: skip it)")
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.measure:        # one implementation, alone in this process
        if args.measure == "torch":
            out = torch_times(args.repeat, args.threads, args.params, args.eval_images)
        else:
            import zeronet
            zeronet.kernels.set_num_threads(args.threads)
            zeronet.kernels.set_blas_threads(args.threads)
            out = zeronet_times(args.repeat, args.params, args.eval_images)
        print(json.dumps(out))
        return

    import zeronet

    with tempfile.TemporaryDirectory() as tmp:
        params = os.path.join(tmp, "params.npz")
        pipeline_source = write_params(params)

        def measure(kind, eval_images):
            threads = str(args.threads)
            base = os.environ if kind == "zeronet" else USER_ENV
            env = dict(base, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
            out = subprocess.run([sys.executable, __file__, "--measure", kind, "--repeat",
                                  str(args.repeat), "--threads", threads, "--params", params,
                                  "--eval-images", str(eval_images)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        rounds = {"zeronet": [], "torch": []}
        for i in range(args.rounds):
            last = i == args.rounds - 1
            for kind in rounds:
                rounds[kind].append(measure(kind, args.eval_images if last else 0))
    zn, pt = best_of(rounds["zeronet"]), best_of(rounds["torch"])
    zn["eval"], pt_eval = rounds["zeronet"][-1]["eval"], (rounds["torch"][-1] or {}).get("eval")
    if pt:
        pt["eval"] = pt_eval
        worst = max(pt["check"].values())
        if worst > 1e-6:
            sys.exit(f"PyTorch's network differs from zeronet's (relative difference {worst:.2g} "
                     f"in {max(pt['check'], key=pt['check'].get)}): the timings would compare "
                     f"different things")
    report(args, zn, pt, pipeline_source)


if __name__ == "__main__":
    main()
