"""Figures for the reproduction reports, redrawn from our runs in the style
of the papers.

LeCun et al. 1998:

- :func:`learning_curves`: training and test error against training passes
  (the paper's Fig. 5);
- :func:`misclassified`: the test digits the network got wrong, each labelled
  "true->predicted" (the paper's Fig. 8);
- :func:`filters`: a convolution layer's kernels as small grey images.

Krizhevsky et al. 2012:

- :func:`colour_kernels`: the first layer's kernels in colour, one block per
  tower (the paper's Fig. 3);
- :func:`nearest_neighbours`: test images with their top-5 predictions and
  the training images closest to them in the last hidden layer (Fig. 4),
  with :func:`nearest_training_images` to find those;
- :func:`pca_jitter`: one image under several draws of the PCA colour
  jitter, with the principal axes drawn (§4.1);
- :func:`crops_and_flips`: random crops and mirror images of one image, and
  its ten test views (§4.1);
- :func:`training_error_curves`: training error against passes for two
  kinds of net, solid and dashed, with a target level (the paper's Fig. 1);
- :func:`ablation_summary`: the ablations' per-seed results, one row per
  claim, with the paper's values marked.

matplotlib is optional (``pip install zeronet[figures]``). Without it every
function writes nothing and returns ``None``, so a reproduction run never
fails for want of a plot. With it, each function writes a PNG and returns its
path. The figures are drawn on matplotlib's Agg canvas directly, without
``pyplot``: no window opens, and the caller's own matplotlib backend and
current figure are left alone.
"""
from pathlib import Path

import numpy as np

from zeronet.augment import VIEW_NAMES, cut_patches, draw_crops, ten_views

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
    HAVE_MATPLOTLIB = True
except ImportError:         # matplotlib is an optional dependency
    HAVE_MATPLOTLIB = False

__all__ = ["learning_curves", "misclassified", "filters", "colour_kernels", "colour_energy",
           "nearest_neighbours", "nearest_training_images", "pca_jitter", "crops_and_flips",
           "training_error_curves", "ablation_summary", "HAVE_MATPLOTLIB"]

DPI = 100

# Per-epoch history keys drawn by learning_curves, with their legend labels
# and line styles, in drawing order.
CURVES = [("train_error", "training error", "-o"),
          ("val_error", "validation error", "-^"),
          ("test_error", "test error", "-s")]


