"""Observation and action spaces: which ones pgrad takes, how observations are stored, and JSON.

Every observation space becomes an :class:`ObsLayout`, a list of *leaves* (a Dict's or Tuple's
entries, nested ones flattened by key path ``"sensors.imu"``), each of one kind:

    box             a Box that is not an image: float32, flattened by the encoder
    image           a Box of 3 dims (H×W×C or C×H×W), uint8 by default: kept in its dtype, a CNN's
    discrete        Discrete(n, start): the index ``x − start`` (int64), one-hot in the encoder
    multi_discrete  MultiDiscrete(nvec, start): int64 indices, concatenated one-hots
    binary          MultiBinary: uint8, read as floats

A space of one leaf is stored as itself: a Box as float32 of its shape (a scalar Box as a
1-vector), an image in its own dtype, a Discrete as one int64. A space of several leaves is
*packed*: each observation is one uint8 row holding every leaf's bytes in the leaf's own dtype
(int64 leaves first, then float32, then uint8, so each stays aligned for ``Tensor.view(dtype)``),
and the encoder views the bytes back as leaves. So buffers, minibatch indexing, rollout workers
and checkpoints move rows of one array whatever the space, and an image costs one byte a pixel
in a replay buffer, not four.

Images are detected as Stable-Baselines3's ``is_image_space`` does (a uint8 Box of 3 dims with
bounds 0 and 255; channels first when the first dim is the smallest); ``images`` overrides it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

IMAGES = ("auto", "channels-first", "channels-last", "off")
TORCH_DTYPES = {"float32": torch.float32, "uint8": torch.uint8, "int64": torch.int64}


@dataclass(frozen=True)
class Leaf:
    """One entry of an observation: where it is (``keys``), its kind and its stored form."""

    keys: tuple[str | int, ...]  # the path into a Dict/Tuple observation (() for a plain space)
    kind: str
    space_shape: tuple[int, ...]  # one observation's shape as the env gives it
    shape: tuple[int, ...]  # one observation's shape as stored
    dtype: str  # as stored: float32, uint8 or int64
    start: np.ndarray | None = None  # discrete kinds: subtracted from the env's values
    sizes: tuple[int, ...] = ()  # discrete kinds: the number of values of each index
    channels_first: bool = True  # images
    offset: int = 0  # byte offset in a packed row

    @property
    def name(self) -> str:
        return ".".join(map(str, self.keys)) or "observation"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def features(self) -> int:
        """The width of the leaf's encoding, for every kind but images (a CNN's)."""
        return sum(self.sizes) if self.kind in ("discrete", "multi_discrete") else self.size


def is_image(space: spaces.Space, images: str = "auto") -> bool:
    if images == "off" or not isinstance(space, spaces.Box) or len(space.shape) != 3:
        return False
    if images != "auto":
        return True
    return space.dtype == np.uint8 and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255))


def _leaves(space: spaces.Space, keys: tuple, images: str) -> Iterator[Leaf]:
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _leaves(sub, (*keys, key), images)
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            yield from _leaves(sub, (*keys, i), images)
    elif is_image(space, images):
        first = images == "channels-first" or (images == "auto" and int(np.argmin(space.shape)) == 0)
        dtype = "uint8" if space.dtype == np.uint8 else "float32"
        yield Leaf(keys, "image", space.shape, space.shape, dtype, channels_first=first)
    elif isinstance(space, spaces.Box):
        yield Leaf(keys, "box", space.shape, space.shape or (1,), "float32")
    elif isinstance(space, spaces.Discrete):
        yield Leaf(keys, "discrete", (), (1,), "int64", np.array([int(space.start)]), (int(space.n),))
    elif isinstance(space, spaces.MultiDiscrete):
        nvec, start = space.nvec.reshape(-1), np.asarray(space.start).reshape(-1)
        yield Leaf(keys, "multi_discrete", space.shape, (len(nvec),), "int64", start, tuple(int(n) for n in nvec))
    elif isinstance(space, spaces.MultiBinary):
        yield Leaf(keys, "binary", space.shape, (int(np.prod(space.shape)),), "uint8")
    else:
        where = f" at {'.'.join(map(str, keys))}" if keys else ""
        raise ValueError(
            f"observation space {space}{where} is not supported: pgrad takes Box, Discrete, MultiDiscrete, "
            "MultiBinary, and Dict/Tuple of them"
        )


class ObsLayout:
    """How observations of ``space`` are stored (``shape``, ``dtype`` of one) and read back."""

    def __init__(self, space: spaces.Space, images: str = "auto"):
        if images not in IMAGES:
            raise ValueError(f"images={images!r} is invalid: must be one of {', '.join(map(repr, IMAGES))}")
        self.space, self.images = space, images
        leaves = list(_leaves(space, (), images))
        if not leaves:
            raise ValueError(f"observation space {space} is empty")
        self.packed = len(leaves) > 1
        if self.packed:  # widest dtype first: every leaf's offset is a multiple of its item size
            leaves.sort(key=lambda leaf: -np.dtype(leaf.dtype).itemsize)
            offsets = np.cumsum([0] + [leaf.nbytes for leaf in leaves])
            leaves = [dataclasses.replace(leaf, offset=int(o)) for leaf, o in zip(leaves, offsets, strict=False)]
            self.shape, self.dtype = (-(-int(offsets[-1]) // 8) * 8,), "uint8"  # rows of 8-byte multiples
        else:
            self.shape, self.dtype = leaves[0].shape, leaves[0].dtype
        self.leaves = leaves
        self.numeric = [leaf for leaf in leaves if leaf.kind == "box"]  # what obs normalisation sees

    @property
    def trivial(self) -> bool:
        """A Box observation that is not an image: stored as float32 of its shape, as it comes."""
        return not self.packed and self.leaves[0].kind == "box"

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of one stored observation."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def numeric_shape(self) -> tuple[int, ...] | None:
        """The shape of what observation normalisation sees (None: nothing numeric)."""
        if self.trivial:
            return self.shape
        return (sum(leaf.size for leaf in self.numeric),) if self.numeric else None

    # -- env observations → stored arrays ---------------------------------------------------------

    def store(self, obs: Any, batch: int) -> np.ndarray:
        """A batch of ``batch`` observations in the space's structure → ``[batch, *shape]``."""
        if self.trivial:  # (a Dict or Tuple of one Box has its one key to look up)
            return np.asarray(_get(obs, self.leaves[0].keys), np.float32).reshape(batch, *self.shape)
        arrays = [self._leaf_array(leaf, _get(obs, leaf.keys), batch) for leaf in self.leaves]
        if not self.packed:
            return arrays[0]
        rows = np.zeros((batch, self.shape[0]), np.uint8)
        for leaf, a in zip(self.leaves, arrays, strict=True):
            rows[:, leaf.offset : leaf.offset + leaf.nbytes] = a.reshape(batch, -1).view(np.uint8)
        return rows

    @staticmethod
    def _leaf_array(leaf: Leaf, value: Any, batch: int) -> np.ndarray:
        a = np.ascontiguousarray(value, dtype=leaf.dtype).reshape(batch, *leaf.shape)
        return a - leaf.start if leaf.start is not None else a

    def store_one(self, obs: Any) -> np.ndarray:
        """One observation → ``[*shape]``."""
        return self.store(obs, 1)[0]

    def batch_of(self, obs: Any) -> tuple[np.ndarray, bool]:
        """A user's observation, one or a batch, checked: ``(stored [B, *shape], single)``. A
        ``ValueError`` says what does not fit (shape, keys, non-numbers, NaN, an index outside
        its space), so nothing fails deep inside a network."""
        first = self.leaves[0]
        shape = self._array(obs, first).shape
        single = tuple(shape) == first.space_shape
        if not single and tuple(shape[1:]) != first.space_shape:
            raise ValueError(
                f"observation {first.name} of shape {tuple(shape)} does not fit the agent's {first.space_shape} "
                "(or a batch of them)"
            )
        batch = 1 if single else int(shape[0])
        for leaf in self.leaves:
            value = self._array(obs, leaf)
            if value.shape != ((batch,) if not single else ()) + leaf.space_shape:
                raise ValueError(
                    f"{leaf.name} of shape {value.shape} does not fit the agent's {leaf.space_shape}"
                    + (" (or a batch of them)" if not self.packed else f" in a batch of {batch}")
                )
            if leaf.kind in ("box", "image") and not np.isfinite(value).all():
                raise ValueError(f"{leaf.name} holds NaN or inf: the policy's action would be meaningless")
            if leaf.kind in ("discrete", "multi_discrete"):
                index = np.asarray(value, np.float64).reshape(batch, -1) - leaf.start
                if (index < 0).any() or (index >= np.array(leaf.sizes)).any() or (index != np.floor(index)).any():
                    raise ValueError(f"{leaf.name} holds a value outside its space {describe(self.space)}")
        return self.store(obs, batch), single

    def _array(self, obs: Any, leaf: Leaf) -> np.ndarray:
        """One leaf of a user's observation as a numeric array; a ``ValueError`` otherwise."""
        try:
            value = np.asarray(_get(obs, leaf.keys))
        except (KeyError, IndexError, TypeError, ValueError):
            raise ValueError(
                f"observation {str(obs)[:60]!r} has no entry {leaf.name!r} of {describe(self.space)}"
            ) from None
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise ValueError(f"observation {str(obs)[:60]!r} is not an array of numbers")
        return value

    # -- stored tensors → leaves (the encoder) --------------------------------------------------------

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stored observations ``[..., *shape]`` → each leaf ``[..., *leaf.shape]`` in its dtype."""
        if not self.packed:
            return [x]
        lead = x.shape[:-1]
        return [_bytes_as(x[..., leaf.offset : leaf.offset + leaf.nbytes], leaf).reshape(*lead, *leaf.shape)
                for leaf in self.leaves]  # fmt: skip

    # -- the numeric part (observation normalisation), for numpy arrays and tensors alike -------------

    def get_numeric(self, x):
        """``[B, F]`` float32: the box leaves of a packed batch, concatenated."""
        parts = [_bytes_as(x[:, leaf.offset : leaf.offset + leaf.nbytes], leaf) for leaf in self.numeric]
        return np.concatenate(parts, axis=1) if isinstance(x, np.ndarray) else torch.cat(parts, dim=1)

    def set_numeric(self, x, values) -> None:
        """Write ``[B, F]`` float32 ``values`` into the box leaves of a packed batch, in place."""
        start = 0
        for leaf in self.numeric:
            part = values[:, start : start + leaf.size]
            if isinstance(x, np.ndarray):
                x[:, leaf.offset : leaf.offset + leaf.nbytes] = np.ascontiguousarray(part, np.float32).view(np.uint8)
            else:
                x[:, leaf.offset : leaf.offset + leaf.nbytes] = part.float().contiguous().view(torch.uint8)
            start += leaf.size


def _get(obs: Any, keys: tuple) -> Any:
    for key in keys:
        obs = obs[key]
    return obs


def _bytes_as(x, leaf: Leaf):
    """The bytes of one leaf (``[..., nbytes]`` uint8) as its dtype (``[..., size]``)."""
    if leaf.dtype == "uint8":
        return x
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x).view(leaf.dtype)
    return x.contiguous().view(TORCH_DTYPES[leaf.dtype])


# ---- actions ----------------------------------------------------------------------------------------

ACTION_KINDS = {
    spaces.Discrete: "discrete",
    spaces.MultiDiscrete: "multi_discrete",
    spaces.MultiBinary: "binary",
    spaces.Box: "box",
}


def action_kind(space: spaces.Space) -> str:
    """``discrete``, ``multi_discrete``, ``binary`` or ``box``; a ``ValueError`` for any other space."""
    for cls, kind in ACTION_KINDS.items():
        if isinstance(space, cls):
            return kind
    raise ValueError(
        f"action space {space} is not supported: pgrad takes Discrete, MultiDiscrete, MultiBinary and Box actions"
    )


def action_storage(space: spaces.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """How a policy's actions are stored: ``(shape of one, dtype)``. Indices are int64, binary
    and continuous actions float32, flattened (the env's shape is restored by ``ActionMap``)."""
    kind = action_kind(space)
    if kind == "discrete":
        return (), torch.int64
    if kind == "multi_discrete":
        return (int(np.prod(space.shape)),), torch.int64
    return (int(np.prod(space.shape)),), torch.float32


def action_head(space: spaces.Space) -> dict[str, Any]:
    """The policy head for ``space``, as :class:`~pgrad.networks.ActorCritic`'s arguments: its
    width ``action_dim`` and its distribution (``discrete``: Categorical; ``nvec``: MultiCategorical;
    ``binary``: Bernoulli; none of them: a Gaussian)."""
    kind = action_kind(space)
    if kind == "discrete":
        return {"action_dim": int(space.n), "discrete": True}
    if kind == "multi_discrete":
        nvec = [int(n) for n in space.nvec.reshape(-1)]
        return {"action_dim": sum(nvec), "discrete": False, "nvec": nvec}
    size = int(np.prod(space.shape))
    return {"action_dim": size, "discrete": False} | ({"binary": True} if kind == "binary" else {})


# ---- JSON (saved agents) ------------------------------------------------------------------------------


def _bound(a: np.ndarray) -> Any:
    """A Box bound: one number where it is uniform (an image's 0 and 255), else the nested list."""
    flat = a.reshape(-1)
    if flat.size and (flat == flat[0]).all():
        return float(flat[0]) if np.isfinite(flat[0]) else str(flat[0])
    return [v if np.isfinite(v) else str(v) for v in flat.astype(np.float64).tolist()]


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[k, space_to_json(s)] for k, s in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": np.asarray(space.start).tolist()}
    if isinstance(space, spaces.MultiBinary):
        n = space.n  # an int or a shape, as the space was made (MultiBinary(4) != MultiBinary((4,)))
        return {"type": "MultiBinary", "n": int(n) if np.isscalar(n) else [int(k) for k in n]}
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": _bound(space.low), "high": _bound(space.high), "shape": list(space.shape),
                "dtype": str(space.dtype)}  # fmt: skip
    raise ValueError(f"space {space} cannot be saved")


