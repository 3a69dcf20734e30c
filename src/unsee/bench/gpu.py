"""`unsee bench gpu`: speed and peak memory at Stable Diffusion 1.5 (or SDXL) size on one GPU.

Every figure is measured against its baseline in the same run, on the same card, on a
pipeline folder of Stable Diffusion 1.5's sizes with random weights (models/tiny.py;
speed does not depend on the weights), saved in fp16 and loaded by the commands as a
user's folder would be. `--size sdxl`: SDXL base 1.0's sizes (sdxl_sized_pipeline, 3.5B
parameters) at 1024x1024, the same stages on it (the diffusers baseline its SDXL pipeline;
no plain SDD loop, which is Stable Diffusion's), by default generate, censor, invert and
one `unsee erase` (the sdd stage) with the projection of the whole default erase:

  generate  `unsee generate` (its default: no compilation for a set this small) against a
            plain diffusers StableDiffusionPipeline call: same batch, steps, guidance;
            images/s after the first batch (both warmed up), PNG writing included for unsee
  sdd       `unsee erase` at its defaults (--reuse 32 at this size), with --reuse 1, 16 and
            64, training samples (trajectory-iterations) per second over the whole loop and
            after its first 25 steps, against the plain SDD loop of `unsee bench speed` (one
            trajectory per step, separate CFG forwards, fp32)
  erase     one whole `unsee erase` at the Stable Diffusion defaults (1500 steps x 4),
            loading and saving included, when the sdd stage projects it within
            --erase-budget seconds (else the projection, marked as one)
  censor    `unsee censor --scale 4 --recurrence 2` (a cnn reward with random weights) in
            s/image against `unsee generate` at the same settings, after an untimed guided
            warm-up; variants: checkpointing forced off (auto decides by free memory),
            --no-through-unet (eps held constant: no U-Net backward), and a noise-aware
            reward (classic guidance on the latents: no VAE decoder, no U-Net backward)
  invert    `unsee invert` optimiser steps per second
  attack    the prefix attack of `unsee attack` (paper settings, 8 prompts in one batch):
            seconds per prompt, as `unsee bench attack` reports it
  compile   `unsee generate --optimize compile`: compilation time and images/s after it

Each stage runs on its own; an error is recorded and the next stage runs.
results.json and results.md are rewritten after every stage, so a run cut short keeps
what it measured.
"""

import dataclasses
import gc
import json
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from unsee import __version__
from unsee.bench.attack import random_weights_seconds
from unsee.bench.config import BenchGpuConfig, BenchSpeedConfig
from unsee.bench.speed import time_mode
from unsee.censor.config import CensorConfig
from unsee.censor.run import censor
from unsee.erase.config import EraseConfig, erase_defaults
from unsee.erase.run import erase
from unsee.erase.sdd import stop_steps
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.imageset import METADATA, atomic_write_text, read_run_file
from unsee.invert.config import InvertConfig
from unsee.invert.run import invert
from unsee.models.tiny import (
    sd15_sized_pipeline,
    sdxl_sized_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)
from unsee.reward.model import RewardModel, make_member

PROMPT = "a photo of a lighthouse in the style of Vanmond"
CONCEPT = "Vanmond"
# each --size: the pipeline built, its image size, and the line results.md gives it
SIZES = {
    "sd15": (sd15_sized_pipeline, 512, "Stable Diffusion 1.5 sized components with random"
             " weights (models/tiny.py sd15_sized_pipeline), saved in fp16, 512x512 images"),
    "sdxl": (sdxl_sized_pipeline, 1024, "SDXL base 1.0 sized components with random weights"
             " (models/tiny.py sdxl_sized_pipeline), saved in fp16 (its VAE run in fp32),"
             " 1024x1024 images"),
    "tiny": (tiny_sd_pipeline, 32, "the tiny test pipeline (models/tiny.py)"),
    "tiny-sdxl": (tiny_sdxl_pipeline, 32, "the tiny SDXL test pipeline (models/tiny.py)"),
}  # fmt: skip


