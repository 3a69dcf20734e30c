"""SLD, Safe Latent Diffusion (Schramowski et al. 2023): steer each step away from a safety
concept c_S at inference time (`unsee generate --sld PRESET --sld-concept TEXT`).

Per step, with eps_u = eps(z_t) (the unconditional or negative prompt), eps_c = eps(z_t, c_p)
(the prompt) and eps_S = eps(z_t, c_S) (the safety concept):
  1. noise guidance         eps_c - eps_u
  2. safety scale mu        min(1, s_S |eps_c - eps_S|), 0 where eps_c - eps_S >= lambda (eq. 6)
  3. safety guidance gamma  mu (eps_S - eps_u)                                           (eq. 4)
  4. momentum               gamma += s_m nu;  nu <- beta_m nu + (1 - beta_m) gamma   (eqs. 7-8)
  5. after the warm-up      noise guidance -= gamma                                      (eq. 3)
  6. eps = eps_u + s_g (noise guidance)
The same update as diffusers' StableDiffusionPipelineSafe (deprecated), written as a
denoiser so it works with every sampler. The safety forward runs in one U-Net call with
the classifier-free pair, and it runs whatever the guidance scale (diffusers turns SLD off
without classifier-free guidance).
"""

from dataclasses import dataclass, replace

import torch
from diffusers import SchedulerMixin
from torch import Tensor

from unsee.sampling.conditioning import Cond, as_cond
from unsee.sampling.denoiser import Denoiser, Rows, joint_eps, momentum_denoiser

PRESET_STEPS = 50  # the presets' warm-up counts are for 50 denoising steps


@dataclass(frozen=True)
class SLDPreset:
    """One strength of SLD (the paper's hyper-parameters, diffusers' SafetyConfig)."""

    warmup_steps: int  # delta: steps before gamma acts (eq. 3)
    guidance_scale: float  # s_S (eq. 6)
    threshold: float  # lambda (eq. 6)
    momentum_scale: float  # s_m (eq. 7)
    mom_beta: float  # beta_m (eq. 8)

    def for_steps(self, steps: int) -> "SLDPreset":
        """The preset for a run of `steps` steps: the warm-up keeps its share of the run,
        round(warmup_steps * steps / 50) (Python's round: halves go to the even number)."""
        return replace(self, warmup_steps=round(self.warmup_steps * steps / PRESET_STEPS))


PRESETS: dict[str, SLDPreset] = {
    "weak": SLDPreset(15, 20.0, 0.0, 0.0, 0.0),
    "medium": SLDPreset(10, 1000.0, 0.01, 0.3, 0.4),
    "strong": SLDPreset(7, 2000.0, 0.025, 0.5, 0.7),
    "max": SLDPreset(0, 5000.0, 1.0, 0.5, 0.7),
}


def sld_guidance(
    eps_u: Tensor, eps_c: Tensor, eps_s: Tensor, momentum: Tensor, step: int, p: SLDPreset
) -> tuple[Tensor, Tensor]:
    """The noise guidance of step `step` and the new momentum nu, all (B, C, h, w).

    The guided eps is eps_u + s_g * (noise guidance); momentum starts at zeros and builds
    up during the warm-up too.
    """
    # 1. classifier-free direction
    noise_guidance = eps_c - eps_u
    # 2. mu: element-wise, large where the prompt's estimate is close to the concept's (eq. 6)
    diff = eps_c - eps_s
    scale = torch.clamp(diff.abs() * p.guidance_scale, max=1.0)
    safety_scale = torch.where(diff >= p.threshold, torch.zeros_like(scale), scale)
    # 3. gamma = mu (eps_S - eps_u) (eq. 4)
    g_s = (eps_s - eps_u) * safety_scale
    # 4. momentum (eqs. 7, 8)
    g_s = g_s + p.momentum_scale * momentum
    momentum = p.mom_beta * momentum + (1 - p.mom_beta) * g_s
    # 5. after the warm-up, steer away from the concept (eq. 3)
    if step >= p.warmup_steps:
        noise_guidance = noise_guidance - g_s
    return noise_guidance, momentum


def sld_denoiser(
    unet: torch.nn.Module,
    cond: Cond,
    uncond: Cond,
    concept: Cond,
    guidance: float,
    preset: SLDPreset,
    scheduler: SchedulerMixin,
    chunk: int | None = None,
) -> Denoiser:
    """eps(x, t) with SLD for a text-conditioned U-Net; one denoiser per batch (it keeps
    each image's momentum, a row of a (B, C, h, w) tensor).

    cond, uncond, concept: text conditionings (sampling.conditioning) of the prompts, the
    negative prompt and the safety concept, one row per image. preset: already scaled to
    the run's steps. The step is the position of t in scheduler.timesteps (set by the
    sampler). chunk: as in text_denoiser; each chunk reads and writes the momentum of its
    own rows, so an image's result does not depend on the batch.
    """
    cond, uncond, concept = as_cond(cond), as_cond(uncond), as_cond(concept)

    def step_rows(x: Tensor, t: Tensor, step: int, i: Rows, momentum: Tensor):
        # 1. eps_u, eps_c, eps_S in one forward: (3b, C, h, w)
        e_u, e_c, e_s = joint_eps(unet, x, t, [uncond[i], cond[i], concept[i]])
        # 2. SLD's noise guidance, and these rows' momentum
        noise_guidance, momentum = sld_guidance(e_u, e_c, e_s, momentum, step, preset)
        return e_u + guidance * noise_guidance, momentum

    return momentum_denoiser(step_rows, scheduler, chunk)
