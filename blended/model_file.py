"""The one reader of model files: tensors out, never code.

A model file is something a user downloaded from anywhere and picked in a dropdown, so reading
it must not execute anything from it. Python pickles can name any callable, and TorchScript
archives (OpenAI ships CLIP that way) carry scripted ``__setstate__`` methods that
``torch.jit.load`` runs. So:

- ``.safetensors`` is read by ``safetensors`` (a JSON header and raw bytes; nothing to run).
- A ``torch.save`` pickle goes through ``torch.load(weights_only=True)``, torch's maintained
  allow-list unpickler.
- A TorchScript archive is never handed to ``torch.jit``: its ``data.pkl`` is unpickled here by an
  unpickler that knows only tensors, storages and plain containers. Every scripted class becomes
  an inert record of its attributes; its code files are never read, let alone run.
- Whatever refuses a file, the user is told in plain words what was refused and why, whatever
  torch's wording of the day, by naming the first thing in the pickle that is not data.

Every loader (diffusion model, CLIP, LPIPS) reads through ``read_model_file`` and unwraps with
``flat_state_dict``, so the rules and the messages are the same everywhere (docs/DESIGN.md,
"Loading rules").
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from .errors import CheckpointError

SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Globals a plain tensor checkpoint needs; anything else in a pickle is an object, i.e. code.
_DATA_GLOBALS = re.compile(
    r"^(torch\._utils\._rebuild_\w+|torch\.\w+Storage|torch\.storage\.UntypedStorage|torch\.Size|"
    r"torch\.(float|half|bfloat16|double|int|long|short|uint8|int8|bool)\w*|torch\.device|torch\.dtype|"
    r"collections\.OrderedDict|torch\.jit\._pickle\.\w+|__torch__\..+)$"
)


def read_model_file(path, what: str, expected: str) -> tuple[object, dict[str, str]]:
    """``(contents, metadata)`` of a model file; metadata is non-empty only for .safetensors.

    ``what`` names the file's role in messages ("CLIP file"); ``expected`` is a sentence saying
    which file is wanted and where it goes.
    """
    if path is None or str(path).strip() == "":
        raise CheckpointError(f"No {what} was given. {expected}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: '{path}' does not exist. {expected}")
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a model file. {expected}")
    if path.suffix.lower() not in SUFFIXES:
        raise CheckpointError(
            f"'{path.name}' has the extension '{path.suffix}', which is not a model file format this "
            f"loader reads. Use one of: {', '.join(SUFFIXES)}."
        )
    _reject_non_weights(path)
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        return read_torchscript_tensors(path), {}
    return _read_pickle(path), {}


def flat_state_dict(obj, path, expected: str) -> dict[str, torch.Tensor]:
    """Unwrap training-checkpoint containers and DataParallel prefixes down to name -> tensor."""
    for _ in range(3):
        if isinstance(obj, dict) and not _all_tensors(obj):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        what = type(obj).__name__
        if isinstance(obj, dict):
            odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
            what = f"a dict whose entries {odd} are not tensors" if obj else "an empty dict"
        raise CheckpointError(
            f"'{Path(path).name}' does not hold a model state dict (name -> tensor); it holds {what}. {expected}"
        )
    if all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def _reject_non_weights(path: Path):
    """The usual wrong files, by their first bytes: an empty or HTML/XML error download, or a
    Git LFS pointer cloned without LFS."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(
            f"'{path}' is empty (0 bytes); the download probably failed. Delete it and download it again."
        )
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<error")):
        raise CheckpointError(
            f"'{path}' is a web page or XML error message saved under a model's name, not model "
            "weights: the download failed. Delete it and download the file again."
        )
    if stripped.startswith(b"version https://git-lfs"):
        raise CheckpointError(
            f"'{path}' is a Git LFS pointer, not the weights. Fetch the real file (git lfs pull) or "
            "download it directly."
        )


def _read_safetensors(path: Path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path), device="cpu"), metadata
    except Exception as e:  # safetensors raises its own error types for every header problem
        raise CheckpointError(
            f"'{path}' could not be read as a .safetensors file ({type(e).__name__}: {_first_line(e)}). "
            "The file is damaged or incomplete (an interrupted download?); download it again."
        ) from None


def _read_pickle(path: Path):
    # mmap keeps a 2 GB checkpoint out of RAM until it is used; only the zip format supports it.
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        code = first_code_global(path)
        if code is not None:
            raise refused(path, code) from None
        raise CheckpointError(
            f"'{path}' could not be read as a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)}). "
            "The file is damaged or incomplete (an interrupted download?), or not a PyTorch file at "
            "all; download it again."
        ) from None


def refused(path, reference: str) -> CheckpointError:
    return CheckpointError(
        f"'{path}' was refused: besides weights it contains pickled Python code or objects (it refers to "
        f"'{reference}'), and loading it could run that code on your machine. Nothing from it was run. "
        "Use a file that holds only weights: save just the model's state dict "
        "(torch.save(model.state_dict(), ...)) or convert it to .safetensors, or get the original file "
        "from its publisher."
    )


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    text = text.splitlines()[0] if text else "no details"
    return text.split(". ")[0][:200]


