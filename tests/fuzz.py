"""Random and adversarial calls of every kernel and layer (run by
``test_hostile.py`` in a child process, so that a crash fails the test
instead of killing the test run).

Each call must either return what the NumPy reference returns (or, for a
layer, what the reference kernels give for it), or raise zeronet's own
error: a TypeError or ValueError (RuntimeError for a backward before any
forward) that both implementations raise alike and whose message is not one
of NumPy's or Python's. Run as ``python fuzz.py SEED CALLS``; prints a JSON
summary on the last line and exits 1 if any call broke the rule.
"""
import json
import os
import sys
import traceback
from collections import Counter

# One BLAS thread: the address space is limited below (ADDRESS_SPACE), and
# OpenBLAS reserves a buffer per thread, many on a machine with many cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402 (after the setting above)

from zeronet import kernels, layers, reference  # noqa: E402

# Values a hostile caller tries for any size, stride or pad: the edges of
# C's and NumPy's integers, wrong types, and a few ordinary sizes.
HOSTILE_INTS = [0, -1, 1, 2, 3, 2**31 - 2, 2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1,
                2**63, 2**64, -2**63, np.int64(2), np.uint64(2**63), np.int32(-5)]
HOSTILE_OTHERS = [True, 2.0, "3", "33", None, (1, 2, 3), (2,), [], {}, (2, "1"), b"22"]
# Messages of errors that are NumPy's or Python's, not zeronet's: an
# argument reached code that was not ready for it.
FOREIGN = ["cannot reshape", "too big", "overflow", "int too large", "invalid literal",
           "object of type", "not subscriptable", "unsupported operand", "broadcast",
           "index", "cannot convert", "not iterable", "unhashable", "has no attribute",
           "negative dimensions", "maximum supported dimension", "only integer scalar",
           "buffer", "unpack", "argument", "Cannot cast", "ufunc"]
ZERONET_ERRORS = (TypeError, ValueError)


class Broken(Exception):
    """A call that broke the rule."""


def hostile_size(rng, low=1, high=4):
    """An ordinary size mostly, else something hostile; sometimes a pair."""
    r = rng.random()
    if r < 0.85:
        value = int(rng.integers(low, high + 1))
    elif r < 0.95:
        value = HOSTILE_INTS[rng.integers(len(HOSTILE_INTS))]
    else:
        return HOSTILE_OTHERS[rng.integers(len(HOSTILE_OTHERS))]
    if rng.random() < 0.3:
        other = int(rng.integers(low, high + 1)) if rng.random() < 0.7 else \
            HOSTILE_INTS[rng.integers(len(HOSTILE_INTS))]
        return (value, other)
    return value


def hostile_array(rng, shape, *, float_only=False):
    """A float32/float64 array of ``shape`` mostly; else a wrong dtype,
    byte order, layout or type."""
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    x = rng.standard_normal(shape).astype(dtype)
    r = rng.random()
    if float_only or r < 0.9:
        return x
    if r < 0.92:
        return x.astype(np.int32)
    if r < 0.935:
        return x.astype(np.float16)
    if r < 0.95:
        return x.astype(x.dtype.newbyteorder(">"))
    if r < 0.965 and x.ndim >= 1 and x.shape[-1] > 1:
        return x[..., ::2]
    if r < 0.98:
        return x.tolist()
    return x.astype(np.uint8)


def batch_shape(rng):
    return (int(rng.integers(0, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 7)),
            int(rng.integers(1, 7)))


def outcome(call):
    """``("ok", result)`` or ``("error", exception)``; anything but an
    Exception (a crash takes the whole process) propagates."""
    try:
        return "ok", call()
    except Exception as exc:        # sorted out by the caller
        return "error", exc


def check_error(exc, what):
    if isinstance(exc, RuntimeError) and "before" in str(exc):
        return
    if isinstance(exc, MemoryError):    # a request within zeronet's limits, beyond ours
        return
    if not isinstance(exc, ZERONET_ERRORS):
        raise Broken(f"{what}: {type(exc).__name__}: {exc}\n"
                     + "".join(traceback.format_exception(exc)[-3:]))
    message = str(exc)
    foreign = [f for f in FOREIGN if f in message and "must" not in message]
    if foreign or not message:
        raise Broken(f"{what}: not zeronet's error: {type(exc).__name__}: {message}\n"
                     + "".join(traceback.format_exception(exc)[-3:]))


