"""`unsee bench table --seeds 3`: the project's paper table on minisd.

Two concepts, each removed by every method, each row evaluated with `unsee evaluate`:
  artist     the leaking artist (Vanmond): suites target, leak, paraphrase, other-artists,
             neutral
  watermark  the watermark: suites target ("..., with a watermark"), neutral
Rows:
  original     minisd as it is
  neg_text     negative prompt: the concept's word
  neg_token    negative prompt: the HFI token learned from the feedback
  sld_medium   safe latent diffusion, medium preset, concept = the word
  sld_max      the same, max preset
  sega         SEGA, removing the word
  esd_x        ESD on cross-attention, the word (as in the paper: no prompts kept)
  esd_u        ESD on everything but cross-attention, the word
  sdd_text     SDD on the word, with the benign pool prompts kept (--preserve)
  hfi_sdd      SDD on the HFI token and the word, the same prompts kept
  uce          UCE (closed-form edit of the cross-attention keys and values) on the word,
               the same prompts kept
  hfi_neg      the distilled negative prompt on the HFI token and the word, anchored on
               the pool prompts the reward scores bad (the artist) or every pool prompt
               (the watermark), as bench erase
  feedback_erase  `unsee erase --feedback` on the same labels and reward: the whole path
               from labels to an erased model as a user runs it (its own token, anchors and
               prompts kept, its default objective; docs/erase-feedback)
  censored     censored sampling with the reward trained on the same feedback
Per seed k the whole chain is redone from seed k: the pool the simulated person labels,
the labels, the reward, the token, every erasure, and every evaluation image. Metrics
(`unsee evaluate`'s, on the suite named):
  concept_rate_target   concept on prompts naming it         (target)
  concept_strength_target  the judge's mean strength of it     (target)
  concept_rate_leak     the artist on scenes never naming him (leak; artist only)
  concept_strength_leak  the judge's mean strength of it       (leak)
  unasked_style_leak    any artist's style on those scenes     (leak: the leaked style
                        whichever artist the judge takes it for)
  leak_sky_strength     the share of the original's swirls those skies keep, read without
                        a judge against the original's image of the same seed (leak; 1 for it)
  watermark_rate        the judge calls the watermark        (neutral)
  prompt_accuracy       mean of shape, colour, background accuracy   (neutral)
  other_artists_accuracy  the same on prompts naming the other artists (other-artists)
  other_artists_rate    the other artists' styles where named    (other-artists)
  world_fid             Frechet distance of mini-CLIP image features to renders (neutral)
  same_seed_distance    1 - cosine to the original's same-seed image (neutral; 0 for it)
  concept_rate_paraphrase  the artist named with held-out templates (paraphrase; artist only)
  attack_prefix_asr     `unsee attack --method prefix` on the neutral suite's first
                        --attack-n prompts: success rate (before + by the attack)
  attack_inversion_rate  `unsee attack --method inversion`: the concept's rate with the
                        token learned on the row's model (both on the first --attack-seeds
                        seeds only; their mean is over those seeds)
  clip_score            cosine of mini-CLIP image and prompt features (neutral)
  judges_gap            |cnn judge's concept rate - vit judge's|, the larger of target, leak
(a concept shows when the judge's strength reaches its call strength: docs/judge-calibration)
results.json {"settings", "tables": {concept: {row: {metric: {"mean", "std"}}}}} (std over
seeds, ddof 1), results.md and index.html. Every finished row keeps its results, so an
interrupted run resumes where it stopped.
"""

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from unsee import __version__
from unsee.attack.config import AttackConfig
from unsee.attack.run import attack
from unsee.bench.config import BenchEraseConfig, BenchTableConfig, parse_methods
from unsee.bench.erase import anchor_prompts, erase_config, erased, learn_token
from unsee.bench.speed import cpu_name
from unsee.erase.config import EraseConfig
from unsee.erase.run import erase
from unsee.errors import UnseeError
from unsee.evaluate.config import EvaluateConfig
from unsee.evaluate.run import evaluate
from unsee.imageset import atomic_write_text
from unsee.report.html import Section, write_report
from unsee.world.judge import judge_id
from unsee.world.names import LEAK_ARTIST
from unsee.world.paths import JUDGE_DIRS
from unsee.world.prompts import artist_pool, neutral_prompts

