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
# The same from OpenBLAS's side: its idle threads spin for 2**28 cycles
# after every product, competing with our parallel im2col and col2im;
# 2**16 cycles still bridges back-to-back products (bench_kernels.py's
# 64x12x12 -> 64@5x5 convolution shows the difference). OpenBLAS reads this
# when NumPy loads it, so it only counts if zeronet is imported before NumPy
# (or if it is set in the shell).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

__version__ = "0.1.0"

from zeronet import kernels  # noqa: E402
from zeronet.kernels import backend  # noqa: E402
from zeronet.io import load, save  # noqa: E402
from zeronet.network import Sequential  # noqa: E402

__all__ = ["kernels", "backend", "load", "save", "Sequential", "__version__"]
