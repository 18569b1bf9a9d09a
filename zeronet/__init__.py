"""zeronet: a small, readable, Cython-compiled convolutional-network framework."""
__version__ = "0.1.0"

from zeronet import kernels
from zeronet.kernels import backend

__all__ = ["kernels", "backend", "__version__"]
