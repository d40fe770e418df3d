"""The environment a user brings: a registered id, a factory or an instance, with kwargs and wrappers.

``EnvSpec`` is what every part of pgrad that builds an env takes (training in both vectorisation
modes, Ray workers, sweeps, evaluation), and what a saved run records as JSON so that ``pgrad eval
RUN`` and ``pgrad train --resume RUN`` rebuild it in a new process:

    {"id": "CartPole-v1"}                               a registered id ("module:Id" imports module)
    {"factory": "my_pkg.envs:Reach"}                     any importable callable returning a gym.Env
    + "kwargs": {...}, "wrappers": [{"path": "gymnasium.wrappers:TimeLimit", "kwargs": {...}}]

A lambda, a local class or an instance has no import path: such a run trains and saves, and its
record says so (``recordable: false``); evaluating it needs the env again (``pgrad.evaluate(agent,
env=...)`` or ``pgrad eval RUN --env module:Factory``). Rebuilding imports only the modules the
record names, and only plain dotted names.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import importlib
import inspect
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class EnvSpecError(ValueError):
    """An env spec that cannot be built or recorded; the message says what to do."""


@dataclass(frozen=True)
class Wrapper:
    """One wrapper: ``fn(env, **kwargs)`` (a gymnasium wrapper class or any callable env -> env)."""

    fn: Callable[..., gym.Env]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        return import_path(self.fn)


@dataclass(frozen=True)
class EnvSpec:
    """How to build one sub-environment; exactly one of ``id``, ``factory``, ``instance``."""

    id: str | None = None
    factory: Callable[..., gym.Env] | None = None
    instance: gym.Env | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[Wrapper, ...] = ()

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_user(
        cls, env: Any, env_kwargs: dict[str, Any] | None = None, wrappers: Sequence[Any] | None = None
    ) -> EnvSpec:
        """From what a user passes: an id, a factory (class, function, partial, lambda), an
        instance or an ``EnvSpec``; ``wrappers`` items are callables, ``(callable, kwargs)`` pairs
        or ``"module:Name[:k=v,...]"`` strings."""
        kwargs = dict(env_kwargs or {})
        if not all(isinstance(k, str) for k in kwargs):
            raise EnvSpecError(f"env_kwargs={env_kwargs!r} is invalid: a dict with string keys")
        wrapped = tuple(to_wrapper(w) for w in (wrappers or ()))
        if isinstance(env, EnvSpec):
            if kwargs or wrapped:
                env = EnvSpec(env.id, env.factory, env.instance, env.kwargs | kwargs, env.wrappers + wrapped)
            return env
        if isinstance(env, str) and env:
            module, _, name = env.partition(":")
            if name and _DOTTED.match(module) and _DOTTED.match(name):  # "module:Factory", not "module:Id-v0"
                with contextlib.suppress(EnvSpecError):
                    target = resolve_path(env)
                    if callable(target) and name not in gym.registry:
                        return cls(factory=target, kwargs=kwargs, wrappers=wrapped)
            check_env_id(env)
            return cls(id=env, kwargs=kwargs, wrappers=wrapped)
        if isinstance(env, gym.Env):
            if kwargs:
                raise EnvSpecError(
                    "env_kwargs cannot be applied to an env instance: pass its class (a factory) instead"
                )
            return cls(instance=env, wrappers=wrapped)
        if callable(env) and not isinstance(env, gym.Space):
            return cls(factory=env, kwargs=kwargs, wrappers=wrapped)
        raise EnvSpecError(
            f"env={env!r} is invalid: a registered gymnasium id such as 'CartPole-v1', 'module:EnvId', "
            "a factory returning a gymnasium.Env (a class, function or lambda) or an env instance"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvSpec:
        """Rebuild a recorded spec (importing the modules it names, which must be dotted names)."""
        if not isinstance(data, dict) or not data.get("recordable", True):
            raise EnvSpecError(f"the recorded env {data.get('name') if isinstance(data, dict) else data!r} "
                               "has no import path (a lambda, a local class or an instance)")  # fmt: skip
        kwargs, wrappers = data.get("kwargs") or {}, data.get("wrappers") or []
        if not _kwargs_ok(kwargs) or not isinstance(wrappers, list):
            raise EnvSpecError("the recorded env's kwargs or wrappers are not the kind pgrad records")
        if not all(isinstance(w, dict) and _kwargs_ok(w.get("kwargs") or {}) for w in wrappers):
            raise EnvSpecError("the recorded env's wrappers are not the kind pgrad records")
        wrappers = tuple(Wrapper(recorded_callable(w.get("path")), dict(w.get("kwargs") or {}))
                         for w in wrappers)  # fmt: skip
        if "factory" in data:
            return cls(factory=recorded_callable(data["factory"]), kwargs=dict(kwargs), wrappers=wrappers)
        env_id = data.get("id")
        if not isinstance(env_id, str):
            raise EnvSpecError(f"the recorded env {data!r} has neither an id nor a factory")
        module = data.get("module")
        if ":" not in env_id and env_id not in gym.registry and isinstance(module, str):
            if not _DOTTED.match(module) or _stdlib(module):
                raise EnvSpecError(f"the recorded env module {module!r} is not a plain dotted name of a user's package")
            with contextlib.suppress(ImportError):
                importlib.import_module(module)  # registers the id, as it did in the training process
        check_env_id(env_id)  # "module:Id" imports its (dotted) module as gym.make would; a clear error otherwise
        return cls(id=env_id, kwargs=dict(kwargs), wrappers=wrappers)

    # -- what it is ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """A readable name: the id, the factory's import path, or its qualified name."""
        if self.id is not None:
            return self.id
        target = self.factory if self.factory is not None else type(self.instance)
        return import_path(target) or getattr(target, "__qualname__", None) or type(target).__name__

    @property
    def recordable(self) -> bool:
        """Whether :meth:`to_json` names everything needed to rebuild it in another process."""
        if self.instance is not None or (self.factory is not None and import_path(self.factory) is None):
            return False
        if any(w.path is None for w in self.wrappers):
            return False
        try:
            json.dumps([self.kwargs, [w.kwargs for w in self.wrappers]], allow_nan=False)
        except (TypeError, ValueError):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "recordable": self.recordable}
        if not self.recordable:
            return data
        if self.id is None:
            data["factory"] = import_path(self.factory)
        else:
            data["id"] = self.id
            module = registering_module(self.id)
            if module is not None:  # a new process imports it to know the id (as "module:Id" would)
                data["module"] = module
        data["kwargs"] = self.kwargs
        data["wrappers"] = [{"path": w.path, "kwargs": w.kwargs} for w in self.wrappers]
        return data

    # -- building -----------------------------------------------------------------------------------

    def make(self, render_mode: str | None = None) -> gym.Env:
        """One sub-environment, wrappers applied in order. ``render_mode`` is passed only when
        asked for (many users' envs take none)."""
        extra = {"render_mode": render_mode} if render_mode is not None else {}
        with missing_packages(self.name):
            if self.id is not None:
                ensure_registered(self.id)  # in an async env's subprocess too
                try:
                    env = gym.make(self.id, **self.kwargs, **extra)
                except (gym.error.Error, TypeError) as e:
                    raise EnvSpecError(f"env {self.id!r} cannot be made with kwargs {self.kwargs}: {e}") from None
            elif self.instance is not None:
                env = self.instance
            else:
                try:
                    env = self.factory(**self.kwargs, **extra)
                except TypeError as e:
                    if extra and "render_mode" in str(e):
                        raise EnvSpecError(
                            f"env {self.name!r} takes no render_mode: it cannot record a video"
                        ) from None
                    raise EnvSpecError(f"env factory {self.name!r} failed with kwargs {self.kwargs}: {e}") from None
        if not isinstance(env, gym.Env):
            raise EnvSpecError(f"env factory {self.name!r} returned {type(env).__name__}, not a gymnasium.Env")
        for wrapper in self.wrappers:
            env = wrapper.fn(env, **wrapper.kwargs)
            if not isinstance(env, gym.Env):
                raise EnvSpecError(
                    f"wrapper {wrapper.path or wrapper.fn!r} returned {type(env).__name__}, not a gymnasium.Env"
                )
        return env

    def for_evaluation(self) -> EnvSpec:
        """The same env for a separate evaluation: an instance is copied (training closes its own)."""
        if self.instance is None:
            return self
        with contextlib.suppress(Exception):
            return EnvSpec(instance=copy.deepcopy(self.instance), wrappers=self.wrappers)
        return self

    @property
    def builtin(self) -> bool:
        """A gymnasium-registered env of gymnasium's own (the env checker is for users' envs)."""
        if self.id is None or self.wrappers:
            return False
        entry = gym.registry.get(self.id)
        return entry is not None and isinstance(entry.entry_point, str) and entry.entry_point.startswith("gymnasium.")


