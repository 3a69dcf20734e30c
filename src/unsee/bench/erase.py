"""`unsee bench erase`: HFI+SDD against text-only SDD on minisd, measured by the judge.

For each concept (the leaking artist, and the watermark):
  1. a pool of images from the original model (artist: a mix of prompts naming him, leak
     scenes, neutral prompts and other artists; watermark: neutral prompts)
  2. simulated binary feedback on at most `labels` of them (the judge as the person)
  3. a clip reward on that feedback, and the HFI token from it (`unsee invert`)
  4. SDD on the token (with the concept's word beside it) = HFI+SDD, and SDD on the word
     alone = text-only SDD, both with the default `unsee erase` settings on minisd and
     `--preserve` with the pool prompts the reward scores benign (keep.txt)
With --neg, the same again with the distilled negative prompt (`unsee erase --method neg`):
HFI+NEG on the token and word, text-only NEG on the word. Its anchors, the prompts whose
estimates learn the negative prompt: for the artist, the pool prompts the reward scores bad
(with --preserve the benign ones, as above); for the watermark, which marks any image
whatever its prompt, every pool prompt (and nothing to preserve: the same prompts).
then every model generates fresh suites from the same seeds:
  target   prompts naming the artist              -> the artist's style rate
  leak     starry nights, never naming him         -> the artist's style rate
  neutral  shape prompts naming no artist          -> watermark rate, prompt accuracy
  others   prompts naming the other artists        -> their style rates
results.json: hfi_sdd_style_target, hfi_sdd_style_leak, text_sdd_style_target,
text_sdd_style_leak, hfi_sdd_watermark, text_sdd_watermark, the original's figures,
max_preservation_drop (largest drop of another artist's style rate or a prompt accuracy
from the original, over the HFI+SDD models), erase_seconds, and per-model tables; with
--neg also hfi_neg_* / text_neg_* and max_preservation_drop_neg (over the HFI+NEG models).
Every stage keeps its output, so an interrupted run resumes where it stopped.
"""

import json
from pathlib import Path

from unsee.bench.config import BenchEraseConfig
from unsee.bench.sets import make_set
from unsee.erase.config import EraseConfig
from unsee.erase.run import erase
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import ATTRIBUTES, rates
from unsee.feedback.config import FeedbackSimulateConfig
from unsee.feedback.simulate import simulate
from unsee.feedback.store import FeedbackStore
from unsee.imageset import atomic_write_text
from unsee.invert.config import InvertConfig
from unsee.invert.run import invert
from unsee.models.load import pick_device
from unsee.reward.config import RewardTrainConfig
from unsee.reward.score import benign_prompts
from unsee.reward.train import train_reward
from unsee.world.judge import CALL_STRENGTH, PRESENT_STRENGTH, judge_images, load_world_judge
from unsee.world.names import ARTISTS, LEAK_ARTIST
from unsee.world.prompts import artist_pool, leak_prompts, neutral_prompts

ARTIST = LEAK_ARTIST
OTHERS = [a for a in ARTISTS if a != ARTIST]


