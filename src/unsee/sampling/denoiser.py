"""Denoisers: callables eps(x_t, t) -> predicted noise, built from a pipeline's parts.

Batch invariance: with `chunk=K` the networks always see exactly K images per call (the
last call padded with copies of its last image, whose outputs are dropped). At a fixed
call size an image's result does not depend on its position or its companions, nor on
the thread count, so its pixels depend only on its prompt and seed: bit-identical for any
batch size, thread count or number of processes, at batched speed. Measured bit for bit
on the CPU: at K = INVARIANT_CHUNK with the default (oneDNN) kernels, which are 1.3-1.7x
faster than the native ones on minisd; below about 16 rows per call oneDNN's algorithm
depends on the thread count, so calls of one image use `exact_cpu_kernels()` (native
kernels, exact at any size). chunk=None passes the whole batch (fastest; on a GPU
batching differs only in the last bits).
"""

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from unsee.sampling.conditioning import Cond, Rows, as_cond, cat_conds

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


INVARIANT_CHUNK = 16  # images per network call in batch-invariant mode (measured bit-exact)


def in_chunks(fn: Callable[[Rows], Tensor], batch: int, chunk: int | None, device=None) -> Tensor:
    """fn(rows) over the batch, `chunk` rows per call (padded by repeating the last row).

    Unchunked, fn sees `slice(None)`: the tensors as they are, no gather and no index
    copied to the device (a copy from the host waits for the GPU, which would stall the
    sampler every step). Chunked, the index tensors live on `device`."""
    if chunk is None:
        return fn(slice(None))
    rows = torch.arange(batch, device=device)
    out = []
    for start in range(0, batch, chunk):
        idx = rows[start : start + chunk]
        n = len(idx)
        idx = torch.cat([idx, idx[-1:].expand(chunk - n)])
        out.append(fn(idx)[:n])
    return torch.cat(out)


def joint_eps(
    unet: torch.nn.Module, x: Tensor, t: Tensor, conds: list[Cond], rows: Rows = slice(None)
) -> list[Tensor]:
    """eps(x[rows], t, c) for each conditioning c of `conds` (each with those rows), in one
    U-Net forward over the stacked copies: a list of (b, C, h, w). Each copy is its own
    x[rows], so a gradient to x sums the copies' parts as it did before joint_eps existed
    (guided sampling gives the same images bit for bit)."""
    n = len(conds)
    joint = cat_conds(conds) if n > 1 else as_cond(conds[0])
    stacked = torch.cat([x[rows] for _ in conds]) if n > 1 else x[rows]
    out = unet(stacked, t, **joint.unet_kwargs()).sample
    return list(out.chunk(n)) if n > 1 else [out]


def text_denoiser(
    unet: torch.nn.Module,
    cond: Cond,
    uncond: Cond | None,
    guidance: float,
    chunk: int | None = None,
) -> Denoiser:
    """Classifier-free guided eps for a text-conditioned U-Net.

    cond, uncond: text conditionings, one row per image ((B, L, D) embeddings, or a
    TextCond with SDXL's pooled embeddings and micro-conditioning); uncond is None when
    guidance <= 1 (no guidance: eps = eps(x, cond)).
    eps = eps(x, uncond) + guidance * (eps(x, cond) - eps(x, uncond))   (Ho & Salimans 2022)
    """
    cond = as_cond(cond)
    uncond = None if uncond is None else as_cond(uncond)

    def eps(x: Tensor, t: Tensor) -> Tensor:
        def run(i: Rows) -> Tensor:
            if uncond is None:
                return joint_eps(unet, x, t, [cond[i]], i)[0]
            # 1. the unconditional/conditional pair in one forward: (2b, C, h, w)
            e_uncond, e_cond = joint_eps(unet, x, t, [uncond[i], cond[i]], i)
            # 2. guided noise estimate
            return e_uncond + guidance * (e_cond - e_uncond)

        return in_chunks(run, x.shape[0], chunk, x.device)

    return eps


def unconditional_denoiser(unet: torch.nn.Module, chunk: int | None = None) -> Denoiser:
    """eps(x, t) of an unconditional UNet2DModel."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        return in_chunks(lambda i: unet(x[i], t).sample, x.shape[0], chunk, x.device)

    return eps


def step_index(timesteps: Tensor, t: Tensor) -> int:
    """The denoising step of timestep t: its position in the sampler's schedule (0 = the
    noisiest). Guidance with a warm-up reads its step here rather than counting calls, so a
    step is right however often a denoiser is called; t must occur once in the schedule."""
    hits = (timesteps == t.to(timesteps.device)).nonzero().flatten()
    if len(hits) != 1:
        raise ValueError(f"timestep {t.item()} occurs {len(hits)} times in the schedule")
    return int(hits[0])


def momentum_denoiser(
    step_rows: Callable[[Tensor, Tensor, int, Rows, Tensor], tuple[Tensor, Tensor]],
    scheduler,
    chunk: int | None = None,
) -> Denoiser:
    """eps(x, t) of guidance that keeps a momentum per image across steps (SLD, SEGA): a
    (B, C, h, w) tensor, zeros at the first step. step_rows(x, t, step, rows, momentum)
    gets the chunk's rows of x and of the momentum, and the step (the position of t in
    scheduler.timesteps, as the sampler set them); it returns the rows' eps and their new
    momentum. Each chunk reads and writes only its own rows, so an image's result does
    not depend on the batch."""
    momentum: Tensor | None = None  # nu, (B, C, h, w)

    def eps(x: Tensor, t: Tensor) -> Tensor:
        nonlocal momentum
        if momentum is None:
            momentum = torch.zeros_like(x)
        step = step_index(scheduler.timesteps, t)

        def run(i: Rows) -> Tensor:
            out, momentum[i] = step_rows(x[i], t, step, i, momentum[i])
            return out

        return in_chunks(run, x.shape[0], chunk, x.device)

    return eps