# -- import paths ----------------------------------------------------------------------------------------


def registering_module(env_id: str) -> str | None:
    """The module of a user's registered env's entry point (importing it registers the id, as a
    package's ``__init__`` does), or None for gymnasium's own envs and ``module:Id`` ids."""
    entry = gym.registry.get(env_id) if ":" not in env_id else None
    if entry is None:
        return None
    point = entry.entry_point
    module = point.split(":", 1)[0] if isinstance(point, str) else getattr(point, "__module__", None)
    if not module or module == "__main__" or module.startswith("gymnasium") or not _DOTTED.match(module):
        return None
    return module


def import_path(obj: Any) -> str | None:
    """``"module:qualname"`` when importing it gives back this very object, else ``None``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        found = resolve_path(f"{module}:{qualname}", allow_imports=False)
    except EnvSpecError:
        return None
    return f"{module}:{qualname}" if found is obj else None


def resolve_path(path: str, allow_imports: bool = True) -> Any:
    """The object at ``"module:qualname"`` (both dotted names); imports the module if allowed."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise EnvSpecError(f"{path!r} is not a 'module:Name' import path")
    module_name, qualname = path.split(":")
    if not _DOTTED.match(module_name) or not _DOTTED.match(qualname):
        raise EnvSpecError(f"{path!r} is not a 'module:Name' import path of plain dotted names")
    try:
        module = importlib.import_module(module_name) if allow_imports else _loaded(module_name)
    except ImportError as e:
        raise EnvSpecError(f"cannot import {module_name!r} for {path!r}: {e}") from None
    obj = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise EnvSpecError(f"{path!r}: {module_name!r} has no {qualname!r}")
        obj = getattr(obj, part)
    return obj


