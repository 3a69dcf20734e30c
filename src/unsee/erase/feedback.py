"""`unsee erase --feedback DIR`: from a person's labels to an erased model in one command.

What the feedback knows, and where each piece goes:
  flagged prompts  the prompts of the images labelled bad (the concept shows there, the
                   leak included): the anchors the edit changes
  benign prompts   the prompts of the images labelled good, and never flagged: kept
                   (--preserve), each step pulls their estimates to the original's
  the folder's     (--scope scored) the images nobody labelled, scored by the
  other images     reward: a confident bad one adds its prompt to the flagged, a confident
                   good one to the benign (FLAG_AT, KEEP_BELOW); --scope kept: only the
                   benign side grows
  the reward       trained on the labels (or --reward): scores images, and makes the token
  the token        inverted from the flagged images, weighted by the reward (HFI): what the
                   concept looks like, the direction the edit takes away
  --concept TEXT   words the user knows name it (optional): removed from the flagged
                   prompts that name them (--strip-concept) and erased as the token is;
                   a flagged prompt that names none of them is where the concept leaks
                   (--leak-repeat: drawn that many times as often)
The objective is the distilled negative prompt (neg.py) on the flagged prompts by default,
with a stronger negative direction and the benign prompts held harder than a plain erase
(FEEDBACK_WEIGHTS: eta 1.5, preserve weight 4, each unless given);
--method sdd, esd-x or uce run on the same pieces instead (sdd, esd-x: the token and words
with the benign prompts kept; uce: their keys and values edited, the benign prompts kept).
The pilots behind the default: docs/erase-feedback.

Everything made on the way lives in OUT/feedback/ (reward/, token.safetensors and its
.json, anchors.txt, keep.txt, plan.json); a second run finds each piece made and goes on,
and the erase itself resumes from its checkpoint. `feedback_plan` makes the pieces and
returns the settings `unsee erase` then runs with (erase/run.py).
"""

import dataclasses
import json
from pathlib import Path

from unsee.erase.config import FEEDBACK_WEIGHTS, EraseConfig
from unsee.erase.neg import without_concept
from unsee.errors import UnseeError
from unsee.imageset import atomic_write_text, read_image_set
from unsee.invert.config import InvertConfig
from unsee.invert.run import invert
from unsee.reward.config import RewardTrainConfig
from unsee.reward.data import load_feedback
from unsee.reward.score import p_bad_by_file
from unsee.reward.train import train_reward

WORK = "feedback"


# --scope scored: an unlabelled image the reward scores at p_bad >= FLAG_AT anchors the
# edit; one below KEEP_BELOW is kept. Between them the reward is unsure, and a styled image
# kept would hold the concept in place, so those anchor nothing.
FLAG_AT, KEEP_BELOW = 0.5, 0.2


def feedback_prompts(
    folder: Path, p_bad: dict[str, float] | None = None, flag_scored: bool = True
) -> tuple[list[str], list[str]]:
    """(flagged, benign): the prompts of the images labelled bad, and of those labelled
    good whose prompt was never flagged, each once in the folder's order. With `p_bad` (the
    reward's P(bad) by file name), the unlabelled images join by their score (FLAG_AT,
    KEEP_BELOW); a label wins over a score. flag_scored False: a scored image only adds to
    the kept prompts (one scored bad still keeps its prompt out of them). Refuses feedback
    that cannot say what to remove (no image flagged) or what to keep (one class only)."""
    feedback = load_feedback(folder, "binary")  # refuses one class, or fewer than 2 of one
    label = dict(zip(feedback.file_names, feedback.y, strict=True))
    scores = p_bad or {}
    flagged, benign, shows = [], [], set()  # shows: prompts whose images showed it
    for record in read_image_set(folder):
        name, text = record["file_name"], record.get("prompt", "")
        if name in label:
            (flagged if label[name] == 0 else benign).append(text)
        elif name in scores and scores[name] >= FLAG_AT:
            shows.add(text)
            if flag_scored:
                flagged.append(text)
        elif name in scores and scores[name] < KEEP_BELOW:
            benign.append(text)
    flagged = list(dict.fromkeys(flagged))
    shows |= set(flagged)
    benign = [p for p in dict.fromkeys(benign) if p not in shows]
    if not any(p.strip() for p in flagged):
        raise UnseeError(f"{folder}: the flagged images have no prompts to anchor the edit")
    return flagged, benign


