"""Tests for reproduce/figures.py: each figure is written as a PNG.

Only that a valid PNG of a sensible size appears is checked here; whether
it looks right is for a human (open the files the tests write into pytest's
tmp_path). The module is loaded from its file, so the tests do not depend on
how ``reproduce/`` is put on the import path.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

FIGURES_PY = Path(__file__).resolve().parent.parent / "reproduce" / "figures.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_figures():
    spec = importlib.util.spec_from_file_location("reproduce_figures", FIGURES_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = load_figures()


def assert_png(written, expected_path):
    assert written is not None, "matplotlib is installed, so a path must be returned"
    assert Path(written) == Path(expected_path)
    data = Path(written).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{written} is not a PNG"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 100 < width < 4000 and 100 < height < 4000, f"odd PNG size {width}x{height}"


def test_learning_curves(tmp_path):
    history = [{"epoch": e, "train_error": 0.05 / e, "test_error": 0.06 / e + 0.008}
               for e in range(1, 6)]
    history[0]["val_error"] = 0.07          # present in some epochs only
    path = tmp_path / "curves.png"
    assert_png(figures.learning_curves(history, path, "LeNet-5 (test)"), path)


def test_learning_curves_training_error_only_into_a_new_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "curves.png"
    assert_png(figures.learning_curves([{"epoch": 1, "train_error": 0.1}], path, "t"), path)


def test_misclassified(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    true = rng.integers(0, 10, size=30)
    pred = true.copy()
    pred[::3] = (pred[::3] + 1) % 10                      # 10 wrong
    path = tmp_path / "wrong.png"
    assert_png(figures.misclassified(images, true, pred, path, max_count=7), path)
    # float images, with a channel axis, and none wrong, also work
    path = tmp_path / "none_wrong.png"
    floats = images[:, None].astype(np.float32) / 255 * 1.275 - 0.1
    assert_png(figures.misclassified(floats, true, true, path), path)


def test_misclassified_rejects_mismatched_labels(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        figures.misclassified(np.zeros((3, 28, 28)), [1, 2], [1, 2], tmp_path / "x.png")


@pytest.mark.parametrize("shape", [(6, 1, 5, 5), (4, 3, 3, 2)])
def test_filters(tmp_path, shape):
    weights = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    path = tmp_path / "filters.png"
    assert_png(figures.filters(weights, path, "C1"), path)


# ------------------------------------------------- Krizhevsky et al. 2012 ----

def colour_images(n, side=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, side, side), dtype=np.uint8)


@pytest.mark.parametrize("shape, groups", [((64, 3, 5, 5), 2), ((6, 3, 3, 4), 1)])
def test_colour_kernels(tmp_path, shape, groups):
    weights = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    weights[0] = 0.0                                  # a dead kernel must not break the stretch
    path = tmp_path / "kernels.png"
    assert_png(figures.colour_kernels(weights, groups, path, "conv1"), path)


def test_colour_kernels_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="3, KH, KW"):
        figures.colour_kernels(np.zeros((4, 1, 3, 3)), 2, tmp_path / "x.png")
    with pytest.raises(ValueError, match="divide"):
        figures.colour_kernels(np.zeros((5, 3, 3, 3)), 2, tmp_path / "x.png")


def test_colour_energy_of_grey_and_coloured_kernels():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.standard_normal((2, 1, 3, 3)), 3, axis=1)
    red_minus_green = np.zeros((1, 3, 3, 3))
    red_minus_green[0, 0], red_minus_green[0, 1] = 1.0, -1.0
    energy = figures.colour_energy(np.concatenate([grey, red_minus_green, np.zeros((1, 3, 3, 3))]))
    np.testing.assert_allclose(energy, [0.0, 0.0, 1.0, 0.0], atol=1e-12)


def test_nearest_training_images_equal_brute_force():
    rng = np.random.default_rng(2)
    train = rng.standard_normal((300, 7)).astype(np.float32)
    test = rng.standard_normal((23, 7)).astype(np.float32)
    distance = np.linalg.norm(test[:, None].astype(np.float64) - train[None], axis=2)
    expected = np.argsort(distance, axis=1, kind="stable")[:, :5]
    for block in (1, 1000, 1 << 22):                  # one row at a time, a few rows, all
        index = figures.nearest_training_images(test, train, 5, block=block)
        assert index.shape == (23, 5) and index.dtype == np.int64
        np.testing.assert_array_equal(index, expected, err_msg=f"block={block}")
    # A test example that is a training example finds itself first.
    assert figures.nearest_training_images(train[[17, 4]], train, 1)[:, 0].tolist() == [17, 4]


@pytest.mark.parametrize("k", [0, 301])
def test_nearest_training_images_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must"):
        figures.nearest_training_images(np.zeros((2, 3)), np.zeros((300, 3)), k)


def test_nearest_neighbours(tmp_path):
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(10), size=4)
    labels = np.array([probs[0].argmax(), 1, 2, 3])           # first right, others anything
    classes = [f"class {c}" for c in range(10)]
    train = colour_images(50, seed=1)
    index = rng.integers(0, 50, size=(4, 6))
    path = tmp_path / "neighbours.png"
    assert_png(figures.nearest_neighbours(colour_images(4), probs, classes, labels, train, index,
                                          path), path)
    with pytest.raises(ValueError, match="neighbour_index"):
        figures.nearest_neighbours(colour_images(4), probs, classes, labels, train, index + 50,
                                   tmp_path / "x.png")
    with pytest.raises(ValueError, match="probs"):
        figures.nearest_neighbours(colour_images(4), probs[:3], classes, labels, train, index,
                                   tmp_path / "x.png")


def test_pca_jitter(tmp_path):
    from zeronet.augment import ColourPCA
    images = colour_images(20)
    pca = ColourPCA.fit(images)
    path = tmp_path / "jitter.png"
    assert_png(figures.pca_jitter(images[0], pca, np.random.default_rng(0), path, draws=4), path)
    no_mean = ColourPCA(pca.eigenvalues, pca.eigenvectors, weighting="eigenvalue")
    assert_png(figures.pca_jitter(images[1], no_mean, np.random.default_rng(0), path), path)
    with pytest.raises(ValueError, match="uint8 RGB"):
        figures.pca_jitter(images[:2], pca, np.random.default_rng(0), path)


@pytest.mark.parametrize("size, count", [(24, 8), (5, 12)])
def test_crops_and_flips(tmp_path, size, count):
    path = tmp_path / "crops.png"
    assert_png(figures.crops_and_flips(colour_images(1)[0], np.random.default_rng(0), path,
                                       size=size, count=count), path)


def test_training_error_curves(tmp_path):
    groups = [("ReLU", "-", [([1, 2, 3], [0.5, 0.3, 0.2]), ([1, 2, 3], [0.55, 0.3, 0.25])]),
              ("tanh", "--", [([1, 2, 3], [0.7, 0.5, 0.4])])]
    path = tmp_path / "fig1.png"
    assert_png(figures.training_error_curves(groups, path, level=0.25, title="Fig. 1"), path)


def test_training_error_curves_without_runs_write_nothing(tmp_path):
    assert figures.training_error_curves([("ReLU", "-", [])], tmp_path / "x.png") is None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="3 epochs but 2 errors"):
        figures.training_error_curves([("ReLU", "-", [([1, 2, 3], [0.5, 0.3])])],
                                      tmp_path / "y.png")


def test_ablation_summary(tmp_path):
    panels = [{"xlabel": "points", "log": False, "reference": 0.0,
               "rows": [("no LRN - LRN", [1.2, 0.8, 1.5], 2.0), ("gap", [0.3], None),
                        ("not run", [], 1.7)]},
              {"xlabel": "ratio", "log": True, "reference": 1.0,
               "rows": [("tanh / ReLU", [3.1, 2.5, 4.0], 6.0)]},
              {"xlabel": "empty", "log": False, "reference": 0.0, "rows": []}]
    path = tmp_path / "summary.png"
    assert_png(figures.ablation_summary(panels, path, "claims"), path)
    with pytest.raises(ValueError, match="log axis needs positive values"):
        figures.ablation_summary([{**panels[1], "rows": [("bad", [0.0], None)]}],
                                 tmp_path / "bad.png")


def test_without_matplotlib_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "HAVE_MATPLOTLIB", False)
    assert figures.learning_curves([{"epoch": 1, "train_error": 0.1}], tmp_path / "a.png") is None
    assert figures.misclassified(np.zeros((1, 28, 28)), [1], [2], tmp_path / "b.png") is None
    assert figures.filters(np.zeros((6, 1, 5, 5)), tmp_path / "c.png") is None
    image = np.zeros((3, 32, 32), np.uint8)
    rng = np.random.default_rng(0)
    assert figures.colour_kernels(np.zeros((4, 3, 5, 5)), 2, tmp_path / "d.png") is None
    assert figures.nearest_neighbours(image[None], np.ones((1, 2)) / 2, ["a", "b"], [0],
                                      image[None], [[0]], tmp_path / "e.png") is None
    assert figures.pca_jitter(image, None, rng, tmp_path / "f.png") is None
    assert figures.crops_and_flips(image, rng, tmp_path / "g.png") is None
    assert figures.training_error_curves([("a", "-", [([1], [0.5])])], tmp_path / "h.png") is None
    assert figures.ablation_summary([], tmp_path / "i.png") is None
    assert list(tmp_path.iterdir()) == []