METRICS = (
    "concept_rate_target", "concept_strength_target", "concept_rate_leak",
    "concept_strength_leak", "unasked_style_leak", "leak_sky_strength", "concept_rate_paraphrase",
    "attack_prefix_asr",
    "attack_inversion_rate", "watermark_rate", "prompt_accuracy", "other_artists_accuracy",
    "other_artists_rate", "world_fid",
    "same_seed_distance", "clip_score", "judges_gap",
)  # fmt: skip
# measured on the first --attack-seeds seeds only: their mean is over those seeds
ATTACK_METRICS = ("attack_prefix_asr", "attack_inversion_rate")
CONCEPTS = {"artist": LEAK_ARTIST, "watermark": "watermark"}
SUITES = {
    "artist": ["target", "leak", "paraphrase", "other-artists", "neutral"],
    "watermark": ["target", "other-artists", "neutral"],
}
ATTRS = ("shape", "color", "background")
ERASURES = ("esd_x", "esd_u", "sdd_text", "hfi_sdd", "uce", "hfi_neg", "feedback_erase")


def train_config(cfg: BenchTableConfig, k: int) -> BenchEraseConfig:
    """Seed k's feedback and erasures, with bench erase's settings and the table's seeds."""
    return BenchEraseConfig(
        out=Path(cfg.out) / "train" / f"seed{k}", pool=cfg.pool, labels=cfg.labels,
        invert_steps=cfg.invert_steps, iterations=cfg.erase_iterations,
        seed=cfg.seed + 3_000_000 + 100_000 * k,
        batch_size=32, batch_invariant="off", device=cfg.device,
    )  # fmt: skip


def feedback(tcfg: BenchEraseConfig, concept: str) -> Path:
    """Pool -> simulated labels -> reward -> token for one concept; the concept's folder."""
    name = CONCEPTS[concept]
    if concept == "artist":
        prompts = artist_pool(tcfg.pool, tcfg.seed)
        learn_token(tcfg, name, prompts, tcfg.seed + 1)
    else:
        prompts = [p for p, _ in neutral_prompts(tcfg.pool, tcfg.seed + 2)]
        learn_token(tcfg, name, prompts, tcfg.seed + 3)
    return Path(tcfg.out) / name


def row_settings(row: str, concept: str, tcfg: BenchEraseConfig, cfg: BenchTableConfig) -> dict:
    """What `unsee evaluate` is given for this row (an erased model is made here first)."""
    word = CONCEPTS[concept]
    if row == "original":
        return {}
    if row == "neg_text":
        return {"negative_prompt": word}
    if row in ("sld_medium", "sld_max"):
        return {"sld": row.removeprefix("sld_"), "sld_concept": word}
    if row == "sega":
        return {"sega_remove": [word]}
    folder = feedback(tcfg, concept)
    token = folder / "token.safetensors"
    if row == "neg_token":
        return {"embedding": [token], "negative_prompt": f"<{word.lower()}>"}
    if row == "censored":
        return {
            "censor_reward": folder / "reward", "censor_scale": cfg.censor_scale,
            "censor_recurrence": cfg.censor_recurrence, "censor_window": cfg.censor_window,
        }  # fmt: skip
    if row == "feedback_erase":
        out = Path(tcfg.out) / "models" / f"feedback_erase_{concept}"
        if not (out / "erase.json").is_file():
            erase(erase_config(tcfg, out, feedback=folder / "pool" / "images",
                               reward=folder / "reward", concept=[word],
                               init=tcfg.init[word]))  # fmt: skip
        return {"model": str(out)}
    keep = folder / "keep.txt"
    preserve = {"preserve": keep} if keep.read_text().strip() else {}
    if row == "uce":  # no training: none of the trained methods' settings
        out = Path(tcfg.out) / "models" / f"uce_{concept}"
        if not (out / "erase.json").is_file():
            erase(EraseConfig(out=out, method="uce", concept=[word], device=tcfg.device,
                              **preserve))  # fmt: skip
        return {"model": str(out)}
    anchors = {"anchors": anchor_prompts(folder, prompt_bound=concept == "artist")}
    what = {
        "esd_x": {"method": "esd-x", "concept": [word]},
        "esd_u": {"method": "esd-u", "concept": [word]},
        "sdd_text": {"concept": [word], **preserve},
        "hfi_sdd": {"embedding": [token], "concept": [word], **preserve},
        "hfi_neg": {"method": "neg", "embedding": [token], "concept": [word], **anchors},
    }[row]
    model, _ = erased(tcfg, f"{row}_{concept}", **what)
    return {"model": model}


