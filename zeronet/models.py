"""Model builders. Each takes an explicit ``numpy.random.Generator``."""
import numpy as np

from zeronet import layers as L
from zeronet._validate import pool_output_size
from zeronet.losses import MAPLoss
from zeronet.network import Sequential

# LeCun et al. 1998, Table 1: which S2 maps (columns) each C3 map (rows) sees.
# Maps 0-5 see 3 contiguous maps, 6-11 see 4 contiguous, 12-14 see 4
# non-contiguous, 15 sees all six: 60 connections in all.
LENET5_C3_INPUTS = [
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
]

# LeNet-5's output codes (LeCun et al. 1998 §II.B): each class's RBF unit
# compares F6's 84 outputs with a stylised image of its digit on a 7x12
# bitmap, ink +1 and background -1 (where the squashing function's second
# derivative peaks, so F6 is not driven into saturation). The paper shows
# its bitmaps only as a picture (Fig. 3); these are drawn for zeronet.
DIGIT_BITMAPS = {
    0: """..###.. .#...#. #.....# #.....# #.....# #.....#
          #.....# #.....# #.....# .#...#. ..###.. .......""",
    1: """...#... ..##... .###... ...#... ...#... ...#...
          ...#... ...#... ...#... ...#... .#####. .......""",
    2: """..###.. .#...#. #.....# ......# .....#. ....#..
          ...#... ..#.... .#..... #...... ####### .......""",
    3: """.#####. #.....# ......# ......# ...###. ......#
          ......# ......# ......# #.....# .#####. .......""",
    4: """.....#. ....##. ...#.#. ..#..#. .#...#. #....#.
          ####### .....#. .....#. .....#. .....#. .......""",
    5: """####### #...... #...... #...... ######. ......#
          ......# ......# ......# #.....# .#####. .......""",
    6: """..####. .#..... #...... #...... #.###.. ##...#.
          #.....# #.....# #.....# .#...#. ..###.. .......""",
    7: """####### ......# .....#. .....#. ....#.. ....#..
          ...#... ...#... ..#.... ..#.... ..#.... .......""",
    8: """..###.. .#...#. #.....# .#...#. ..###.. .#...#.
          #.....# #.....# #.....# .#...#. ..###.. .......""",
    9: """..###.. .#...#. #.....# #.....# #.....# .#...##
          ..###.# ......# ......# .....#. .####.. .......""",
}


def digit_codes(dtype="float32"):
    """The RBF codes for digits 0-9 as a ``(10, 84)`` array of +-1: row
    ``d`` is digit d's 7x12 bitmap, read row by row."""
    rows = []
    for digit in range(10):
        bits = "".join(DIGIT_BITMAPS[digit].split())
        assert len(bits) == 84, (digit, len(bits))
        rows.append([1.0 if b == "#" else -1.0 for b in bits])
    return np.array(rows, dtype=dtype)


def hadamard_codes(num_classes=10, dtype="float32"):
    """RBF codes that form an error-correcting code, ``(num_classes, 84)``
    of +-1: rows 1 to ``num_classes`` of a Hadamard matrix of order 84.

    The paper (§II.B) notes that its codes could have been random, or an
    error-correcting code, and that its digit bitmaps pay off only when
    reading strings of printable ASCII, not isolated digits. Drawn bitmaps
    put similar digits close together (ours: 6 and 8 differ in 8 of 84
    places, 3 and 5 in 10), so F6 must separate exactly the pairs that are
    hardest to tell apart. Rows of a Hadamard matrix are orthogonal: every
    two codes differ in exactly 42 places, and each has 42 entries of +1.
    Row 0 (all +1) is skipped so that every code is balanced.

    The matrix is Paley's (1933): 83 is a prime of the form 4k + 3, and
    with the quadratic character chi of GF(83) (chi(0) = 0),
    ``H = I + [[0, 1...1], [-1, Q]]`` with ``Q[i, j] = chi(j - i)`` has
    ``H H^T = 84 I``.
    """
    q = 83
    if not 1 <= num_classes <= q:
        raise ValueError(f"an order-84 Hadamard matrix has codes for 1 to {q} classes, "
                         f"not {num_classes}")
    squares = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if a in squares else -1 for a in range(1, q)])
    offsets = np.arange(q)
    jacobsthal = chi[(offsets[None, :] - offsets[:, None]) % q]
    skew = np.zeros((q + 1, q + 1), dtype=int)
    skew[0, 1:], skew[1:, 0], skew[1:, 1:] = 1, -1, jacobsthal
    hadamard = np.eye(q + 1, dtype=int) + skew
    return hadamard[1:num_classes + 1].astype(dtype)


