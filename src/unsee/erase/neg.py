"""Distilled negative prompt: a concept's negative-prompt direction baked into the weights.

SDD pulls the concept's estimate to the unconditional one, so it can take a concept down
to the rate the model shows unconditionally, not below: a concept that is everywhere in
the training images (a watermark on a fifth of them) lives in the unconditional estimate
itself. A negative prompt does go below, and so does this method, which learns it. For
anchor prompts p (the prompts whose images showed the concept), the student's estimate is
pulled to the frozen original's with the concept's direction taken away, and the
unconditional estimate is kept:

    target_p = eps_orig(z_t, t, p) - eta * (eps_orig(z_t, t, c) - eps_orig(z_t, t, ""))
    target_0 = eps_orig(z_t, t, "")

Sampled with classifier-free guidance at scale w, the erased model then gives
eps_0 + w (eps_p - eps_0) - w eta (eps_c - eps_0); the original with c as negative prompt
gives the same with (w - 1) for w eta, so eta = 1 - 1/w is that negative prompt exactly,
and eta = 1 a little more. With p = c and eta = 1 the target is SDD's (eps_orig(z_t, t, "")).

With --strip-concept, an anchor that names a concept text is pulled to the original's
estimate of the same prompt without it (Concept Ablation's target, Kumari et al. 2023),
minus the same negative direction: the named concept goes wholly, and what the prompt
carries besides the name (a scene that leaks the style) is pushed away as above:

    target_p = eps_orig(z_t, t, p without c) - eta * (eps_orig(z_t, t, c) - eps_orig(z_t, t, ""))
"""

import re

import torch
from torch import Tensor

# the words that tie a name to a prompt in English ("in the style of X", "by X", "X style")
_BEFORE = (
    r"(?:,\s*)?(?:\b(?:in the style of|in the manner of|painted by|painted like|as|by|like)\s+)?"
)
_AFTER = r"(?:'s\b)?(?:\s+style\b)?(?:\s+would paint it\b)?"


def without_concept(prompt: str, concept: str) -> str:
    """The prompt with the concept's text (any casing) and the words that attach it taken
    out: "a red circle, in the style of Vanmond" -> "a red circle"; a prompt that does not
    name it is returned as it is."""
    pattern = re.compile(_BEFORE + re.escape(concept) + _AFTER, re.IGNORECASE)
    if not pattern.search(prompt):
        return prompt
    text = pattern.sub("", prompt)
    text = re.sub(r"\s+([,:;.])", r"\1", re.sub(r"\s{2,}", " ", text))
    return text.strip(" ,:;") or ""


def neg_target(eps_uncond: Tensor, eps_anchor: Tensor, eps_concept: Tensor, eta: float) -> Tensor:
    """eps(z_t, t, p) - eta * (eps(z_t, t, c) - eps(z_t, t, "")), from the frozen original."""
    return eps_anchor - eta * (eps_concept - eps_uncond)


def neg_loss(
    student_anchor: Tensor, student_uncond: Tensor, target_anchor: Tensor, eps_uncond: Tensor
) -> Tensor:
    """mean((eps_s(p) - target_p)^2) + mean((eps_s("") - eps_orig(""))^2); targets fixed."""
    return torch.mean((target_anchor.detach() - student_anchor) ** 2) + torch.mean(
        (eps_uncond.detach() - student_uncond) ** 2
    )
