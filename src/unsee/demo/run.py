"""`unsee demo`: the whole flow on the embedded model, with a simulated labeller.

generate with minisd -> the judge's reading -> simulated labels of the spontaneous
watermark -> a clip reward -> its scores -> censored sampling (guided while t/T <= 0.75,
as in `unsee bench censor`) -> labels of the leaking artist and a reward -> `unsee erase
--feedback` (the inverted token, the distilled negative prompt on the flagged prompts,
the benign prompts kept) -> a short
evaluation of the original and the erased model -> OUT/report.html.
Every stage prints what it does; each writes its own folder under OUT. Run again with
the same OUT, the demo reuses what is finished there (images, labels, the token, the
erased model; a killed erase resumes) and redoes the rest.
"""

import json
import time
from pathlib import Path

from unsee.censor.config import CensorConfig
from unsee.censor.run import censor
from unsee.demo.config import DEMO_PROMPTS, DemoConfig
from unsee.erase.config import EraseConfig
from unsee.erase.run import erase
from unsee.evaluate.config import EvaluateConfig, JudgeConfig
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import judge_folder
from unsee.evaluate.run import evaluate
from unsee.feedback.config import FeedbackSimulateConfig
from unsee.feedback.simulate import simulate
from unsee.feedback.store import FeedbackStore
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.imageset import load_images, read_image_set
from unsee.report.html import Section, write_report
from unsee.reward.config import RewardScoreConfig, RewardTrainConfig
from unsee.reward.score import score_folder
from unsee.reward.train import train_reward
from unsee.world.names import LEAK_ARTIST
from unsee.world.prompts import artist_pool, neutral_prompts

STAGES = 9


def _stage(k: int, text: str) -> float:
    print(f"[{k}/{STAGES}] {text}", flush=True)
    return time.perf_counter()


def _labelled(folder: Path) -> bool:
    """The simulated person has labelled this folder already (a demo run again)."""
    return bool(FeedbackStore.for_folder(folder).decided("simulated"))


