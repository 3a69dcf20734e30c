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

from unsee.errors import UnseeError
from unsee.invert.run import add_token, encode_latents, learn_vectors, splice_vectors


def token_captions(prompts: list[str], token: str) -> list[str]:
    """What the token is learned and then tested with: each prompt with the token after it,
    so the token learns what the prompt does not say (the concept)."""
    return [f"{prompt}, {token}" for prompt in prompts]


def invert_concept(
    pipe, images: np.ndarray, captions: list[str], token: str, init: str, *, steps: int,
    batch: int, lr: float, seed: int,
) -> tuple[torch.Tensor, list[float]]:  # fmt: skip
    """Learn `token` on pipe (the attacked model) from images (N, H, W, 3) uint8 captioned by
    `captions`; the token stays in pipe's tokenizer and table. Returns its vector (1, D) and
    the per-step losses."""
    device = pipe.device
    # 1. the original model's images as latents of the attacked model's VAE: (N, C, h, w)
    latents = encode_latents(pipe.vae, images, device)
    # 2. the token, its trainable vector v (1, D) spliced into the embedding lookup
    ids = add_token(pipe, token, init, 1)
    embedding = pipe.text_encoder.get_input_embeddings()
    v = torch.nn.Parameter(embedding.weight[ids].detach().float().clone())
    tok = pipe.tokenizer(
        captions, padding="max_length", max_length=pipe.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids  # (N, L)  # fmt: skip
    if not (tok == ids[0]).any(dim=1).all():
        raise UnseeError("the token falls past the text encoder's limit in a caption")
    handle = splice_vectors(embedding, ids, v)
    try:
        # 3. textual inversion, every image weighted alike
        weights = torch.ones(len(latents))
        losses = learn_vectors(pipe, v, tok, latents, weights, steps, batch, lr, seed, "inversion")
    finally:
        handle.remove()
    # 4. the learned vector into the table, so plain prompts with the token use it
    with torch.no_grad():
        embedding.weight[ids] = v.detach().to(embedding.weight.dtype)
    return v.detach().float().cpu(), losses
