"""Settings of `unsee invert`."""

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class InvertConfig(ModelArgs):
    feedback: Path = arg(help="the image folder the feedback is on (made by `unsee generate`)")
    reward: Path = arg(help="a reward trained on that feedback (`unsee reward train`)")
    init: str = arg(help="a word (one token) whose embedding starts the new token")
    token: str = arg("<concept>", help="the new token, as prompts will write it")
    out: Path = arg(help="learned_embeds.safetensors to write (settings beside it as .json)")
    num_vectors: int = arg(1, help="embedding vectors behind the token")
    template: str = arg(
        "{token}",
        help="caption of every image during inversion; {token} is the new token, {prompt}"
        " the image's own prompt (e.g. '{prompt}, {token}' learns only what the prompt"
        " does not say)",
    )
    top_k: int | None = arg(
        None, help="invert on the K images the reward rates most like the concept (default: all)"
    )
    weighting: Literal["reward", "uniform"] = arg(
        "reward",
        help="reward: each image's loss weighted by its concept probability (HFI);"
        " uniform: plain textual inversion over the chosen images",
    )
    steps: int = arg(600, help="optimiser steps")
    batch: int = arg(16, help="images per step")
    lr: float = arg(5e-3, help="Adam learning rate of the token's embedding (constant)")
    seed: int = arg(0, help="seed of the image draws, noise and timesteps")

    def __post_init__(self) -> None:
        self.feedback, self.reward, self.out = (
            Path(self.feedback),
            Path(self.reward),
            Path(self.out),
        )
        if self.out.suffix != ".safetensors":
            raise UnseeError(f"--out {self.out} must be a .safetensors file")
        if self.num_vectors < 1 or self.steps < 1 or self.batch < 1:
            raise UnseeError("--num-vectors, --steps and --batch must be at least 1")
        if self.top_k is not None and self.top_k < 1:
            raise UnseeError("--top-k must be at least 1")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as e:
            raise UnseeError(
                f"--template {self.template!r}: {e} (write {{{{ and }}}} for a literal brace)"
            ) from None
        if "token" not in fields:
            raise UnseeError("--template must contain {token}")
        unknown = sorted(fields - {"token", "prompt"})
        if unknown:
            raise UnseeError(
                f"--template {self.template!r} names {{{unknown[0]}}}: only {{token}} and"
                " {prompt} are filled in"
            )
        if not self.token.strip() or " " in self.token:
            raise UnseeError("--token must be one word without spaces, e.g. '<vanmond-look>'")
