"""Weights and checkpoints in HDF5 (h5py). No pickle anywhere.

File layout (open it with ``h5dump`` or HDFView to see):

- ``/<layer>/<param>``: one dataset per parameter, e.g. ``/conv1/W``, in the
  parameter's own dtype, stored exactly, with HDF5's Fletcher-32 checksum so
  that flipped bytes are caught on reading (HDF5 has no checksum otherwise).
- root attributes: ``format = "zeronet-weights"``, ``format_version = 2``,
  ``zeronet_version``, ``dtype``, ``architecture`` (JSON from which
  :meth:`Sequential.from_config` rebuilds the network), ``metadata`` (JSON:
  training summary, anything the caller adds) and ``digest`` (below).
- checkpoints add a ``/_checkpoint`` group: optimizer slots as datasets,
  epoch, random-generator states, schedule state and history as attributes.

Every write goes to a new temporary file in the target's folder (a random
name, created exclusively, never through a symlink) that is renamed over the
target only when complete, so a crash never leaves a half-written file; a
later save to the same target removes what an interrupted one left behind.

The digest
----------
Fletcher-32 covers the datasets only. The root attribute ``digest`` holds
``"sha256:"`` and 64 hex digits: SHA-256 over one *record* for every
attribute and every dataset in the file, except the ``digest`` attribute
itself. Objects are taken in the order of their HDF5 paths (``"/"``,
``"/_checkpoint"``, ``"/c1"``, ``"/c1/W"``, ...: sorted by code point), and
each object's attributes in the order of their names:

- attribute ``NAME`` of the object at ``PATH``: the record's name is
  ``PATH@NAME`` (``/@architecture``), its data the text in UTF-8, or an
  integer in decimal ASCII (``/@format_version`` gives ``b"2"``);
- the dataset at ``PATH``: the record's name is ``PATH:DTYPE:SHAPE``, with
  NumPy's dtype string and the sizes joined by commas (``/c1/W:<f4:6,1,5,5``),
  its data the values in C order, little-endian.

A record enters SHA-256 as the name's length in bytes (8 bytes,
little-endian), the name in UTF-8, the data's length (8 bytes,
little-endian), the data. It is a checksum against damage and accidental
edits, not a signature: whoever edits a file can compute a new one. To check
a file with h5py and hashlib alone::

    import hashlib, h5py
    with h5py.File("lenet5.h5", "r") as f:
        paths = ["/"]
        f.visititems_links(lambda name, link: paths.append("/" + name))
        sha = hashlib.sha256()
        for path in sorted(paths):
            obj = f[path]
            records = [(f"{path}@{k}",
                        v.encode() if isinstance(v, str) else str(int(v)).encode())
                       for k, v in sorted(obj.attrs.items()) if (path, k) != ("/", "digest")]
            if isinstance(obj, h5py.Dataset):
                a = obj[()].astype(obj.dtype.newbyteorder("<"))
                records.append((f"{path}:{a.dtype.str}:{','.join(map(str, a.shape))}",
                                a.tobytes()))
            for name, data in records:
                name = name.encode()
                for part in (len(name).to_bytes(8, "little"), name,
                             len(data).to_bytes(8, "little"), data):
                    sha.update(part)
        assert f.attrs["digest"] == "sha256:" + sha.hexdigest()

Files written before the digest existed (``format_version = 1``) are
refused with a message that says how to add it once you trust the file:
``zeronet.io.upgrade(path)`` (every other check still runs; values and texts
are copied exactly).

Reading
-------
A weights file is input from a stranger. Before anything in it is trusted
or anything is allocated for it, :func:`load` checks, in this order, and
raises :class:`WeightsFileError` saying what is wrong:

1. the path is a regular file (a named pipe, a device or a folder is
   refused, and opening never waits); it is opened once, and everything is
   read from that very file, never from the path again;
2. it is HDF5 with ``format = "zeronet-weights"`` and ``format_version = 2``;
3. its structure: every link a plain (hard) link, so no external or soft
   links; every dataset stored inside the file, contiguous or chunked, with
   no filter but Fletcher-32 (no external storage, no virtual datasets, no
   compression), float32 or float64, with all its bytes present, and all
   datasets together no larger than the file; every attribute a single text
   (at most MAX_TEXT_LENGTH) or integer;
4. the digest;
5. the JSON texts: valid, nested at most MAX_JSON_DEPTH deep, numbers of at
   most 40 digits, the architecture's numbers finite; the architecture a
   list of at most MAX_LAYERS known layers with arguments of the right
   names and types, and the metadata a JSON object;
6. the parameter shapes the architecture implies (computed without building
   anything), at most MAX_PARAMETERS values in all, against the file's
   datasets, name by name;

and only then builds the network, reads the values (NaN and infinities are
refused) and copies them in. :func:`load_checkpoint` runs steps 1-4 and
checks the rest against the objects it restores into, which it changes only
once the whole file has passed.
"""
import contextlib
import copy
import hashlib
import hmac
import inspect
import json
import math
import os
import re
import secrets
import stat
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

