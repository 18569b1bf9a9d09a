# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled core: im2col / col2im; a convolution that runs im2col and the
matrix products a few images at a time; the same convolution by Winograd's
algorithm for 3x3 and 5x5 kernels; max pooling; ReLU; local response
normalisation.

Same contract as :mod:`zeronet.reference` (read that first: it is the
readable version; Winograd's algorithm has none there, and is held against
the reference's convolution instead). Every ``def`` here validates its
arguments with the same checks as the reference, allocates the output in
the input's dtype (or checks the ``out=`` array it is given), then hands
typed memoryviews to a ``cdef`` function whose loop releases the GIL
(``prange(..., nogil=True)``), so other Python threads run meanwhile.

Parallel loops (``prange``) only run over outputs that no other iteration
writes: rows of ``col``, images of ``dx``, ``(n, c)`` planes of pooling,
chunks of images and fixed partial sums of the convolution, images and
(tile position, group) products of Winograd's, blocks of values of ReLU and
LRN. Their scratch space is a row per thread (indexed by ``threadid()``).
Every matrix product runs on one thread, with sizes that do not depend on
the thread count. So the result is bit-identical for any number of threads.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t
from libc.math cimport INFINITY, pow, sqrt, sqrtf
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from zeronet._validate import (ARGMAX_DTYPE, conv_args, conv_grad_args, conv_output_size,
                               float_any, float_array, lrn_args, lrn_grad_args, output_array,
                               pair, relu_grad_args,
                               pool_grad_check, pool_output_size, pool_window_check, shape4,
                               sizes_check, window_args)
from zeronet.reference import bias_gradient

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define ZN_HAS_OPENMP 1
    static int zn_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define ZN_HAS_OPENMP 0
    static int zn_max_threads(void) { return 1; }
    #endif
    #if defined(__AVX512F__)
    #define ZN_SIMD "AVX-512"
    #elif defined(__AVX2__)
    #define ZN_SIMD "AVX2"
    #elif defined(__AVX__)
    #define ZN_SIMD "AVX"
    #elif defined(__SSE2__)
    #define ZN_SIMD "SSE2"
    #else
    #define ZN_SIMD "none"
    #endif
    """
    const int ZN_HAS_OPENMP
    const char* ZN_SIMD
    int zn_max_threads() nogil

HAS_OPENMP = bool(ZN_HAS_OPENMP)
# The widest vector instructions the compiler was allowed to use for the
# loops here (the build's target; BLAS picks its own at run time).
SIMD = ZN_SIMD.decode()
cdef int _num_threads = zn_max_threads()


def get_num_threads():
    """Threads the compiled loops use (1 when built without OpenMP)."""
    return _num_threads


MAX_THREADS = 256


def set_num_threads(int n):
    """Use ``n`` threads in the compiled loops; results do not depend on it."""
    global _num_threads
    # Asking libgomp for thousands of threads can abort the whole process.
    if n < 1 or n > MAX_THREADS:
        raise ValueError(f"number of threads must be in [1, {MAX_THREADS}], got {n}")
    _num_threads = n if ZN_HAS_OPENMP else 1


cdef enum:
    # Values summed side by side in the loops that add up a few vectors
    # (_combine, the LRN's window sums): the running sums stay in registers
    # instead of going to memory after every term.
    LANES = 16


# ---------------------------------------------------------------- im2col ----

# Below this many values a loop runs on one thread: waking a sleeping
# thread costs more than it saves on small arrays (LeNet's layers at its
# training batch; see benchmarks/). Tests lower it to 0 so the parallel
# paths run on small arrays.
cdef Py_ssize_t _min_parallel_work = 1 << 20
# Max pooling does more work per value (a comparison per window it is in),
# so it pays to split it from smaller sizes on.
cdef Py_ssize_t POOL_WORK_PER_VALUE = 8


def get_min_parallel_work():
    """Smallest loop (in values written) that runs on more than one thread."""
    return _min_parallel_work


def set_min_parallel_work(Py_ssize_t values):
    """Run loops of at least ``values`` values on ``get_num_threads()`` threads."""
    global _min_parallel_work
    if values < 0:
        raise ValueError(f"min_parallel_work must be >= 0, got {values}")
    _min_parallel_work = values


cdef inline int _threads_for(Py_ssize_t work, int num_threads) noexcept nogil:
    return num_threads if work >= _min_parallel_work else 1


# im2col and col2im work on an image whose zero padding is already in place
# (np.pad before, a crop after): then every window lies inside it, and the
# loops need no bounds checks at all. The padded copy is KH*KW times smaller
# than col, so it costs little. (The convolution below pads image by image
# in its threads instead: on one thread, np.pad of the whole batch took about a
# tenth of its time.)

cdef inline void _copy_windows(floating* dst, const floating* src, Py_ssize_t OW,
                               Py_ssize_t K, Py_ssize_t SW, Py_ssize_t KW) noexcept nogil:
    """dst[ow*K : ow*K + KW] = src[ow*SW : ow*SW + KW]: the KW values of each
    of OW windows along one input row, into OW rows of col."""
    cdef Py_ssize_t ow
    for ow in range(OW):
        # One block copy per window: with KW a constant the compiler turns it
        # into a couple of vector moves instead of a loop value by value.
        memcpy(dst + ow * K, src + ow * SW, KW * sizeof(floating))


cdef inline void _im2col_row(floating* dst, const floating* image, Py_ssize_t C,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t top, Py_ssize_t KH,
                             Py_ssize_t KW, Py_ssize_t SW, Py_ssize_t OW,
                             Py_ssize_t K) noexcept nogil:
    """The OW rows of col (K values each, from ``dst``) of the windows whose
    top input row is ``top``, in one padded image ``(C, H, W)``."""
    cdef Py_ssize_t c, ky
    cdef const floating* src
    # For each (c, ky) the windows read one input row, KW values each, into
    # a KW-wide strip of the OW rows.
    for c in range(C):
        for ky in range(KH):
            src = image + (c * H + top + ky) * W
            # The common widths as constants, so that the compiler inlines
            # the KW-long copy.
            if KW == 5:
                _copy_windows(dst, src, OW, K, SW, 5)
            elif KW == 3:
                _copy_windows(dst, src, OW, K, SW, 3)
            else:
                _copy_windows(dst, src, OW, K, SW, KW)
            dst = dst + KW


cdef void _im2col(const floating[:, :, :, ::1] x, floating[:, ::1] col,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                  Py_ssize_t OH, Py_ssize_t OW, int num_threads) noexcept:
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], K = col.shape[1]
    cdef Py_ssize_t nh, n, oh
    # One (image, output row) per iteration: it fills the OW rows of col for
    # that output row (OW*K values, a block that stays in cache), which no
    # other iteration touches. (The book's version loops over the batch
    # innermost, far less cache-friendly.)
    for nh in prange(x.shape[0] * OH, nogil=True, schedule='static',
                     num_threads=_threads_for(col.shape[0] * K, num_threads)):
        n = nh // OH
        oh = nh % OH
        _im2col_row(&col[nh * OW, 0], &x[n, 0, 0, 0], C, H, W, oh * SH, KH, KW, SW, OW, K)


def _padded(x, ph, pw):
    return np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)]) if ph or pw else x


def im2col(x, kernel_size, stride=1, pad=0, out=None):
    """Unfold every convolution window of ``x`` into one row.

    Shapes: x ``(N, C, H, W)`` -> col ``(N*OH*OW, C*KH*KW)``, zero padding.
    ``out``, if given, is filled and returned instead of a new array.
    """
    float_array(x, "x", 4)
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw, oh, ow
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = shape4(x.shape, "x")
    oh = conv_output_size(h, kh, sh, ph, "height")
    ow = conv_output_size(w, kw, sw, pw, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    col = output_array(out, (n * oh * ow, c * kh * kw), x.dtype, "out", x)
    x = _padded(x, ph, pw)
    if x.dtype == np.float32:
        _im2col[float](x, col, kh, kw, sh, sw, oh, ow, _num_threads)
    else:
        _im2col[double](x, col, kh, kw, sh, sw, oh, ow, _num_threads)
    return col


# ---------------------------------------------------------------- col2im ----

cdef inline void _add_windows(floating* dst, const floating* src, Py_ssize_t OW,
                              Py_ssize_t K, Py_ssize_t SW, Py_ssize_t KW) noexcept nogil:
    """dst[ow*SW + kx] += src[ow*K + kx]: the adjoint of _copy_windows."""
    cdef Py_ssize_t ow, kx
    # Window by window: its KW values are contiguous in col and in dx, so
    # with KW a constant they are added as one short vector (with kx
    # outermost they would be added one at a time).
    for ow in range(OW):
        for kx in range(KW):
            dst[ow * SW + kx] += src[ow * K + kx]


cdef inline void _col2im_row(floating* image, const floating* src, Py_ssize_t C,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t top, Py_ssize_t KH,
                             Py_ssize_t KW, Py_ssize_t SW, Py_ssize_t OW,
                             Py_ssize_t K) noexcept nogil:
    """Add the OW rows of col starting at ``src`` (the windows whose top input
    row is ``top``) into one padded image ``(C, H, W)``: _im2col_row's adjoint."""
    cdef Py_ssize_t c, ky
    cdef floating* dst
    for c in range(C):
        for ky in range(KH):
            dst = image + (c * H + top + ky) * W
            # The common widths as constants, as in _im2col_row.
            if KW == 5:
                _add_windows(dst, src, OW, K, SW, 5)
            elif KW == 3:
                _add_windows(dst, src, OW, K, SW, 3)
            else:
                _add_windows(dst, src, OW, K, SW, KW)
            src = src + KW


cdef void _col2im(const floating[:, ::1] col, floating[:, :, :, ::1] dx,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                  Py_ssize_t OH, Py_ssize_t OW, int num_threads) noexcept:
    cdef Py_ssize_t C = dx.shape[1], H = dx.shape[2], W = dx.shape[3], K = col.shape[1]
    cdef Py_ssize_t n, oh
    # Windows overlap inside one image, so the unit of work is a whole
    # image: dx[n] is summed by one thread, in a fixed order.
    for n in prange(dx.shape[0], nogil=True, schedule='static',
                    num_threads=_threads_for(col.shape[0] * K, num_threads)):
        dx[n, :, :, :] = 0
        for oh in range(OH):
            _col2im_row(&dx[n, 0, 0, 0], &col[(n * OH + oh) * OW, 0], C, H, W, oh * SH,
                        KH, KW, SW, OW, K)


def col2im(col, x_shape, kernel_size, stride=1, pad=0, out=None):
    """Adjoint of :func:`im2col`: fold rows back, summing overlapping windows.

    Shapes: col ``(N*OH*OW, C*KH*KW)`` -> dx ``x_shape = (N, C, H, W)``.
    ``out``, if given, is filled and returned instead of a new array.
    """
    float_array(col, "col", 2)
    n, c, h, w = shape4(x_shape, "x_shape")
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw, oh, ow
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    oh = conv_output_size(h, kh, sh, ph, "height")
    ow = conv_output_size(w, kw, sw, pw, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    if col.shape != (n * oh * ow, c * kh * kw):
        raise ValueError(f"col must have shape {(n * oh * ow, c * kh * kw)} for x_shape "
                         f"{x_shape}, got {col.shape}")
    dx = output_array(out, (n, c, h, w), col.dtype, "out", col)
    # With padding, sum into a padded image and keep its middle.
    padded = np.empty((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype) if ph or pw else dx
    if col.dtype == np.float32:
        _col2im[float](col, padded, kh, kw, sh, sw, oh, ow, _num_threads)
    else:
        _col2im[double](col, padded, kh, kw, sh, sw, oh, ow, _num_threads)
    if padded is not dx:
        dx[...] = padded[:, :, ph:ph + h, pw:pw + w]
    return dx


# ----------------------------------------------------------- convolution ----
#
# The convolution as Convolution's im2col + matrix products, but a few images
# at a time: each thread unfolds a chunk of images into its own small col
# (it stays in cache) and multiplies it at once, instead of writing the whole
# batch's col to memory and reading it back for each product (col holds
# KH*KW times as many values as x: 25 times for a 5x5 kernel).
#
# The forward pass lays col out turned, one column per window (im2col's rows
# as columns): its product W @ cols then comes out as maps like y (from
# PER_IMAGE_POSITIONS positions an image on, each image's written straight
# into y), where col's rows would give (position, map) rows to transpose into
# y, a strided copy that cost more than the copy of the input windows. The
# backward pass keeps im2col's rows: its weight gradient dout @ col ran faster
# on them than on columns. It also sums the bias gradient, chunk by chunk,
# just before the products read the same dout: a separate sum afterwards
# would read all of dout from memory again.

# The BLAS the convolution calls. By default SciPy's (scipy.linalg.cython_blas,
# known at build time). kernels.py hands over NumPy's own OpenBLAS instead
# when it finds one with 64-bit integer arguments (the "_64_" symbols of
# NumPy's wheels): then the whole framework runs on one BLAS, and NumPy's
# is often the newer and faster one.
ctypedef void (*sgemm64_t)(const char*, const char*, const int64_t*, const int64_t*,
                           const int64_t*, const float*, const float*, const int64_t*,
                           const float*, const int64_t*, const float*, float*,
                           const int64_t*) noexcept nogil
ctypedef void (*dgemm64_t)(const char*, const char*, const int64_t*, const int64_t*,
                           const int64_t*, const double*, const double*, const int64_t*,
                           const double*, const int64_t*, const double*, double*,
                           const int64_t*) noexcept nogil
cdef sgemm64_t _sgemm64 = NULL
cdef dgemm64_t _dgemm64 = NULL
_blas_name = "scipy.linalg.cython_blas"


def _use_blas64(size_t sgemm_address, size_t dgemm_address, str name):
    """Call the Fortran ``sgemm``/``dgemm`` at these addresses, which take
    64-bit integers; both 0: back to SciPy's BLAS. Private: kernels.py
    passes addresses only of functions whose names guarantee that signature
    (a wrong signature would crash the interpreter)."""
    global _sgemm64, _dgemm64, _blas_name
    if (sgemm_address == 0) != (dgemm_address == 0):
        raise ValueError("give both gemm addresses or neither")
    _sgemm64 = <sgemm64_t> sgemm_address
    _dgemm64 = <dgemm64_t> dgemm_address
    _blas_name = name if sgemm_address else "scipy.linalg.cython_blas"


def blas_in_use():
    """Which BLAS the compiled convolution calls, as a short description."""
    return _blas_name


cdef inline void _matmul(bint trans_a, bint trans_b, int M, int N, int K,
                         const floating* A, int lda, const floating* B, int ldb,
                         floating beta, floating* C, int ldc) noexcept nogil:
    """C = op(A) @ op(B) + beta * C for row-major matrices, ``op(X)`` being
    ``X.T`` when ``trans_x``. Shapes: op(A) ``(M, K)``, op(B) ``(K, N)``, C
    ``(M, N)``; ``ld*`` are the matrices' row lengths in memory.

    BLAS's gemm reads column-major matrices, and a row-major matrix read
    column-major is its transpose. So we ask BLAS for C.T = op(B).T @ op(A).T:
    the same arguments with A and B swapped."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1
    cdef int64_t m = M, n = N, k = K, lda64 = lda, ldb64 = ldb, ldc64 = ldc
    if floating is float:
        if _sgemm64 != NULL:
            _sgemm64(&tb, &ta, &n, &m, &k, &one, <float*> B, &ldb64, <float*> A, &lda64,
                     &beta, C, &ldc64)
        else:
            sgemm(&tb, &ta, &N, &M, &K, &one, <float*> B, &ldb, <float*> A, &lda, &beta, C, &ldc)
    else:
        if _dgemm64 != NULL:
            _dgemm64(&tb, &ta, &n, &m, &k, &one, <double*> B, &ldb64, <double*> A, &lda64,
                     &beta, C, &ldc64)
        else:
            dgemm(&tb, &ta, &N, &M, &K, &one, <double*> B, &ldb, <double*> A, &lda, &beta,
                  C, &ldc)


# Images per chunk: enough for the chunk's col to fill about this many
# bytes, which keeps it in a core's cache while the products on it stay
# large enough for BLAS to run at speed.
CHUNK_BYTES = 1 << 19


cdef inline const floating* _pad_image(const floating* image, floating* room, Py_ssize_t C,
                                      Py_ssize_t H, Py_ssize_t W, Py_ssize_t PH,
                                      Py_ssize_t PW) noexcept nogil:
    """One image ``(C, H, W)`` copied into the middle of ``room`` ``(C,
    H+2PH, W+2PW)``, whose border is zero already; returns the padded image
    (``image`` itself without padding). Each thread pads image by image
    into a buffer that stays in its cache, instead of np.pad copying the
    whole batch on one thread, in forward and again in backward."""
    cdef Py_ssize_t c, h, Hp = H + 2 * PH, Wp = W + 2 * PW
    if PH == 0 and PW == 0:
        return image
    for c in range(C):
        for h in range(H):
            memcpy(room + (c * Hp + PH + h) * Wp + PW, image + (c * H + h) * W,
                   W * sizeof(floating))
    return room


cdef inline void _crop_image(floating* dst, const floating* padded, Py_ssize_t C,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t PH,
                             Py_ssize_t PW) noexcept nogil:
    """The middle ``(C, H, W)`` of ``padded`` ``(C, H+2PH, W+2PW)`` copied
    into ``dst``: what _pad_image's copy is for a gradient."""
    cdef Py_ssize_t c, h, Hp = H + 2 * PH, Wp = W + 2 * PW
    for c in range(C):
        for h in range(H):
            memcpy(dst + (c * H + h) * W, padded + (c * Hp + PH + h) * Wp + PW,
                   W * sizeof(floating))


cdef inline void _copy_run(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    """dst[:n] = src[:n] for the short runs of an unfold (an output row
    each): in blocks of constant sizes, which the compiler turns into a few
    vector moves, where a library memcpy call would cost more than the copy."""
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(dst + i, src + i, 8 * sizeof(floating))
        i += 8
    if i + 4 <= n:
        memcpy(dst + i, src + i, 4 * sizeof(floating))
        i += 4
    if i + 2 <= n:
        memcpy(dst + i, src + i, 2 * sizeof(floating))
        i += 2
    if i < n:
        dst[i] = src[i]


cdef inline void _unfold_columns(floating* cols, Py_ssize_t L, const floating* image,
                                 Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                                 Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t OH,
                                 Py_ssize_t OW) noexcept nogil:
    """im2col's rows of one padded image ``(C, H, W)`` written as columns:
    row ``(c*KH + ky)*KW + kx`` of ``cols`` (rows ``L`` values apart)
    gets, in column ``oh*OW + ow``, the window (oh, ow)'s value at (c, ky,
    kx). Each row is OH runs of OW input values, one input row each: with
    stride 1 a copy."""
    cdef Py_ssize_t c, ky, kx, oh, ow
    cdef floating* dst
    cdef const floating* src
    for c in range(C):
        for ky in range(KH):
            for kx in range(KW):
                dst = cols + ((c * KH + ky) * KW + kx) * L
                for oh in range(OH):
                    src = image + (c * H + oh * SH + ky) * W + kx
                    if SW == 1:
                        _copy_run(dst + oh * OW, src, OW)
                    else:
                        for ow in range(OW):
                            dst[oh * OW + ow] = src[ow * SW]


# From this many output positions an image on, both passes multiply image by
# image (the forward writes each image's maps where they lie in y, the
# backward reads dout as it lies); below, a chunk at once (one product of
# more rows instead of many tiny ones).
PER_IMAGE_POSITIONS = 16


cdef void _conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] W,
                        const floating[::1] b, floating[:, :, ::1] y,
                        floating[:, :, ::1] cols, floating[:, :, ::1] out,
                        floating[:, ::1] x_padded,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                        Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                        bint per_image, int groups, int num_threads) noexcept:
    """conv_forward's loop. ``x`` unpadded; per thread (first axis, at
    least ``num_threads`` of them): ``cols`` ``(K, L)`` a chunk's im2col
    rows as columns, image after image (L = images per chunk * OH*OW),
    ``out`` ``(OC, L)`` their products (used only without ``per_image``),
    ``x_padded`` room for one padded image, border zero."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], Wd = x.shape[3]
    cdef Py_ssize_t Hp = H + 2 * PH, Wp = Wd + 2 * PW
    cdef Py_ssize_t OC = W.shape[0], P = OH * OW, L = cols.shape[2], per_chunk = L // P
    cdef Py_ssize_t chunks = (N + per_chunk - 1) // per_chunk
    cdef int Kg = <int> W.shape[1], OCg = <int> (OC // groups)
    cdef Py_ssize_t chunk, first, n, i, o, p
    cdef int g, t
    cdef const floating* image
    cdef const floating* src
    cdef floating* dst
    cdef floating bias
    # Each chunk writes only its own images' maps: no two threads share an output.
    for chunk in prange(chunks, nogil=True, schedule='static',
                        num_threads=num_threads if chunks > 1 else 1):
        t = threadid()
        first = chunk * per_chunk
        n = N - first
        if n > per_chunk:
            n = per_chunk
        for i in range(n):
            image = _pad_image(&x[first + i, 0, 0, 0], &x_padded[t, 0], C, H, Wd, PH, PW)
            _unfold_columns(&cols[t, 0, i * P], L, image, C, Hp, Wp, KH, KW, SH, SW, OH, OW)
        if per_image:
            for i in range(n):
                # Each image's maps straight into y: the bias first, then
                # the product added onto it (beta = 1), with no copy.
                for o in range(OC):
                    dst = &y[first + i, o, 0]
                    bias = b[o]
                    for p in range(P):
                        dst[p] = bias
                for g in range(groups):
                    # y[n, g's maps] += W[g's maps] @ cols[g's rows, n's columns]
                    _matmul(False, False, OCg, <int> P, Kg, &W[g * OCg, 0], Kg,
                            &cols[t, g * Kg, i * P], <int> L, 1, &y[first + i, g * OCg, 0],
                            <int> P)
        else:
            # Few positions an image: one product for the whole chunk (many
            # tiny ones would cost more), then each image's maps copied out
            # with the bias.
            for g in range(groups):
                # out[g's maps] = W[g's maps] @ cols[g's rows]
                _matmul(False, False, OCg, <int> (n * P), Kg, &W[g * OCg, 0], Kg,
                        &cols[t, g * Kg, 0], <int> L, 0, &out[t, g * OCg, 0], <int> L)
            for i in range(n):
                for o in range(OC):
                    src = &out[t, o, i * P]
                    dst = &y[first + i, o, 0]
                    bias = b[o]
                    for p in range(P):
                        dst[p] = src[p] + bias


cdef inline floating _row_sum(const floating* a, Py_ssize_t n) noexcept nogil:
    """a[0] + ... + a[n-1], as eight interleaved partial sums added up in
    a fixed order: independent sums the compiler can turn into vector adds,
    where one running sum waits for each add before the next."""
    cdef floating acc[8]
    cdef floating total
    cdef Py_ssize_t i = 0, j
    for j in range(8):
        acc[j] = 0
    while i + 8 <= n:
        for j in range(8):
            acc[j] += a[i + j]
        i += 8
    total = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
    while i < n:
        total += a[i]
        i += 1
    return total


cdef void _conv_backward(const floating[:, :, :, ::1] x, const floating[:, ::1] W,
                         const floating[:, :, ::1] dout, floating[:, :, :, ::1] dx,
                         floating[:, :, ::1] dW_parts, floating[:, ::1] db_parts,
                         floating[:, :, ::1] col,
                         floating[:, :, ::1] dcol, floating[:, :, ::1] drows,
                         floating[:, ::1] x_padded, floating[:, ::1] dx_padded,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                         bint per_image, int groups, bint input_grad, bint bias_grad,
                         int num_threads) noexcept:
    """conv_backward's loop. ``x`` and ``dx`` unpadded; ``dW_parts`` and
    (with ``bias_grad``) ``db_parts`` the partial sums; per thread, as in
    _conv_forward, ``col``, ``dcol`` and ``drows`` (dout as rows, used below
    without ``per_image``), and room for one padded image: ``x_padded`` (border
    zero) and ``dx_padded``."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], Wd = x.shape[3]
    cdef Py_ssize_t Hp = H + 2 * PH, Wp = Wd + 2 * PW
    cdef Py_ssize_t OC = W.shape[0], P = OH * OW, per_chunk = col.shape[1] // P
    cdef Py_ssize_t chunks = (N + per_chunk - 1) // per_chunk, parts = dW_parts.shape[0]
    cdef int Kg = <int> W.shape[1], K = <int> (Kg * groups), OCg = <int> (OC // groups)
    cdef Py_ssize_t part, chunk, first, n, i, oh, o, p
    cdef int rows, g, t
    cdef floating beta
    cdef const floating* image
    cdef floating* grad
    cdef bint has_pad = PH != 0 or PW != 0
    # The weight and bias gradients sum over all images. Each of a fixed
    # number of parts (not one per thread) sums its own run of chunks into
    # its own partials, in order; the caller adds the partials up. So the
    # result does not depend on the thread count.
    for part in prange(parts, nogil=True, schedule='static',
                       num_threads=num_threads if parts > 1 else 1):
        t = threadid()
        if bias_grad:
            for o in range(OC):
                db_parts[part, o] = 0
        for chunk in range(part * chunks // parts, (part + 1) * chunks // parts):
            first = chunk * per_chunk
            n = N - first
            if n > per_chunk:
                n = per_chunk
            rows = <int> (n * P)
            if bias_grad:
                # While dout's chunk is read anyway: the products below then
                # find it in cache, where a separate sum would read it again.
                for i in range(n):
                    for o in range(OC):
                        db_parts[part, o] += _row_sum(&dout[first + i, o, 0], P)
            for i in range(n):
                image = _pad_image(&x[first + i, 0, 0, 0], &x_padded[t, 0], C, H, Wd, PH, PW)
                for oh in range(OH):
                    _im2col_row(&col[t, (i * OH + oh) * OW, 0], image, C, Hp, Wp,
                                oh * SH, KH, KW, SW, OW, K)
            if per_image:
                # Image by image: dout[n] (maps, positions) is already the
                # transpose of col's rows for that image, so the products read
                # it as it lies, with no copy.
                for i in range(n):
                    beta = 0 if chunk == part * chunks // parts and i == 0 else 1
                    for g in range(groups):
                        # dW[g's maps] (+)= dout[n, g's maps] @ col_n[:, g's columns]
                        _matmul(False, False, OCg, Kg, <int> P, &dout[first + i, g * OCg, 0],
                                <int> P, &col[t, i * P, g * Kg], K, beta,
                                &dW_parts[part, g * OCg, 0], Kg)
                        if input_grad:
                            # dcol_n[:, g's columns] = dout[n, g's maps].T @ W[g's maps]
                            _matmul(True, False, <int> P, Kg, OCg, &dout[first + i, g * OCg, 0],
                                    <int> P, &W[g * OCg, 0], Kg, 0, &dcol[t, i * P, g * Kg], K)
            else:
                # Few positions an image: one product for the whole chunk,
                # with dout's maps turned into rows like col's (position, map).
                beta = 0 if chunk == part * chunks // parts else 1
                for i in range(n):
                    for o in range(OC):
                        for p in range(P):
                            drows[t, i * P + p, o] = dout[first + i, o, p]
                for g in range(groups):
                    # dW[g's maps] (+)= drows[:, g's maps].T @ col[:, g's columns]
                    _matmul(True, False, OCg, Kg, rows, &drows[t, 0, g * OCg], <int> OC,
                            &col[t, 0, g * Kg], K, beta, &dW_parts[part, g * OCg, 0], Kg)
                    if input_grad:
                        # dcol[:, g's columns] = drows[:, g's maps] @ W[g's maps]
                        _matmul(False, False, rows, Kg, OCg, &drows[t, 0, g * OCg], <int> OC,
                                &W[g * OCg, 0], Kg, 0, &dcol[t, 0, g * Kg], K)
            if input_grad:
                for i in range(n):
                    # With padding, fold into a padded image (every window
                    # lies inside it), then keep its middle.
                    grad = &dx_padded[t, 0] if has_pad else &dx[first + i, 0, 0, 0]
                    memset(grad, 0, C * Hp * Wp * sizeof(floating))
                    for oh in range(OH):
                        _col2im_row(grad, &dcol[t, (i * OH + oh) * OW, 0],
                                    C, Hp, Wp, oh * SH, KH, KW, SW, OW, K)
                    if has_pad:
                        _crop_image(&dx[first + i, 0, 0, 0], grad, C, H, Wd, PH, PW)


# A fixed number of partial sums of the weight and bias gradients: at most
# this many threads share a convolution.
DW_PARTS = 16


def _scratch(work, name, shape, dtype):
    """An array of ``shape`` kept in the dict ``work`` (contents undefined)."""
    array = work.get(name) if work is not None else None
    if array is None or array.shape != shape or array.dtype != dtype:
        array = np.empty(shape, dtype=dtype)
        if work is not None:
            work[name] = array
    return array


def _chunk_plan(x, oc, kh, kw, oh, ow):
    """How forward and backward split the batch: ``(per_chunk, chunks,
    parts, threads, per_image)``. A chunk holds as many images as fit
    CHUNK_BYTES of im2col rows (at least one); ``parts`` partials of the
    weight and bias gradients, at most DW_PARTS; a thread per part at most,
    so each thread's buffers serve both passes; ``per_image``: whether the
    products go image by image (see PER_IMAGE_POSITIONS)."""
    n, k = x.shape[0], x.shape[1] * kh * kw
    per_chunk = min(max(1, n), max(1, CHUNK_BYTES // (oh * ow * k * x.itemsize)))
    if max(per_chunk * oh * ow, k, oc) > INT_MAX:     # BLAS takes its sizes as C ints
        raise ValueError(f"convolution too large for BLAS: a chunk of {per_chunk * oh * ow} "
                         f"rows, {k} columns and {oc} maps; at most {INT_MAX} each")
    chunks = -(-n // per_chunk)
    parts = max(1, min(DW_PARTS, chunks))
    # An empty batch needs no thread's buffers (they hold an image or more,
    # which with a huge pad could be gigabytes for nothing).
    threads = min(_num_threads, parts) if n else 0
    return per_chunk, chunks, parts, threads, oh * ow >= PER_IMAGE_POSITIONS


def _chunk_buffers(per_chunk, positions, work, dtype, threads, **widths):
    """Per-thread chunk buffers ``(threads, per_chunk*positions, width)``,
    one for each named width."""
    return [_scratch(work, "chunked_" + name, (threads, per_chunk * positions, width), dtype)
            for name, width in widths.items()]


def _padded_image_buffer(x, threads, ph, pw, work, name):
    """Per-thread room for one zero-padded image of ``x``: ``(threads,
    C*(H+2ph)*(W+2pw))``, zeroed here on every call (a _scratch array may
    hold anything) so that its border is zero; empty without padding."""
    n, c, h, w = x.shape
    size = c * (h + 2 * ph) * (w + 2 * pw) if ph or pw else 0
    buffer = _scratch(work, "chunked_" + name, (threads, size), x.dtype)
    buffer[...] = 0
    return buffer


def conv_forward(x, W, b, stride=1, pad=0, groups=1, work=None):
    """Convolution: ``y = im2col(x) @ W.reshape(OC, -1).T + b``, in chunks.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, b ``(OC,)`` ->
    y ``(N, OC, OH, OW)``. With ``groups`` > 1, output maps of group g see
    only input channels of group g (Krizhevsky et al. 2012's two towers).
    ``work``: a dict that keeps the scratch arrays from one call to the
    next (fresh pages cost a page fault each on every call otherwise).
    """
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw, oh, ow
    kh, kw, sh, sw, ph, pw, oh, ow = conv_args(x, W, b, stride, pad, groups)
    n, oc = x.shape[0], W.shape[0]
    y = np.empty((n, oc, oh, ow), dtype=x.dtype)
    per_chunk, _, _, threads, per_image = _chunk_plan(x, oc, kh, kw, oh, ow)
    # Columns, not conv_backward's rows: (K, per_chunk*OH*OW) a thread, and
    # (OC, per_chunk*OH*OW) for the products only when they cannot go
    # straight into y.
    cols = _scratch(work, "chunked_cols", (threads, x.shape[1] * kh * kw, per_chunk * oh * ow),
                    x.dtype)
    maps_shape = (threads, 0, 0) if per_image else (threads, oc, per_chunk * oh * ow)
    maps = _scratch(work, "chunked_maps", maps_shape, x.dtype)
    W2 = W.reshape(oc, -1)
    x_padded = _padded_image_buffer(x, threads, ph, pw, work, "x_padded")
    if x.dtype == np.float32:
        _conv_forward[float](x, W2, b, y.reshape(n, oc, oh * ow), cols, maps, x_padded, kh, kw,
                             sh, sw, ph, pw, oh, ow, per_image, groups, threads)
    else:
        _conv_forward[double](x, W2, b, y.reshape(n, oc, oh * ow), cols, maps, x_padded, kh, kw,
                              sh, sw, ph, pw, oh, ow, per_image, groups, threads)
    return y


def conv_backward(x, W, dout, stride=1, pad=0, groups=1, input_grad=True, work=None,
                  bias_grad=False):
    """Gradients of :func:`conv_forward`: ``(dx, dW)``, dx None unless
    ``input_grad``; with ``bias_grad``, ``(dx, dW, db)``, db being dout
    summed over N, OH, OW (summed here as dout passes through the cache).
    ``work`` as in :func:`conv_forward`.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, KH, KW)``, dout
    ``(N, OC, OH, OW)`` -> dx like x, dW like W, db ``(OC,)``.
    """
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw, oh, ow
    kh, kw, sh, sw, ph, pw, oh, ow = conv_args(x, W, None, stride, pad, groups, with_bias=False)
    conv_grad_args(x, W, dout, oh, ow, input_grad, bias_grad)
    n, c, h, w = x.shape
    oc = W.shape[0]
    k = c * kh * kw
    per_chunk, chunks, num_parts, threads, per_image = _chunk_plan(x, oc, kh, kw, oh, ow)
    parts = _scratch(work, "chunked_dW_parts", (num_parts, oc, W.shape[1] * kh * kw), x.dtype)
    db_parts = _scratch(work, "chunked_db_parts", (num_parts, oc if bias_grad else 0), x.dtype)
    col, dcol, drows = _chunk_buffers(per_chunk, oh * ow, work, x.dtype, threads, col=k,
                                      dcol=k if input_grad else 1, drows=1 if per_image else oc)
    if chunks == 0:
        parts[...] = 0      # an empty batch: no chunk writes any part
        db_parts[...] = 0
    x_padded = _padded_image_buffer(x, threads, ph, pw, work, "x_padded")
    dx_padded = _padded_image_buffer(x, threads if input_grad else 0, ph, pw, work, "dx_padded")
    dx = np.empty(x.shape if input_grad else (0, c, 1, 1), dtype=x.dtype)
    W2, dout2 = W.reshape(oc, -1), dout.reshape(n, oc, oh * ow)
    if x.dtype == np.float32:
        _conv_backward[float](x, W2, dout2, dx, parts, db_parts, col, dcol, drows, x_padded,
                              dx_padded, kh, kw, sh, sw, ph, pw, oh, ow, per_image, groups,
                              input_grad, bias_grad, threads)
    else:
        _conv_backward[double](x, W2, dout2, dx, parts, db_parts, col, dcol, drows, x_padded,
                               dx_padded, kh, kw, sh, sw, ph, pw, oh, ow, per_image, groups,
                               input_grad, bias_grad, threads)
    dW = parts.sum(axis=0).reshape(W.shape)
    grads = (dx if input_grad else None, dW)
    return grads + (db_parts.sum(axis=0),) if bias_grad else grads


# -------------------------------------------------------------- Winograd ----
#
# A stride-1 convolution with an r x r kernel makes each m x m block of an
# output map from an a x a tile of input (a = m + r - 1). Winograd's minimal
# filtering (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
# Networks", §4) does it with a*a multiplications instead of m*m*r*r:
#
#     Y = AT [ (G g GT) * (BT d B) ] A            (* elementwise)
#
# for an input tile d and a kernel g, with small fixed matrices AT, G, BT
# (see winograd_matrices). Summed over the input channels, the elementwise
# product becomes one matrix product for each of the a*a tile positions xi:
#
#     M[xi] (tiles, OC) = V[xi] (tiles, C) @ U[xi] (C, OC)
#
# where V = BT d B holds every tile of every channel and U = G g GT every
# kernel. So a convolution is: transform the tiles (V), a*a matrix products,
# transform back (AT M A). F(3x3, 3x3) makes 9 outputs with 25
# multiplications instead of 81; F(3x3, 5x5), 9 with 49 instead of 225.
#
# The gradients are convolutions too: dx is the convolution of dout (padded
# by r - 1 - pad) with the kernels turned by 180 degrees, input and output
# maps swapped; dW sums, over the tiles, the correlation of each input tile
# with its m x m block of dout: F(r x r, m x m), whose BT is forward's.
#
# Each step runs in threads over disjoint outputs: images for the
# transforms, (xi, group) pairs for the products.

# (m, points) for each kernel size r: the output block m x m and the a - 1
# finite interpolation points (infinity is the last). The points set how
# far the rounding strays from the direct convolution's. Compared in float32
# on 32 channels, the largest error relative to the largest output: F(3, 3)
# with these points as the direct sum's (5e-7), F(3, 5) about 3x (2e-6 to
# 3e-6, against 8e-7); other small points did no better.
WINOGRAD = {3: (3, (0, -1, 2, 0.5)), 5: (3, (0, 1, -1, 2, -2, 0.5))}


def winograd_matrices(m, r, points):
    """``AT (m, a)``, ``G (a, r)``, ``BT (a, a)`` of Winograd's F(m, r), a =
    m + r - 1, from a - 1 distinct finite points and infinity (Toom-Cook;
    Lavin & Gray 2016, §4.1). In one dimension, for an input d of a values
    and a kernel g of r, ``AT @ ((G @ g) * (BT @ d))`` is the correlation
    ``y[i] = sum over k of d[i + k] g[k]``, i < m. BT depends only on the
    points, so F(m, r) and F(r, m) share it."""
    a = m + r - 1
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (a - 1,) or len(set(points)) != a - 1:
        raise ValueError(f"F({m}, {r}) needs {a - 1} distinct points, got {points!r}")
    # f[j] = product over l != j of (p[j] - p[l]): Lagrange's denominators.
    f = np.array([np.prod([p[j] - p[l] for l in range(a - 1) if l != j]) for j in range(a - 1)])
    # (No negative indices: this module is compiled with wraparound off.)
    AT = np.zeros((m, a))
    AT[:, :a - 1] = p[None, :] ** np.arange(m)[:, None]     # evaluate at each point...
    AT[m - 1, a - 1] = 1                                    # ... and at infinity
    G = np.zeros((a, r))
    G[:a - 1] = p[:, None] ** np.arange(r)[None, :] / f[:, None]
    G[a - 1, r - 1] = 1
    BT = np.zeros((a, a))
    for j in range(a - 1):      # row j: the polynomial prod over l != j of (x - p[l])
        BT[j, :a - 1] = np.flip(np.poly(np.delete(p, j)))
    BT[a - 1] = np.flip(np.poly(p))     # and prod over all l of (x - p[l])
    return AT, G, BT


cdef inline void _combine(floating* out, const floating* src, Py_ssize_t step,
                          const floating* w, Py_ssize_t count, Py_ssize_t K) noexcept nogil:
    """out[k] = sum over i < count of w[i] * src[i*step + k], for k < K: a
    weighted sum of ``count`` vectors of K channels."""
    cdef floating acc[LANES]
    cdef Py_ssize_t block, first, i, k
    for block in range(K // LANES):
        first = block * LANES
        for k in range(LANES):
            acc[k] = 0
        for i in range(count):
            if w[i] != 0:                    # the transform matrices are half zeros
                for k in range(LANES):
                    acc[k] += w[i] * src[i * step + first + k]
        for k in range(LANES):
            out[first + k] = acc[k]
    for k in range(K // LANES * LANES, K):
        out[k] = 0
        for i in range(count):
            if w[i] != 0:
                out[k] += w[i] * src[i * step + k]


cdef void _sandwich(floating* out, Py_ssize_t out_row, Py_ssize_t out_col, const floating* d,
                    Py_ssize_t d_row, Py_ssize_t d_col, const floating[:, ::1] L,
                    floating* tmp, Py_ssize_t K) noexcept nogil:
    """``L d LT`` for K channels at once: out[a, b, :] = sum over i, j of
    L[a, i] L[b, j] d[i, j, :], for L ``(p, s)`` and d ``(s, s)`` tiles of
    K-vectors. d[i, j, :] starts at ``d + i*d_row + j*d_col``, out[a, b, :]
    at ``out + a*out_row + b*out_col``; ``tmp`` holds p*s*K values."""
    cdef Py_ssize_t p = L.shape[0], s = L.shape[1], a, b, j
    for a in range(p):                       # tmp[a, j] = sum over i of L[a, i] d[i, j]
        for j in range(s):
            _combine(tmp + (a * s + j) * K, d + j * d_col, d_row, &L[a, 0], s, K)
    for a in range(p):                       # out[a, b] = sum over j of L[b, j] tmp[a, j]
        for b in range(p):
            _combine(out + a * out_row + b * out_col, tmp + a * s * K, K, &L[b, 0], s, K)


cdef void _to_channels_last(floating* room, const floating* image, Py_ssize_t C,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t top, Py_ssize_t left,
                            Py_ssize_t Hr, Py_ssize_t Wr) noexcept nogil:
    """Copy ``image (C, H, W)`` into ``room (Hr, Wr, C)`` at row ``top`` and
    column ``left`` (negative: the image's first rows or columns are left
    out), as far as it fits; the rest of ``room`` is left as it is (zero)."""
    cdef Py_ssize_t c, h, w, rh, rw
    for c in range(C):
        for h in range(H):
            rh = h + top
            if rh < 0 or rh >= Hr:
                continue
            for w in range(W):
                rw = w + left
                if 0 <= rw < Wr:
                    room[(rh * Wr + rw) * C + c] = image[(c * H + h) * W + w]


cdef void _tile_transforms(floating[:, ::1] V, const floating[:, :, :, ::1] x,
                           const floating[:, ::1] L, Py_ssize_t m, Py_ssize_t offset,
                           floating[:, ::1] room, floating[:, ::1] tmp,
                           Py_ssize_t rows, Py_ssize_t cols, int num_threads) noexcept:
    """V[xi, t*C : (t+1)*C] = (L d LT)[xi] for every tile d (t counted over
    all images) of ``x (N, C, H, W)``: tiles of L.shape[1] x L.shape[1]
    values, m apart, ``rows x cols`` of them per image, the image's (0, 0)
    at tile position (offset, offset). V: one row per xi. ``room`` per
    thread: a zeroed channels-last image buffer."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], s = L.shape[1]
    cdef Py_ssize_t Hr = (rows - 1) * m + s, Wr = (cols - 1) * m + s
    cdef Py_ssize_t plane = V.shape[1]      # from one xi to the next
    cdef Py_ssize_t p = L.shape[0], n, ty, tx
    cdef int t
    # One image per iteration: it writes only its own tiles' rows of V. The
    # parts of ``room`` outside the image stay zero: the padding. (Work:
    # about p*s*(s + p) multiply-adds per tile and channel.)
    for n in prange(N, nogil=True, schedule='static',
                    num_threads=_threads_for(N * rows * cols * p * s * (s + p) * C, num_threads)):
        t = threadid()
        _to_channels_last(&room[t, 0], &x[n, 0, 0, 0], C, x.shape[2], x.shape[3],
                          offset, offset, Hr, Wr)
        for ty in range(rows):
            for tx in range(cols):
                _sandwich(&V[0, ((n * rows + ty) * cols + tx) * C], L.shape[0] * plane, plane,
                          &room[t, (ty * m * Wr + tx * m) * C], Wr * C, C, L, &tmp[t, 0], C)


cdef void _untransform(floating[:, :, :, ::1] y, const floating[:, ::1] M,
                       const floating[::1] b, bint has_bias, const floating[:, ::1] AT,
                       Py_ssize_t rows, Py_ssize_t cols, floating[:, ::1] blocks,
                       floating[:, ::1] tmp, int num_threads) noexcept:
    """y[n] = AT M A of each tile of image n, the m x m blocks cropped to
    ``y (N, OC, OH, OW)``, plus the bias; M laid out as V in
    _tile_transforms. ``blocks`` per thread: one image's blocks, channels
    last ``(rows*m, cols*m, OC)``."""
    cdef Py_ssize_t N = y.shape[0], OC = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t m = AT.shape[0], a = AT.shape[1], Wb = cols * m
    cdef Py_ssize_t plane = M.shape[1]
    cdef Py_ssize_t n, ty, tx, o, oh, ow
    cdef floating* block
    cdef floating bias
    cdef int t
    for n in prange(N, nogil=True, schedule='static',
                    num_threads=_threads_for(N * rows * cols * m * a * (a + m) * OC,
                                             num_threads)):
        t = threadid()
        block = &blocks[t, 0]
        for ty in range(rows):
            for tx in range(cols):
                _sandwich(block + (ty * m * Wb + tx * m) * OC, Wb * OC, OC,
                          &M[0, ((n * rows + ty) * cols + tx) * OC], a * plane, plane, AT,
                          &tmp[t, 0], OC)
        # Channels last back to maps, the overhang of the last blocks cut off.
        for o in range(OC):
            bias = b[o] if has_bias else 0
            for oh in range(OH):
                for ow in range(OW):
                    y[n, o, oh, ow] = block[(oh * Wb + ow) * OC + o] + bias


cdef void _products(floating[:, ::1] M, const floating[:, ::1] V, const floating[:, ::1] U,
                    int T, int C, int OC, int groups, bint transpose_v, floating beta,
                    int num_threads) noexcept:
    """For every tile position xi and group g, on g's slices: M[xi] = V[xi] @
    U[xi]; or, ``transpose_v``, M[xi] = V[xi].T @ U[xi] + beta * M[xi] (a
    sum over the tiles: the weight gradient). Each row of V, U, M holds one
    xi's matrix, row-major: V's ``(T, C)``, U's ``(C / groups, OC)``, M's
    ``(T, OC)``; or with ``transpose_v``, U's ``(T, OC)``, M's
    ``(C / groups, OC)``. One product per iteration, each on one thread."""
    cdef Py_ssize_t jobs = V.shape[0] * groups, job, xi
    cdef int g, Cg = C // groups, OCg = OC // groups
    for job in prange(jobs, nogil=True, schedule='static',
                      num_threads=num_threads if jobs > 1 else 1):
        xi = job // groups
        g = <int> (job % groups)
        if transpose_v:      # M[xi] (Cg, g's maps) (+)= V[xi][:, g's channels].T @ U[xi][:, g's maps]
            _matmul(True, False, Cg, OCg, T, &V[xi, g * Cg], C, &U[xi, g * OCg], OC,
                    beta, &M[xi, g * OCg], OC)
        else:                # M[xi] (T, g's maps) = V[xi][:, g's channels] @ U[xi] (Cg, g's maps)
            _matmul(False, False, T, OCg, Cg, &V[xi, g * Cg], C, &U[xi, g * OCg], OC,
                    0, &M[xi, g * OCg], OC)


cdef void _transform_rows(floating[:, ::1] out, const floating[:, ::1] src,
                          const floating[:, ::1] L, Py_ssize_t width, floating[:, ::1] tmp,
                          int num_threads) noexcept:
    """out = L X LT for every block X of ``width`` columns: X[i, j] is
    src[i*s + j, q*width : (q+1)*width], and out[a*p + b] likewise, for L
    ``(p, s)``. For kernels (X: one input map's r x r weights for all
    output maps) and for weight gradients (X: a x a tile positions).
    ``tmp``: p*s*width values per thread."""
    cdef Py_ssize_t p = L.shape[0], s = L.shape[1], q
    # Each block of columns is written by one iteration.
    for q in prange(src.shape[1] // width, nogil=True, schedule='static',
                    num_threads=_threads_for(src.shape[1] * p * s, num_threads)):
        _sandwich(&out[0, q * width], p * out.shape[1], out.shape[1], &src[0, q * width],
                  s * src.shape[1], src.shape[1], L, &tmp[threadid(), 0], width)


# Images per slab: as many as keep a slab's tile transforms and products
# within about this many bytes, so that they stay in the caches from one
# step to the next; but at least enough for WINOGRAD_MIN_ROWS tiles, the
# rows of the matrix products (fewer and BLAS runs well below its speed).
WINOGRAD_SLAB_BYTES = 1 << 20
WINOGRAD_MIN_ROWS = 128
# Values added to every row of a tile-transform buffer (see _Winograd.buffer).
PLANE_PAD = 16


class _Winograd:
    """What one Winograd convolution needs besides its data: its matrices
    in x's dtype, its tiles, its slabs of images, and its scratch arrays,
    kept in the caller's ``work`` dict."""

    def __init__(self, x, W, stride, pad, work):
        r = W.shape[2]
        (sh, sw), (ph, pw) = pair(stride, "stride", 1), pair(pad, "pad", 0)
        if (sh, sw) != (1, 1) or W.shape[3] != r or r not in WINOGRAD or ph != pw:
            raise ValueError(f"the Winograd convolution takes stride 1, the same pad on both "
                             f"axes and a square kernel of size {sorted(WINOGRAD)}, got stride "
                             f"{stride!r}, pad {pad!r} and a {W.shape[2]}x{W.shape[3]} kernel")
        self.m = WINOGRAD[r][0]
        self.r, self.pad, self.a = r, ph, self.m + r - 1
        self.AT, self.G, self.BT, self.ATw, self.Gw = _winograd_matrices_in(x.dtype, r)
        n, c, h, w = x.shape
        self.oh, self.ow = h + 2 * ph - r + 1, w + 2 * pw - r + 1
        # The most tiles per image (dx's, over x, or y's), the most channels.
        tiles = max(_tiles(h, self.m) * _tiles(w, self.m),
                    _tiles(max(self.oh, 1), self.m) * _tiles(max(self.ow, 1), self.m))
        channels = max(c, W.shape[0])
        per_image = self.a * self.a * tiles * 2 * channels * x.itemsize
        self.per_slab = max(1, min(n, max(WINOGRAD_SLAB_BYTES // per_image,
                                          -(-WINOGRAD_MIN_ROWS // tiles))))
        if self.per_slab * tiles * channels + PLANE_PAD > INT_MAX:    # BLAS takes C ints
            raise ValueError(f"convolution too large for BLAS: {self.per_slab * tiles} tiles "
                             f"of {channels} channels a slab; at most {INT_MAX} values")
        self.work = work if work is not None else {}
        self.dtype, self.threads = x.dtype, _num_threads

    def slabs(self, n):
        return [slice(i, min(n, i + self.per_slab)) for i in range(0, n, self.per_slab)]

    def buffer(self, name, tiles, width):
        """A scratch array of one row per tile position xi, each with room
        for a slab's tiles of ``width`` channels each. The rows are a little
        longer than that: rows a multiple of 4 KiB apart would all fall in
        the same few cache sets, and the transforms read or write all a*a
        rows at once."""
        return _scratch(self.work, "winograd_" + name,
                        (self.a * self.a, self.per_slab * tiles * width + PLANE_PAD), self.dtype)

    def tmp(self, channels):
        return _scratch(self.work, f"winograd_tmp_{channels}",
                        (self.threads, self.a * self.a * channels), self.dtype)

    def transforms(self, V, x, L, offset, rows, cols):
        """V = L d LT of every tile of x (see _tile_transforms)."""
        c, s = x.shape[1], L.shape[1]
        room = _scratch(self.work, f"winograd_room_{s}_{c}",
                        (self.threads, ((rows - 1) * self.m + s) * ((cols - 1) * self.m + s) * c),
                        self.dtype)
        room[...] = 0
        if self.dtype == np.float32:
            _tile_transforms[float](V, x, L, self.m, offset, room, self.tmp(c), rows, cols,
                                    self.threads)
        else:
            _tile_transforms[double](V, x, L, self.m, offset, room, self.tmp(c), rows, cols,
                                     self.threads)

    def products(self, M, V, U, tiles, c, oc, groups, transpose_v=False, beta=0):
        """See _products."""
        if self.dtype == np.float32:
            _products[float](M, V, U, tiles, c, oc, groups, transpose_v, beta, self.threads)
        else:
            _products[double](M, V, U, tiles, c, oc, groups, transpose_v, beta, self.threads)

    def untransform(self, y, M, b, rows, cols):
        """y = AT M A of every tile, plus b if not None (see _untransform)."""
        oc = y.shape[1]
        blocks = _scratch(self.work, f"winograd_blocks_{oc}",
                          (self.threads, rows * self.m * cols * self.m * oc), self.dtype)
        bias = b if b is not None else np.zeros(1, self.dtype)
        if self.dtype == np.float32:
            _untransform[float](y, M, bias, b is not None, self.AT, rows, cols, blocks,
                                self.tmp(oc), self.threads)
        else:
            _untransform[double](y, M, bias, b is not None, self.AT, rows, cols, blocks,
                                 self.tmp(oc), self.threads)

    def convolve(self, x, U, b, y, pad, groups, name):
        """y = the convolution of x (padded by ``pad`` on every side; negative:
        cropped) with the kernels whose transforms U holds, plus b if not
        None; slab by slab."""
        c, oc = x.shape[1], y.shape[1]
        rows, cols = _tiles(y.shape[2], self.m), _tiles(y.shape[3], self.m)
        V = self.buffer(name + "_V", rows * cols, c)
        M = self.buffer(name + "_M", rows * cols, oc)
        for images in self.slabs(x.shape[0]):
            tiles = (images.stop - images.start) * rows * cols
            self.transforms(V, x[images], self.BT, pad, rows, cols)
            self.products(M, V, U, tiles, c, oc, groups)
            self.untransform(y[images], M, b, rows, cols)


def _tiles(size, m):
    return -(-size // m)


_matrices = {}


def _winograd_matrices_in(dtype, r):
    """``AT, G, BT`` of F(m, r) and ``AT, G`` of F(r, m) (for dW: the
    correlations of x's tiles with dout's m x m blocks; BT is the same), for
    kernels of size r, in ``dtype``; computed once, read-only."""
    key = (np.dtype(dtype), r, WINOGRAD[r])
    if key not in _matrices:
        m, points = WINOGRAD[r]
        found = [*winograd_matrices(m, r, points), *winograd_matrices(r, m, points)[:2]]
        found = [np.ascontiguousarray(matrix, dtype=dtype) for matrix in found]
        for matrix in found:
            matrix.setflags(write=False)
        _matrices[key] = found
    return _matrices[key]


def _transform_blocks(X, L, width):
    """L X LT of every block of ``width`` columns (see _transform_rows):
    ``(s*s, n)`` -> ``(p*p, n)``, in X's dtype."""
    X = np.ascontiguousarray(X)
    out = np.empty((L.shape[0] ** 2, X.shape[1]), dtype=X.dtype)
    tmp = np.empty((_num_threads, L.size * width), dtype=X.dtype)
    if X.dtype == np.float32:
        _transform_rows[float](out, X, L, width, tmp, _num_threads)
    else:
        _transform_rows[double](out, X, L, width, tmp, _num_threads)
    return out


def _kernel_transforms(W, G, groups, turned):
    """U = G g GT of every kernel g, one row per tile position xi: ``(a*a,
    Cg*OC)``, each row a ``(Cg, OC)`` matrix, for the convolution itself; or,
    ``turned``, of each kernel turned by 180 degrees with input and output
    maps swapped in each group, each row ``(OCg, C)``: for dx."""
    oc, cg, r = W.shape[:3]
    if turned:      # Wt[k, l, o, g*Cg + c] = W[g*OCg + o, c, r-1-k, r-1-l]
        Wt = W.reshape(groups, oc // groups, cg, r, r)[..., ::-1, ::-1].transpose(3, 4, 1, 0, 2)
        return _transform_blocks(Wt.reshape(r * r, -1), G, groups * cg)
    return _transform_blocks(W.transpose(2, 3, 1, 0).reshape(r * r, -1), G, oc)


def winograd_conv_forward(x, W, b, stride=1, pad=0, groups=1, work=None):
    """:func:`conv_forward` by Winograd's algorithm: stride 1, the same pad
    on both axes, a square kernel whose size is in WINOGRAD.

    Shapes: x ``(N, C, H, W)``, W ``(OC, C/groups, r, r)``, b ``(OC,)`` ->
    y ``(N, OC, OH, OW)``.
    """
    conv_args(x, W, b, stride, pad, groups)
    plan = _Winograd(x, W, stride, pad, work)
    y = np.empty((x.shape[0], W.shape[0], plan.oh, plan.ow), dtype=x.dtype)
    plan.convolve(x, _kernel_transforms(W, plan.G, groups, False), b, y, plan.pad, groups, "y")
    return y


def winograd_conv_backward(x, W, dout, stride=1, pad=0, groups=1, input_grad=True, work=None,
                           bias_grad=False):
    """:func:`conv_backward` by Winograd's algorithm (see
    :func:`winograd_conv_forward`): ``(dx, dW)``, dx None unless ``input_grad``;
    with ``bias_grad``, ``(dx, dW, db)``."""
    kh, kw, sh, sw, ph, pw, oh, ow = conv_args(x, W, None, stride, pad, groups, with_bias=False)
    conv_grad_args(x, W, dout, oh, ow, input_grad, bias_grad)
    plan = _Winograd(x, W, stride, pad, work)
    n, c = x.shape[:2]
    oc, a = W.shape[0], plan.a
    rows, cols = _tiles(oh, plan.m), _tiles(ow, plan.m)
    # dW: for each xi, the sum over all tiles of x's tile transforms times
    # those of dout's m x m blocks, slab after slab (the same order for any
    # thread count); then back from the a x a tile positions to r x r.
    V, D = plan.buffer("dW_V", rows * cols, c), plan.buffer("dW_D", rows * cols, oc)
    Mw = _scratch(plan.work, "winograd_dW_M", (a * a, c // groups * oc), x.dtype)
    Mw[...] = 0         # stays so for an empty batch
    for images in plan.slabs(n):
        tiles = (images.stop - images.start) * rows * cols
        plan.transforms(V, x[images], plan.BT, plan.pad, rows, cols)
        plan.transforms(D, dout[images], plan.Gw, 0, rows, cols)
        plan.products(Mw, V, D, tiles, c, oc, groups, transpose_v=True, beta=1)
    r = plan.r
    dW = _transform_blocks(Mw, plan.ATw, oc).reshape(r, r, c // groups, oc)
    dW = np.ascontiguousarray(dW.transpose(3, 2, 0, 1))
    dx = None
    if input_grad:
        # dx: the convolution of dout, padded by r - 1 - pad, with the turned kernels.
        dx = np.empty(x.shape, dtype=x.dtype)
        plan.convolve(dout, _kernel_transforms(W, plan.G, groups, True), None, dx,
                      plan.r - 1 - plan.pad, groups, "dx")
    return (dx, dW) + ((bias_gradient(dout),) if bias_grad else ())


# ----------------------------------------------------------- max pooling ----

cdef inline Py_ssize_t _first_ow(Py_ssize_t kx, Py_ssize_t SW, Py_ssize_t PW,
                                 Py_ssize_t OW) noexcept nogil:
    """Smallest ow whose input column ow*SW - PW + kx is >= 0 (at most OW)."""
    cdef Py_ssize_t need = PW - kx
    # ceil(need / SW) written so that no intermediate exceeds need: the
    # usual (need + SW - 1) // SW overflowed for a stride near 2**63.
    cdef Py_ssize_t lo = 0 if need <= 0 else (need - 1) // SW + 1
    return lo if lo < OW else OW


cdef inline Py_ssize_t _end_ow(Py_ssize_t kx, Py_ssize_t SW, Py_ssize_t PW, Py_ssize_t W,
                               Py_ssize_t OW, Py_ssize_t lo) noexcept nogil:
    """One past the largest ow whose input column ow*SW - PW + kx is < W (>= lo)."""
    cdef Py_ssize_t room = W + PW - kx
    cdef Py_ssize_t hi = 0 if room <= 0 else (room - 1) // SW + 1
    if hi > OW:
        hi = OW
    return hi if hi > lo else lo


cdef void _maxpool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                           int[:, :, :, ::1] argmax,
                           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                           Py_ssize_t PH, Py_ssize_t PW, int num_threads) noexcept:
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, ky, kx, ih, lo
    cdef const floating* row
    cdef floating* best
    cdef int* best_at
    cdef floating v
    cdef int position
    cdef bint take
    for nc in prange(x.shape[0] * C, nogil=True, schedule='static',
                     num_threads=_threads_for(x.shape[0] * C * H * W * POOL_WORK_PER_VALUE,
                                              num_threads)):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            # A whole output row at once: the running maxima live in the
            # output row itself, and the innermost loop runs along it, so
            # its iterations are independent (one window each) instead of
            # one long chain of comparisons per window.
            best = &out[n, c, oh, 0]
            best_at = &argmax[n, c, oh, 0]
            for ow in range(OW):
                # Padding holds -inf, so a window whose real values are all
                # -inf keeps position 0, exactly as numpy.argmax would.
                best[ow] = -INFINITY
                best_at[ow] = 0
            for ky in range(KH):
                ih = oh * SH - PH + ky
                if ih < 0 or ih >= H:
                    continue
                row = &x[n, c, ih, 0]
                # Positions are visited in row-major order within every
                # window, so the strict '>' keeps the first maximum, and the
                # first NaN wins and is never replaced (numpy.argmax rules).
                for kx in range(KW):
                    position = <int>(ky * KW + kx)
                    lo = _first_ow(kx, SW, PW, OW)
                    for ow in range(lo, _end_ow(kx, SW, PW, W, OW, lo)):
                        v = row[ow * SW - PW + kx]
                        take = (v > best[ow]) | ((v != v) & (best[ow] == best[ow]))
                        best[ow] = v if take else best[ow]
                        best_at[ow] = position if take else best_at[ow]


def maxpool_forward(x, kernel_size, stride, pad=0, ceil_mode=False):
    """Max of every window, and where it was.

    Shapes: x ``(N, C, H, W)`` -> out ``(N, C, OH, OW)`` (x's dtype),
    argmax ``(N, C, OH, OW)`` int32 in ``[0, KH*KW)``. Padding is -inf; ties
    go to the first maximum in row-major order (as ``numpy.argmax``).
    """
    float_array(x, "x", 4)
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = shape4(x.shape, "x")
    pool_window_check(kh, kw)
    oh = pool_output_size(h, kh, sh, ph, ceil_mode, "height")
    ow = pool_output_size(w, kw, sw, pw, ceil_mode, "width")
    sizes_check(n, c, h, w, ph, pw, oh, ow)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=ARGMAX_DTYPE)
    if x.dtype == np.float32:
        _maxpool_forward[float](x, out, argmax, kh, kw, sh, sw, ph, pw, _num_threads)
    else:
        _maxpool_forward[double](x, out, argmax, kh, kw, sh, sw, ph, pw, _num_threads)
    return out, argmax


cdef int _maxpool_backward(const floating[:, :, :, ::1] dout, const int[:, :, :, ::1] argmax,
                           floating[:, :, :, ::1] dx,
                           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                           Py_ssize_t PH, Py_ssize_t PW, int num_threads) noexcept:
    """Returns the number of out-of-range argmax entries (which are skipped)."""
    cdef Py_ssize_t C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t OH = dout.shape[2], OW = dout.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, ih, iw
    cdef int at, bad = 0
    # Overlapping windows may send gradient to the same element, but only
    # within one (n, c) plane, and each plane belongs to one thread.
    for nc in prange(dx.shape[0] * C, nogil=True, schedule='static',
                     num_threads=_threads_for(dx.shape[0] * C * H * W * POOL_WORK_PER_VALUE,
                                              num_threads)):
        n = nc // C
        c = nc % C
        dx[n, c, :, :] = 0
        for oh in range(OH):
            for ow in range(OW):
                at = argmax[n, c, oh, ow]
                if at < 0 or at >= KH * KW:
                    bad += 1
                    continue
                ih = oh * SH - PH + at // KW
                iw = ow * SW - PW + at % KW
                if 0 <= ih < H and 0 <= iw < W:
                    dx[n, c, ih, iw] = dx[n, c, ih, iw] + dout[n, c, oh, ow]
    return bad


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, pad=0):
    """Send each window's gradient to the element that won its max.

    Shapes: dout, argmax ``(N, C, OH, OW)`` -> dx ``x_shape = (N, C, H, W)``.
    Overlapping windows accumulate; a winner in the padding is dropped.
    """
    cdef Py_ssize_t kh, kw, sh, sw, ph, pw
    (kh, kw), (sh, sw), (ph, pw) = window_args(kernel_size, stride, pad)
    n, c, h, w = pool_grad_check(dout, argmax, x_shape, kh, kw, sh, sw, ph, pw)
    dx = np.empty((n, c, h, w), dtype=dout.dtype)
    if dout.dtype == np.float32:
        bad = _maxpool_backward[float](dout, argmax, dx, kh, kw, sh, sw, ph, pw, _num_threads)
    else:
        bad = _maxpool_backward[double](dout, argmax, dx, kh, kw, sh, sw, ph, pw, _num_threads)
    if bad:
        raise ValueError(f"argmax values must lie in [0, {kh * kw}) for a {kh}x{kw} window "
                         f"({bad} do not)")
    return dx


# ------------------------------------------------------------------ ReLU ----

# Values per block of the elementwise loops: each thread takes whole blocks.
cdef Py_ssize_t ELEMENTWISE_BLOCK = 1 << 14


cdef void _relu_forward(const floating[::1] x, floating[::1] y, int num_threads) noexcept:
    cdef Py_ssize_t size = x.shape[0], blocks = (size + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
    cdef Py_ssize_t block, i, end
    for block in prange(blocks, nogil=True, schedule='static',
                        num_threads=_threads_for(size, num_threads)):
        end = (block + 1) * ELEMENTWISE_BLOCK
        if end > size:
            end = size
        for i in range(block * ELEMENTWISE_BLOCK, end):
            # "x <= 0", not "x > 0": a NaN passes through, as in the book's ReLU.
            y[i] = 0 if x[i] <= 0 else x[i]


cdef void _relu_backward(const floating[::1] y, const floating[::1] dout, floating[::1] dx,
                         int num_threads) noexcept:
    cdef Py_ssize_t size = y.shape[0], blocks = (size + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
    cdef Py_ssize_t block, i, end
    cdef floating d
    for block in prange(blocks, nogil=True, schedule='static',
                        num_threads=_threads_for(size, num_threads)):
        end = (block + 1) * ELEMENTWISE_BLOCK
        if end > size:
            end = size
        for i in range(block * ELEMENTWISE_BLOCK, end):
            d = dout[i]             # read either way, so that the loop is branch-free
            dx[i] = 0 if y[i] <= 0 else d


def relu_forward(x):
    """``max(0, x)`` elementwise (book §5.5.1): 0 where x <= 0, else x (so a
    NaN stays NaN). Shapes: any -> the same, contiguous, x's dtype."""
    float_any(x, "x")
    x = np.asarray(x, order="C")
    y = np.empty(x.shape, dtype=x.dtype)
    if x.dtype == np.float32:
        _relu_forward[float](x.reshape(-1), y.reshape(-1), _num_threads)
    else:
        _relu_forward[double](x.reshape(-1), y.reshape(-1), _num_threads)
    return y


def relu_backward(y, dout):
    """Gradient of :func:`relu_forward` from its output y: 0 where y <= 0
    (exactly where x <= 0), else dout. Shapes: y, dout alike -> dx."""
    relu_grad_args(y, dout)
    y, dout = np.asarray(y, order="C"), np.asarray(dout, order="C")
    dx = np.empty(y.shape, dtype=y.dtype)
    if y.dtype == np.float32:
        _relu_backward[float](y.reshape(-1), dout.reshape(-1), dx.reshape(-1), _num_threads)
    else:
        _relu_backward[double](y.reshape(-1), dout.reshape(-1), dx.reshape(-1), _num_threads)
    return dx


# ------------------------------------------ local response normalisation ----
#
# y_c = x_c * s_c ** -beta,  s_c = k + alpha * (sum of x_j^2 over the n maps j
# around c), as reference.lrn_forward. Each map's window is summed on its
# own, in the reference's order: a NaN or a huge value in one map reaches
# only the maps whose window holds it.

# A thread normalises a block of positions (of the H*W in a map) across all
# C maps at once, keeping a few rows of values per map: up to LRN_ROW_VALUES
# positions times C maps, so that they stay in its cache, and whole maps
# where they fit, so that it reads each map's block as one long run.
LRN_ROW_VALUES = 1 << 16
LRN_MIN_BLOCK = 64
# An LRN does about n + 10 operations per value, square roots among them.
cdef Py_ssize_t LRN_WORK_PER_VALUE = 16


cdef inline floating _sqrt(floating v) noexcept nogil:
    return sqrtf(v) if floating is float else sqrt(v)


cdef inline void _window_squares(floating* acc, const floating* x, Py_ssize_t lo,
                                 Py_ssize_t hi, Py_ssize_t plane, Py_ssize_t m) noexcept nogil:
    """acc[p] = x[lo, p]^2 + ... + x[hi - 1, p]^2 for the first ``m``
    positions p of maps ``plane`` values apart. LANES positions at a time,
    their sums kept in registers over the window (not stored after each map)."""
    cdef floating part[LANES]
    cdef Py_ssize_t block, first, j, p
    for block in range(m // LANES):
        first = block * LANES
        for p in range(LANES):
            part[p] = x[lo * plane + first + p] * x[lo * plane + first + p]
        for j in range(lo + 1, hi):
            for p in range(LANES):
                part[p] += x[j * plane + first + p] * x[j * plane + first + p]
        for p in range(LANES):
            acc[first + p] = part[p]
    for p in range(m // LANES * LANES, m):
        acc[p] = x[lo * plane + p] * x[lo * plane + p]
        for j in range(lo + 1, hi):
            acc[p] += x[j * plane + p] * x[j * plane + p]


cdef inline void _window_sums(floating* acc, const floating* rows, Py_ssize_t lo,
                              Py_ssize_t hi, Py_ssize_t stride, Py_ssize_t m) noexcept nogil:
    """acc[p] = rows[lo, p] + ... + rows[hi - 1, p], rows ``stride`` apart;
    LANES positions at a time, as _window_squares."""
    cdef floating part[LANES]
    cdef Py_ssize_t block, first, j, p
    for block in range(m // LANES):
        first = block * LANES
        for p in range(LANES):
            part[p] = rows[lo * stride + first + p]
        for j in range(lo + 1, hi):
            for p in range(LANES):
                part[p] += rows[j * stride + first + p]
        for p in range(LANES):
            acc[first + p] = part[p]
    for p in range(m // LANES * LANES, m):
        acc[p] = rows[lo * stride + p]
        for j in range(lo + 1, hi):
            acc[p] += rows[j * stride + p]


cdef inline void _power(floating* power, floating* inverse, const floating* acc, floating k,
                        floating alpha, floating beta, Py_ssize_t m) noexcept nogil:
    """power[p] = s ** -beta and inverse[p] = 1 / s, s = k + alpha * acc[p]."""
    cdef Py_ssize_t p
    cdef floating inv
    if beta == 0.75:
        # The paper's beta as s ** -3/4 = sqrt(1/s * sqrt(1/s)), which the
        # compiler turns into vector instructions (a loop of pow calls it
        # cannot).
        for p in range(m):
            inv = 1 / (k + alpha * acc[p])
            inverse[p] = inv
            power[p] = _sqrt(inv * _sqrt(inv))
    else:
        for p in range(m):
            inverse[p] = 1 / (k + alpha * acc[p])
            power[p] = pow(k + alpha * acc[p], -beta)


cdef inline void _scale_row(floating* y, const floating* x, const floating* power,
                            Py_ssize_t m) noexcept nogil:
    """y[p] = x[p] * power[p]: one map's outputs."""
    cdef Py_ssize_t p
    for p in range(m):
        y[p] = x[p] * power[p]


cdef inline void _cross_terms(floating* cross, const floating* dout, const floating* x,
                              const floating* power, const floating* inverse,
                              Py_ssize_t m) noexcept nogil:
    """cross[p] = dout[p] * x[p] * s[p] ** -beta / s[p]: one map's share of
    the gradient of every map whose window holds it."""
    cdef Py_ssize_t p
    for p in range(m):
        cross[p] = dout[p] * x[p] * power[p] * inverse[p]


cdef inline void _lrn_grad_row(floating* dx, const floating* dout, const floating* x,
                               const floating* power, const floating* cross_sum,
                               floating two_alpha_beta, Py_ssize_t m) noexcept nogil:
    """dx[p] = dout[p] * power[p] - 2 alpha beta x[p] * cross_sum[p]: one map's gradient."""
    cdef Py_ssize_t p
    for p in range(m):
        dx[p] = dout[p] * power[p] - two_alpha_beta * x[p] * cross_sum[p]


cdef inline Py_ssize_t _window_start(Py_ssize_t c, Py_ssize_t half) noexcept nogil:
    return c - half if c >= half else 0


cdef inline Py_ssize_t _window_end(Py_ssize_t c, Py_ssize_t half, Py_ssize_t C) noexcept nogil:
    return c + half + 1 if c + half + 1 <= C else C


cdef void _lrn_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       floating[:, :, ::1] rows, Py_ssize_t size, floating k, floating alpha,
                       floating beta, int num_threads) noexcept:
    """x, y ``(N, C, H*W)``; ``rows`` per thread: three rows of a block's
    length B (a window sum, 1/s, s ** -beta)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2]
    cdef Py_ssize_t B = rows.shape[2], blocks = (P + B - 1) // B, half = size // 2
    cdef Py_ssize_t unit, n, first, m, c, p
    cdef floating* acc
    cdef floating* inverse
    cdef floating* power
    # One (image, block of positions) per iteration: it writes only its own
    # outputs, all C maps of them.
    for unit in prange(N * blocks, nogil=True, schedule='static',
                       num_threads=_threads_for(N * C * P * LRN_WORK_PER_VALUE, num_threads)):
        n = unit // blocks
        first = (unit % blocks) * B
        m = B if first + B <= P else P - first      # the last block may be short
        acc = &rows[threadid(), 0, 0]
        inverse = &rows[threadid(), 1, 0]
        power = &rows[threadid(), 2, 0]
        for c in range(C):
            _window_squares(acc, &x[n, 0, first], _window_start(c, half),
                            _window_end(c, half, C), P, m)
            _power(power, inverse, acc, k, alpha, beta, m)
            _scale_row(&y[n, c, first], &x[n, c, first], power, m)


cdef void _lrn_backward(const floating[:, :, ::1] x, const floating[:, :, ::1] dout,
                        floating[:, :, ::1] dx, floating[:, :, ::1] rows, Py_ssize_t size,
                        floating k, floating alpha, floating beta, int num_threads) noexcept:
    """x, dout, dx ``(N, C, H*W)``; ``rows`` per thread: 2C + 2 rows of a
    block's length B (each map's s ** -beta, each map's dout y / s, a window
    sum, 1/s)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2]
    cdef Py_ssize_t B = rows.shape[2], blocks = (P + B - 1) // B, half = size // 2
    cdef Py_ssize_t unit, n, first, m, c, p
    cdef floating two_alpha_beta = 2 * alpha * beta
    cdef floating* acc
    cdef floating* inverse
    cdef floating* power
    cdef floating* cross
    for unit in prange(N * blocks, nogil=True, schedule='static',
                       num_threads=_threads_for(N * C * P * LRN_WORK_PER_VALUE, num_threads)):
        n = unit // blocks
        first = (unit % blocks) * B
        m = B if first + B <= P else P - first      # the last block may be short
        power = &rows[threadid(), 0, 0]             # C rows
        cross = &rows[threadid(), C, 0]             # C rows
        acc = &rows[threadid(), 2 * C, 0]
        inverse = &rows[threadid(), 2 * C + 1, 0]
        # First every map's s ** -beta and its term dout * y / s ...
        for c in range(C):
            _window_squares(acc, &x[n, 0, first], _window_start(c, half),
                            _window_end(c, half, C), P, m)
            _power(&power[c * B], inverse, acc, k, alpha, beta, m)
            _cross_terms(&cross[c * B], &dout[n, c, first], &x[n, c, first],
                         &power[c * B], inverse, m)
        # ... then each map's gradient, with the window sum of those terms
        # (i lies in j's window exactly when j lies in i's).
        for c in range(C):
            _window_sums(acc, cross, _window_start(c, half), _window_end(c, half, C), B, m)
            _lrn_grad_row(&dx[n, c, first], &dout[n, c, first], &x[n, c, first],
                          &power[c * B], acc, two_alpha_beta, m)


def _lrn_block(channels, positions):
    return max(1, min(positions, max(LRN_MIN_BLOCK, LRN_ROW_VALUES // channels)))


def lrn_forward(x, n, k, alpha, beta):
    """Local response normalisation across maps (Krizhevsky et al. 2012 §3.3):

    ``y_c = x_c * s_c ** -beta``,  ``s_c = k + alpha * sum of x_j^2 over the
    n maps j around c``, in x's dtype.

    Shapes: x ``(N, C, H, W)`` (any strides) -> y ``(N, C, H, W)``, contiguous.
    """
    lrn_args(x, n)
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    y = np.empty(x.shape, dtype=x.dtype)
    threads = _num_threads
    rows = np.empty((threads, 3, _lrn_block(C, H * W)), dtype=x.dtype)
    shape = (N, C, H * W)
    if x.dtype == np.float32:
        _lrn_forward[float](x.reshape(shape), y.reshape(shape), rows, n, k, alpha, beta, threads)
    else:
        _lrn_forward[double](x.reshape(shape), y.reshape(shape), rows, n, k, alpha, beta, threads)
    return y


def lrn_backward(x, dout, n, k, alpha, beta):
    """Gradient of :func:`lrn_forward` with respect to x, from x itself (the
    window sums are recomputed rather than kept).

    Shapes: x, dout ``(N, C, H, W)`` (any strides) -> dx ``(N, C, H, W)``.
    """
    lrn_grad_args(x, dout, n)
    x, dout = np.ascontiguousarray(x), np.ascontiguousarray(dout)
    N, C, H, W = x.shape
    dx = np.empty(x.shape, dtype=x.dtype)
    threads = _num_threads
    rows = np.empty((threads, 2 * C + 2, _lrn_block(C, H * W)), dtype=x.dtype)
    shape = (N, C, H * W)
    if x.dtype == np.float32:
        _lrn_backward[float](x.reshape(shape), dout.reshape(shape), dx.reshape(shape), rows, n,
                             k, alpha, beta, threads)
    else:
        _lrn_backward[double](x.reshape(shape), dout.reshape(shape), dx.reshape(shape), rows, n,
                              k, alpha, beta, threads)
    return dx
