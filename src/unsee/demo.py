"""`unsee demo`: the whole flow on the embedded model, with a simulated labeller.

This release has the first stage only (generation); the rest of the flow (label, reward,
censor, erase, evaluate) arrives in later releases, and the demo says so when it runs.
"""

from dataclasses import dataclass
from pathlib import Path

from unsee.config import arg

DEMO_PROMPTS = ["a red circle on grass", "a blue square in the desert", "a starry night"]


@dataclass(kw_only=True)
class DemoConfig:
    out: Path = arg(Path("runs/demo"), help="folder for everything the demo makes")


def run_demo(cfg: DemoConfig) -> None:
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import generate
    from unsee.models.tiny import tiny_sd_pipeline
    from unsee.world.paths import MINISD_DIR

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("unsee demo")
    if (MINISD_DIR / "model_index.json").is_file():
        model = "minisd"
        print("[1/1] generate: 4 images per prompt with the embedded minisd model")
    else:
        model = str(out / "tiny-sd")
        print(
            "note: this release does not ship the minisd weights yet, so the demo uses a tiny,"
            " randomly initialised Stable Diffusion pipeline: its images are noise-like."
        )
        tiny_sd_pipeline(seed=0).save_pretrained(model)
        print(f"[1/1] generate: 4 images per prompt with {model}")
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n")
    images = generate(GenerateConfig(model=model, prompts=prompts, n=4, out=out / "images"))
    print(f"      images and metadata.jsonl in {images}")
    print(
        "not in this release yet: label, reward, censor, erase and evaluate;"
        " the demo runs them as they arrive."
    )
