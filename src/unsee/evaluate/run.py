"""`unsee evaluate`: generate the world's prompt suites with a model (and any inference-time
intervention), judge them, and report every metric with a bootstrap interval.

Per suite (OUT/<suite>/images, resumable like `unsee generate`):
  concept_rate      the concept shows (the artist's style per the judge, or the watermark:
                    its strength is at least the judge's call strength; docs/judge-calibration)
  concept_strength  the judge's mean strength of the concept, in [0, 1]
  watermark_rate, watermark_strength, rate_<artist>, strength_<artist>
                    the same for every concept not targeted (a method that removes one
                    while adding another shows it)
  style_rate        the style the prompt asks for (other-artists: the preserved artists)
  unasked_style_rate  any style the prompt does not ask for (the leak: every style)
  prompt_accuracy   shape, colour, background as the prompt names them
  world_fid         Frechet distance of CLIP image features to renders of the prompts' truth
  same_seed_distance  1 - cosine of CLIP image features to the original model's image of
                    the same prompt and seed (OUT/reference/<suite>, made once)
  sky_strength, sky_rate  (the leak suite, beside the original's images) the share of the
                    original's swirls each starry night keeps, without any judge
                    (world.blends.sky_strength), and how often it is PRESENT_STRENGTH or more
  clip_score        cosine of CLIP image and prompt features
With --judges both, each judge figure of the second judge too (prefix vit_), and
judges_disagree: the share of images where the two judges' calls of the concept differ.
results.json {"settings", "suites": {suite: {metric: {"mean", "low", "high"}}}},
results.md, the same as a table, and grid_<suite>.png (its first 64 images), to look at.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from unsee import __version__
from unsee.evaluate.clip import ClipEmbedder
from unsee.evaluate.config import REAL_SUITES, EvaluateConfig
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import (
    ATTRIBUTES,
    CONCEPTS,
    attribute_hits,
    concept_shows,
    concept_strengths,
    style_shows,
    unasked_style_shows,
)
from unsee.evaluate.metrics import (
    clip_score,
    frechet_distance,
    mean,
    rate,
    same_seed_distance,
)
from unsee.evaluate.real import evaluate_real
from unsee.evaluate.results import interval, results_table
from unsee.evaluate.sampling import generate_with, reference_records
from unsee.evaluate.suites import Suite, reference_renders, suite_seed, world_suite
from unsee.images import to_model_range
from unsee.imageset import atomic_write_text, load_images, read_image_set
from unsee.models.load import pick_device
from unsee.world.blends import sky_strength
from unsee.world.judge import (
    CALL_STRENGTH,
    PRESENT_STRENGTH,
    judge_id,
    judge_images,
    load_world_judge,
)


def generate_suite(cfg: EvaluateConfig, suite: Suite, folder: Path, model: str, plain: bool):
    """The suite's images in folder/images (made, or finished, here); (N, H, W, 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("\n".join(suite.prompts) + "\n")
    out = generate_with(cfg, folder / "prompts.txt", 1, folder, model, plain)
    records = read_image_set(out)
    return load_images(out, records, None)


def reference_images(cfg: EvaluateConfig, suite: Suite, name: str) -> np.ndarray:
    """The original model's images of the suite's prompts and seeds: from --reference-dir
    (checked to be the same prompts and seeds), else made once in OUT/reference/<suite>."""
    if cfg.reference_dir is None:
        return generate_suite(cfg, suite, cfg.out / "reference" / name, cfg.reference_model, True)
    expected = [(p, cfg.seed + i) for i, p in enumerate(suite.prompts)]  # as generate_suite
    fix = "evaluate the original model with the same --suite, --n and --seed"
    folder, records = reference_records(cfg, name, expected, fix)
    return load_images(folder, records, None)


def judge_metrics(cfg: EvaluateConfig, suite: Suite, verdicts) -> dict:
    """The judge's figures of one suite: each concept's rate and mean strength, the style
    the prompts ask for, and the attributes they name, {metric: {"mean", "low", "high"}}."""

    def ci(statistic, *samples):
        return interval(cfg, statistic, *samples, paired=True, centred=False)

    metrics = {
        "concept_rate": ci(rate, concept_shows(verdicts, cfg.concept)),
        "concept_strength": ci(mean, concept_strengths(verdicts, cfg.concept)),
    }
    # every other concept too: a method that removes one while adding another shows it
    for concept in CONCEPTS:
        if concept == "watermark":
            rate_key, strength_key = "watermark_rate", "watermark_strength"
        elif concept != cfg.concept:
            rate_key, strength_key = f"rate_{concept}", f"strength_{concept}"
        else:
            continue
        metrics[rate_key] = ci(rate, concept_shows(verdicts, concept))
        metrics[strength_key] = ci(mean, concept_strengths(verdicts, concept))
    styles = style_shows(verdicts, suite.truths)
    if len(styles):
        metrics["style_rate"] = ci(rate, styles)
    metrics["unasked_style_rate"] = ci(rate, unasked_style_shows(verdicts, suite.prompts))
    for key in ATTRIBUTES:
        hits = attribute_hits(verdicts, suite.truths, key)
        if len(hits):
            metrics[f"prompt_accuracy_{key}"] = ci(rate, hits)
    return metrics