def recorded_callable(path: Any) -> Callable:
    """A factory or wrapper a run directory names: a plain dotted ``module:Name`` outside Python's
    standard library, and a Python class or function, never a builtin. ``pgrad eval RUN`` calls it,
    so a crafted run directory cannot name ``os:system`` or ``builtins:exec``; it still runs the
    code of the packages it names, as evaluating one's own run must (evaluate runs you trust)."""
    if not isinstance(path, str) or _stdlib(path.split(":", 1)[0]):
        raise EnvSpecError(f"the recorded import path {path!r} is not a 'module:Name' of a user's package")
    target = resolve_path(path)
    if not (inspect.isclass(target) or inspect.isfunction(target)):
        raise EnvSpecError(f"the recorded {path!r} is not a class or a Python function")
    return target


def _stdlib(module: str) -> bool:
    return module.split(".", 1)[0] in sys.stdlib_module_names


def _kwargs_ok(kwargs: Any) -> bool:
    return isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)


def _loaded(module_name: str):
    if module_name not in sys.modules:
        raise ImportError("not imported")
    return sys.modules[module_name]


def to_wrapper(item: Any) -> Wrapper:
    if isinstance(item, Wrapper):
        return item
    if isinstance(item, str):
        return parse_wrapper(item)
    if isinstance(item, tuple) and len(item) == 2 and callable(item[0]) and isinstance(item[1], dict):
        return Wrapper(item[0], dict(item[1]))
    if callable(item):
        return Wrapper(item)
    raise EnvSpecError(
        f"wrapper {item!r} is invalid: a callable env -> env, a (callable, kwargs) pair or 'module:Name'"
    )


