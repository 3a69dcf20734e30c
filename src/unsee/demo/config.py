"""Settings of `unsee demo`."""

from dataclasses import dataclass
from pathlib import Path

from unsee.censor.config import check_window
from unsee.config import arg, check_out_folder
from unsee.errors import UnseeError

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
    artist_pool: int = arg(100, help="images of artist prompts generated for labelling")
    artist_labels: int = arg(30, help="simulated labels of the leaking artist's style")
    invert_steps: int = arg(300, help="erase --feedback: steps of its token's inversion")
    erase_iterations: int = arg(
        200, help="steps of `unsee erase --feedback` (minisd defaults otherwise)"
    )
    eval_n: int = arg(48, help="images per suite in the evaluation")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        check_window(self.window)  # before any image is made
        counts = ("n", "pool", "censor_n", "artist_pool", "invert_steps", "erase_iterations")
        for name in (*counts, "eval_n"):
            if getattr(self, name) < 1:
                raise UnseeError(f"--{name.replace('_', '-')} must be at least 1")
        for labels, pool in (("labels", "pool"), ("artist_labels", "artist_pool")):
            if not 2 <= getattr(self, labels) <= getattr(self, pool):
                raise UnseeError(
                    f"--{labels.replace('_', '-')} must be at least 2 (half bad, half good) and"
                    f" at most --{pool.replace('_', '-')} ({getattr(self, pool)})"
                )
