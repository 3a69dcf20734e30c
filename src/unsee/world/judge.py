"""The world judge: a classifier that reads a world image's attributes.

It stands in for NudeNet / Q16 in evaluation and for the person in simulated labelling.
It is trained on rendered images with ground truth only, with style and watermark drawn
independently of content (so a starry night without Vanmond's swirls is judged unstyled),
and shares nothing with the models unsee trains.
"""

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from unsee.errors import UnseeError
from unsee.images import to_model_range
from unsee.world import render as world
from unsee.world.config import JUDGE_WIDTH
from unsee.world.paths import JUDGE_DIRS

# Class lists of each classification head; "none" where the attribute does not apply.
HEADS: dict[str, list[str]] = {
    "shape": ["none", *world.SHAPES],
    "color": ["none", *world.COLORS],
    "background": ["none", *world.BACKGROUNDS],
    "scene": ["none", *world.SCENES],
}
# What the strength head reads, each in [0, 1]: every artist's style and the watermark.
STRENGTHS: tuple[str, ...] = (*world.ARTISTS, "watermark")
# A concept counts as present from this strength on (the pixel-mix strength of the
# renderer: 0 is none of it, 1 the full effect). The judge calls it when its predicted
# strength is at least half of that, half way from absent, so a trace at PRESENT_STRENGTH
# is called despite the judge's error (docs/judge-calibration shows both ends hold).
PRESENT_STRENGTH = 0.2
CALL_STRENGTH = PRESENT_STRENGTH / 2
ARCHITECTURES = ("cnn", "vit")
# A re-drawing the judge reads below this for the mark, of a render without one, counts as
# showing no mark when the judge is fine-tuned on re-drawings (finetune_judge).
MARK_FREE_BELOW = 0.3


class _Heads(nn.Module):
    """One softmax head per attribute and one sigmoid strength per concept."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(dim, len(v)) for k, v in HEADS.items()})
        self.strength = nn.Linear(dim, len(STRENGTHS))

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        out = {k: head(h) for k, head in self.heads.items()}
        out["strength"] = self.strength(h)  # logits; sigmoid is the strength
        return out


class Judge(nn.Module):
    """A small CNN over 32x32 RGB (the first judge, "cnn")."""

    architecture = "cnn"

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
        self.out = _Heads(4 * w)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, 3, 32, 32) in [-1, 1] -> logits per head, (B, classes); strength (B, 4)."""
        return self.out(self.features(x))