def _new_figure(width, height):
    """A figure of ``width`` x ``height`` inches attached to an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def learning_curves(history, path, title="Learning curves"):
    """Error rate (%) against training passes, one curve per error recorded.

    Like the paper's Fig. 5 (training and test error of LeNet-5 against the
    number of passes through the training set), on linear axes.

    Parameters
    ----------
    history : list of dict
        One dict per epoch, as returned by ``Trainer.fit``: ``"epoch"``
        (1-based) and ``"train_error"``, optionally ``"val_error"`` and
        ``"test_error"``; errors are fractions (0.01 = 1%). A key missing
        from some epochs is drawn only where present.
    path : str or Path
        Where to write the PNG (parent folders are created).
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.
    """
    if not HAVE_MATPLOTLIB:
        return None
    figure = _new_figure(6.4, 4.2)
    ax = figure.add_subplot()
    for key, label, style in CURVES:
        points = [(record["epoch"], 100.0 * record[key]) for record in history
                  if record.get(key) is not None]
        if points:
            epochs, errors = zip(*points)
            ax.plot(epochs, errors, style, markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole passes
    ax.set_xlabel("training set iterations (epochs)")
    ax.set_ylabel("error rate (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.4)
    if ax.get_legend_handles_labels()[0]:       # nothing to label in an empty history
        ax.legend()
    figure.tight_layout()
    return _save(figure, path)


def misclassified(images, true, pred, path, max_count=100):
    """A grid of the misclassified digits, each titled "true->pred".

    Like the paper's Fig. 8, which shows the 82 test digits LeNet-5 got
    wrong with labels such as "4->6". Digits are drawn as dark ink on a light
    background, all on one grey scale (the range of the whole ``images``
    array), so faint and bold digits look as they are.

    Parameters
    ----------
    images : ndarray, uint8 or float
        All the classified images (not only the wrong ones), ink high, as
        MNIST stores them or normalised. (N, 1, H, W) is accepted too.
    true, pred : array_like of int
        Correct and predicted labels.
    path : str or Path
        Where to write the PNG.
    max_count : int
        Show at most this many, in the order they appear.

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.

    Shapes
    ------
    images : (N, H, W), e.g. (N, 28, 28)
    true, pred : (N,)
    """
    if not HAVE_MATPLOTLIB:
        return None
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if images.ndim != 3 or not len(images) == len(true) == len(pred):
        raise ValueError(f"need images (N, H, W) and N labels each; got images {images.shape}, "
                         f"true {true.shape}, pred {pred.shape}")
    wrong = np.flatnonzero(true != pred)
    shown = wrong[:max_count]
    if images.dtype == np.uint8:
        low, high = 0, 255
    else:
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 1.0)

    columns = 10
    rows = max(1, -(-len(shown) // columns))
    figure = _new_figure(columns * 0.9, rows * 1.05 + 0.5)
    # Callers may pass every image or only the wrong ones; name the total
    # only when it says something.
    figure.suptitle(f"{len(wrong)} misclassified"
                    + (f" out of {len(true)}" if len(wrong) < len(true) else "")
                    + (f" (first {len(shown)} shown)" if len(shown) < len(wrong) else ""))
    if len(shown) == 0:
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for slot, i in enumerate(shown):
        ax = figure.add_subplot(rows, columns, slot + 1)
        # "gray_r": low values (background) white, high values (ink) black.
        ax.imshow(images[i], cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"{true[i]}->{pred[i]}", fontsize=9, pad=2)
        ax.set_axis_off()
    figure.tight_layout()
    return _save(figure, path)


def filters(weights, path, title="Filters"):
    """A convolution layer's kernels as small grey images.

    One column per output map, one row per input channel, so LeNet-5's C1
    (6 maps, 1 input, 5x5) is a single row of six 5x5 images. The grey scale
    is symmetric around 0 and shared by all kernels: mid-grey is 0, white the
    largest positive weight, black its negative.

    Parameters
    ----------
    weights : ndarray
        Convolution weights, e.g. ``layer.params["W"]`` or an HDF5 dataset.
    path : str or Path
        Where to write the PNG.
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.

    Shapes
    ------
    weights : (OC, C, KH, KW)
    """
    if not HAVE_MATPLOTLIB:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4:
        raise ValueError(f"weights must have shape (OC, C, KH, KW), got {weights.shape}")
    out_maps, channels = weights.shape[:2]
    limit = float(np.abs(weights).max()) or 1.0     # all-zero weights: any symmetric range
    cell = 0.8 if out_maps * channels <= 100 else 0.35
    figure = _new_figure(out_maps * cell + 1.2, channels * cell + 0.7)
    grid = figure.add_gridspec(channels, out_maps)
    for j in range(channels):
        for k in range(out_maps):
            ax = figure.add_subplot(grid[j, k])
            image = ax.imshow(weights[k, j], cmap="gray", vmin=-limit, vmax=limit,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 and out_maps <= 32:
                ax.set_title(str(k), fontsize=8, pad=2)
            if k == 0 and channels > 1 and channels <= 32:
                ax.set_ylabel(f"in {j}", fontsize=8)
    figure.suptitle(f"{title}  ({out_maps} maps x {channels} inputs, "
                    f"{weights.shape[2]}x{weights.shape[3]})", fontsize=10)
    figure.colorbar(image, ax=figure.axes, shrink=0.8, pad=0.02)
    return _save(figure, path)


# ------------------------------------------------- Krizhevsky et al. 2012 ----

def _rgb(image):
    """uint8 ``(3, H, W)`` -> ``(H, W, 3)`` for imshow."""
    return np.asarray(image).transpose(1, 2, 0)


def _check_rgb_images(images, name, ndim=4):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-3] != 3:
        shape = "(N, 3, H, W)" if ndim == 4 else "(3, H, W)"
        raise ValueError(f"{name} must be uint8 RGB images {shape}, got "
                         f"{images.dtype}{images.shape}")
    return images


def _at_least_one(value, name):
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _image_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def colour_energy(weights):
    """Share of each kernel's squared weights that is colour, not grey.

    A kernel ``w (3, KH, KW)`` splits into its grey part (the mean over R, G
    and B, repeated in every channel: it sees only brightness) and the rest
    (it sees colour). Returns ``|rest|^2 / |w|^2`` per kernel, ``(OC,)`` in
    [0, 1]: 0 for a colour-blind kernel.
    """
    weights = np.asarray(weights, dtype=np.float64)
    grey = weights.mean(axis=1, keepdims=True)
    total = np.sum(weights ** 2, axis=(1, 2, 3))
    colour = np.sum((weights - grey) ** 2, axis=(1, 2, 3))
    return np.divide(colour, total, out=np.zeros_like(total), where=total > 0)


def _stretched(kernel):
    """One RGB kernel ``(3, KH, KW)`` -> ``(KH, KW, 3)`` in [0, 1], its own
    minimum black and maximum white (all three channels together, so the
    colour balance stays)."""
    low, high = kernel.min(), kernel.max()
    image = (kernel - low) / (high - low) if high > low else np.full(kernel.shape, 0.5)
    return image.transpose(1, 2, 0)


def colour_kernels(weights, groups, path, title="conv1 kernels"):
    """The first convolutional layer's kernels in colour, grouped by tower.

    Like Krizhevsky et al. 2012's Fig. 3: the kernels of the first tower
    (GPU 1 in the paper) in the top block, the second's below. Each kernel
    is contrast-stretched on its own (its lowest weight black, its highest
    white), so the picture shows each kernel's pattern and colour, not how
    strong it is. Each block's label gives the towers' mean
    :func:`colour_energy`: the paper found one tower largely colour-agnostic
    and the other colour-specific.

    Parameters
    ----------
    weights : ndarray
        ``conv1/W``.
    groups : int
        Towers; the kernels of tower ``g`` are ``g * OC / groups`` onwards.
    path : str or Path
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.

    Shapes
    ------
    weights : (OC, 3, KH, KW)
    """
    if not HAVE_MATPLOTLIB:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or weights.shape[1] != 3:
        raise ValueError(f"weights must have shape (OC, 3, KH, KW), got {weights.shape}")
    groups = int(groups)
    out_maps, _, kh, kw = weights.shape
    if groups < 1 or out_maps % groups:
        raise ValueError(f"groups={groups} must divide the {out_maps} kernels")
    per_tower = out_maps // groups
    columns = min(per_tower, 16)
    rows = -(-per_tower // columns)
    energy = colour_energy(weights)
    figure = _new_figure(0.55 * columns + 0.6, groups * (0.55 * rows + 0.45) + 0.5)
    figure.suptitle(f"{title}  ({out_maps} kernels {kh}x{kw}x3, each contrast-stretched)",
                    fontsize=10)
    # One mosaic per tower, kernels separated by a white line.
    for g in range(groups):
        mosaic = np.ones((rows * (kh + 1) - 1, columns * (kw + 1) - 1, 3))
        for j in range(per_tower):
            r, c = divmod(j, columns)
            mosaic[r * (kh + 1):r * (kh + 1) + kh, c * (kw + 1):c * (kw + 1) + kw] = \
                _stretched(weights[g * per_tower + j])
        ax = figure.add_subplot(groups, 1, g + 1)
        ax.imshow(mosaic, interpolation="nearest")
        _image_axes(ax)
        tower = energy[g * per_tower:(g + 1) * per_tower]
        ax.set_title(f"tower {g + 1}: kernels {g * per_tower}-{(g + 1) * per_tower - 1}, "
                     f"colour {100 * tower.mean():.0f}% of the weight energy", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def nearest_training_images(test_features, train_features, k, *, block=1 << 22):
    """Indices of the ``k`` training examples nearest to each test example.

    Euclidean distance in feature space (Krizhevsky et al. 2012 §6.1 use the
    last hidden layer's 4096 activations). Computed in float64 as ``|a|^2 -
    2 a.b + |b|^2`` for about ``block`` pairs at a time, so 10,000 test
    against 45,000 training examples never hold the whole distance matrix
    (3.6 GB).

    Parameters
    ----------
    test_features : array_like, (n, D)
    train_features : array_like, (M, D)
    k : int, 1 <= k <= M

    Returns
    -------
    index : ndarray, int64, (n, k)
        Nearest first.
    """
    test_features = np.asarray(test_features)
    train_features = np.asarray(train_features)
    if (test_features.ndim != 2 or train_features.ndim != 2
            or test_features.shape[1] != train_features.shape[1]):
        raise ValueError(f"need features (n, D) and (M, D), got {test_features.shape} and "
                         f"{train_features.shape}")
    k = int(k)
    if not 1 <= k <= len(train_features):
        raise ValueError(f"k must be between 1 and {len(train_features)}, got {k}")
    train_sq = np.einsum("ij,ij->i", train_features, train_features, dtype=np.float64)
    rows = max(1, int(block) // max(1, len(train_features)))
    index = np.empty((len(test_features), k), dtype=np.int64)
    for i in range(0, len(test_features), rows):
        a = test_features[i:i + rows].astype(np.float64)
        # |a|^2 is the same for every training example of a row: it cannot
        # change the order, so it is left out.
        distance = train_sq - 2.0 * (a @ train_features.T.astype(np.float64))
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(distance, nearest, axis=1), axis=1, kind="stable")
        index[i:i + rows] = np.take_along_axis(nearest, order, axis=1)
    return index


def nearest_neighbours(test_images, probs, classes, labels, train_images, neighbour_index,
                       path, title="Top-5 predictions and nearest training images"):
    """Krizhevsky et al. 2012's Fig. 4 for a few test images.

    One row per test image: the image; a bar chart of its five most probable
    classes (the true class's bar in red, as in the paper, or named in the
    title when it is not among the five); then the training images nearest
    to it in the last hidden layer's feature space (from
    :func:`nearest_training_images`), nearest first. Images whose pixels
    differ but whose features are close show what the network has learnt
    to treat as alike.

    Parameters
    ----------
    test_images : ndarray, uint8, (n, 3, H, W)
    probs : array_like, (n, K)
        Class probabilities (e.g. from ``predict_views``).
    classes : sequence of K str
    labels : array_like of int, (n,)
        True classes.
    train_images : ndarray, uint8, (M, 3, H, W)
    neighbour_index : array_like of int, (n, k)
        Rows of ``train_images``, nearest first.
    path : str or Path
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.
    """
    if not HAVE_MATPLOTLIB:
        return None
    test_images = _check_rgb_images(test_images, "test_images")
    train_images = _check_rgb_images(train_images, "train_images")
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).ravel()
    neighbour_index = np.asarray(neighbour_index)
    n = len(test_images)
    if (probs.shape != (n, len(classes)) or labels.shape != (n,)
            or neighbour_index.ndim != 2 or len(neighbour_index) != n):
        raise ValueError(f"for {n} test images need probs ({n}, {len(classes)}), labels ({n},) "
                         f"and neighbour_index ({n}, k); got {probs.shape}, {labels.shape}, "
                         f"{neighbour_index.shape}")
    if neighbour_index.size and (neighbour_index.min() < 0
                                 or neighbour_index.max() >= len(train_images)):
        raise ValueError(f"neighbour_index must lie in 0..{len(train_images) - 1}")
    k = neighbour_index.shape[1]
    top = min(5, len(classes))
    figure = _new_figure(1.0 + 2.2 + 0.85 * k, 1.1 * n + 0.8)
    grid = figure.add_gridspec(n, 2 + k, width_ratios=[1.0, 2.2] + [0.85] * k, wspace=0.1,
                               hspace=0.45, left=0.02, right=0.98, top=1 - 0.6 / (1.1 * n + 0.8),
                               bottom=0.25 / (1.1 * n + 0.8))
    figure.suptitle(title, fontsize=10)
    for i in range(n):
        best = np.argsort(-probs[i], kind="stable")[:top]
        ax = figure.add_subplot(grid[i, 0])
        ax.imshow(_rgb(test_images[i]), interpolation="nearest")
        _image_axes(ax)
        # The true class under the image, red when it is not among the five.
        ax.set_xlabel(classes[labels[i]], fontsize=7, labelpad=1,
                      color="black" if labels[i] in best else "tab:red")
        if i == 0:
            ax.set_title("test image", fontsize=8)
        ax = figure.add_subplot(grid[i, 1])
        colours = ["tab:red" if c == labels[i] else "tab:blue" for c in best]
        ax.barh(np.arange(top), probs[i, best], color=colours, height=0.75, alpha=0.6)
        for rank, c in enumerate(best):
            ax.text(0.02, rank, classes[c], va="center", fontsize=6.5)
        ax.set_ylim(top - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=5.5, pad=1)
        if i == 0:
            ax.set_title("top-5 (true class red)", fontsize=8)
        for j in range(k):
            ax = figure.add_subplot(grid[i, 2 + j])
            ax.imshow(_rgb(train_images[neighbour_index[i, j]]), interpolation="nearest")
            _image_axes(ax)
            if i == 0 and j == 0:
                ax.set_title("nearest training images in the last hidden layer ->",
                             fontsize=8, loc="left")
    return _save(figure, path)


def pca_jitter(image, pca, rng, path, draws=8, *, std=0.1, exaggerated=1.0,
               title="PCA colour jitter"):
    """One image under several draws of the PCA colour jitter (§4.1).

    Top row: the image, then ``draws`` jittered copies at the paper's
    ``std = 0.1``. Middle row: ``draws`` copies at ``exaggerated``, so the
    direction of the change is easy to see. Bottom row: the three principal
    axes, each as swatches of the colours ``mean + t * sqrt(lambda_i) * p_i``
    for ``t`` from -2 to 2 (two standard deviations of the training pixels
    either way along ``p_i``). Jittered pixels are clipped to 0..255 for
    display only; the network sees them unclipped.

    Draws ``draws x 3`` normals from ``rng`` for the top row, then as many
    for the middle row (:meth:`~zeronet.augment.ColourPCA.offsets`).

    Parameters
    ----------
    image : ndarray, uint8, (3, H, W)
    pca : zeronet.augment.ColourPCA
    rng : numpy.random.Generator
    path : str or Path
    draws : int
    std, exaggerated : float
        Standard deviations of the ``a_i`` in the two rows.
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.
    """
    if not HAVE_MATPLOTLIB:
        return None
    image = _check_rgb_images(image, "image", ndim=3)
    draws = _at_least_one(draws, "draws")
    rows = [(f"a ~ N(0, {std:g})", pca.offsets(draws, rng, std)),
            (f"a ~ N(0, {exaggerated:g}) (exaggerated)", pca.offsets(draws, rng, exaggerated))]
    columns = draws + 1
    figure = _new_figure(1.05 * columns, 3 * 1.15 + 0.8)
    grid = figure.add_gridspec(3, columns, hspace=0.45)
    figure.suptitle(f"{title}: every pixel + [p1 p2 p3][a1 w1, a2 w2, a3 w3]^T, "
                    f"w = {'sqrt(lambda)' if pca.weighting == 'sqrt' else 'lambda / 255'}",
                    fontsize=9)
    for r, (label, offsets) in enumerate(rows):
        ax = figure.add_subplot(grid[r, 0])
        ax.imshow(_rgb(image), interpolation="nearest")
        _image_axes(ax)
        ax.set_title("original", fontsize=7)
        ax.set_ylabel(label, fontsize=7)
        for d in range(draws):
            jittered = np.clip(image + offsets[d][:, None, None], 0, 255).astype(np.uint8)
            ax = figure.add_subplot(grid[r, d + 1])
            ax.imshow(_rgb(jittered), interpolation="nearest")
            _image_axes(ax)
            ax.set_title("RGB " + " ".join(f"{v:+.0f}" for v in offsets[d]), fontsize=6)
    centre = pca.mean if pca.mean is not None else np.full(3, 127.5)
    steps = np.linspace(-2.0, 2.0, 9)
    swatch_grid = grid[2, :].subgridspec(1, 3, wspace=0.25)
    for i in range(3):
        sigma = np.sqrt(pca.eigenvalues[i])
        colours = centre + steps[:, None] * sigma * pca.eigenvectors[:, i]
        ax = figure.add_subplot(swatch_grid[0, i])
        ax.imshow(np.clip(colours, 0, 255)[None].astype(np.uint8), interpolation="nearest",
                  aspect="auto")
        ax.set_yticks([])
        ax.set_xticks([0, 4, 8], ["-2 sd", "mean", "+2 sd"], fontsize=6)
        ax.set_title(f"p{i + 1} = ({', '.join(f'{v:+.2f}' for v in pca.eigenvectors[:, i])})\n"
                     f"lambda = {pca.eigenvalues[i]:.0f}, sd = {sigma:.1f}", fontsize=7)
    return _save(figure, path)


def crops_and_flips(image, rng, path, size=24, count=8, title="Crops and mirror images"):
    """What §4.1's translations and reflections do to one image.

    Top row: the image with the outlines of ``count`` random ``size x size``
    patches, then the patches themselves as the network sees them in
    training (each labelled with its position and whether it was mirrored).
    Bottom row: the ten test views (:func:`~zeronet.augment.ten_views`).

    Draws the ``count`` patch positions and mirror coins from ``rng``, in
    :func:`~zeronet.augment.draw_crops`'s order.

    Parameters
    ----------
    image : ndarray, uint8, (3, H, W)
    rng : numpy.random.Generator
    path : str or Path
    size, count : int
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.
    """
    if not HAVE_MATPLOTLIB:
        return None
    image = _check_rgb_images(image, "image", ndim=3)
    _, h, w = image.shape
    count = _at_least_one(count, "count")
    batch = np.repeat(image[None], count, axis=0)
    views = ten_views(image[None], size)[:, 0]          # checks size
    tops, lefts, mirror = draw_crops(count, h, w, size, rng)
    patches = cut_patches(batch, tops, lefts, size, mirror)
    columns = max(count, 10) + 1
    figure = _new_figure(1.0 * columns, 2 * 1.25 + 0.6)
    grid = figure.add_gridspec(2, columns, hspace=0.5)
    figure.suptitle(f"{title}: {size}x{size} patches of a {h}x{w} image", fontsize=9)
    ax = figure.add_subplot(grid[0, 0])
    ax.imshow(_rgb(image), interpolation="nearest")
    _image_axes(ax)
    ax.set_title("original", fontsize=7)
    for j in range(count):
        colour = f"C{j % 10}"
        ax.add_patch(Rectangle((lefts[j] - 0.5, tops[j] - 0.5), size, size, fill=False,
                               edgecolor=colour, linewidth=0.8))
        sub = figure.add_subplot(grid[0, j + 1])
        sub.imshow(_rgb(patches[j]), interpolation="nearest")
        _image_axes(sub)
        sub.set_title(f"({tops[j]}, {lefts[j]})" + (" mirrored" if mirror[j] else ""),
                      fontsize=6, color=colour)
    ax = figure.add_subplot(grid[1, 0])
    ax.text(0.5, 0.5, "ten test\nviews", ha="center", va="center", fontsize=8)
    ax.set_axis_off()
    for v in range(10):
        sub = figure.add_subplot(grid[1, v + 1])
        sub.imshow(_rgb(views[v]), interpolation="nearest")
        _image_axes(sub)
        sub.set_title(VIEW_NAMES[v].replace(", mirrored", "\nmirrored"), fontsize=6)
    return _save(figure, path)


# ------------------------------------------- Krizhevsky et al. 2012's claims ----

def training_error_curves(groups, path, *, level=None, title="Training error"):
    """Training error (%) against passes, one line style per group of runs.

    Like the paper's Fig. 1: a net with ReLUs (solid line) and one with tanh
    units (dashed) trained without regularisation, and the 25% training
    error the paper times them to (a dotted line at ``level``). Every run of
    a group is drawn, in the group's colour; the legend names the group once.

    Parameters
    ----------
    groups : list of (label, linestyle, runs)
        ``runs`` is a list of ``(epochs, errors)`` sequences of equal length,
        errors as fractions (0.25 = 25%); ``linestyle`` a matplotlib style
        such as ``"-"`` or ``"--"``.
    path : str or Path
    level : float, optional
        A training error to mark, as a fraction.
    title : str

    Returns
    -------
    Path or None
        ``path``; ``None`` if matplotlib is not installed or no group has a
        run (nothing is written then).
    """
    if not HAVE_MATPLOTLIB or not any(runs for _, _, runs in groups):
        return None
    figure = _new_figure(6.4, 4.2)
    ax = figure.add_subplot()
    for g, (label, style, runs) in enumerate(groups):
        for r, (epochs, errors) in enumerate(runs):
            if len(epochs) != len(errors):
                raise ValueError(f"{label}: {len(epochs)} epochs but {len(errors)} errors")
            ax.plot(epochs, 100.0 * np.asarray(errors, dtype=np.float64), style,
                    color=f"C{g}", linewidth=1.2, label=label if r == 0 else None)
    if level is not None:
        ax.axhline(100.0 * level, color="0.3", linestyle=":", linewidth=1)
        ax.text(ax.get_xlim()[1], 100.0 * level, f" {100 * level:g}%", va="center",
                fontsize=8, color="0.3")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error rate (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.4)
    ax.legend()
    figure.tight_layout()
    return _save(figure, path)


def ablation_summary(panels, path, title="Ablations"):
    """Each claim a row, each seed a dot, the paper's value a diamond.

    One panel per unit (e.g. differences in points of error, then ratios on
    a log scale), stacked; in each, a vertical line at the value meaning "no
    effect", the seeds' values as dots, their mean as a bar, and the
    paper's value, when it gives one, as a red diamond.

    Parameters
    ----------
    panels : list of dict
        ``"xlabel"`` (str), ``"log"`` (bool: a log x axis, for ratios),
        ``"reference"`` (float: no effect, 0 or 1) and ``"rows"``: a list of
        ``(label, values, paper)``, ``values`` a list of floats (one per
        seed, possibly empty: "not run yet"), ``paper`` a float or None.
        Panels without rows are left out.
    path : str or Path
    title : str

    Returns
    -------
    Path or None
        ``path``, or ``None`` if matplotlib is not installed.
    """
    if not HAVE_MATPLOTLIB:
        return None
    panels = [p for p in panels if p["rows"]]
    heights = [len(p["rows"]) + 1.2 for p in panels] or [1]
    figure = _new_figure(9.0, 0.32 * sum(heights) + 1.2)
    if not panels:
        figure.text(0.5, 0.5, "no claims to show", ha="center", va="center")
    grid = figure.add_gridspec(max(1, len(panels)), 1, height_ratios=heights)
    for i, panel in enumerate(panels):
        ax = figure.add_subplot(grid[i])
        rows = panel["rows"]
        for y, (label, values, paper) in enumerate(rows):
            values = np.asarray(values, dtype=np.float64)
            if panel["log"] and (values <= 0).any():
                raise ValueError(f"{label}: a log axis needs positive values, got {values}")
            ax.plot(values, np.full(len(values), y), "o", color="C0", alpha=0.7, markersize=5,
                    label="one seed" if y == 0 else None)
            if len(values):
                mean = np.exp(np.log(values).mean()) if panel["log"] else values.mean()
                ax.plot([mean], [y], "|", color="k", markersize=14, markeredgewidth=2,
                        label="mean" if y == 0 else None)
            if paper is not None:
                ax.plot([paper], [y], "D", color="C3", markersize=6, label="the paper")
        ax.axvline(panel["reference"], color="0.5", linewidth=1)
        if panel["log"]:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([label + ("" if len(values) else "  (not run yet)")
                            for label, values, _ in rows], fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)          # the first row on top
        ax.set_xlabel(panel["xlabel"], fontsize=8)
        ax.grid(True, axis="x", alpha=0.4)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if unique:
            # Beside the axes: inside, it would hide the dots of whatever row
            # lies under it.
            ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)