def leak_weighted(flagged: list[str], cfg: EraseConfig) -> list[str]:
    """The anchors: the flagged prompts, each that names none of --concept (where the
    concept leaks) repeated --leak-repeat times, so the edit's uniform draw over anchors
    meets it that many times as often. Without --concept nothing tells a leak apart."""
    if not cfg.concept:
        return flagged
    leaks = {p for p in flagged if all(without_concept(p, c) == p for c in cfg.concept)}
    return [p for p in flagged for _ in range(cfg.leak_repeat if p in leaks else 1)]


def feedback_plan(cfg: EraseConfig) -> EraseConfig:
    """Make the pieces --feedback needs in OUT/feedback (each kept once made); the
    settings of the erase that uses them."""
    folder = Path(cfg.feedback)
    feedback_prompts(folder)  # refuses feedback that cannot anchor an edit, before any work
    work = Path(cfg.out) / WORK
    if (Path(cfg.out) / "erase.json").exists():
        raise UnseeError(f"{cfg.out} already holds an erased model; use another --out")
    work.mkdir(parents=True, exist_ok=True)
    reward = cfg.reward
    if reward is None:
        reward = work / "reward"
        if not (reward / "config.json").is_file():
            train_reward(RewardTrainConfig(dir=folder, out=reward, device=cfg.device,
                                           seed=cfg.seed))  # fmt: skip
    token = work / "token.safetensors"
    if not token.is_file():
        invert(
            InvertConfig(
                feedback=folder, reward=reward, init=cfg.init, token=cfg.token, out=token,
                steps=cfg.invert_steps, model=cfg.model, device=cfg.device, seed=cfg.seed,
            )
        )  # fmt: skip
    scores = None
    if cfg.scope != "labelled":
        labelled = set(load_feedback(folder, "binary").file_names)
        scores = p_bad_by_file(folder, reward, cfg.device, skip=labelled)
    flagged, benign = feedback_prompts(folder, scores, flag_scored=cfg.scope == "scored")
    anchors, keep = work / "anchors.txt", work / "keep.txt"
    atomic_write_text(anchors, "".join(f"{p}\n" for p in leak_weighted(flagged, cfg)))
    atomic_write_text(keep, "".join(f"{p}\n" for p in benign))
    method = cfg.method or "neg"
    what = {
        "method": method,
        "embedding": [token, *cfg.embedding],
        "preserve": keep if benign else None,
    }
    # each weight where the objective has it (sdd no eta; uce's closed form neither)
    used = {"sdd": ("preserve_weight",), "uce": ()}.get(method, tuple(FEEDBACK_WEIGHTS))
    what |= {k: FEEDBACK_WEIGHTS[k] for k in used if getattr(cfg, k) is None}
    if method == "neg":
        what |= {"anchors": anchors, "strip_concept": bool(cfg.concept)}
    plan = {
        "feedback": str(folder),
        "flagged_prompts": len(flagged),
        "leak_repeat": cfg.leak_repeat if cfg.concept else None,
        "benign_prompts": len(benign),
        "scope": cfg.scope,
        "scored_images": len(scores or {}),
        "reward": str(reward),
        "token": cfg.token,
        **{k: str(v) if isinstance(v, Path) else v for k, v in what.items() if k != "embedding"},
    }
    atomic_write_text(work / "plan.json", json.dumps(plan, indent=2) + "\n")
    checkpoint = (Path(cfg.out) / "checkpoint.pt").is_file()
    # the feedback's own options are spent here (anchors.txt holds the leak's repeats)
    spent = {"feedback": None, "reward": None, "leak_repeat": 1}
    return dataclasses.replace(cfg, **spent, resume=cfg.resume or checkpoint, **what)
