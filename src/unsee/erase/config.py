"""Settings of `unsee erase`."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg, check_out_folder
from unsee.errors import UnseeError
from unsee.models.base import base_model

# The papers' settings, for Stable Diffusion sized models (SDD, HFI: 1500 steps at lr 1e-5)
PAPER_DEFAULTS = {"iterations": 1500, "batch": 4, "sample_steps": 50, "lr": 1e-5, "ema": 0.999}
# minisd's: at lr 1e-5 it does not move in 300 steps; this erases in minutes on a 2-core
# CPU (chosen by the pilots in docs/bench-erase/pilots.json)
# (--reuse 1 as the papers: minisd's walks are cheap, and its table rows were made so)
WORLD_DEFAULTS = {
    "iterations": 200, "batch": 8, "sample_steps": 25, "lr": 1e-3, "ema": 0.99, "reuse": 1,
}  # fmt: skip
# training samples per teacher walk beyond minisd: the papers walk one trajectory per
# sample, which at Stable Diffusion size spends most of an erase in the walks
# (docs/bench-gpu); 32 stops on each walk, each drawn from the stop distribution, cut the
# walks 32-fold
LARGE_REUSE = 32


# ... except when most of minisd's U-Net trains (esd-u's all-but-cross-attention, full):
# at lr 1e-3 ESD-u collapses it in 200 steps (prompt accuracy 0.32), at 1e-4 it keeps it
# (0.97) and still removes the style (docs/bench-world-table/pilots.json)
WORLD_WIDE_LR = 1e-4
WIDE_PARAMS = ("all-but-cross-attention", "full")

# the strength of the negative direction and the weight of the kept prompts: 1 and 1 as
# the methods' papers; with --feedback (on the flagged and benign prompts), 1.5 and 4:
# the leak fell 0.14 -> 0.03 (cnn judge; 0.25 -> 0.19 vit) for the same other-artists
# accuracy (docs/erase-feedback)
PLAIN_WEIGHTS = {"eta": 1.0, "preserve_weight": 1.0}
FEEDBACK_WEIGHTS = {"eta": 1.5, "preserve_weight": 4.0}
# what --params may train (erase/params.py says what each one is)
ParamScope = Literal[
    "cross-attention",
    "cross-attention-kv",
    "self-attention",
    "all-but-cross-attention",
    "full",
    "lora",
]


def _defaults(key: str) -> str:
    world = f"{WORLD_DEFAULTS[key]:g}"
    if key == "lr":
        world += f", {WORLD_WIDE_LR:g} when most of the U-Net trains"
    return f"(default: {PAPER_DEFAULTS[key]:g}; on minisd {world})"


def erase_defaults(model: str, params: str = "cross-attention") -> dict:
    """The settings an unset option takes for this model and these trainable parameters
    (minisd's for minisd and for a model erased from it)."""
    if base_model(model) != "minisd":
        return PAPER_DEFAULTS | {"reuse": LARGE_REUSE}
    return WORLD_DEFAULTS | ({"lr": WORLD_WIDE_LR} if params in WIDE_PARAMS else {})


@dataclass(kw_only=True)
class EraseConfig(ModelArgs):
    out: Path = arg(help="output folder: a pipeline folder (or a LoRA file) with a model card")
    method: Literal["sdd", "esd-x", "esd-u", "neg", "uce"] | None = arg(
        None,
        help="sdd: self-distillation (Kim et al.); esd-x / esd-u: erased stable diffusion;"
        " neg: the concept as negative prompt, distilled into the --anchors prompts;"
        " uce: unified concept editing, a closed-form edit of the cross-attention keys and"
        " values (no training: the training options are refused) (default: sdd; neg with"
        " --feedback)",
    )
    feedback: Path | None = arg(
        None,
        help="an image folder with labels (feedback.sqlite): the whole path from them to an"
        " erased model (reward, token, edit; docs/erase-feedback); --concept is optional",
    )
    reward: Path | None = arg(
        None, help="--feedback: a reward trained on it (default: trained in OUT/feedback)"
    )
    scope: Literal["labelled", "scored", "kept"] = arg(
        "labelled",
        help="--feedback: whose prompts anchor and keep: labelled (the labelled images'),"
        " scored (also every unlabelled image in the folder the reward scores, flagged at"
        " p_bad >= 0.5, kept below 0.2; a label always wins) or kept (the scored images only"
        " add kept prompts); on minisd neither helped: docs/erase-feedback",
    )
    leak_repeat: int = arg(
        1,
        help="--feedback with --concept: each flagged prompt that does not name the concept"
        " (where it leaks) stands this many times among the anchors, so the edit draws it"
        " that many times as often as a prompt that names it",
    )
    init: str = arg("art", help="--feedback: the word whose embedding starts the token")
    token: str = arg("<flagged>", help="--feedback: the learned token, as prompts write it")
    invert_steps: int = arg(600, help="--feedback: `unsee invert --steps` of the token")
    concept: list[str] = arg([], help="concept texts to remove (several at once are fine)")
    embedding: list[Path] = arg(
        [], help="learned_embeds.safetensors files (`unsee invert`); their tokens are removed"
    )
    params: Literal["auto", ParamScope] = arg(
        "auto", help="what trains; auto: cross-attention (sdd, esd-x), all-but-cross-attention"
        " (esd-u)"
    )  # fmt: skip
    lora_rank: int = arg(4, help="--params lora: adapter rank")
    timesteps: Literal["beta", "uniform"] = arg(
        "beta", help="where teacher trajectories stop: Beta(a, b) (HFI) or uniform (SDD)"
    )
    beta: list[float] = arg([3.0, 3.0], help="a b of the Beta distribution")
    iterations: int | None = arg(None, help=f"optimiser steps {_defaults('iterations')}")
    batch: int | None = arg(
        None, help=f"trajectories per step, in one batched forward {_defaults('batch')}"
    )
    lr: float | None = arg(None, help=f"AdamW learning rate (constant) {_defaults('lr')}")
    ema: float | None = arg(
        None, help=f"EMA momentum of the teacher (the EMA is what is saved) {_defaults('ema')}"
    )
    reuse: int | None = arg(
        None,
        help="training samples from each teacher trajectory: K stops drawn on one walk (each"
        " from the stop distribution), used over the next K steps: about K times fewer"
        " teacher forwards, K times fewer distinct starting noises; 1 is the papers'"
        f" (default: {LARGE_REUSE}; on minisd {WORLD_DEFAULTS['reuse']})",
    )
    cfg_scale: float = arg(3.0, help="classifier-free guidance of the teacher's trajectories")
    sample_steps: int | None = arg(
        None, help=f"DDIM steps of the teacher's trajectories {_defaults('sample_steps')}"
    )
    eta: float | None = arg(
        None,
        help="esd, neg: strength of the negative guidance in the target (neg: 1 - 1/w is"
        " the concept as negative prompt at guidance w)"
        f" (default: {PLAIN_WEIGHTS['eta']:g}; with --feedback {FEEDBACK_WEIGHTS['eta']:g})",
    )
    anchors: Path | None = arg(
        None,
        help="neg: prompts (text or CSV file) whose estimates learn the negative prompt,"
        " e.g. those whose images showed the concept; one listed k times is drawn k times"
        " as often",
    )
    strip_concept: bool = arg(
        False,
        help="neg: an anchor naming a --concept text is pulled to the original's estimate of"
        " the prompt without it (Concept Ablation's target), minus the negative direction",
    )
    preserve: Path | None = arg(
        None,
        help="prompts to keep (text or CSV file): each step also pulls the student's estimate"
        " for B of them to the frozen original's, on the same latents",
    )
    preserve_weight: float | None = arg(
        None,
        help="weight of the --preserve term in the loss (default:"
        f" {PLAIN_WEIGHTS['preserve_weight']:g}; with --feedback"
        f" {FEEDBACK_WEIGHTS['preserve_weight']:g})",
    )
    uce_target: list[str] = arg(
        [],
        help="uce: what each concept's keys and values become: one text for all (e.g. art),"
        " or one per concept (--concept texts, then --embedding tokens) (default: the empty"
        " prompt)",
    )
    uce_erase_scale: float = arg(1.0, help="uce: weight e of the erased concepts' term")
    uce_preserve_scale: float | None = arg(
        None,
        help="uce: weight p of the preserved texts' term: the empty prompt and the --preserve"
        " prompts (default: max(0.1, 1 / their number), as UCE's code)",
    )
    uce_lambda: float = arg(0.5, help="uce: weight of |W - W_old|^2, which keeps W near W_old")
    gradient_checkpointing: bool = arg(False, help="recompute U-Net activations (less memory)")
    mixed: Literal["pure", "autocast"] = arg(
        "pure",
        help="on one GPU in bf16: pure computes in bf16 throughout with fp32 masters of the"
        " trained weights; autocast casts op by op (norms and softmax in fp32, slower);"
        " fp16 and several GPUs always use autocast",
    )
    checkpoint_every: int = arg(250, help="steps between checkpoints (0: none)")
    resume: bool = arg(False, help="continue from the last checkpoint in --out")
    save: Literal["pipeline", "lora"] = arg(
        "pipeline", help="pipeline: a full diffusers folder; lora: a LoRA file (--params lora)"
    )
    seed: int = arg(0, help="seed of noise, stop steps and timesteps")

    def __post_init__(self) -> None:
        if self.feedback is not None:
            self._check_feedback()
            return
        if self.reward is not None:
            raise UnseeError("--reward goes with --feedback")
        if self.leak_repeat != 1:
            raise UnseeError("--leak-repeat goes with --feedback")
        self.method = self.method or "sdd"
        if self.method == "uce":
            self._check_uce()
            return
        given = _changed(self, UCE_ONLY)
        if given:
            raise UnseeError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for"
                             " --method uce only")  # fmt: skip
        if self.save == "lora" and self.params not in ("lora", "auto"):
            raise UnseeError("--save lora needs --params lora")
        if self.save == "lora":
            self.params = "lora"
        if self.params == "auto":
            self.params = "all-but-cross-attention" if self.method == "esd-u" else "cross-attention"
        for key, value in (erase_defaults(self.model, self.params) | PLAIN_WEIGHTS).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if not self.concept and not self.embedding:
            raise UnseeError("give what to remove: --concept TEXT and/or --embedding FILE")
        if any(not text.strip() for text in self.concept):
            raise UnseeError("--concept is empty: give the text of the concept to remove")
        if self.iterations < 1 or self.batch < 1 or self.reuse < 1:
            raise UnseeError("--iterations, --batch and --reuse must be at least 1")
        if self.sample_steps < 2:
            raise UnseeError("--sample-steps must be at least 2")
        if len(self.beta) != 2 or min(self.beta) <= 0:
            raise UnseeError("--beta takes two positive numbers A B")
        if self.method == "neg" and self.anchors is None:
            raise UnseeError("--method neg needs --anchors: the prompts to change")
        if self.method != "neg" and (self.anchors is not None or self.strip_concept):
            raise UnseeError("--anchors and --strip-concept are for --method neg only")
        if self.preserve_weight < 0:
            raise UnseeError("--preserve-weight must be >= 0")
        if not 0 <= self.ema < 1:
            raise UnseeError("--ema must lie in [0, 1)")
        self.out = Path(self.out) if self.save == "lora" else check_out_folder(self.out)
        self.embedding = [Path(p) for p in self.embedding]
        if self.preserve is not None:
            self.preserve = Path(self.preserve)
        if self.anchors is not None:
            self.anchors = Path(self.anchors)

    def _check_feedback(self) -> None:
        """--feedback: the folder and reward are checked here, the rest once the token is
        made (erase/feedback.py runs the erase with the full settings)."""
        self.feedback = Path(self.feedback)
        if not (self.feedback / "feedback.sqlite").is_file():
            raise UnseeError(
                f"--feedback {self.feedback} holds no labels (feedback.sqlite): label it with"
                " `unsee label` or `unsee feedback import`"
            )
        if self.reward is not None:
            self.reward = Path(self.reward)
            if not (self.reward / "config.json").is_file():
                raise UnseeError(f"--reward {self.reward} is not a reward folder (no config.json)")
        if self.anchors is not None or self.preserve is not None:
            raise UnseeError(
                "--feedback chooses the anchors and the prompts to keep from the labels; leave"
                " out --anchors and --preserve"
            )
        if any(not text.strip() for text in self.concept):
            raise UnseeError("--concept is empty: give the text of the concept to remove")
        if not self.token.strip() or " " in self.token:
            raise UnseeError("--token must be one word without spaces, e.g. '<flagged>'")
        if self.save == "lora":
            raise UnseeError("--feedback saves a pipeline folder; --save lora is not offered yet")
        if self.invert_steps < 1:
            raise UnseeError("--invert-steps must be at least 1")
        if self.leak_repeat < 1:
            raise UnseeError("--leak-repeat must be at least 1")
        self.out = check_out_folder(self.out)

    def _check_uce(self) -> None:
        """--method uce: no training loop, so every option of one is refused where given."""
        given = _changed(self, TRAINED_ONLY)
        if given:
            raise UnseeError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the trained"
                " methods (sdd, esd-x, esd-u, neg); --method uce is a closed-form edit of"
                " attn2.to_k / attn2.to_v with no training loop"
            )
        if not self.concept and not self.embedding:
            raise UnseeError("give what to remove: --concept TEXT and/or --embedding FILE")
        if any(not text.strip() for text in self.concept):
            raise UnseeError("--concept is empty: give the text of the concept to remove")
        n = len(self.concept) + len(self.embedding)
        if len(self.uce_target) not in (0, 1, n):
            raise UnseeError(
                f"--uce-target takes one text for all concepts or one per concept ({n});"
                f" got {len(self.uce_target)}"
            )
        if self.uce_erase_scale <= 0 or self.uce_lambda <= 0:
            raise UnseeError("--uce-erase-scale and --uce-lambda must be > 0")
        if self.uce_preserve_scale is not None and self.uce_preserve_scale < 0:
            raise UnseeError("--uce-preserve-scale must be >= 0")
        self.out = check_out_folder(self.out)
        self.embedding = [Path(p) for p in self.embedding]
        if self.preserve is not None:
            self.preserve = Path(self.preserve)


# the options of the trained methods, refused with --method uce, and UCE's own
TRAINED_ONLY = (
    "params", "lora_rank", "timesteps", "beta", "iterations", "batch", "lr", "ema", "reuse",
    "cfg_scale", "sample_steps", "eta", "anchors", "strip_concept", "preserve_weight",
    "gradient_checkpointing", "mixed",
    "checkpoint_every", "resume", "save", "seed",
)  # fmt: skip
UCE_ONLY = ("uce_target", "uce_erase_scale", "uce_preserve_scale", "uce_lambda")


def _changed(cfg: EraseConfig, names: tuple[str, ...]) -> list[str]:
    """The options among `names` that differ from their defaults, as flags."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    out = []
    for name in names:
        f = fields[name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if getattr(cfg, name) != default:
            out.append("--" + name.replace("_", "-"))
    return out
