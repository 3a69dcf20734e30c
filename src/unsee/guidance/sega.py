"""SEGA, semantic guidance (Brack et al. 2023), with each concept as a reversed edit
direction: steer each step away from concepts c_e at inference time
(`unsee generate --sega-remove TEXT [TEXT ...]`).

Per step, with eps_u = eps(z_t) (the unconditional or negative prompt), eps_c = eps(z_t, c_p)
(the prompt) and eps_e = eps(z_t, c_e) for each concept e:
  1. reversed edit direction        psi_e = -(eps_e - eps_u) * s_e
  2. keep psi_e's largest entries   where |psi_e| >= the `threshold` quantile of |psi_e| over
                                    the spatial positions of each sample and channel; 0 elsewhere
  3. sum over the concepts          gamma = sum_e psi_e
  4. momentum                       gamma += s_m nu;  nu <- beta_m nu + (1 - beta_m) gamma
  5. eps = eps_u + s_g (eps_c - eps_u) + gamma, gamma only after the warm-up
The same update as diffusers' SemanticStableDiffusionPipeline (deprecated) with
reverse_editing_direction=True and edit weights 1, written as a denoiser so it works with
every sampler. The concept forwards run in one U-Net call with the classifier-free pair,
whatever the guidance scale.
"""

from dataclasses import dataclass, replace

import torch
from diffusers import SchedulerMixin
from torch import Tensor

from unsee.sampling.conditioning import Cond, as_cond
from unsee.sampling.denoiser import Denoiser, Rows, joint_eps, momentum_denoiser

# SemanticStableDiffusionPipeline's defaults (diffusers), for 50 steps
WARMUP_STEPS = 10  # edit_warmup_steps
THRESHOLD = 0.9  # edit_threshold: keep the top 10% of |psi| per sample and channel
MOMENTUM_SCALE = 0.1  # edit_momentum_scale
MOM_BETA = 0.4  # edit_mom_beta
PRESET_STEPS = 50


@dataclass(frozen=True)
class SEGASettings:
    scale: float  # s_e, the edit guidance scale (--sega-scale)
    warmup_steps: int = WARMUP_STEPS  # steps before gamma acts
    threshold: float = THRESHOLD  # quantile of |psi| below which psi is zeroed
    momentum_scale: float = MOMENTUM_SCALE  # s_m
    mom_beta: float = MOM_BETA  # beta_m

    def for_steps(self, steps: int) -> "SEGASettings":
        """The settings for a run of `steps` steps: the warm-up keeps its share of the run,
        round(warmup_steps * steps / 50) (Python's round: halves go to the even number)."""
        return replace(self, warmup_steps=round(self.warmup_steps * steps / PRESET_STEPS))


def sega_guidance(
    eps_u: Tensor, eps_e: Tensor, momentum: Tensor, s: SEGASettings
) -> tuple[Tensor, Tensor]:
    """The edit gamma (B, C, h, w) away from the concepts, and the new momentum nu.

    eps_u: (B, C, h, w); eps_e: (E, B, C, h, w), one estimate per concept; momentum:
    (B, C, h, w), zeros at the first step. The caller adds gamma after the warm-up only;
    the momentum builds up during the warm-up too.
    """
    # 1. reversed edit directions psi_e, (E, B, C, h, w)
    psi = -(eps_e - eps_u) * s.scale
    # 2. per sample and channel, keep the entries at or above the threshold quantile of |psi|
    q = torch.quantile(psi.abs().flatten(start_dim=3).float(), s.threshold, dim=3)  # (E, B, C)
    keep = psi.abs() >= q.to(psi.dtype)[..., None, None]
    psi = torch.where(keep, psi, torch.zeros_like(psi))
    # 3. one edit over all concepts
    gamma = psi.sum(0)
    # 4. momentum
    gamma = gamma + s.momentum_scale * momentum
    momentum = s.mom_beta * momentum + (1 - s.mom_beta) * gamma
    return gamma, momentum


def sega_denoiser(
    unet: torch.nn.Module,
    cond: Cond,
    uncond: Cond,
    concepts: list[Cond],
    guidance: float,
    settings: SEGASettings,
    scheduler: SchedulerMixin,
    chunk: int | None = None,
) -> Denoiser:
    """eps(x, t) with SEGA away from `concepts` for a text-conditioned U-Net; one denoiser
    per batch (it keeps each image's momentum, a row of a (B, C, h, w) tensor).

    cond, uncond: text conditionings (sampling.conditioning) of the prompts and the
    negative prompt; concepts: one per concept to remove. settings: already scaled to
    the run's steps. The step is the position of t in scheduler.timesteps (set by the
    sampler). chunk: as in text_denoiser; each chunk reads and writes the momentum of its
    own rows, so an image's result does not depend on the batch.
    """
    cond, uncond = as_cond(cond), as_cond(uncond)
    concepts = [as_cond(c) for c in concepts]

    def step_rows(x: Tensor, t: Tensor, step: int, i: Rows, momentum: Tensor):
        texts = [uncond[i], cond[i], *(c[i] for c in concepts)]
        # 1. eps_u, eps_c and each eps_e in one forward: ((2 + E) b, C, h, w)
        e_u, e_c, *e_e = joint_eps(unet, x, t, texts)
        # 2. the edit, and these rows' momentum
        gamma, momentum = sega_guidance(e_u, torch.stack(e_e), momentum, settings)
        # 3. classifier-free guidance, plus the edit after the warm-up
        out = e_u + guidance * (e_c - e_u)
        return (out + gamma if step >= settings.warmup_steps else out), momentum

    return momentum_denoiser(step_rows, scheduler, chunk)
