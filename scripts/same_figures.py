"""Do two runs of the same unsee command give the same figures? Compares every
results.json (and report.json) under two output folders, key by key, and prints each
figure that differs; timings, memory and paths are left out (they differ from run to run
and from folder to folder). Exit status 1 when a figure differs.

    # the same command at an older commit (given this checkout's judge files) and here
    git worktree add /tmp/ref aefa11a
    cp -r src/unsee/world/judge src/unsee/world/judge_vit /tmp/ref/src/unsee/world/
    (cd /tmp/ref && PYTHONPATH=src python -m unsee bench censor --out /tmp/censor-ref)
    unsee bench censor --out /tmp/censor-here
    python scripts/same_figures.py /tmp/censor-ref /tmp/censor-here
"""

import argparse
import json
import sys
from pathlib import Path

# a key holding one of these is a timing, a memory figure, a path or a version; a key
# that is one of the exact names is a path or a machine fact
SKIP_PARTS = ("second", "overhead", "rss", "mib", "path", "version", "thread", "elapsed")
SKIP_KEYS = ("its", "out", "dir", "model", "reward", "device", "command", "time", "wall", "date")
RESULTS = ("results.json", "report.json")


def skipped(key: str) -> bool:
    key = key.lower()
    return key in SKIP_KEYS or any(part in key for part in SKIP_PARTS)


def differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if skipped(str(key)):
                continue
            if key not in a or key not in b:
                out.append(f"{where}/{key}: only in {'the second' if key in b else 'the first'}")
            else:
                out += differences(a[key], b[key], f"{where}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} against {len(b)} entries"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}[{i}]")
        ]
    return [] if a == b else [f"{where}: {a!r} against {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    files = sorted(p.relative_to(args.first) for name in RESULTS for p in args.first.rglob(name))
    if not files:
        print(f"no results.json under {args.first}")
        return 1
    figures, found = 0, []
    for rel in files:
        other = args.second / rel
        if not other.is_file():
            found.append(f"{rel}: missing in {args.second}")
            continue
        a, b = (json.loads(p.read_text()) for p in (args.first / rel, other))
        figures += _count(a)
        found += [f"{rel}{d}" for d in differences(a, b)]
    print("\n".join(found))
    print(f"{len(files)} files, {figures} figures compared: "
          f"{'identical' if not found else f'{len(found)} differ'}")  # fmt: skip
    return 1 if found else 0


def _count(value) -> int:
    if isinstance(value, dict):
        return sum(_count(v) for k, v in value.items() if not skipped(str(k)))
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 1


if __name__ == "__main__":
    sys.exit(main())
