"""The `unsee` command: a thin argparse layer over one config dataclass per command.

Command modules are imported only when their command runs, so `unsee --help` is quick.
Bad input raises UnseeError, shown as one line with exit status 2 (UNSEE_DEBUG=1 shows
the traceback too).
"""

import argparse
import errno
import importlib
import logging
import os
import sys
from dataclasses import dataclass

from unsee import __version__
from unsee.attack.config import AttackConfig
from unsee.bench.config import (
    BenchAttackConfig,
    BenchCensorConfig,
    BenchEraseConfig,
    BenchGenerateConfig,
    BenchGpuConfig,
    BenchLabelConfig,
    BenchRewardConfig,
    BenchSpeedConfig,
    BenchTableConfig,
    BenchWorldConfig,
)
from unsee.censor.config import CensorConfig
from unsee.config import add_dataclass_arguments, dataclass_from_namespace
from unsee.demo.config import DemoConfig
from unsee.env import EnvConfig
from unsee.erase.config import EraseConfig
from unsee.errors import UnseeError
from unsee.evaluate.config import EvaluateConfig, JudgeCalibrateConfig, JudgeConfig
from unsee.feedback.config import (
    FeedbackExportConfig,
    FeedbackImportConfig,
    FeedbackSimulateConfig,
    FeedbackStatsConfig,
    LabelConfig,
)
from unsee.generate.config import GenerateConfig
from unsee.invert.config import InvertConfig
from unsee.reward.config import RewardScoreConfig, RewardTrainConfig
from unsee.world.config import (
    WorldJudgeConfig,
    WorldPathConfig,
    WorldShipConfig,
    WorldShipJudgeConfig,
    WorldTrainConfig,
)

# what the disk refuses, and what to do about it; finished work stays (runs resume)
DISK_ERRORS = {
    errno.ENOSPC: "free some space, then run the same command again to resume",
    errno.EDQUOT: "free some space, then run the same command again to resume",
    errno.EACCES: "pick a writable --out (or fix the permissions)",
    errno.EPERM: "pick a writable --out (or fix the permissions)",
    errno.EROFS: "pick an --out on a writable disk",
}


@dataclass(frozen=True)
class Command:
    config: type
    target: str  # "module:function", called with the config
    help: str