# lenet5(codes=...): name -> function(dtype=...) giving the (10, 84) codes.
RBF_CODES = {"bitmaps": digit_codes, "hadamard": hadamard_codes}


def lenet5_c3_table():
    """The C3 connection table as a ``(16, 6)`` 0/1 matrix."""
    table = np.zeros((16, 6), dtype=int)
    for out_map, inputs in enumerate(LENET5_C3_INPUTS):
        table[out_map, list(inputs)] = 1
    return table


def squashing(name):
    """The activation layer class for ``"scaled_tanh"`` (the paper's
    1.7159 tanh(2a/3)), ``"sigmoid"`` (the book's) or ``"relu"``."""
    return {"scaled_tanh": L.ScaledTanh, "sigmoid": L.Sigmoid, "relu": L.ReLU,
            "tanh": L.Tanh}[name]


def lenet5(rng, *, activation="scaled_tanh", full_c3=False, dtype="float32", num_classes=10,
           output="softmax", rubbish_penalty=10.0, codes="bitmaps"):
    """LeNet-5 (LeCun et al. 1998 §II.B) on ``(N, 1, 32, 32)`` input, or on
    uint8 MNIST digits ``(N, 28, 28)``, which its first layer
    (:class:`~zeronet.layers.DigitInput`) pads and normalises.

    C1 6@28x28, S2 6@14x14, C3 16@10x10 (Table 1 connections unless
    ``full_c3``), S4 16@5x5, C5 120, F6 84, then the output layer:
    ``output="softmax"``, an Affine layer to ``num_classes`` scores with
    softmax cross-entropy; or ``output="rbf"``, the paper's RBF units with
    fixed codes and its MAP loss with constant ``j = rubbish_penalty``
    (eq. 9); ``codes`` picks them: ``"bitmaps"``, stylised digits as in the
    paper (:func:`digit_codes`), or ``"hadamard"``, an error-correcting code
    (:func:`hadamard_codes`). Every layer up to F6 is followed by
    the squashing function. Weights uniform in +-2.4/fan-in (Appendix C).
    Trainable parameters through F6: 60,000 (with the Table 1 C3); the RBF
    output adds none.
    """
    act = squashing(activation)
    init = "LeCunUniform"
    kw = dict(dtype=dtype, rng=rng, weight_init=init)
    if output == "rbf":
        if num_classes != 10:
            raise ValueError(f"the RBF output has codes for the 10 digits, "
                             f"not {num_classes} classes")
        if codes not in RBF_CODES:
            raise ValueError(f"codes must be one of {tuple(RBF_CODES)}, got {codes!r}")
        output_layer = ("output", L.RBF(RBF_CODES[codes](dtype=dtype), dtype=dtype))
        loss = MAPLoss(rubbish_penalty)
    elif output == "softmax":
        output_layer, loss = ("output", L.Affine(84, num_classes, **kw)), None
    else:
        raise ValueError(f"output must be 'softmax' or 'rbf', got {output!r}")
    return Sequential([
        ("input", L.DigitInput(32, dtype=dtype)),
        ("c1", L.Convolution(1, 6, 5, **kw)), ("c1_act", act()),
        ("s2", L.Subsampling(6, 2, **kw)), ("s2_act", act()),
        ("c3", L.Convolution(6, 16, 5, table=None if full_c3 else lenet5_c3_table(), **kw)),
        ("c3_act", act()),
        ("s4", L.Subsampling(16, 2, **kw)), ("s4_act", act()),
        ("c5", L.Convolution(16, 120, 5, **kw)), ("c5_act", act()),
        ("f6", L.Affine(120, 84, **kw)), ("f6_act", act()),
        output_layer,
    ], loss)


