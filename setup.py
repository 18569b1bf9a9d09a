"""Build zeronet and its one compiled extension, ``zeronet._core``.

OpenMP is probed: if the C compiler accepts ``-fopenmp`` the kernels run in
parallel, otherwise they are built serial (same results, one thread).
Set ``ZERONET_NO_OPENMP=1`` to force the serial build. No ``-ffast-math``:
the core must agree with the NumPy reference (``-fno-math-errno`` changes
no result: it only spares ``sqrt`` setting ``errno``).
"""
import os
import shutil
import subprocess
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program with this build's compiler."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(PROBE)
        objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        compiler.link_executable(objects, os.path.join(tmp, "probe"),
                                 extra_postargs=["-fopenmp"])
        return True
    except Exception:  # any compile or link failure means "no OpenMP"
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        forced_off = os.environ.get("ZERONET_NO_OPENMP", "") not in ("", "0")
        use_openmp = not forced_off and compiler_has_openmp(self.compiler)
        print(f"zeronet: building _core {'with' if use_openmp else 'without'} OpenMP"
              f"{' (ZERONET_NO_OPENMP set)' if forced_off else ''}", file=sys.stderr)
        for ext in self.extensions:
            # -fno-math-errno only stops sqrt from setting errno (its results
            # stay IEEE's), so that loops of square roots become vector code.
            ext.extra_compile_args = (["-O3", "-fno-math-errno"]
                                      + (["-fopenmp"] if use_openmp else []))
            ext.extra_link_args = ["-fopenmp"] if use_openmp else []
        super().build_extensions()


extensions = cythonize(
    [Extension("zeronet._core", ["zeronet/_core.pyx"])],
    compiler_directives={"language_level": 3},
)

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
