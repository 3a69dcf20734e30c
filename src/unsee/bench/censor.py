"""`unsee bench censor`: censored sampling of minisd's watermark, measured by the judge.

1. a reward (clip backbone by default) from `labels` simulated binary labels (half bad,
   half good) on a pool of generated neutral images (the judge plays the person);
2. `n` fresh neutral prompts, plain: base watermark rate, prompt accuracy, sampling time;
3. the same prompts and seeds with guidance at the chosen setting (in --window): the
   guided_* figures; then `unsee censor --retry` on a copy (the images the reward still
   flags drawn again, guided, from fresh seeds): the censored_* figures, the
   prompt-accuracy drop and overhead_ratio = (guided + retry time) / plain time (with
   --retry 0 the guided set is the censored one);
4. a table of watermark rate vs time for several (scale, backward steps, recurrence) on
   the first `table_n` prompts;
5. rejection sampling with the same reward until every image passes: its rate and cost
   (reject_overhead_ratio = its wall time / plain time, samples per image);
6. on a GPU: peak memory of forward-guided sampling at Stable Diffusion 1.5 size, batch 4
   (random weights built from config), next to plain sampling.

Times are generate's sampling seconds (run.json; loading excluded), so an interrupted
bench resumes: finished sets are kept with the time they took.
"""

import json
import shutil
import time
from pathlib import Path

from unsee.bench.config import BenchCensorConfig
from unsee.bench.sets import drop_feedback, make_set
from unsee.censor.config import CensorConfig
from unsee.censor.reject import reject_sample
from unsee.censor.retry import PROGRESS, retry_flagged
from unsee.censor.run import make_censor
from unsee.errors import UnseeError
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import ATTRIBUTES, rates, rounded
from unsee.feedback.config import FeedbackSimulateConfig
from unsee.feedback.simulate import simulate
from unsee.guidance.pipelines import CensoredStableDiffusionPipeline
from unsee.imageset import atomic_write_text, load_images, read_image_set, read_run_file
from unsee.models.load import pick_device
from unsee.models.tiny import sd15_sized_pipeline
from unsee.reward.cnn import CnnReward
from unsee.reward.config import RewardTrainConfig
from unsee.reward.model import RewardModel
from unsee.reward.train import train_reward
from unsee.world.judge import CALL_STRENGTH, PRESENT_STRENGTH, judge_images, load_world_judge
from unsee.world.prompts import neutral_prompts


def _measure(verdicts, truths) -> dict:
    figures = rates(verdicts, truths)
    concepts = figures["concepts"]
    return {
        "watermark_rate": concepts["watermark"]["rate"],
        "prompt_accuracy": figures["prompt_accuracy"],
        "concept_rates": {c: f["rate"] for c, f in concepts.items()},
        "concepts": rounded(concepts),  # each concept's rate and mean strength
    }


def sd15_guided_memory(batch: int = 4, steps: int = 5) -> dict:
    """Peak GPU memory and time per step of forward-guided sampling at Stable Diffusion 1.5
    size (random weights, fp16, 512x512, gradient checkpointing), against plain sampling."""
    import torch

    with torch.device("cuda"):
        base = sd15_sized_pipeline()
    pipe = CensoredStableDiffusionPipeline.from_pipe(base).to(torch.float16)
    reward = RewardModel(
        {"backbone": "cnn", "ensemble": 5, "image_size": 256},
        [CnnReward(256) for _ in range(5)],
    ).to("cuda")
    out = {"batch": batch, "steps": steps, "dtype": "fp16", "size": 512}
    for name, kw in (("plain", {}), ("forward", {"reward": reward, "reward_scale": 4.0})):
        if kw:
            pipe.unet.enable_gradient_checkpointing()
            pipe.vae.enable_gradient_checkpointing()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        pipe(["a photo of a human"] * batch, num_inference_steps=steps, output_type="np", **kw)
        torch.cuda.synchronize()
        out[name] = {
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "seconds_per_step": round((time.perf_counter() - start) / steps, 3),
        }
    out["device"] = torch.cuda.get_device_name()
    return out


