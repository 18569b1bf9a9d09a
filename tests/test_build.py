"""On CI the compiled core must be built and in use: a failed build must turn
CI red instead of silently running everything on the slow NumPy reference."""
import os

import pytest

import zeronet


@pytest.mark.skipif(not os.environ.get("CI"), reason="only enforced when CI is set")
def test_compiled_core_in_use_on_ci():
    try:
        from zeronet import _core  # noqa: F401  (only whether it imports matters)
    except ImportError as exc:
        pytest.fail(f"zeronet._core does not import on CI: {exc}")
    # A CI job may force the reference on purpose; the core must still build.
    if not zeronet.kernels.FORCED_NUMPY:
        assert zeronet.kernels.backend() == "compiled", (
            f"kernels backend is {zeronet.kernels.backend()!r} on CI, expected 'compiled'")
