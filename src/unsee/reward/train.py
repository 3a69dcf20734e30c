"""`unsee reward train DIR --out R`: a reward ensemble from the feedback in DIR.

1. feedback -> images with labels (binary) or rankings (rank)
2. inputs per backbone: clip -> frozen CLIP embeddings (cached in DIR/.unsee-cache/, with
   augmented views when --augment); cnn -> pixels; noise-aware -> the model's clean
   samples (VAE latents, or pixels), noised at random timesteps while training
3. K members, each on a bootstrap sample of the labels (or rankings), AdamW with linear
   decay; the loss is weighted BCE, MSE, or Bradley-Terry (losses.py)
4. a report from k-fold cross-validation (accuracy and AUC, or pairwise accuracy)
5. model.safetensors + config.json + report.json in R
"""

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from unsee import __version__
from unsee.errors import UnseeError
from unsee.feedback.store import open_existing
from unsee.images import to_model_range
from unsee.models.load import is_conditional, load_pipeline, pick_device
from unsee.reward import losses
from unsee.reward.clip import ClipFeatures
from unsee.reward.config import RewardTrainConfig
from unsee.reward.data import Feedback, load_feedback, ranking_pairs
from unsee.reward.metrics import accuracy, auc
from unsee.reward.model import RewardModel, clip_path, make_member

DEFAULT_STEPS = {"clip": 2000, "cnn": 400, "noise-aware": 1000}
VIEWS = 8  # augmented views per image for the clip backbone


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random horizontal flips, 2px shifted crops and brightness jitter of (B, 3, H, W)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    x = torch.roll(F.pad(x, (2, 2, 2, 2), mode="replicate"), (dy, dx), (2, 3))[..., 2:-2, 2:-2]
    x = x * (1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 2)
    return x.clamp(-1, 1)


# ---------------------------------------------------------------- inputs