def run_demo(cfg: DemoConfig) -> Path:
    """Run every stage; return the path of the HTML report."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    print("unsee demo: the embedded world model, minisd (32x32 images, CPU)")

    start = _stage(1, f"generate: {cfg.n} images for each of {len(DEMO_PROMPTS)} prompts")
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n")
    look = generate(GenerateConfig(model="minisd", prompts=prompts, n=cfg.n, out=out / "look"))
    grid = save_grid(load_images(look, read_image_set(look), 32), out / "grid.png", columns=cfg.n)
    print(f"      one row per prompt: {grid}")
    seconds["generate"] = time.perf_counter() - start

    start = _stage(2, "judge: what the world judge sees in them")
    judge_folder(JudgeConfig(dir=look))
    seconds["judge"] = time.perf_counter() - start

    start = _stage(
        3,
        f"label: {cfg.pool} images from plain prompts; a simulated person marks the"
        f" watermark the model adds unasked ({cfg.labels} labels)",
    )
    pool_prompts = out / "pool-prompts.txt"
    pool_prompts.write_text("\n".join(p for p, _ in neutral_prompts(cfg.pool, 7)) + "\n")
    pool = generate(
        GenerateConfig(model="minisd", prompts=pool_prompts, seed=10_000, out=out / "pool")
    )
    if not _labelled(pool):
        simulate(
            FeedbackSimulateConfig(dir=pool, concept="watermark", budget=cfg.labels, balanced=True)
        )
    print(f"      (label by hand instead: unsee label {pool})")
    seconds["label"] = time.perf_counter() - start

    start = _stage(4, "reward: a 5-model clip ensemble on those labels; it scores the first images")
    reward = train_reward(RewardTrainConfig(dir=pool, out=out / "reward"))
    score_folder(RewardScoreConfig(reward=reward, dir=look))
    seconds["reward"] = time.perf_counter() - start

    start = _stage(5, f"censor: {cfg.censor_n} fresh plain prompts, without and with the reward")
    fresh = out / "censor-prompts.txt"
    fresh.write_text("\n".join(p for p, _ in neutral_prompts(cfg.censor_n, 8)) + "\n")
    common = {"model": "minisd", "prompts": fresh, "seed": 20_000}
    plain = generate(GenerateConfig(**common, out=out / "plain"))
    censored = censor(
        CensorConfig(
            **common,
            reward=reward,
            scale=cfg.scale,
            recurrence=cfg.recurrence,
            window=list(cfg.window),
            out=out / "censored",
        )
    )
    censor_rates = {}
    for name, folder in (("plain", plain), ("censored", censored)):
        censor_rates[name] = judge_folder(JudgeConfig(dir=folder))["watermark_rate"]
        save_grid(load_images(folder, read_image_set(folder), 32), out / f"grid_{name}.png")
        print(f"      {name}: the judge sees a watermark on {censor_rates[name]:.1%} of the images")
    seconds["censor"] = time.perf_counter() - start

    start = _stage(
        6,
        f"label: {cfg.artist_pool} images of artist and scene prompts; a simulated person marks"
        f" {LEAK_ARTIST}'s style ({cfg.artist_labels} labels); a reward on the labels",
    )
    hfi = out / "hfi"
    hfi.mkdir(exist_ok=True)
    (hfi / "pool-prompts.txt").write_text("\n".join(artist_pool(cfg.artist_pool, 11)) + "\n")
    artist = generate(
        GenerateConfig(
            model="minisd", prompts=hfi / "pool-prompts.txt", seed=30_000, out=hfi / "pool"
        )
    )
    if not _labelled(artist):
        simulate(
            FeedbackSimulateConfig(
                dir=artist, concept=LEAK_ARTIST, budget=cfg.artist_labels, balanced=True
            )
        )
    artist_reward = train_reward(RewardTrainConfig(dir=artist, out=hfi / "reward"))
    seconds["artist labels"] = time.perf_counter() - start

    start = _stage(
        7,
        f"erase from the labels (`unsee erase --feedback`): the token <hfi> inverted from the"
        f" flagged images, then taken out of the U-Net's cross-attention with the word"
        f" {LEAK_ARTIST} on the flagged prompts ({cfg.erase_iterations} steps), the benign"
        " ones kept",
    )
    erased = hfi / "erased"
    if not (erased / "erase.json").is_file():  # a killed run goes on from what it made
        erase(
            EraseConfig(
                feedback=artist, reward=artist_reward, concept=[LEAK_ARTIST], init="painting",
                token="<hfi>", invert_steps=cfg.invert_steps, iterations=cfg.erase_iterations,
                out=erased,
            )
        )  # fmt: skip
    plan = json.loads((erased / "feedback" / "plan.json").read_text())
    print(f"      a diffusers pipeline folder: {erased}")
    seconds["erase"] = time.perf_counter() - start

    start = _stage(8, f"evaluate: the original and the erased model, {cfg.eval_n} images a suite")
    suites = ["target", "leak", "other-artists", "neutral"]
    evaluations = {}
    for name, model in (("original", "minisd"), ("erased", str(erased))):
        evaluations[name] = evaluate(
            EvaluateConfig(
                model=model, suite=suites, concept=LEAK_ARTIST, n=cfg.eval_n,
                bootstrap=200, out=out / "evaluate" / name,
            )
        )["suites"]  # fmt: skip
        for suite in ("target", "leak"):
            folder = out / "evaluate" / name / suite / "images"
            images = load_images(folder, read_image_set(folder), 32)
            save_grid(images, out / f"grid_{name}_{suite}.png")
    seconds["evaluate"] = time.perf_counter() - start

    _stage(9, "report")
    seconds["total"] = time.perf_counter() - began
    sections = _report_sections(out, grid, censor_rates, evaluations, seconds, cfg, plan)
    report = write_report(out / "report.html", "unsee demo on minisd", sections)
    print(f"report: {report.resolve()}")
    print(f"the demo took {seconds['total'] / 60:.1f} minutes")
    return report


def _report_sections(out, grid, censor_rates, evaluations, seconds, cfg, plan):
    def metric(name, suite, key):
        value = evaluations[name].get(suite, {}).get(key)
        return "" if value is None else value["mean"]

    rows = []
    for suite, key, label in (
        ("target", "concept_rate", f"{LEAK_ARTIST}'s style on prompts naming him"),
        ("target", "concept_strength", "... its mean strength (0 none, 1 full)"),
        ("leak", "concept_rate", f"{LEAK_ARTIST}'s style on starry nights (never named)"),
        ("leak", "concept_strength", "... its mean strength"),
        ("leak", "unasked_style_rate", "any artist's style on starry nights (none asked)"),
        ("other-artists", "style_rate", "the other artists' styles kept"),
        ("other-artists", "prompt_accuracy_shape", "shape accuracy on the other artists' prompts"),
        ("neutral", "prompt_accuracy_shape", "shape accuracy on plain prompts"),
        ("neutral", "prompt_accuracy_color", "colour accuracy on plain prompts"),
        ("neutral", "watermark_rate", "watermark rate on plain prompts"),
        ("neutral", "same_seed_distance", "distance to the original's same-seed image"),
    ):
        rows.append([label, metric("original", suite, key), metric("erased", suite, key)])
    return [
        Section(
            "What ran",
            text="The embedded world model minisd, a simulated person in place of a real one,"
            " and the world's judge as the measure (a concept counts from strength 0.2: a"
            " faint trace is a trace). The same flow runs on Stable Diffusion with"
            " the README's commands.",
            code=f"unsee demo --out {out}",
        ),
        Section("The world", text="One row per prompt.", images=[("minisd's images", grid)]),
        Section(
            "Censored sampling of the watermark",
            text=f"{cfg.censor_n} plain prompts, the same seeds, without and with reward"
            f" guidance (scale {cfg.scale}, recurrence {cfg.recurrence}, t/T in"
            f" [{cfg.window[0]}, {cfg.window[1]}]).",
            bars={f"watermark rate, {k}": v for k, v in censor_rates.items()},
            images=[
                ("plain", out / "grid_plain.png"),
                ("censored", out / "grid_censored.png"),
            ],
        ),
        Section(
            f"Erased from the labels: {LEAK_ARTIST}'s style out of the weights",
            text=f"`unsee erase --feedback` on {cfg.artist_labels} simulated labels: the token"
            f" <hfi> inverted from the flagged images (HFI), then the distilled negative prompt"
            f" of the token and the artist's name on the {plan['flagged_prompts']} flagged"
            f" prompts, {plan['benign_prompts']} benign prompts kept, {cfg.erase_iterations}"
            f" steps. {cfg.eval_n} images per suite; all metrics with intervals are in"
            " evaluate/*/results.json.",
            header=["measure (the judge)", "original", "erased"],
            rows=rows,
            images=[
                (f"{name}: {suite}", out / f"grid_{name}_{suite}.png")
                for suite in ("target", "leak")
                for name in ("original", "erased")
            ],
        ),
        Section(
            "Time",
            header=["stage", "seconds"],
            rows=[[k, round(v, 1)] for k, v in seconds.items()],
        ),
    ]
