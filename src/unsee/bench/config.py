"""Settings of the `unsee bench` commands."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.censor.config import check_window
from unsee.config import arg, check_out_folder, option_flag
from unsee.erase.config import WORLD_DEFAULTS
from unsee.errors import UnseeError

# the method table's rows (`unsee bench table`), in its order
TABLE_ROWS = (
    "original", "neg_text", "neg_token", "sld_medium", "sld_max", "sega", "esd_x", "esd_u",
    "sdd_text", "hfi_sdd", "uce", "hfi_neg", "feedback_erase", "censored",
)  # fmt: skip
# the stages of `unsee bench gpu`, in the order they run
GPU_STAGES = ("generate", "sdd", "erase", "censor", "invert", "attack", "compile")
# those run by default at SDXL's sizes: generate, censor, invert, then one erase (the sdd
# stage's `unsee erase`) and the projection of the whole default erase
SDXL_GPU_STAGES = ("generate", "censor", "invert", "sdd", "erase")
IMAGE_TABLE = ("1:0:1", "1.5:0:1", "1.5:0:2", "2:0:2", "1:2:1")  # bench censor's, clip or cnn
LATENT_TABLE = ("2:0:1", "4:0:1", "4:0:2", "8:0:2")  # noise-aware: classic guidance scales
CENSOR_VARIANTS = ("guided", "guided_no_checkpointing", "guided_eps_constant", "guided_noise_aware")


def parse_methods(methods: list[str]) -> list[str]:
    """The rows to run, in the table's order; `all` is every row, and the original always
    comes first (the others are measured against its images)."""
    wanted = set(TABLE_ROWS) if "all" in methods else set(methods)
    unknown = wanted - set(TABLE_ROWS)
    if unknown:
        raise UnseeError(
            f"unknown --methods {', '.join(sorted(unknown))}; give all or rows of"
            f" {', '.join(TABLE_ROWS)}"
        )
    return [r for r in TABLE_ROWS if r in wanted or r == "original"]


@dataclass(kw_only=True)
class BenchGenerateConfig:
    out: Path = arg(help="folder for results.json and the generated images")
    model: str = arg(
        "tiny", help="tiny (a random tiny Stable Diffusion built from config), minisd, or a model"
    )
    n: int = arg(32, help="images to generate")
    steps: int = arg(25, help="denoising steps")
    batch_size: int = arg(16, help="images per batch")
    image_size: int = arg(32, help="image side in pixels")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)


@dataclass(kw_only=True)
class BenchTableConfig:
    out: Path = arg(help="folder for results.json, results.md, index.html and every row's work")
    methods: list[str] = arg(["all"], help=f"the rows: all, or some of {' '.join(TABLE_ROWS)}")
    seeds: int = arg(3, help="seeds, each redoing feedback, erasures and images")
    table_n: int = arg(64, help="generated images per suite, row and seed", flag="--n")
    model: str = arg(
        "minisd", help="recorded in settings.json; every row is made from minisd and its world"
    )
    steps: int = arg(25, help="DDIM steps")
    guidance: float = arg(7.5, help="classifier-free guidance scale")
    seed: int = arg(1_000_000, help="first seed; training never used these")
    pool: int = arg(200, help="images per concept the simulated person labels from")
    labels: int = arg(50, help="simulated labels per concept, half bad, half good")
    invert_steps: int = arg(600, help="`unsee invert --steps` of the HFI token")
    erase_iterations: int | None = arg(
        None, help="steps of every erasure (default: `unsee erase`'s on minisd)"
    )
    censor_scale: float = arg(1.5, help="censored sampling's guidance scale")
    censor_recurrence: int = arg(2, help="censored sampling's recurrence")
    censor_window: list[float] = arg(
        [0.0, 0.75], help="censored sampling guides while t/T lies in [START, END]"
    )
    bootstrap: int = arg(200, help="bootstrap resamples of each row's intervals")
    attack_seeds: int = arg(
        1,
        help="the first this many seeds also attack every row (the prefix attack and the"
        " inversion attack, `unsee attack` at its minisd defaults); 0: none",
    )
    attack_n: int = arg(32, help="neutral prompts each attack takes")
    workers: int = arg(
        1,
        help="processes that make rows side by side, one seed and concept each (the CPU's"
        " cores shared among them; on a GPU they share the card): 2 on a 2-core CPU makes the"
        " table about a third faster than 1",
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        check_window(self.censor_window)
        if self.workers < 1:
            raise UnseeError("--workers must be at least 1")
        if min(self.seeds, self.table_n - 1, self.pool, self.labels, self.bootstrap) < 1:
            raise UnseeError(
                "--seeds, --pool, --labels and --bootstrap must be at least 1,"
                f" {option_flag(type(self), 'table_n')} 2"
            )
        if self.attack_seeds < 0 or self.attack_n < 1:
            raise UnseeError("--attack-seeds must be at least 0 and --attack-n at least 1")
        parse_methods(self.methods)


@dataclass(kw_only=True)
class BenchWorldConfig(BenchTableConfig):
    """`unsee bench world`; with --methods it runs the method table, `unsee bench table`,
    and takes the table's options (the table was once part of this command)."""

    out: Path = arg(help="folder for results.json, the image sets and their grids")
    methods: list[str] = arg(
        [],
        help="the method table instead, as `unsee bench table --methods` (with the table's"
        " options, --table-n for its --n)",
    )
    table_n: int = arg(64, help="--methods: `unsee bench table --n`")
    model: str = arg("minisd", help="the world model to measure")
    n: int = arg(200, help="generated images per figure")
    judge_images: int = arg(2000, help="fresh rendered images for the judge's accuracy")
    batch_size: int = arg(16, help="images per batch")
    batch_invariant: Literal["auto", "on", "off"] = arg(
        "auto", help="as in `unsee generate`; off is faster on the CPU"
    )