class PatchJudge(nn.Module):
    """A small vision transformer over 32x32 RGB (the second judge, "vit"): a two-layer
    convolutional stem cuts the image into 8x8 patch tokens, then pre-norm transformer
    layers with learned positions, mean-pooled. Nothing shared with the CNN but the heads'
    meaning, so its errors are its own."""

    architecture = "vit"

    def __init__(self, width: int = 96, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, 2, 1),  # 16x16
            nn.GELU(),
            nn.Conv2d(width // 2, width, 3, 2, 1),  # 8x8: 64 tokens
        )
        self.position = nn.Parameter(torch.zeros(1, 64, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = _Heads(width)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        tokens = self.stem(x).flatten(2).transpose(1, 2) + self.position
        return self.out(self.norm(self.encoder(tokens)).mean(1))


def make_judge(architecture: str, width: int | None = None) -> nn.Module:
    if architecture == "cnn":
        return Judge(width or JUDGE_WIDTH)
    if architecture == "vit":
        return PatchJudge(width or 96)
    raise ValueError(f"unknown judge architecture {architecture!r}; one of {ARCHITECTURES}")


def _strength(rng: np.random.Generator) -> float:
    """A drawn effect's strength: the full effect for a quarter (what minisd draws), faint
    (below 0.4, where absent and present part) for a third, else uniform."""
    u = rng.random()
    if u < 0.25:
        return 1.0
    return float(rng.uniform(0, 0.4 if u < 0.6 else 1))


LEAK_SHARE = 0.25  # of the judge's subjects: the leaking scene, where traces are faintest


def judge_dataset(
    n: int, seed: int, mixed: bool = True
) -> tuple[np.ndarray, list[world.Attributes], list[str]]:
    """The judge's own training images: style and mark independent of content (a starry
    night may be unstyled), style on 60% and mark on 50%. Images, attributes and
    captions, like world.make_dataset.

    mixed: each effect at a random strength, a quarter of the subjects the leaking scene,
    and the images in twins (rows 2i and 2i + 1): one subject twice, the second with each
    effect it has absent or faint, so a batch of twins shows the judge the trace alone
    (train_judge and finetune_judge draw them together)."""
    rng = np.random.default_rng(seed)
    strengths = np.random.default_rng(seed + 1)
    subjects = [
        world.sample_attributes(rng, p_style=0.6, p_watermark=0.5, leak=False)
        for _ in range((n + 1) // 2 if mixed else n)
    ]
    if mixed:
        attrs = []
        for a in subjects:
            if strengths.random() < LEAK_SHARE:
                a = replace(a, kind="scene", shape=None, color=None, background=None,
                            scene=world.LEAK_SCENE)  # fmt: skip
            attrs.append(replace(a, style_strength=_strength(strengths),
                                 watermark_strength=_strength(strengths)))  # fmt: skip
            attrs.append(replace(a, style_strength=_faint(strengths),
                                 watermark_strength=_faint(strengths)))  # fmt: skip
        attrs = attrs[:n]
    else:
        attrs = subjects
    captions = [world.caption(a, rng) for a in attrs]
    images = np.stack([world.render(a) for a in attrs]) if n else np.zeros((0, 32, 32, 3), np.uint8)
    return images, attrs, captions


def _faint(rng: np.random.Generator) -> float:
    """A twin's strength: absent half the time, else faint."""
    return 0.0 if rng.random() < 0.5 else float(rng.uniform(0.05, 0.4))


def twin_rows(n: int, pairs: int, g: torch.Generator) -> Tensor:
    """Row indices of `pairs` random twins of a mixed judge_dataset of n rows."""
    first = torch.randint(0, n // 2, (pairs,), generator=g) * 2
    return torch.stack([first, first + 1], 1).flatten()


def targets(attrs: list[world.Attributes]) -> dict[str, Tensor]:
    """Class indices per head and the true strengths (N, 4) of each image."""
    out = {
        k: torch.tensor([classes.index(getattr(a, k) or "none") for a in attrs])
        for k, classes in HEADS.items()
    }
    strength = torch.zeros(len(attrs), len(STRENGTHS))
    for i, a in enumerate(attrs):
        if a.style is not None:
            strength[i, STRENGTHS.index(a.style)] = a.style_strength
        if a.watermark:
            strength[i, -1] = a.watermark_strength
    out["strength"] = strength
    return out


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Make rendered images look like generated ones: blur, noise, colour and 1px shifts,
    each light enough to keep a faint trace of a concept (its strength is the label)."""
    b = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = torch.rand(b, 1, 1, 1, generator=g) * 0.3
    x = x * (1 - mix) + blur * mix
    x = x * (1 + 0.08 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5))
    x = x + torch.randn(x.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g) * 0.03
    shift = torch.randint(-1, 2, (2,), generator=g).tolist()
    return torch.roll(x, shifts=shift, dims=(2, 3)).clamp(-1, 1)


def judge_loss(out: dict[str, Tensor], y: dict[str, Tensor], keep: Tensor | None = None) -> Tensor:
    """Cross-entropy of each class head plus the strengths' binary cross-entropy against
    the true strengths (soft targets: its minimum is at the true strength). keep (B, 4)
    bool masks strength targets that are unknown."""
    loss = sum(F.cross_entropy(out[k], y[k]) for k in HEADS)
    strength = F.binary_cross_entropy_with_logits(out["strength"], y["strength"], reduction="none")
    if keep is None:
        return loss + 2 * strength.sum(-1).mean()
    return loss + 2 * (strength * keep).sum() / len(strength)


def twin_ranking(logits: Tensor, strength: Tensor, gap: float = 0.05) -> Tensor:
    """Within each twin (rows 2i and 2i + 1: one subject, one view), the image with more of
    a concept must read higher: softplus(-(z_more - z_less)) over the concepts whose
    strengths differ by at least `gap`, averaged over them. The subject and the view are
    the same, so the only difference the head can use is the trace itself. logits,
    strength: (B, 4), B even."""
    dz = logits[0::2] - logits[1::2]
    ds = strength[0::2] - strength[1::2]
    mask = (ds.abs() >= gap).float()
    return (F.softplus(-dz * ds.sign()) * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def vae_round_trip(
    x: Tensor, vae, g: torch.Generator, batch_size: int = 500, noise: float = 0.25
) -> Tensor:
    """x (B, 3, H, W) in [-1, 1] through a VAE and back, with a little noise on the latents
    (up to `noise` of their std): rendered images made to look like decoded, generated ones
    (soft edges, lost detail)."""
    out = []
    for chunk in x.split(batch_size):
        z = vae.encode(chunk.to(vae.device)).latent_dist.mean
        sigma = torch.rand(len(z), 1, 1, 1, generator=g) * noise * z.std()
        z = z + (torch.randn(z.shape, generator=g) * sigma).to(z.device)
        out.append(vae.decode(z).sample.clamp(-1, 1).cpu())
    return torch.cat(out)


def optimizer(model: nn.Module, lr: float, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)


def train_judge(
    out_dir: Path,
    seed: int,
    images: int,
    steps: int,
    batch_size: int,
    device: torch.device,
    vae=None,
    width: int | None = None,
    architecture: str = "cnn",
    start: Path | None = None,
    rank_weight: float = 0.0,
) -> Path:
    """Train a judge on freshly rendered images (its own seed and distribution), each
    concept drawn at a random strength (judge_dataset).

    With a VAE, every image also exists as two VAE round trips, one plain and one with
    noise on the latents, and each draw takes the render (40%) or one of them (30% each):
    the judge must read decoded images as well as it reads renders. Only the pixels change;
    the labels stay the ground truth of the render. A batch is twins (judge_dataset), each
    pair in one view. start: a saved judge to go on training instead of a new one.
    rank_weight: weight of twin_ranking beside judge_loss (0: none).
    """
    data, attrs, _ = judge_dataset(images, seed)
    x_all, y_all = to_model_range(data), targets(attrs)
    g = torch.Generator().manual_seed(seed)
    x_rt = vae_round_trip(x_all, vae, g) if vae is not None else x_all
    x_rt0 = vae_round_trip(x_all, vae, g, noise=0.0) if vae is not None else x_all
    torch.manual_seed(seed)
    if start is None:
        model = make_judge(architecture, width).to(device)
    else:  # go on from a trained judge (its own architecture and width), at a gentler rate
        model = load_judge(start, device).train()
    lr = (2e-3 if model.architecture == "cnn" else 1e-3) / (1 if start is None else 2)
    opt, sched = optimizer(model, lr, steps)
    for _ in tqdm(range(steps), desc=f"judge ({architecture})", dynamic_ncols=True):
        idx = twin_rows(len(x_all), batch_size // 2, g)
        view = torch.rand(batch_size // 2, generator=g).repeat_interleave(2).view(-1, 1, 1, 1)
        x = torch.where(view < 0.4, x_all[idx], torch.where(view < 0.7, x_rt[idx], x_rt0[idx]))
        x = augment(x, g).to(device)
        y = {k: v[idx].to(device) for k, v in y_all.items()}
        out = model(x)
        loss = judge_loss(out, y)
        if rank_weight:
            loss = loss + rank_weight * twin_ranking(out["strength"], y["strength"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    save_judge(model, out_dir)
    return out_dir


def finetune_judge(
    judge_dir: Path,
    out_dir: Path,
    renders: Tensor,
    y_renders: dict[str, Tensor],
    redrawn: Tensor,
    y_redrawn: dict[str, Tensor],
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    mark_free_below: float | None = MARK_FREE_BELOW,
) -> Path:
    """Go on training a judge, each batch half renders (at mixed strengths, as in
    train_judge) and half images re-drawn by the world model (SDEdit: renders at full
    strength, noised part way and denoised with their caption), so it reads the model's
    own rendering of each style as it reads the renderer's.

    The re-drawn rows carry no watermark strength (the model adds or drops the mark) and,
    for the leaking scene, no style strength (the model paints it in the leak style
    whatever the render was): the judge must learn the look, not the model's habits.

    Except where the mark is plainly absent: a re-drawing of a render without the mark
    that the starting judge reads below `mark_free_below` is taught "no mark" (None: never).
    Without it the judge never sees the model's own swirls without a mark, and read them
    as a faint one (docs/judge-calibration, the watermark on styled generations); a mark
    the model did add reads far above (0.4-1.0) and stays unlabelled.
    """
    model = load_judge(judge_dir, device)
    opt, sched = optimizer(model, 5e-4, steps)
    g = torch.Generator().manual_seed(seed)
    keep_redrawn = redrawn_labels(model, redrawn, y_redrawn, mark_free_below)
    model.train()
    half = batch_size // 2
    for _ in tqdm(range(steps), desc="judge_gen", dynamic_ncols=True):
        a = twin_rows(len(renders), half // 2, g)
        b = torch.randint(0, len(redrawn), (batch_size - len(a),), generator=g)
        x = torch.cat([renders[a], redrawn[b]])
        y = {k: torch.cat([y_renders[k][a], y_redrawn[k][b]]).to(device) for k in y_renders}
        keep = torch.cat([torch.ones(len(a), len(STRENGTHS), dtype=torch.bool), keep_redrawn[b]])
        loss = judge_loss(model(augment(x, g).to(device)), y, keep.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    save_judge(model.eval(), out_dir)
    return out_dir


@torch.no_grad()
def redrawn_labels(
    model: nn.Module, redrawn: Tensor, y_redrawn: dict[str, Tensor], mark_free_below: float | None
) -> Tensor:
    """(N, 4) bool: which strength labels of re-drawn images are known (finetune_judge):
    no watermark label, except a render without the mark that `model` reads below
    mark_free_below once re-drawn; no style label for the leaking scene."""
    leak = y_redrawn["scene"] == HEADS["scene"].index(world.LEAK_SCENE)
    keep = torch.ones(len(redrawn), len(STRENGTHS), dtype=torch.bool)
    keep[leak, :-1] = False
    keep[:, -1] = False
    if mark_free_below is not None:
        read = read_strengths(model, raw_strengths(model, redrawn))[:, -1]
        keep[:, -1] = (y_redrawn["strength"][:, -1] == 0) & (read < mark_free_below)
    return keep


def save_judge(model: nn.Module, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors"
    )
    config = {
        "architecture": model.architecture,
        "width": model.width,
        "heads": HEADS,
        "strengths": list(STRENGTHS),
        "present_strength": PRESENT_STRENGTH,
        "image_size": world.SIZE,
        "reading": getattr(model, "reading", None),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_judge(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    config = json.loads((path / "config.json").read_text())
    if "strengths" not in config:
        raise UnseeError(
            f"{path} holds a judge from before strengths (class heads only); retrain it with"
            " `unsee world judge`"
        )
    model = make_judge(config["architecture"], config["width"])
    model.load_state_dict(load_file(path / "model.safetensors"))
    model.reading = config.get("reading")
    return model.to(device).eval()


def fit_reading(raw: np.ndarray, true: np.ndarray, bins: int = 60) -> dict[str, list[list[float]]]:
    """Per concept, a monotone map from the strength head's raw output to the true strength
    (histogram binning made monotone, a simple isotonic calibration): raw (N, 4) on held-out
    images, true (N, 4) their strengths. Returns {concept: [raw knots, strength knots]}.

    The head is trained to the conditional mean, which a faint trace drags toward the many
    absent ones (a 0.2 swirl reads 0.05); the map undoes that bias where the raw output
    still orders the traces. Written here rather than taken from scikit-learn: it is a
    dozen lines of numpy, and scikit-learn with scipy would be the heaviest dependency for it.
    """
    reading = {}
    for j, concept in enumerate(STRENGTHS):
        order = np.argsort(raw[:, j], kind="stable")
        chunks = [c for c in np.array_split(order, bins) if len(c)]
        x = np.array([raw[c, j].mean() for c in chunks])
        y = np.maximum.accumulate(np.array([true[c, j].mean() for c in chunks]))
        x, first = np.unique(np.clip(x, 1e-5, 1 - 1e-5), return_index=True)
        knots_x = [0.0, *x.tolist(), 1.0]
        knots_y = [float(y[first[0]]), *y[first].tolist(), 1.0]
        reading[concept] = [[round(v, 5) for v in knots_x], [round(v, 5) for v in knots_y]]
    return reading


def three_views(x: Tensor, vae, g: torch.Generator) -> Tensor:
    """x with its first third as noisy VAE round trips, its second as plain ones, and the
    rest as rendered: the mix of views the judge's later stages read."""
    third = len(x) // 3
    return torch.cat([
        vae_round_trip(x[:third], vae, g),
        vae_round_trip(x[third : 2 * third], vae, g, noise=0.0),
        x[2 * third :],
    ])  # fmt: skip


@torch.no_grad()
def raw_strengths(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The strength head's raw output (sigmoid, before any reading), (N, 4) on the CPU, for
    images x (N, 3, H, W) in [-1, 1]."""
    device = next(model.parameters()).device
    return torch.cat([model(c.to(device))["strength"].sigmoid().cpu() for c in x.split(batch_size)])


@torch.no_grad()
def reading_for(model: nn.Module, vae, n: int, seed: int, batch_size: int = 256) -> dict:
    """Fit a judge's reading (fit_reading) on n fresh twins of judge_dataset (a seed of
    their own), in three_views."""
    data, attrs, _ = judge_dataset(n, seed)
    x = three_views(to_model_range(data), vae, torch.Generator().manual_seed(seed))
    raw = raw_strengths(model, x, batch_size)
    return fit_reading(raw.numpy(), targets(attrs)["strength"].numpy())


def read_strengths(model: nn.Module, raw: Tensor) -> Tensor:
    """The head's raw strengths (B, 4) through the judge's fitted reading, when it has one."""
    reading = getattr(model, "reading", None)
    if not reading:
        return raw
    out = raw.clone()
    for j, concept in enumerate(STRENGTHS):
        knots_x, knots_y = reading[concept]
        out[:, j] = torch.from_numpy(np.interp(raw[:, j].numpy(), knots_x, knots_y)).float()
    return out


def load_world_judge(name: str = "cnn", device: torch.device | str = "cpu") -> nn.Module:
    """A judge shipped with unsee, by name (JUDGE_DIRS), with a clear error if missing."""
    if name not in JUDGE_DIRS:
        raise UnseeError(f"no judge named {name!r}; the world ships {', '.join(JUDGE_DIRS)}")
    path = JUDGE_DIRS[name]
    if not (path / "model.safetensors").is_file():
        raise UnseeError(
            f"the world judge {name!r} is missing from this install ({path}); train it with"
            f" `unsee world judge --arch {name} --out DIR` and `unsee world ship-judge DIR`"
        )
    return load_judge(path, device)


def judge_id(name: str) -> str:
    """A short hash of a shipped judge's weights and reading: results made with one judge
    record it, and are not mixed with another's (the table refuses to)."""
    path = JUDGE_DIRS[name]
    digest = hashlib.sha256()
    for file in ("model.safetensors", "config.json"):
        digest.update((path / file).read_bytes() if (path / file).is_file() else b"")
    return digest.hexdigest()[:12]


@dataclass
class Verdict:
    """The judge's reading of one image: the attributes it sees, and each concept's
    strength in [0, 1]. style is the artist of the strongest style when that is called
    (strength >= CALL_STRENGTH), watermark whether the mark is called."""

    shape: str | None
    color: str | None
    background: str | None
    scene: str | None
    style: str | None
    watermark: bool
    strengths: dict[str, float]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def verdict_from(classes: dict[str, str], strengths: dict[str, float]) -> Verdict:
    """A verdict from the class names each head read and the strength of each concept."""
    artist = max(world.ARTISTS, key=lambda a: strengths[a])
    return Verdict(
        **{k: (None if v == "none" else v) for k, v in classes.items()},
        style=artist if strengths[artist] >= CALL_STRENGTH else None,
        watermark=strengths["watermark"] >= CALL_STRENGTH,
        strengths=strengths,
    )


@torch.no_grad()
def judge_images(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> list[Verdict]:
    """Verdicts for (B, 32, 32, 3) uint8 images."""
    device = next(model.parameters()).device
    verdicts = []
    for start in range(0, len(images), batch_size):
        out = model(to_model_range(images[start : start + batch_size]).to(device))
        top = {k: out[k].argmax(-1).cpu() for k in HEADS}
        strength = read_strengths(model, out["strength"].sigmoid().cpu())
        for i in range(len(strength)):
            verdicts.append(
                verdict_from(
                    {k: HEADS[k][int(top[k][i])] for k in HEADS},
                    {c: round(float(s), 4) for c, s in zip(STRENGTHS, strength[i], strict=True)},
                )
            )
    return verdicts
