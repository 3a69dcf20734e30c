"""Keep a method table's finished rows in the repository and put them back, so that a table
taking more than one sitting resumes on a machine whose work folder did not outlive the last.

    python scripts/table_rows.py save runs/table-v5 docs/bench-world-table/rows
    python scripts/table_rows.py restore docs/bench-world-table/rows runs/table-v5
    unsee bench table --seeds 3 --n 64 --out runs/table-v5      # goes on from there
    python scripts/table_rows.py status runs/table-v5           # the rows made so far
    python scripts/table_rows.py readme runs/table-v5           # the README's tables

save copies settings.json, each finished row's row.json (its metrics, intervals and
seconds), its attacks' records (attack_*/: the settings, the prompts judged before and
after, the results, the inversion token) and each erasure's erase.json (results.json
names seed 0's settings from them; a finished row's only, since a model folder holding
erase.json alone would read as made): text and a few KB of token, no image, no weight.

status prints the finished rows (a markdown table: seed, concept, row, the figures issue
23 added and the main ones, the row's seconds) and the time so far: summed over rows, and
the wall time (the union of the rows' spans).

readme prints the finished table's results.json as the README shows it: per concept, the
columns a reader compares methods by (mean ± std over seeds; the attack columns over the
attacked seeds, a single figure where that is one seed), leaving out those that do not
apply to the concept. results.md has all.

restore copies them back. Where a seed and concept has rows still to come, those rows
compare their images with the original row's, which were not kept: restore leaves that
original row's row.json out, so the table evaluates it again first (the same seeds give
the same images; its attacks resume from their records) and its time is its new one.
"""

import argparse
import json
import shutil
from pathlib import Path

from unsee.bench.table import ATTACK_METRICS, _fmt, wall_seconds

SHOWN = (
    "concept_rate_target", "concept_rate_leak", "concept_rate_paraphrase", "attack_prefix_asr",
    "attack_inversion_rate", "prompt_accuracy", "other_artists_accuracy", "judges_gap",
)  # fmt: skip

README_COLUMNS = (
    "concept_rate_target", "concept_rate_leak", "concept_rate_paraphrase", "attack_prefix_asr",
    "attack_inversion_rate", "watermark_rate", "prompt_accuracy", "other_artists_accuracy",
    "world_fid", "clip_score",
)  # fmt: skip

ATTACK_FILES = (
    "attack.json", "before.jsonl", "prompts.jsonl", "results.json",
    "learned_embeds.safetensors", "learned_embeds.json",
)  # fmt: skip


def kept_files(table: Path) -> list[Path]:
    """The files `save` keeps, relative to the table folder."""
    files = [Path("settings.json")] if (table / "settings.json").is_file() else []
    for row in sorted(table.glob("eval/seed*/*/*/row.json")):
        folder = row.parent
        files.append(row.relative_to(table))
        for attack in sorted(folder.glob("attack_*")):
            kept = [attack / name for name in ATTACK_FILES if (attack / name).is_file()]
            files += [path.relative_to(table) for path in kept]
    for record in sorted(table.glob("train/seed*/models/*/erase.json")):
        # only a finished row's: a folder holding erase.json alone reads as a model made
        seed, name = record.parts[-4], record.parts[-2]
        row, concept = name.rsplit("_", 1)
        if (table / "eval" / seed / concept / row / "row.json").is_file():
            files.append(record.relative_to(table))
    return files


def copy(files: list[Path], source: Path, dest: Path) -> None:
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dest / rel)


def save(table: Path, dest: Path) -> None:
    files = kept_files(table)
    if dest.exists():
        shutil.rmtree(dest)
    copy(files, table, dest)
    rows = sum(p.name == "row.json" for p in files)
    print(f"kept {rows} finished rows ({len(files)} files) in {dest}")


def unfinished_blocks(rows: Path) -> set[Path]:
    """The eval/seedK/CONCEPT folders with rows still to come (by settings.json's methods)."""
    methods = json.loads((rows / "settings.json").read_text())["methods"]
    blocks = {p.parent.parent for p in rows.glob("eval/seed*/*/*/row.json")}
    return {b for b in blocks if any(not (b / m / "row.json").is_file() for m in methods)}


def restore(rows: Path, table: Path) -> None:
    files = kept_files(rows)
    redo = {b.relative_to(rows) / "original" / "row.json" for b in unfinished_blocks(rows)}
    copy([f for f in files if f not in redo], rows, table)
    done = sum(p.name == "row.json" for p in files) - len(redo)
    print(f"restored {done} finished rows into {table}")
    for path in sorted(redo):
        print(f"  {path.parent}: evaluated again (rows of its seed and concept are to come)")


def status(table: Path) -> None:
    order = json.loads((table / "settings.json").read_text())["methods"]
    lines = ["| seed | concept | row | " + " | ".join(SHOWN) + " | seconds |"]
    lines.append("|---" * (len(SHOWN) + 4) + "|")
    spans, summed = [], 0.0
    for seed in sorted(table.glob("eval/seed*"), key=lambda p: int(p.name[4:])):
        for concept in sorted(seed.iterdir()):
            for name in order:
                path = concept / name / "row.json"
                if not path.is_file():
                    continue
                row = json.loads(path.read_text())
                seconds = sum(row["seconds"].values())
                spans.append(row.get("span") or seconds)
                summed += seconds
                m = row["metrics"]
                cells = ["–" if m.get(k) is None else f"{m[k]:.3f}" for k in SHOWN]
                lines.append(
                    f"| {seed.name[4:]} | {concept.name} | {name} | " + " | ".join(cells)
                    + f" | {seconds:.0f} |"
                )  # fmt: skip
    print("\n".join(lines))
    print(f"\n{len(spans)} rows: {summed / 60:.1f} minutes summed over rows,"
          f" {wall_seconds(spans) / 60:.1f} minutes of wall time")  # fmt: skip


def _cell(cell: dict, column: str, one_seed: bool) -> str:
    digits = 2 if column == "world_fid" else 3
    return f"{cell['mean']:.{digits}f}" if one_seed else _fmt(cell, digits)  # one seed: no spread


def readme(table: Path) -> None:
    if not (table / "results.json").is_file():
        raise SystemExit(
            f"{table} has no results.json: the table is not finished (status shows its rows)"
        )
    results = json.loads((table / "results.json").read_text())
    settings = results["settings"]
    attacked = min(settings.get("attack_seeds") or 0, settings["seeds"])
    one_seed = set(
        README_COLUMNS if settings["seeds"] == 1 else ATTACK_METRICS if attacked == 1 else ()
    )
    for concept, rows in results["tables"].items():
        shown = [c for c in README_COLUMNS if any(m.get(c) for m in rows.values())]
        print(f"| {concept}: method | " + " | ".join(shown) + " |")
        print("|---" * (len(shown) + 1) + "|")
        for name, metrics in rows.items():
            cells = [
                "–" if metrics.get(c) is None else _cell(metrics[c], c, c in one_seed)
                for c in shown
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore", "status", "readme"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path, nargs="?")
    args = parser.parse_args()
    if args.action in ("status", "readme"):
        (status if args.action == "status" else readme)(args.source)
    elif args.dest is None:
        parser.error(f"{args.action} needs a destination folder")
    else:
        (save if args.action == "save" else restore)(args.source, args.dest)


if __name__ == "__main__":
    main()