def mlp(rng, hidden, *, in_features=784, num_classes=10, activation="scaled_tanh",
        dtype="float32"):
    """Fully connected network ``in_features - hidden... - num_classes``
    (LeCun et al. 1998 §III.C.3-4); ``hidden=()`` is the linear classifier.
    Input ``(N, ...)`` is flattened; with a square ``in_features`` a
    :class:`~zeronet.layers.DigitInput` first accepts raw uint8 digits.
    Weights uniform in +-2.4/fan-in."""
    act = squashing(activation)
    kw = dict(dtype=dtype, rng=rng, weight_init="LeCunUniform")
    sizes = [in_features, *hidden]
    side = int(round(np.sqrt(in_features)))
    layers = [("input", L.DigitInput(side, dtype=dtype))] if side * side == in_features else []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers += [(f"fc{i}", L.Affine(a, b, **kw)), (f"fc{i}_act", act())]
    layers.append(("output", L.Affine(sizes[-1], num_classes, **kw)))
    return Sequential(layers)


def lenet1(rng, *, activation="scaled_tanh", dtype="float32", num_classes=10):
    """LeNet-1, reconstructed (LeCun et al. 1998 §III.C.5 gives no sizes).

    From LeCun et al. 1989/1995: 28x28 input; C1 4@24x24 (5x5); S2 4@12x12;
    C3 12@8x8 (5x5, here fully connected to S2: the original's partial
    table is not published); S4 12@4x4; output fully connected, 192 -> 10.
    3,278 trainable parameters.
    """
    act = squashing(activation)
    kw = dict(dtype=dtype, rng=rng, weight_init="LeCunUniform")
    return Sequential([
        ("input", L.DigitInput(28, dtype=dtype)),
        ("c1", L.Convolution(1, 4, 5, **kw)), ("c1_act", act()),
        ("s2", L.Subsampling(4, 2, **kw)), ("s2_act", act()),
        ("c3", L.Convolution(4, 12, 5, **kw)), ("c3_act", act()),
        ("s4", L.Subsampling(12, 2, **kw)), ("s4_act", act()),
        ("flatten", L.Flatten()),
        ("output", L.Affine(12 * 4 * 4, num_classes, **kw)),
    ])


def lenet4(rng, *, activation="scaled_tanh", dtype="float32", num_classes=10):
    """LeNet-4, reconstructed from LeCun et al. 1998 §III.C.6: 32x32 input;
    C1 4@28x28; S2 (the paper's 8 maps "connected in pairs" become 4 maps
    here); C3 16@10x10 fully connected to S2; S4 16@5x5; C5 120 (fully
    connected); output 10. The paper quotes about 17,000 free parameters,
    which its own layer list cannot reach with a full 120-unit layer; this
    reconstruction has 51,090.
    """
    act = squashing(activation)
    kw = dict(dtype=dtype, rng=rng, weight_init="LeCunUniform")
    return Sequential([
        ("input", L.DigitInput(32, dtype=dtype)),
        ("c1", L.Convolution(1, 4, 5, **kw)), ("c1_act", act()),
        ("s2", L.Subsampling(4, 2, **kw)), ("s2_act", act()),
        ("c3", L.Convolution(4, 16, 5, **kw)), ("c3_act", act()),
        ("s4", L.Subsampling(16, 2, **kw)), ("s4_act", act()),
        ("c5", L.Convolution(16, 120, 5, **kw)), ("c5_act", act()),
        ("output", L.Affine(120, num_classes, **kw)),
    ])


def alexnet_pooled_sides(crop, pool=(3, 2)):
    """Sides of :func:`alexnet_cifar`'s maps from ``crop x crop`` patches
    after pool1, pool2 and pool5 (the last reach fc6), each a ``pool =
    (window, stride)`` max pooling in ceil mode: a tuple of 3 ints. A
    ValueError if a window is larger than its input: the crop is too small
    for the poolings."""
    sides = [crop]
    for _ in range(3):
        sides.append(pool_output_size(sides[-1], pool[0], pool[1], 0, True, "side"))
    return tuple(sides[1:])