def _retry_set(sets: Path, censor_cfg: CensorConfig, device) -> dict:
    """`unsee censor --retry` on a copy of the guided set, sets/censored-retry. A copy made
    from the same guided set resumes (retry.json); any other is replaced."""
    source, target = sets / "censored", sets / "censored-retry"

    def made_from(folder: Path) -> tuple:
        run = read_run_file(folder / "images")
        return (folder / "prompts.txt").read_text(), run["settings"]

    if not (target / "images" / PROGRESS).is_file() or made_from(target) != made_from(source):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return retry_flagged(target / "images", censor_cfg, make_censor(censor_cfg, device))


def _reject(cfg, out, prompts, truths, seed, reward_dir, gen, judge, plain) -> dict:
    """Rejection sampling with the bench's reward: its figures for results.json."""
    if cfg.backbone == "noise-aware":
        why = "not run: a noise-aware reward scores noisy samples, not finished images"
        return {"headline": {}, "row": why}
    reject_out = out / "sets" / "reject"
    (reject_out.parent).mkdir(parents=True, exist_ok=True)
    prompts_file = out / "sets" / "prompts.txt"
    prompts_file.write_text("\n".join(prompts) + "\n")
    shutil.rmtree(reject_out, ignore_errors=True)
    start = time.perf_counter()
    reject_cfg = CensorConfig(
        out=reject_out,
        reward=reward_dir,
        prompts=prompts_file,
        seed=seed,
        reject=True,
        budget=cfg.reject_budget,
        **gen,
    )
    try:
        reject_sample(reject_cfg)
    except UnseeError as e:  # the budget ran out: report what it cost and what passed
        print(f"rejection sampling: {e}")
    reject_seconds = time.perf_counter() - start
    records = read_image_set(reject_out)
    kept = {r["index"] for r in records}
    reject_row = _measure(
        judge_images(judge, load_images(reject_out, records, None)),
        [t for i, t in enumerate(truths) if i in kept],
    )
    reject_run = read_run_file(reject_out)
    return {
        "headline": {
            "reject_overhead_ratio": round(reject_seconds / plain["seconds"], 3),
            "reject_watermark_rate": reject_row["watermark_rate"],
            "reject_samples_per_image": reject_run["samples_per_image"],
        },
        "row": {
            **reject_row,
            "seconds": round(reject_seconds, 2),
            "passed": len(records),
            "complete": reject_run["complete"],
        },
    }


