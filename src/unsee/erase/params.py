"""Which U-Net parameters an erasing method trains.

cross-attention  the attn2 projections (to_q, to_k, to_v, to_out): how text steers the
                 image, about 5% of Stable Diffusion's U-Net (SDD, HFI and ESD-x default)
cross-attention-kv  only attn2.to_k and attn2.to_v: what each text token puts into the
                 attention, the image side (to_q, to_out) untouched, the weights UCE edits
self-attention   the attn1 projections
all-but-cross-attention   everything else (ESD-u)
full             every parameter
lora             low-rank adapters (peft) on the cross-attention projections only
"""

from typing import get_args

from torch import nn

from unsee.erase.config import ParamScope

SCOPES = get_args(ParamScope)
CROSS_ATTENTION_TARGETS = ["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]


def _in_scope(name: str, scope: str) -> bool:
    if scope == "cross-attention":
        return ".attn2." in name
    if scope == "cross-attention-kv":
        return ".attn2.to_k." in name or ".attn2.to_v." in name
    if scope == "self-attention":
        return ".attn1." in name
    if scope == "all-but-cross-attention":
        return ".attn2." not in name
    return True


def select_parameters(unet: nn.Module, scope: str, lora_rank: int = 4) -> dict[str, nn.Parameter]:
    """Freeze the U-Net except `scope`; return the trainable parameters by name.

    lora adds a peft adapter named "unsee" first; only its weights train."""
    if scope not in SCOPES:
        raise ValueError(f"unknown parameter scope {scope!r}; one of {', '.join(SCOPES)}")
    unet.requires_grad_(False)
    if scope == "lora":
        from peft import LoraConfig

        config = LoraConfig(
            r=lora_rank,
            lora_alpha=lora_rank,
            init_lora_weights="gaussian",
            target_modules=CROSS_ATTENTION_TARGETS,
        )
        unet.add_adapter(config, adapter_name="unsee")
        chosen = {n: p for n, p in unet.named_parameters() if "lora_" in n}
    else:
        chosen = {n: p for n, p in unet.named_parameters() if _in_scope(n, scope)}
    if not chosen:
        raise ValueError(f"this U-Net has no {scope} parameters")
    for p in chosen.values():
        p.requires_grad_(True)
    return chosen