def alexnet_cifar(rng, mean, *, crop=24, widths=(64, 192, 384, 256, 256), hidden=384,
                  towers=2, lrn=True, pool=(3, 2), dropout=0.5, activation="relu",
                  depth=5, init="paper", scale=1.0, num_classes=10, dtype="float32"):
    """AlexNet (Krizhevsky et al. 2012 §3.5, Fig. 2) scaled to CIFAR-10.

    ``(N, 3, 32, 32)`` uint8 images (or prepared crops, see
    :class:`~zeronet.layers.ImageInput`) -> ``(N, num_classes)`` scores.

    As the paper's: five convolutional layers, then two hidden fully
    connected layers and the output; ReLU after every convolutional and
    hidden fully connected layer (§3.1); local response normalisation
    (k=2, n=5, alpha=1e-4, beta=0.75) after the ReLUs of conv1 and conv2
    (§3.3); overlapping max pooling 3x3 stride 2 after both normalisations
    and after conv5 (§3.4); two towers (``groups=2``) in conv2, conv4 and
    conv5, with conv3 and the fully connected layers seeing both (§3.2,
    §3.5); dropout 0.5 on the two hidden fully connected layers (§4.2).
    Scaled to 24x24 crops of CIFAR-10 (cuda-convnet's crop): conv1 5x5
    stride 1 pad 2 instead of 11x11 stride 4 on 224x224, conv2 5x5 pad 2,
    conv3-5 3x3 pad 1, so the maps are 24 -> 12 -> 6 -> 3 (pools in ceil
    mode, as cuda-convnet's).

    Shapes (defaults): conv1 64@24x24, pool 12x12, conv2 192@12x12, pool
    6x6, conv3 384@6x6, conv4 256@6x6, conv5 256@6x6, pool 3x3 (2304
    values), fc6 384, fc7 384, output 10.

    Options, one mechanism each (the ablations of §3 and §4):

    - ``widths``: kernels of conv1-5; ``hidden``: units of fc6 and fc7.
    - ``towers=2`` splits conv2, conv4 and conv5 into two groups (§3.2);
      ``towers=1`` is the paper's comparison net: one tower with half the
      kernels in every convolutional layer but the last (footnote 2).
    - ``lrn``: the normalisation layers on or off (§3.3).
    - ``pool``: ``(3, 2)`` overlapping or ``(2, 2)`` plain pooling (§3.4).
    - ``dropout``: the ratio on fc6 and fc7, 0 for none (§4.2).
    - ``activation``: ``"relu"`` (§3.1) or ``"tanh"`` (Fig. 1's comparison);
      the activation layers are named after it (``relu1`` ... ``relu7``).
    - ``depth``: 5, or 4 to remove conv4, a middle layer (§7).
    - ``init="paper"``: weights N(0, 0.01), biases 1 in conv2, conv4, conv5
      and fc6-7, 0 elsewhere (§5); ``"he"``: He normal weights, biases 0.
    - ``mean``, ``crop``, ``scale``: the input layer's mean image ``(3, H,
      W)`` (pixel units), crop side and scaling (1 = the paper's 0..255
      units with the mean subtracted).
    """
    if depth not in (4, 5):
        raise ValueError(f"depth must be 5 or 4 (conv4 removed), got {depth}")
    if towers not in (1, 2):
        raise ValueError(f"towers must be 1 or 2, got {towers}")
    act = squashing(activation)
    w1, w2, w3, w4, w5 = widths
    if towers == 1:     # footnote 2: half the kernels, a full-size last conv layer
        w1, w2, w3, w4 = w1 // 2, w2 // 2, w3 // 2, w4 // 2
    groups = towers

    def weights(positive_bias):
        if init == "paper":
            return dict(weight_init={"type": "Gaussian", "std": 0.01},
                        bias_init=1.0 if positive_bias else 0.0)
        if init == "he":
            return dict(weight_init="He", bias_init=0.0)
        raise ValueError(f"init must be 'paper' or 'he', got {init!r}")

    kw = dict(dtype=dtype, rng=rng)
    net = [("input", L.ImageInput(mean, crop, scale, dtype=dtype)),
           ("conv1", L.Convolution(3, w1, 5, pad=2, **weights(False), **kw)),
           (f"{activation}1", act())]
    if lrn:
        net.append(("lrn1", L.LRN()))
    net += [("pool1", L.MaxPooling(pool[0], pool[1], ceil_mode=True)),
            ("conv2", L.Convolution(w1, w2, 5, pad=2, groups=groups, **weights(True), **kw)),
            (f"{activation}2", act())]
    if lrn:
        net.append(("lrn2", L.LRN()))
    net += [("pool2", L.MaxPooling(pool[0], pool[1], ceil_mode=True)),
            ("conv3", L.Convolution(w2, w3, 3, pad=1, **weights(False), **kw)),
            (f"{activation}3", act())]
    last = w3
    if depth == 5:
        net += [("conv4", L.Convolution(w3, w4, 3, pad=1, groups=groups, **weights(True), **kw)),
                (f"{activation}4", act())]
        last = w4
    net += [("conv5", L.Convolution(last, w5, 3, pad=1, groups=groups, **weights(True), **kw)),
            (f"{activation}5", act()), ("pool5", L.MaxPooling(pool[0], pool[1], ceil_mode=True)),
            ("flatten", L.Flatten())]
    side = alexnet_pooled_sides(crop, pool)[-1]
    features = w5 * side * side
    net += [("fc6", L.Affine(features, hidden, **weights(True), **kw)),
            (f"{activation}6", act())]
    if dropout:
        net.append(("drop6", L.Dropout(dropout, rng=rng)))
    net += [("fc7", L.Affine(hidden, hidden, **weights(True), **kw)), (f"{activation}7", act())]
    if dropout:
        net.append(("drop7", L.Dropout(dropout, rng=rng)))
    net.append(("fc8", L.Affine(hidden, num_classes, **weights(False), **kw)))
    return Sequential(net)