def run_bench_gpu(cfg: BenchGpuConfig) -> dict:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UnseeError("`unsee bench gpu` needs a CUDA GPU (torch sees none); --device cpu"
                         " runs the same stages on the CPU, for testing")  # fmt: skip
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict = {
        "benchmark": "gpu",
        "figures": {},
        "stages": {},
        "errors": {},
        "settings": _settings(cfg),
    }
    with tempfile.TemporaryDirectory(prefix="unsee-bench-gpu-", dir=cfg.work) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        folder = _build_folder(cfg, work / "model")
        report["settings"]["build_seconds"] = round(time.perf_counter() - t0, 2)
        stages: dict[str, Callable[[], dict]] = {
            "generate": lambda: _stage_generate(cfg, folder, work),
            "sdd": lambda: _stage_sdd(cfg, folder, work),
            "erase": lambda: _stage_erase(cfg, folder, work, report),
            "censor": lambda: _stage_censor(cfg, folder, work),
            "invert": lambda: _stage_invert(cfg, folder, work),
            "attack": lambda: _stage_attack(cfg, work),
            "compile": lambda: _stage_compile(cfg, folder, work),
        }
        for name in cfg.stages:
            t0 = time.perf_counter()
            print(f"bench gpu: {name} ...", flush=True)
            try:
                report["stages"][name] = stages[name]()
            except Exception as e:  # one stage's failure must not lose the others
                report["errors"][name] = "".join(traceback.format_exception(e)[-3:])
                print(f"bench gpu: {name} failed: {e!r}", flush=True)
            report["stages"].setdefault(name, {})["stage_seconds"] = round(
                time.perf_counter() - t0, 2
            )
            _free()
            report["figures"] = _figures(report["stages"])
            report["settings"]["total_seconds"] = round(time.perf_counter() - started, 2)
            _write(cfg.out, report)
    print((cfg.out / "results.md").read_text())
    return report


# --- the folder -----------------------------------------------------------------------


def _build_folder(cfg: BenchGpuConfig, path: Path) -> Path:
    """Stable Diffusion 1.5's (or SDXL's) sizes with random weights (or a tiny pipeline,
    for tests), saved in the dtype a user's fp16 checkpoint has."""
    with torch.device(cfg.device):
        pipe = SIZES[cfg.size][0](seed=0)
    pipe.to(torch.float16 if cfg.device == "cuda" else torch.float32)
    pipe.save_pretrained(path, safe_serialization=True)
    del pipe
    _free()
    return path


# --- stages ----------------------------------------------------------------------------


def _stage_generate(cfg: BenchGpuConfig, folder: Path, work: Path) -> dict:
    out = {"plain_diffusers": _diffusers_generate(cfg, folder)}
    out["unsee_default"] = _unsee_generate(cfg, folder, work / "gen-default", "auto")
    return out


