"""Weights and checkpoints in HDF5 (h5py). No pickle anywhere.

File layout (open it with ``h5dump`` or HDFView to see):

- ``/<layer>/<param>``: one dataset per parameter, e.g. ``/conv1/W``, in the
  parameter's own dtype, stored exactly, with HDF5's Fletcher-32 checksum so
  that flipped bytes are caught on reading (HDF5 has no checksum otherwise).
- root attributes: ``format = "zeronet-weights"``, ``format_version``,
  ``zeronet_version``, ``dtype``, ``architecture`` (JSON from which
  :meth:`Sequential.from_config` rebuilds the network) and ``metadata``
  (JSON: training summary, anything the caller adds).
- checkpoints add a ``/_checkpoint`` group: optimizer slots as datasets,
  epoch, random-generator states, schedule state and history as attributes.

Every write goes to a temporary file in the same folder that is renamed over
the target only when complete, so a crash never leaves a half-written file.
Every read checks the whole file before it changes anything, so a bad file
never leaves a half-loaded network or optimizer.
"""
import contextlib
import copy
import json
import os
from pathlib import Path

import h5py
import numpy as np

import zeronet
from zeronet.network import Sequential

FORMAT = "zeronet-weights"
FORMAT_VERSION = 1
CHECKPOINT = "_checkpoint"


class WeightsFileError(ValueError):
    """A file that is not a readable zeronet weights file, or does not fit."""


def _atomic_write(path, fill):
    """Call ``fill(h5file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())       # the data is on disk before the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


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


def _write_network(f, network, metadata):
    params = network.parameters()
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["zeronet_version"] = zeronet.__version__
    f.attrs["dtype"] = ",".join(sorted({p.data.dtype.name for p in params}))
    f.attrs["architecture"] = json.dumps(network.config())
    f.attrs["metadata"] = json.dumps(metadata or {})
    for p in params:
        f.create_dataset(p.name, data=p.data, fletcher32=True)


def save(network, path, metadata=None):
    """Write ``network``'s architecture and weights to the HDF5 file ``path``.

    ``metadata``: a JSON-friendly dict stored with the weights (e.g. the
    training summary); read it back as ``load(path).metadata``.
    """
    _atomic_write(path, lambda f: _write_network(f, network, metadata))


def _open(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"{path} is not a readable HDF5 file "
                               f"(truncated or corrupt?): {exc}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise WeightsFileError(f"{path} is an HDF5 file but not a zeronet weights file "
                               f"(no format={FORMAT!r} attribute)")
    return f


def _dataset_names(group, skip=CHECKPOINT):
    names = []
    group.visititems(lambda name, obj: names.append(name)
                     if isinstance(obj, h5py.Dataset) and not name.startswith(skip) else None)
    return names


def _read_checked(f, network, path):
    """Read every parameter of ``network`` from ``f``, checking the fit.

    Returns ``{name: array}`` without touching the network: the caller copies
    the values in with :func:`_assign` once the rest of the file has been
    checked too, so a bad file leaves the network as it was.
    """
    params = {p.name: p for p in network.parameters()}
    stored = set(_dataset_names(f))
    missing, extra = sorted(set(params) - stored), sorted(stored - set(params))
    if missing or extra:
        raise WeightsFileError(f"{path} does not fit the architecture: "
                               f"missing parameters {missing}, unexpected datasets {extra}")
    values = {}
    for name, p in params.items():
        ds = f[name]
        if ds.shape != p.data.shape or ds.dtype != p.data.dtype:
            raise WeightsFileError(f"{path}: parameter {name} is {ds.dtype}{ds.shape} in the "
                                   f"file but the network needs {p.data.dtype}{p.data.shape}")
        values[name] = ds[()]
        if not np.all(np.isfinite(values[name])):
            raise WeightsFileError(f"{path}: parameter {name} holds NaN or infinite values")
    return values


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
    attribute or dataset) and JSON that does not decode. The same types raised
    by our own code are bugs, and a missing file is not a damaged one: those
    pass through unchanged.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
        if isinstance(exc, (RuntimeError, KeyError)) and not _raised_by_h5py(exc):
            raise
        raise WeightsFileError(f"{path} is damaged or not a complete zeronet file "
                               f"({type(exc).__name__}: {exc})") from exc


def _json_attr(obj, name, path):
    """The JSON text in attribute ``name`` of ``obj``, decoded.

    A missing attribute is h5py's KeyError and bad JSON a JSONDecodeError,
    both turned into WeightsFileError by :func:`_reading`; an attribute that is
    not text at all (json.loads would raise TypeError) is checked here.
    """
    text = obj.attrs[name]
    if not isinstance(text, (str, bytes)):
        raise WeightsFileError(f"{path}: attribute {name!r} should hold JSON text, "
                               f"found {type(text).__name__}")
    return json.loads(text)


def load(path):
    """Rebuild the network stored in ``path`` and load its weights.

    Returns a :class:`~zeronet.network.Sequential` with a ``metadata`` dict.
    Raises :class:`WeightsFileError` for a non-zeronet, corrupt or
    inconsistent file.
    """
    with _reading(path), _open(path) as f:
        try:
            network = Sequential.from_config(json.loads(f.attrs["architecture"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: cannot rebuild the architecture: {exc}") from None
        _assign(network, _read_checked(f, network, path))  # a fresh network: nothing to protect
        network.metadata = json.loads(f.attrs.get("metadata", "{}"))
    return network


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


def load_checkpoint(path, network, optimizer, schedule, rng):
    """Restore a checkpoint into existing objects; returns ``(epoch, history)``.

    The network must have the architecture the checkpoint was written from,
    and the optimizer the same type as the one saved. The whole file is read and checked before
    anything is restored, so if it raises :class:`WeightsFileError` the
    network, optimizer, schedule and generators are exactly as they were.
    """
    with _reading(path), _open(path) as f:
        if CHECKPOINT not in f:
            raise WeightsFileError(f"{path} holds weights but no training checkpoint")
        if _json_attr(f, "architecture", path) != network.config():
            raise WeightsFileError(f"{path} was written for a different architecture")
        weights = _read_checked(f, network, path)
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
        try:
            epoch = int(ck.attrs["epoch"])
        except (TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: the epoch is not a number ({exc})") from None
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
        for key in _dataset_names(ck["optimizer"], skip="\0"):
            p = params.get(key.partition("/")[2])
            value = ck["optimizer"][key][()]
            if p is None or value.shape != p.data.shape or value.dtype != p.data.dtype:
                raise WeightsFileError(f"{path}: optimizer slot {key} "
                                       f"({value.dtype}{value.shape}) fits no parameter "
                                       "of the network")
            slots[key] = value
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
