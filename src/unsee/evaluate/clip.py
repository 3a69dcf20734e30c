"""CLIP features for the metrics: world FID, CLIP score, the same-seed distance."""

import numpy as np
import torch
from transformers import CLIPModel, CLIPTokenizer

from unsee.images import to_model_range
from unsee.reward.clip import ClipFeatures
from unsee.reward.model import clip_path
from unsee.world.paths import TOKENIZER_DIR


class ClipEmbedder:
    """Unit-norm CLIP image and text features (any transformers CLIP folder; minisd's mini
    CLIP by default, read with minisd's tokenizer when the folder has none)."""

    def __init__(self, name: str, device: torch.device) -> None:
        path = clip_path(name)
        self.device = device
        self.images = ClipFeatures(path).to(device)
        model = CLIPModel.from_pretrained(path)
        self.text_model = model.text_model.to(device).eval()
        self.text_projection = model.text_projection.to(device).eval()
        has_tokenizer = (path / "tokenizer.json").is_file() or (path / "vocab.json").is_file()
        self.tokenizer = CLIPTokenizer.from_pretrained(path if has_tokenizer else TOKENIZER_DIR)

    @torch.no_grad()
    def image(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        out = [
            self.images(to_model_range(images[i : i + batch]).to(self.device)).cpu()
            for i in range(0, len(images), batch)
        ]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def text(self, prompts: list[str]) -> np.ndarray:
        ids = self.tokenizer(
            prompts, padding="max_length", truncation=True, return_tensors="pt",
            max_length=self.tokenizer.model_max_length,
        ).input_ids.to(self.device)  # fmt: skip
        pooled = self.text_model(input_ids=ids).pooler_output
        return torch.nn.functional.normalize(self.text_projection(pooled), dim=-1).cpu().numpy()
