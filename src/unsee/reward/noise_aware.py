"""The noise-aware backbone: r(x_t, t) on noisy samples, for classic guidance.

It reads the diffusion model's own sample space (latents of a latent model, pixels of an
unconditional one) at a timestep t, so it must match the model it guides: shape and
noise schedule are recorded in its config and checked.
"""

import math

import torch
from torch import Tensor, nn

from unsee.reward.cnn import _block


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of timesteps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class NoiseAwareReward(nn.Module):
    """(x_t (B, C, h, w), t (B,)) -> reward logit (B,)."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.t_embed = nn.Sequential(nn.Linear(64, 2 * w), nn.SiLU(), nn.Linear(2 * w, 2 * w))
        self.stem = _block(channels, 2 * w)
        self.body = nn.Sequential(
            nn.AvgPool2d(2), _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.out = nn.Linear(4 * w, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        h = self.stem(x) + self.t_embed(timestep_embedding(t, 64))[:, :, None, None]
        if h.shape[-1] < 2:  # tiny inputs: no pooling
            h = h.repeat(1, 1, 2, 2)
        return self.out(self.body(h)).squeeze(-1)
