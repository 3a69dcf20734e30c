"""`unsee attack`: attack a model (with any intervention, applied as `unsee evaluate` applies
it) and report how often the concept comes back.

OUT/
  attack.json      the settings (a resumed run must match them)
  before.jsonl     each prompt as it is, judged: the successes before any attack
  prompts.jsonl    one line per finished prompt: index, prompt, seed, guidance,
                   success_before, success, step (0: before the attack; null: never),
                   hard_prompt (the text that was judged last: `unsee generate --prompt`)
  images/          the judged image of each attacked prompt's hard prompt
  targets/         the original model's images of the concept (prefix, inversion)
  learned_embeds.safetensors   the inversion's token (inversion)
  results.json     written last: ASR before and after, rates, seconds, the detector
Lines are appended as each prompt finishes, so a killed run resumes where it stopped.
"""

import csv
import dataclasses
import io
import json
import shlex
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from unsee import __version__, imageset
from unsee.attack.config import AttackConfig
from unsee.attack.detect import Detector, make_detector
from unsee.attack.inversion import invert_concept, token_captions
from unsee.attack.prefix import Case, attack_batch, prefix_vocabulary
from unsee.attack.replay import replay_jobs
from unsee.errors import SettingsMismatch
from unsee.evaluate.sampling import generate_settings, generate_with
from unsee.evaluate.suites import suite_seed, world_suite
from unsee.generate.run import Job, Sampler, batches
from unsee.imageset import atomic_write_text, load_images, read_image_set
from unsee.invert.run import encode_latents, token_file_bytes
from unsee.models.load import load_embeddings, pick_device
from unsee.world.names import ARTISTS
from unsee.world.render import ARTIST_TEMPLATES, WATERMARK_PHRASES

SETTINGS, BEFORE, PROMPTS, RESULTS = "attack.json", "before.jsonl", "prompts.jsonl", "results.json"
# settings that may change between sittings of one run
_FREE = ("device", "out")


def attack(cfg: AttackConfig) -> dict:
    device = pick_device(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg)
    jobs = attack_jobs(cfg)
    detector, detector_line = make_detector(cfg.concept, cfg.nudenet_threshold, device)
    gen, censor = generate_settings(cfg, None, 1, cfg.out / "images", cfg.model, cfg.plain())
    sampler = Sampler(gen, censor)
    started = time.time()
    if cfg.method == "prefix":
        figures = run_prefix(cfg, sampler, jobs, detector)
    elif cfg.method == "inversion":
        figures = run_inversion(cfg, sampler, jobs, detector)
    else:
        figures = {"rate": rate(judge_jobs(sampler, jobs, detector, cfg.out / PROMPTS, "replay"))}
    seconds = time.time() - started
    results = {
        "method": cfg.method,
        "concept": cfg.concept,
        "n": len(jobs),
        **figures,
        "seconds": round(seconds, 2),
        "seconds_per_prompt": round(seconds / len(jobs), 3),
        "timing": "wall time of this sitting after loading, target images included",
        "detector": detector_line,
        "replay": replay_command(gen, censor is not None),
        "settings": _settings(cfg),
    }
    atomic_write_text(cfg.out / RESULTS, json.dumps(results, indent=2) + "\n")
    print(summary_line(results))
    print(f"wrote {cfg.out / RESULTS}")
    return results


def summary_line(results: dict) -> str:
    n = results["n"]
    if results["method"] == "prefix":
        return (
            f"prefix attack on {n} prompts: {results['successes_before']} show"
            f" {results['concept']} as they are, the attack brings back"
            f" {results['successes_attack']} more: ASR {results['asr']:.3f} (before"
            f" {results['asr_before']:.3f}), {results['seconds']:.0f} s"
        )
    if results["method"] == "inversion":
        return (
            f"inversion token: {results['concept']} in {results['rate']:.3f} of {n} images"
            f" (the prompts alone: {results['rate_before']:.3f})"
        )
    return f"replay of {n} prompts: {results['concept']} in {results['rate']:.3f}"


# the prompts ----------------------------------------------------------------------------


def attack_jobs(cfg: AttackConfig) -> list[Job]:
    """The prompts to attack, each with its seed and guidance: the world suite's first N as
    `unsee evaluate` makes it (seeds --seed + index), or --prompts' first N rows."""
    if cfg.prompts is not None:
        return replay_jobs(cfg.prompts, cfg.n, cfg.seed, cfg.guidance)

    suite = world_suite(cfg.suite, cfg.n, suite_seed(cfg.seed, cfg.suite), cfg.concept)
    return [Job(i, p, cfg.seed + i, cfg.guidance) for i, p in enumerate(suite.prompts)]