def evaluate_row(cfg: BenchTableConfig, k: int, concept: str, row: str) -> dict:
    """The row's `unsee evaluate` results for seed k (kept: a finished row is not redone)."""
    out = row_folder(cfg, k, concept, row)
    folder = out.parent
    if (out / "row.json").is_file():
        return json.loads((out / "row.json").read_text())
    start, began = time.perf_counter(), time.time()
    tcfg = train_config(cfg, k)
    given = row_settings(row, concept, tcfg, cfg)
    made = time.perf_counter() - start
    ecfg = EvaluateConfig(
        out=out, suite=SUITES[concept], concept=CONCEPTS[concept], n=cfg.table_n,
        seed=cfg.seed + 1_000_000 * k, steps=cfg.steps, guidance=cfg.guidance,
        reference_dir=None if row == "original" else folder / "original",
        bootstrap=cfg.bootstrap, batch_size=32, batch_invariant="off", device=cfg.device,
        judges="both", **given,
    )  # fmt: skip
    results = evaluate(ecfg)["suites"]
    attacks = attack_row(cfg, k, concept, out, given) if k < cfg.attack_seeds else {}
    row_result = {
        "metrics": table_metrics(results, concept) | attacks,
        "intervals": results,
        "given": json.loads(json.dumps(given, default=str)),
        "seconds": {
            "method": round(made, 1),
            "evaluate": round(time.perf_counter() - start - made, 1),
        },
        # when it ran (unix time): rows made side by side share their wall time
        "span": [round(began, 1), round(time.time(), 1)],
    }
    atomic_write_text(out / "row.json", json.dumps(row_result, indent=2) + "\n")
    return row_result


def attack_row(cfg: BenchTableConfig, k: int, concept: str, out: Path, given: dict) -> dict:
    """The row's model (and intervention) attacked on the neutral suite's first prompts:
    the prefix attack's success rate and the inversion token's concept rate."""
    figures = {}
    if not {"model", "lora"} & given.keys() and out.name != "original":
        share_inversion_token(out.parent / "original", out)
    for method, key, metric in (
        ("prefix", "asr", "attack_prefix_asr"),
        ("inversion", "rate", "attack_inversion_rate"),
    ):
        acfg = AttackConfig(
            out=out / f"attack_{method}", method=method, concept=CONCEPTS[concept],
            suite="neutral", n=cfg.attack_n, seed=cfg.seed + 1_000_000 * k + 500_000,
            steps=cfg.steps, guidance=cfg.guidance, device=cfg.device, **given,
        )  # fmt: skip
        figures[metric] = attack(acfg)[key]
    return figures


def share_inversion_token(original: Path, out: Path) -> None:
    """A row that samples minisd's own weights (an inference intervention) takes the
    original row's inversion token: textual inversion on the same weights, from the same
    images, captions and seed, learns the same vector (the intervention only changes how
    the images are then sampled). The attack loads a token it finds as one learned in an
    earlier sitting; the token is still judged with the row's intervention."""
    source = original / "attack_inversion" / "learned_embeds.safetensors"
    target = out / "attack_inversion" / source.name
    if not source.is_file() or target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    for name in (source.with_suffix(".json"), source):  # the token last: it marks it done
        if name.is_file():
            part = target.parent / f"{name.name}.part"
            shutil.copyfile(name, part)
            os.replace(part, target.parent / name.name)


def _sky(leak: dict | None, original: bool) -> float | None:
    """The leak's sky_strength: 1 for the original (no reference of its own: its skies keep
    all of their swirls), None where the suite is not run or was judged before the reading
    existed."""
    if leak is None:
        return None
    if "sky_strength" in leak:
        return leak["sky_strength"]["mean"]
    return 1.0 if original else None


