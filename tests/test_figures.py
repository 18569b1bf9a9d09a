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


def test_without_matplotlib_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "HAVE_MATPLOTLIB", False)
    assert figures.learning_curves([{"epoch": 1, "train_error": 0.1}], tmp_path / "a.png") is None
    assert figures.misclassified(np.zeros((1, 28, 28)), [1], [2], tmp_path / "b.png") is None
    assert figures.filters(np.zeros((6, 1, 5, 5)), tmp_path / "c.png") is None
    assert list(tmp_path.iterdir()) == []
