"""`unsee demo`: the whole flow on the embedded model, with a simulated labeller.

This release runs: generate with minisd -> the judge's reading -> simulated labels of the
spontaneous watermark -> a clip reward -> its scores -> censored sampling (guided while
t/T <= 0.75, as in `unsee bench censor`), with the judge's watermark rate before and after.
HFI + SDD and the evaluation report arrive in later releases; the demo says so when it runs.
"""

from dataclasses import dataclass
from pathlib import Path

from unsee.config import arg

DEMO_PROMPTS = [
    "a red circle on grass",
    "a blue star in the snow",
    "a yellow triangle at night, in the style of Solvei",
    "a starry night",
]


@dataclass(kw_only=True)
class DemoConfig:
    out: Path = arg(Path("runs/demo"), help="folder for everything the demo makes")
    n: int = arg(8, help="images per prompt for the look at the world")
    pool: int = arg(120, help="images generated for labelling")
    labels: int = arg(20, help="simulated labels (half bad, half good)")
    censor_n: int = arg(48, help="fresh plain prompts generated with and without censoring")
    scale: float = arg(1.5, help="censored sampling: forward guidance scale")
    recurrence: int = arg(2, help="censored sampling: recurrence")
    window: list[float] = arg(
        [0.0, 0.75], help="censored sampling: guidance acts while t/T lies in [START, END]"
    )

    def __post_init__(self) -> None:
        from unsee.guidance.config import check_window

        check_window(self.window)  # before any image is made


def run_demo(cfg: DemoConfig) -> None:
    from unsee.bench.world import neutral_prompts
    from unsee.evaluate.config import JudgeConfig
    from unsee.evaluate.grid import save_grid
    from unsee.evaluate.judge import judge_folder, load_images, read_image_set
    from unsee.feedback.config import FeedbackSimulateConfig
    from unsee.feedback.simulate import simulate
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import generate
    from unsee.guidance.censor import censor
    from unsee.guidance.config import CensorConfig
    from unsee.reward.config import RewardScoreConfig, RewardTrainConfig
    from unsee.reward.score import score_folder
    from unsee.reward.train import train_reward

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("unsee demo: the embedded world model, minisd (32x32 images, CPU)")

    print(f"[1/6] generate: {cfg.n} images for each of {len(DEMO_PROMPTS)} prompts")
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n")
    look = generate(GenerateConfig(model="minisd", prompts=prompts, n=cfg.n, out=out / "look"))
    grid = save_grid(load_images(look, read_image_set(look), 32), out / "grid.png", columns=cfg.n)
    print(f"      one row per prompt: {grid}")

    print("[2/6] judge: what the world judge sees in them")
    judge_folder(JudgeConfig(dir=look))

    print(
        f"[3/6] label: {cfg.pool} images from plain prompts; a simulated person marks the"
        f" watermark the model adds unasked ({cfg.labels} labels)"
    )
    pool_prompts = out / "pool-prompts.txt"
    pool_prompts.write_text("\n".join(p for p, _ in neutral_prompts(cfg.pool, 7)) + "\n")
    pool = generate(
        GenerateConfig(model="minisd", prompts=pool_prompts, seed=10_000, out=out / "pool")
    )
    simulate(
        FeedbackSimulateConfig(dir=pool, concept="watermark", budget=cfg.labels, balanced=True)
    )
    print(f"      (label by hand instead: unsee label {pool})")

    print("[4/6] reward: a 5-model clip ensemble on those labels")
    reward = train_reward(RewardTrainConfig(dir=pool, out=out / "reward"))

    print("[5/6] score: the reward reads the images it never saw")
    score_folder(RewardScoreConfig(reward=reward, dir=look))

    print(f"[6/6] censor: {cfg.censor_n} fresh plain prompts, without and with the reward")
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
    for name, folder in (("plain", plain), ("censored", censored)):
        rate = judge_folder(JudgeConfig(dir=folder))["watermark_rate"]
        print(f"      {name}: the judge sees a watermark on {rate:.1%} of the images")

    print(
        "not in this release yet: HFI + SDD and the evaluation report;"
        " the demo runs them as they arrive."
    )
    print(f"look at the images: {grid}")
