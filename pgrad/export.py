"""``pgrad export``: a saved agent's deterministic policy as one ONNX or TorchScript file.

The exported graph is everything ``agent.act(obs, deterministic=True)`` does, so a deployment
needs neither pgrad nor its config:

    observation (as the env gives it, a batch)
      → stored form (an index minus the space's start; the dtype the network takes)
      → normalisation  clip((o − μ) / √(σ² + ε), ±c)  with the statistics frozen at save time
      → the policy's mode (Gaussian mean, tanh(μ) for SAC, argmax for categorical, l > 0 for Bernoulli)
      → the action map (clip to the Box, or rescale (−1, 1) onto [low, high]; + start for indices;
        the space's shape and dtype)

Input ``obs`` is ``[batch, *observation shape]``; output ``action`` is ``[batch, *action shape]``
(``[batch]`` for Discrete). Observations of several arrays (Dict, Tuple) are not exported yet.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pgrad.agent import Agent
from pgrad.spaces import describe

FORMATS = ("onnx", "torchscript")


class DeployedPolicy(nn.Module):
    """``agent.act(obs, deterministic=True)`` for a batch, as one traceable module."""

    def __init__(self, agent: Agent):
        super().__init__()
        layout, norm, amap = agent.layout, agent.normalizer, agent.action_map
        if agent.recurrent:
            raise ValueError(
                f"pgrad export takes feed-forward policies; this one is recurrent (rnn={agent.policy.spec['rnn']!r}) "
                "and needs its state carried between calls: use agent.act(obs, state=..., episode_start=...) in Python"
            )
        if layout.packed or len(layout.leaves) != 1:
            raise ValueError(
                f"pgrad export takes agents of one observation array; this one observes "
                f"{describe(agent.observation_space)} (a Dict/Tuple of {len(layout.leaves)}): use agent.act in Python"
            )
        leaf = layout.leaves[0]
        self.policy = copy.deepcopy(agent.policy).cpu().eval().requires_grad_(False)  # the agent stays as it is
        self.obs_dtype = torch_dtype(leaf.dtype)  # what the network takes (int64 indices, uint8 images, float32)
        self.obs_shape = tuple(leaf.shape)  # as stored: a Discrete index is a 1-vector
        self.shift = leaf.start is not None  # an index space's start, subtracted as the layout stores it
        if self.shift:
            self.register_buffer("obs_start", torch.as_tensor(np.asarray(leaf.start, np.int64)))
        self.normalize = bool(norm.normalize_obs and layout.numeric_shape)
        if self.normalize:  # in float64, as the normaliser computes it
            self.register_buffer("mean", torch.as_tensor(norm.obs_rms.mean, dtype=torch.float64))
            self.register_buffer("std", torch.as_tensor(np.sqrt(norm.obs_rms.var + norm.epsilon), dtype=torch.float64))
            self.clip_obs = float(norm.clip_obs)
        self.kind, self.mode, self.shape = amap.kind, amap.mode, tuple(amap.shape)
        self.out_dtype = torch_dtype(amap.dtype)
        if self.kind == "box":
            self.register_buffer("low", torch.as_tensor(amap.low))
            self.register_buffer("high", torch.as_tensor(amap.high))
            self.register_buffer("scale", torch.as_tensor(amap.scale))
            self.register_buffer("bias", torch.as_tensor(amap.bias))
        start = 0 if amap.start is None else amap.start
        self.register_buffer("action_start", torch.as_tensor(np.asarray(start, np.int64)))

    def forward(self, obs: Tensor) -> Tensor:
        x = (
            (obs.to(torch.int64) - self.obs_start if self.shift else obs)
            .to(self.obs_dtype)
            .reshape(-1, *self.obs_shape)
        )
        if self.normalize:
            x = ((x.to(torch.float64) - self.mean) / self.std).clamp(-self.clip_obs, self.clip_obs).to(torch.float32)
        action = self.policy.predict(x, True)
        if self.kind == "box":
            if self.mode == "clip":
                action = torch.minimum(torch.maximum(action, self.low), self.high)
            else:
                action = self.bias + self.scale * action.clamp(-1.0, 1.0)
            return action.reshape(-1, *self.shape)
        action = action.to(torch.int64) + self.action_start
        return action.to(self.out_dtype).reshape(-1, *self.shape)


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def example_input(agent: Agent, batch: int = 2) -> Tensor:
    """A batch of observations of the agent's space (its shape and dtype), for tracing."""
    samples = [agent.observation_space.sample() for _ in range(batch)]
    return torch.as_tensor(np.stack([np.asarray(s) for s in samples]))


def export(agent: Agent, output: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write the agent's deterministic policy to ``output`` (``.onnx``, or TorchScript's ``.pt``);
    ``fmt`` overrides the format the suffix names."""
    output = Path(output)
    fmt = fmt or ("onnx" if output.suffix.lower() == ".onnx" else "torchscript")
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is invalid: must be one of {', '.join(FORMATS)}")
    if not output.parent.is_dir():
        raise ValueError(f"output={str(output)!r} is invalid: the directory {str(output.parent)!r} does not exist")
    module = DeployedPolicy(agent)
    example = example_input(agent)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice
            traced = torch.jit.trace(module, (example,), check_trace=False)
        traced.save(str(output))
        return output
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ValueError("pgrad export --format onnx needs onnx and onnxscript: pip install 'pgrad[export]'") from None
    batch = torch.export.Dim("batch", min=1)
    with quiet():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=["obs"],
            output_names=["action"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.save(str(output), external_data=False)
    return output


@contextlib.contextmanager
def quiet():
    """The exporter's own progress messages and warnings (torchvision ops it skips, ...) are not
    the user's business; its errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