def table_metrics(suites: dict, concept: str) -> dict[str, float | None]:
    """The table's metrics from one `unsee evaluate --judges both` run."""
    neutral, others = suites["neutral"], suites["other-artists"]
    leak = suites.get("leak")
    rated = [suites["target"], *([leak] if leak else [])]
    return {
        "concept_rate_target": suites["target"]["concept_rate"]["mean"],
        "concept_strength_target": suites["target"]["concept_strength"]["mean"],
        "concept_rate_leak": leak["concept_rate"]["mean"] if leak else None,
        "concept_strength_leak": leak["concept_strength"]["mean"] if leak else None,
        "unasked_style_leak": leak["unasked_style_rate"]["mean"] if leak else None,
        "leak_sky_strength": _sky(leak, original="same_seed_distance" not in neutral),
        "concept_rate_paraphrase": (
            suites["paraphrase"]["concept_rate"]["mean"] if "paraphrase" in suites else None
        ),
        # the attack columns: filled by attack_row on the attacked seeds
        "attack_prefix_asr": None,
        "attack_inversion_rate": None,
        "watermark_rate": neutral["watermark_rate"]["mean"],
        "prompt_accuracy": float(np.mean([neutral[f"prompt_accuracy_{k}"]["mean"] for k in ATTRS])),
        "other_artists_accuracy": float(
            np.mean([others[f"prompt_accuracy_{k}"]["mean"] for k in ATTRS])
        ),
        "other_artists_rate": others["style_rate"]["mean"],
        "world_fid": neutral["world_fid"]["mean"],
        "same_seed_distance": neutral.get("same_seed_distance", {"mean": 0.0})["mean"],
        "clip_score": neutral["clip_score"]["mean"],
        # the two judges' concept rates apart, the largest gap over the rated suites
        "judges_gap": max(
            abs(s["concept_rate"]["mean"] - s["vit_concept_rate"]["mean"]) for s in rated
        ),
    }


def aggregate(per_seed: list[dict[str, float | None]]) -> dict[str, dict | None]:
    """{metric: {"mean", "std"}} over seeds (sample std, 0 for one seed); None where the
    metric does not apply."""
    out: dict[str, dict | None] = {}
    for metric in METRICS:
        values = [m.get(metric) for m in per_seed]
        if metric in ATTACK_METRICS:  # over the attacked seeds
            values = [v for v in values if v is not None] or [None]
        if any(v is None for v in values):
            out[metric] = None
            continue
        arr = np.asarray(values, float)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        out[metric] = {"mean": float(arr.mean()), "std": std}
    return out


GROW = ("methods", "seeds", "evaluation_seeds", "training_seeds")  # a rerun may add rows, seeds


