"""What the tests share: where the real datasets are.

The tests that need a real dataset look for it exactly where zeronet does
(:func:`zeronet.datasets.resolve_data_dir`: ``$ZERONET_DATA``, else the
repository's ``data/``), so once the README's first command has downloaded
MNIST into ``data/``, a plain ``pytest`` runs them. Without the data they
are skipped, except under CI (``CI`` set), where they fail: a CI run must
test the real files, not pass quietly without them.

Tests that train or run a script are marked ``slow`` (registered in
pyproject.toml): ``python -m pytest -m "not slow"`` skips them.
"""
import os

import pytest

from zeronet.datasets import resolve_data_dir


def real_data_dir(dataset):
    """The data folder holding ``<dataset>/`` (e.g. ``"mnist"``), found as
    zeronet finds it; skips the test without it (fails it under CI)."""
    folder = resolve_data_dir()
    if (folder / dataset).is_dir():
        return folder
    advice = f"set ZERONET_DATA to a folder holding {dataset}/"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but there is no {folder / dataset} ({advice})")
    pytest.skip(f"no {folder / dataset}: run the README's first command, or {advice}")


@pytest.fixture
def mnist_dir():
    """The data folder holding the real MNIST (``mnist/``)."""
    return real_data_dir("mnist")
