"""Capture and restore the complete training state of plain Python objects, as tensors + JSON.

``capture(obj)`` walks an object's attributes (and those of the objects it holds) and records
every leaf that determines the future of a run: module weights, optimizer state, torch, numpy and
Python random generators, tensors, arrays, and plain scalars. ``restore(obj, ...)`` writes them
back into an object built the same way (from the same config), in place. Nothing is pickled, so a
saved state loads without executing code.

The walk is strict: every attribute of every object it enters is either state it knows how to
save, or declared wiring (the class's ``not_state`` tuple, or the names in ``SKIP``). Anything
else — a function, a class, a container of objects, a native object — raises :class:`StateError`
naming the attribute, so a member that holds state can never be skipped silently (a callable
noise process once was). Restoring writes only into the structure the run itself built, and
rebuilds numpy generators only from an allow-list of bit generators.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import types
from collections import deque
from typing import Any

import numpy as np
import torch
from torch import nn

SCALARS = (bool, int, float, str, type(None))
# Attributes that are configuration or wiring, rebuilt from the config on resume, never state.
SKIP = {"cfg", "device", "spec", "observation_space", "action_space", "envs", "layout", "obs_dtype"}


# numpy bit generators a checkpoint may name; a name is looked up here, never on the numpy module
BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                                np.random.Philox, np.random.SFC64)}  # fmt: skip
_NOT_STATE_TYPES = (
    types.FunctionType, types.MethodType, types.BuiltinFunctionType, type, types.ModuleType, functools.partial
)  # fmt: skip


class StateError(TypeError):
    """An object holds an attribute that is neither saveable state nor declared wiring."""


def _children(obj: Any) -> list[tuple[str, Any]]:
    wiring = getattr(obj, "not_state", ())  # a class's own list of attributes that are wiring, not state
    return sorted((k, v) for k, v in vars(obj).items() if k not in SKIP and k not in wiring)


def _refuse(obj: Any, prefix: str) -> None:
    raise StateError(
        f"{prefix} ({type(obj).__module__}.{type(obj).__qualname__}) is neither checkpointable state nor "
        "declared wiring: add its name to its owner's `not_state`, or give the owner checkpoint_state()"
    )


def capture(
    obj: Any, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any], seen: dict | None = None
) -> None:
    """Record ``obj``'s state under ``prefix`` into ``tensors`` (name → tensor) and ``meta`` (JSON)."""
    seen = {} if seen is None else seen
    if id(obj) in seen and not isinstance(obj, SCALARS):
        meta[prefix] = {"alias": seen[id(obj)]}  # e.g. ``policy`` is the same module as ``actor``
        return
    seen[id(obj)] = prefix
    if hasattr(obj, "checkpoint_state"):  # an object that knows what of it is state (the replay buffer)
        capture(obj.checkpoint_state(), prefix, tensors, meta, seen)
    elif isinstance(obj, nn.Module):
        for k, v in obj.state_dict().items():
            tensors[f"{prefix}.{k}"] = v
    elif isinstance(obj, torch.optim.Optimizer):
        state = obj.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in state["state"].items():
            for name, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"{prefix}.{pid}.{name}"] = value
                else:
                    scalars.setdefault(str(pid), {})[name] = value
        meta[prefix] = {"optimizer": {"param_groups": state["param_groups"], "scalars": scalars}}
    elif isinstance(obj, torch.Generator):
        tensors[prefix] = obj.get_state()
    elif torch.is_tensor(obj):
        tensors[prefix] = obj.detach()
    elif isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
        meta[prefix] = {"ndarray": str(obj.dtype), "shape": list(obj.shape)}
    elif isinstance(obj, np.random.Generator):
        meta[prefix] = {"numpy_generator": obj.bit_generator.state}
    elif isinstance(obj, random.Random):
        version, internal, gauss = obj.getstate()
        meta[prefix] = {"python_random": [version, list(internal), gauss]}
    elif isinstance(obj, np.generic):
        meta[prefix] = obj.item()
    elif isinstance(obj, SCALARS):
        meta[prefix] = obj
    elif isinstance(obj, (list, tuple, deque)) and all(isinstance(x, SCALARS) for x in obj):
        meta[prefix] = {"sequence": list(obj)}
    elif isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        for k, v in obj.items():
            capture(v, f"{prefix}.{k}", tensors, meta, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type) and obj.__dataclass_params__.frozen:
        return  # a config: rebuilt, not restored
    elif hasattr(obj, "__dict__") and not isinstance(obj, _NOT_STATE_TYPES):
        for k, v in _children(obj):
            capture(v, f"{prefix}.{k}", tensors, meta, seen)
    else:
        _refuse(obj, prefix)


