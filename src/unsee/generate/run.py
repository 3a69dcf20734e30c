"""`unsee generate`: prompts -> an image folder, resumable, sharded over processes.

Each image has its own seed; with batch invariance on, the same (prompt, seed, settings)
gives the same pixels whatever the batch size or number of processes. Run under
`accelerate launch` to split the images over processes (each image is made once).

Inference-time baselines: a negative prompt (text or learned tokens from --embedding),
SLD (--sld, unsee.guidance.sld) or SEGA (--sega-remove, unsee.guidance.sega), one at a
time, on the model as loaded, with --lora weights when given.
"""

import dataclasses
import json
import logging
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from unsee import __version__, imageset
from unsee.errors import SettingsMismatch, UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.prompts import PromptRow, read_prompts
from unsee.guidance.hook import Censor
from unsee.guidance.sega import SEGASettings, sega_denoiser
from unsee.guidance.sld import PRESETS, SLDPreset, sld_denoiser
from unsee.models.load import (
    is_conditional,
    is_sdxl,
    load_embeddings,
    load_pipeline,
    optimize_inference,
    process_state,
)
from unsee.models.text import encode_text, zeros_for_empty_prompt
from unsee.sampling.conditioning import MicroCond, TextCond, check_time_ids, with_time_ids
from unsee.sampling.denoiser import (
    INVARIANT_CHUNK,
    Denoiser,
    exact_cpu_kernels,
    text_denoiser,
    unconditional_denoiser,
)
from unsee.sampling.loop import decode, initial_noise, make_scheduler, sample

log = logging.getLogger("unsee")

# Settings that must agree between a folder's existing images and a resumed run.
_MATCH = (
    "prompt",
    "negative_prompt",
    "seed",
    "guidance",
    "steps",
    "scheduler",
    "height",
    "width",
    "censor",
    "embedding",
    "lora",
    "sld",
    "sega",
    "original_size",
    "crops_coords_top_left",
    "target_size",
)


@dataclass(frozen=True)
class Job:
    """One image to make."""

    index: int
    prompt: str
    seed: int
    guidance: float
    ids: dict[str, str] = field(default_factory=dict)


def plan_jobs(rows: list[PromptRow], n: int, seed: int, guidance: float) -> list[Job]:
    """Image index r*n + k is the k-th image of row r; its seed is the row's
    evaluation_seed + k when the CSV gives one, else seed + index."""
    jobs = []
    for r, row in enumerate(rows):
        for k in range(n):
            index = r * n + k
            jobs.append(
                Job(
                    index=index,
                    prompt=row.prompt,
                    seed=(row.seed + k) if row.seed is not None else seed + index,
                    guidance=row.guidance if row.guidance is not None else guidance,
                    ids=row.ids,
                )
            )
    last = max(jobs, key=lambda j: j.seed, default=None)
    if last is not None and last.seed >= 2**32:
        # torch's CPU generator reads seeds mod 2^32: this image would repeat another seed's
        raise UnseeError(
            f"image {last.index} would get seed {last.seed}, beyond 2^32-1; lower --seed or --n"
        )
    return jobs


def batches(jobs: list[Job], size: int) -> list[list[Job]]:
    """Consecutive jobs in batches of at most `size`, never mixing guidance scales."""
    out: list[list[Job]] = []
    for job in jobs:
        if out and len(out[-1]) < size and out[-1][0].guidance == job.guidance:
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _check_resume(finished: dict[int, dict], expected: dict[int, dict], out: Path) -> None:
    for index, record in finished.items():
        want = expected.get(index)
        if want is None:
            raise SettingsMismatch(
                f"{out} holds image {index}, which this run would not make; use another --out"
            )
        for key in _MATCH:
            if record.get(key) != want.get(key):
                raise SettingsMismatch(
                    f"{out} was made with other settings (image {index}: {key} "
                    f"{record.get(key)!r} here, {want.get(key)!r} now); use another --out"
                )


def _warn_long_prompts(tokenizer, rows: list[PromptRow]) -> None:
    limit = tokenizer.model_max_length
    for prompt in dict.fromkeys(row.prompt for row in rows):
        n_tokens = len(tokenizer(prompt, truncation=False).input_ids)
        if n_tokens > limit:
            log.warning(
                "prompt is %d tokens, the text encoder reads %d; the rest is dropped: %.60r",
                n_tokens,
                limit,
                prompt,
            )


