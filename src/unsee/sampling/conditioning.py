"""The text conditioning of a text-to-image U-Net, one row per image.

Stable Diffusion 1.x/2.x reads token embeddings c (B, L, D) through cross-attention.
SDXL (Podell et al. 2023, sec. 2.2) reads more, and diffusers' SDXL pipeline passes it the
same way unsee does:
  - token embeddings: both text encoders' penultimate layers, concatenated (D = D1 + D2);
  - `added_cond_kwargs["text_embeds"]`: the second encoder's pooled, projected embedding
    (B, P);
  - `added_cond_kwargs["time_ids"]`: six micro-conditioning numbers per image (B, 6), the
    original image size (h, w), the top-left corner of the crop (y, x) and the target
    size (h, w), each embedded like a timestep. unsee asks for an uncropped image of the
    size it makes (diffusers' defaults), and records them in each image's metadata.
  - the empty negative prompt is all zeros (token and pooled embeddings) when the model's
    config says so (`force_zeros_for_empty_prompt`, true for SDXL base), as in diffusers.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

Rows = Tensor | slice  # which rows of the batch a call sees: an index tensor, or all of them


@dataclass(frozen=True)
class MicroCond:
    """SDXL's size and crop conditioning, the same for every image of a run."""

    original_size: tuple[int, int]  # (height, width)
    target_size: tuple[int, int]  # (height, width)
    crops_coords_top_left: tuple[int, int] = (0, 0)  # (y, x)

    @classmethod
    def uncropped(cls, height: int, width: int) -> "MicroCond":
        """An uncropped image of the size made: diffusers' defaults."""
        return cls(original_size=(height, width), target_size=(height, width))

    def time_ids(self) -> list[int]:
        return [*self.original_size, *self.crops_coords_top_left, *self.target_size]

    def record(self) -> dict[str, list[int]]:
        """The fields each image's metadata keeps."""
        return {
            "original_size": list(self.original_size),
            "crops_coords_top_left": list(self.crops_coords_top_left),
            "target_size": list(self.target_size),
        }


@dataclass(frozen=True)
class TextCond:
    """A batch's text conditioning. hidden: token embeddings (B, L, D); SDXL also pooled
    (B, P), the pooled text embedding, and time_ids (B, 6), the micro-conditioning."""

    hidden: Tensor
    pooled: Tensor | None = None
    time_ids: Tensor | None = None

    def __getitem__(self, rows: Rows) -> "TextCond":
        return TextCond(*(None if v is None else v[rows] for v in self._fields()))

    def __len__(self) -> int:
        return len(self.hidden)

    def _fields(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        return self.hidden, self.pooled, self.time_ids

    def expand(self, n: int) -> "TextCond":
        """A one-row conditioning as n rows (views, as Tensor.expand)."""
        return TextCond(*(None if v is None else v.expand(n, *v.shape[1:]) for v in self._fields()))

    def to(self, dtype: torch.dtype) -> "TextCond":
        return TextCond(*(None if v is None else v.to(dtype) for v in self._fields()))

    def unet_kwargs(self) -> dict:
        """The U-Net's keyword arguments for this conditioning."""
        if self.pooled is None:
            return {"encoder_hidden_states": self.hidden}
        added = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return {"encoder_hidden_states": self.hidden, "added_cond_kwargs": added}


Cond = Tensor | TextCond  # a plain (B, L, D) tensor stands for Stable Diffusion's conditioning


def as_cond(c: Cond) -> TextCond:
    return c if isinstance(c, TextCond) else TextCond(c)


def cat_conds(conds: list[Cond]) -> TextCond:
    """Rows of several conditionings, stacked (the order of the U-Net's joint forward)."""
    conds = [as_cond(c) for c in conds]
    fields = zip(*(c._fields() for c in conds), strict=True)
    return TextCond(*(None if parts[0] is None else torch.cat(parts) for parts in fields))


def with_time_ids(cond: TextCond, micro: MicroCond | None) -> TextCond:
    """cond with every row's micro-conditioning (SDXL); as it is without one."""
    if micro is None:
        return cond
    ids = torch.tensor([micro.time_ids()], dtype=cond.hidden.dtype, device=cond.hidden.device)
    return TextCond(cond.hidden, cond.pooled, ids.expand(len(cond.hidden), -1))


def check_time_ids(unet: torch.nn.Module, pooled_dim: int) -> None:
    """Refuse a U-Net whose added embedding does not read pooled_dim + 6 time ids (as
    diffusers' SDXL pipeline checks)."""
    expected = unet.add_embedding.linear_1.in_features
    passed = unet.config.addition_time_embed_dim * 6 + pooled_dim
    if expected != passed:
        raise ValueError(
            f"the U-Net's added embedding reads {expected} numbers, but the pooled text"
            f" ({pooled_dim}) and six time ids make {passed}: the model's config is inconsistent"
        )
