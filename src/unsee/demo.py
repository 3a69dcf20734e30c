"""`unsee demo`: the whole flow on the embedded model, with a simulated labeller.

This release has the first stages: generation with minisd and the world judge's reading
of the images. The rest of the flow (label, reward, censor, erase, evaluate) arrives in
later releases; the demo says so when it runs.
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
    n: int = arg(8, help="images per prompt")


def run_demo(cfg: DemoConfig) -> None:
    from unsee.evaluate.config import JudgeConfig
    from unsee.evaluate.grid import save_grid
    from unsee.evaluate.judge import judge_folder, load_images, read_image_set
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import generate

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("unsee demo: the embedded world model, minisd (32x32 images, CPU)")
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n")
    print(f"[1/2] generate: {cfg.n} images for each of {len(DEMO_PROMPTS)} prompts")
    images = generate(GenerateConfig(model="minisd", prompts=prompts, n=cfg.n, out=out / "images"))
    records = read_image_set(images)
    grid = save_grid(load_images(images, records, 32), out / "grid.png", columns=cfg.n)
    print(f"      {images}; one row per prompt in {grid}")
    print("[2/2] judge: what the world judge sees in them")
    judge_folder(JudgeConfig(dir=images))
    print(
        "not in this release yet: label, reward, censor, erase and evaluate;"
        " the demo runs them as they arrive."
    )
    print(f"look at the images: {grid}")
