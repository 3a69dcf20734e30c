"""`unsee censor --retry N`: guided sampling, then fresh guided samples for what it missed.

Guidance lowers the share of flagged images but leaves a few the reward still flags (on
minisd's watermark: most of the marks left after guidance). This pass scores nothing new:
it reads each image's reward from the folder, samples every flagged image again with the
same guidance and a fresh seed, and keeps whichever sample the reward likes more, for at
most N rounds. An image still flagged after the last round keeps its best sample and is
counted in run.json ("retry": {"still_flagged": ...}); nothing is dropped.

The folder stays the one `unsee generate` made: a replaced image keeps its planned
"seed" (so the folder resumes and reruns as any other) and records the seed that drew
it as "sample_seed", with "attempt" (the round). Progress lives in retry.json: a killed
pass resumes at its round, and run.json's "seconds" add the retry rounds' sampling time.
"""

import csv
import dataclasses
import json
import shutil
from pathlib import Path

from PIL import Image

from unsee import imageset
from unsee.censor.config import CensorConfig, generate_config
from unsee.errors import UnseeError
from unsee.generate.run import generate
from unsee.guidance.hook import Censor

# round k draws image i from (planned seed + k * SEED_STRIDE) mod 2^32 (torch's CPU
# generator reads a seed mod 2^32); for k <= 10 that lies over 387 million seeds away from
# every planned seed of the run
SEED_STRIDE = 0x9E3779B1
SCORE_KEYS = ("reward", "reward_prob", "reward_members")
PROGRESS = "retry.json"


def retry_seed(seed: int, k: int) -> int:
    return (seed + k * SEED_STRIDE) % 2**32


def flagged(records: dict[int, dict], threshold: float) -> list[int]:
    """Indices of images whose members' mean probability of benign is <= threshold."""
    missing = [i for i, r in records.items() if "reward_prob" not in r]
    if missing:
        raise UnseeError(
            f"{len(missing)} images carry no reward score (made by an older unsee, or"
            " without a reward): make them again with `unsee censor`"
        )
    return sorted(i for i, r in records.items() if r["reward_prob"] <= threshold)


def retry_flagged(out: Path, cfg: CensorConfig, censor: Censor) -> dict:
    """Run the retry rounds over the finished guided folder `out`; return the summary that
    run.json also keeps under "retry"."""
    out = Path(out)
    progress = out / PROGRESS
    state = (
        json.loads(progress.read_text())
        if progress.exists()
        else {"rounds": 0, "samples": 0, "replaced": 0, "seconds": 0.0}
    )
    new_seconds = 0.0
    records = imageset.read_finished(out)
    while state["rounds"] < cfg.retry:
        todo = flagged(records, cfg.threshold)
        if not todo:
            break
        k = state["rounds"] + 1
        # 1. one guided sample per flagged image, from a seed no round has used
        cand = out / "retry" / f"round{k:02d}"
        shutil.rmtree(cand, ignore_errors=True)  # a round cut short starts over
        cand.mkdir(parents=True)
        plan = cand / "prompts.csv"
        with plan.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["prompt", "evaluation_seed", "evaluation_guidance"])
            for i in todo:
                seed = retry_seed(records[i]["seed"], k)
                writer.writerow([records[i]["prompt"], seed, records[i]["guidance"]])
        sub = dataclasses.replace(generate_config(cfg), prompt=None, prompts=plan, n=1, out=cand)
        generate(sub, censor=censor)
        seconds = imageset.read_run_file(cand)["seconds"]
        # 2. keep the better of the two samples under the image's own index and seed
        candidates = imageset.read_finished(cand)
        replaced = 0
        for j, i in enumerate(todo):
            new = candidates[j]
            if new["reward_prob"] <= records[i]["reward_prob"]:
                continue
            record = (
                records[i]
                | {key: new[key] for key in SCORE_KEYS}
                | {"sample_seed": new["seed"], "attempt": k}
            )
            with Image.open(cand / new["file_name"]) as im:
                imageset.save_png(im.copy(), out / record["file_name"], record)
            imageset.append_line(out / imageset.METADATA, record)
            records[i] = record
            replaced += 1
        state = {
            "rounds": k,
            "samples": state["samples"] + len(todo),
            "replaced": state["replaced"] + replaced,
            "seconds": round(state["seconds"] + seconds, 3),
        }
        new_seconds += seconds
        imageset.atomic_write_text(progress, json.dumps(state))
        shutil.rmtree(cand)
        print(f"retry round {k}: {len(todo)} flagged, {replaced} replaced by better samples")
    shutil.rmtree(out / "retry", ignore_errors=True)

    # 3. the folder's files: sorted metadata, the retry summary, the time it took
    imageset.rewrite_metadata(out, records)
    summary = {
        "max_rounds": cfg.retry,
        **state,
        "still_flagged": len(flagged(records, cfg.threshold)),
        "threshold": cfg.threshold,
    }
    run = imageset.read_run_file(out)
    run["seconds"] = round(run.get("seconds", 0.0) + new_seconds, 3)
    run["retry"] = summary
    imageset.write_run_file(out, run)
    return summary
