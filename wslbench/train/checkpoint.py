"""Checkpoints: written atomically (temp file + rename), read back without running code.

A checkpoint holds only tensors and plain Python values (state dicts, numbers, strings, lists,
the RNG states as plain lists), so every read uses ``torch.load(weights_only=True)``: a file
whose pickle asks for any other Python object (a shared ``best.pt`` could carry one that runs a
command when unpickled) is refused with one message, and nothing from it is executed.
:func:`load_checkpoint` is the one entry point for every reader (eval, --resume, --from).

Checkpoints of earlier versions pickled numpy's RNG state; ``wslbench checkpoint convert``
rewrites such a file in the safe format (it admits the numpy array globals and nothing else).
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from wslbench.errors import WslbenchError
from wslbench.io import atomic_save
from wslbench.train.seeding import plain_rng_state

LAST = "last.pt"
BEST = "best.pt"

#: values a weights-only load rebuilds without importing anything
_PLAIN_SCALARS = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)


def plain_state(obj, where: str = "checkpoint"):
    """``obj`` with numpy scalars turned into Python numbers (exact); TypeError for anything a
    weights-only load could not rebuild, so a checkpoint is never written that cannot be read."""
    if isinstance(obj, torch.Tensor):
        return obj
    if type(obj) in _PLAIN_SCALARS:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((k, plain_state(v, f"{where}[{k!r}]")) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # nn.Module.state_dict() keeps its version info here
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: checkpoints hold only tensors "
                    "and plain Python values so that they load with torch.load(weights_only=True)")


def save_checkpoint(path: str | Path, state: dict) -> None:
    state = plain_state(state)
    atomic_save(path, lambda buf: torch.save(state, buf))


_NO_GLOBALS = "an object a weights-only load does not allow"


def _needed_globals(path: Path, exc: Exception) -> str:
    """The Python objects the file's pickle asks for, read without unpickling it."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the error names the first one
        names = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))[:1]
    return ", ".join(names) or _NO_GLOBALS


def _refusal(path: Path, exc: Exception) -> str:
    return (
        f"refusing to read checkpoint {path}: its pickle asks for Python objects ({_needed_globals(path, exc)}) "
        "that torch.load(weights_only=True) does not create, because unpickling them can run arbitrary code; "
        "nothing from the file was executed. If it is a checkpoint written by an earlier wslbench and you "
        f"trust where it came from, rewrite it in the safe format with: wslbench checkpoint convert {path}"
    )


def _torch_format(path: Path) -> bool:
    """Whether the file is laid out as torch.save writes: a zip archive with one top folder, or
    (old format) a pickle stream. Anything else (NUL bytes, text, an empty file) is not a
    checkpoint at all, which is worth saying instead of a weights-only refusal."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            return bool(names) and all("/" in n for n in names) and any(n.endswith("data.pkl") for n in names)
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"  # pickle PROTO opcode: torch's legacy format starts with it
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The one way wslbench reads a checkpoint: weights-only, one clear message otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WslbenchError(f"checkpoint not found: {path}")
    if not _torch_format(path):
        raise WslbenchError(f"{path} is not a torch checkpoint (neither a torch.save archive nor a pickle; "
                            f"{path.stat().st_size} bytes): the file is damaged or was never a checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc) and _needed_globals(path, exc) == _NO_GLOBALS:
            raise WslbenchError(f"{path} is not a readable torch checkpoint: its pickle stream is damaged or "
                                "truncated") from None
        raise WslbenchError(_refusal(path, exc)) from None
    except Exception as exc:
        raise WslbenchError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise WslbenchError(f"{path} is not a wslbench checkpoint (it holds a {type(state).__name__}, not a dict)")
    return state


def _shape(v) -> str:
    return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__


def _origin(ck: dict) -> str:
    """What run wrote ``ck``, when it says (interrupt and epoch checkpoints carry their config)."""
    cfg = ck.get("config")
    if not isinstance(cfg, dict) or not cfg.get("method"):
        return ""
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone = f", backbone {model['backbone']!r}" if model.get("backbone") else ""
    return f"it is a checkpoint of {cfg['method']!r}{backbone}; "


def method_weights(ck: dict, path: str | Path) -> dict:
    """The checkpoint's ``method`` state dict; one message when there is none."""
    state = ck.get("method")
    if not isinstance(state, dict):
        raise WslbenchError(f"{path} is not a wslbench checkpoint of a method: it has no 'method' weights "
                            f"(its keys: {', '.join(map(str, ck)) or 'none'})")
    return state


