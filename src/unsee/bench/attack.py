"""`unsee bench attack`: seconds per prompt of the prefix attack (UnlearnDiffAtk).

cpu  `unsee attack --method prefix` on minisd at its defaults, --n neutral prompts of the
     original model, the world judge deciding (wall time of the command, loading and the
     target images included): cpu_seconds_per_prompt, with the ASR it reached.
gpu  (when CUDA is present) Stable Diffusion 1.5 sized components with random weights
     (models/tiny.py sd15_sized_pipeline; speed does not depend on the weights) at 512x512,
     the paper's settings (K = 5, 40 steps, a check every 5), one batch of --gpu-n prompts.
     The detector is a stand-in that never fires, so every step and every check runs: the
     worst case per prompt. gpu_seconds_per_prompt, after an untimed warm-up.
"""

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from unsee import __version__
from unsee.attack.config import PAPER_DEFAULTS, AttackConfig
from unsee.attack.prefix import Case, attack_batch
from unsee.attack.run import attack
from unsee.bench.config import BenchAttackConfig
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import Sampler
from unsee.imageset import atomic_write_text
from unsee.models.load import is_sdxl
from unsee.models.tiny import sd15_sized_pipeline

GPU_NOTE = (
    "Stable Diffusion 1.5 sized components, random weights (models/tiny.py), fp16; the"
    " detector never fires, so all steps and checks run"
)


def run_bench_attack(cfg: BenchAttackConfig) -> dict:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UnseeError("--device cuda asked for, but torch sees no CUDA GPU")
    cfg.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "attack", "unsee_version": __version__}
    if cfg.device in ("auto", "cpu"):
        report |= cpu_figures(cfg.out / "cpu", cfg.n)
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        seconds = random_weights_seconds("cuda", cfg.gpu_n, cfg.gpu_image_size)
        report["gpu_seconds_per_prompt"] = round(seconds, 3)
        report["gpu"] = {
            "device": torch.cuda.get_device_name(),
            "prompts": cfg.gpu_n,
            "image_size": cfg.gpu_image_size,
            "settings": PAPER_DEFAULTS | {"prefix_tokens": 5, "sampling_steps": 25},
            "model": GPU_NOTE,
            "timing": "wall time of one batch after an untimed warm-up, synchronised",
        }
    report["env"] = {"torch": torch.__version__, "platform": platform.platform()}
    atomic_write_text(cfg.out / "results.json", json.dumps(report, indent=2) + "\n")
    for key in ("cpu_seconds_per_prompt", "gpu_seconds_per_prompt"):
        if key in report:
            print(f"{key}: {report[key]}")
    print(f"wrote {cfg.out / 'results.json'}")
    return report


def cpu_figures(out: Path, n: int) -> dict:
    """`unsee attack` on minisd at its defaults, timed whole."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)  # a timing is of a fresh run, never a resumed one
    cfg = AttackConfig(out=out, n=n, device="cpu", method="prefix", suite="neutral")
    start = time.perf_counter()
    result = attack(cfg)
    seconds = time.perf_counter() - start
    return {
        "cpu_seconds_per_prompt": round(seconds / n, 3),
        "cpu": {
            "seconds": round(seconds, 2),
            "prompts": n,
            "asr": result["asr"],
            "asr_before": result["asr_before"],
            "settings": {k: result["settings"][k] for k in (
                "iterations", "check_every", "attack_batch", "prefix_tokens", "vocabulary",
                "steps")},
            "model": "minisd (the original model), neutral suite, Vanmond, the world judge",
            "timing": "wall time of `unsee attack`, loading and target images included",
        },
    }  # fmt: skip


def random_weights_seconds(
    device: str, n: int, image_size: int, build=None, settings: dict | None = None
) -> float:
    """Seconds per prompt of one batch of n prompts attacked with the paper's settings on a
    randomly initialised pipeline (sd15_sized_pipeline unless `build` is given) at
    image_size, the detector never firing; after an untimed warm-up of 2 steps."""
    settings = PAPER_DEFAULTS | (settings or {})
    build = build or sd15_sized_pipeline
    dev = torch.device(device)
    with dev:
        pipe = build(seed=0)
    pipe = pipe.to(dev, torch.float16 if dev.type == "cuda" else torch.float32)
    if is_sdxl(pipe) and pipe.vae.config.force_upcast:  # as load_pipeline keeps SDXL's VAE
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    gen = GenerateConfig(
        model="random weights", device=device, out=Path("unused"), height=image_size,
        width=image_size, batch_size=n, steps=25,
    )  # fmt: skip
    sampler = Sampler(gen, None, pipe=pipe)
    c, h, w = sampler.shape
    g = torch.Generator().manual_seed(0)
    cases = [
        Case(i, f"a photo of thing {i}", i, 7.5, torch.randn((c, h, w), generator=g))
        for i in range(n)
    ]

    def never(images: np.ndarray) -> np.ndarray:
        return np.zeros(len(images), dtype=bool)

    def run(batch: list, iterations: int, every: int) -> None:
        attack_batch(
            sampler, batch, never, k=5, iterations=iterations, check_every=every,
            lr=0.01, weight_decay=0.1, steps=gen.steps,
        )  # fmt: skip

    run(cases[:1], 2, 2)  # warm-up: kernels chosen, memory allocated
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(cases, settings["iterations"], settings["check_every"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n
