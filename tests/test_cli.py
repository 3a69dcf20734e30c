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
        flag = "--" + field.name.replace("_", "-")
        assert flag in blocks, flag
        assert "(default:" in blocks[flag] or "(required)" in blocks[flag], blocks[flag]


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