import zeronet
from zeronet._validate import MAX_SIZE, float_dtype
from zeronet.layers import LAYERS, Layer
from zeronet.losses import LOSSES
from zeronet.network import Sequential

FORMAT = "zeronet-weights"
FORMAT_VERSION = 2      # 1: before the digest (read only by upgrade)
CHECKPOINT = "_checkpoint"
DIGEST = "digest"

# What a file may ask for: far above any network zeronet is for (AlexNet
# has 61 M parameters). A file must also hold every parameter it declares,
# so a load never takes more than a few times the file's own size.
MAX_PARAMETERS = 2**30          # values in all parameters together (4 GiB of float32)
MAX_LAYERS = 1000
MAX_TEXT_LENGTH = 64 << 20      # characters of one attribute's text
MAX_JSON_DEPTH = 64             # LeNet-5's architecture is 6 deep, its metadata 3
MAX_DATASET_DIMS = 8
# Constructor arguments a file may not set: they only shape the random
# initialisation, which loading overwrites, and a Generator is not JSON.
NOT_FROM_FILES = ("rng", "weight_init", "bias_init")


class WeightsFileError(ValueError):
    """A file that is not a readable zeronet weights file, or does not fit."""


# ---------------------------------------------------------------- writing ----

_CREATE_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _atomic_write(path, fill):
    """Call ``fill(h5file)`` on a new temporary file beside ``path``, add the
    digest, then rename it to ``path``.

    The temporary's name ``.NAME.PID.RANDOM.tmp`` cannot be guessed, and it
    is created exclusively (O_EXCL, O_NOFOLLOW): whatever is planted in the
    folder, the file written is a new one, and it is written and flushed
    through the one handle that created it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _CREATE_FLAGS, 0o666)
    try:
        with os.fdopen(fd, "w+b") as raw:
            with _hdf5_file(raw, "w") as f:
                fill(f)
                f.attrs[DIGEST] = _digest(f)
            raw.flush()
            os.fsync(raw.fileno())     # the data is on disk before the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    _remove_stale_temporaries(path)


def _hdf5_file(raw, mode):
    """An h5py File on the open file ``raw`` (never on a path, which could
    name another file by the time it is opened). On Linux through
    ``/proc/self/fd``, which reopens that very file with HDF5's own driver;
    elsewhere through h5py's driver for Python file objects (correct too,
    but it read a 134 MB file 6x slower)."""
    reopen = f"/proc/self/fd/{raw.fileno()}"
    if sys.platform.startswith("linux") and os.path.exists(reopen):
        return h5py.File(reopen, mode)
    return h5py.File(raw, mode)


def _fsync_folder(folder):
    """Flush ``folder`` itself to disk, which makes a rename inside it durable.

    On POSIX systems the rename is a change to the folder, not to the file,
    and the file's fsync does not cover it: after a power cut the folder
    could still list the old file. Windows cannot open a folder like this
    (OSError); it has no such step, so it is skipped there.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename stands all the same
    finally:
        os.close(fd)


# A save in progress takes seconds; a temporary this old is left over even
# if its process id has since been reused.
STALE_AFTER_SECONDS = 24 * 3600


def _remove_stale_temporaries(path):
    """Delete the temporaries that interrupted saves to ``path`` left behind
    (``.NAME.PID.tmp`` from older zeronet, ``.NAME.PID.RANDOM.tmp`` now):
    those of a process that is no longer running, or older than a day.
    One that cannot be removed is reported with a warning."""
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = (re.fullmatch(r"(\d+)(\.[0-9a-f]{16})?\.tmp", entry.name[len(prefix):])
                 if entry.name.startswith(prefix) else None)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if time.time() - info.st_mtime < STALE_AFTER_SECONDS and _running(int(match[1])):
                continue        # another save to the same target, in progress
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                raise PermissionError("it belongs to another user")
            os.unlink(entry.path)       # a symlink itself, never its target
        except FileNotFoundError:
            continue
        except OSError as exc:
            warnings.warn(f"{entry.path} looks left over from an interrupted save of {path}, "
                          f"but zeronet cannot remove it ({exc}); delete it yourself",
                          RuntimeWarning, stacklevel=4)


