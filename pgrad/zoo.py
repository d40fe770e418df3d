"""RL-Zoo hyperparameter files: ``pgrad train ALGO --zoo-file hyperparams/ppo.yml --env ENV``.

An RL Zoo YAML file holds one entry per env id (``atari`` for every Atari game); an entry's keys
are SB3's hyperparameters, which are pgrad's config fields of the same names, plus the Zoo's
own keys, translated here:

============================  ===========================================================
Zoo key                       pgrad
============================  ===========================================================
``n_timesteps``               ``total_steps``
``policy``                    checked (Mlp/Cnn/MultiInputPolicy): pgrad picks the encoders
                              from the observation space; sb3-contrib's ``*LstmPolicy``
                              (RecurrentPPO, ``ppo_lstm.yml``) → ``rnn="lstm"``
``policy_kwargs``             ``net_arch`` → ``hidden_sizes`` (+ ``vf_hidden_sizes`` /
                              ``critic_hidden_sizes`` for ``dict(pi=..., vf=/qf=...)``),
                              ``activation_fn`` → ``activation``, ``log_std_init``,
                              ``ortho_init``; ``lstm_hidden_size``, ``n_lstm_layers``,
                              ``shared_lstm`` → ``rnn_hidden_size``, ``rnn_layers``,
                              ``rnn_shared``
``normalize``                 ``normalize_obs``, ``normalize_reward`` (``true``: both)
``env_kwargs``                the env's keyword arguments
``frame_stack``               ``frame_stack``
``env_wrapper``               wrappers (SB3's ``AtariWrapper``: ``preprocess="atari"``)
``lin_<x>``                   ``x`` with a linear schedule (learning_rate, clip_range)
``train_freq: [n, episode]``  ``train_freq=n``, ``train_freq_unit="episode"``
``noise_type``                ``noise`` (normal, ou)
``use_rms_prop``              ``optimizer`` (rmsprop, adam)
``ent_coef: auto[_x]``        ``ent_coef=None`` (learned), ``ent_coef_init=x``
``sub_sampling_factor: 1``    TRPO's step on every sample, as pgrad's always is (others refused)
============================  ===========================================================

Anything else — a key pgrad has no counterpart for (SAC's ``use_sde``, ``replay_buffer_class``, a
policy_kwargs entry such as ``optimizer_class``) — is a one-line error naming it, never ignored.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrad.envspec import Wrapper, is_atari, resolve_path

ZOO_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "SiLU": "silu"}
POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
LSTM_POLICIES = ("MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy")  # sb3-contrib's RecurrentPPO
RNN_KWARGS = {"lstm_hidden_size": "rnn_hidden_size", "n_lstm_layers": "rnn_layers", "shared_lstm": "rnn_shared"}
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
SCHEDULED = {"learning_rate": "lr_schedule", "clip_range": "clip_range_schedule"}


class ZooError(ValueError):
    """A Zoo file or entry pgrad cannot translate; the message names the key."""


@dataclass
class ZooEntry:
    """An entry translated: config fields, the env's kwargs and wrappers, and where it came from."""

    fields: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: list[Wrapper] = field(default_factory=list)
    name: str = ""