def same(a, b, exact):
    if isinstance(a, tuple):
        return all(same(x, y, exact) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if exact:
        return np.array_equal(a, b, equal_nan=True)
    tol = 1e-4 if a.dtype == np.float32 else 1e-10
    return np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


def compare(name, core_call, reference_call, exact):
    """Run a kernel call on the core and on the reference; return the
    outcome kind. The reference may run out of memory where the core does
    not (it pads the whole image with NumPy): then the core's result is
    only checked for sanity by the caller."""
    kind, got = outcome(core_call)
    ref_kind, expected = outcome(reference_call)
    if ref_kind == "error" and isinstance(expected, MemoryError) or (
            ref_kind == "error" and "too big" in str(expected)):
        if kind == "error":
            check_error(got, name)
        return "reference-too-big", got
    if kind == "error":
        check_error(got, name)
        if ref_kind != "error" or type(expected) is not type(got):
            raise Broken(f"{name}: the core raised {type(got).__name__}: {got}, the "
                         f"reference {'returned' if ref_kind == 'ok' else repr(expected)}")
        return "error", got
    if ref_kind == "error":
        raise Broken(f"{name}: the core returned, the reference raised "
                     f"{type(expected).__name__}: {expected}")
    if not same(got, expected, exact):
        raise Broken(f"{name}: the core's result differs from the reference's")
    return "ok", got


def fuzz_kernels(rng, counts):
    """One random call of each kernel."""
    core = kernels if kernels.USING_CORE else reference
    x = hostile_array(rng, batch_shape(rng))
    kernel, stride, pad = hostile_size(rng), hostile_size(rng, 1, 3), hostile_size(rng, 0, 2)
    ceil_mode = bool(rng.random() < 0.5)

    kind, col = compare("im2col", lambda: core.im2col(x, kernel, stride, pad),
                        lambda: reference.im2col(x, kernel, stride, pad), exact=True)
    counts["im2col", kind] += 1
    x_shape = np.shape(x) if rng.random() < 0.7 else hostile_shape(rng)
    if kind != "ok":
        col = hostile_array(rng, (int(rng.integers(0, 20)), int(rng.integers(1, 10))))
    kind, _ = compare("col2im", lambda: core.col2im(col, x_shape, kernel, stride, pad),
                      lambda: reference.col2im(col, x_shape, kernel, stride, pad), exact=False)
    counts["col2im", kind] += 1

    kind, pooled = compare("maxpool_forward",
                           lambda: core.maxpool_forward(x, kernel, stride, pad, ceil_mode),
                           lambda: reference.maxpool_forward(x, kernel, stride, pad, ceil_mode),
                           exact=True)
    if kind == "reference-too-big":
        check_pool_sanity(x, kernel, pooled)
    counts["maxpool_forward", kind] += 1
    if kind == "ok" and rng.random() < 0.8:
        out, argmax = pooled
        dout = hostile_array(rng, out.shape) if rng.random() < 0.8 else \
            hostile_array(rng, out.shape[::-1])
        if rng.random() < 0.2 and argmax.size:
            argmax = argmax.copy()
            argmax.flat[rng.integers(argmax.size)] = rng.choice([-1, 2**31 - 1, 10**6])
    else:
        shape = batch_shape(rng)
        dout = hostile_array(rng, shape)
        argmax = rng.integers(-2, 20, shape).astype(np.int32 if rng.random() < 0.8 else np.int64)
    if rng.random() < 0.3:
        x_shape = hostile_shape(rng)
    kind, _ = compare("maxpool_backward",
                      lambda: core.maxpool_backward(dout, argmax, x_shape, kernel, stride, pad),
                      lambda: reference.maxpool_backward(dout, argmax, x_shape, kernel, stride,
                                                         pad), exact=False)
    counts["maxpool_backward", kind] += 1

    c = np.shape(x)[1] if np.ndim(x) == 4 else 2
    groups = 1 if rng.random() < 0.6 else hostile_size(rng, 1, 3)
    oc = int(rng.integers(0, 5))
    kh, kw = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    cg = c // groups if isinstance(groups, int) and 0 < groups <= c else 1
    W = hostile_array(rng, (oc, cg, kh, kw))
    b = hostile_array(rng, (oc,))
    if isinstance(W, np.ndarray) and isinstance(x, np.ndarray) and rng.random() < 0.7:
        W, b = W.astype(x.dtype), b.astype(x.dtype) if isinstance(b, np.ndarray) else b
    kind, y = compare("conv_forward", lambda: core.conv_forward(x, W, b, stride, pad, groups),
                      lambda: reference.conv_forward(x, W, b, stride, pad, groups), exact=False)
    counts["conv_forward", kind] += 1
    dout = hostile_array(rng, y.shape if kind == "ok" else batch_shape(rng))
    if kind == "ok" and isinstance(dout, np.ndarray) and rng.random() < 0.2 \
            and y.shape[2] != y.shape[3]:
        dout = np.ascontiguousarray(np.swapaxes(dout, 2, 3))    # OH and OW swapped
    if isinstance(dout, np.ndarray) and isinstance(x, np.ndarray) and rng.random() < 0.8:
        dout = dout.astype(x.dtype)
    input_grad, bias_grad = bool(rng.random() < 0.8), bool(rng.random() < 0.5)
    kind, _ = compare("conv_backward",
                      lambda: core.conv_backward(x, W, dout, stride, pad, groups, input_grad,
                                                 bias_grad=bias_grad),
                      lambda: reference.conv_backward(x, W, dout, stride, pad, groups,
                                                      input_grad, bias_grad=bias_grad),
                      exact=False)
    counts["conv_backward", kind] += 1


def hostile_shape(rng):
    r = rng.random()
    if r < 0.4:
        return tuple(HOSTILE_INTS[i] for i in rng.integers(len(HOSTILE_INTS), size=4))
    if r < 0.7:
        return HOSTILE_OTHERS[rng.integers(len(HOSTILE_OTHERS))]
    return batch_shape(rng)[:int(rng.integers(2, 6))]


def check_pool_sanity(x, kernel, pooled):
    """Where the reference cannot run: every maximum is a value of x's own
    plane and every argmax a position inside the window."""
    out, argmax = pooled
    kh, kw = (kernel, kernel) if isinstance(kernel, (int, np.integer)) else kernel
    for n, c in np.ndindex(*out.shape[:2]):
        if not np.isin(out[n, c], x[n, c]).all():
            raise Broken("maxpool_forward: a maximum that is not in the input")
    if argmax.size and (argmax.min() < 0 or argmax.max() >= kh * kw):
        raise Broken("maxpool_forward: an argmax outside the window")


def make_layer(rng, kind):
    """A layer of type ``kind`` with random, sometimes hostile, arguments,
    and a fitting input shape (N may be 0)."""
    n = int(rng.integers(0, 3))
    c = int(rng.integers(1, 4))
    h, w = int(rng.integers(2, 8)), int(rng.integers(2, 8))
    dtype = "float32" if rng.random() < 0.5 else "float64"
    if kind == "Convolution":
        layer = layers.Convolution(c, hostile_size(rng, 1, 4), hostile_size(rng, 1, 3),
                                   stride=hostile_size(rng, 1, 2), pad=hostile_size(rng, 0, 1),
                                   dtype=dtype, rng=rng)
        # Now and then a batch large enough for the compiled core's chunks.
        if rng.random() < 0.1:
            n, h, w = 64, 40, 36
        return layer, (n, c, h, w), dtype
    if kind in ("MaxPooling", "AvgPooling"):
        k = hostile_size(rng, 1, 3)
        args = dict(stride=hostile_size(rng, 1, 3), pad=hostile_size(rng, 0, 1))
        if kind == "MaxPooling":
            args["ceil_mode"] = bool(rng.random() < 0.5)
        return layers.LAYERS[kind](k, **args), (n, c, h, w), dtype
    if kind == "Subsampling":
        return layers.Subsampling(hostile_size(rng, 1, 3) if rng.random() < 0.2 else c,
                                  hostile_size(rng, 1, 2), dtype=dtype, rng=rng), \
            (n, c, h, w), dtype
    if kind == "Affine":
        return layers.Affine(c * h, hostile_size(rng, 1, 4), dtype=dtype, rng=rng), \
            (n, c, h), dtype
    if kind == "RBF":
        return layers.RBF(rng.standard_normal((3, c)), dtype=dtype), (n, c), dtype
    if kind == "LRN":
        return layers.LRN(n=int(rng.choice([1, 3, 5]))), (n, c, h, w), None
    if kind == "Dropout":
        return layers.Dropout(float(rng.random() * 0.9), rng=rng), (n, c, h), None
    if kind == "DigitInput":
        return layers.DigitInput(hostile_size(rng, 4, 8)), (n, h, w), None
    if kind == "ImageInput":
        mean = rng.uniform(0, 255, (c, h, w)) if rng.random() < 0.9 else [[float("nan")]]
        return layers.LAYERS[kind](mean, hostile_size(rng, 1, min(h, w)),
                                   dtype=dtype), (n, c, h, w), None
    return layers.LAYERS[kind](), (n, c, h, w)[:int(rng.integers(2, 5))], None


def fuzz_layer(rng, kind, counts):
    """Build a layer, run forward on a fitting (or hostile) input and
    backward on a fitting (or hostile) dout."""
    built, layer = outcome(lambda: make_layer(rng, kind))
    if built == "error":
        check_error(layer, f"{kind}(...)")
        counts[kind, "refused arguments"] += 1
        return
    layer, shape, dtype = layer
    if rng.random() < 0.05:
        kind_, result = outcome(lambda: layer.backward(np.zeros(shape)))
        if kind_ == "error":
            check_error(result, f"{kind}.backward before forward")
    if kind in INPUT_LAYERS:
        x = rng.integers(0, 256, shape).astype(np.uint8)
    else:
        x = hostile_array(rng, shape, float_only=rng.random() < 0.5)
        if dtype is not None and isinstance(x, np.ndarray) and rng.random() < 0.8:
            x = x.astype(dtype)
    forward, y = outcome(lambda: layer.forward(x, train=bool(rng.random() < 0.5)))
    if forward == "error":
        check_error(y, f"{kind}.forward")
        counts[kind, "refused input"] += 1
        return
    if kind in INPUT_LAYERS:       # uint8 in; nothing below them needs a gradient
        counts[kind, "ok"] += 1
        return
    check_forward(kind, layer, x, y)
    r = rng.random()
    dout = (rng.standard_normal(y.shape).astype(y.dtype) if r < 0.6 else
            hostile_array(rng, y.shape) if r < 0.75 else
            hostile_array(rng, y.shape[::-1]) if r < 0.85 else
            hostile_array(rng, (y.shape[0] + 1,) + y.shape[1:]) if r < 0.95 else
            rng.standard_normal(y.shape[1:]).astype(y.dtype))
    kept = np.copy(dout) if isinstance(dout, np.ndarray) else None
    backward, dx = outcome(lambda: layer.backward(dout))
    if backward == "error":
        check_error(dx, f"{kind}.backward")
        if isinstance(dout, np.ndarray) and dout.shape == y.shape and dout.dtype == y.dtype:
            raise Broken(f"{kind}.backward refused a dout that fits: {dx}")
        counts[kind, "refused dout"] += 1
        return
    if not (isinstance(dout, np.ndarray) and dout.shape == y.shape and dout.dtype == y.dtype):
        raise Broken(f"{kind}.backward accepted a dout of {np.shape(dout)} "
                     f"{getattr(dout, 'dtype', type(dout).__name__)} for an output "
                     f"{y.shape} {y.dtype}")
    if not np.array_equal(kept, dout, equal_nan=True):
        raise Broken(f"{kind}.backward changed dout")
    if dx is not None and (dx.shape != x.shape or dx.dtype != x.dtype):
        raise Broken(f"{kind}.backward returned {dx.shape} {dx.dtype} for x {x.shape} "
                     f"{x.dtype}")
    counts[kind, "ok"] += 1


def check_forward(kind, layer, x, y):
    """A layer's output against the reference kernels (or its shape)."""
    if y.dtype != x.dtype:
        raise Broken(f"{kind}.forward turned {x.dtype} into {y.dtype}")
    if kind == "Convolution":
        W = layer.params["W"].data
        expected = reference.conv_forward(np.ascontiguousarray(x), W, layer.params["b"].data,
                                          layer.stride, layer.pad, layer.groups)
    elif kind == "MaxPooling":
        expected, _ = reference.maxpool_forward(np.ascontiguousarray(x), layer.kernel_size,
                                                layer.stride, layer.pad, layer.ceil_mode)
    else:
        return
    if not same(y, expected, exact=kind == "MaxPooling"):
        raise Broken(f"{kind}.forward differs from the reference kernels")


LAYER_KINDS = sorted(layers.LAYERS)
INPUT_LAYERS = ("DigitInput", "ImageInput")


def run(seed, calls):
    rng = np.random.default_rng(seed)
    if kernels.USING_CORE:
        from zeronet import _core
        _core.set_min_parallel_work(0)      # the threaded paths on small arrays too
        kernels.set_num_threads(2)
    counts = Counter()
    for i in range(calls):
        if i % 2 == 0:
            fuzz_kernels(rng, counts)
        else:
            fuzz_layer(rng, LAYER_KINDS[(i // 2) % len(LAYER_KINDS)], counts)
    return counts


# The address space the fuzzing may add to what the process has already
# mapped: a call that asks for more (zeronet allows arrays of up to 2**32
# values) gets MemoryError at once, instead of the machine's memory filling up.
ADDRESS_SPACE = 2 << 30


def limit_address_space():
    try:
        import resource
        with open("/proc/self/status") as status:
            mapped = next(int(line.split()[1]) << 10 for line in status
                          if line.startswith("VmSize:"))
        limit = mapped + ADDRESS_SPACE
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, StopIteration, ValueError):
        pass    # no such limit here: hostile sizes are refused, or fail at once, all the same

if __name__ == "__main__":
    seed, calls = int(sys.argv[1]), int(sys.argv[2])
    run(seed, 20)       # the threads and buffers of a normal run, before the limit
    limit_address_space()
    try:
        counts = run(seed, calls)
    except Broken as exc:
        traceback.print_exc()
        print(json.dumps({"broken": str(exc)}))
        sys.exit(1)
    print(json.dumps({"calls": sum(counts.values()),
                      "counts": {f"{a}: {b}": n for (a, b), n in sorted(counts.items())}}))
