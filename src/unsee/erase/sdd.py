"""SDD, safe self-distillation diffusion (Kim et al. 2023), as plain tensor functions.

The student U-Net learns to give, for the removal concept c_s, the noise estimate it
gives unconditionally:

    loss = || eps_student(z_t, t, c_0) - eps_student(z_t, t, c_s) ||^2     (c_0 = "", no grad
                                                                          on the first term)

on latents z_t that the EMA teacher reaches by DDIM sampling with classifier-free guidance
on the joined concepts c_p, stopped at a random step. The EMA of the student is the
teacher and the output. Here many trajectories run side by side: each stops at its own
step (a mask freezes the finished ones), so one batched forward serves them all.
"""

import torch
from torch import Tensor

from unsee.sampling.conditioning import Cond, as_cond, cat_conds
from unsee.sampling.loop import to_device


def sdd_loss(eps_uncond: Tensor, eps_concept: Tensor) -> Tensor:
    """mean((eps(z_t, t, "") - eps(z_t, t, c_s))^2); the unconditional term is a target."""
    return torch.mean((eps_uncond.detach() - eps_concept) ** 2)


def preservation_loss(eps_student: Tensor, eps_original: Tensor) -> Tensor:
    """mean((eps_student(z_t, t, c_k) - eps_orig(z_t, t, c_k))^2) over prompts c_k to keep:
    the erased model should still answer them as the original did (an addition to SDD,
    `--preserve`; the original is frozen, so this is a target)."""
    return torch.mean((eps_original.detach() - eps_student) ** 2)


def stop_steps(
    n: int,
    num_steps: int,
    distribution: str,
    beta: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """Where each of n trajectories stops, as a count of DDIM steps in [1, num_steps - 1].

    uniform: every step alike (SDD); beta: Beta(a, b) over the trajectory, mid-trajectory
    emphasis with (3, 3) (HFI). Never 0: a trajectory always takes at least one step.
    """
    if distribution == "uniform":
        u = torch.rand(n, generator=generator)
    else:
        # Beta(a, b) from two Gamma draws, on the CPU generator for reproducibility
        a = torch._standard_gamma(torch.full((n,), float(beta[0])), generator=generator)
        b = torch._standard_gamma(torch.full((n,), float(beta[1])), generator=generator)
        u = a / (a + b)
    return (1 + (u * (num_steps - 1)).floor().long()).clamp(1, num_steps - 1)


def train_timesteps(
    timesteps: Tensor, stops: Tensor, num_train_timesteps: int, generator: torch.Generator
) -> Tensor:
    """For trajectories stopped after k DDIM steps (latents at timesteps[k]), a training
    timestep drawn inside that DDIM step's DDPM interval: (timesteps[k] - stride, timesteps[k]]."""
    stride = num_train_timesteps // len(timesteps)
    top = timesteps[stops].cpu()
    offset = torch.randint(0, stride, (len(stops),), generator=generator)
    return (top - offset).clamp(0, num_train_timesteps - 1)


def ema_update(ema: list[Tensor], params: list[Tensor], momentum: float) -> None:
    """theta_ema <- m theta_ema + (1 - m) theta, in place."""
    with torch.no_grad():
        torch._foreach_mul_(ema, momentum)
        torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - momentum)


@torch.no_grad()
def teacher_latents(
    unet: torch.nn.Module,
    scheduler,
    cond: Cond,
    uncond: Cond,
    stops: Tensor,
    cfg_scale: float,
    z_T: Tensor,
) -> Tensor:
    """DDIM (eta = 0) with classifier-free guidance from z_T (B, C, h, w), each trajectory
    stopped after stops[b] steps: returns z at timesteps[stops[b]] for every b.

    stops: (B,), or (B, K) for K stops on each trajectory (the latents along one walk are
    K training samples for the price of its longest stop); the result is then (B, K, C, h, w).
    cond, uncond: B rows of text conditioning ((B, L, D) text states; SDXL's TextCond also
    carries the pooled text and size conditioning). At step i only the trajectories still
    running go through the U-Net, their unconditional and conditional halves in one forward.
    """
    cond, uncond = as_cond(cond), as_cond(uncond)
    many = stops.dim() == 2
    stops = stops if many else stops[:, None]  # (B, K)
    last = stops.max(1).values  # (B,) where each walk may end
    z = z_T.clone()
    out = z_T.new_empty((*stops.shape, *z_T.shape[1:]))  # (B, K, C, h, w)
    host = scheduler.timesteps.cpu()  # the scheduler's t: no wait for the GPU each step
    for i, t in enumerate(scheduler.timesteps[: int(last.max())]):
        going = (last > i).nonzero().squeeze(1)  # trajectories still going (host)
        run = slice(None) if len(going) == len(z) else to_device(going, z.device)
        x = z[run]
        # 1. the CFG pair in one forward: (2b, C, h, w)
        pair = cat_conds([uncond[run], cond[run]])
        e_u, e_c = unet(torch.cat([x, x]), t, **pair.unet_kwargs()).sample.chunk(2)
        eps = e_u + cfg_scale * (e_c - e_u)
        # 2. z_t -> z_{t-1} for those
        z[run] = scheduler.step(eps, host[i], x).prev_sample
        # 3. keep the latents of every stop reached after i + 1 steps
        b, k = (stops == i + 1).nonzero(as_tuple=True)
        if len(b):
            b, k = to_device(b, z.device), to_device(k, z.device)
            out[b, k] = z[b]
    return out if many else out[:, 0]