COMMANDS: dict[str, Command | dict[str, Command]] = {
    "demo": Command(
        DemoConfig, "unsee.demo.run:run_demo", "run the whole flow on the embedded model"
    ),
    "generate": Command(
        GenerateConfig, "unsee.generate.run:generate", "generate an image set from prompts"
    ),
    "censor": Command(
        CensorConfig,
        "unsee.censor.run:censor",
        "generate with reward guidance (or rejection sampling) away from flagged images",
    ),
    "judge": {
        # `unsee judge DIR` is short for `unsee judge images DIR` (see main)
        "images": Command(
            JudgeConfig,
            "unsee.evaluate.judge:judge_folder",
            "per-image attributes, concept strengths and summary rates of an image set",
        ),
        "calibrate": Command(
            JudgeCalibrateConfig,
            "unsee.evaluate.calibrate:calibrate",
            "the judges on renders of known strength: detection rate and strength error",
        ),
    },
    "label": Command(LabelConfig, "unsee.feedback.server:serve", "label images in the browser"),
    "invert": Command(
        InvertConfig,
        "unsee.invert.run:invert",
        "feedback -> a soft text token (Human Feedback Inversion)",
    ),
    "evaluate": Command(
        EvaluateConfig,
        "unsee.evaluate.run:evaluate",
        "generate prompt suites (the world's; nudity, i2p, coco) and report metrics with intervals",
    ),
    "attack": Command(
        AttackConfig,
        "unsee.attack.run:attack",
        "attack a model (prefix tokens, concept inversion, replay): how often the concept returns",
    ),
    "erase": Command(
        EraseConfig,
        "unsee.erase.run:erase",
        "remove concepts from the weights (SDD, ESD, distilled negative prompt)",
    ),
    "feedback": {
        "simulate": Command(
            FeedbackSimulateConfig,
            "unsee.feedback.simulate:simulate",
            "a judge-driven labeller in place of a person",
        ),
        "stats": Command(FeedbackStatsConfig, "unsee.feedback.stats:run_stats", "what is labelled"),
        "export": Command(
            FeedbackExportConfig, "unsee.feedback.stats:run_export", "labels as jsonl/csv/parquet"
        ),
        "import": Command(
            FeedbackImportConfig, "unsee.feedback.stats:run_import", "labels made elsewhere"
        ),
    },
    "reward": {
        "train": Command(
            RewardTrainConfig, "unsee.reward.train:train_reward", "train a reward on feedback"
        ),
        "score": Command(
            RewardScoreConfig, "unsee.reward.score:score_folder", "score an image set"
        ),
    },
    "world": {
        "path": Command(
            WorldPathConfig, "unsee.world.commands:world_path", "print minisd's folder"
        ),
        "train": Command(
            WorldTrainConfig, "unsee.world.train:train_world", "train minisd, mini CLIP, judge"
        ),
        "ship": Command(
            WorldShipConfig,
            "unsee.world.commands:world_ship",
            "copy a trained world into the package (fp16 weights)",
        ),
        "judge": Command(
            WorldJudgeConfig,
            "unsee.world.train:train_world_judge",
            "train one world judge (cnn or vit) against the shipped minisd",
        ),
        "ship-judge": Command(
            WorldShipJudgeConfig,
            "unsee.world.commands:world_ship_judge",
            "copy a judge trained by `unsee world judge` into the package",
        ),
    },
    "bench": {
        "attack": Command(
            BenchAttackConfig,
            "unsee.bench.attack:run_bench_attack",
            "seconds per prompt of the prefix attack: minisd on the CPU, SD 1.5 size on a GPU",
        ),
        "censor": Command(
            BenchCensorConfig,
            "unsee.bench.censor:run_bench_censor",
            "censored sampling of the watermark: rates, accuracy, time, rejection's cost",
        ),
        "erase": Command(
            BenchEraseConfig,
            "unsee.bench.erase:run_bench_erase",
            "HFI+SDD against text-only SDD on minisd: concept rates, preservation, time",
        ),
        "generate": Command(
            BenchGenerateConfig,
            "unsee.bench.generate:run_bench_generate",
            "time image generation with a tiny pipeline",
        ),
        "gpu": Command(
            BenchGpuConfig,
            "unsee.bench.gpu:run_bench_gpu",
            "speed and memory at Stable Diffusion 1.5 size on one GPU, each against its baseline",
        ),
        "label": Command(
            BenchLabelConfig,
            "unsee.bench.label:run_bench_label",
            "decision round trip and keyboard speed of the labelling page",
        ),
        "reward": Command(
            BenchRewardConfig,
            "unsee.bench.reward:run_bench_reward",
            "rewards from a few simulated labels: AUC and training time",
        ),
        "speed": Command(
            BenchSpeedConfig,
            "unsee.bench.speed:run_bench_speed",
            "SDD iterations per second and peak memory, batched against a plain loop",
        ),
        "table": Command(
            BenchTableConfig,
            "unsee.bench.table:run_bench_table",
            "the method table on minisd: every method on two concepts, evaluated over seeds",
        ),
        "world": Command(
            BenchWorldConfig,
            "unsee.bench.world:run_bench_world",
            "measure the world model with the judge (with --methods: the method table)",
        ),
    },
    "env": Command(EnvConfig, "unsee.env:run_env", "versions and devices, for bug reports"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default; required options say so instead."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if action.required:
            return help + " (required)"
        if action.default is argparse.SUPPRESS or not action.option_strings or "(default:" in help:
            return help  # (the help states its own default, e.g. one per model)
        default = action.default
        shown = repr(default) if default == "" else default
        return f"{help} (default: {shown})".replace("%", "%%")


class _Parser(argparse.ArgumentParser):
    """A bad option gets one line and exit 2, like every other refusal (the usage block
    stays in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="unsee",
        description="Teach text-to-image diffusion models to stop making what people flag.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"unsee {__version__}")
    _add_commands(parser, COMMANDS)
    return parser


def _add_commands(parser: argparse.ArgumentParser, commands: dict) -> None:
    sub = parser.add_subparsers(metavar="COMMAND", title="commands")
    for name, command in commands.items():
        if isinstance(command, dict):
            group = sub.add_parser(name, help=f"{name} " + " | ".join(command))
            group.set_defaults(_command=None, _parser=group)
            _add_commands(group, command)
            continue
        p = sub.add_parser(
            name, help=command.help, description=command.help, formatter_class=_HelpFormatter
        )
        add_dataclass_arguments(p, command.config)
        p.set_defaults(_command=command, _parser=p)


def _setup_logging() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("unsee: %(levelname)s: %(message)s"))
    log = logging.getLogger("unsee")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.INFO, "info")


def _quiet_libraries() -> None:
    """Loading and saving models is quick; only unsee's own progress bars are shown."""
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def expand_short_forms(argv: list[str]) -> list[str]:
    """`unsee judge DIR` is `unsee judge images DIR` (the command from before `judge`
    had subcommands)."""
    folder = argv[1] if argv[:1] == ["judge"] and len(argv) > 1 else None
    if folder is not None and folder not in COMMANDS["judge"] and not folder.startswith("-"):
        return ["judge", "images", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    _setup_logging()
    parser = build_parser()
    ns = parser.parse_args(expand_short_forms(list(sys.argv[1:] if argv is None else argv)))
    command = getattr(ns, "_command", None)
    if command is None:
        getattr(ns, "_parser", parser).print_help(sys.stderr)
        sys.exit(2)
    try:
        cfg = dataclass_from_namespace(command.config, ns)
        _quiet_libraries()
        module, function = command.target.split(":")
        getattr(importlib.import_module(module), function)(cfg)
    except UnseeError as e:
        if os.environ.get("UNSEE_DEBUG"):
            raise
        print(f"unsee: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno not in DISK_ERRORS or os.environ.get("UNSEE_DEBUG"):
            raise  # anything else is a bug and keeps its traceback
        where = f" {e.filename}" if e.filename else ""
        print(
            f"unsee: error: cannot write{where}: {e.strerror}; {DISK_ERRORS[e.errno]}",
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        print("unsee: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