def suites(n: int, seed: int) -> dict[str, tuple[list[str], list[dict | None], int]]:
    """name -> (prompts, truth per prompt, seed); the same for every model."""
    neutral = neutral_prompts(n, seed)
    others = []
    for i, artist in enumerate(OTHERS):
        others += [p for p, _ in neutral_prompts(n // len(OTHERS), seed + 1 + i, artist)]
    return {
        "target": ([p for p, _ in neutral_prompts(n, seed + 3, ARTIST)], [None] * n, seed),
        "leak": (leak_prompts(n), [None] * n, seed + 10_000),
        "neutral": ([p for p, _ in neutral], [t for _, t in neutral], seed + 20_000),
        "others": (others, [None] * len(others), seed + 30_000),
    }


def _generate(cfg: BenchEraseConfig, model: str, folder: Path, prompts: list[str], seed: int):
    """One image per prompt in folder/images (kept across runs); the images (N, H, W, 3)."""
    gen = {"steps": cfg.steps, "batch_size": cfg.batch_size, "device": cfg.device}
    _, images = make_set(
        folder, prompts, seed, model=model, batch_invariant=cfg.batch_invariant, **gen
    )
    return images


def measure(cfg: BenchEraseConfig, model: str, folder: Path, judge, which: list[str]) -> dict:
    """The judge's figures for `model` on the suites named in `which`."""
    figures: dict[str, float] = {}
    for name, (prompts, truths, seed) in suites(cfg.n, cfg.seed).items():
        if name not in which:
            continue
        images = _generate(cfg, model, folder / name, prompts, seed)
        save_grid(images[:64], folder / f"grid_{name}.png")
        verdicts = judge_images(judge, images)
        if name in ("target", "leak"):
            shown = rates(verdicts, concepts=(ARTIST,))["concepts"][ARTIST]
            figures[f"style_{name}"] = shown["rate"]
            figures[f"style_strength_{name}"] = round(shown["strength"], 4)
        elif name == "neutral":
            judged = rates(verdicts, truths, ("watermark",))
            figures["watermark"] = judged["concepts"]["watermark"]["rate"]
            figures["watermark_strength"] = round(judged["concepts"]["watermark"]["strength"], 4)
            for key, value in judged["prompt_accuracy"].items():
                figures[f"accuracy_{key}"] = value
        else:
            for artist in OTHERS:
                named = [v for v, p in zip(verdicts, prompts, strict=True) if artist in p]
                figures[f"style_{artist}"] = rates(named, concepts=(artist,))["concepts"][artist][
                    "rate"
                ]
    atomic_write_text(folder / "figures.json", json.dumps(figures, indent=2) + "\n")
    return figures


def learn_token(cfg: BenchEraseConfig, concept: str, pool_prompts: list[str], seed: int) -> dict:
    """Pool, simulated feedback, reward and HFI token for one concept (each kept once made)."""
    root = Path(cfg.out) / concept
    _generate(cfg, "minisd", root / "pool", pool_prompts, seed)
    pool = root / "pool" / "images"
    if not any(d["annotator"] == "simulated" for d in FeedbackStore.for_folder(pool).decisions()):
        simulate(
            FeedbackSimulateConfig(
                dir=pool, concept=concept, budget=cfg.labels, balanced=True, seed=seed,
                device=cfg.device,
            )
        )  # fmt: skip
    reward = root / "reward"
    if not (reward / "config.json").is_file():
        train_reward(RewardTrainConfig(dir=pool, out=reward, device=cfg.device, seed=seed))
    keep = root / "keep.txt"
    if not keep.is_file():
        benign = benign_prompts(pool, reward, cfg.device)
        atomic_write_text(keep, "".join(f"{p}\n" for p in benign))
    token = root / "token.safetensors"
    if not token.is_file():
        invert(
            InvertConfig(
                feedback=pool, reward=reward, init=cfg.init[concept], token=f"<{concept.lower()}>",
                template=cfg.template, top_k=cfg.top_k, steps=cfg.invert_steps, out=token,
                device=cfg.device, seed=seed,
            )
        )  # fmt: skip
    return json.loads(token.with_suffix(".json").read_text())


def erase_config(cfg: BenchEraseConfig, out: Path, **what) -> EraseConfig:
    """`unsee erase`'s settings for a bench model: its minisd defaults unless given."""
    return EraseConfig(
        out=out, device=cfg.device, iterations=cfg.iterations, batch=cfg.erase_batch,
        sample_steps=cfg.sample_steps, lr=cfg.erase_lr, ema=cfg.erase_ema, seed=cfg.seed,
        resume=(out / "checkpoint.pt").is_file(), **what,
    )  # fmt: skip


def erased(cfg: BenchEraseConfig, name: str, **what) -> tuple[str, float]:
    """An SDD model with the default `unsee erase` settings (resumed if interrupted)."""
    out = Path(cfg.out) / "models" / name
    if not (out / "erase.json").is_file():
        erase(erase_config(cfg, out, **what))
    return str(out), json.loads((out / "erase.json").read_text())["seconds"]


def run_bench_erase(cfg: BenchEraseConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = load_world_judge("cnn", pick_device(cfg.device))

    # 1. feedback -> token, per concept
    tokens = {
        ARTIST: learn_token(cfg, ARTIST, artist_pool(cfg.pool, cfg.seed), cfg.seed + 1),
        "watermark": learn_token(
            cfg, "watermark", [p for p, _ in neutral_prompts(cfg.pool, cfg.seed + 2)], cfg.seed + 3
        ),
    }

    # 2-3. the original and the four erased models, each measured on the same suites and
    # seeds as soon as it exists
    emb = {c: [out / c / "token.safetensors"] for c in tokens}
    hfi_words = {c: [c] if cfg.with_text else [] for c in tokens}
    keep = {
        c: {"preserve": out / c / "keep.txt"}
        if cfg.preserve and (out / c / "keep.txt").read_text().strip()
        else {}
        for c in tokens
    }  # (none when the reward scored every pool image bad)
    plan = {
        "original": None,
        "hfi_sdd_artist": {"embedding": emb[ARTIST], "concept": hfi_words[ARTIST], **keep[ARTIST]},
        "text_sdd_artist": {"concept": [ARTIST], **keep[ARTIST]},
        "hfi_sdd_watermark": {
            "embedding": emb["watermark"], "concept": hfi_words["watermark"], **keep["watermark"]
        },
        "text_sdd_watermark": {"concept": ["watermark"], **keep["watermark"]},
    }  # fmt: skip
    if cfg.neg:
        anchors = {c: anchor_prompts(out / c, prompt_bound=c == ARTIST) for c in tokens}
        neg = {"method": "neg"}
        plan |= {
            "hfi_neg_artist": {**plan["hfi_sdd_artist"], **neg, "anchors": anchors[ARTIST]},
            "text_neg_artist": {**plan["text_sdd_artist"], **neg, "anchors": anchors[ARTIST]},
            "hfi_neg_watermark": {
                "embedding": emb["watermark"], "concept": hfi_words["watermark"], **neg,
                "anchors": anchors["watermark"],
            },
            "text_neg_watermark": {
                "concept": ["watermark"], **neg, "anchors": anchors["watermark"]
            },
        }  # fmt: skip
    every = ["target", "leak", "neutral", "others"]
    which = {
        name: ["neutral", "others"] if name.startswith("hfi") else ["neutral"]
        for name in plan
        if name.endswith("_watermark")
    }
    models, tables = {}, {}
    for name, what in plan.items():
        models[name] = ("minisd", 0.0) if what is None else erased(cfg, name, **what)
        folder = out / "suites" / name
        tables[name] = measure(cfg, models[name][0], folder, judge, which.get(name, every))
        print(f"{name}: {tables[name]}")

    # 4. preservation: other artists' styles and prompt accuracy, against the original
    base = tables["original"]
    kept = [f"style_{a}" for a in OTHERS] + [f"accuracy_{k}" for k in ATTRIBUTES]
    hfi = [name for name in plan if name.startswith("hfi_")]
    drops = {
        name: {k: round(base[k] - tables[name][k], 4) for k in kept if k in tables[name]}
        for name in hfi
    }
    # the settings the erasures ran with (erase resolves the unset ones to its minisd defaults)
    used = json.loads((Path(models["hfi_sdd_artist"][0]) / "erase.json").read_text())["settings"]
    results = {
        "hfi_sdd_style_target": tables["hfi_sdd_artist"]["style_target"],
        "hfi_sdd_style_leak": tables["hfi_sdd_artist"]["style_leak"],
        "text_sdd_style_target": tables["text_sdd_artist"]["style_target"],
        "text_sdd_style_leak": tables["text_sdd_artist"]["style_leak"],
        "original_style_target": base["style_target"],
        "original_style_leak": base["style_leak"],
        "hfi_sdd_watermark": tables["hfi_sdd_watermark"]["watermark"],
        "text_sdd_watermark": tables["text_sdd_watermark"]["watermark"],
        "original_watermark": base["watermark"],
        "max_preservation_drop": max(
            max(drops[name].values()) for name in ("hfi_sdd_artist", "hfi_sdd_watermark")
        ),
        **(_neg_figures(tables, drops) if cfg.neg else {}),
        "erase_seconds": models["hfi_sdd_artist"][1],
        "erase_seconds_all": {k: v[1] for k, v in models.items() if k != "original"},
        "tables": tables,
        "preservation_drops": drops,
        "settings": {
            "images_per_figure": cfg.n,
            "pool": cfg.pool,
            "labels": cfg.labels,
            "steps": cfg.steps,
            "guidance": 7.5,
            "seed": cfg.seed,
            "erase": {
                **{
                    k: used[k]
                    for k in ("iterations", "batch", "sample_steps", "lr", "ema", "cfg_scale")
                },
                "with_text": cfg.with_text,
                "neg_anchors": {
                    c: len((out / c / "anchors.txt").read_text().splitlines()) for c in tokens
                }
                if cfg.neg
                else None,
                "preserve": "the pool prompts the reward scores benign" if cfg.preserve else None,
                "kept_prompts": {
                    c: len((out / c / "keep.txt").read_text().splitlines()) for c in tokens
                },
            },
            "invert": {
                "template": cfg.template,
                "top_k": cfg.top_k,
                "init": cfg.init,
                "steps": cfg.invert_steps,
            },
            "tokens": {
                c: {"chosen": len(t["chosen"]), "seconds": t["seconds"]} for c, t in tokens.items()
            },
            "present_strength": PRESENT_STRENGTH,
            "call_strength": CALL_STRENGTH,
        },
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    return results


def anchor_prompts(root: Path, prompt_bound: bool) -> Path:
    """The distilled negative prompt's anchors for a concept (root/anchors.txt): the pool
    prompts the reward scores bad when the concept follows the prompt (an artist's style),
    else every pool prompt (a watermark, on any image whatever its prompt)."""
    path = root / "anchors.txt"
    if not path.is_file():
        pool = (root / "pool" / "prompts.txt").read_text().splitlines()
        benign = set((root / "keep.txt").read_text().splitlines()) if prompt_bound else set()
        anchors = list(dict.fromkeys(p for p in pool if p.strip() and p not in benign))
        atomic_write_text(path, "".join(f"{p}\n" for p in anchors or pool))
    return path


def _neg_figures(tables: dict, drops: dict) -> dict:
    return {
        "hfi_neg_style_target": tables["hfi_neg_artist"]["style_target"],
        "hfi_neg_style_leak": tables["hfi_neg_artist"]["style_leak"],
        "text_neg_style_target": tables["text_neg_artist"]["style_target"],
        "text_neg_style_leak": tables["text_neg_artist"]["style_leak"],
        "hfi_neg_watermark": tables["hfi_neg_watermark"]["watermark"],
        "text_neg_watermark": tables["text_neg_watermark"]["watermark"],
        "max_preservation_drop_neg": max(
            max(drops[name].values()) for name in ("hfi_neg_artist", "hfi_neg_watermark")
        ),
    }