# --- telling code from data in a pickle ------------------------------------------------------------


def _pickles_of(path: Path) -> list[bytes]:
    """The pickle streams of a checkpoint: ``data.pkl`` of a zip checkpoint, or the leading
    pickles of a legacy (pre-1.6) one, whose tensor bytes follow them."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith("data.pkl") or n.endswith("constants.pkl")]
    with open(path, "rb") as f:
        return [f.read(64 << 20)]


def first_code_global(path) -> str | None:
    """The first global a pickle in ``path`` refers to that is not tensor data, e.g.
    ``posix.system`` or ``argparse.Namespace``; None when there is none (or nothing to parse)."""
    try:
        streams = _pickles_of(Path(path))
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return None
    for data in streams:
        buffer = io.BytesIO(data)
        for _ in range(6):  # a legacy file is several pickles in a row
            strings: list[str] = []
            try:
                for op, arg, pos in pickletools.genops(buffer):
                    if pos == 0 and op.name != "PROTO":
                        break  # not a pickle torch wrote: bytes that merely parse as opcodes prove nothing
                    if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8",
                                   "SHORT_BINSTRING", "BINSTRING", "STRING"):
                        strings.append(str(arg))
                    name = None
                    if op.name in ("GLOBAL", "INST"):
                        name = str(arg).replace(" ", ".")
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        name = f"{strings[-2]}.{strings[-1]}"
                    if name is not None and not _DATA_GLOBALS.match(name):
                        return name
                    if op.name == "STOP":
                        break
                else:
                    break
            except Exception:  # the raw tensor bytes after the last pickle, or a damaged stream
                break
    return None


# --- TorchScript archives, without TorchScript -----------------------------------------------------


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


class _ScriptObject:
    """Stands in for every scripted class of an archive: keeps the state it is given, runs nothing."""

    qualname = "?"

    def __setstate__(self, state):
        self.state = state


def _identity(value, *_):
    return value


_JIT_HELPERS = {
    "build_intlist": list, "build_doublelist": list, "build_boollist": list, "build_tensorlist": list,
    "build_complexlist": list, "restore_type_tag": _identity,
}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor refers to something that is not a storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _Forbidden(pickle.UnpicklingError):
    """A global that is not tensor data; ``str()`` is its dotted name."""


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, torch.Tensor] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module, name):
        if module.startswith("__torch__"):  # a plain subclass per name, for messages only
            qualname = f"{module}.{name}"[:200]
            return self.classes.setdefault(qualname, type("ScriptObject", (_ScriptObject,), {"qualname": qualname}))
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in _JIT_HELPERS:
            return _JIT_HELPERS[name]
        raise _Forbidden(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        _, dtype, key, _location, numel = pid
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, not {numel} x {itemsize}")
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]


def read_torchscript_tensors(path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive's module tree, named like ``state_dict()``.

    The archive's code and its ``__setstate__`` methods are never loaded; only ``data.pkl`` is
    unpickled, by an unpickler that can build tensors, storages and plain containers and nothing else.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        data_names = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(data_names) != 1:
            raise CheckpointError(f"'{path}' is a TorchScript archive without a single data.pkl; it is damaged.")
        prefix = data_names[0].split("/")[0]
        try:
            root = _TensorOnlyUnpickler(z.read(data_names[0]), z, prefix).load()
        except _Forbidden as e:
            raise refused(path, str(e)) from None
        except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, RuntimeError, KeyError, EOFError) as e:
            raise CheckpointError(
                f"'{path}' is a TorchScript archive whose weights could not be read ({type(e).__name__}: "
                f"{_first_line(e)}); "
                "it is damaged or incomplete. Download it again, or use a .safetensors file instead."
            ) from None
    tensors: dict[str, torch.Tensor] = {}
    try:
        _collect(root, "", tensors, set())
    except CheckpointError as e:
        raise refused(path, str(e)) from None
    return tensors


def _code_message(qualname: str) -> str:
    return f"{qualname.removeprefix('__torch__.')}.__setstate__, scripted code that runs when the archive is loaded"


def _collect(obj, prefix: str, out: dict, seen: set) -> None:
    if id(obj) in seen or len(prefix) > 2000:
        return
    seen.add(id(obj))
    state = getattr(obj, "state", {}) if isinstance(obj, _ScriptObject) else obj
    if not isinstance(state, dict):
        # TorchScript pickles a non-dict state only for a class with its own __getstate__/__setstate__,
        # i.e. code that torch.jit.load would run. OpenAI's and open_clip's archives have none.
        raise CheckpointError(_code_message(obj.qualname))
    for name, value in state.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, (_ScriptObject, dict)):
            _collect(value, f"{prefix}{name}.", out, seen)