def read_zoo(path: str | Path, algo: str, env_id: str, config_class: type) -> ZooEntry:
    """The entry for ``env_id`` (or ``atari`` for an Atari id) of the Zoo file ``path``, translated
    to ``config_class``'s fields."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"--zoo-file {str(path)!r} is invalid: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ZooError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ZooError(f"{path} is not an RL Zoo hyperparameter file (env id: {{hyperparameter: value}} entries)")
    key = env_id if env_id in data or not is_atari(env_id) else "atari"
    if key not in data:
        close = difflib.get_close_matches(env_id, [str(k) for k in data], n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" It has: {', '.join(map(str, data))[:300]}"
        raise ZooError(f"{path} has no entry for {env_id!r}.{hint}")
    entry = translate(data[key], algo, config_class)
    entry.name = f"{path}#{key}"
    return entry


def translate(raw: dict[str, Any], algo: str, config_class: type) -> ZooEntry:
    fields = {f.name for f in dataclasses.fields(config_class)}
    entry = ZooEntry()
    out = entry.fields

    def put(name: str, value: Any, zoo_key: str) -> None:
        if name not in fields:
            raise ZooError(f"zoo key {zoo_key!r}: {algo} has no {name!r} field")
        out[name] = value

    for key, value in raw.items():
        if key == "n_timesteps":
            put("total_steps", _integer(key, value), key)
        elif key == "policy":
            if value in LSTM_POLICIES:
                put("rnn", "lstm", key)
            elif value not in POLICIES:
                raise ZooError(
                    f"zoo key 'policy: {value}' is not supported: pgrad takes {', '.join(POLICIES + LSTM_POLICIES)}"
                )
        elif key == "policy_kwargs":
            for name, v in policy_kwargs(value, algo).items():
                put(name, v, f"policy_kwargs.{name}")
        elif key == "normalize":
            for name, v in normalize(value).items():
                put(name, v, key)
        elif key == "env_kwargs":
            if not isinstance(value, dict):
                raise ZooError(f"zoo key 'env_kwargs: {value!r}' is invalid: a mapping of keyword arguments")
            entry.env_kwargs = dict(value)
        elif key == "frame_stack":
            put("frame_stack", _integer(key, value), key)
        elif key == "env_wrapper":
            for name, kwargs in wrappers(value):
                if name == ATARI_WRAPPER:
                    if kwargs:
                        raise ZooError(f"zoo key 'env_wrapper: {name}' with arguments {kwargs} is not supported")
                    put("preprocess", "atari", key)
                else:
                    module, _, attr = name.rpartition(".")
                    entry.wrappers.append(Wrapper(resolve_path(f"{module}:{attr}"), kwargs))
        elif key == "train_freq" and isinstance(value, list):
            if len(value) != 2 or value[1] not in ("step", "episode"):
                raise ZooError(f"zoo key 'train_freq: {value}' is invalid: [n, 'step'] or [n, 'episode']")
            put("train_freq", _integer(key, value[0]), key)
            put("train_freq_unit", value[1], key)
        elif key == "noise_type":
            names = {"normal": "normal", "ornstein-uhlenbeck": "ou"}
            if value not in names:
                raise ZooError(f"zoo key 'noise_type: {value}' is not supported: {', '.join(names)}")
            put("noise", names[value], key)
        elif key == "sub_sampling_factor" and algo == "trpo":  # sb3-contrib's TRPO: every k-th sample for its step
            if _integer(key, value) != 1:
                raise ZooError(
                    f"zoo key 'sub_sampling_factor: {value}' is not supported: pgrad's trpo takes every sample (1)"
                )
        elif key == "use_rms_prop":
            put("optimizer", "rmsprop" if value else "adam", key)
        elif key == "ent_coef" and isinstance(value, str) and value.startswith("auto"):
            put("ent_coef", None, key)
            if value != "auto":
                put("ent_coef_init", _number(key, value.removeprefix("auto_")), key)
        elif isinstance(value, str) and value.startswith("lin_") and key in SCHEDULED:
            put(key, _number(key, value.removeprefix("lin_")), key)
            put(SCHEDULED[key], "linear", key)
        elif key in fields:
            out[key] = tuple(value) if isinstance(value, list) else value
        else:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ZooError(f"zoo key {key!r} is not supported by pgrad's {algo}{hint}")
    return entry


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ZooError(f"zoo key '{key}: {value!r}' is invalid: an integer")
    return int(value)


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ZooError(f"zoo key {key!r}: {text!r} is not a number") from None


def normalize(value: Any) -> dict[str, bool]:
    """``true``/``false``, or a dict (or its Python text) of VecNormalize's norm_obs / norm_reward."""
    if isinstance(value, bool):
        return {"normalize_obs": value, "normalize_reward": value}
    kwargs = python_value("normalize", value) if isinstance(value, str) else value
    if not isinstance(kwargs, dict) or set(kwargs) - {"norm_obs", "norm_reward"}:
        raise ZooError(f"zoo key 'normalize: {value!r}' is not supported: true, false or {{norm_obs, norm_reward}}")
    return {
        "normalize_obs": bool(kwargs.get("norm_obs", True)),
        "normalize_reward": bool(kwargs.get("norm_reward", True)),
    }