def clip_inputs(cfg: RewardTrainConfig, data: Feedback, features: ClipFeatures) -> Tensor:
    """(V, N, D) embeddings: view 0 plain, the rest augmented (cached on disk by content)."""
    views = VIEWS if cfg.augment else 1
    key = hashlib.sha1(
        (str(clip_path(cfg.clip_model).resolve()) + str(views) + str(cfg.seed)).encode()
        + data.images.tobytes()
    ).hexdigest()[:16]
    cache = Path(cfg.dir) / ".unsee-cache" / f"clip-{key}.safetensors"
    if cache.is_file():
        return load_file(cache)["features"]
    g = torch.Generator().manual_seed(cfg.seed)
    pixels = to_model_range(data.images)
    out = []
    device = next(features.parameters()).device
    with torch.no_grad():
        for v in range(views):
            x = pixels if v == 0 else augment(pixels, g)
            out.append(torch.cat([features(c.to(device)).cpu() for c in x.split(128)]))
    stacked = torch.stack(out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({"features": stacked.contiguous()}, cache)
    return stacked


def noise_inputs(cfg: RewardTrainConfig, data: Feedback, device) -> tuple[Tensor, dict]:
    """Clean samples in the model's space (VAE latents, scaled; or pixels) and the schedule."""
    pipe = load_pipeline(cfg.model, str(device), "fp32")
    pixels = to_model_range(data.images).to(device)
    with torch.no_grad():
        if is_conditional(pipe):
            z = torch.cat([pipe.vae.encode(c).latent_dist.mean for c in pixels.split(64)])
            samples = z * pipe.vae.config.scaling_factor
        else:
            samples = pixels
    unet = pipe.unet
    shape = [unet.config.in_channels, unet.config.sample_size, unet.config.sample_size]
    if list(samples.shape[1:]) != shape:
        raise UnseeError(
            f"the images in {cfg.dir} encode to samples of shape {list(samples.shape[1:])}, but"
            f" model {cfg.model!r} works on {shape}: were they made by this model?"
        )
    schedule = {"alphas_cumprod": pipe.scheduler.alphas_cumprod.clone()}
    return samples.cpu(), {"sample_shape": shape, "schedule": schedule}


# ---------------------------------------------------------------- one member


def train_member(
    member, forward: Callable, loss_fn: Callable, steps: int, lr: float, desc: str
) -> float:
    """AdamW with linear decay; forward(step) -> the batch loss inputs; returns last loss."""
    opt = torch.optim.AdamW(
        [p for p in member.parameters() if p.requires_grad], lr=lr, weight_decay=0.05
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    member.train()
    loss = torch.tensor(0.0)
    for step in tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True):
        loss = loss_fn(*forward(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    member.eval()
    return float(loss.detach())


def fit(
    cfg: RewardTrainConfig,
    loss_name: str,
    data: Feedback,
    inputs: Tensor,
    extra: dict,
    subset: np.ndarray,
    seed: int,
    device,
    desc: str,
):
    """Train one member on `subset` (image indices for binary, ranking indices for rank)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = {"backbone": cfg.backbone, "image_size": cfg.image_size, **extra}
    dim = inputs.shape[-1] if cfg.backbone == "clip" else None
    member = make_member(config, dim).to(device)
    steps = cfg.steps or DEFAULT_STEPS[cfg.backbone]

    if data.kind == "binary":
        idx_all = torch.from_numpy(subset)
        y = torch.from_numpy(data.y).to(device)
    else:
        rankings = [data.rankings[i] for i in subset]
        better, worse, size = (torch.from_numpy(a) for a in ranking_pairs(rankings))
        idx_all = torch.from_numpy(np.unique(np.concatenate([np.array(r) for r in rankings])))
        remap = torch.full((len(data.file_names),), -1, dtype=torch.long)
        remap[idx_all] = torch.arange(len(idx_all))
        better, worse = remap[better].to(device), remap[worse].to(device)
        size = size.to(device)

    def logits_of(idx: Tensor) -> Tensor:
        if cfg.backbone == "clip":
            view = torch.randint(0, inputs.shape[0], (len(idx),), generator=g)
            return member(inputs[view, idx].to(device))
        x = inputs[idx]
        if cfg.backbone == "cnn":
            x = augment(x, g) if cfg.augment else x
            return member(x.to(device))
        abar = extra["schedule"]["alphas_cumprod"]
        t = torch.randint(0, len(abar), (len(idx),), generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=g)
        return member(x_t.to(device), t.to(device))

    if data.kind == "binary":
        batch = min(128 if cfg.backbone == "clip" else 32, len(idx_all))

        def forward(step: int):
            pick = idx_all[torch.randint(0, len(idx_all), (batch,), generator=g)]
            return logits_of(pick), y[pick.to(device)]

        loss_fn = (
            (lambda lg, yy: losses.weighted_bce(lg, yy, cfg.alpha))
            if loss_name == "bce"
            else losses.mse
        )
    else:

        def forward(step: int):
            return logits_of(idx_all), better, worse, size

        loss_fn = losses.bradley_terry
    last = train_member(member, forward, loss_fn, steps, cfg.lr, desc)
    return member, last


# ---------------------------------------------------------------- the command


def _loss_name(cfg: RewardTrainConfig, kind: str) -> str:
    if cfg.loss == "auto":
        return "bt" if kind == "rank" else "bce"
    if (cfg.loss == "bt") != (kind == "rank"):
        raise UnseeError(
            f"--loss {cfg.loss} does not fit {kind} feedback"
            f" ({'use bt' if kind == 'rank' else 'use bce or mse'})"
        )
    return cfg.loss


def _bootstrap(data: Feedback, rng: np.random.Generator) -> np.ndarray:
    if data.kind == "rank":
        return rng.integers(0, len(data.rankings), len(data.rankings))
    while True:  # both classes, at least once each
        pick = rng.integers(0, len(data.y), len(data.y))
        if 0 < data.y[pick].sum() < len(pick):
            return pick


@torch.no_grad()
def _predict(member, data: Feedback, inputs: Tensor, idx: np.ndarray, cfg, device) -> np.ndarray:
    if cfg.backbone == "clip":
        return member(inputs[0, idx].to(device)).cpu().numpy()
    if cfg.backbone == "cnn":
        return member(inputs[idx].to(device)).cpu().numpy()
    t = torch.full((len(idx),), 0, device=device)  # the clean end of the schedule
    return member(inputs[idx].to(device), t).cpu().numpy()


def _held_out(cfg, loss_name, data, inputs, extra, fold_of: np.ndarray, device):
    """For each fold: (held-out indices, a member trained on the other folds)."""
    folds = int(fold_of.max()) + 1
    for k in range(folds):
        train, test = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        member, _ = fit(
            cfg,
            loss_name,
            data,
            inputs,
            extra,
            train,
            cfg.seed + 100 + k,
            device,
            f"cv {k + 1}/{folds}",
        )
        yield test, member


def cross_validate(cfg, loss_name, data, inputs, extra, device) -> dict:
    """k-fold estimates: accuracy and AUC (binary, stratified folds), or the share of
    held-out ranking pairs in the right order (rank, folds of rankings)."""
    rng = np.random.default_rng(cfg.seed + 1)
    if data.kind == "binary":
        folds = min(cfg.cv_folds, int(min((data.y == 0).sum(), (data.y == 1).sum())))
        if folds < 2:
            return {}
        fold_of = np.empty(len(data.y), int)
        for cls in (0, 1):  # stratified
            members = rng.permutation(np.flatnonzero(data.y == cls))
            fold_of[members] = np.arange(len(members)) % folds
        scores = np.empty(len(data.y))
        for test, member in _held_out(cfg, loss_name, data, inputs, extra, fold_of, device):
            scores[test] = _predict(member, data, inputs, test, cfg, device)
        bad = data.y == 0
        # the decision boundary p(benign) = 1/2 sits at logit log(alpha) under weighted BCE
        threshold = float(np.log(cfg.alpha)) if loss_name == "bce" else 0.0
        return {
            "folds": folds,
            "accuracy": accuracy(scores, ~bad, threshold),
            "auc": auc(-scores, bad),
        }
    folds = min(cfg.cv_folds, len(data.rankings))
    if folds < 2:
        return {}
    fold_of = rng.permutation(len(data.rankings)) % folds
    correct = total = 0
    everything = np.arange(len(data.file_names))
    for test, member in _held_out(cfg, loss_name, data, inputs, extra, fold_of, device):
        r = _predict(member, data, inputs, everything, cfg, device)
        better, worse, _ = ranking_pairs([data.rankings[i] for i in test])
        correct += int((r[better] > r[worse]).sum())
        total += len(better)
    return {"folds": folds, "pairwise_accuracy": correct / total}


def train_reward(cfg: RewardTrainConfig) -> Path:
    started = time.perf_counter()
    device = pick_device(cfg.device)
    data = load_feedback(
        cfg.dir, "rank" if cfg.loss == "bt" else _kind_in_store(cfg), cfg.annotator
    )
    loss_name = _loss_name(cfg, data.kind)
    features = None
    extra: dict = {}
    if cfg.backbone == "clip":
        features = ClipFeatures(clip_path(cfg.clip_model)).to(device)
        inputs = clip_inputs(cfg, data, features)
    elif cfg.backbone == "cnn":
        inputs = to_model_range(data.images)
    else:
        inputs, extra = noise_inputs(cfg, data, device)
    rng = np.random.default_rng(cfg.seed)
    members, member_losses = [], []
    for k in range(cfg.ensemble):
        subset = (
            _bootstrap(data, rng)
            if cfg.ensemble > 1
            else np.arange(len(data.rankings) if data.kind == "rank" else len(data.y))
        )
        member, last = fit(
            cfg,
            loss_name,
            data,
            inputs,
            extra,
            subset,
            cfg.seed + k,
            device,
            f"member {k + 1}/{cfg.ensemble}",
        )
        members.append(member.cpu())
        member_losses.append(last)
    train_seconds = time.perf_counter() - started
    report = {
        "feedback": data.kind,
        "counts": data.counts(),
        "loss": loss_name,
        "member_losses": member_losses,
        "train_seconds": round(train_seconds, 3),
        "cross_validation": cross_validate(cfg, loss_name, data, inputs, extra, device)
        if cfg.cv_folds
        else {},
    }
    config = {
        "unsee_version": __version__,
        "backbone": cfg.backbone,
        "loss": loss_name,
        "ensemble": cfg.ensemble,
        "alpha": cfg.alpha if loss_name == "bce" else None,
        "augment": cfg.augment,
        "clip_model": cfg.clip_model if cfg.backbone == "clip" else None,
        "image_size": cfg.image_size,
        "model": cfg.model if cfg.backbone == "noise-aware" else None,
        "sample_shape": extra.get("sample_shape"),
        "label_counts": data.counts(),
        "seed": cfg.seed,
        "steps": cfg.steps or DEFAULT_STEPS[cfg.backbone],
        "lr": cfg.lr,
        "feedback_dir": str(cfg.dir),
    }
    model = RewardModel(config, members, features)
    out = Path(cfg.out)
    model.save(out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    cv = report["cross_validation"]
    print(
        f"reward ({cfg.backbone}, {loss_name}, K={cfg.ensemble}) from {data.counts()}"
        f" in {train_seconds:.1f} s -> {out}"
    )
    if cv:
        print(
            "cross-validation: "
            + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in cv.items()
            )
        )
    return out


def _kind_in_store(cfg: RewardTrainConfig) -> str:
    """binary when the store has labels, rank when it has only rankings."""
    kinds = {
        d["kind"]
        for d in open_existing(cfg.dir).decisions()
        if cfg.annotator is None or d["annotator"] == cfg.annotator
    }
    if kinds == {"rank"}:
        return "rank"
    if kinds == {"label", "rank"} and cfg.loss == "auto":
        raise UnseeError(f"{cfg.dir} holds both labels and rankings: choose --loss bce|mse or bt")
    return "binary"
