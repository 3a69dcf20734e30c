"""A reward ensemble: K members, saved as model.safetensors + config.json.

The Python API guidance and inversion call:
    reward = load_reward(path, device)
    reward.log_prob(x)             # (B,) sum_i log sigmoid(r_i(x)), x in [-1, 1], differentiable
    reward.logits(x)               # (B, K) per-member rewards
    reward.log_prob_latents(z, vae)  # decode latents (scaled, as the U-Net sees them) first
    reward.log_prob(x_t, t=t)      # noise-aware rewards take the timestep
    reward.score_images(uint8)     # numpy (N, H, W, 3) -> (N, K) logits, no gradient
"""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from unsee.errors import UnseeError
from unsee.images import to_model_range
from unsee.reward.clip import ClipFeatures, ClipHead
from unsee.reward.cnn import CnnReward
from unsee.reward.noise_aware import NoiseAwareReward
from unsee.world.paths import CLIP_DIR

BACKBONES = ("clip", "cnn", "noise-aware")


def clip_path(name: str) -> Path:
    """`minisd` names the embedded mini CLIP; anything else is a folder."""
    if name == "minisd":
        return CLIP_DIR
    return Path(name).expanduser()


def make_member(config: dict, feature_dim: int | None) -> nn.Module:
    if config["backbone"] == "clip":
        return ClipHead(feature_dim)
    if config["backbone"] == "cnn":
        return CnnReward(config["image_size"])
    return NoiseAwareReward(config["sample_shape"][0])


class RewardModel(nn.Module):
    def __init__(
        self, config: dict, members: list[nn.Module], features: ClipFeatures | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(members)
        self.features = features

    @property
    def backbone(self) -> str:
        return self.config["backbone"]

    def logits(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Per-member rewards (B, K) of images x in [-1, 1] (or noisy samples x_t at t)."""
        if self.backbone == "noise-aware":
            if t is None:
                raise ValueError("a noise-aware reward needs the timestep t")
            return torch.stack([m(x, t) for m in self.members], dim=-1)
        inputs = self.features(x) if self.backbone == "clip" else x
        return torch.stack([m(inputs) for m in self.members], dim=-1)

    def log_prob(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """sum_i log sigmoid(r_i(x)): log of the members' joint probability that x is benign."""
        return torch.nn.functional.logsigmoid(self.logits(x, t)).sum(-1)

    def log_prob_latents(self, z: Tensor, vae: nn.Module) -> Tensor:
        """log_prob of the images that latents z (as the U-Net sees them) decode to."""
        image = vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1)
        return self.log_prob(image.float())

    @torch.no_grad()
    def score_images(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, K) member logits."""
        if self.backbone == "noise-aware":
            raise UnseeError("a noise-aware reward scores noisy samples, not finished images")
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(images), batch_size):
            x = to_model_range(images[start : start + batch_size]).to(device)
            out.append(self.logits(x).cpu())
        return torch.cat(out).numpy()

    def check_model(self, pipe, sample_shape: tuple[int, int, int] | None = None) -> None:
        """Refuse samples this reward cannot read (noise-aware: other sample space).

        sample_shape: (channels, height, width) of the samples asked for (latents for a
        latent model); default the model's native size.
        """
        if self.backbone != "noise-aware":
            return
        unet = pipe.unet
        if sample_shape is None:
            sample_shape = (
                unet.config.in_channels,
                unet.config.sample_size,
                unet.config.sample_size,
            )
        shape = list(sample_shape)
        if shape != list(self.config["sample_shape"]):
            raise UnseeError(
                f"this noise-aware reward reads samples of shape {self.config['sample_shape']}"
                f" from {self.config.get('model')!r}; asked for {shape} (a model or an image"
                " size other than its own). Train a reward on these samples, or use the clip or"
                " cnn backbone"
            )

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"members.{k}": v.contiguous() for k, v in self.members.state_dict().items()}
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
        (out / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")


def p_bad(logits: np.ndarray) -> np.ndarray:
    """(N, K) member logits -> (N,) probability the image is bad (shows the concept):
    1 - mean_i sigmoid(r_i). What `unsee reward score` writes and HFI weights by."""
    return 1 - (1 / (1 + np.exp(-logits))).mean(-1)


def load_reward(path: str | Path, device: torch.device | str = "cpu") -> RewardModel:
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise UnseeError(f"{path} is not a reward folder (config.json + model.safetensors)")
    fix = f"train it again (`unsee reward train ... --out {path}`)"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnseeError(f"{path}/config.json is not JSON ({e}); {fix}") from None
    if not isinstance(config, dict):
        raise UnseeError(f"{path}/config.json is not a JSON object; {fix}")
    if config.get("backbone") not in BACKBONES:
        raise UnseeError(f"{path}/config.json names an unknown backbone {config.get('backbone')!r}")
    _check_config(config, path / "config.json", fix)
    features = None
    dim = None
    if config["backbone"] == "clip":
        features = ClipFeatures(clip_path(config["clip_model"]))
        dim = features.dim
    members = [make_member(config, dim) for _ in range(config["ensemble"])]
    model = RewardModel(config, members, features)
    try:
        tensors = load_file(path / "model.safetensors")
    except SafetensorError as e:
        raise UnseeError(f"{path}/model.safetensors cannot be read ({e}); {fix}") from None
    state = {k.removeprefix("members."): v for k, v in tensors.items()}
    try:
        model.members.load_state_dict(state)
    except RuntimeError:
        raise UnseeError(
            f"{path}/model.safetensors does not hold the weights its config.json describes; {fix}"
        ) from None
    return model.to(device).eval().requires_grad_(False)


def _check_config(config: dict, path: Path, fix: str) -> None:
    """The fields a reward's config.json needs to rebuild its members."""

    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    needs = {
        "clip": ("clip_model", lambda v: isinstance(v, str) and v != ""),
        "cnn": ("image_size", count),
        "noise-aware": (
            "sample_shape",
            lambda v: isinstance(v, list) and len(v) == 3 and all(count(x) for x in v),
        ),
    }
    for key, ok in (("ensemble", count), needs[config["backbone"]]):
        if not ok(config.get(key)):
            raise UnseeError(f"{path}: {key} is missing or not valid ({config.get(key)!r}); {fix}")