def _running(pid):
    """Whether process ``pid`` exists (on Windows, where a signal 0 would
    end it, every process counts as running: only age makes a temporary stale)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _write_network(f, network, metadata):
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    if _json_depth(metadata) > MAX_JSON_DEPTH:
        raise ValueError(f"metadata is nested more than {MAX_JSON_DEPTH} deep: no zeronet "
                         f"could load the file")
    params = network.parameters()
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["zeronet_version"] = zeronet.__version__
    f.attrs["dtype"] = ",".join(sorted({p.data.dtype.name for p in params}))
    f.attrs["architecture"] = json.dumps(network.config())
    f.attrs["metadata"] = json.dumps(metadata)
    for p in params:
        f.create_dataset(p.name, data=p.data, fletcher32=True)


def save(network, path, metadata=None):
    """Write ``network``'s architecture and weights to the HDF5 file ``path``.

    ``metadata``: a JSON-friendly dict stored with the weights (e.g. the
    training summary); read it back as ``load(path).metadata``.
    """
    _atomic_write(path, lambda f: _write_network(f, network, metadata))


# ----------------------------------------------------------------- digest ----

def _digest(f):
    """``"sha256:<hex>"`` of the open file ``f``: the rule is in the module docstring."""
    sha = hashlib.sha256()
    paths = ["/"]
    f.visititems_links(lambda name, link: paths.append("/" + name))
    for where in sorted(paths):
        obj = f[where]
        for name in sorted(obj.attrs):
            if (where, name) == ("/", DIGEST):
                continue
            value = obj.attrs[name]
            data = (value.encode("utf-8", "surrogateescape") if isinstance(value, str)
                    else str(int(value)).encode("ascii"))
            _record(sha, f"{where}@{name}", len(data))
            sha.update(data)
        if isinstance(obj, h5py.Dataset):
            _dataset_record(sha, where, obj)
    return "sha256:" + sha.hexdigest()


def _record(sha, name, data_length):
    """A record's head: its name and the length of the data that follows."""
    name = name.encode("utf-8", "surrogateescape")
    sha.update(len(name).to_bytes(8, "little") + name + data_length.to_bytes(8, "little"))


# The values enter the digest a block of rows at a time: the digest of a
# large file needs no second copy of it in memory.
DIGEST_BLOCK_BYTES = 1 << 24


