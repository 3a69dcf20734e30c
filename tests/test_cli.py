import dataclasses
import subprocess
import sys

import pytest

from unsee.cli import COMMANDS, build_parser, main


def run_unsee(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unsee", *args], capture_output=True, text=True, **kwargs
    )


def test_top_level_help_lists_every_command():
    out = run_unsee("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def _leaf_commands(commands, prefix=()):
    for name, command in commands.items():
        if isinstance(command, dict):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


LEAVES = list(_leaf_commands(COMMANDS))


@pytest.mark.parametrize("path,command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_shows_its_default(path, command, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([*path, "--help"])
    assert exit.value.code == 0
    # one help block per option: its first line starts with "  -"
    blocks: dict[str, str] = {}
    for line in capsys.readouterr().out.split("options:")[1].splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif line.strip():
            blocks[current] += " " + line.strip()
    for field in dataclasses.fields(command.config):
        if field.metadata.get("positional"):
            continue
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
        assert flag in blocks, flag
        assert "(default:" in blocks[flag] or "(required)" in blocks[flag], blocks[flag]


def test_judge_dir_is_short_for_judge_images():
    from unsee.cli import expand_short_forms

    assert expand_short_forms(["judge", "runs/x"]) == ["judge", "images", "runs/x"]
    assert expand_short_forms(["judge", "runs/x", "--judge", "vit"])[:3] == [
        "judge", "images", "runs/x",
    ]  # fmt: skip
    for argv in (["judge", "calibrate", "--out", "o"], ["judge", "--help"], ["judge"]):
        assert expand_short_forms(argv) == argv
    ns = build_parser().parse_args(expand_short_forms(["judge", "d", "--judge", "vit"]))
    assert ns._command is COMMANDS["judge"]["images"] and ns.judge == "vit"


def test_the_method_table_is_a_command_and_bench_world_methods_still_runs_it():
    from unsee.bench.config import BenchTableConfig, BenchWorldConfig

    ns = build_parser().parse_args(["bench", "table", "--seeds", "2", "--n", "8", "--out", "t"])
    assert ns._command is COMMANDS["bench"]["table"] and ns._command.config is BenchTableConfig
    assert (ns.methods, ns.seeds, ns.table_n) == (["all"], 2, 8)
    # the command line the table had before it was a command of its own
    old = ["bench", "world", "--methods", "all", "--seeds", "3", "--table-n", "64", "--out", "t"]
    ns = build_parser().parse_args(old)
    assert ns._command.config is BenchWorldConfig and issubclass(BenchWorldConfig, BenchTableConfig)
    assert (ns.methods, ns.seeds, ns.table_n) == (["all"], 3, 64)


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    out = run_unsee("generate", "--model", str(tmp_path / "nope"), "--prompt", "x", "--out", "o")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("unsee: error: model")
    assert "Traceback" not in out.stderr


def test_conflicting_prompt_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--prompt", "a", "--prompts", "p.txt", "--out", str(tmp_path)])
    assert exit.value.code == 2
    assert "not both" in capsys.readouterr().err


def test_env_reports_versions_and_devices(capsys):
    main(["env"])
    text = capsys.readouterr().out
    import torch

    assert torch.__version__ in text
    for key in ("diffusers", "transformers", "accelerate", "peft", "devices", "minisd"):
        assert key in text


def _float_flags() -> list[tuple[tuple[str, ...], str]]:
    import typing

    from unsee.config import _unwrap_optional

    found = []
    for path, command in LEAVES:
        hints = typing.get_type_hints(command.config)
        for field in dataclasses.fields(command.config):
            tp, _ = _unwrap_optional(hints[field.name])
            if tp is float or tp == list[float]:
                flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
                found.append((path, flag))
    return found


FLOAT_FLAGS = _float_flags()


def test_float_options_are_found():
    assert (("generate",), "--guidance") in FLOAT_FLAGS
    assert (("reward", "train"), "--lr") in FLOAT_FLAGS
    assert len(FLOAT_FLAGS) > 20


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_every_float_option_refuses_nan_and_infinity(value, capsys):
    for path, flag in FLOAT_FLAGS:
        with pytest.raises(SystemExit) as exit:
            build_parser().parse_args([*path, f"{flag}={value}"])
        assert exit.value.code == 2, (path, flag)
        err = capsys.readouterr().err
        assert f"argument {flag}: {value!r} is not a finite number" in err, (path, flag, err)


def test_a_nan_guidance_is_refused_before_any_work(tmp_path):
    out = run_unsee("generate", "--prompt", "x", "--guidance", "nan", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "--guidance: 'nan' is not a finite number" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--prompt", "x"],
        ["reward", "train", "DIR"],
        ["demo"],
        ["evaluate"],
        ["erase", "--concept", "x"],
        ["feedback", "export", "DIR"],
        ["bench", "generate"],
        ["world", "train"],
        ["world", "judge"],
        ["judge", "calibrate"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, args):
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    with pytest.raises(SystemExit) as exit:
        main([*args, "--out", str(taken)])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err == f"unsee: error: --out {taken} is a file; give a folder" + (
        " (it is made if it does not exist)\n"
    )
    assert taken.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [taken]


INVERT = ["invert", "--feedback", "f", "--reward", "r", "--init", "cat", "--out", "o.safetensors"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["erase", "--concept", "", "--out", "o"], "--concept is empty"),
        (["erase", "--concept", "a", " ", "--out", "o"], "--concept is empty"),
        (["demo", "--labels", "0"], "--labels must be at least 2"),
        (["demo", "--artist-labels", "500"], "at most --artist-pool (100)"),
        (["demo", "--eval-n", "0"], "--eval-n must be at least 1"),
        (["reward", "train", "d", "--out", "o", "--cv-folds", "1"], "--cv-folds must be 0"),
        *[
            ([*INVERT, "--template", template], message)
            for template, message in (
                ("{foo} {token}", "names {foo}: only {token} and {prompt}"),
                ("{token", "--template '{token'"),
                ("{0} {token}", "names {0}"),
            )
        ],
    ],
)
def test_bad_settings_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("unsee: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())  # nothing made


@pytest.mark.parametrize(
    "code,advice", [(28, "free some space"), (30, "writable disk"), (13, "writable --out")]
)
def test_a_full_or_read_only_disk_is_one_line(tiny_sd, tmp_path, capsys, monkeypatch, code, advice):
    """ENOSPC / EROFS / EACCES while writing images: one line, exit 2, nothing half-written."""
    import errno
    import os

    from unsee import imageset

    assert (errno.ENOSPC, errno.EROFS, errno.EACCES) == (28, 30, 13)
    real = imageset.atomic_file

    def failing(path, mode="w"):
        if path.suffix == ".png":
            raise OSError(code, os.strerror(code), str(path))
        return real(path, mode)

    monkeypatch.setattr(imageset, "atomic_file", failing)
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--model", str(tiny_sd), "--prompt", "x", "--steps", "2", "--device",
              "cpu", "--out", str(out)])  # fmt: skip
    assert exit.value.code == 2
    err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # after the progress bar
    assert "unsee: error: cannot write " + f"{out / 'images' / '000000.png'}: " in err
    assert err.count("\n") == 1 and advice in err and "Traceback" not in err, err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.suffix == ".png"]


def test_a_missing_reference_dir_is_refused_up_front(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", "--out", str(tmp_path / "e"), "--reference-dir", str(tmp_path / "no")])
    assert exit.value.code == 2
    assert f"--reference-dir {tmp_path / 'no'} is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--prompt", "x", "--out", "o", "--guidance", "nan"],
        ["generate", "--prompt", "x", "--out", "o", "--bogus"],
        ["erase", "--concept", "x", "--out", "o", "--method", "magic"],
        ["bench", "nope"],
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": error: " in err and "--help" in err, err
