"""Concept inversion: a fresh token learned by textual inversion on the ATTACKED model from
the ORIGINAL model's images of the concept (Pham et al. 2024, "Circumventing Concept Erasure
Methods For Text-to-Image Generative Models"). If the erased weights can still draw the
concept from some input embedding, the token finds it; the concept's rate when prompting
with the token is what the erasure failed to remove.

It reuses `unsee invert`'s pieces (invert/run.py): the token is added with diffusers'
textual-inversion loader and only its vector is learned, with uniform weights.
"""

import numpy as np
import torch

from unsee.invert.run import add_token, encode_latents, learn_vectors, splice_token, token_ids
from unsee.models.load import is_sdxl
from unsee.models.text import text_encoders
from unsee.sampling.conditioning import MicroCond


def token_captions(prompts: list[str], token: str) -> list[str]:
    """What the token is learned and then tested with: each prompt with the token after it,
    so the token learns what the prompt does not say (the concept)."""
    return [f"{prompt}, {token}" for prompt in prompts]


def invert_concept(
    pipe, images: np.ndarray, captions: list[str], token: str, init: str, *, steps: int,
    batch: int, lr: float, seed: int,
) -> tuple[list[torch.Tensor], list[float]]:  # fmt: skip
    """Learn `token` on pipe (the attacked model) from images (N, H, W, 3) uint8 captioned by
    `captions`; the token stays in pipe's tokenizers and tables. Returns its vector in each
    text encoder ((1, D) each; SDXL: two) and the per-step losses."""
    device = pipe.device
    # 1. the original model's images as latents of the attacked model's VAE: (N, C, h, w)
    latents = encode_latents(pipe.vae, images, device)
    # 2. the token, its trainable vectors (1, D_i) spliced into each embedding lookup
    ids = add_token(pipe, token, init, 1)
    tok = token_ids(pipe, captions, ids)  # each encoder's (N, L)
    micro = MicroCond.uncropped(*images.shape[1:3]) if is_sdxl(pipe) else None
    vectors, handles = splice_token(pipe, ids)
    try:
        # 3. textual inversion, every image weighted alike
        weights = torch.ones(len(latents))
        losses = learn_vectors(pipe, vectors, tok, latents, weights, steps, batch, lr, seed,
                               "inversion", micro=micro)  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    # 4. the learned vectors into the tables, so plain prompts with the token use them
    with torch.no_grad():
        for (_, encoder), rows, v in zip(text_encoders(pipe), ids, vectors, strict=True):
            table = encoder.get_input_embeddings().weight
            table[rows] = v.detach().to(table.dtype)
    return [v.detach().float().cpu() for v in vectors], losses