def simple_convnet(rng, *, input_dim=(1, 28, 28), filter_num=30, filter_size=5, pad=0, stride=1,
                   hidden_size=100, output_size=10, weight_init_std=0.01, dtype="float32"):
    """The book's SimpleConvNet (ゼロから作る Deep Learning §7.5, ``ch07/simple_convnet.py``),
    with the book's arguments and defaults.

    conv1 (``filter_num`` @ ``filter_size`` x ``filter_size``) - relu1 -
    pool1 (2x2 max, stride 2) - affine1 (``hidden_size``) - relu2 - affine2
    (``output_size``), then softmax cross-entropy. Every weight is drawn
    from N(0, ``weight_init_std``^2), every bias starts at 0, as in the book.

    A grey square ``input_dim`` (MNIST's ``(1, 28, 28)``) gets a first layer
    (:class:`~zeronet.layers.DigitInput`) that scales uint8 pixels to 0..1, as
    the book's ``load_mnist(normalize=True)``; so the network takes MNIST's
    uint8 digits ``(N, 28, 28)`` as they come, or float input already
    scaled, ``(N, 1, 28, 28)``.

    Shapes with the defaults: x ``(N, 1, 28, 28)`` -> conv1 ``(N, 30, 24, 24)``
    -> pool1 ``(N, 30, 12, 12)`` -> affine1 ``(N, 100)`` -> affine2 scores
    ``(N, 10)``. Parameters: conv1/W ``(30, 1, 5, 5)``, conv1/b ``(30,)``,
    affine1/W ``(4320, 100)``, affine1/b ``(100,)``, affine2/W ``(100, 10)``,
    affine2/b ``(10,)``: 433,890 in all (the book's W1, b1, W2, b2, W3, b3).
    """
    channels, height, width = input_dim
    conv_h = (height + 2 * pad - filter_size) // stride + 1
    conv_w = (width + 2 * pad - filter_size) // stride + 1
    pooled = filter_num * (conv_h // 2) * (conv_w // 2)
    kw = dict(dtype=dtype, rng=rng, weight_init={"type": "Gaussian", "std": weight_init_std})
    first = ([("input", L.DigitInput(height, background=0.0, ink=1.0, dtype=dtype))]
             if channels == 1 and height == width else [])
    return Sequential(first + [
        ("conv1", L.Convolution(channels, filter_num, filter_size, stride=stride, pad=pad, **kw)),
        ("relu1", L.ReLU()),
        ("pool1", L.MaxPooling(2, stride=2)),
        ("affine1", L.Affine(pooled, hidden_size, **kw)),
        ("relu2", L.ReLU()),
        ("affine2", L.Affine(hidden_size, output_size, **kw)),
    ])
