"""The censor hook: what `unsee generate`'s sampler takes to guide its denoiser with a
reward (censored sampling) and to score each image it makes.

Each image's scores: "reward" (sum of member log-sigmoids, the guidance objective),
"reward_prob" (the members' mean probability of benign) and "reward_members"; `unsee
censor` (unsee.censor) keeps them in every metadata line.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from unsee.guidance.reward_guidance import Guidance, guided_denoiser
from unsee.reward.model import RewardModel
from unsee.sampling.denoiser import Denoiser


def reward_scores(logits: np.ndarray) -> list[dict]:
    """Per-image scores from member logits (N, K)."""
    t = torch.from_numpy(logits).double()
    log_prob = torch.nn.functional.logsigmoid(t).sum(-1)
    prob = t.sigmoid().mean(-1)
    return [
        {
            "reward": round(float(lp), 5),
            "reward_prob": round(float(p), 5),
            "reward_members": [round(float(v), 5) for v in row],
        }
        for lp, p, row in zip(log_prob, prob, t, strict=True)
    ]


# activations of one guided image per latent pixel, without checkpointing: Stable
# Diffusion 1.5 at 512x512 (64x64 latents), 4 images, 22.1 GiB at peak less 2 GiB of
# weights (`unsee bench gpu`, NVIDIA H200, docs/bench-gpu); rounded up
GUIDED_BYTES_PER_LATENT_PIXEL = 1.4e6


@dataclass
class Censor:
    """What `generate` needs to guide its sampler with a reward and score what it makes."""

    reward: RewardModel
    guidance: Guidance
    recurrence: int = 1
    checkpointing: str = "auto"

    def settings(self) -> dict:
        g = dataclasses.asdict(self.guidance)
        return {
            "reward": self.reward.config.get("path"),
            "reward_backbone": self.reward.backbone,
            "recurrence": self.recurrence,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()},
        }

    def wrap(
        self,
        denoiser: Denoiser,
        pipe,
        conditional: bool,
        sample_shape: tuple[int, int, int] | None = None,
        batch: int = 1,
    ) -> Denoiser:
        """The guided denoiser for this pipeline's samples of sample_shape (default: the
        model's native size), `batch` of them at a time."""
        self.reward.check_model(pipe, sample_shape)
        self.reward.to(pipe.device)
        if self._use_checkpointing(pipe, sample_shape, batch):
            pipe.unet.enable_gradient_checkpointing()
            if conditional:
                pipe.vae.enable_gradient_checkpointing()
        alphas = pipe.scheduler.alphas_cumprod
        guidance = self.guidance
        if not conditional and guidance.clamp is None:
            guidance = dataclasses.replace(guidance, clamp=(-1.0, 1.0))  # pixels live in [-1, 1]
        if self.reward.backbone == "noise-aware":
            return guided_denoiser(
                denoiser,
                alphas,
                guidance,
                noisy_log_prob=lambda x, t: self.reward.log_prob(
                    x.float(), t=t.reshape(1).expand(x.shape[0])
                ),
            )
        if conditional:
            vae = pipe.vae

            def log_prob(z):
                return self.reward.log_prob_latents(z.to(vae.dtype), vae)
        else:

            def log_prob(x0):
                return self.reward.log_prob(x0.float().clamp(-1, 1))

        return guided_denoiser(denoiser, alphas, guidance, log_prob=log_prob)

    def _use_checkpointing(self, pipe, sample_shape, batch: int) -> bool:
        """auto: only on a GPU whose free memory the batch's activations would not fit in
        (recomputing them more than doubles a guided step: docs/bench-gpu)."""
        if self.checkpointing != "auto":
            return self.checkpointing == "on"
        if pipe.device.type != "cuda":
            return False
        h, w = sample_shape[1:] if sample_shape is not None else (pipe.unet.config.sample_size,) * 2
        free, _ = torch.cuda.mem_get_info(pipe.device)
        return batch * h * w * GUIDED_BYTES_PER_LATENT_PIXEL > 0.8 * free

    def score(self, images: torch.Tensor, samples: torch.Tensor | None = None) -> list[dict]:
        """Scores of uint8 images (B, H, W, 3); a noise-aware reward reads the finished
        samples instead (the latents the images were decoded from, at t = 0)."""
        if self.reward.backbone == "noise-aware":
            if samples is None:
                return [{} for _ in range(len(images))]
            x = samples.to(next(self.reward.parameters()).device, torch.float32)
            with torch.no_grad():
                logits = self.reward.logits(x, t=torch.zeros(len(x), device=x.device))
            return reward_scores(logits.cpu().numpy())
        return reward_scores(self.reward.score_images(images.numpy()))
