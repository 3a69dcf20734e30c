"""Config dataclasses shared by several commands, and the dataclass-to-argparse bridge.

Each command has one dataclass config; its field defaults and `help` metadata are the
single source for both the Python API and `--help`.
"""

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from unsee.errors import UnseeError


def arg(default: Any = dataclasses.MISSING, help: str = "", **extra: Any) -> Any:
    """A dataclass field carrying its command-line help text.

    extra: `positional=True` makes it a positional argument; `flag="--x"` renames it.
    """
    metadata = {"help": help, **extra}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(kw_only=True)
class ModelArgs:
    """Which diffusion model to use, and where to run it."""

    model: str = arg(
        "minisd",
        help="`minisd` (the embedded world model), a local diffusers folder, a hub id, or a"
        " single-file .safetensors/.ckpt checkpoint (Stable Diffusion 1.x/2.x, SDXL base)",
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = arg(
        "auto", help="auto: fp16 on a GPU, fp32 on the CPU"
    )


def check_out_folder(path: Path, flag: str = "--out") -> Path:
    """An output folder, refused before any work when it names an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnseeError(
            f"{flag} {path} is a file; give a folder (it is made if it does not exist)"
        )
    return path


def finite_float(text: str) -> float:
    """argparse type of every float option: a number, and neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _arg_type(tp: Any) -> Any:
    return finite_float if tp is float else tp


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per field of the dataclass `cls` (bools become --x/--no-x)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"help": f.metadata.get("help", "")}
        has_default = f.default is not dataclasses.MISSING
        if has_default:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        if get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
            kwargs["type"] = type(get_args(tp)[0])
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is list:
            kwargs["nargs"] = "+"
            kwargs["type"] = _arg_type(get_args(tp)[0])
        elif tp in (int, float, str, Path):
            kwargs["type"] = _arg_type(tp)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {tp!r}")
        if f.metadata.get("positional"):
            if not has_default and f.default_factory is dataclasses.MISSING:
                parser.add_argument(f.name, metavar=f.name.upper(), **kwargs)
            else:
                parser.add_argument(f.name, nargs="?", metavar=f.name.upper(), **kwargs)
            continue
        flag = option_flag(cls, f.name)
        if "default" not in kwargs:
            kwargs["required"] = True
        parser.add_argument(flag, dest=f.name, **kwargs)


def option_flag(cls: type, name: str) -> str:
    """The command-line flag of a config field: `--the-name`, unless arg(flag=...) renames it."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.metadata.get("flag", "--" + name.replace("_", "-"))


def dataclass_from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in vars(ns).items() if k in names})
