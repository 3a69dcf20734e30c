"""The CNN backbone: a small convolutional network on pixels (censored sampling's reward).

Time-independent: during guidance it reads the predicted clean image x0-hat. Images are
resized to `image_size` first, so one network serves any model's resolution.
"""

import torch.nn.functional as F
from torch import Tensor, nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class CnnReward(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> reward logit (B,)."""

    def __init__(self, image_size: int = 32, width: int = 16) -> None:
        super().__init__()
        self.image_size = image_size
        w = width
        self.net = nn.Sequential(
            _block(3, w), nn.AvgPool2d(2),
            _block(w, 2 * w), nn.AvgPool2d(2),
            _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(0.1), nn.Linear(4 * w, 1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return self.net(x).squeeze(-1)
