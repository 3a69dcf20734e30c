"""The one direction of flow: every import of src/unsee goes down the layers below.

LAYERS is the order, bottom first, written once here (README.md's "Code layout" draws
it). A module belongs to the most specific entry that names it or a package above it; it
may import its own entry's modules and anything below, never an entry above. Every
import counts: at the top of a module, inside a function, under `if TYPE_CHECKING`.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = (
    # the foundation: the version, errors, settings, where the shipped weights lie, the
    # image-set format, images as tensors
    "unsee",
    "unsee.errors",
    "unsee.config",
    "unsee.world.paths",
    "unsee.imageset",
    "unsee.images",
    # libraries: what the commands are made of; none imports a command
    "unsee.sampling",
    "unsee.models",
    "unsee.world",
    "unsee.feedback.store",
    "unsee.reward",
    "unsee.guidance",
    "unsee.report",
    # commands, each over the libraries and the commands below it
    "unsee.world.train",
    "unsee.world.commands",
    "unsee.reward.train",
    "unsee.reward.score",
    "unsee.generate",
    "unsee.censor",
    "unsee.evaluate",
    "unsee.feedback",
    "unsee.invert",
    "unsee.erase",
    "unsee.attack",
    "unsee.env",
    "unsee.demo",
    # outside the product: the benchmarks, which only the command line lists
    "unsee.bench",
    "unsee.cli",
    "unsee.__main__",
)

# a function-local `from unsee` import is allowed only in a module `unsee --help` loads,
# where importing at the top would load torch; it says so on its line
HELP_ONLY = "# keeps `unsee --help` from loading torch"


def layer_of(module: str) -> int:
    """The index in LAYERS of the most specific entry holding `module`."""
    if module == "unsee":
        return 0
    matches = [e for e in LAYERS[1:] if module == e or module.startswith(e + ".")]
    if not matches:
        raise KeyError(f"{module} is in no layer: add it to LAYERS")
    return LAYERS.index(max(matches, key=len))


def modules(src: Path) -> dict[str, Path]:
    """Every module of the unsee package under `src`, by dotted name."""
    found = {}
    for path in sorted((src / "unsee").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(src: Path) -> list[tuple[str, str, int, bool, str]]:
    """(module, imported module, line, inside a function, the line's text) for every import
    of an unsee module, wherever it stands."""
    names = modules(src)
    found = []
    for module, path in names.items():
        text = path.read_text()
        lines = text.splitlines()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]

        def visit(node: ast.AST, local: bool, module=module, package=package, lines=lines):
            for child in ast.iter_child_nodes(node):
                inside = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                targets = []
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join([*up, base] if base else up)
                    # `from unsee.world import render` imports the module unsee.world.render
                    targets = [
                        f"{base}.{a.name}" if f"{base}.{a.name}" in names else base
                        for a in child.names
                    ]
                for target in dict.fromkeys(targets):
                    if target == "unsee" or target.startswith("unsee."):
                        line = lines[child.lineno - 1]
                        found.append((module, target, child.lineno, inside, line))
                visit(child, inside)

        visit(ast.parse(text), False)
    return found


def back_up(src: Path) -> list[str]:
    """The imports that run back up LAYERS, as `module:line imports target`."""
    return [
        f"{module}:{line} imports {target} ({LAYERS[layer_of(module)]} is below"
        f" {LAYERS[layer_of(target)]})"
        for module, target, line, _, _ in imports(src)
        if layer_of(target) > layer_of(module)
    ]


def test_every_module_has_a_layer():
    for module in modules(SRC):
        layer_of(module)  # raises for a module no entry holds


def test_no_import_runs_back_up_the_layers():
    assert back_up(SRC) == []


def test_the_check_fails_on_an_upward_import(tmp_path):
    """A fabricated library that imports a benchmark (inside a function, as the old code
    did to hide its cycles) and a command; the downward import beside them passes."""
    package = tmp_path / "unsee" / "sampling"
    package.mkdir(parents=True)
    (tmp_path / "unsee" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "fake.py").write_text(
        "from unsee.errors import UnseeError\n"
        "from unsee.generate import run\n"
        "\n\n"
        "def f():\n"
        "    from unsee.bench.world import run_bench_world\n"
        "\n"
        "    return run_bench_world, run, UnseeError\n"
    )
    found = back_up(tmp_path)
    assert len(found) == 2, found
    assert found[0].startswith("unsee.sampling.fake:2 imports unsee.generate ")
    assert found[1].startswith("unsee.sampling.fake:6 imports unsee.bench.world")
    assert "(unsee.sampling is below unsee.bench)" in found[1]


def test_only_the_command_line_imports_the_benchmarks():
    outside = {
        module
        for module, target, *_ in imports(SRC)
        if target.startswith("unsee.bench") and not module.startswith("unsee.bench")
    }
    assert outside == {"unsee.cli"}  # it lists the `unsee bench` commands


def test_no_module_imports_itself_through_others():
    graph: dict[str, set[str]] = {}
    for module, target, *_ in imports(SRC):
        if target != module:
            graph.setdefault(module, set()).add(target)
    cycles = []

    def walk(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                walk(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            walk(module, [module])
    assert cycles == []


def test_function_local_imports_only_keep_help_light():
    local = [
        f"{module}:{line}: {text.strip()}"
        for module, _, line, inside, text in imports(SRC)
        if inside and HELP_ONLY not in text
    ]
    assert local == []


def test_help_does_not_load_torch():
    """`unsee --help` stays quick: it loads the settings of every command, and neither
    torch nor what needs it (nor numpy)."""
    heavy = ("torch", "diffusers", "transformers", "numpy")
    code = (
        "import sys\n"
        "from unsee.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SRC
    )
    assert out.stdout.strip() == "[]"


def test_the_readme_draws_the_same_order():
    """README.md's "Code layout" lists LAYERS top first, one path a line."""
    block = (SRC.parent / "README.md").read_text().split("### Code layout", 1)[1]
    drawn = []
    for line in block.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            path = line.split()[0]  # e.g. bench/, world/paths.py, __init__.py
            module = path.removesuffix("/").removesuffix(".py").replace("/", ".")
            drawn.append("unsee" if module == "__init__" else f"unsee.{module}")
        elif drawn and line.strip() and not line.startswith(" "):
            break
    assert drawn == list(reversed(LAYERS))


@pytest.mark.parametrize("entry", LAYERS[1:])
def test_every_layer_holds_a_module(entry):
    assert any(m == entry or m.startswith(entry + ".") for m in modules(SRC)), entry
