"""Reward guidance (censored sampling, Yoon et al. 2023) as plain functions over (x_t, t, eps).

Notation: abar_t is the scheduler's cumulative alpha at t, x_t = sqrt(abar_t) x_0 +
sqrt(1 - abar_t) eps. A reward gives log p(benign | x) = sum_i log sigmoid(r_i(x)) (an
ensemble is a product of probabilities). Every guidance shifts the noise estimate

    eps <- eps - sqrt(1 - abar_t) * w * grad_{x_t} log p(benign)

so that the sampler, whichever it is, steps towards benign samples:
  classic   the gradient of a noise-aware reward r(x_t, t)
  forward   the gradient, taken back to x_t, of the reward of the predicted clean sample
            x0_hat(x_t) (decoded by the VAE for latent models): universal guidance
  backward  B steps of Adam on x0_hat itself, then eps recomputed from the refined x0
and recurrence re-noises x_{t-1} back to x_t and repeats the step (sampling.loop.sample).

`guided_denoiser` wraps any denoiser eps(x, t) with these, as k-diffusion wraps models.
Gradients are per sample: each image's shift depends only on that image.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from unsee.sampling.denoiser import Denoiser

# x0 (B, C, h, w) -> log p(benign) (B,), differentiable; for noise-aware rewards (x_t, t).
LogProb = Callable[[Tensor], Tensor]
NoisyLogProb = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Guidance:
    """How strongly and where guidance acts.

    scale: w of the eps shift (forward or classic guidance); 0 turns it off.
    backward_steps, backward_lr: Adam steps on x0_hat (0: no backward guidance).
    window: guidance acts only while t / T lies in [window[0], window[1]].
    schedule: "constant" w; "linear" w * t/T (strong early, fading); "late" w * (1 - t/T).
    through_unet: forward guidance differentiates through the U-Net (exact gradient of
        the reward of x0_hat(x_t)); False treats eps as constant (cheaper, no U-Net backward).
    clamp: range of x0_hat for backward guidance (pixel models), None for latents.
    """

    scale: float = 0.0
    backward_steps: int = 0
    backward_lr: float = 0.1
    window: tuple[float, float] = (0.0, 1.0)
    schedule: str = "constant"
    through_unet: bool = True
    clamp: tuple[float, float] | None = None


def x0_from_eps(x_t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)   (Ho et al. 2020, eq. 15)."""
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def eps_from_x0(x_t: Tensor, x0: Tensor, abar: Tensor) -> Tensor:
    """The eps that makes x0 the prediction at x_t: (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
    return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def scale_at(g: Guidance, t: float, num_train_timesteps: int) -> float:
    """w at timestep t under the window and schedule (0 outside the window)."""
    frac = float(t) / num_train_timesteps
    if not g.window[0] <= frac <= g.window[1]:
        return 0.0
    if g.schedule == "linear":
        return g.scale * frac
    if g.schedule == "late":
        return g.scale * (1 - frac)
    return g.scale


def classic_shift(
    x_t: Tensor, t: Tensor, eps: Tensor, abar: Tensor, log_prob: NoisyLogProb, w: float
) -> Tensor:
    """Classic guidance: eps - sqrt(1 - abar) w grad_{x_t} log p(benign | x_t, t)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_prob(x, t).sum(), x)
    return eps - (1 - abar).sqrt() * w * grad


def forward_shift(
    x_t: Tensor,
    t: Tensor,
    denoiser: Denoiser,
    abar: Tensor,
    log_prob: LogProb,
    w: float,
    through_unet: bool = True,
) -> tuple[Tensor, Tensor]:
    """Forward (universal) guidance; returns (shifted eps, eps).

    1. eps = eps_theta(x_t, t), with x_t tracked when through_unet
    2. x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    3. g = grad_{x_t} log p(benign | x0_hat)   (sum over the batch: each row's own gradient)
    4. eps' = eps - sqrt(1 - abar) w g
    """
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        eps = denoiser(x, t) if through_unet else denoiser(x_t, t).detach()
        x0 = x0_from_eps(x, eps, abar)
        (grad,) = torch.autograd.grad(log_prob(x0).sum(), x)
    eps = eps.detach()
    return eps - (1 - abar).sqrt() * w * grad, eps


def backward_refine(
    x0: Tensor,
    log_prob: LogProb,
    steps: int,
    lr: float,
    clamp: tuple[float, float] | None = None,
) -> Tensor:
    """Backward guidance: `steps` steps of Adam on x0 minimising -log p(benign | x0).

    Adam's moments are per element, so each row moves on its own gradient.
    """
    x0 = x0.detach()
    if clamp is not None:
        x0 = x0.clamp(*clamp)
    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            x = x0 + delta
            loss = -log_prob(x).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if clamp is not None:
                with torch.no_grad():
                    delta.copy_((x0 + delta).clamp(*clamp) - x0)
    return (x0 + delta).detach()


def guided_denoiser(
    denoiser: Denoiser,
    alphas_cumprod: Tensor,
    guidance: Guidance,
    log_prob: LogProb | None = None,
    noisy_log_prob: NoisyLogProb | None = None,
) -> Denoiser:
    """eps(x_t, t) with reward guidance: classic (noisy_log_prob) or forward and/or backward
    (log_prob of the clean sample). The sampler calls it like the plain denoiser."""
    if (log_prob is None) == (noisy_log_prob is None):
        raise ValueError("give exactly one of log_prob (clean sample) or noisy_log_prob")
    train_steps = len(alphas_cumprod)

    def eps_fn(x: Tensor, t: Tensor) -> Tensor:
        abar = alphas_cumprod[int(t)].to(x.device, torch.float32)
        w = scale_at(guidance, int(t), train_steps)
        active = guidance.window[0] <= int(t) / train_steps <= guidance.window[1]
        if noisy_log_prob is not None:
            eps = denoiser(x, t)
            return classic_shift(x, t, eps, abar, noisy_log_prob, w).to(x.dtype) if w else eps
        # 1. forward guidance (or the plain estimate)
        if w:
            eps, _ = forward_shift(x, t, denoiser, abar, log_prob, w, guidance.through_unet)
        else:
            eps = denoiser(x, t)
        # 2. backward guidance on the predicted clean sample, then eps from the refined x0
        if guidance.backward_steps and active:
            x0 = x0_from_eps(x.float(), eps.float(), abar)
            x0 = backward_refine(
                x0, log_prob, guidance.backward_steps, guidance.backward_lr, guidance.clamp
            )
            eps = eps_from_x0(x.float(), x0, abar)
        return eps.to(x.dtype)

    return eps_fn
