"""The world judge: a classifier that reads a world image's attributes.

It stands in for NudeNet / Q16 in evaluation and for the person in simulated labelling.
It is trained on rendered images with ground truth only, with style and watermark drawn
independently of content (so a starry night without Vanmond's swirls is judged unstyled),
and shares nothing with the models unsee trains.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from unsee.images import to_model_range
from unsee.world import render as world
from unsee.world.config import JUDGE_WIDTH

# Class lists of each head; "none" where the attribute does not apply or is absent.
HEADS: dict[str, list[str]] = {
    "shape": ["none", *world.SHAPES],
    "color": ["none", *world.COLORS],
    "background": ["none", *world.BACKGROUNDS],
    "scene": ["none", *world.SCENES],
    "style": ["none", *world.ARTISTS],
}


class Judge(nn.Module):
    """A small CNN over 32x32 RGB with one softmax head per attribute and a watermark logit."""

    def __init__(self, width: int = JUDGE_WIDTH) -> None:
        super().__init__()
        self.width = width

        def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU()
            )

        w = width
        self.features = nn.Sequential(
            block(3, w, 1),
            block(w, w, 1),  # 32x32
            block(w, 2 * w, 2),
            block(2 * w, 2 * w, 1),  # 16x16
            block(2 * w, 4 * w, 2),
            block(4 * w, 4 * w, 1),  # 8x8
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(4 * w, len(v)) for k, v in HEADS.items()})
        self.watermark = nn.Linear(4 * w, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, 3, 32, 32) in [-1, 1] -> logits per head, (B, classes); watermark (B,)."""
        h = self.features(x)
        out = {k: head(h) for k, head in self.heads.items()}
        out["watermark"] = self.watermark(h).squeeze(-1)
        return out


