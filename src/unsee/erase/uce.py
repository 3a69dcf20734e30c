"""Unified Concept Editing (UCE; Gandikota et al., WACV 2024): a closed-form edit of the
U-Net's cross-attention key and value projections, no training loop.

Each projection W (d_out, d_in) of every transformer block's cross-attention (attn2.to_k,
attn2.to_v) reads the text encoder's token vectors c (d_in). UCE asks it to answer the
erased concepts' token vectors c_i as it answered their targets' c_i* (v_i* = W_old c_i*),
to answer the preserved concepts' c_j as before (W_old c_j), and to stay near W_old:

    min_W  e sum_i |W c_i - v_i*|^2 + p sum_j |W c_j - W_old c_j|^2 + lambda |W - W_old|_F^2

whose minimiser (the paper's closed form, with the weights and the lambda term of the
official code) is

    W = (e sum_i v_i* c_i^T + p sum_j W_old c_j c_j^T + lambda W_old)
        (e sum_i c_i c_i^T  + p sum_j c_j c_j^T       + lambda I)^-1

e = --uce-erase-scale (default 1), p = --uce-preserve-scale (default max(0.1, 1 / (number
of preserved texts)), lambda = --uce-lambda (default 0.5): the official code's defaults.

Which token vectors (as in the official code, `train-scripts/train_erase.py`; each prompt
is encoded alone, padded to the tokenizer's 77 positions, as the pipeline encodes prompts):
- an erased concept: its last content token and every position after it (its end token and
  the padding, which in CLIP's causal encoder all carry the whole phrase); the earlier
  words of a multi-word concept are not edited. Its target prompt is aligned on its own
  last content token (for the empty prompt, the start token: position 0), and both are
  cut to the same length. So "Vanmond" (CLIP tokens: start, van, mond, end, padding) ->
  "" maps positions 2..76 of the concept (mond onwards) onto positions 0..74 of the empty
  prompt, and -> "art" (start, art, end, ...) positions 2..76 onto 1..75;
- a preserved concept: all 77 positions, the empty prompt always among them (the official
  code preserves "" before any concept given).

With v_i* = W_old c_i* (UCE's "replace" edit) every term of the right-hand side is W_old
times a matrix, so the edit is one right factor shared by all projections that read the
same token vectors:

    W = W_old K,   K = (e C*^T C + p C_P^T C_P + lambda I) N^-1 = I + e (C* - C)^T C N^-1

with C, C*, C_P the rows c_i, c_i*, c_j and N the normal matrix (the inverse factor
above). uce_edit solves for K once (double precision, one d_in x d_in solve) and
multiplies each projection by it; uce_weight is the formula as written, for one W.
The weights are written back in their own dtype.
"""

import torch
from torch import Tensor, nn

UCE_TARGETS = ("attn2.to_k", "attn2.to_v")


def uce_projections(unet: nn.Module) -> dict[str, nn.Linear]:
    """The cross-attention key and value projections of every transformer block, by name."""
    found = {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, nn.Linear) and name.endswith(UCE_TARGETS)
    }
    if not found:
        raise ValueError("this U-Net has no cross-attention key/value projections (attn2)")
    return found


def edited_rows(states: Tensor, n_tokens: int, target: Tensor, n_target: int) -> tuple:
    """The aligned token vectors of one erased concept and its target.

    states, target: (L, d) the encoded prompts; n_tokens, n_target: their real tokens
    (start and end tokens included). Returns (c_i, c_i*), each (L - k, d), where the
    concept's last content token (index n_tokens - 2) meets the target's (n_target - 2)."""
    last, last_t = n_tokens - 2, n_target - 2  # 0 (the start token) for an empty prompt
    far = max(last, last_t)
    length = states.shape[0]
    c = states[last : length - (far - last)]  # (L - far, d)
    c_star = target[last_t : length - (far - last_t)]  # (L - far, d)
    return c, c_star


def uce_weight(
    w_old: Tensor,
    erase: Tensor,
    target: Tensor,
    preserve: Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lam: float = 0.5,
) -> Tensor:
    """The closed form (module docstring) for one projection, in float64.

    w_old: (d_out, d_in); erase, target: (n_e, d_in) the erased concepts' token vectors c_i
    and their targets' c_i*, row by row; preserve: (n_p, d_in) the preserved c_j."""
    w = w_old.double()
    c_e, c_t, c_p = erase.double(), target.double(), preserve.double()
    eye = torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    # 1. v_i* = W_old c_i*: what the targets' tokens gave
    v = c_t @ w.T  # (n_e, d_out)
    # 2. the right-hand side e sum v_i* c_i^T + p W_old sum c_j c_j^T + lambda W_old
    gram_p = c_p.T @ c_p  # (d_in, d_in)
    rhs = erase_scale * v.T @ c_e + preserve_scale * w @ gram_p + lam * w  # (d_out, d_in)
    # 3. the normal matrix e sum c_i c_i^T + p sum c_j c_j^T + lambda I, symmetric
    normal = erase_scale * c_e.T @ c_e + preserve_scale * gram_p + lam * eye  # (d_in, d_in)
    # 4. W = rhs normal^-1, i.e. W^T = normal^-1 rhs^T (normal = normal^T)
    return torch.linalg.solve(normal, rhs.T).T  # (d_out, d_in)


def uce_objective(
    w: Tensor,
    w_old: Tensor,
    erase: Tensor,
    target: Tensor,
    preserve: Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lam: float = 0.5,
) -> Tensor:
    """The quadratic UCE minimises (module docstring), for checking the closed form."""
    v = target @ w_old.T
    return (
        erase_scale * ((erase @ w.T - v) ** 2).sum()
        + preserve_scale * ((preserve @ (w - w_old).T) ** 2).sum()
        + lam * ((w - w_old) ** 2).sum()
    )


def uce_right_factor(
    erase: Tensor,
    target: Tensor,
    preserve: Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lam: float = 0.5,
) -> Tensor:
    """K (d_in, d_in), in float64, with uce_weight(W_old, ...) = W_old K for every W_old.

    erase, target: (n_e, d_in); preserve: (n_p, d_in)."""
    c_e, c_t, c_p = erase.double(), target.double(), preserve.double()
    eye = torch.eye(c_e.shape[1], dtype=torch.float64, device=c_e.device)
    # 1. the normal matrix N = e C^T C + p C_P^T C_P + lambda I, symmetric positive definite
    normal = erase_scale * c_e.T @ c_e + preserve_scale * c_p.T @ c_p + lam * eye
    # 2. K = I + e (C* - C)^T C N^-1; N symmetric, so C N^-1 = (N^-1 C^T)^T
    right = torch.linalg.solve(normal, c_e.T).T  # (n_e, d_in): C N^-1
    return eye + erase_scale * (c_t - c_e).T @ right


@torch.no_grad()
def uce_edit(
    unet: nn.Module,
    erase: Tensor,
    target: Tensor,
    preserve: Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lam: float = 0.5,
) -> list[str]:
    """Edit every attn2.to_k / attn2.to_v of `unet` in place; return their names.

    erase, target: (n_e, d_in); preserve: (n_p, d_in), token vectors (module docstring)."""
    projections = uce_projections(unet)
    device = next(iter(projections.values())).weight.device
    c = [x.to(device) for x in (erase, target, preserve)]
    k = uce_right_factor(*c, erase_scale=erase_scale, preserve_scale=preserve_scale, lam=lam)
    for proj in projections.values():
        w = proj.weight  # (d_out, d_in)
        w.copy_((w.double() @ k).to(w.dtype))
    return list(projections)
