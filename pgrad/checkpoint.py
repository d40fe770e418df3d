"""Weights on disk: safetensors + JSON, written atomically, loaded without running any code.

A saved agent is a directory with ``model.safetensors`` (tensors only) and ``agent.json``
(architecture spec, action space, normalisation flags, config). Nothing is unpickled, so a
crafted file cannot execute code; a missing, truncated, corrupt or foreign file raises
:class:`CheckpointError` with a message that says which file and what is wrong. Every
safetensors file carries a SHA-256 of its tensors (names, dtypes, shapes, bytes) in its header,
checked on load, and its floating-point tensors must be finite: a flipped bit or a NaN weight is
an error naming the file, never a silently broken agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "pgrad-agent"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "agent.json"
DEFAULT_FILES = (MODEL_FILE, META_FILE)
BEST_FILES = ("best_model.safetensors", "best_agent.json")  # the best evaluation's agent, beside the final one


class CheckpointError(ValueError):
    """A saved agent or checkpoint cannot be read: missing, corrupt, foreign or a newer version."""


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one whole:
    temp file in the same directory, fsync, rename, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            e.filename = str(path)  # name the file the user knows, not the temp file
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        if t.numel():  # an empty tensor has no bytes (and may have stride 0, which view refuses)
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return st_save(tensors, metadata={**metadata, "sha256": tensor_digest(tensors)})


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, header metadata)`` of a safetensors file, checked: readable, the checksum (when
    the file has one: files of pgrad before it do not) and finite floating-point values."""
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError, MemoryError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    digest = metadata.get("sha256")
    if digest is not None and digest != tensor_digest(tensors):
        raise CheckpointError(f"{path} fails its checksum: its tensors are not the ones written (the file is corrupt)")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or inf values; the file is corrupt")
    return tensors, metadata


def save(
    directory: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    files: tuple[str, str] = DEFAULT_FILES,
) -> None:
    """Save tensors and JSON metadata into ``directory`` as ``files`` (weights, JSON): the weights
    first, then the JSON that names them."""
    directory = Path(directory)
    atomic_write(directory / files[0], _serialize(tensors, {"format": FORMAT}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    atomic_write(directory / files[1], json.dumps(meta, indent=2, sort_keys=True).encode())


def load(
    directory: str | os.PathLike, files: tuple[str, str] = DEFAULT_FILES
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(tensors, meta)`` back; raise :class:`CheckpointError` on anything unexpected."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{str(directory)!r} is not a directory with a saved pgrad agent")
    model_path, meta_path = directory / files[0], directory / files[1]
    for p in (meta_path, model_path):
        if not p.is_file():
            if files == BEST_FILES:
                raise CheckpointError(
                    f"{str(directory)!r} has no best model ({files[0]} + {files[1]}): runs that evaluate "
                    "during training keep one (--eval-every N)"
                )
            raise CheckpointError(f"{str(directory)!r} has no {p.name}: not a saved pgrad agent (or an unfinished run)")
    try:
        meta = json.loads(meta_path.read_text(), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"{meta_path} is not valid JSON ({e}); the file is corrupt or foreign") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path} is not a pgrad agent file (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} has format_version {version!r}; this pgrad reads version {FORMAT_VERSION}")
    tensors, metadata = read_safetensors(model_path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{model_path} is not a pgrad agent's weights (format {metadata.get('format')!r})")
    return tensors, meta


def _no_constant(name: str) -> float:
    """±Infinity are Box bounds (CartPole's observations); NaN is never a saved value."""
    if name == "NaN":
        raise ValueError("NaN is not a value a pgrad agent file holds")
    return float(name)


CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "pgrad-checkpoint"


def save_checkpoint(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """One file, written atomically: the tensors, and the JSON state in the safetensors header."""
    metadata = {"format": CHECKPOINT_FORMAT, "format_version": str(FORMAT_VERSION), "state": json.dumps(state)}
    atomic_write(Path(directory) / CHECKPOINT_FILE, _serialize(tensors, metadata))


def checkpoint_step(directory: str | os.PathLike) -> int:
    """The step of ``directory``'s checkpoint, read from its header alone (the tensors, a replay buffer
    among them, stay on disk)."""
    path = Path(directory) / CHECKPOINT_FILE
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        step = json.loads(header["__metadata__"]["state"])["global_step"]
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(directory)!r} has no {CHECKPOINT_FILE}: it kept no training state to continue from "
            "(train with save_final_checkpoint=True or checkpoint_every=N)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, MemoryError) as e:
        raise CheckpointError(
            f"{path}: its header is unreadable ({type(e).__name__}: {e}); the file is corrupt"
        ) from None
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{path}: global_step={step!r} is not a step; the file is corrupt")
    return step


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint back; :class:`CheckpointError` names what is wrong with it."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{str(directory)!r} has no {CHECKPOINT_FILE}: nothing to resume (train with --checkpoint-every N)"
        )
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pgrad checkpoint (format {metadata.get('format')!r})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has format_version {metadata.get('format_version')!r}; this pgrad reads version {FORMAT_VERSION}"
        )
    try:
        state = json.loads(metadata["state"])
        if not isinstance(state, dict):
            raise ValueError(f"a {type(state).__name__}, not an object")
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its state is unreadable ({e})") from None
    return tensors, state
