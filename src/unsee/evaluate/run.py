"""`unsee evaluate`: generate the world's prompt suites with a model (and any inference-time
intervention), judge them, and report every metric with a bootstrap interval.

Per suite (OUT/<suite>/images, resumable like `unsee generate`):
  concept_rate      the concept shows (the artist's style per the judge, or the watermark)
  watermark_rate    the judge's watermark probability > 0.5
  style_rate        the style the prompt asks for (other-artists: the preserved artists)
  prompt_accuracy   shape, colour, background as the prompt names them
  world_fid         Frechet distance of CLIP image features to renders of the prompts' truth
  same_seed_distance  1 - cosine of CLIP image features to the original model's image of
                    the same prompt and seed (OUT/reference/<suite>, made once)
  clip_score        cosine of CLIP image and prompt features
results.json {"settings", "suites": {suite: {metric: {"mean", "low", "high"}}}},
results.md, the same as a table, and grid_<suite>.png (its first 64 images), to look at.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from unsee import __version__
from unsee.evaluate.config import EvaluateConfig
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import (
    CONCEPTS,
    WATERMARK_THRESHOLD,
    concept_shows,
    load_images,
    read_image_set,
    shows,
)
from unsee.evaluate.metrics import (
    bootstrap,
    clip_score,
    frechet_distance,
    rate,
    same_seed_distance,
)
from unsee.evaluate.sampling import generate_with, reference_records
from unsee.evaluate.suites import SUITES, Suite, reference_renders, world_suite
from unsee.generate.imagefolder import atomic_write_text
from unsee.images import to_model_range

ATTRIBUTES = ("shape", "color", "background")


class ClipEmbedder:
    """Unit-norm CLIP image and text features (any transformers CLIP folder; minisd's mini
    CLIP by default, read with minisd's tokenizer when the folder has none)."""

    def __init__(self, name: str, device: torch.device) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        from unsee.reward.clip import ClipFeatures
        from unsee.reward.model import clip_path
        from unsee.world.paths import TOKENIZER_DIR

        path = clip_path(name)
        self.device = device
        self.images = ClipFeatures(path).to(device)
        model = CLIPModel.from_pretrained(path)
        self.text_model = model.text_model.to(device).eval()
        self.text_projection = model.text_projection.to(device).eval()
        has_tokenizer = (path / "tokenizer.json").is_file() or (path / "vocab.json").is_file()
        self.tokenizer = CLIPTokenizer.from_pretrained(path if has_tokenizer else TOKENIZER_DIR)

    @torch.no_grad()
    def image(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        out = [
            self.images(to_model_range(images[i : i + batch]).to(self.device)).cpu()
            for i in range(0, len(images), batch)
        ]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def text(self, prompts: list[str]) -> np.ndarray:
        ids = self.tokenizer(
            prompts, padding="max_length", truncation=True, return_tensors="pt",
            max_length=self.tokenizer.model_max_length,
        ).input_ids.to(self.device)  # fmt: skip
        pooled = self.text_model(input_ids=ids).pooler_output
        return torch.nn.functional.normalize(self.text_projection(pooled), dim=-1).cpu().numpy()


def generate_suite(cfg: EvaluateConfig, suite: Suite, folder: Path, model: str, plain: bool):
    """The suite's images in folder/images (made, or finished, here); (N, H, W, 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("\n".join(suite.prompts) + "\n")
    out = generate_with(cfg, folder / "prompts.txt", 1, folder, model, plain)
    records = read_image_set(out)
    return load_images(out, records, None)


def suite_seed(seed: int, name: str) -> int:
    """The seed of a suite's prompts (which shapes, colours, backgrounds): fixed by the
    suite's name, so two evaluations with the same --seed ask for the same things whatever
    else they run. (Its images take seeds --seed + index, in every suite.)"""
    return seed + 100_000 * SUITES.index(name)


def reference_images(cfg: EvaluateConfig, suite: Suite, name: str) -> np.ndarray:
    """The original model's images of the suite's prompts and seeds: from --reference-dir
    (checked to be the same prompts and seeds), else made once in OUT/reference/<suite>."""
    if cfg.reference_dir is None:
        return generate_suite(cfg, suite, cfg.out / "reference" / name, cfg.reference_model, True)
    expected = [(p, cfg.seed + i) for i, p in enumerate(suite.prompts)]  # as generate_suite
    fix = "evaluate the original model with the same --suite, --n and --seed"
    folder, records = reference_records(cfg, name, expected, fix)
    return load_images(folder, records, None)


def interval(
    cfg: EvaluateConfig, statistic, *samples, paired: bool = True, centred: bool = False
) -> dict:
    """The statistic with its bootstrap interval at cfg's resamples and seed."""
    return bootstrap(
        statistic, *samples, paired=paired, n_boot=cfg.bootstrap, seed=cfg.seed, centred=centred
    )


def suite_metrics(
    cfg: EvaluateConfig, suite: Suite, verdicts, features, reference_features, render_features,
    text_features,
) -> dict:  # fmt: skip
    """{metric: {"mean", "low", "high"}} for one suite."""

    def ci(statistic, *samples, paired=True, centred=False):
        return interval(cfg, statistic, *samples, paired=paired, centred=centred)

    metrics = {
        "concept_rate": ci(rate, concept_shows(verdicts, cfg.concept)),
        "watermark_rate": ci(rate, concept_shows(verdicts, "watermark")),
    }
    # every other concept too: a method that removes one while adding another shows it
    for concept in CONCEPTS:
        if concept not in (cfg.concept, "watermark"):
            metrics[f"rate_{concept}"] = ci(rate, concept_shows(verdicts, concept))
    asked = [t.get("artist") for t in suite.truths]
    if any(asked):
        hits = np.array([shows(v, a) for v, a in zip(verdicts, asked, strict=True) if a])
        metrics["style_rate"] = ci(rate, hits)
    for key in ATTRIBUTES:
        pairs = [
            (getattr(v, key), t[key])
            for v, t in zip(verdicts, suite.truths, strict=True)
            if key in t
        ]
        if pairs:
            metrics[f"prompt_accuracy_{key}"] = ci(rate, np.array([a == b for a, b in pairs]))
    metrics["world_fid"] = ci(
        frechet_distance, features, render_features, paired=False, centred=True
    )
    metrics["clip_score"] = ci(clip_score, features, text_features)
    if reference_features is not None:
        metrics["same_seed_distance"] = ci(same_seed_distance, features, reference_features)
    return metrics


def evaluate(cfg: EvaluateConfig) -> dict:
    from unsee.evaluate.real import REAL_SUITES, evaluate_real
    from unsee.models.load import pick_device
    from unsee.world.judge import judge_images, load_judge
    from unsee.world.paths import JUDGE_DIR

    if any(s in REAL_SUITES for s in cfg.suite):  # nudity, i2p, coco: Stable Diffusion
        return evaluate_real(cfg)
    device = pick_device(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    plain = cfg.plain()
    results: dict = {"suites": {}}
    judge = load_judge(JUDGE_DIR, device)
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
        features = embed.image(images)
        ref_features = None if reference is None else embed.image(reference)
        renders = embed.image(reference_renders(suite, seed + 1))
        texts = embed.text(suite.prompts)
        # 3. the metrics
        results["suites"][name] = suite_metrics(
            cfg, suite, verdicts, features, ref_features, renders, texts
        )
    results["settings"] = {
        "unsee_version": __version__,
        **json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "watermark_threshold": WATERMARK_THRESHOLD,
        "interval": "95% percentile bootstrap over images (world_fid: centred on the value)",
    }
    atomic_write_text(cfg.out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(cfg.out / "results.md", results_table(results["suites"]))
    print(results_table(results["suites"]))
    return results


def results_table(suites: dict) -> str:
    """One row per suite and metric: mean [low, high]."""
    lines = ["| suite | metric | value | 95% interval |", "|---|---|---|---|"]
    for name, metrics in suites.items():
        for metric, v in metrics.items():
            lines.append(
                f"| {name} | {metric} | {v['mean']:.4f} | [{v['low']:.4f}, {v['high']:.4f}] |"
            )
    return "\n".join(lines) + "\n"
