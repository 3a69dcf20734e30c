"""Half-precision compute for erasing on a GPU, with fp32 masters of the trained weights.

Under autocast every op is cast on its own: convolutions and matrix products run in bf16,
but group norms and softmax run in fp32, so each of the U-Net's many GroupNorms reads and
writes its activations in fp32 and every frozen fp32 weight is cast again at each forward.
`unsee bench gpu` measured a training step of about 110 ms at Stable Diffusion size that
way (docs/bench-gpu). Here instead:

  the student   a bf16 copy of the U-Net does the arithmetic; the trained parameters enter
                it as bf16 casts of their fp32 masters (set in place of its parameters at
                each call, and left there for checkpointing's recomputation), so the
                gradients land on the fp32 masters that AdamW and the EMA update; the fp32
                U-Net itself is only read at the end, for saving (frozen weights untouched)
  the rest      the frozen original and the walking copy are already half; their inputs
                are cast to their dtype and autocast is off inside them

On an H200 this made the erase loop 1.15x faster than autocast in the same run
(docs/bench-gpu): the casts and fp32 norms are a small part of a training step.

Losses are taken in fp32 by the callers (`.float()`), as under autocast. SDXL's added
conditioning (`added_cond_kwargs`: pooled text embeddings and time ids) is cast with the
text states.
"""

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

UNetCall = Callable[..., object]  # unet(sample, timestep, encoder_hidden_states=...) -> .sample


def _cast_added(added_cond_kwargs: dict | None, dtype: torch.dtype) -> dict:
    """SDXL's added conditioning (pooled text, time ids) in dtype, as keyword arguments."""
    if added_cond_kwargs is None:
        return {}
    return {"added_cond_kwargs": {k: v.to(dtype) for k, v in added_cond_kwargs.items()}}


def half_call(module: nn.Module) -> UNetCall:
    """Call a half-precision U-Net with its inputs cast to its dtype, autocast off inside."""
    dtype = next(module.parameters()).dtype

    def call(sample: Tensor, timestep, encoder_hidden_states: Tensor, added_cond_kwargs=None):
        with torch.autocast(sample.device.type, enabled=False):
            return module(
                sample.to(dtype), timestep, encoder_hidden_states=encoder_hidden_states.to(dtype),
                **_cast_added(added_cond_kwargs, dtype),
            )  # fmt: skip

    return call


def half_student(
    unet: nn.Module, params: dict[str, nn.Parameter], dtype: torch.dtype, checkpointing: bool
) -> UNetCall:
    """The student's forward in `dtype`: a frozen half copy of `unet` whose parameters
    `params` are replaced, at every call, by casts of the fp32 masters (gradients flow to
    them). The copy trains (train mode), so gradient checkpointing acts when asked.

    The casts stay in the copy until the next call (they are not swapped back when the
    forward returns, as torch.func.functional_call would): gradient checkpointing re-runs
    the blocks' forwards during the backward pass, and they must read the same weights
    then (with functional_call they read the frozen copy's own, and the backward fails)."""
    compute = copy.deepcopy(unet).requires_grad_(False).to(dtype)
    if checkpointing:
        compute.enable_gradient_checkpointing()
    compute.train()
    slots = []  # (the module that holds it, its attribute name, the master)
    for name, master in params.items():
        owner_name, _, attr = name.rpartition(".")
        owner = compute.get_submodule(owner_name)
        del owner._parameters[attr]  # a plain tensor attribute from now on
        slots.append((owner, attr, master))

    def student(sample: Tensor, timestep, encoder_hidden_states: Tensor, added_cond_kwargs=None):
        for owner, attr, master in slots:
            setattr(owner, attr, master.to(dtype))
        with torch.autocast(sample.device.type, enabled=False):
            return compute(
                sample.to(dtype), timestep, encoder_hidden_states=encoder_hidden_states.to(dtype),
                **_cast_added(added_cond_kwargs, dtype),
            )  # fmt: skip

    return student
