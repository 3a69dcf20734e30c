"""The reverse-diffusion loop over any denoiser, and decoding to pixels."""

from collections.abc import Callable

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    SchedulerMixin,
)
from torch import Tensor

from unsee.sampling.denoiser import Denoiser

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, config: dict) -> SchedulerMixin:
    """A fresh scheduler of kind `name` with the model's noise schedule."""
    return SCHEDULERS[name].from_config(config)


def initial_noise(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device, dtype
) -> Tensor:
    """x_T, one row per generator, drawn on the CPU so every device gets the same noise."""
    return torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(device, dtype)


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    x_T: Tensor,
    num_steps: int,
    generators: list[torch.Generator],
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """Run the reverse process from x_T (B, C, h, w) to x_0 with `num_steps` scheduler steps.

    generators: one per image, for stochastic schedulers (DDPM, eta > 0), so each image's
    randomness is its own whatever the batch.
    """
    scheduler.set_timesteps(num_steps, device=x_T.device)
    x = x_T * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        # 1. scale the input as the scheduler expects (identity for DDIM/DDPM)
        x_in = scheduler.scale_model_input(x, t)
        # 2. predict the noise eps_theta(x_t, t)
        eps = denoiser(x_in, t)
        # 3. x_t -> x_{t-1}
        x = scheduler.step(eps, t, x, generator=generators).prev_sample
        if on_step is not None:
            on_step(i)
    return x


@torch.no_grad()
def decode(vae: torch.nn.Module | None, x0: Tensor, per_sample: bool = False) -> Tensor:
    """Latents (or pixels, when vae is None) -> uint8 images (B, H, W, 3)."""
    if vae is not None:
        z = x0 / vae.config.scaling_factor
        if per_sample:
            x0 = torch.cat([vae.decode(z[i : i + 1]).sample for i in range(z.shape[0])])
        else:
            x0 = vae.decode(z).sample
    images = (x0.float() / 2 + 0.5).clamp(0, 1)
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
