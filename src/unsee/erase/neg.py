"""Distilled negative prompt: a concept's negative-prompt direction baked into the weights.

SDD pulls the concept's estimate to the unconditional one, so it can take a concept down
to the rate the model shows unconditionally, not below: a concept that is everywhere in
the training images (a watermark on a fifth of them) lives in the unconditional estimate
itself. A negative prompt does go below, and so does this method, which learns it. For
anchor prompts p (the prompts whose images showed the concept), the student's estimate is
pulled to the frozen original's with the concept's direction taken away, and the
unconditional estimate is kept:

    target_p = eps_orig(z_t, t, p) - eta * (eps_orig(z_t, t, c) - eps_orig(z_t, t, ""))
    target_0 = eps_orig(z_t, t, "")

Sampled with classifier-free guidance at scale w, the erased model then gives
eps_0 + w (eps_p - eps_0) - w eta (eps_c - eps_0); the original with c as negative prompt
gives the same with (w - 1) for w eta, so eta = 1 - 1/w is that negative prompt exactly,
and eta = 1 a little more. With p = c and eta = 1 the target is SDD's (eps_orig(z_t, t, "")).
"""

import torch
from torch import Tensor


def neg_target(eps_uncond: Tensor, eps_anchor: Tensor, eps_concept: Tensor, eta: float) -> Tensor:
    """eps(z_t, t, p) - eta * (eps(z_t, t, c) - eps(z_t, t, "")), from the frozen original."""
    return eps_anchor - eta * (eps_concept - eps_uncond)


def neg_loss(
    student_anchor: Tensor, student_uncond: Tensor, target_anchor: Tensor, eps_uncond: Tensor
) -> Tensor:
    """mean((eps_s(p) - target_p)^2) + mean((eps_s("") - eps_orig(""))^2); targets fixed."""
    return torch.mean((target_anchor.detach() - student_anchor) ** 2) + torch.mean(
        (eps_uncond.detach() - student_uncond) ** 2
    )
