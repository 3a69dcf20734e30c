"""HFI, human feedback inversion (Kim et al. 2024; docs/methods.md, HFI), as plain functions.

Feedback on the model's own images becomes a soft token v* by reward-weighted textual
inversion:

    v* = argmin_v  E_{x ~ p_theta(x | c)} [ -r(x) log p_theta(x | v) ]

where -log p_theta(x | v) is bounded by the denoising loss ||eps - eps_theta(x_t, t, v)||^2
and r(x) is how much x shows the concept (the reward's probability that x is bad). The
expectation runs over the generated images, optionally only the top K by r.
"""

import numpy as np
from torch import Tensor


def inversion_weights(
    p_concept: np.ndarray, top_k: int | None, weighting: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which images the inversion sees, and the weight of each.

    p_concept: (N,) probability each image shows the concept. Returns (indices, weights):
    the top_k images by p_concept (all when None), weighted by p_concept ("reward") or
    alike ("uniform"), normalised to mean 1 so the loss keeps the scale of plain textual
    inversion whatever the reward's calibration.
    """
    order = np.argsort(-p_concept, kind="stable")
    chosen = order[: top_k or len(order)]
    weights = p_concept[chosen] if weighting == "reward" else np.ones(len(chosen))
    if not weights.sum() > 0:
        raise ValueError("the reward gives every chosen image a concept probability of 0")
    return chosen, weights / weights.mean()


def weighted_denoising_loss(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """mean_b w_b * mean((pred_b - target_b)^2): each image's denoising loss (the bound on
    -log p_theta(x_b | v)) weighted by its reward. pred, target: (B, C, h, w); weights: (B,)."""
    per_image = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))  # (B,)
    return (weights * per_image).mean()
