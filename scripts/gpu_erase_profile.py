"""Where one SDD step of `unsee erase` spends its time on a GPU (a diagnostic for the
speed issue; `unsee bench gpu` gives the figures).

Builds Stable Diffusion 1.5 sized components with random weights, runs `unsee erase` for
--steps steps at --reuse 64 (the walks amortised away) under torch.profiler, and prints
the loop's wall time beside the GPU's busy time (the sum of kernel times) and the top
operators by GPU and by CPU time. A GPU busy far less than the wall means the step waits
on the host (kernel launches, Python), which compilation or CUDA graphs would remove.

    python scripts/gpu_erase_profile.py --out runs/erase-profile
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from unsee.erase.config import EraseConfig
from unsee.erase.run import erase
from unsee.models.tiny import sd15_sized_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        with torch.device("cuda"):
            pipe = sd15_sized_pipeline(seed=0)
        pipe.to(torch.float16).save_pretrained(folder)
        del pipe
        runs = {}
        for batch in (args.batch, 4 * args.batch):
            cfg = EraseConfig(
                model=str(folder), concept=["Vanmond"], out=Path(tmp) / f"e{batch}",
                iterations=args.steps, batch=batch, reuse=64, checkpoint_every=0,
            )  # fmt: skip
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                erase(cfg)
            info = json.loads((cfg.out / "erase.json").read_text())
            events = prof.key_averages()
            gpu_busy = sum(e.self_device_time_total for e in events) / 1e6
            runs[batch] = {
                "loop_seconds": info["seconds"],
                "gpu_busy_seconds_whole_run": gpu_busy,
                "samples_per_s": args.steps * batch / info["seconds"],
            }
            (args.out / f"top-batch{batch}.txt").write_text(
                events.table(sort_by="self_device_time_total", row_limit=20)
                + "\n"
                + events.table(sort_by="self_cpu_time_total", row_limit=20)
            )
        print(json.dumps(runs, indent=1))
        (args.out / "summary.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