def weights_mismatch(expected: dict, state: dict) -> str | None:
    """How ``state`` differs from a module's own ``expected`` state dict (missing or unexpected
    keys, the first differing shape), or None when it fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]!r})")
        return ", ".join(parts)
    for k, v in expected.items():
        w = state[k]
        if isinstance(v, torch.Tensor) != isinstance(w, torch.Tensor) or (
                isinstance(v, torch.Tensor) and v.shape != w.shape):
            return f"shapes differ at key {k!r}: checkpoint {_shape(w)} vs this run {_shape(v)}"
    return None


def load_method_weights(module: torch.nn.Module, ck: dict, path: str | Path, this: str) -> None:
    """Load ``ck``'s method weights into ``module`` (the run ``this``, e.g. "'cam-avg', backbone
    'resnet50'"), checked first: a checkpoint of another method or backbone, or without weights,
    is one message naming the file and the first difference, never a torch traceback."""
    problem = load_checked(module, method_weights(ck, path))
    if problem is not None:
        raise WslbenchError(f"{path} does not fit this run ({this}): {_origin(ck)}{problem}")


def load_checked(module: torch.nn.Module, state: dict) -> str | None:
    """Load ``state`` into ``module`` when it fits (None); else why not, and nothing is loaded."""
    problem = weights_mismatch(module.state_dict(), state)
    if problem is not None:
        return problem
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def _legacy_globals() -> list:
    """What checkpoints of earlier versions pickled besides plain values: numpy's RNG state
    (a uint32 array) and, possibly, numpy scalars. Listed under both numpy module spellings."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        out += [(core._reconstruct, f"{mod}._reconstruct"), (core.scalar, f"{mod}.scalar")]
    out += [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.int32)]
    return out


def convert_checkpoint(src: str | Path, dst: str | Path | None = None) -> bool:
    """Rewrite a checkpoint of an earlier version (numpy RNG state, numpy scalars) in the safe
    format, atomically, at ``dst`` (default: in place). Only numpy's array and scalar globals are
    admitted: a file asking for anything else is refused and nothing from it is executed.
    Returns False when ``src`` already was in the safe format (``dst`` is then a copy of it)."""
    src = Path(src)
    dst = Path(dst) if dst is not None else src
    if not src.is_file():
        raise WslbenchError(f"checkpoint not found: {src}")
    if not _torch_format(src):
        raise WslbenchError(f"{src} is not a torch checkpoint (neither a torch.save archive nor a pickle): "
                            "nothing to convert")
    try:
        torch.load(src, map_location="cpu", weights_only=True)
        already = True
    except pickle.UnpicklingError:
        already = False
    except Exception as exc:
        raise WslbenchError(f"cannot read checkpoint {src}: {type(exc).__name__}: {exc}") from exc
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WslbenchError(
            f"refusing to convert {src}: besides numpy arrays its pickle asks for Python objects "
            f"({_needed_globals(src, Exception())}) that no wslbench checkpoint holds; it was not written by "
            "wslbench and nothing from it was executed"
        ) from None
    if not isinstance(state, dict):
        raise WslbenchError(f"{src} is not a wslbench checkpoint (it holds a {type(state).__name__}, not a dict)")
    if isinstance(state.get("rng"), dict):
        state["rng"] = plain_rng_state(state["rng"])
    state = _arrays_to_tensors(state)
    save_checkpoint(dst, state)
    return not already


def _arrays_to_tensors(obj):
    """numpy arrays left outside the RNG state (none in wslbench's own checkpoints) as tensors."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((k, _arrays_to_tensors(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_arrays_to_tensors(v) for v in obj)
    return obj
