"""The CLIP backbone: frozen CLIP image embeddings with a small MLP head per member (HFI).

Any transformers CLIP model folder works (minisd's mini CLIP by default, a ViT-L/14 folder
for Stable Diffusion). Preprocessing is differentiable (resize + normalise with the
model's own preprocessor settings), so guidance can take gradients through it.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPModel

from unsee.errors import UnseeError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipFeatures(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> unit-norm CLIP image embeddings (B, D). Frozen."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UnseeError(f"{path} is not a transformers CLIP model folder (no config.json)")
        clip = CLIPModel.from_pretrained(path)
        self.vision = clip.vision_model.eval().requires_grad_(False)  # the text tower is dropped
        self.projection = clip.visual_projection.eval().requires_grad_(False)
        size = clip.config.vision_config.image_size
        mean, std = OPENAI_MEAN, OPENAI_STD
        processor = path / "preprocessor_config.json"
        if processor.is_file():
            p = json.loads(processor.read_text())
            mean, std = p.get("image_mean", mean), p.get("image_std", std)
            crop = p.get("crop_size", size)
            size = crop["height"] if isinstance(crop, dict) else crop
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return self.projection.out_features

    def forward(self, x: Tensor) -> Tensor:
        x = (x + 1) / 2  # [-1, 1] -> [0, 1]
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False
            )
        x = (x - self.mean) / self.std
        pooled = self.vision(pixel_values=x.to(self.projection.weight.dtype)).pooler_output
        return F.normalize(self.projection(pooled).float(), dim=-1)


class ClipHead(nn.Module):
    """One ensemble member: an MLP on CLIP embeddings -> reward logit (B,)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(0.1), nn.Linear(hidden, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)
