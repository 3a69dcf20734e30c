"""Diffusers-style pipelines with reward guidance (censored sampling).

    from unsee.guidance.pipelines import CensoredStableDiffusionPipeline
    pipe = CensoredStableDiffusionPipeline.from_pipe(sd_pipe)   # same components, no copy
    images = pipe("a photo of a human", reward="runs/reward", reward_scale=4,
                  num_inference_steps=50, generator=torch.Generator().manual_seed(0)).images

The standard arguments keep their diffusers names; the reward arguments are those of
`unsee censor`. Sampling runs through unsee.sampling (any scheduler; recurrence needs
DDIM or DDPM) with the guided denoiser of unsee.guidance.reward_guidance.
"""

from pathlib import Path

import torch
from diffusers import DDPMPipeline, ImagePipelineOutput, StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image

from unsee.guidance.hook import Censor
from unsee.guidance.reward_guidance import Guidance
from unsee.reward.model import RewardModel, load_reward
from unsee.sampling.denoiser import text_denoiser, unconditional_denoiser
from unsee.sampling.loop import decode, sample


def _censor(
    reward: RewardModel | str | Path | None,
    device: torch.device,
    scale: float,
    backward_steps: int,
    backward_lr: float,
    recurrence: int,
    window: tuple[float, float],
    schedule: str,
    through_unet: bool,
) -> Censor | None:
    if reward is None:
        return None
    if not isinstance(reward, RewardModel):
        reward = load_reward(reward, device)
    guidance = Guidance(scale, backward_steps, backward_lr, tuple(window), schedule, through_unet)
    return Censor(reward, guidance, recurrence)


def _noise(
    shape: tuple[int, ...], batch: int, generator, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """x_T on the CPU (the same on every device) and one generator per image."""
    if isinstance(generator, list):
        if len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images")
        gens = generator
    else:
        gens = [generator or torch.Generator().manual_seed(int(torch.randint(2**31, ())))] * batch
    x = torch.cat([torch.randn((1, *shape), generator=g) for g in gens])
    return x.to(device, dtype), gens


def _to_output(images: torch.Tensor, output_type: str):
    if output_type == "np":
        return images.numpy()
    if output_type == "pt":
        return images
    return [Image.fromarray(im.numpy()) for im in images]


class CensoredStableDiffusionPipeline(StableDiffusionPipeline):
    """Stable Diffusion with reward guidance away from flagged images."""

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        reward: RewardModel | str | Path | None = None,
        reward_scale: float = 4.0,
        backward_steps: int = 0,
        backward_lr: float = 0.1,
        recurrence: int = 1,
        guidance_window: tuple[float, float] = (0.0, 1.0),
        guidance_schedule: str = "constant",
        through_unet: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        cfg = guidance_scale > 1
        # 1. text embeddings, (B, L, D) each
        cond, uncond = self.encode_prompt(
            prompts, device, num_images_per_prompt, cfg, negative_prompt
        )
        batch = cond.shape[0]
        # 2. the guided denoiser
        denoiser = text_denoiser(self.unet, cond, uncond if cfg else None, guidance_scale)
        censor = _censor(
            reward,
            device,
            reward_scale,
            backward_steps,
            backward_lr,
            recurrence,
            guidance_window,
            guidance_schedule,
            through_unet,
        )
        factor = self.vae_scale_factor
        h = (height or self.unet.config.sample_size * factor) // factor
        w = (width or self.unet.config.sample_size * factor) // factor
        shape = (self.unet.config.in_channels, h, w)
        if censor is not None:
            denoiser = censor.wrap(denoiser, self, True, sample_shape=shape, batch=batch)
        # 3. sample and decode
        x_T, gens = _noise(shape, batch, generator, device, cond.dtype)
        x0 = sample(
            denoiser,
            self.scheduler,
            x_T,
            num_inference_steps,
            gens,
            recurrence=censor.recurrence if censor else 1,
        )
        images = _to_output(decode(self.vae, x0), output_type)
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)


class CensoredDDPMPipeline(DDPMPipeline):
    """An unconditional UNet2DModel pipeline with reward guidance (the original study's
    setting: DDPM on MNIST, LSUN, ImageNet classes)."""

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 1000,
        generator: torch.Generator | list[torch.Generator] | None = None,
        reward: RewardModel | str | Path | None = None,
        reward_scale: float = 1.0,
        backward_steps: int = 0,
        backward_lr: float = 0.1,
        recurrence: int = 1,
        guidance_window: tuple[float, float] = (0.0, 1.0),
        guidance_schedule: str = "constant",
        through_unet: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        device = self._execution_device
        denoiser = unconditional_denoiser(self.unet)
        censor = _censor(
            reward,
            device,
            reward_scale,
            backward_steps,
            backward_lr,
            recurrence,
            guidance_window,
            guidance_schedule,
            through_unet,
        )
        if censor is not None:
            denoiser = censor.wrap(denoiser, self, conditional=False)
        size = self.unet.config.sample_size
        shape = (self.unet.config.in_channels, size, size)
        x_T, gens = _noise(shape, batch_size, generator, device, self.unet.dtype)
        x0 = sample(
            denoiser,
            self.scheduler,
            x_T,
            num_inference_steps,
            gens,
            recurrence=censor.recurrence if censor else 1,
        )
        images = _to_output(decode(None, x0), output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
