"""Images between the files' uint8 and the models' tensors."""

import numpy as np
import torch
from torch import Tensor


def to_model_range(images: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1], as the VAE, CLIP towers,
    judge and rewards take images."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
