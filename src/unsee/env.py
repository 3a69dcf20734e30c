"""`unsee env`: versions and devices, for bug reports."""

import platform
from dataclasses import dataclass

from unsee import package_version
from unsee.world.paths import MINISD_DIR

PACKAGES = ("unsee", "torch", "diffusers", "transformers", "accelerate", "peft", "safetensors")


@dataclass(kw_only=True)
class EnvConfig:
    pass


def env_report() -> dict[str, object]:
    import torch
    from huggingface_hub import constants

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [
            f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
        ]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: package_version(name) or "not installed" for name in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "devices": devices,
        "minisd": str(MINISD_DIR)
        + ("" if (MINISD_DIR / "model_index.json").is_file() else " (weights not installed)"),
        "hf_cache": str(constants.HF_HUB_CACHE),
        "hf_offline": bool(constants.HF_HUB_OFFLINE),
    }


def run_env(cfg: EnvConfig) -> None:
    for key, value in env_report().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:14s} {value}")