def targets(attrs: list[world.Attributes]) -> dict[str, Tensor]:
    out = {
        k: torch.tensor([classes.index(getattr(a, k) or "none") for a in attrs])
        for k, classes in HEADS.items()
    }
    out["watermark"] = torch.tensor([float(a.watermark) for a in attrs])
    return out


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Make rendered images look like generated ones: blur, noise, colour and 1px shifts."""
    b = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.rand(b, 1, 1, 1, generator=g) * 0.6
    x = x * (1 - mix) + blur * mix
    x = x * (1 + 0.08 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5))
    x = x + torch.randn(x.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g) * 0.08
    shift = torch.randint(-1, 2, (2,), generator=g).tolist()
    return torch.roll(x, shifts=shift, dims=(2, 3)).clamp(-1, 1)


def judge_loss(out: dict[str, Tensor], y: dict[str, Tensor]) -> Tensor:
    loss = sum(F.cross_entropy(out[k], y[k]) for k in HEADS)
    return loss + F.binary_cross_entropy_with_logits(out["watermark"], y["watermark"])


@torch.no_grad()
def vae_round_trip(x: Tensor, vae, g: torch.Generator, batch_size: int = 500) -> Tensor:
    """x (B, 3, H, W) in [-1, 1] through a VAE and back, with a little noise on the latents:
    rendered images made to look like decoded, generated ones (soft edges, lost detail)."""
    out = []
    for chunk in x.split(batch_size):
        z = vae.encode(chunk.to(vae.device)).latent_dist.mean
        sigma = torch.rand(len(z), 1, 1, 1, generator=g) * 0.25 * z.std()
        z = z + (torch.randn(z.shape, generator=g) * sigma).to(z.device)
        out.append(vae.decode(z).sample.clamp(-1, 1).cpu())
    return torch.cat(out)


def train_judge(
    out_dir: Path,
    seed: int,
    images: int,
    steps: int,
    batch_size: int,
    device: torch.device,
    vae=None,
    width: int = JUDGE_WIDTH,
) -> Path:
    """Train the judge on freshly rendered images (its own seed and distribution).

    With a VAE, every image also exists as a VAE round trip, and each draw takes one of the
    two at random: the judge must read decoded images as well as it reads renders. Only the
    pixels change; the labels stay the ground truth of the render.
    """
    data, attrs, _ = world.make_dataset(images, seed, p_style=0.6, p_watermark=0.5, leak=False)
    x_all, y_all = to_model_range(data), targets(attrs)
    g = torch.Generator().manual_seed(seed)
    x_rt = vae_round_trip(x_all, vae, g) if vae is not None else x_all
    torch.manual_seed(seed)
    model = Judge(width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in tqdm(range(steps), desc="judge", dynamic_ncols=True):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        decoded = torch.rand(batch_size, 1, 1, 1, generator=g) < 0.5
        x = augment(torch.where(decoded, x_rt[idx], x_all[idx]), g).to(device)
        loss = judge_loss(model(x), {k: v[idx].to(device) for k, v in y_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    save_judge(model, out_dir)
    return out_dir


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    keep = keep.float()
    return (values * keep).sum() / keep.sum().clamp(min=1)


def finetune_judge(
    judge_dir: Path,
    out_dir: Path,
    renders: Tensor,
    redrawn: Tensor,
    y: dict[str, Tensor],
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> Path:
    """Go on training a judge on renders mixed half and half with the same images re-drawn
    by the world model (SDEdit: noised part way, denoised with their caption), so it reads
    the model's own rendering of each style as it reads the renderer's.

    renders, redrawn: (N, 3, H, W) in [-1, 1], row i of each from the same ground truth y.
    The re-drawn rows carry no watermark label, nor a style label for the leaking scene.
    """
    model = load_judge(judge_dir, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="judge_gen", dynamic_ncols=True):
        idx = torch.randint(0, len(renders), (batch_size,), generator=g)
        drawn = torch.rand(batch_size, generator=g) < 0.5
        x = torch.where(drawn[:, None, None, None], redrawn[idx], renders[idx])
        out = model(augment(x, g).to(device))
        yb = {k: v[idx].to(device) for k, v in y.items()}
        # re-drawn rows keep no watermark label (the model adds or drops the mark) and, for
        # the leaking scene, no style label (the model paints it in the leak style whatever
        # the render was): the judge must learn the look, not the model's habits
        drawn = drawn.to(device)
        leak = yb["scene"] == HEADS["scene"].index(world.LEAK_SCENE)
        style = F.cross_entropy(out["style"], yb["style"], reduction="none")
        loss = sum(F.cross_entropy(out[k], yb[k]) for k in HEADS if k != "style")
        loss = loss + _masked_mean(style, ~(drawn & leak))
        wm = F.binary_cross_entropy_with_logits(out["watermark"], yb["watermark"], reduction="none")
        loss = loss + _masked_mean(wm, ~drawn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    save_judge(model.eval(), out_dir)
    return out_dir


def save_judge(model: Judge, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors"
    )
    config = {
        "architecture": "unsee.world.judge.Judge",
        "width": model.width,
        "heads": HEADS,
        "image_size": world.SIZE,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_judge(path: Path, device: torch.device | str = "cpu") -> Judge:
    config = json.loads((path / "config.json").read_text())
    model = Judge(config.get("width", 48))  # judges saved before the width was recorded: 48
    model.load_state_dict(load_file(path / "model.safetensors"))
    return model.to(device).eval()


@dataclass
class Verdict:
    """The judge's reading of one image."""

    shape: str | None
    color: str | None
    background: str | None
    scene: str | None
    style: str | None
    style_probs: dict[str, float]
    watermark: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def judge_images(model: Judge, images: np.ndarray, batch_size: int = 256) -> list[Verdict]:
    """Verdicts for (B, 32, 32, 3) uint8 images."""
    device = next(model.parameters()).device
    verdicts = []
    for start in range(0, len(images), batch_size):
        out = model(to_model_range(images[start : start + batch_size]).to(device))
        probs = {k: out[k].softmax(-1).cpu() for k in HEADS}
        wm = out["watermark"].sigmoid().cpu()
        for i in range(len(wm)):
            top = {k: HEADS[k][int(probs[k][i].argmax())] for k in HEADS}
            verdicts.append(
                Verdict(
                    **{k: (None if v == "none" else v) for k, v in top.items()},
                    style_probs={
                        a: round(float(p), 5)
                        for a, p in zip(HEADS["style"], probs["style"][i], strict=True)
                        if a != "none"
                    },
                    watermark=round(float(wm[i]), 5),
                )
            )
    return verdicts
