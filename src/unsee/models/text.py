"""The text side of a text-to-image pipeline: its tokenizer and text-encoder pairs, and
prompts (or token ids) to the U-Net's conditioning (TextCond).

Stable Diffusion 1.x/2.x: one CLIP text encoder; the U-Net reads its last hidden state.
SDXL: two, "clip_l" (CLIP ViT-L, `text_encoder`) and "clip_g" (OpenCLIP ViT-bigG,
`text_encoder_2`); the U-Net reads both penultimate layers, concatenated, and the second's
pooled projection, as diffusers' StableDiffusionXLPipeline.encode_prompt computes them
(sampling/conditioning.py). A textual-inversion token of an SDXL model is one word with a
vector in each encoder's table; diffusers' SDXL file layout keeps them under the keys
`clip_l` and `clip_g` (SDXL_KEYS), in the encoders' order.
"""

import torch
from torch import Tensor

from unsee.sampling.conditioning import MicroCond, TextCond, with_time_ids

SDXL_KEYS = ("clip_l", "clip_g")  # an SDXL textual-inversion file's keys, encoder by encoder


def text_encoders(pipe) -> list[tuple]:
    """(tokenizer, text encoder) of each encoder the U-Net reads, in order."""
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return pairs


def tokenize(pipe, texts: list[str]) -> list[Tensor]:
    """Each encoder's (B, L) token ids of texts, padded to its length, multi-vector learned
    tokens spelled out (token, token_1, ...), as the pipelines' encode_prompt does."""
    return [
        tokenizer(
            [pipe.maybe_convert_prompt(t, tokenizer) for t in texts], padding="max_length",
            max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt",
        ).input_ids
        for tokenizer, _ in text_encoders(pipe)
    ]  # fmt: skip


def encode_ids(pipe, ids: list[Tensor]) -> TextCond:
    """The conditioning of token ids (one (B, L) tensor per encoder), with gradients where
    the encoders give them (a learned token spliced into an embedding lookup)."""
    pairs = text_encoders(pipe)
    if len(pairs) == 1:  # Stable Diffusion: the last hidden state
        encoder = pairs[0][1]
        return TextCond(encoder(ids[0].to(encoder.device))[0])
    hidden, pooled = [], None
    for (_, encoder), x in zip(pairs, ids, strict=True):
        out = encoder(x.to(encoder.device), output_hidden_states=True)
        if out[0].ndim == 2:  # the projected pooled output (the encoder with projection)
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    return TextCond(torch.cat(hidden, dim=-1), pooled)


def encode_text(pipe, prompt: str, device=None) -> TextCond:
    """One prompt's conditioning through the pipeline's own encode_prompt: Stable
    Diffusion's text encoder output; SDXL's two encoders' penultimate layers, concatenated,
    and the second one's pooled projection."""
    device = pipe.device if device is None else device
    if getattr(pipe, "text_encoder_2", None) is not None:
        hidden, _, pooled, _ = pipe.encode_prompt(
            prompt=prompt, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )  # fmt: skip
        return TextCond(hidden, pooled)
    return TextCond(pipe.encode_prompt(prompt, device, 1, False)[0])


def zeros_for_empty_prompt(pipe) -> bool:
    """True where the model's unconditional input is zeros, not the encoded empty prompt
    (`force_zeros_for_empty_prompt`, true for SDXL base), as diffusers samples it."""
    return bool(pipe.config.get("force_zeros_for_empty_prompt", False))


def unconditional(pipe, device, micro: MicroCond | None = None) -> TextCond:
    """The unconditional conditioning c_0 (one row) as the model is sampled with it: zeros
    for SDXL base (its force_zeros_for_empty_prompt), the encoded empty prompt otherwise;
    with the micro-conditioning's time ids (SDXL)."""
    with torch.no_grad():
        empty = encode_text(pipe, "", device)
    if zeros_for_empty_prompt(pipe):
        empty = TextCond(torch.zeros_like(empty.hidden), torch.zeros_like(empty.pooled))
    return with_time_ids(empty, micro)


def native_micro(pipe) -> MicroCond | None:
    """SDXL's micro-conditioning for an uncropped image of the U-Net's native size (what
    erasing trains on); None for Stable Diffusion."""
    if getattr(pipe, "text_encoder_2", None) is None:
        return None
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return MicroCond.uncropped(size, size)