def restore(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Any:
    """Write the state captured under ``prefix`` back into ``obj``; returns the (possibly new) value
    for immutable leaves, which the caller assigns."""
    entry = meta.get(prefix)
    if isinstance(entry, dict) and "alias" in entry:
        return obj  # restored where it was first seen
    if hasattr(obj, "checkpoint_state"):
        saved = {}
        for key in obj.checkpoint_state():
            name = f"{prefix}.{key}"
            saved[key] = tensors[name] if name in tensors else meta.get(name)
        obj.load_checkpoint_state(saved)
        return obj
    if isinstance(obj, nn.Module):
        state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        own = obj.state_dict()
        obj.load_state_dict({k: state[k] for k in own})
        return obj
    if isinstance(obj, torch.optim.Optimizer):
        info = entry["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix + "."):
                pid, name = key[len(prefix) + 1 :].split(".", 1)
                state.setdefault(int(pid), {})[name] = value
        for pid, values in info["scalars"].items():
            state.setdefault(int(pid), {}).update(values)
        obj.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        return obj
    if isinstance(obj, torch.Generator):
        obj.set_state(tensors[prefix])
        return obj
    if torch.is_tensor(obj):
        saved = tensors[prefix]
        if saved.shape != obj.shape:  # copy_ would broadcast a smaller tensor silently
            raise ValueError(f"{prefix} has shape {list(saved.shape)}, this run's has {list(obj.shape)}")
        with torch.no_grad():
            obj.copy_(saved)
        return obj
    if isinstance(entry, dict) and "ndarray" in entry:  # by the saved kind: the attribute may be None now
        array = tensors[prefix].numpy().astype(entry["ndarray"], copy=True).reshape(entry["shape"])
        if isinstance(obj, np.ndarray) and (array.shape, array.dtype) != (obj.shape, obj.dtype):
            raise ValueError(
                f"{prefix} is {array.dtype}{list(array.shape)}, this run's is {obj.dtype}{list(obj.shape)}"
            )
        return array
    if isinstance(entry, dict) and "numpy_generator" in entry:
        return restore_numpy_generator(obj, entry["numpy_generator"], prefix)
    if isinstance(entry, dict) and "python_random" in entry:
        version, internal, gauss = entry["python_random"]
        obj.setstate((version, tuple(internal), gauss))
        return obj
    if isinstance(entry, dict) and "sequence" in entry:
        if isinstance(obj, deque):
            return deque(entry["sequence"], maxlen=obj.maxlen)
        return tuple(entry["sequence"]) if isinstance(obj, tuple) else list(entry["sequence"])
    if isinstance(obj, (np.generic, *SCALARS)):
        return _scalar(obj, entry, prefix, meta)
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        for k, v in list(obj.items()):
            obj[k] = restore(v, f"{prefix}.{k}", tensors, meta)
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and obj.__dataclass_params__.frozen:
        return obj
    if hasattr(obj, "__dict__") and not isinstance(obj, _NOT_STATE_TYPES):
        for k, v in _children(obj):
            new = restore(v, f"{prefix}.{k}", tensors, meta)
            if new is not v:
                setattr(obj, k, new)
        return obj
    raise StateError(f"{prefix}: the saved {str(entry)[:40]!r} does not fit this run's {type(obj).__name__}")


def _scalar(obj: Any, entry: Any, prefix: str, meta: dict[str, Any]) -> Any:
    """A plain value: present, and of the kind the run's own attribute has (any kind where it is None)."""
    if prefix not in meta:
        raise KeyError(f"{prefix} is missing")
    if isinstance(entry, dict) or isinstance(entry, list):
        raise ValueError(f"{prefix}: the saved {str(entry)[:40]} is not a plain value")
    if obj is None:
        return entry
    if isinstance(obj, np.generic):
        return type(obj)(entry)
    numeric = isinstance(obj, float) and isinstance(entry, int) and not isinstance(entry, bool)
    if not (type(entry) is type(obj) or numeric):
        raise ValueError(f"{prefix}: the saved {entry!r} is not a {type(obj).__name__} like this run's {obj!r}")
    return type(obj)(entry)


def restore_numpy_generator(obj: Any, saved: Any, name: str) -> np.random.Generator:
    """Set a numpy generator to a saved ``bit_generator.state``; a generator is created (for an
    env whose RNG does not exist yet) only of a bit generator type in :data:`BIT_GENERATORS`."""
    kind = saved.get("bit_generator") if isinstance(saved, dict) else None
    if kind not in BIT_GENERATORS:
        raise ValueError(f"{name}: bit generator {kind!r} is not one of {', '.join(BIT_GENERATORS)}")
    if not isinstance(obj, np.random.Generator) or type(obj.bit_generator).__name__ != kind:
        obj = np.random.Generator(BIT_GENERATORS[kind]())
    obj.bit_generator.state = saved
    return obj
