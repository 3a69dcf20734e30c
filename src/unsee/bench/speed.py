"""`unsee bench speed`: SDD training speed and peak memory, batched against a plain loop.

unit: trajectory-iterations per second = iterations x trajectories per iteration / seconds.
One trajectory-iteration is one trajectory sampled by the EMA teacher to its stop step,
its term of the SDD loss, and its share of the optimiser and EMA step.

batched  unsee's own step (erase.run.sdd_step): B trajectories per step, each DDIM step's
         CFG pair in one forward, finished trajectories masked out; bf16 autocast on a GPU
plain    the original SDD code's way: one trajectory per step, separate unconditional and
         conditional U-Net forwards per DDIM step, fp32, no autocast

Both modes take the same trajectories (stop steps drawn once from --seed, Beta(3, 3)),
train the cross-attention with AdamW, keep an EMA teacher, and each runs in its own
spawned process, so its peak memory is its own:
  cpu  --model (minisd): the process's peak RSS (ru_maxrss), model loading included
  gpu  Stable Diffusion 1.5 sized components with random weights (models/tiny.py), 64x64
       latents: peak allocated CUDA memory, weights included
"""

import dataclasses
import json
import multiprocessing
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm.auto import tqdm

from unsee import __version__
from unsee.bench.config import BenchSpeedConfig
from unsee.erase.config import EraseConfig, erase_defaults
from unsee.erase.params import select_parameters
from unsee.erase.run import ema_teacher, encode_texts, optimizer, sdd_step
from unsee.erase.sdd import ema_update, sdd_loss, stop_steps, teacher_latents, train_timesteps
from unsee.errors import UnseeError
from unsee.imageset import atomic_write_text
from unsee.models.load import load_pipeline
from unsee.models.tiny import sd15_sized_pipeline

UNIT = (
    "trajectory-iterations per second: iterations x trajectories per iteration / seconds; one"
    " trajectory-iteration = one teacher trajectory to its stop step, its SDD loss term and its"
    " share of the optimiser and EMA step"
)
MEMORY = {
    "cpu": "peak RSS of the mode's own process (ru_maxrss), model loading included; "
    "rss_after_load_mib is the peak before the first step",
    "gpu": "torch.cuda.max_memory_allocated after a reset once the model is loaded (weights "
    "included)",
}
CONCEPT = "Vanmond"  # what is erased does not change the work
MODES = ("batched", "plain")


def _erase_default(name: str, model: str = "minisd"):
    """erase's default for a setting the bench shares (lr, ema, cfg_scale, beta); those that
    depend on the model (lr, ema) as on `model`."""
    f = next(f for f in dataclasses.fields(EraseConfig) if f.name == name)
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return erase_defaults(model)[name] if value is None else value


def run_bench_speed(cfg: BenchSpeedConfig) -> dict:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UnseeError("--device cuda asked for, but torch sees no CUDA GPU")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"]}.get(cfg.device)
    if devices is None:  # auto
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    cfg.out.mkdir(parents=True, exist_ok=True)

    # the same trajectories for both modes: timed ones first, then the warm-up's
    n = (cfg.iterations + cfg.warmup) * cfg.batch
    beta = tuple(_erase_default("beta"))
    stops = stop_steps(n, cfg.sample_steps, "beta", beta, torch.Generator().manual_seed(cfg.seed))

    figures, runs = {}, {}
    for device in devices:
        name = "cpu" if device == "cpu" else "gpu"
        runs[name] = {mode: _in_own_process(cfg, device, mode, stops.tolist()) for mode in MODES}
        batched, plain = runs[name]["batched"], runs[name]["plain"]
        figures[f"{name}_batched_its"] = batched["its"]
        figures[f"{name}_plain_its"] = plain["its"]
        figures[f"{name}_ratio"] = batched["its"] / plain["its"]
        memory = "peak_rss_mib" if name == "cpu" else "peak_mib"
        for mode in MODES:
            figures[f"{name}_{mode}_{memory}"] = runs[name][mode][memory]

    report = {
        "benchmark": "speed",
        "unit": UNIT,
        **figures,
        "memory": {name: MEMORY[name] for name in runs},
        "runs": runs,
        "settings": {
            "unsee_version": __version__,
            **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "out"},
            "plain_steps": cfg.iterations * cfg.batch,
            "stop_steps": f"Beta{beta} of sample_steps, mean {stops.float().mean():.1f}",
            "cfg_scale": _erase_default("cfg_scale"),
            "lr": _erase_default("lr"),
            "ema": _erase_default("ema"),
            "trained": "cross-attention (AdamW, grad-norm clip 1), EMA teacher",
            "cpu_model": cfg.model,
            "gpu_model": "Stable Diffusion 1.5 sized components, random weights "
            "(models/tiny.py sd15_sized_pipeline), 64x64 latents",
            "batched": "erase.run.sdd_step: CFG pair in one forward; bf16 autocast on the GPU, "
            "fp32 on the CPU",
            "plain": "batch 1, separate CFG forwards, fp32, no autocast",
            "attention": "diffusers' default processor (SDPA) in both modes",
            "timing": "wall time of the timed steps after the warm-up; model loading excluded",
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "gpu": torch.cuda.get_device_name() if "cuda" in devices else None,
        },
    }
    path = cfg.out / "results.json"
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    for name in runs:
        memory = "peak RSS" if name == "cpu" else "peak CUDA memory"
        mib = "peak_rss_mib" if name == "cpu" else "peak_mib"
        print(
            f"{name}: batched {figures[f'{name}_batched_its']:.2f} its, plain "
            f"{figures[f'{name}_plain_its']:.2f} its, ratio {figures[f'{name}_ratio']:.2f}x; "
            f"{memory} {runs[name]['batched'][mib]:.0f} / {runs[name]['plain'][mib]:.0f} MiB"
        )
    print(f"wrote {path}")
    return report


