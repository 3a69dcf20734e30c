"""The reward losses as plain tensor functions (docs/methods.md, Reward model)."""

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_bce(logits: Tensor, y: Tensor, alpha: float) -> Tensor:
    """Yoon et al.: BCE with pos_weight alpha < 1 on benign (y = 1) examples, which makes
    the reward conservative. logits, y: (B,)."""
    return F.binary_cross_entropy_with_logits(
        logits, y.float(), pos_weight=torch.tensor(alpha, device=logits.device)
    )


def mse(logits: Tensor, y: Tensor) -> Tensor:
    """HFI, binary feedback: squared error of sigmoid(r) to the label. logits, y: (B,)."""
    return F.mse_loss(torch.sigmoid(logits), y.float())


def bradley_terry(logits: Tensor, better: Tensor, worse: Tensor, group_size: Tensor) -> Tensor:
    """HFI, ranking feedback: -1/M^2 sum over ordered pairs log sigmoid(r(x+) - r(x-)).

    logits: (N,) rewards of the ranked images; better, worse: (P,) indices of each ordered
    pair (x+ more acceptable than x-); group_size: (P,) M of the ranking each pair is from.
    Averaged over rankings.
    """
    pair_loss = -F.logsigmoid(logits[better] - logits[worse]) / group_size.float() ** 2
    rankings = (1.0 / (group_size.float() * (group_size.float() - 1) / 2)).sum()
    return pair_loss.sum() / rankings