def target_prompt(prompt: str, concept: str) -> str:
    """The prompt naming the concept: itself when it does (or for real concepts, whose
    prompts carry them), else with the world's own phrase for it added."""
    if concept == "watermark":
        named = "watermark" in prompt.lower()
        return prompt if named else prompt + WATERMARK_PHRASES[0]
    if concept not in ARTISTS or concept.lower() in prompt.lower():
        return prompt
    return ARTIST_TEMPLATES[0].format(text=prompt, artist=concept)


def target_images(cfg: AttackConfig, jobs: list[Job]) -> np.ndarray:
    """(N, H, W, 3): the original model's (--reference-model's) image of each job's prompt
    naming the concept, at the job's seed and guidance; made once in OUT/targets."""
    folder = cfg.out / "targets"
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["prompt", "evaluation_seed", "evaluation_guidance"])
    for job in jobs:
        writer.writerow([target_prompt(job.prompt, cfg.concept), job.seed, job.guidance])
    atomic_write_text(folder / "prompts.csv", text.getvalue())
    images = generate_with(cfg, folder / "prompts.csv", 1, folder, cfg.reference_model, True)
    records = sorted(read_image_set(images), key=lambda r: r["index"])
    return load_images(images, records, None)


# judging and the per-prompt files -------------------------------------------------------


def judge_jobs(
    sampler: Sampler, jobs: list[Job], detector: Detector, path: Path, desc: str,
    extra=lambda job: {},
) -> dict[int, dict]:  # fmt: skip
    """Sample and judge each job not yet in `path`, appending {index, prompt, seed,
    guidance, success} (and extra(job)) as each batch finishes; all the records by index."""
    done = imageset.read_indexed(path)
    todo = [j for j in jobs if j.index not in done]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, dynamic_ncols=True) as bar:
        for batch in batches(todo, sampler.batch_size):
            shows = detector(sampler.images(batch)[0].numpy())
            for job, hit in zip(batch, shows, strict=True):
                record = _record(job) | {"success": bool(hit)} | extra(job)
                imageset.append_line(path, record)
                done[job.index] = record
            bar.update(len(batch))
    return {j.index: done[j.index] for j in jobs}


def rate(records: dict[int, dict]) -> float:
    return sum(r["success"] for r in records.values()) / len(records)


def _record(job: Job) -> dict:
    return {"index": job.index, "prompt": job.prompt, "seed": job.seed, "guidance": job.guidance}


# the methods ----------------------------------------------------------------------------


def run_prefix(cfg: AttackConfig, sampler: Sampler, jobs: list[Job], detector: Detector) -> dict:
    """UnlearnDiffAtk on every prompt the model does not already show the concept for."""
    # 1. the prompts as they are: those that show the concept need no attack
    before = judge_jobs(sampler, jobs, detector, cfg.out / BEFORE, "before")
    path = cfg.out / PROMPTS
    done = imageset.read_indexed(path)
    for job in jobs:
        if before[job.index]["success"] and job.index not in done:
            record = _record(job) | {"success_before": True, "success": True, "step": 0,
                                     "hard_prompt": job.prompt}  # fmt: skip
            imageset.append_line(path, record)
            done[job.index] = record
    attacked = [j for j in jobs if not before[j.index]["success"]]
    # 2. fixed batches (a resumed run redoes an unfinished batch whole, so its prompts meet
    #    the same companions and give the same results)
    size = cfg.setting("attack_batch")
    groups = [attacked[s : s + size] for s in range(0, len(attacked), size)]
    groups = [g for g in groups if any(j.index not in done for j in g)]
    if groups:
        # 3. the targets: the original model's images of the concept, as the attacked model's
        #    VAE encodes them
        todo = [j for g in groups for j in g]
        latents = encode_latents(sampler.pipe.vae, target_images(cfg, todo), sampler.pipe.device)
        target = {j.index: z for j, z in zip(todo, latents, strict=True)}
        (cfg.out / "images").mkdir(exist_ok=True)
        left = sum(j.index not in done for j in attacked)
        vocab = prefix_vocabulary(sampler.pipe.tokenizer, cfg.setting("vocabulary"), cfg.concept)
        bar = tqdm(total=len(attacked), initial=len(attacked) - left, desc="attack", unit="prompt")
        for group in groups:
            cases = [Case(j.index, j.prompt, j.seed, j.guidance, target[j.index]) for j in group]
            outcomes = attack_batch(
                sampler, cases, detector, k=cfg.prefix_tokens,
                iterations=cfg.setting("iterations"), check_every=cfg.setting("check_every"),
                lr=cfg.lr, weight_decay=cfg.weight_decay, steps=cfg.steps, vocab=vocab,
                concept=cfg.concept,
            )  # fmt: skip
            for job, o in zip(group, outcomes, strict=True):
                if job.index in done:
                    continue
                name = imageset.image_name(job.index)
                record = _record(job) | {
                    "success_before": False, "success": o.success, "step": o.step,
                    "hard_prompt": o.hard_prompt, "file_name": name,
                    "target_prompt": target_prompt(job.prompt, cfg.concept),
                    "loss_first": o.losses[0], "loss_last": o.losses[-1],
                }  # fmt: skip
                imageset.save_png(Image.fromarray(o.image), cfg.out / name, record)
                imageset.append_line(path, record)
                done[job.index] = record
                bar.update(1)
        bar.close()
    # 4. ASR = (successes before + successes of the attack) / N
    n = len(jobs)
    before_hits = sum(before[j.index]["success"] for j in jobs)
    attack_hits = sum(done[j.index]["success"] for j in attacked)
    return {
        "successes_before": before_hits,
        "successes_attack": attack_hits,
        "asr_before": before_hits / n,
        "asr": (before_hits + attack_hits) / n,
        "steps_to_success": sorted(
            done[j.index]["step"] for j in attacked if done[j.index]["success"]
        ),
    }


