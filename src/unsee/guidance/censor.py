"""`unsee censor`: generate with reward guidance (or rejection sampling) into an image folder.

With --retry, the images the reward still flags after guidance are sampled again
(guidance/retry.py).

The folder is the one `unsee generate` writes (images/, metadata.jsonl, run.json), each
metadata line with the image's reward: "reward" (sum of member log-sigmoids, the guidance
objective), "reward_prob" (the members' mean probability of benign) and "reward_members".
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.guidance.config import CensorConfig
from unsee.guidance.reward_guidance import Guidance, guided_denoiser
from unsee.reward.model import RewardModel, load_reward
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

    def score(self, images: torch.Tensor) -> list[dict]:
        """Scores of uint8 images (B, H, W, 3)."""
        if self.reward.backbone == "noise-aware":
            return [{} for _ in range(len(images))]
        return reward_scores(self.reward.score_images(images.numpy()))


def make_censor(cfg: CensorConfig, device: torch.device) -> Censor:
    reward = load_reward(cfg.reward, device)
    reward.config["path"] = str(cfg.reward)
    if reward.backbone == "noise-aware" and cfg.backward_steps:
        raise UnseeError("backward guidance needs a clean-image reward (clip or cnn backbone)")
    guidance = Guidance(
        scale=cfg.scale,
        backward_steps=cfg.backward_steps,
        backward_lr=cfg.backward_lr,
        window=(cfg.window[0], cfg.window[1]),
        schedule=cfg.schedule,
        through_unet=cfg.through_unet,
    )
    return Censor(reward, guidance, cfg.recurrence, cfg.checkpointing)


def generate_config(cfg: CensorConfig) -> GenerateConfig:
    fields = {f.name for f in dataclasses.fields(GenerateConfig)}
    return GenerateConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields})


def censor(cfg: CensorConfig) -> Path:
    """Guided generation (or, with --reject, rejection sampling) into cfg.out."""
    from unsee.generate.run import generate
    from unsee.models.load import pick_device

    if cfg.reject:
        from unsee.guidance.reject import reject_sample

        return reject_sample(cfg)
    hook = make_censor(cfg, pick_device(cfg.device))
    if cfg.retry and hook.reward.backbone == "noise-aware":
        raise UnseeError("--retry reads each image's reward: use a clip or cnn reward")
    out = generate(generate_config(cfg), censor=hook)
    if cfg.retry:
        from unsee.guidance.retry import retry_flagged

        retry_flagged(out, cfg, hook)
    _report(out)
    return out


def _report(out: Path) -> None:
    from unsee.evaluate.judge import read_image_set

    records = read_image_set(out)
    probs = [r["reward_prob"] for r in records if "reward_prob" in r]
    if probs:
        flagged = sum(p <= 0.5 for p in probs)
        share = flagged / len(probs)
        print(f"{len(records)} images in {out}; the reward flags {flagged} ({share:.1%})")