def _diffusers_generate(cfg: BenchGpuConfig, folder: Path) -> dict:
    """A plain StableDiffusionPipeline (or StableDiffusionXLPipeline) call: one warm-up
    batch, then the timed ones."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    dtype = torch.float16 if cfg.device == "cuda" else torch.float32
    cls = StableDiffusionXLPipeline if cfg.sdxl else StableDiffusionPipeline
    pipe = cls.from_pretrained(folder, torch_dtype=dtype).to(cfg.device)
    pipe.set_progress_bar_config(disable=True)
    batch = cfg.batch_size

    def call(steps: int, first_seed: int):
        gens = [torch.Generator("cpu").manual_seed(first_seed + i) for i in range(batch)]
        return pipe(prompt=[PROMPT] * batch, num_inference_steps=steps, guidance_scale=7.5,
                    generator=gens, output_type="pil").images  # fmt: skip

    call(cfg.steps, 10_000)  # warm-up: kernels, allocator
    _reset_peak(cfg)
    timed = cfg.images // batch
    t0 = _now(cfg)
    for k in range(timed):
        call(cfg.steps, k * batch)
    seconds = _now(cfg) - t0
    result = {"images": timed * batch, "seconds": seconds, "images_per_s": timed * batch / seconds}
    return result | _peak(cfg)


def _unsee_generate(cfg: BenchGpuConfig, folder: Path, out: Path, level: str) -> dict:
    """`unsee generate`: one batch more than the diffusers call; the first is its warm-up."""
    _reset_peak(cfg)
    n = (cfg.images // cfg.batch_size + 1) * cfg.batch_size
    t0 = time.perf_counter()
    config = GenerateConfig(
        model=str(folder), prompt=PROMPT, n=n, batch_size=cfg.batch_size, steps=cfg.steps,
        out=out, device=cfg.device, optimize=level,
    )  # fmt: skip
    generate(config)
    wall = time.perf_counter() - t0
    run = read_run_file(out)
    batch_seconds = run["batch_seconds"]
    steady = batch_seconds[1:]
    return {
        "images": n,
        "first_batch_seconds": batch_seconds[0],
        "steady_seconds": sum(steady),
        "images_per_s": cfg.batch_size * len(steady) / sum(steady),
        "images_per_s_all": n / run["seconds"],
        "wall_seconds_with_loading": wall,
    } | _peak(cfg)


def _stage_sdd(cfg: BenchGpuConfig, folder: Path, work: Path) -> dict:
    if cfg.sdxl:  # `unsee bench speed`'s plain loop is Stable Diffusion's: unsee's erase alone
        out = {"unsee_default": _erase(cfg, folder, work / "sdd-default", cfg.sdd_steps, None)}
        for reuse in cfg.sdd_reuse:
            steps = cfg.sdd_steps_reuse1 if reuse == 1 else cfg.sdd_steps
            out[f"unsee_reuse{reuse}"] = _erase(cfg, folder, work / f"sdd-r{reuse}", steps, reuse)
        return out
    # the plain loop of `unsee bench speed` (it builds its own SD-sized U-Net on the GPU)
    sample_steps = cfg.sample_steps or 50  # SDD's, the default of `unsee erase` at SD size
    n = cfg.plain_trajectories
    speed = BenchSpeedConfig(
        out=work, iterations=n, warmup=1, batch=1, sample_steps=sample_steps,
        device=cfg.device, model=str(folder),
    )  # fmt: skip
    stops = stop_steps(n + 1, sample_steps, "beta", (3.0, 3.0), torch.Generator().manual_seed(0))
    _reset_peak(cfg)
    plain = time_mode(speed, cfg.device, "plain", stops.tolist())
    _free()
    out = {"plain_loop": {"its": plain["its"], "seconds": plain["seconds"]} | _peak(cfg)}
    out["unsee_default"] = _erase(cfg, folder, work / "sdd-default", cfg.sdd_steps, None)
    if cfg.sdd_autocast:
        out["unsee_autocast"] = _erase(cfg, folder, work / "sdd-autocast", cfg.sdd_steps, None,
                                       mixed="autocast")  # fmt: skip
    for reuse in cfg.sdd_reuse:
        steps = cfg.sdd_steps_reuse1 if reuse == 1 else cfg.sdd_steps
        out[f"unsee_reuse{reuse}"] = _erase(cfg, folder, work / f"sdd-r{reuse}", steps, reuse)
    return out


def steady_rate(timeline: list[list[float]], batch: int) -> float | None:
    """Training samples per second after the first read of the losses (warm-up, the first
    kernels' selection and the first walk left out), from erase.json's timeline."""
    if len(timeline) < 2:
        return None
    (s0, t0), (s1, t1) = timeline[0], timeline[-1]
    return (s1 - s0) * batch / (t1 - t0) if t1 > t0 else None


def _erase(
    cfg: BenchGpuConfig, folder: Path, out: Path, iterations: int | None, reuse, **kw
) -> dict:
    if reuse is not None:
        kw["reuse"] = reuse
    if iterations is not None:
        kw["iterations"] = iterations
    if cfg.sample_steps is not None:
        kw["sample_steps"] = cfg.sample_steps
    config = EraseConfig(model=str(folder), concept=[CONCEPT], out=out, device=cfg.device,
                         checkpoint_every=0, **kw)  # fmt: skip
    _reset_peak(cfg)
    t0 = time.perf_counter()
    erase(config)
    wall = time.perf_counter() - t0
    info = json.loads((out / "erase.json").read_text())
    samples = config.iterations * config.batch
    return {
        "iterations": config.iterations,
        "batch": config.batch,
        "reuse": config.reuse,
        "mixed": config.mixed,
        "loop_seconds": info["seconds"],
        "wall_seconds": wall,
        "its": samples / info["seconds"],
        "its_steady": steady_rate(info.get("timeline", []), config.batch),
        "timeline": info.get("timeline"),
    } | _peak(cfg)


def _stage_erase(cfg: BenchGpuConfig, folder: Path, work: Path, report: dict) -> dict:
    """One whole erase at the defaults, or at the first --erase-reuse the sdd stage projects
    within --erase-budget (a run that would not fit is projected, not run)."""
    defaults = erase_defaults(str(folder))
    sdd = report["stages"].get("sdd", {})
    projections = {}
    for reuse in cfg.erase_reuse or [defaults["reuse"]]:
        timed = [v for k, v in sdd.items() if k.startswith("unsee_") and v.get("reuse") == reuse
                 and v.get("mixed", "pure") == "pure"]  # fmt: skip
        if not timed:
            continue
        rate = timed[0].get("its_steady") or timed[0]["its"]
        projections[reuse] = defaults["iterations"] * defaults["batch"] / rate
        if projections[reuse] <= cfg.erase_budget:
            extra = None if reuse == defaults["reuse"] else reuse
            result = _erase(cfg, folder, work / "erase-default", None, extra)
            return {"ran": True, "projected_loop_seconds": projections} | result
    return {"ran": False, "projected_loop_seconds": projections,
            "why": f"none projected within --erase-budget {cfg.erase_budget:g} s"}  # fmt: skip


def _stage_censor(cfg: BenchGpuConfig, folder: Path, work: Path) -> dict:
    reward = _random_reward(work / "reward")
    common = dict(
        model=str(folder), prompt=PROMPT, n=cfg.censor_images, batch_size=cfg.censor_images,
        steps=cfg.censor_steps, device=cfg.device,
    )  # fmt: skip
    out = {}
    # untimed warm-up: the first guided call selects kernels for the backward passes
    # (an H200 took 18 s for the first four guided images, 10 s for the next four)
    warm = common | {"n": 1, "batch_size": 1, "steps": 2}
    censor(CensorConfig(**warm, reward=reward, scale=4.0, recurrence=2, out=work / "censor-warm"))
    # and plain sampling's own (its first batch of this size selects its kernels)
    generate(GenerateConfig(**common, out=work / "censor-plain-warm"))
    _reset_peak(cfg)
    generate(GenerateConfig(**common, out=work / "censor-plain"))
    out["plain"] = _per_image(work / "censor-plain", cfg.censor_images) | _peak(cfg)
    latent = _random_reward(work / "reward-latent", folder)
    variants = {
        "guided": {},
        "guided_no_checkpointing": {"checkpointing": "off"},
        "guided_eps_constant": {"checkpointing": "off", "through_unet": False},
        "guided_noise_aware": {"reward": latent},
    }
    for name in cfg.censor_variants:
        extra = variants[name]
        _reset_peak(cfg)
        extra = {"reward": reward} | extra
        censor(CensorConfig(**common, scale=4.0, recurrence=2, out=work / f"censor-{name}",
                            **extra))  # fmt: skip
        out[name] = _per_image(work / f"censor-{name}", cfg.censor_images) | _peak(cfg)
        out[name]["times_plain"] = out[name]["s_per_image"] / out["plain"]["s_per_image"]
        _free()
    return out


def _stage_invert(cfg: BenchGpuConfig, folder: Path, work: Path) -> dict:
    feedback = work / "gen-default"
    if not (feedback / METADATA).is_file():
        raise UnseeError("the invert stage reads the generate stage's images; run it first")
    reward = work / "reward"
    if not reward.is_dir():
        _random_reward(reward)
    out = work / "token.safetensors"
    _reset_peak(cfg)
    invert(InvertConfig(model=str(folder), feedback=feedback, reward=reward, init="painting",
                        token="<look>", steps=cfg.invert_steps, batch=cfg.batch_size, out=out,
                        device=cfg.device))  # fmt: skip
    info = json.loads(out.with_suffix(".json").read_text())
    return {"steps": cfg.invert_steps, "batch": cfg.batch_size, "seconds": info["seconds"],
            "steps_per_s": cfg.invert_steps / info["seconds"]} | _peak(cfg)  # fmt: skip


def _stage_attack(cfg: BenchGpuConfig, work: Path) -> dict:
    """The prefix attack of `unsee attack` at the paper's settings on a batch of prompts,
    with a detector that never fires, so every step runs (`unsee bench attack`'s figure)."""
    build, size, _ = SIZES[cfg.size]
    settings = None if cfg.size in ("sd15", "sdxl") else {"iterations": 2, "check_every": 1}
    _reset_peak(cfg)
    seconds = random_weights_seconds(
        cfg.device, cfg.attack_prompts, size, build=build, settings=settings
    )
    return {"prompts": cfg.attack_prompts, "seconds_per_prompt": seconds,
            "detector": "never fires: every step of the attack runs"} | _peak(cfg)  # fmt: skip


def _stage_compile(cfg: BenchGpuConfig, folder: Path, work: Path) -> dict:
    return _unsee_generate(cfg, folder, work / "gen-compile", "compile")


# --- helpers ---------------------------------------------------------------------------


def _random_reward(path: Path, folder: Path | None = None) -> Path:
    """A reward with random weights (guidance costs the same whatever it learned): a cnn
    on images, or with `folder`, a noise-aware one on that model's latents (classic
    guidance reads (x_t, t): no VAE decoder, no U-Net backward per guided step)."""
    fields: dict = {"backbone": "cnn", "image_size": 64}
    if folder is not None:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        shape = [unet["in_channels"], unet["sample_size"], unet["sample_size"]]
        fields = {"backbone": "noise-aware", "sample_shape": shape, "model": str(folder)}
    config = {"unsee_version": __version__, "loss": "bce", "ensemble": 1,
              "note": "random weights, for `unsee bench gpu`", **fields}  # fmt: skip
    torch.manual_seed(0)
    RewardModel(config, [make_member(config, None)]).save(path)
    return path


def _per_image(out: Path, n: int) -> dict:
    run = read_run_file(out)
    return {"images": n, "seconds": run["seconds"], "s_per_image": run["seconds"] / n}


def _figures(stages: dict) -> dict:
    """The headline ratios, from whichever stages finished."""
    f: dict = {}
    gen = stages.get("generate", {})
    if "plain_diffusers" in gen and "unsee_default" in gen:
        base = gen["plain_diffusers"]["images_per_s"]
        f["generate_images_per_s"] = gen["unsee_default"]["images_per_s"]
        f["diffusers_images_per_s"] = base
        f["generate_vs_diffusers"] = gen["unsee_default"]["images_per_s"] / base
        if "images_per_s" in stages.get("compile", {}):
            f["generate_compile_vs_diffusers"] = stages["compile"]["images_per_s"] / base
    sdd = stages.get("sdd", {})
    for key, value in sdd.items():  # one `unsee erase`: its rate and peak memory
        if key.startswith("unsee_") and "its" in value:
            f[f"sdd_{key}_its"] = value["its"]
            if "peak_mib" in value:
                f[f"sdd_{key}_peak_mib"] = value["peak_mib"]
    if "plain_loop" in sdd:
        for key in sdd:
            if key.startswith("unsee_"):
                f[f"sdd_{key}_its"] = sdd[key]["its"]
                f[f"sdd_{key}_vs_plain"] = sdd[key]["its"] / sdd["plain_loop"]["its"]
                if sdd[key].get("its_steady"):
                    f[f"sdd_{key}_steady_vs_plain"] = (
                        sdd[key]["its_steady"] / sdd["plain_loop"]["its"]
                    )
        f["sdd_plain_its"] = sdd["plain_loop"]["its"]
    gen = stages.get("generate", {}).get("unsee_default", {})
    if "peak_mib" in gen:
        f["generate_peak_mib"] = gen["peak_mib"]
    erase = stages.get("erase", {})
    if erase.get("ran"):
        f["erase_default_wall_seconds"] = erase["wall_seconds"]
        f["erase_default_loop_seconds"] = erase["loop_seconds"]
    elif erase.get("projected_loop_seconds"):
        f["erase_default_projected_loop_seconds"] = min(erase["projected_loop_seconds"].values())
    for key, value in stages.get("censor", {}).items():
        if isinstance(value, dict) and "times_plain" in value:
            f[f"censor_{key}_times_plain"] = value["times_plain"]
    if "steps_per_s" in stages.get("invert", {}):
        f["invert_steps_per_s"] = stages["invert"]["steps_per_s"]
        if "peak_mib" in stages["invert"]:
            f["invert_peak_mib"] = stages["invert"]["peak_mib"]
    guided = stages.get("censor", {}).get("guided", {})
    if "s_per_image" in guided:
        f["censor_guided_s_per_image"] = guided["s_per_image"]
        if "peak_mib" in guided:
            f["censor_guided_peak_mib"] = guided["peak_mib"]
    if "seconds_per_prompt" in stages.get("attack", {}):
        f["attack_seconds_per_prompt"] = stages["attack"]["seconds_per_prompt"]
    return f


def _settings(cfg: BenchGpuConfig) -> dict:
    import diffusers
    import transformers

    cuda = cfg.device == "cuda"
    return {
        "unsee_version": __version__,
        **{f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)},
        "card": torch.cuda.get_device_name() if cuda else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "model": SIZES[cfg.size][2],
        "timing": "wall time between device synchronisations; model loading excluded unless"
        " a figure says 'wall'",
        "memory": "torch.cuda.max_memory_allocated after a reset at the start of each"
        " measurement (weights included)",
    }


def _plain(value):
    return str(value) if isinstance(value, Path) else value


def _write(out: Path, report: dict) -> None:
    atomic_write_text(out / "results.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "results.md", _markdown(report))


def _markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# unsee bench gpu: {s['card']}",
        "",
        f"torch {s['torch']} (CUDA {s['cuda']}), diffusers {s['diffusers']}, transformers "
        f"{s['transformers']}, unsee {s['unsee_version']}; {s['model']}; total "
        f"{s.get('total_seconds', 0):.0f} s.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["figures"].items()]
    for stage, value in report["stages"].items():
        lines += ["", f"## {stage}", "", "```json", json.dumps(value, indent=1), "```"]
    if report["errors"]:
        lines += ["", "## errors", ""]
        lines += [f"- {k}: {v.strip().splitlines()[-1]}" for k, v in report["errors"].items()]
    return "\n".join(lines) + "\n"


def _now(cfg: BenchGpuConfig) -> float:
    if cfg.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _reset_peak(cfg: BenchGpuConfig) -> None:
    if cfg.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(cfg: BenchGpuConfig) -> dict:
    if cfg.device != "cuda":
        return {}
    return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20}


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
