"""ESD, erased stable diffusion (Gandikota et al. 2023), as a plain tensor function.

The student's estimate for the concept c is pulled to the frozen original's estimate with
the concept's direction reversed (negative guidance):

    target = eps_orig(z_t, t) - eta * (eps_orig(z_t, t, c) - eps_orig(z_t, t))
    loss   = mean((eps_student(z_t, t, c) - target)^2)

ESD-x trains the cross-attention, ESD-u everything but; z_t comes from the student's own
CFG trajectories on c (erase/run.py).
"""

from torch import Tensor


def esd_target(eps_uncond: Tensor, eps_concept: Tensor, eta: float) -> Tensor:
    """eps(z_t, t) - eta * (eps(z_t, t, c) - eps(z_t, t)), from the frozen original."""
    return eps_uncond - eta * (eps_concept - eps_uncond)