def parse_wrapper(text: str) -> Wrapper:
    """``"module:Name"`` or ``"module:Name:k=v,k2=v2"`` (values typed as Python literals or JSON)."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise EnvSpecError(f"--wrapper {text!r} is invalid: write module:Name or module:Name:key=value,...")
    fn = resolve_path(f"{parts[0]}:{parts[1]}")
    if not callable(fn):
        raise EnvSpecError(f"--wrapper {text!r}: {parts[1]} is not callable")
    kwargs = parse_kwargs(parts[2].split(",")) if len(parts) == 3 and parts[2] else {}
    return Wrapper(fn, kwargs)


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b=True", "c=[1, 2]", "d=text"]`` → typed values (Python literal, JSON, else str);
    a single JSON object is accepted too."""
    if len(items) == 1 and items[0].strip().startswith("{"):
        try:
            data = json.loads(items[0])
        except json.JSONDecodeError as e:
            raise EnvSpecError(f"--env-kwargs {items[0]!r} is not valid JSON ({e})") from None
        return data
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise EnvSpecError(f"env kwarg {item!r} is invalid: write key=value")
        kwargs[key.strip()] = _typed(value.strip())
    return kwargs


def _typed(value: str) -> Any:
    for parse in (ast.literal_eval, json.loads):
        with contextlib.suppress(ValueError, SyntaxError, json.JSONDecodeError, TypeError, MemoryError):
            return parse(value)
    return value


# -- ids -------------------------------------------------------------------------------------------------


def check_env_id(env_id: str) -> None:
    """An id gymnasium can make: registered, or ``"module:Id"`` whose module registers it (imported
    here, as gymnasium's ``make`` does). A ``ValueError`` names close matches otherwise."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env={env_id!r} is invalid: must be a registered gymnasium env id such as 'CartPole-v1'")
    if ":" in env_id:
        module, _, bare = env_id.partition(":")
        if not _DOTTED.match(module):
            raise ValueError(f"env={env_id!r} is invalid: 'module:EnvId' needs a dotted module name")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"env={env_id!r}: cannot import {module!r} ({e})") from None
        if bare not in gym.registry:
            raise ValueError(f"env={env_id!r}: importing {module!r} registered no env {bare!r}")
        return
    if env_id in gym.registry or ensure_registered(env_id):
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else " `pgrad list` shows the tested ones."
    raise ValueError(f"unknown env id {env_id!r}.{hint}")


def is_atari(env_id: str) -> bool:
    """An Arcade Learning Environment id: ``ALE/Breakout-v5`` or the ``BreakoutNoFrameskip-v4`` style."""
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def ensure_registered(env_id: str) -> bool:
    """Register the Atari ids by importing ``ale_py`` (the optional ``pgrad[atari]`` extra) when
    ``env_id`` is one of them; whether ``env_id`` is registered now. A ``ValueError`` says what
    to install when ``ale_py`` is missing."""
    if env_id in gym.registry:
        return True
    if not is_atari(env_id):
        return False
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:
        raise ValueError(
            f"env {env_id!r} is an Atari game: install the Arcade Learning Environment with pip install "
            "'pgrad[atari]' (or pip install ale-py)"
        ) from None
    return env_id in gym.registry


@contextlib.contextmanager
def missing_packages(env_name: str):
    """An env whose optional package is not installed: a ``ValueError`` naming the package."""
    try:
        yield
    except gym.error.DependencyNotInstalled as e:
        raise ValueError(f"env {env_name!r} needs a package that is not installed: {e}") from None
    except ModuleNotFoundError as e:
        name = getattr(e, "name", None) or str(e)
        raise ValueError(
            f"env {env_name!r} needs the Python package {name!r}, which is not installed (pip install {name})"
        ) from None


def check_user_env(spec: EnvSpec, check_spaces: Callable[[gym.Space, gym.Space, str], None] | None = None) -> None:
    """gymnasium's env checker on one instance of a user's env: a ``ValueError`` names the env and
    the check that failed (``check_env=False`` / ``--no-check-env`` skips it). ``check_spaces``
    runs first: a space pgrad does not take is the clearer message."""
    from gymnasium.utils.env_checker import check_env

    env = spec.make() if spec.instance is None else spec.instance
    try:
        if check_spaces is not None:
            check_spaces(env.observation_space, env.action_space, spec.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice (e.g. float64 bounds) is not an error
            check_env(env.unwrapped, skip_render_check=True)
    except (AssertionError, TypeError, ValueError, AttributeError, NotImplementedError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EnvSpecError(
            f"env {spec.name!r} fails gymnasium's env checker: {reason} (check_env=False / --no-check-env skips it)"
        ) from None
    finally:
        if spec.instance is None:
            env.close()