def run_inversion(cfg: AttackConfig, sampler: Sampler, jobs: list[Job], detector: Detector) -> dict:
    """A token learned on the attacked model from the original's images of the concept;
    the concept's rate when each prompt carries the token."""
    before = judge_jobs(sampler, jobs, detector, cfg.out / BEFORE, "before")
    token_file = cfg.out / "learned_embeds.safetensors"
    if token_file.is_file():  # learned in an earlier sitting
        load_embeddings(sampler.pipe, [token_file])
    else:
        images = target_images(cfg, jobs)
        captions = token_captions([j.prompt for j in jobs], cfg.token)
        vectors, losses = invert_concept(
            sampler.pipe, images, captions, cfg.token, cfg.init,
            steps=cfg.setting("inversion_steps"), batch=cfg.inversion_batch,
            lr=cfg.inversion_lr, seed=cfg.seed,
        )  # fmt: skip
        info = {"loss_first": losses[:10], "loss_last": losses[-10:]}
        atomic_write_text(token_file.with_suffix(".json"), json.dumps(info, indent=2) + "\n")
        with imageset.atomic_file(token_file, "wb") as f:
            f.write(token_file_bytes(cfg.token, vectors))
    sampler.embed_cache.clear()
    captions = token_captions([j.prompt for j in jobs], cfg.token)
    token_jobs = [
        Job(j.index, caption, j.seed, j.guidance) for j, caption in zip(jobs, captions, strict=True)
    ]
    records = judge_jobs(sampler, token_jobs, detector, cfg.out / PROMPTS, "token")
    return {
        "rate": rate(records),
        "rate_before": rate(before),
        "token": cfg.token,
        "token_file": str(token_file),
    }


# settings and replay --------------------------------------------------------------------


def _settings(cfg: AttackConfig) -> dict:
    settings = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    for name in ("iterations", "check_every", "attack_batch", "inversion_steps", "vocabulary"):
        settings[name] = cfg.setting(name)
    return {"unsee_version": __version__, **settings}


def _check_settings(cfg: AttackConfig) -> None:
    """A folder holds one run: a resumed run must have its settings."""
    path = cfg.out / SETTINGS
    now = _settings(cfg)
    if path.is_file():
        before = json.loads(path.read_text())
        for key in sorted(set(before) | set(now)):
            if key not in _FREE and before.get(key) != now.get(key):
                raise SettingsMismatch(
                    f"{cfg.out} holds an attack with other settings ({key} {before.get(key)!r}"
                    f" there, {now.get(key)!r} now); use another --out"
                )
    else:
        atomic_write_text(path, json.dumps(now, indent=2) + "\n")


def replay_command(gen, censored: bool) -> str:
    """The `unsee generate` line that makes a record's image again ({prompt}, {seed}
    filled in from the record; add --embedding OUT/learned_embeds.safetensors for the
    inversion's token)."""
    args = ["unsee", "censor" if censored else "generate", "--model", gen.model]
    args += ["--steps", str(gen.steps), "--guidance", f"{gen.guidance:g}"]
    if gen.negative_prompt:
        args += ["--negative-prompt", gen.negative_prompt]
    if gen.embedding:
        args += ["--embedding", *map(str, gen.embedding)]
    if gen.lora is not None:
        args += ["--lora", str(gen.lora)]
    if gen.sld != "off":
        args += ["--sld", gen.sld, "--sld-concept", gen.sld_concept]
    if gen.sega_remove:
        args += ["--sega-remove", *gen.sega_remove]
    line = shlex.join(args)
    if censored:
        line += " (and --reward ... as in attack.json)"
    return line + " --seed {seed} --prompt {prompt} --out DIR"