def wrappers(value: Any) -> list[tuple[str, dict]]:
    """``env_wrapper``: a name, or a list of names and ``{name: kwargs}`` items."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, kwargs),) = item.items()
            out.append((name, dict(kwargs or {})))
        else:
            raise ZooError(f"zoo key 'env_wrapper: {item!r}' is invalid: a wrapper's import path, or {{path: kwargs}}")
    return out


def policy_kwargs(value: Any, algo: str) -> dict[str, Any]:
    """SB3's policy_kwargs (a dict, or the Python text the Zoo writes) → pgrad's fields."""
    kwargs = python_value("policy_kwargs", value) if isinstance(value, str) else value
    if not isinstance(kwargs, dict):
        raise ZooError(f"zoo key 'policy_kwargs: {value!r}' is invalid: dict(...)")
    out: dict[str, Any] = {}
    for key, v in kwargs.items():
        if key == "net_arch":
            out |= net_arch(v)
        elif key == "activation_fn":
            if v not in ZOO_ACTIVATIONS.values():
                raise ZooError(f"policy_kwargs activation_fn={v} is not supported: nn.{', nn.'.join(ZOO_ACTIVATIONS)}")
            out["activation"] = v
        elif key in ("log_std_init", "ortho_init"):
            out[key] = v
        elif key in RNN_KWARGS:
            out[RNN_KWARGS[key]] = v
        elif key == "enable_critic_lstm":  # True: V's own LSTM, pgrad's default; False: V on π's (shared_lstm)
            if not v and not kwargs.get("shared_lstm"):
                raise ZooError("policy_kwargs enable_critic_lstm=False without shared_lstm is not supported: "
                               "pgrad's critic reads its own recurrent core or π's (rnn_shared)")  # fmt: skip
        else:
            raise ZooError(f"policy_kwargs {key}={v!r} is not supported by pgrad's {algo}")
    return out


def net_arch(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"hidden_sizes": tuple(value)}
    if isinstance(value, dict) and "pi" in value and set(value) <= {"pi", "vf", "qf"} and len(value) <= 2:
        out = {"hidden_sizes": tuple(value["pi"])}
        if "vf" in value:
            out["vf_hidden_sizes"] = tuple(value["vf"])
        if "qf" in value:
            out["critic_hidden_sizes"] = tuple(value["qf"])
        return out
    raise ZooError(f"policy_kwargs net_arch={value!r} is not supported: [sizes], dict(pi=[...], vf=[...] or qf=[...])")


def python_value(key: str, text: str) -> Any:
    """The Zoo's Python text (``dict(net_arch=[64, 64], activation_fn=nn.ReLU)``) read without running
    it: calls of ``dict``, literals, and ``nn.Name`` (an activation's name)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ZooError(f"zoo key {key!r}: {text!r} is not a Python expression") from None
    return _value(key, tree.body)


def _value(key: str, node: ast.AST) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _value(key, kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_value(key, k): _value(key, v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(key, e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(key, node.operand)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute) and node.attr in ZOO_ACTIVATIONS:
        return ZOO_ACTIVATIONS[node.attr]
    raise ZooError(f"zoo key {key!r}: {ast.unparse(node)!r} is not supported (dict(...), numbers, text, nn.ReLU, ...)")