BOX_DTYPES = ("float32", "float64", "float16", "uint8", "int8", "int16", "int32", "int64", "uint16")


def space_from_json(data: Any, depth: int = 0) -> spaces.Space:
    """The space a saved agent names, checked: a ``ValueError`` says what is wrong."""
    kind = data.get("type") if isinstance(data, dict) else None
    if depth > 16 or kind not in ("Dict", "Tuple", "Discrete", "MultiDiscrete", "MultiBinary", "Box"):
        raise ValueError(f"space {str(data)[:60]} is not a space pgrad saves")
    if kind == "Dict":
        items = data["spaces"]
        if not (isinstance(items, list) and all(isinstance(i, list) and len(i) == 2 and isinstance(i[0], str)
                                                for i in items)):  # fmt: skip
            raise ValueError("Dict space entries are not [key, space] pairs")
        return spaces.Dict({k: space_from_json(s, depth + 1) for k, s in items})
    if kind == "Tuple":
        if not isinstance(data["spaces"], list):
            raise ValueError("Tuple space entries are not a list")
        return spaces.Tuple([space_from_json(s, depth + 1) for s in data["spaces"]])
    if kind == "Discrete":
        n, start = data.get("n"), data.get("start", 0)
        if not (_int(n) and n >= 1 and _int(start)):
            raise ValueError(f"Discrete space n={n!r}, start={start!r} is invalid")
        return spaces.Discrete(n, start=start)
    if kind == "MultiDiscrete":
        nvec, start = np.asarray(data.get("nvec")), np.asarray(data.get("start"))
        if nvec.dtype.kind != "i" or nvec.shape != start.shape or start.dtype.kind != "i" or (nvec < 1).any():
            raise ValueError("MultiDiscrete space nvec/start are not integer arrays of one shape, nvec >= 1")
        return spaces.MultiDiscrete(nvec, start=start)
    shape = data.get("shape") if kind == "Box" else data.get("n")
    if kind == "MultiBinary" and _int(shape) and shape >= 1:
        return spaces.MultiBinary(shape)
    if not (isinstance(shape, list) and all(_int(n) and n >= 0 for n in shape) and len(shape) <= 8):
        raise ValueError(f"{kind} space shape {shape!r} is invalid")
    if kind == "MultiBinary":
        return spaces.MultiBinary(shape)
    dtype = data.get("dtype", "float32")
    if dtype not in BOX_DTYPES:
        raise ValueError(f"Box space dtype {dtype!r} is invalid: one of {', '.join(BOX_DTYPES)}")
    low, high = (_bound_from(data.get(k), shape) for k in ("low", "high"))
    if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
        raise ValueError("Box space bounds hold NaN, or a low bound above its high bound")
    return spaces.Box(low.astype(dtype) if dtype != "float64" else low, high.astype(dtype), dtype=dtype)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bound_from(value: Any, shape: list[int]) -> np.ndarray:
    if isinstance(value, list):
        a = np.array([float(v) for v in value], np.float64)
        if a.size != int(np.prod(shape)):
            raise ValueError("Box space bounds do not have its shape")
        return a.reshape(shape)
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return np.full(shape, float(value), np.float64)
    raise ValueError(f"Box space bound {str(value)[:40]!r} is not a number or a list")


def signature(space: spaces.Space) -> Any:
    """A space's structure without Box bounds: what an agent needs of an env it acts in."""
    data = space_to_json(space)
    if data["type"] == "Dict":
        return ["Dict", [[k, signature(s)] for k, s in space.spaces.items()]]
    if data["type"] == "Tuple":
        return ["Tuple", [signature(s) for s in space.spaces]]
    if data["type"] == "Box":
        return ["Box", data["shape"]]
    return data


def describe(space: spaces.Space) -> str:
    """Short: ``Box(4,)``, ``Discrete(2)``, ``Dict(camera: Box(64, 64, 3), ...)``."""
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {describe(s)}" for k, s in space.spaces.items()) + ")"
    if isinstance(space, spaces.Tuple):
        return "Tuple(" + ", ".join(describe(s) for s in space.spaces) + ")"
    if isinstance(space, spaces.Discrete):
        return (
            f"Discrete({int(space.n)})" if int(space.start) == 0 else f"Discrete({int(space.n)}, start={space.start})"
        )
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    return f"{type(space).__name__}{tuple(space.shape)}"
