"""Denoisers: callables eps(x_t, t) -> predicted noise, built from a pipeline's parts.

Batch invariance: with `per_sample=True` every image goes through the networks on its
own (a text-to-image U-Net call holds one image's unconditional/conditional pair), so an
image's pixels depend only on its prompt and seed, never on what else is in the batch.
Together with `exact_cpu_kernels()` this makes CPU results bit-identical for any batch
size, thread count or number of processes. On a GPU, batching is faster and differs
only in the last bits; turn per_sample off there.
"""

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, C, h, w), t) -> eps (B, C, h, w)


@contextmanager
def exact_cpu_kernels() -> Iterator[None]:
    """Route CPU convolutions through kernels whose results ignore batch and thread count.

    oneDNN and NNPACK choose algorithms by batch size and thread count, so the same image
    can differ in the last bits; the native kernels compute each sample the same way.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            yield


def _per_sample(fn: Callable[[slice], Tensor], batch: int, per_sample: bool) -> Tensor:
    if not per_sample:
        return fn(slice(0, batch))
    return torch.cat([fn(slice(i, i + 1)) for i in range(batch)])


def text_denoiser(
    unet: torch.nn.Module,
    cond: Tensor,
    uncond: Tensor | None,
    guidance: float,
    per_sample: bool = False,
) -> Denoiser:
    """Classifier-free guided eps for a text-conditioned U-Net.

    cond, uncond: (B, L, D) text embeddings, one row per image; uncond is None when
    guidance <= 1 (no guidance: eps = eps(x, cond)).
    eps = eps(x, uncond) + guidance * (eps(x, cond) - eps(x, uncond))   (Ho & Salimans 2022)
    """

    def eps(x: Tensor, t: Tensor) -> Tensor:
        def run(s: slice) -> Tensor:
            if uncond is None:
                return unet(x[s], t, encoder_hidden_states=cond[s]).sample
            # 1. the unconditional/conditional pair in one forward: (2b, C, h, w)
            e_uncond, e_cond = unet(
                torch.cat([x[s], x[s]]), t, encoder_hidden_states=torch.cat([uncond[s], cond[s]])
            ).sample.chunk(2)
            # 2. guided noise estimate
            return e_uncond + guidance * (e_cond - e_uncond)

        return _per_sample(run, x.shape[0], per_sample)

    return eps


def unconditional_denoiser(unet: torch.nn.Module, per_sample: bool = False) -> Denoiser:
    """eps(x, t) of an unconditional UNet2DModel."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        return _per_sample(lambda s: unet(x[s], t).sample, x.shape[0], per_sample)

    return eps