def run_bench_censor(cfg: BenchCensorConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    judge = load_world_judge("cnn", device)
    gen = {
        "steps": cfg.steps,
        "device": cfg.device,
        "batch_size": cfg.batch_size,
        "batch_invariant": cfg.batch_invariant,
    }

    # 1. the reward, from a few simulated labels
    pool = out / "pool"
    make_set(pool, [p for p, _ in neutral_prompts(cfg.pool, cfg.seed)], cfg.seed, **gen)
    drop_feedback(pool / "images")
    counts = simulate(
        FeedbackSimulateConfig(
            dir=pool / "images",
            concept="watermark",
            budget=cfg.labels,
            balanced=True,
            annotator="bench",
            device=cfg.device,
        )
    )
    reward_dir = train_reward(
        RewardTrainConfig(
            dir=pool / "images",
            out=out / "reward",
            backbone=cfg.backbone,
            augment=cfg.backbone == "cnn",  # the clip head reads frozen features
            model="minisd",  # what a noise-aware reward reads the latents of
            annotator="bench",
            cv_folds=0,
            device=cfg.device,
        )
    )

    prompts_truths = neutral_prompts(cfg.n, cfg.seed + 1)
    prompts = [p for p, _ in prompts_truths]
    truths = [t for _, t in prompts_truths]
    seed = cfg.seed + 10_000

    def censor_config(scale: float, backward: int, recurrence: int, **kw) -> CensorConfig:
        return CensorConfig(
            out=out,
            reward=reward_dir,
            prompt="",
            scale=scale,
            backward_steps=backward,
            recurrence=recurrence,
            window=list(cfg.window),
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            batch_invariant=cfg.batch_invariant,
            device=cfg.device,
            **kw,
        )

    def measure_set(name: str, n: int) -> dict:
        images_dir = out / "sets" / name / "images"
        images = load_images(images_dir, read_image_set(images_dir), None)
        # generate's own sampling time (model loading excluded), kept in the set's run.json
        # so a resumed bench reuses finished sets with the time they took
        seconds = read_run_file(images_dir)["seconds"]
        save_grid(images[:64], out / f"grid_{name}.png")
        row = _measure(judge_images(judge, images), truths[:n])
        return {**row, "seconds": round(seconds, 2), "images": n}

    def run(name: str, n: int, scale: float, backward: int, recurrence: int) -> dict:
        censor = None
        if name != "plain":
            censor = make_censor(censor_config(scale, backward, recurrence), device)
        make_set(out / "sets" / name, prompts[:n], seed, censor=censor, **gen)
        return measure_set(name, n)

    # 2-3. plain and the chosen setting on all n prompts; then `censor --retry` on a copy
    plain = run("plain", cfg.n, 0, 0, 1)
    guided = run("censored", cfg.n, cfg.scale, cfg.backward_steps, cfg.recurrence)
    chosen, retry = guided, None
    if cfg.retry:
        retry = _retry_set(
            out / "sets",
            censor_config(cfg.scale, cfg.backward_steps, cfg.recurrence, retry=cfg.retry),
            device,
        )
        chosen = measure_set("censored-retry", cfg.n)

    # 4. the table, on the first table_n prompts (plain timing on the same images)
    table = [{"setting": "plain", **run("plain-table", cfg.table_n, 0, 0, 1)}]
    for setting in cfg.table:
        scale, backward, recurrence = setting.split(":")
        row = run(f"table-{setting.replace(':', '-')}", cfg.table_n, float(scale),
                  int(backward), int(recurrence))  # fmt: skip
        table.append({"setting": setting, **row})
    for row in table:
        row["overhead_ratio"] = round(row["seconds"] / table[0]["seconds"], 3)

    # 5. rejection sampling to the same prompts and seeds (it scores finished images)
    reject = _reject(cfg, out, prompts, truths, seed, reward_dir, gen, judge, plain)

    # 6. memory at Stable Diffusion size, where a GPU is at hand
    import torch

    gpu = sd15_guided_memory() if torch.cuda.is_available() else None

    def drop(row: dict) -> float:
        return round(
            max(plain["prompt_accuracy"][k] - row["prompt_accuracy"][k] for k in ATTRIBUTES), 4
        )

    results = {
        "base_watermark_rate": plain["watermark_rate"],
        "censored_watermark_rate": chosen["watermark_rate"],
        "prompt_accuracy_drop": drop(chosen),
        "overhead_ratio": round(chosen["seconds"] / plain["seconds"], 3),
        "guided_watermark_rate": guided["watermark_rate"],
        "guided_prompt_accuracy_drop": drop(guided),
        "guided_overhead_ratio": round(guided["seconds"] / plain["seconds"], 3),
        **reject["headline"],
        "plain": plain,
        "guided": guided,
        "censored": chosen | ({"retry": retry} if retry else {}),
        "reject": reject["row"],
        "table": table,
        "sd15_gpu_memory": gpu if gpu else "no GPU in this run",
        "settings": {
            "model": "minisd",
            "steps": cfg.steps,
            "guidance_cfg": 7.5,
            "images": cfg.n,
            "table_images": cfg.table_n,
            "reward": {
                "backbone": cfg.backbone,
                "ensemble": 5,
                "labels": counts,
                "augment": cfg.backbone == "cnn",
            },
            "chosen": {
                "scale": cfg.scale,
                "backward_steps": cfg.backward_steps,
                "recurrence": cfg.recurrence,
                "window": list(cfg.window),
                "retry": cfg.retry,
            },
            "seeds": {"pool": cfg.seed, "prompts": cfg.seed + 1, "images": seed},
            "batch_invariant": cfg.batch_invariant,
            "device": str(device),
            "present_strength": PRESENT_STRENGTH,
            "call_strength": CALL_STRENGTH,
        },
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    lines = ["| setting (scale:B:R) | watermark rate | seconds | overhead |", "|---|---|---|---|"]
    for row in table:
        lines.append(
            f"| {row['setting']} | {row['watermark_rate']:.3f} | {row['seconds']:.1f} |"
            f" {row['overhead_ratio']:.2f}x |"
        )
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    headline = {k: v for k, v in results.items() if not isinstance(v, dict | list)}
    print(json.dumps(headline, indent=2))
    print("\n".join(lines))
    return results