def check_settings(path: Path, settings: dict) -> None:
    """A table folder holds one run: resuming with other settings is refused (more rows or
    seeds are fine: what is done is kept)."""
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in settings if before.get(k) != settings[k] and k not in GROW)
        if changed:
            why = (
                " (the shipped judges changed since it began: its rows, and the prefix attacks"
                " that steer by a judge, were read by the earlier ones)"
                if "judges" in changed
                else ""
            )
            raise UnseeError(
                f"{path.parent} holds a table made with other settings ({', '.join(changed)}){why};"
                " use another --out or the same settings"
            )
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def run_bench_table(cfg: BenchTableConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = parse_methods(cfg.methods)
    settings = {
        "unsee_version": __version__,
        "model": cfg.model,
        "methods": rows,
        "seeds": cfg.seeds,
        "images_per_suite": cfg.table_n,
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "seed": cfg.seed,
        "evaluation_seeds": [cfg.seed + 1_000_000 * k for k in range(cfg.seeds)],
        "training_seeds": [train_config(cfg, k).seed for k in range(cfg.seeds)],
        "pool": cfg.pool,
        "labels": cfg.labels,
        "invert_steps": cfg.invert_steps,
        "erase_iterations": cfg.erase_iterations,
        "censor": {
            "scale": cfg.censor_scale,
            "recurrence": cfg.censor_recurrence,
            "window": cfg.censor_window,
        },
        "suites": SUITES,
        "concepts": CONCEPTS,
        "bootstrap": cfg.bootstrap,
        "attack_seeds": cfg.attack_seeds,
        "attack_n": cfg.attack_n,
        # the judges every row is read by (and the prefix attack steers by)
        "judges": {name: judge_id(name) for name in JUDGE_DIRS},
    }
    check_settings(out / "settings.json", settings)
    run_blocks(cfg, rows)
    per_seed: dict[str, dict[str, list]] = {c: {r: [] for r in rows} for c in CONCEPTS}
    seconds: dict[str, dict[str, float]] = {c: dict.fromkeys(rows, 0.0) for c in CONCEPTS}
    spans = []
    for k in range(cfg.seeds):
        for concept in CONCEPTS:
            for row in rows:
                result = evaluate_row(cfg, k, concept, row)  # made: read back
                per_seed[concept][row].append(result["metrics"])
                seconds[concept][row] += sum(result["seconds"].values())
                spans.append(result.get("span") or sum(result["seconds"].values()))
    tables = {c: {r: aggregate(per_seed[c][r]) for r in rows} for c in CONCEPTS}
    erase_settings = _erase_settings(cfg, rows)
    timing = {"seconds": seconds, "wall_seconds": round(wall_seconds(spans), 1)}
    results = {
        "settings": settings | {"erase": erase_settings, **timing, "machine": _machine()},
        "tables": tables,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "results.md", results_markdown(results))
    write_index(cfg, results)
    print(results_markdown(results))
    print(f"wrote {out / 'results.json'}, results.md and index.html")
    return results


def run_block(cfg: BenchTableConfig, k: int, concept: str, rows: list[str]) -> None:
    """Seed k's rows of one concept, in order: the original first (every other row compares
    its images with the original's), then the rest (they share the seed's feedback)."""
    for row in rows:
        if not _made(cfg, k, concept, row):
            print(f"[seed {k + 1}/{cfg.seeds}] {concept}: {row}", flush=True)
        evaluate_row(cfg, k, concept, row)


def _block(job: tuple) -> None:  # a worker's task: run_block's arguments in one tuple
    run_block(*job)


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_blocks(cfg: BenchTableConfig, rows: list[str]) -> None:
    """Make every row not yet made. Each seed and concept is one block, independent of the
    others (its own feedback, models and folders): --workers processes take blocks side by
    side, seed 0's first (the attacked seeds, the longest), each with its share of the CPU's
    cores. A failing block stops them all."""
    blocks = [(k, c) for k in range(cfg.seeds) for c in CONCEPTS]
    todo = [(cfg, k, c, rows) for k, c in blocks if not all(_made(cfg, k, c, r) for r in rows)]
    if cfg.workers == 1 or len(todo) < 2:
        for job in todo:
            run_block(*job)
        return
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    context = multiprocessing.get_context("spawn")  # CUDA and OpenMP do not survive a fork
    with context.Pool(min(cfg.workers, len(todo)), _worker_threads, (threads,), 1) as pool:
        for _ in pool.imap_unordered(_block, todo):
            pass  # an error raises here, and leaving the block ends the other workers


def row_folder(cfg: BenchTableConfig, k: int, concept: str, row: str) -> Path:
    """Where seed k's row of a concept keeps its evaluation (row.json once it is made)."""
    return Path(cfg.out) / "eval" / f"seed{k}" / concept / row


def _made(cfg: BenchTableConfig, k: int, concept: str, row: str) -> bool:
    return (row_folder(cfg, k, concept, row) / "row.json").is_file()


def wall_seconds(spans: list) -> float:
    """The wall time the rows took: the union of their [start, end] spans (rows made side by
    side count once, the pauses between sittings not at all), plus the seconds of rows made
    before rows had spans."""
    total, end = 0.0, None
    for start, stop in sorted(s for s in spans if isinstance(s, list)):
        if end is None or start > end:
            total, end = total + stop - start, stop
        elif stop > end:
            total, end = total + stop - end, stop
    return total + sum(s for s in spans if not isinstance(s, list))


def _erase_settings(cfg: BenchTableConfig, rows: list[str]) -> dict:
    """The settings each erasure ran with (seed 0's erase.json; the same for every seed
    but the seed itself)."""
    keys = ("method", "params", "iterations", "batch", "sample_steps", "lr", "ema", "cfg_scale",
            "timesteps", "beta", "eta", "preserve")  # fmt: skip
    out = {}
    for row in ERASURES:
        if row in rows:
            path = Path(cfg.out) / "train" / "seed0" / "models" / f"{row}_artist" / "erase.json"
            used = json.loads(path.read_text())["settings"]
            out[row] = {k: used.get(k) for k in keys}
            if used.get("preserve"):
                out[row]["preserve"] = "the pool prompts the concept's reward scores benign"
    return out


def _machine() -> str:
    """Where the rows ran, for the time line: CPU count and model, or the GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{os.cpu_count()} CPU cores ({cpu_name()})"


def _fmt(cell: dict | None, digits: int = 3) -> str:
    if cell is None:
        return "–"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def results_markdown(results: dict) -> str:
    """One table per concept: rows x metrics, mean ± std over seeds."""
    s = results["settings"]
    lines = [
        f"minisd, {s['seeds']} seed(s), {s['images_per_suite']} images per suite and seed,"
        f" {s['steps']} DDIM steps, guidance {s['guidance']}; mean ± std over seeds.",
        "",
    ]
    if s.get("attack_seeds") is not None:
        lines += [
            f"The attack columns ran on the first {s['attack_seeds']} seed(s) only, on"
            f" {s['attack_n']} neutral prompts each. A concept shows when the judge reads it"
            " at strength >= 0.2 (the judge calls it from 0.1); `concept_strength_*` is its mean"
            " strength, `judges_gap` how far the two judges' concept rates lie apart.",
            "",
        ]
    digits = {"world_fid": 2}
    for concept, table in results["tables"].items():
        lines += [f"### {concept} ({CONCEPTS[concept]})", ""]
        lines.append("| method | " + " | ".join(METRICS) + " |")
        lines.append("|---" * (len(METRICS) + 1) + "|")
        for row, metrics in table.items():
            cells = [_fmt(metrics[m], digits.get(m, 3)) for m in METRICS]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    seconds = s.get("seconds")
    if seconds:
        total = sum(sum(rows.values()) for rows in seconds.values())
        wall = s.get("wall_seconds")
        made = f"{wall / 60:.0f} minutes of wall time, " if wall is not None else ""
        lines.append(
            f"Time: {made}{total / 60:.0f} minutes summed over rows, on"
            f" {s.get('machine', 'this machine')} (each row's method and evaluation; rows made"
            " side by side, or beside another job, count their slower time in the sum and once"
            " in the wall time)."
        )
        lines.append("")
    return "\n".join(lines)


def write_index(cfg: BenchTableConfig, results: dict) -> Path:
    """index.html: the tables, a bar chart of concept rate against prompt accuracy per row,
    and seed 0's image grids per row."""
    out = Path(cfg.out)
    sections = [
        Section(
            "How it was made",
            text="Every figure is the mean ± std over seeds; settings in results.json.",
            code=f"unsee bench table --methods {' '.join(cfg.methods)} --seeds {cfg.seeds}"
            f" --n {cfg.table_n} --out {cfg.out}",
        )
    ]
    for concept, table in results["tables"].items():
        sections.append(
            Section(
                f"{concept}: {CONCEPTS[concept]}",
                header=["method", *METRICS],
                rows=[[row, *(_fmt(m[k]) for k in METRICS)] for row, m in table.items()],
            )
        )
        sections.append(
            Section(
                f"{concept}: concept rate (target prompts) and prompt accuracy",
                text="Each method: the first bar is how often the concept still shows on"
                " prompts naming it (lower is better), the second the judge's agreement with"
                " neutral prompts (higher is better).",
                pairs={
                    row: (m["concept_rate_target"]["mean"], m["prompt_accuracy"]["mean"])
                    for row, m in table.items()
                },
                pair_labels=("concept rate", "prompt accuracy"),
            )
        )
        images = []
        for row in table:
            for suite in SUITES[concept]:
                grid = row_folder(cfg, 0, concept, row) / f"grid_{suite}.png"
                if grid.is_file():
                    images.append((f"{row}: {suite}", grid))
        sections.append(Section(f"{concept}: images (seed 0)", images=images))
    return write_report(out / "index.html", "unsee on minisd: the method table", sections)