def _dataset_record(sha, where, ds):
    little = ds.dtype.newbyteorder("<")
    shape = ds.shape
    nbytes = math.prod(shape) * ds.dtype.itemsize
    _record(sha, f"{where}:{little.str}:{','.join(map(str, shape))}", nbytes)
    if not shape or nbytes == 0:
        sha.update(ds[()].astype(little).tobytes() if nbytes else b"")
        return
    rows = max(1, DIGEST_BLOCK_BYTES // max(1, nbytes // shape[0]))
    for start in range(0, shape[0], rows):
        sha.update(np.ascontiguousarray(ds[start:start + rows], dtype=little).tobytes())


# ---------------------------------------------------------------- reading ----

# O_NONBLOCK: opening a named pipe would otherwise wait for a writer forever
# (it changes nothing for a regular file).
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _file_kind(mode):
    for test, kind in [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")]:
        if test(mode):
            return kind
    return "not a regular file"


@contextlib.contextmanager
def _open(path, versions=(FORMAT_VERSION,)):
    """Open ``path`` and run checks 1-4 of the module docstring; yields the
    h5py File. ``versions``: the format versions accepted (only
    :func:`upgrade` reads version 1, which has no digest to check)."""
    path = Path(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise FileNotFoundError(f"no weights file at {path}") from None
    except OSError as exc:
        raise WeightsFileError(f"{path} cannot be opened ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise WeightsFileError(f"{path} is {_file_kind(info.st_mode)}, not a regular file: "
                               f"zeronet reads weights from regular files only")
    with os.fdopen(fd, "rb") as raw:
        try:
            f = _hdf5_file(raw, "r")
        except OSError as exc:
            raise WeightsFileError(f"{path} is not a readable HDF5 file "
                                   f"(truncated or corrupt?): {exc}") from None
        with f:
            _check_file(f, path, info.st_size, versions)
            yield f


def _check_file(f, path, size, versions):
    """Checks 2-4 of the module docstring on the open file ``f``."""
    if "format" not in f.attrs or _attribute(f, "/", "format", path) != FORMAT:
        raise WeightsFileError(f"{path} is an HDF5 file but not a zeronet weights file "
                               f"(no format={FORMAT!r} attribute)")
    version = _attribute(f, "/", "format_version", path) if "format_version" in f.attrs else None
    if version == 1 and 1 not in versions:
        raise WeightsFileError(
            f"{path} was written before zeronet files carried a digest (format_version 1), "
            f"so it cannot be checked for damage or edits. If you trust where it came from, "
            f"add the digest once: python -c \"import zeronet.io; "
            f"zeronet.io.upgrade({str(path)!r})\"")
    if version not in versions:
        raise WeightsFileError(f"{path} has format_version {version!r}; this zeronet reads "
                               f"{' and '.join(map(str, versions))} (a newer zeronet's file?)")
    _check_structure(f, path, size)
    if version >= 2:
        if DIGEST not in f.attrs:
            raise WeightsFileError(f"{path} has no digest: damaged, or not written by zeronet")
        stored = _attribute(f, "/", DIGEST, path)
        if not isinstance(stored, str) or not hmac.compare_digest(stored, _digest(f)):
            raise WeightsFileError(f"{path} does not match its digest: it was damaged or "
                                   f"edited after zeronet wrote it")


def _check_structure(f, path, size):
    """Check 3 of the module docstring: links, datasets and attributes."""
    links = []
    f.visititems_links(lambda name, link: links.append(("/" + name, link)))
    objects, stored = [("/", f)], 0
    for where, link in links:
        if isinstance(link, h5py.ExternalLink):
            raise WeightsFileError(f"{path}: {where} is an external link to {link.path} in "
                                   f"{link.filename}; a zeronet file holds its own data only")
        if not isinstance(link, h5py.HardLink):
            target = f" to {link.path}" if isinstance(link, h5py.SoftLink) else ""
            raise WeightsFileError(f"{path}: {where} is a {type(link).__name__}{target}, not a "
                                   f"group or dataset of its own")
        obj = f[where]
        if isinstance(obj, h5py.Dataset):
            stored += _check_dataset(obj, where, path)
        elif not isinstance(obj, h5py.Group):
            raise WeightsFileError(f"{path}: {where} is a {type(obj).__name__}, not a group or "
                                   f"dataset")
        objects.append((where, obj))
    if stored > size:
        raise WeightsFileError(f"{path}: its datasets claim {stored} bytes, more than the "
                               f"file's {size}")
    for where, obj in objects:
        for name in obj.attrs:
            _attribute(obj, where, name, path)


def _check_dataset(ds, where, path):
    """Check one dataset before any of its values is read; returns the bytes
    it has stored in the file."""
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise WeightsFileError(f"{path}: {where} is a virtual dataset (its values would be "
                               f"read from other files)")
    if plist.get_external_count():
        other = plist.get_external(0)[0].decode("utf-8", "replace")
        raise WeightsFileError(f"{path}: {where} is stored outside the file (in {other!r}); "
                               f"a zeronet file holds its own data only")
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise WeightsFileError(f"{path}: {where} has a storage layout ({layout}) zeronet "
                               f"files do not use")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(code != h5py.h5z.FILTER_FLETCHER32 for code in filters):
        raise WeightsFileError(f"{path}: {where} is compressed or filtered (HDF5 filters "
                               f"{filters}); zeronet stores values plainly, with Fletcher-32")
    if ds.dtype.str not in ("<f4", "<f8"):
        raise WeightsFileError(f"{path}: {where} holds {ds.dtype}, not float32 or float64")
    shape = ds.shape
    if shape is None or not 1 <= len(shape) <= MAX_DATASET_DIMS or max(shape) > MAX_SIZE:
        raise WeightsFileError(f"{path}: {where} has shape {shape}, which no parameter has")
    needed, held = math.prod(shape) * ds.dtype.itemsize, ds.id.get_storage_size()
    if held < needed:
        raise WeightsFileError(f"{path}: {where} needs {needed} bytes for its shape {shape} "
                               f"but the file stores {held}")
    return held


def _attribute(obj, where, name, path):
    """The value of attribute ``name`` of ``obj``, checked before it is read:
    a single text (``str``, at most MAX_TEXT_LENGTH) or integer (``int``)."""
    aid = obj.attrs.get_id(name)
    text = h5py.check_string_dtype(aid.dtype)
    if aid.shape != () or (aid.dtype.kind not in "iu" and (text is None or text.length)):
        raise WeightsFileError(f"{path}: attribute {where}@{name} holds {aid.dtype} of shape "
                               f"{aid.shape}; a zeronet file's attributes are single texts "
                               f"and integers")
    value = obj.attrs[name]
    if aid.dtype.kind in "iu":
        return int(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise WeightsFileError(f"{path}: attribute {where}@{name} is not a text of at most "
                               f"{MAX_TEXT_LENGTH} characters")
    return value


def _json_attr(obj, name, path, *, finite=False):
    """The JSON text in attribute ``name`` of ``obj``, decoded and checked
    (see :func:`_parse_json`)."""
    if name not in obj.attrs:
        raise WeightsFileError(f"{path} has no {name!r} attribute: not a complete zeronet file")
    text = _attribute(obj, obj.name, name, path)
    if not isinstance(text, str):
        raise WeightsFileError(f"{path}: attribute {name!r} should hold JSON text, "
                               f"found an integer")
    return _parse_json(text, f"attribute {name!r}", path, finite)


def _parse_json(text, what, path, finite):
    """Decode JSON ``text``: nested at most MAX_JSON_DEPTH deep, numbers of
    at most 40 digits, and if ``finite``, no NaN or infinity."""
    def constant(word):     # NaN, Infinity, -Infinity
        if finite:
            raise ValueError(f"{word} is not a finite number")
        return float(word)

    def integer(digits):
        if len(digits) > 40:
            raise ValueError(f"the integer {digits[:20]}... has more than 40 digits")
        return int(digits)

    def real(digits):
        value = float(digits)
        if finite and not math.isfinite(value):
            raise ValueError(f"{digits} is not a finite number")
        return value

    try:
        value = json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except RecursionError:
        raise WeightsFileError(f"{path}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise WeightsFileError(f"{path}: {what} is not valid JSON ({exc})") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise WeightsFileError(f"{path}: {what} is nested more than {MAX_JSON_DEPTH} deep")
    return value


def _json_depth(value):
    """How deep lists and objects nest in ``value`` (0 for a number), counted
    without recursion, stopping once past MAX_JSON_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict) else
                    item if isinstance(item, (list, tuple)) else None)
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _planned_parameters(architecture, path):
    """Check 6 of the module docstring: the parameters ``{name: (shape,
    dtype)}`` that the architecture would build, found without building
    anything (dtype None where a layer does not say)."""
    if (not isinstance(architecture, dict) or not isinstance(architecture.get("layers"), list)
            or not set(architecture) <= {"layers", "loss"}):
        raise WeightsFileError(f"{path}: the architecture must be a JSON object with a list "
                               f"of \"layers\" (and optionally a \"loss\")")
    specs = architecture["layers"]
    if len(specs) > MAX_LAYERS:
        raise WeightsFileError(f"{path}: the architecture has {len(specs)} layers, more than "
                               f"the {MAX_LAYERS} zeronet loads")
    planned = {}
    for i, spec in enumerate(specs):
        if (not isinstance(spec, dict) or set(spec) != {"name", "type", "config"}
                or not isinstance(spec["name"], str) or not isinstance(spec["type"], str)
                or not isinstance(spec["config"], dict)):
            raise WeightsFileError(f"{path}: layer {i} of the architecture must be an object "
                                   f"with a text \"name\" and \"type\" and a \"config\" object")
        name, kind = spec["name"], spec["type"]
        if kind not in LAYERS:
            raise WeightsFileError(f"{path}: unknown layer type {kind!r} in the architecture")
        cls = LAYERS[kind]
        args = _constructor_args(cls, spec["config"], f"layer {name!r}", path)
        try:
            shapes = cls.parameter_shapes(args)
            dtype = float_dtype(args["dtype"]) if shapes and "dtype" in args else None
        except (TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: layer {name!r} ({kind}) of the architecture: "
                                   f"{exc}") from None
        planned.update({f"{name}/{key}": (tuple(shape), dtype) for key, shape in shapes.items()})
    total = sum(math.prod(shape) for shape, _ in planned.values())
    if total > MAX_PARAMETERS:
        raise WeightsFileError(f"{path}: the architecture asks for {total} parameter values, "
                               f"more than the {MAX_PARAMETERS} zeronet loads")
    loss = architecture.get("loss")
    if loss is not None:
        if (not isinstance(loss, dict) or set(loss) != {"type", "config"}
                or not isinstance(loss["config"], dict) or loss["type"] not in LOSSES):
            raise WeightsFileError(f"{path}: the architecture's loss must be an object with "
                                   f"the \"type\" of one of {sorted(LOSSES)} and a \"config\"")
        _constructor_args(LOSSES[loss["type"]], loss["config"], "the loss", path)
    return planned


def _constructor_args(cls, config, what, path):
    """``config`` bound to ``cls``'s constructor, defaults filled in."""
    signature = inspect.signature(cls)
    refused = sorted(set(config) & set(NOT_FROM_FILES))
    if refused:
        raise WeightsFileError(f"{path}: {what} sets {refused}, which a file may not set")
    try:
        bound = signature.bind(**config)
    except TypeError as exc:
        raise WeightsFileError(f"{path}: {what} does not fit {cls.__name__}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _dataset_names(group, skip=CHECKPOINT):
    names = []
    group.visititems(lambda name, obj: names.append(name)
                     if isinstance(obj, h5py.Dataset) and not name.startswith(skip) else None)
    return names


def _read_checked(f, expected, path):
    """Read the parameters ``expected`` (``{name: (shape, dtype)}``, dtype
    None: any) from ``f`` once the file's datasets are known to be exactly
    those; refuses NaN and infinities.

    Returns ``{name: array}`` without touching any network: the caller
    copies the values in with :func:`_assign` once the rest of the file has
    been checked too, so a bad file leaves the network as it was.
    """
    stored = set(_dataset_names(f))
    missing, extra = sorted(set(expected) - stored), sorted(stored - set(expected))
    if missing or extra:
        raise WeightsFileError(f"{path} does not fit the architecture: "
                               f"missing parameters {missing}, unexpected datasets {extra}"
                               f"{_undeclared_hint(f, extra)}")
    for name, (shape, dtype) in expected.items():
        ds = f[name]
        if ds.shape != shape or (dtype is not None and ds.dtype != dtype):
            needs = f"{dtype or ''}{shape}"
            raise WeightsFileError(f"{path}: parameter {name} is {ds.dtype}{ds.shape} in the "
                                   f"file but the network needs {needs}")
    values = {}
    for name in expected:
        values[name] = f[name][()]
        if not np.all(np.isfinite(values[name])):
            raise WeightsFileError(f"{path}: parameter {name} holds NaN or infinite values")
    return values


def _undeclared_hint(f, extra):
    """For datasets of a layer type that declares no parameter shapes (a
    layer of your own): how to make it loadable."""
    try:        # the architecture was checked already; anything odd: no hint
        specs = _json_attr(f, "architecture", "", finite=True)["layers"]
        kinds = {spec["name"]: spec["type"] for spec in specs}
    except (KeyError, TypeError, ValueError):
        return ""
    undeclared = sorted({kinds[name.split("/")[0]] for name in extra
                         if kinds.get(name.split("/")[0]) in LAYERS
                         and LAYERS[kinds[name.split("/")[0]]].parameter_shapes.__func__
                         is Layer.parameter_shapes.__func__})
    return (f" (layer types {undeclared} declare no parameters: give them a parameter_shapes "
            f"method)" if undeclared else "")


def _shapes_of(network):
    return {p.name: (p.data.shape, p.data.dtype) for p in network.parameters()}


def _assign(network, values):
    """Copy the arrays from :func:`_read_checked` into the network's parameters."""
    for p in network.parameters():
        p.data[...] = values[p.name]


def _raised_by_h5py(exc):
    """True if ``exc`` was raised inside h5py (its innermost frame is h5py's)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "").startswith("h5py")


@contextlib.contextmanager
def _reading(path):
    """Turn the many ways a damaged file shows up into one clear error.

    Only errors that come from reading the file are turned into
    :class:`WeightsFileError`: OSError (h5py's usual report of a bad read),
    RuntimeError and KeyError raised inside h5py (a damaged index, a missing
    attribute or dataset). The same types raised by our own code are bugs,
    and a missing file is not a damaged one: those pass through unchanged.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, KeyError) as exc:
        if isinstance(exc, (RuntimeError, KeyError)) and not _raised_by_h5py(exc):
            raise
        raise WeightsFileError(f"{path} is damaged or not a complete zeronet file "
                               f"({type(exc).__name__}: {exc})") from exc


def load(path):
    """Rebuild the network stored in ``path`` and load its weights.

    Returns a :class:`~zeronet.network.Sequential` with a ``metadata`` dict.
    Raises :class:`WeightsFileError` for a non-zeronet, corrupt, edited,
    hostile or inconsistent file (see the module docstring for every check),
    FileNotFoundError if there is no file.
    """
    with _reading(path), _open(path) as f:
        return _load_network(f, path)


def _load_network(f, path):
    """Checks 5-6 of the module docstring on an open file, then the network."""
    architecture = _json_attr(f, "architecture", path, finite=True)
    planned = _planned_parameters(architecture, path)
    metadata = _json_attr(f, "metadata", path) if "metadata" in f.attrs else {}
    if not isinstance(metadata, dict):
        raise WeightsFileError(f"{path}: the metadata must be a JSON object, "
                               f"found {type(metadata).__name__}")
    values = _read_checked(f, planned, path)
    try:
        network = Sequential.from_config(architecture)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise WeightsFileError(f"{path}: cannot rebuild the architecture: {exc}") from None
    built = _shapes_of(network)
    if {name: shape for name, (shape, _) in built.items()} != {
            name: shape for name, (shape, _) in planned.items()} or any(
            dtype not in (None, built[name][1]) for name, (_, dtype) in planned.items()):
        raise WeightsFileError(f"{path}: the network built from the architecture has other "
                               f"parameters than its layers' parameter_shapes declare")
    _assign(network, values)
    network.metadata = metadata
    return network


def upgrade(path, out=None):
    """Add the digest to a file written before zeronet files carried one
    (``format_version`` 1), once you have decided to trust it.

    Every check of :func:`load` except the digest runs first (the network
    must rebuild and its weights fit); then every attribute and dataset is
    copied exactly, with ``format_version = 2`` and the digest, to ``out``
    (default: ``path`` itself, replaced atomically). A file that has its
    digest already is verified and left as it is. Returns the path written.
    """
    with _reading(path), _open(path, versions=(1, FORMAT_VERSION)) as f:
        _load_network(f, path)
        if int(f.attrs["format_version"]) == FORMAT_VERSION and out is None:
            return Path(path)
        content = []
        f.visititems_links(lambda name, link: content.append("/" + name))
        content = [(where, dict(f[where].attrs),
                    f[where][()] if isinstance(f[where], h5py.Dataset) else None)
                   for where in ["/"] + sorted(content)]

    def fill(g):
        for where, attrs, data in content:
            obj = (g if where == "/" else g.require_group(where) if data is None
                   else g.create_dataset(where, data=data, fletcher32=True))
            for name, value in attrs.items():
                if (where, name) != ("/", DIGEST):
                    obj.attrs[name] = value
        g.attrs["format_version"] = FORMAT_VERSION

    target = Path(out) if out is not None else Path(path)
    _atomic_write(target, fill)
    return target


# ------------------------------------------------------------ checkpoints ----

def save_checkpoint(path, network, optimizer, schedule, *, epoch, rng, history, metadata=None):
    """Everything needed to resume training after ``epoch`` (0-based) ended.

    ``rng`` is the trainer's generator; the network's own generators
    (Dropout) are saved too.
    """
    def fill(f):
        _write_network(f, network, metadata)
        ck = f.create_group(CHECKPOINT)
        ck.attrs["epoch"] = epoch
        ck.attrs["rng"] = json.dumps(rng.bit_generator.state)
        ck.attrs["layer_rngs"] = json.dumps(
            {k: g.bit_generator.state for k, g in network.generators().items()})
        ck.attrs["schedule"] = json.dumps(schedule.state_dict() if schedule else {})
        ck.attrs["history"] = json.dumps(history)
        state = optimizer.state_dict()
        ck.attrs["optimizer"] = json.dumps({"type": type(optimizer).__name__,
                                            "lr": state["lr"], "t": state["t"]})
        for key, value in state["slots"].items():
            ck.create_dataset(f"optimizer/{key}", data=value, fletcher32=True)
    _atomic_write(path, fill)


def _epoch(ck, path):
    """The 0-based epoch a checkpoint group ``ck`` was written after."""
    try:
        return int(ck.attrs["epoch"])
    except (TypeError, ValueError) as exc:
        raise WeightsFileError(f"{path}: the epoch is not a number ({exc})") from None


def checkpoint_epoch(path):
    """The 0-based epoch after which the training checkpoint ``path`` was
    written, once the file has passed the checks of :func:`load` that do not
    depend on the network (its path, structure and digest). Raises
    :class:`WeightsFileError` for a file that holds no checkpoint."""
    with _reading(path), _open(path) as f:
        if CHECKPOINT not in f or not isinstance(f[CHECKPOINT], h5py.Group):
            raise WeightsFileError(f"{path} holds weights but no training checkpoint's epoch")
        return _epoch(f[CHECKPOINT], path)


def load_checkpoint(path, network, optimizer, schedule, rng):
    """Restore a checkpoint into existing objects; returns ``(epoch, history)``.

    The network must have the architecture the checkpoint was written from,
    and the optimizer the same type as the one saved. The file passes the
    checks of :func:`load` that do not depend on the network (its path,
    structure and digest), then the whole file is read and checked before
    anything is restored, so if it raises :class:`WeightsFileError` the
    network, optimizer, schedule and generators are exactly as they were.
    """
    with _reading(path), _open(path) as f:
        if CHECKPOINT not in f or not isinstance(f[CHECKPOINT], h5py.Group):
            raise WeightsFileError(f"{path} holds weights but no training checkpoint")
        if _json_attr(f, "architecture", path, finite=True) != network.config():
            raise WeightsFileError(f"{path} was written for a different architecture")
        weights = _read_checked(f, _shapes_of(network), path)
        ck = f[CHECKPOINT]
        lr, t, slots = _read_optimizer(ck, network, optimizer, path)
        schedule_state = _json_attr(ck, "schedule", path)
        if schedule is not None:
            # Loading into a copy checks the state without touching the schedule.
            try:
                copy.deepcopy(schedule).load_state_dict(schedule_state)
            except (KeyError, TypeError, ValueError) as exc:
                raise WeightsFileError(f"{path}: the schedule state does not fit "
                                       f"{type(schedule).__name__} ({exc!r})") from None
        rng_state = _checked_rng_state(_json_attr(ck, "rng", path), rng, "the trainer's "
                                       "generator", path)
        generators = network.generators()
        layer_states = _json_attr(ck, "layer_rngs", path)
        if not isinstance(layer_states, dict) or layer_states.keys() != generators.keys():
            stored = sorted(layer_states) if isinstance(layer_states, dict) else layer_states
            raise WeightsFileError(f"{path}: holds generator states for {stored}, but the "
                                   f"network's generators are {sorted(generators)}")
        for key, generator in generators.items():
            _checked_rng_state(layer_states[key], generator, f"generator {key}", path)
        epoch = _epoch(ck, path)
        history = _json_attr(ck, "history", path)

    # Everything checked: from here on nothing can fail halfway.
    _assign(network, weights)
    optimizer.load_state_dict({"lr": lr, "t": t, "slots": slots})
    if schedule is not None:
        schedule.load_state_dict(schedule_state)
    rng.bit_generator.state = rng_state
    for key, generator in generators.items():
        generator.bit_generator.state = layer_states[key]
    return epoch, history


def _read_optimizer(ck, network, optimizer, path):
    """Read and check the optimizer state in the checkpoint group ``ck``.

    Returns ``(lr, t, slots)``. Each slot (``"kind/layer/param"``) must
    belong to one of the network's parameters and have its shape and dtype.
    """
    opt = _json_attr(ck, "optimizer", path)
    stored_type = opt.get("type") if isinstance(opt, dict) else None
    if stored_type != type(optimizer).__name__:
        raise WeightsFileError(f"{path} holds {stored_type or 'unnamed optimizer'} state, not "
                               f"{type(optimizer).__name__}")
    try:
        lr, t = float(opt["lr"]), int(opt["t"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsFileError(f"{path}: the optimizer's lr and t are missing or not "
                               f"numbers ({exc!r})") from None
    params = {p.name: p for p in network.parameters()}
    slots = {}
    if "optimizer" in ck:
        if not isinstance(ck["optimizer"], h5py.Group):
            raise WeightsFileError(f"{path}: {CHECKPOINT}/optimizer is not a group of slots")
        for key in _dataset_names(ck["optimizer"], skip="\0"):
            p = params.get(key.partition("/")[2])
            ds = ck["optimizer"][key]       # checked before its values are read
            if p is None or ds.shape != p.data.shape or ds.dtype != p.data.dtype:
                raise WeightsFileError(f"{path}: optimizer slot {key} "
                                       f"({ds.dtype}{ds.shape}) fits no parameter "
                                       "of the network")
            slots[key] = ds[()]
    return lr, t, slots


def _checked_rng_state(state, generator, what, path):
    """Return ``state`` once it is known to fit ``generator``'s bit generator.

    Setting it on a fresh bit generator of the same kind runs NumPy's own
    check without changing ``generator``.
    """
    try:
        type(generator.bit_generator)().state = state
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsFileError(f"{path}: the saved state of {what} does not fit its "
                               f"{type(generator.bit_generator).__name__} ({exc!r})") from None
    return state
