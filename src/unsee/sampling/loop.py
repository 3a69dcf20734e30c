"""The reverse-diffusion loop over any denoiser, and decoding to pixels."""

from collections.abc import Callable
from inspect import signature

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    SchedulerMixin,
)
from torch import Tensor

from unsee.sampling.denoiser import Denoiser, in_chunks

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, config: dict) -> SchedulerMixin:
    """A fresh scheduler of kind `name` with the model's noise schedule."""
    return SCHEDULERS[name].from_config(config)


def to_device(x: Tensor, device: torch.device | str) -> Tensor:
    """A host tensor on `device`; to a GPU through pinned memory without waiting for it (a
    plain copy from pageable memory waits until the GPU has finished its queued work)."""
    device = torch.device(device)
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def initial_noise(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device, dtype
) -> Tensor:
    """x_T, one row per generator, drawn on the CPU so every device gets the same noise."""
    noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
    return to_device(noise, device).to(dtype)


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    x_T: Tensor,
    num_steps: int,
    generators: list[torch.Generator],
    on_step: Callable[[int], None] | None = None,
    recurrence: int = 1,
) -> Tensor:
    """Run the reverse process from x_T (B, C, h, w) to x_0 with `num_steps` scheduler steps.

    generators: one per image, for stochastic schedulers (DDPM, eta > 0) and recurrence, so
    each image's randomness is its own whatever the batch.
    recurrence: R passes per step (Yoon et al. 2023): after x_t -> x_{t-1}, re-noise x_{t-1}
    back to x_t with fresh noise and step again, R - 1 times (not on the last step).
    """
    if recurrence > 1 and not isinstance(scheduler, DDIMScheduler | DDPMScheduler):
        raise ValueError("recurrence needs a DDIM or DDPM scheduler (stateless steps)")
    scheduler.set_timesteps(num_steps, device=x_T.device)
    timesteps = scheduler.timesteps
    # PNDM and some others take no generator (they are deterministic)
    extra = {"generator": generators} if "generator" in signature(scheduler.step).parameters else {}
    # the network reads t on the device; the scheduler's arithmetic reads it on the host,
    # where indexing its tables does not wait for the GPU (a device t would, every step)
    host = timesteps.cpu()
    abar = scheduler.alphas_cumprod.cpu()
    x = x_T * scheduler.init_noise_sigma
    for i, t in enumerate(timesteps):
        passes = recurrence if i + 1 < len(timesteps) else 1
        for r in range(passes):
            # 1. scale the input as the scheduler expects (identity for DDIM/DDPM)
            x_in = scheduler.scale_model_input(x, host[i])
            # 2. predict the noise eps_theta(x_t, t)
            eps = denoiser(x_in, t)
            # 3. x_t -> x_{t-1}
            x_prev = scheduler.step(eps, host[i], x, **extra).prev_sample
            if r + 1 < passes:
                # 4. recurrence: x_{t-1} -> x_t with fresh noise, then step again
                noise = initial_noise(x.shape[1:], generators, x.device, x.dtype)
                x = renoise(x_prev, abar[host[i]], abar[host[i + 1]], noise)
            else:
                x = x_prev
        if on_step is not None:
            on_step(i)
    return x


def renoise(x_prev: Tensor, abar_t: Tensor, abar_prev: Tensor, noise: Tensor) -> Tensor:
    """Recurrence ("time travel"): take x_{t-1} back to x_t with fresh noise z,
    x_t = sqrt(abar_t / abar_prev) x_{t-1} + sqrt(1 - abar_t / abar_prev) z."""
    alpha = abar_t / abar_prev
    return alpha.sqrt() * x_prev + (1 - alpha).sqrt() * noise


@torch.no_grad()
def decode(vae: torch.nn.Module | None, x0: Tensor, chunk: int | None = None) -> Tensor:
    """Latents (or pixels, when vae is None) -> uint8 images (B, H, W, 3); chunk: images
    per VAE call (fixed for batch invariance, see sampling.denoiser)."""
    if vae is not None:
        # in the VAE's dtype: an fp16 SDXL keeps its VAE in fp32 (models.load)
        z = (x0 / vae.config.scaling_factor).to(vae.dtype)
        x0 = in_chunks(lambda i: vae.decode(z[i]).sample, z.shape[0], chunk, z.device)
    images = (x0.float() / 2 + 0.5).clamp(0, 1)
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
