"""Pilots for minisd's prefix-attack defaults: `unsee attack --method prefix` on the original
minisd (neutral suite, Vanmond, the world judge) with one setting per run; each run's ASR and
seconds go into docs/bench-attack/pilots.json, keyed by the setting, with its exact command.

    .venv/bin/python scripts/attack_pilots.py NAME "--iterations 40 --check-every 1" [--n 32]

NAME labels the setting; the options are added to the base command below. A pilot already in
the file under NAME is run again and replaced. Timings are wall time of the command on this
2-core CPU, and cpu_seconds the command's user + system CPU time: when other work shares
the CPU the wall time grows, the CPU time much less (on an idle machine wall is about
cpu_seconds / 2 or a little more).
"""

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PILOTS = ROOT / "docs" / "bench-attack" / "pilots.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("options", help="options added to the base command, one string")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    out = ROOT / "runs" / "pilots" / args.name
    cmd = ["unsee", "attack", "--device", "cpu", "--suite", "neutral", "--n", str(args.n),
           "--method", "prefix", *shlex.split(args.options),
           "--out", f"runs/pilots/{args.name}"]  # fmt: skip
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    exe = str(Path(sys.executable).with_name("unsee"))
    subprocess.run([exe, *cmd[1:]], check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    res = json.loads((out / "results.json").read_text())
    pilots = json.loads(PILOTS.read_text()) if PILOTS.is_file() else {}
    pilots[args.name] = {
        "command": shlex.join(cmd),
        "asr": res["asr"],
        "asr_before": res["asr_before"],
        "successes": res["successes_before"] + res["successes_attack"],
        "n": res["n"],
        "seconds": round(wall, 1),
        "attack_seconds": res["seconds"],
        "cpu_seconds": round(cpu, 1),
        "settings": {k: res["settings"][k] for k in (
            "iterations", "check_every", "attack_batch", "prefix_tokens", "vocabulary", "lr",
            "weight_decay")},
        **({"note": args.note} if args.note else {}),
    }  # fmt: skip
    PILOTS.parent.mkdir(parents=True, exist_ok=True)
    PILOTS.write_text(json.dumps(pilots, indent=2) + "\n")
    print(json.dumps(pilots[args.name], indent=2))


if __name__ == "__main__":
    main()