def _in_own_process(cfg: BenchSpeedConfig, device: str, mode: str, stops: list[int]) -> dict:
    """time_mode in a fresh spawned process: its own memory, threads and accelerate state."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(time_mode, cfg, device, mode, stops).result()


def time_mode(cfg: BenchSpeedConfig, device: str, mode: str, stops: list[int]) -> dict:
    """Load the model, then time cfg.iterations steps of `mode` (after the warm-up)."""
    from diffusers import DDIMScheduler

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = device == "cuda"
    if cuda:
        with torch.device("cuda"):
            pipe = sd15_sized_pipeline(seed=cfg.seed)
    else:
        pipe = load_pipeline(cfg.model, "cpu", "fp32")
    dev = torch.device(device)
    texts = encode_texts(pipe, ["", CONCEPT, CONCEPT], dev).chunk(3)  # c_0, c_p, c_s: (1, L, D)

    # student, EMA teacher, optimiser, as `unsee erase` sets them up
    unet = pipe.unet
    params = select_parameters(unet, "cross-attention")
    teacher, ema = ema_teacher(unet, list(params))
    opt = optimizer(params, _erase_default("lr"))
    unet.train()
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(cfg.sample_steps, device=dev)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    if mode == "batched":
        step = _batched_step(cuda, unet, teacher, ema, params, opt, scheduler, texts, g)
        per_step = cfg.batch
    else:
        step, per_step = _plain_step(unet, teacher, ema, params, opt, scheduler, texts, g), 1

    stops_t = torch.tensor(stops)
    timed, warm = stops_t[: cfg.iterations * cfg.batch], stops_t[cfg.iterations * cfg.batch :]
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for s in warm.split(per_step)[: cfg.warmup]:
        step(s)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    chunks = timed.split(per_step)
    start = time.perf_counter()
    for s in tqdm(chunks, desc=f"{'gpu' if cuda else 'cpu'} {mode}", dynamic_ncols=True):
        step(s)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "steps": len(chunks),
        "trajectories_per_step": per_step,
        "its": len(timed) / seconds,
        "threads": torch.get_num_threads(),
    }
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["rss_after_load_mib"] = rss_after_load
    return result


def _batched_step(cuda, unet, teacher, ema, params, opt, scheduler, texts, g):
    """unsee's step: erase.run.sdd_step under accelerate, as `unsee erase` runs it."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision="bf16" if cuda else "no", cpu=not cuda)
    unet, opt = accelerator.prepare(unet, opt)
    config = accelerator.unwrap_model(unet).config
    train_steps = scheduler.config.num_train_timesteps
    cfg_scale, momentum = _erase_default("cfg_scale"), _erase_default("ema")

    def step(stops: torch.Tensor) -> None:
        b = len(stops)
        shape = (b, config.in_channels, config.sample_size, config.sample_size)
        z_T = torch.randn(shape, generator=g).to(accelerator.device)
        t = train_timesteps(scheduler.timesteps, stops, train_steps, g).to(accelerator.device)
        c_0, c_p, c_s = (c.expand(b, -1, -1) for c in texts)
        with accelerator.autocast():
            z = teacher_latents(teacher, scheduler, c_p, c_0, stops, cfg_scale, z_T)
        sdd_step(accelerator, unet, ema, params, opt, (c_0, c_s), z, t, momentum)

    return step


def _plain_step(unet, teacher, ema, params, opt, scheduler, texts, g):
    """The original SDD code's step: one trajectory, two U-Net forwards per DDIM step, fp32."""
    c_0, c_p, c_s = texts  # (1, L, D)
    device = c_0.device
    config = unet.config
    shape = (1, config.in_channels, config.sample_size, config.sample_size)
    train_steps = scheduler.config.num_train_timesteps
    cfg_scale, momentum = _erase_default("cfg_scale"), _erase_default("ema")
    trained = list(params.values())

    def step(stops: torch.Tensor) -> None:
        z = torch.randn(shape, generator=g).to(device)
        t = train_timesteps(scheduler.timesteps, stops, train_steps, g).to(device)
        # 1. the teacher's trajectory, unconditional and conditional forwards one by one
        with torch.no_grad():
            for t_i in scheduler.timesteps[: int(stops[0])]:
                e_u = teacher(z, t_i, encoder_hidden_states=c_0).sample
                e_c = teacher(z, t_i, encoder_hidden_states=c_p).sample
                z = scheduler.step(e_u + cfg_scale * (e_c - e_u), t_i, z).prev_sample
            # 2. the SDD loss, its optimiser step and the EMA
            e_0 = unet(z, t, encoder_hidden_states=c_0).sample
        loss = sdd_loss(e_0, unet(z, t, encoder_hidden_states=c_s).sample)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, trained, momentum)

    return step


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        return platform.processor()
    return names[0] if names else platform.processor()
