"""zeronet: a small, readable, Cython-compiled convolutional-network framework.

``zeronet.backend()`` says whether the compiled core is in use
(``"compiled"``) or the NumPy reference (``"numpy"``);
``zeronet.kernels.HAS_OPENMP`` whether the core runs its loops in parallel.
"""
import os

# OpenMP threads that spin after a parallel loop steal the cores that
# OpenBLAS needs for the matrix product that follows; on a 2-core machine that
# made a LeNet-5 step several times slower. Must be set before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from zeronet import kernels  # noqa: E402
from zeronet.kernels import backend  # noqa: E402
from zeronet.io import load, save  # noqa: E402
from zeronet.network import Sequential  # noqa: E402

__all__ = ["kernels", "backend", "load", "save", "Sequential", "__version__"]
