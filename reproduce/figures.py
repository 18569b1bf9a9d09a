"""Figures for the reproduction reports, in the style of LeCun et al. 1998.

- :func:`learning_curves`: training and test error against training passes
  (the paper's Fig. 5);
- :func:`misclassified`: the test digits the network got wrong, each labelled
  "true->predicted" (the paper's Fig. 8);
- :func:`filters`: a convolution layer's kernels as small grey images.

matplotlib is optional (``pip install zeronet[figures]``). Without it every
function writes nothing and returns ``None``, so a reproduction run never
fails for want of a plot. With it, each function writes a PNG and returns its
path. The figures are drawn on matplotlib's Agg canvas directly, without
``pyplot``: no window opens, and the caller's own matplotlib backend and
current figure are left alone.
"""
from pathlib import Path

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    HAVE_MATPLOTLIB = True
except ImportError:         # matplotlib is an optional dependency
    HAVE_MATPLOTLIB = False

__all__ = ["learning_curves", "misclassified", "filters", "HAVE_MATPLOTLIB"]

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