class Sampler:
    """A loaded model with `unsee generate`'s settings: the images of jobs, made exactly as
    `unsee generate` makes them (with batch invariance on, the same pixels for the same
    prompt, seed and settings, whoever asks and in whatever batch).

    pipe: an already loaded pipeline to use instead of cfg.model (benchmarks with random
    weights); it is taken as it is, without --lora or --embedding.
    """

    def __init__(self, cfg: GenerateConfig, censor: Censor | None = None, pipe=None) -> None:
        if censor is not None and (cfg.sld != "off" or cfg.sega_remove):
            raise UnseeError(
                "--sld and --sega-remove are baselines of `unsee generate`; `unsee censor` takes"
                " neither (it guides with a reward)"
            )
        if cfg.lora is not None and not cfg.lora.exists():
            raise UnseeError(f"LoRA weights {cfg.lora} do not exist")
        loaded = pipe is None
        if loaded:
            pipe = load_pipeline(cfg.model, cfg.device, cfg.dtype)
        conditional = is_conditional(pipe)
        if not conditional:
            for flag, given in (
                ("--embedding", cfg.embedding),
                ("--lora", cfg.lora),
                ("--sld", cfg.sld != "off"),
                ("--sega-remove", cfg.sega_remove),
            ):
                if given:
                    raise UnseeError(f"model {cfg.model!r} is unconditional; it takes no {flag}")
        elif loaded:
            # before any prompt is encoded, so learned tokens work everywhere
            if cfg.lora is not None:
                _load_lora(pipe, cfg.lora)
            load_embeddings(pipe, cfg.embedding)
        self.cfg, self.censor, self.pipe, self.conditional = cfg, censor, pipe, conditional
        self.sld = PRESETS[cfg.sld].for_steps(cfg.steps) if cfg.sld != "off" else None
        self.sega = SEGASettings(cfg.sega_scale).for_steps(cfg.steps) if cfg.sega_remove else None
        self.height, self.width = _image_size(pipe, cfg, conditional)
        # SDXL's size conditioning: an uncropped image of the size made
        self.micro = MicroCond.uncropped(self.height, self.width) if is_sdxl(pipe) else None
        if self.micro is not None:
            try:
                check_time_ids(pipe.unet, pipe.text_encoder_2.config.projection_dim)
            except ValueError as e:
                raise UnseeError(f"model {cfg.model!r}: {e}") from None
        device = pipe.device
        invariant = cfg.batch_invariant == "on" or (
            cfg.batch_invariant == "auto" and device.type == "cpu"
        )
        # guided images go one by one (their gradients run through the reward and the VAE too)
        self.chunk = (1 if censor is not None else INVARIANT_CHUNK) if invariant else None
        self.batch_size = 1 if censor is not None and invariant else cfg.batch_size
        # oneDNN is exact at a fixed call size of INVARIANT_CHUNK images (and much faster than
        # the native kernels); guided images go one at a time, where only the native kernels are
        self.exact = (
            invariant and device.type == "cpu" and self.chunk is not None
            and self.chunk < INVARIANT_CHUNK
        )  # fmt: skip
        self.scheduler = make_scheduler(cfg.scheduler, pipe.scheduler.config)
        factor = pipe.vae_scale_factor if conditional else 1
        channels = pipe.unet.config.in_channels
        self.shape = (channels, self.height // factor, self.width // factor)
        if censor is not None:  # before any output folder is made
            censor.reward.check_model(pipe, self.shape)
        self.embed_cache: dict[str, TextCond] = {}

    def compile_for(self, images: int) -> None:
        """Compile the U-Net when this run is worth it (`--optimize`, GPU only); every
        call then has one size (the last batch padded), so it compiles once."""
        if _compiles(self.cfg, self.pipe.device, images):
            optimize_inference(self.pipe)
            self.chunk = self.chunk or min(self.batch_size, images)

    def images(self, batch: list[Job]) -> tuple[torch.Tensor, list[dict]]:
        """(B, H, W, 3) uint8 images of the jobs (one guidance scale), and each image's
        censor scores ({} without a censor)."""
        pipe, cfg, censor = self.pipe, self.cfg, self.censor
        with exact_cpu_kernels() if self.exact else nullcontext():
            generators = [torch.Generator("cpu").manual_seed(j.seed) for j in batch]
            x_T = initial_noise(self.shape, generators, pipe.device, pipe.unet.dtype)
            guidance = batch[0].guidance
            if self.conditional:
                prompts = [j.prompt for j in batch]
                denoiser = _text_denoiser(
                    pipe, cfg, prompts, guidance, self.embed_cache, self.sld, self.sega,
                    self.scheduler, self.chunk, self.micro,
                )  # fmt: skip
                vae = pipe.vae
            else:
                denoiser = unconditional_denoiser(pipe.unet, self.chunk)
                vae = None
            recurrence = 1
            if censor is not None:
                denoiser = censor.wrap(denoiser, pipe, self.conditional, self.shape, len(batch))
                recurrence = censor.recurrence
            x0 = sample(denoiser, self.scheduler, x_T, cfg.steps, generators, recurrence=recurrence)
            images = decode(vae, x0, self.chunk)
            scores = censor.score(images, x0) if censor is not None else [{}] * len(batch)
        return images, scores


def generate(cfg: GenerateConfig, censor: Censor | None = None) -> Path:
    """Make the images `cfg` asks for in cfg.out (skipping finished ones); return cfg.out.

    censor: reward guidance for the sampler (`unsee censor`); each image's metadata then
    also holds its reward score. Guided images are made one at a time when batch
    invariance is on, so their gradients never mix.
    """
    state = process_state(cfg.device)
    sampler = Sampler(cfg, censor)
    pipe, conditional = sampler.pipe, sampler.conditional
    sld, sega = sampler.sld, sampler.sega

    # 1. prompts and the image plan
    if cfg.prompts is not None:
        rows = read_prompts(cfg.prompts)
    elif cfg.prompt is not None:
        rows = [PromptRow(cfg.prompt)]
    elif conditional:
        raise UnseeError("give a prompt: --prompt TEXT or --prompts FILE")
    else:
        rows = [PromptRow("")]
    if not conditional and any(row.prompt for row in rows):
        raise UnseeError(f"model {cfg.model!r} is unconditional; it takes no prompt")
    if not conditional and cfg.negative_prompt:
        raise UnseeError(f"model {cfg.model!r} is unconditional; it takes no negative prompt")
    height, width = sampler.height, sampler.width
    jobs = plan_jobs(rows, cfg.n, cfg.seed, cfg.guidance)
    if conditional and state.is_main_process:
        _warn_long_prompts(pipe.tokenizer, rows)

    common = {
        "model": cfg.model,
        "steps": cfg.steps,
        "scheduler": cfg.scheduler,
        "negative_prompt": cfg.negative_prompt,
        "height": height,
        "width": width,
        "unsee_version": __version__,
    }
    if censor is not None:
        common["censor"] = censor.settings()
    if cfg.embedding:
        common["embedding"] = [str(p) for p in cfg.embedding]
    if cfg.lora is not None:
        common["lora"] = str(cfg.lora)
    if sld is not None:
        common["sld"] = {"preset": cfg.sld, "concept": cfg.sld_concept, **dataclasses.asdict(sld)}
    if sega is not None:
        common["sega"] = {"remove": list(cfg.sega_remove), **dataclasses.asdict(sega)}
    if sampler.micro is not None:
        common |= sampler.micro.record()
    expected = {
        j.index: imageset.image_record(
            j.index, prompt=j.prompt, seed=j.seed, guidance=j.guidance, **j.ids, **common
        )
        for j in jobs
    }

    # 2. what is finished already (the main process drops broken lines first)
    out = cfg.out
    if state.is_main_process:
        (out / imageset.IMAGES).mkdir(parents=True, exist_ok=True)
        for place in (out, out / imageset.IMAGES):  # what a killed run was writing
            imageset.remove_stale_temporaries(place)
        finished = imageset.read_finished(out)
        _check_resume(finished, expected, out)
        imageset.rewrite_metadata(out, finished)
        # sampling seconds add up over the sittings of a resumed run
        earlier = _earlier_seconds(out) if finished else 0.0
        run = {
            "command": "generate" if censor is None else "censor",
            "unsee_version": __version__,
            "settings": _jsonable(dataclasses.asdict(cfg))
            | ({} if censor is None else {"censor": censor.settings()}),
            "images": len(jobs),
            "processes": state.num_processes,
            "complete": False,
        } | {k: common[k] for k in ("sld", "sega") if k in common}  # as run, warm-up scaled
        imageset.write_run_file(out, run)
    state.wait_for_everyone()
    finished = imageset.read_finished(out)
    todo = [j for j in jobs if j.index not in finished]
    mine = todo[state.process_index :: state.num_processes]

    # 3. sample, batch by batch
    bar = tqdm(
        total=len(todo),
        desc="generate",
        unit="img",
        disable=not state.is_main_process,
        dynamic_ncols=True,
    )
    started = time.time()
    sampler.compile_for(len(mine))
    writer = imageset.ImageWriter(out)
    batch_seconds: list[float] = []  # this process's, this sitting's: where the time goes
    with closing(writer):
        for batch in batches(mine, sampler.batch_size):
            batch_started = time.perf_counter()
            images, scores = sampler.images(batch)
            for job, pixels, score in zip(batch, images, scores, strict=True):
                writer.put(Image.fromarray(pixels.numpy()), expected[job.index] | score)
            batch_seconds.append(round(time.perf_counter() - batch_started, 4))
            bar.update(len(batch) * state.num_processes)
    bar.close()

    # 4. tidy: one sorted metadata file, the run marked complete
    state.wait_for_everyone()
    if state.is_main_process:
        finished = imageset.read_finished(out)
        missing = [j.index for j in jobs if j.index not in finished]
        if missing:
            raise UnseeError(f"{len(missing)} images are missing from {out}; run again to finish")
        imageset.rewrite_metadata(out, finished)
        run["complete"] = True
        run["seconds"] = round(earlier + time.time() - started, 3)
        run["batch_seconds"] = batch_seconds
        imageset.write_run_file(out, run)
    return out


COMPILE_FROM = 512  # images a GPU run makes before --optimize auto compiles (docs/bench-gpu)


def _compiles(cfg: GenerateConfig, device: torch.device, images: int) -> bool:
    """Whether this run compiles the U-Net: on a GPU, when asked or (auto) worth it: the
    compilation (42 s) pays for itself after about 500 images at Stable Diffusion 1.5 size."""
    if device.type != "cuda" or cfg.optimize == "none" or images == 0:
        return False
    return cfg.optimize == "compile" or images >= COMPILE_FROM


def _earlier_seconds(out: Path) -> float:
    try:
        return float(imageset.read_run_file(out).get("seconds", 0.0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


def _image_size(pipe, cfg: GenerateConfig, conditional: bool) -> tuple[int, int]:
    native = pipe.unet.config.sample_size
    if conditional:
        factor = pipe.vae_scale_factor
        height, width = cfg.height or native * factor, cfg.width or native * factor
        for name, value in (("height", height), ("width", width)):
            if value % 8:
                raise UnseeError(f"--{name} {value} must be a multiple of 8")
        return height, width
    for name, value in (("height", cfg.height), ("width", cfg.width)):
        if value is not None and value != native:
            raise UnseeError(f"--{name}: model {cfg.model!r} makes only {native}px images")
    return native, native


def _load_lora(pipe, path: Path) -> None:
    try:
        pipe.load_lora_weights(str(path))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnseeError(f"could not load LoRA weights {path}: {first}") from e


def _text_denoiser(
    pipe,
    cfg: GenerateConfig,
    prompts: list[str],
    guidance: float,
    cache: dict[str, TextCond],
    sld: SLDPreset | None,
    sega: SEGASettings | None,
    scheduler,
    chunk: int | None,
    micro: MicroCond | None = None,
) -> Denoiser:
    """The batch's denoiser: classifier-free guidance, with SLD or SEGA when asked for
    (they always run the negative-prompt forward, whatever the guidance scale). micro:
    SDXL's size conditioning, for every text."""
    n = len(prompts)

    def embed(texts: list[str]) -> TextCond:
        return with_time_ids(_embed(pipe, texts, cache), micro)

    cond = embed(prompts)  # (n, L, D)
    if sld is None and sega is None:
        uncond = _negative(pipe, cfg.negative_prompt, cond, embed) if guidance > 1 else None
        return text_denoiser(pipe.unet, cond, uncond, guidance, chunk)
    uncond = _negative(pipe, cfg.negative_prompt, cond, embed)
    if sld is not None:
        concept = embed([cfg.sld_concept] * n)
        return sld_denoiser(pipe.unet, cond, uncond, concept, guidance, sld, scheduler, chunk)
    concepts = [embed([text] * n) for text in cfg.sega_remove]
    return sega_denoiser(pipe.unet, cond, uncond, concepts, guidance, sega, scheduler, chunk)


def _negative(pipe, negative_prompt: str, cond: TextCond, embed) -> TextCond:
    """The negative prompt's conditioning, one row per image of cond: for an SDXL model
    whose config asks for it (force_zeros_for_empty_prompt), the empty negative prompt
    is zeros, as in diffusers."""
    if not negative_prompt and zeros_for_empty_prompt(pipe):
        zeros = torch.zeros_like(cond.hidden), torch.zeros_like(cond.pooled)
        return TextCond(*zeros, cond.time_ids)
    return embed([negative_prompt] * len(cond.hidden))


def _embed(pipe, prompts: list[str], cache: dict[str, TextCond]) -> TextCond:
    """Text conditioning, (B, L, D) embeddings (and SDXL's pooled (B, P) ones), one prompt
    at a time and cached: a prompt's embedding never depends on the other prompts of its
    batch."""
    for prompt in dict.fromkeys(prompts):
        if prompt not in cache:
            with torch.no_grad():
                cache[prompt] = encode_text(pipe, prompt)
    return TextCond(
        torch.cat([cache[p].hidden for p in prompts]),
        None if cache[prompts[0]].pooled is None else torch.cat([cache[p].pooled for p in prompts]),
    )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))  # paths, also in lists, as text