@dataclass(kw_only=True)
class BenchLabelConfig:
    out: Path = arg(help="folder for results.json (and the image set it labels)")
    decisions: int = arg(300, help="API decisions to time")
    browser: bool = arg(True, help="also time keyboard labelling in headless Chromium")
    browser_decisions: int = arg(120, help="decisions made with keys in the browser")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)


@dataclass(kw_only=True)
class BenchRewardConfig:
    out: Path = arg(help="folder for results.json, the image sets and the rewards")
    eval_images: int = arg(1000, help="fresh generated images each AUC is measured on")
    artist: str = arg("Vanmond", help="the artist whose style the ranking reward learns")
    steps: int = arg(25, help="DDIM steps of the generated sets")
    seed: int = arg(2_000_000, help="first seed of the generated sets")
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)


@dataclass(kw_only=True)
class BenchCensorConfig:
    out: Path = arg(help="folder for results.json, table.md, the image sets and grids")
    n: int = arg(500, help="neutral prompts (one image each) for the base and chosen setting")
    pool: int = arg(160, help="generated images the simulated person labels from")
    labels: int = arg(20, help="simulated binary labels, half bad and half good")
    backbone: Literal["clip", "cnn", "noise-aware"] = arg(
        "clip",
        help="the reward's backbone: clip and cnn read images (forward guidance through the"
        " VAE decoder); noise-aware reads minisd's noisy latents (classic guidance: no"
        " decoder, no U-Net backward; it scores the finished latents for --retry; no"
        " backward steps, no rejection sampling)",
    )
    scale: float = arg(1.5, help="chosen setting: forward guidance scale")
    backward_steps: int = arg(0, help="chosen setting: backward guidance steps")
    recurrence: int = arg(2, help="chosen setting: recurrence")
    retry: int = arg(
        2,
        help="chosen setting: rounds of `unsee censor --retry` after guidance (0: guidance only;"
        " the guidance-only figures are reported either way)",
    )
    window: list[float] = arg(
        [0.0, 0.75],
        help="guidance acts while t/T lies in [START, END], for every setting (on minisd,"
        " guiding the first quarter of sampling, where the layout forms, costs prompt accuracy)",
    )
    table: list[str] | None = arg(
        None,
        help="settings SCALE:BACKWARD:RECURRENCE for the rate-vs-time table (default: 1:0:1"
        " 1.5:0:1 1.5:0:2 2:0:2 1:2:1; noise-aware: 2:0:1 4:0:1 4:0:2 8:0:2)",
    )
    table_n: int = arg(100, help="images per table setting")
    reject_budget: float = arg(10.0, help="rejection sampling: samples per image at most")
    steps: int = arg(25, help="DDIM steps")
    seed: int = arg(3_000_000, help="first seed; training never used these")
    batch_size: int = arg(16, help="images per batch")
    batch_invariant: Literal["auto", "on", "off"] = arg(
        "off", help="as in `unsee generate`; off batches guided images (faster on the CPU)"
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        check_window(self.window)
        latent = self.backbone == "noise-aware"
        if self.table is None:
            self.table = list(LATENT_TABLE if latent else IMAGE_TABLE)
        if self.retry < 0:
            raise UnseeError("--retry must be >= 0")
        if latent and self.backward_steps:
            raise UnseeError("backward guidance needs a clean-image reward (clip or cnn)")
        for setting in self.table:
            parts = setting.split(":")
            if len(parts) != 3:
                raise UnseeError(f"--table setting {setting!r} is not SCALE:BACKWARD:RECURRENCE")
            if latent and parts[1] not in ("0", ""):
                raise UnseeError(f"--table setting {setting!r}: a noise-aware reward takes no"
                                 " backward steps (SCALE:0:RECURRENCE)")  # fmt: skip


@dataclass(kw_only=True)
class BenchSpeedConfig:
    out: Path = arg(help="folder for results.json")
    iterations: int = arg(
        16, help="timed batched steps; the plain loop takes iterations x batch one-trajectory steps"
    )
    warmup: int = arg(1, help="untimed steps before each mode's timing")
    batch: int = arg(
        WORLD_DEFAULTS["batch"], help="trajectories per batched step (erase's --batch on minisd)"
    )
    sample_steps: int = arg(50, help="DDIM steps of the teacher's trajectories, as in SDD")
    seed: int = arg(0, help="seed of the stop steps (Beta(3, 3)), noise and timesteps")
    device: Literal["auto", "cpu", "cuda"] = arg(
        "auto", help="auto: the CPU, and the GPU too when CUDA is present; cpu or cuda: that only"
    )
    threads: int = arg(0, help="torch threads in each mode's process (0: torch's default)")
    model: str = arg("minisd", help="the CPU's model (tests pass a tiny pipeline folder)")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.iterations < 1 or self.batch < 1 or min(self.warmup, self.threads) < 0:
            raise UnseeError("--iterations and --batch must be at least 1; --warmup, --threads 0")
        if self.sample_steps < 2:
            raise UnseeError("--sample-steps must be at least 2")
        self.out = Path(self.out)


@dataclass(kw_only=True)
class BenchEraseConfig:
    out: Path = arg(help="folder for results.json, the pools, tokens, erased models and suites")
    n: int = arg(300, help="generated images per figure (each suite, each model)")
    pool: int = arg(200, help="images per concept the simulated person labels from")
    labels: int = arg(50, help="simulated binary labels per concept, half bad and half good")
    iterations: int | None = arg(
        None, help="SDD steps of every erased model (default: `unsee erase`'s on minisd)"
    )
    erase_batch: int | None = arg(None, help="`unsee erase --batch` (default: its minisd default)")
    sample_steps: int | None = arg(
        None, help="`unsee erase --sample-steps` (default: its minisd default)"
    )
    erase_lr: float | None = arg(None, help="`unsee erase --lr` (default: its minisd default)")
    erase_ema: float | None = arg(None, help="`unsee erase --ema` (default: its minisd default)")
    preserve: bool = arg(
        True,
        help="`unsee erase --preserve` with the pool prompts the concept's reward scores"
        " benign, for HFI+SDD and text-only SDD alike",
    )
    with_text: bool = arg(
        True, help="HFI+SDD removes the concept's word beside the token (docs/methods.md, HFI)"
    )
    neg: bool = arg(
        True,
        help="also the distilled negative prompt (`unsee erase --method neg`) on the token and"
        " on the word: hfi_neg_* and text_neg_* figures",
    )
    template: str = arg("{token}", help="`unsee invert --template`")
    top_k: int | None = arg(None, help="`unsee invert --top-k` (default: every pool image)")
    invert_steps: int = arg(600, help="`unsee invert --steps`")
    init_artist: str = arg("painting", help="`unsee invert --init` for the artist's token")
    init_watermark: str = arg("stock", help="`unsee invert --init` for the watermark's token")
    steps: int = arg(25, help="DDIM steps of every generated image")
    seed: int = arg(5_000_000, help="first seed; training never used these")
    batch_size: int = arg(32, help="images per batch")
    batch_invariant: Literal["auto", "on", "off"] = arg(
        "off", help="as in `unsee generate`; off is faster on the CPU"
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if min(self.n, self.pool, self.labels, self.iterations or 1) < 1:
            raise UnseeError("--n, --pool, --labels and --iterations must be at least 1")
        self.out = Path(self.out)

    @property
    def init(self) -> dict[str, str]:
        return {"Vanmond": self.init_artist, "watermark": self.init_watermark}


@dataclass(kw_only=True)
class BenchGpuConfig:
    out: Path = arg(help="folder for results.json and results.md")
    device: Literal["cuda", "cpu"] = arg(
        "cuda", help="cuda: the figures; cpu: the same stages, for tests (with --size tiny)"
    )
    size: Literal["sd15", "tiny", "sdxl", "tiny-sdxl"] = arg(
        "sd15",
        help="sd15: Stable Diffusion 1.5's sizes, random weights, 512x512; sdxl: SDXL base"
        " 1.0's, 1024x1024; tiny, tiny-sdxl: the test pipelines",
    )
    stages: list[str] | None = arg(
        None,
        help=f"which stages to run, in this order (default: {' '.join(GPU_STAGES)}; at SDXL's"
        f" sizes {' '.join(SDXL_GPU_STAGES)})",
    )
    images: int = arg(16, help="timed images per generation figure")
    batch_size: int = arg(8, help="images per batch (generate, invert)")
    steps: int = arg(50, help="denoising steps of the generation figures")
    plain_trajectories: int = arg(4, help="timed trajectories of the plain SDD loop")
    sdd_steps: int = arg(
        64, help="`unsee erase` steps timed at its defaults and at --reuse 16 and 64"
    )
    sdd_steps_reuse1: int = arg(8, help="`unsee erase --reuse 1` steps timed (the papers')")
    sdd_reuse: list[int] | None = arg(
        None,
        help="--reuse values timed beside the default (default: 1 16 64; at SDXL's sizes none)",
    )
    sdd_autocast: bool = arg(
        False, help="also time the default erase with --mixed autocast (op-by-op casting)"
    )
    sample_steps: int | None = arg(
        None, help="teacher steps of the SDD figures (default: `unsee erase`'s, 50; tests: fewer)"
    )
    erase_budget: float = arg(
        300.0, help="run the whole default erase only when projected within this many seconds"
    )
    erase_reuse: list[int] = arg(
        [],
        help="--reuse values for the whole erase, tried in turn: the first projected within"
        " --erase-budget runs (default: erase's own)",
    )
    censor_images: int = arg(4, help="images of each censored-sampling figure (one batch)")
    censor_steps: int = arg(25, help="denoising steps of the censored-sampling figures")
    censor_variants: list[str] = arg(
        list(CENSOR_VARIANTS), help="guided-sampling variants timed against plain sampling"
    )
    invert_steps: int = arg(20, help="`unsee invert` steps timed")
    attack_prompts: int = arg(8, help="prompts of the prefix attack's batch")
    work: Path | None = arg(None, help="where the temporary model folder goes (default: /tmp)")

    @property
    def sdxl(self) -> bool:
        return self.size in ("sdxl", "tiny-sdxl")

    def __post_init__(self) -> None:
        if self.stages is None:
            self.stages = list(SDXL_GPU_STAGES if self.sdxl else GPU_STAGES)
        if self.sdd_reuse is None:
            self.sdd_reuse = [] if self.sdxl else [1, 16, 64]
        odd = [v for v in self.censor_variants if v not in CENSOR_VARIANTS]
        if odd:
            raise UnseeError(f"unknown --censor-variants {odd}; choose from"
                             f" {', '.join(CENSOR_VARIANTS)}")  # fmt: skip
        if any(k < 1 for k in self.sdd_reuse):
            raise UnseeError("--sdd-reuse values must be at least 1")
        unknown = [s for s in self.stages if s not in GPU_STAGES]
        if unknown:
            raise UnseeError(f"unknown --stages {unknown}; choose from {', '.join(GPU_STAGES)}")
        counts = (self.images, self.batch_size, self.steps, self.plain_trajectories,
                  self.sdd_steps, self.sdd_steps_reuse1, self.censor_images, self.censor_steps,
                  self.invert_steps, self.attack_prompts)  # fmt: skip
        if min(counts) < 1:
            raise UnseeError("every count of `unsee bench gpu` must be at least 1")
        if self.images % self.batch_size:
            raise UnseeError("--images must be a multiple of --batch-size")
        self.out = Path(self.out)


@dataclass(kw_only=True)
class BenchAttackConfig:
    out: Path = arg(help="folder for results.json (and the CPU attack's own folder)")
    n: int = arg(32, help="CPU: neutral prompts attacked on minisd at `unsee attack`'s defaults")
    gpu_n: int = arg(8, help="GPU: prompts attacked at Stable Diffusion 1.5 size (one batch)")
    gpu_image_size: int = arg(512, help="GPU: image side (Stable Diffusion 1.5's 512)")
    device: Literal["auto", "cpu", "cuda"] = arg(
        "auto", help="auto: the CPU, and the GPU too when CUDA is present; cpu or cuda: that only"
    )

    def __post_init__(self) -> None:
        if self.n < 1 or self.gpu_n < 1 or self.gpu_image_size < 8:
            raise UnseeError("--n and --gpu-n must be at least 1, --gpu-image-size 8")
        self.out = Path(self.out)
