"""`unsee feedback simulate`: a labeller driven by the world judge, in place of a person.

binary: images in a shuffled order are labelled bad when they show the concept (the
judge calls it: its strength is at least the call strength, as in every rate), good
otherwise; a share `noise` of the answers is flipped. rank: groups of M images are ordered
by the judge's strength of the concept (strongest first); with noise, each adjacent pair is swapped
with that probability. Decisions are stored under the annotator "simulated".
"""

import numpy as np

from unsee.errors import UnseeError
from unsee.evaluate.judge import shows
from unsee.feedback.config import FeedbackSimulateConfig
from unsee.feedback.store import FeedbackStore
from unsee.imageset import load_images, read_image_set
from unsee.models.load import pick_device
from unsee.world.judge import judge_images, load_world_judge
from unsee.world.names import CONCEPTS
from unsee.world.render import SIZE


def simulate(cfg: FeedbackSimulateConfig) -> dict:
    if cfg.concept not in CONCEPTS:
        raise UnseeError(f"--concept must be one of {', '.join(CONCEPTS)}, not {cfg.concept!r}")
    records = read_image_set(cfg.dir)
    store = FeedbackStore.for_folder(cfg.dir)
    store.register_images(records)
    ids = {i.file_name: i.image_id for i in store.images()}
    done = store.decided(cfg.annotator)
    todo = [r for r in records if ids[r["file_name"]] not in done]
    if not todo:
        raise UnseeError(f"every image of {cfg.dir} already has a decision by {cfg.annotator!r}")
    if cfg.mode == "rank" and len(todo) < cfg.rank_size:
        raise UnseeError(
            f"a ranking takes --rank-size {cfg.rank_size} images; {cfg.dir} has only"
            f" {len(todo)} without a decision by {cfg.annotator!r}: lower --rank-size or"
            " generate more images"
        )
    judge = load_world_judge("cnn", pick_device(cfg.device))
    verdicts = judge_images(judge, load_images(cfg.dir, todo, SIZE))
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(todo))
    counts = {"bad": 0, "good": 0, "rankings": 0}
    if cfg.mode == "binary":
        quota = cfg.budget // 2 if cfg.balanced else cfg.budget
        for i in order:
            if counts["bad"] + counts["good"] >= cfg.budget:
                break
            bad = shows(verdicts[i], cfg.concept)
            if rng.random() < cfg.noise:
                bad = not bad
            label = "bad" if bad else "good"
            if counts[label] >= quota:
                continue  # balanced: this class is full, the image is not shown
            store.add_label(ids[todo[i]["file_name"]], cfg.annotator, label, None)
            counts[label] += 1
    else:
        for start in range(0, len(order) - cfg.rank_size + 1, cfg.rank_size):
            if counts["rankings"] >= cfg.budget:
                break
            group = list(order[start : start + cfg.rank_size])
            group.sort(key=lambda i: -verdicts[i].strengths[cfg.concept])
            for j in range(len(group) - 1):
                if rng.random() < cfg.noise:
                    group[j], group[j + 1] = group[j + 1], group[j]
            store.add_ranking([ids[todo[i]["file_name"]] for i in group], cfg.annotator, None)
            counts["rankings"] += 1
    made = counts["rankings"] if cfg.mode == "rank" else counts["bad"] + counts["good"]
    if made < cfg.budget:
        print(f"note: only {made} of the {cfg.budget} asked for; {cfg.dir} ran out of images")
    print(f"simulated {cfg.concept} feedback as {cfg.annotator!r}: {counts}")
    return counts
