"""Observation encoders: stored observations (``pgrad.spaces``) → a flat feature vector for an MLP.

Each leaf of the observation is encoded on its own and the encodings are concatenated, as
Stable-Baselines3's ``CombinedExtractor`` does:

- an image goes through a CNN, scaled by 1/255 inside the network when it is uint8: the Nature
  CNN of DQN and Atari PPO (Mnih et al. 2015: 32·8×8/4, 64·4×4/2, 64·3×3/1, then 512 units,
  ReLU, orthogonal init with gain √2) where the image is at least 36×36, else a small CNN that
  keeps the size (16·3×3/1 and 32·3×3/1 with padding 1, then 256 units), for grids such as
  MiniGrid's 7×7 that the Nature CNN's strides would shrink to nothing;
- a Box is flattened, a Discrete one-hot, a MultiDiscrete the concatenation of one one-hot per
  index, a MultiBinary read as floats.

A plain vector observation (``ObsLayout.trivial`` of one dimension) needs no encoder: the networks
then take the observation itself, as before encoders existed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgrad.spaces import Leaf, ObsLayout

NATURE_MIN_SIZE = 36  # 36×36 → 8×8 → 3×3 → 1×1 through the Nature CNN's three convolutions


def needs_encoder(layout: ObsLayout) -> bool:
    return not (layout.trivial and len(layout.shape) == 1)


def _conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
    nn.init.orthogonal_(conv.weight, math.sqrt(2.0))
    nn.init.zeros_(conv.bias)
    return conv


class ImageEncoder(nn.Module):
    """A CNN over one image leaf ``[B, H, W, C]`` or ``[B, C, H, W]`` → ``[B, out_dim]``."""

    def __init__(self, leaf: Leaf):
        super().__init__()
        shape = leaf.shape
        self.channels_first, self.scale = leaf.channels_first, leaf.dtype == "uint8"
        c, h, w = shape if leaf.channels_first else (shape[2], shape[0], shape[1])
        if min(h, w) >= NATURE_MIN_SIZE:
            self.kind, self.out_dim = "nature", 512
            convs = [_conv(c, 32, 8, 4), nn.ReLU(), _conv(32, 64, 4, 2), nn.ReLU(), _conv(64, 64, 3, 1), nn.ReLU()]
        else:
            self.kind, self.out_dim = "small", 256
            convs = [_conv(c, 16, 3, 1, 1), nn.ReLU(), _conv(16, 32, 3, 1, 1), nn.ReLU()]
        self.cnn = nn.Sequential(*convs, nn.Flatten())
        for conv in convs[::2]:  # the size after each convolution: ⌊(h + 2p − k) / s⌋ + 1
            (k, _), (st, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
            h, w = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
        n_flat = convs[-2].out_channels * h * w
        self.linear = nn.Linear(n_flat, self.out_dim)
        nn.init.orthogonal_(self.linear.weight, math.sqrt(2.0))
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        x = x.float()
        if self.scale:
            x = x / 255.0
        return F.relu(self.linear(self.cnn(x)))


class ObsEncoder(nn.Module):
    """Every leaf encoded and concatenated: stored observations ``[B, *layout.shape]`` → ``[B, out_dim]``."""

    def __init__(self, layout: ObsLayout):
        super().__init__()
        self.layout = layout
        self.images = nn.ModuleDict(
            {str(i): ImageEncoder(leaf) for i, leaf in enumerate(layout.leaves) if leaf.kind == "image"}
        )
        self.out_dim = sum(
            self.images[str(i)].out_dim if leaf.kind == "image" else leaf.features
            for i, leaf in enumerate(layout.leaves)
        )

    def forward(self, obs: Tensor) -> Tensor:
        parts = []
        for i, (leaf, x) in enumerate(zip(self.layout.leaves, self.layout.unpack(obs), strict=True)):
            if leaf.kind == "image":
                parts.append(self.images[str(i)](x))
            elif leaf.kind in ("discrete", "multi_discrete"):
                parts += [F.one_hot(x[..., j], n).float() for j, n in enumerate(leaf.sizes)]
            else:
                parts.append(x.float().flatten(-len(leaf.shape)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
