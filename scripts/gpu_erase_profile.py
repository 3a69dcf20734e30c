"""Where one SDD step of `unsee erase` spends its time on a GPU (a diagnostic for the
speed issue; `unsee bench gpu` gives the figures).

Builds Stable Diffusion 1.5 sized components with random weights and runs `unsee erase`
at --reuse 64 (the walks amortised away): first --steps steps at batch 4 and at batch 16
without the profiler, each with its steady rate after 25 steps (the training step alone:
if 4x the rows cost much less than 4x the time, the step waits on the host: kernel
launches and Python, which compilation or CUDA graphs would remove), then --profile-steps
steps at batch 4 under torch.profiler: the GPU's busy time beside the loop's wall time, and
the top operators by GPU and by CPU time (that loop includes one walk).

    python scripts/gpu_erase_profile.py --out runs/erase-profile
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from unsee.bench.gpu import steady_rate
from unsee.erase.config import EraseConfig
from unsee.erase.run import erase
from unsee.models.tiny import sd15_sized_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--profile-steps", type=int, default=30)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        with torch.device("cuda"):
            pipe = sd15_sized_pipeline(seed=0)
        pipe.to(torch.float16).save_pretrained(folder)
        del pipe
        runs = {}

        def run(batch: int, steps: int, name: str) -> dict:
            cfg = EraseConfig(
                model=str(folder), concept=["Vanmond"], out=Path(tmp) / name,
                iterations=steps, batch=batch, reuse=64, checkpoint_every=0,
            )  # fmt: skip
            erase(cfg)
            info = json.loads((cfg.out / "erase.json").read_text())
            return {"batch": batch, "steps": steps, "loop_seconds": info["seconds"],
                    "samples_per_s": steps * batch / info["seconds"],
                    # after the first 25 steps: no walk (one pool of 64 stops per
                    # trajectory lasts 64 steps), no warm-up: the training step alone
                    "samples_per_s_steady": steady_rate(info["timeline"], batch)}  # fmt: skip

        for batch in (4, 16):
            runs[f"batch{batch}"] = run(batch, args.steps, f"plain{batch}")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            runs["profiled"] = run(4, args.profile_steps, "profiled")
        events = prof.key_averages()
        runs["profiled"]["gpu_busy_seconds_whole_call"] = (
            sum(e.self_device_time_total for e in events) / 1e6
        )
        (args.out / "top.txt").write_text(
            events.table(sort_by="self_device_time_total", row_limit=20)
            + "\n"
            + events.table(sort_by="self_cpu_time_total", row_limit=20)
        )
        print(json.dumps(runs, indent=1))
        (args.out / "summary.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
