"""`unsee censor --reject`: rejection sampling, the baseline guidance is measured against.

Rounds of plain generation: every image still owed is sampled with a fresh seed, scored
by the reward, and kept when the members' mean probability of benign exceeds the
threshold, until each requested image has passed or the budget (samples per requested
image) is spent. Candidates live in OUT/candidates (resumable like any image folder);
OUT/images holds the accepted ones under the indices `unsee generate` would use, and
run.json says how many samples it took.
"""

import dataclasses
import json
import shutil
from pathlib import Path

from PIL import Image

from unsee import __version__, imageset
from unsee.censor.config import CensorConfig, generate_config
from unsee.errors import UnseeError
from unsee.generate.prompts import read_prompts
from unsee.generate.run import generate
from unsee.guidance.hook import reward_scores
from unsee.imageset import load_images, read_image_set
from unsee.models.load import pick_device
from unsee.reward.model import load_reward


def reject_sample(cfg: CensorConfig) -> Path:
    reward = load_reward(cfg.reward, pick_device(cfg.device))
    if reward.backbone == "noise-aware":
        raise UnseeError("--reject scores finished images: use a clip or cnn reward")
    if cfg.prompts is not None:
        prompts = [row.prompt for row in read_prompts(cfg.prompts)]
    else:
        prompts = [cfg.prompt or ""]
    wanted = [(r, k) for r in range(len(prompts)) for k in range(cfg.n)]  # image index r*n+k
    rounds = int(cfg.budget)  # each round gives every owed image one sample
    out = Path(cfg.out)
    (out / imageset.IMAGES).mkdir(parents=True, exist_ok=True)
    accepted = imageset.read_finished(out)
    progress = out / "reject_progress.json"  # samples spent so far, for resuming
    state = json.loads(progress.read_text()) if progress.exists() else {"samples": 0, "rounds": 0}
    sampled, round_ = state["samples"], state["rounds"]
    while True:
        owed = [(r, k) for r, k in wanted if r * cfg.n + k not in accepted]
        if not owed or round_ >= rounds:
            break
        # 1. one plain sample per owed image, seeds never used before in this run
        cand = out / "candidates" / f"round{round_:03d}"
        text = "\n".join(prompts[r] for r, _ in owed) + "\n"
        if (cand / "prompts.txt").exists() and (cand / "prompts.txt").read_text() != text:
            shutil.rmtree(cand)  # a round cut short after some images were accepted
        cand.mkdir(parents=True, exist_ok=True)
        (cand / "prompts.txt").write_text(text)
        sub = dataclasses.replace(
            generate_config(cfg),
            prompt=None,
            prompts=cand / "prompts.txt",
            n=1,
            seed=cfg.seed + sampled,
            out=cand,
        )
        generate(sub)
        # 2. score, keep the passing ones under their final index
        records = read_image_set(cand)
        scores = reward_scores(reward.score_images(load_images(cand, records, None)))
        for (r, k), record, score in zip(owed, records, scores, strict=True):
            if score["reward_prob"] <= cfg.threshold:
                continue
            index = r * cfg.n + k
            final = record | score | imageset.image_record(index, attempt=round_)
            with Image.open(cand / record["file_name"]) as im:
                imageset.save_png(im.copy(), out / final["file_name"], final)
            imageset.append_line(out / imageset.METADATA, final)
            accepted[index] = final
        sampled += len(owed)
        round_ += 1
        imageset.atomic_write_text(progress, json.dumps({"samples": sampled, "rounds": round_}))
        shutil.rmtree(cand)
    # 3. the run file: samples spent, what is still missing
    accepted = imageset.read_finished(out)
    imageset.rewrite_metadata(out, accepted)
    missing = len(wanted) - len(accepted)
    run = {
        "command": "censor --reject",
        "unsee_version": __version__,
        "settings": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "images": len(wanted),
        "samples": sampled,
        "samples_per_image": round(sampled / max(len(wanted), 1), 4),
        "complete": missing == 0,
    }
    imageset.write_run_file(out, run)
    if missing:
        raise UnseeError(
            f"{missing} of {len(wanted)} images did not pass within {rounds} samples each;"
            f" the {len(accepted)} that passed are in {out} (raise --budget)"
        )
    shutil.rmtree(out / "candidates", ignore_errors=True)
    progress.unlink(missing_ok=True)
    print(f"{len(wanted)} images passed in {out} after {sampled} samples")
    return out