def suite_metrics(
    cfg: EvaluateConfig, suite: Suite, verdicts, features, reference_features, render_features,
    text_features, second_verdicts=None, sky=None,
) -> dict:  # fmt: skip
    """{metric: {"mean", "low", "high"}} for one suite; with second_verdicts (another
    judge's), its figures prefixed vit_ and the share of images where the calls differ;
    with sky (N,) (leak_sky), the judge-free reading of the leak."""

    def ci(statistic, *samples, paired=True, centred=False):
        return interval(cfg, statistic, *samples, paired=paired, centred=centred)

    metrics = judge_metrics(cfg, suite, verdicts)
    if second_verdicts is not None:
        second = judge_metrics(cfg, suite, second_verdicts)
        metrics.update({f"vit_{k}": v for k, v in second.items()})
        differ = concept_shows(verdicts, cfg.concept) != concept_shows(second_verdicts, cfg.concept)
        metrics["judges_disagree"] = ci(rate, differ)
    metrics["world_fid"] = ci(
        frechet_distance, features, render_features, paired=False, centred=True
    )
    metrics["clip_score"] = ci(clip_score, features, text_features)
    if reference_features is not None:
        metrics["same_seed_distance"] = ci(same_seed_distance, features, reference_features)
    if sky is not None:
        metrics["sky_strength"] = ci(mean, sky)
        metrics["sky_rate"] = ci(rate, sky >= PRESENT_STRENGTH)
    return metrics


def leak_sky(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) the share of the original's swirls each starry night keeps (world.blends.
    sky_strength), uint8 images (N, H, W, 3) of the same prompts and seeds in."""
    return sky_strength(to_model_range(images), to_model_range(reference)).numpy()


def evaluate(cfg: EvaluateConfig) -> dict:
    if any(s in REAL_SUITES for s in cfg.suite):  # nudity, i2p, coco: Stable Diffusion
        return evaluate_real(cfg)
    device = pick_device(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    plain = cfg.plain()
    results: dict = {"suites": {}}
    judge = load_world_judge("vit" if cfg.judges == "vit" else "cnn", device)
    second = load_world_judge("vit", device) if cfg.judges == "both" else None
    used = ("cnn", "vit") if cfg.judges == "both" else (cfg.judges,)
    embed = ClipEmbedder(cfg.clip_model, device)
    for name in cfg.suite:
        # 1. the suite, its images, and the original model's images of the same seeds
        seed = suite_seed(cfg.seed, name)
        suite = world_suite(name, cfg.n, seed, cfg.concept)
        images = generate_suite(cfg, suite, cfg.out / name, cfg.model, plain)
        save_grid(images[:64], cfg.out / f"grid_{name}.png")
        reference = None
        if not plain:
            reference = reference_images(cfg, suite, name)
        # 2. the judge's verdicts and CLIP features
        verdicts = judge_images(judge, images)
        second_verdicts = None if second is None else judge_images(second, images)
        features = embed.image(images)
        ref_features = None if reference is None else embed.image(reference)
        renders = embed.image(reference_renders(suite, seed + 1))
        texts = embed.text(suite.prompts)
        sky = None if reference is None or name != "leak" else leak_sky(images, reference)
        # 3. the metrics
        results["suites"][name] = suite_metrics(
            cfg, suite, verdicts, features, ref_features, renders, texts, second_verdicts, sky
        )
    results["settings"] = {
        "unsee_version": __version__,
        **json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "present_strength": PRESENT_STRENGTH,
        "call_strength": CALL_STRENGTH,
        # which shipped judges read the images (world.judge.judge_id): figures read by
        # others are not comparable
        "judge_ids": {name: judge_id(name) for name in used},
        "interval": "95% percentile bootstrap over images (world_fid: centred on the value)",
    }
    atomic_write_text(cfg.out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(cfg.out / "results.md", results_table(results["suites"]))
    print(results_table(results["suites"]))
    return results
