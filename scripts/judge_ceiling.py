"""How faint a trace can any judge see after minisd's VAE? Two measures per concept and
subject (docs/judge-calibration/ceiling.json):

1. The strength that survives the round trip. For each subject, D = RT(1) - RT(0) is the
   round trip's version of the full effect; the effective strength of RT(s) is its
   projection on D, <RT(s) - RT(0), D> / <D, D> (for renders it is s exactly). Also the
   mean and 99th percentile pixel change |RT(s) - RT(0)| in levels of 255.
2. A specialist's ceiling (with --specialist): a detector of the judge's architecture
   trained on that cell alone, bare subjects against the concept at exactly s = 0.2 (the
   easiest task a judge calling at 0.2 can have), read on fresh subjects with the
   threshold that calls 2% of bare ones: the best rate at 0.2 that the cell allows, as far
   as a network of this size can find it.

    python scripts/judge_ceiling.py docs/judge-calibration/ceiling.json --specialist
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from unsee.evaluate.calibrate import SUBJECTS, subjects, vae_view, with_concept
from unsee.images import to_model_range
from unsee.world import render as world
from unsee.world.judge import STRENGTHS, Judge
from unsee.world.paths import MINISD_DIR

LEVELS = (0.1, 0.2, 0.3, 0.5)


def views(bare, concept, s, vae):
    renders = np.stack([world.render(with_concept(a, concept, s)) for a in bare])
    return {"render": renders, "vae": vae_view(renders, vae)}


def surviving(bare, concept, vae) -> dict:
    ends = {s: views(bare, concept, s, vae) for s in (0.0, 1.0)}
    out = {}
    for view in ("render", "vae"):
        zero = ends[0.0][view].astype(np.float64)
        d = (ends[1.0][view] - zero).reshape(len(bare), -1)
        rows = {}
        for s in LEVELS:
            delta = (views(bare, concept, s, vae)[view] - zero).reshape(len(bare), -1)
            eff = (delta * d).sum(1) / np.maximum((d * d).sum(1), 1e-9)
            rows[str(s)] = {
                "effective_strength": round(float(eff.mean()), 4),
                "mean_change": round(float(np.abs(delta).mean()), 3),
                "p99_change": round(float(np.percentile(np.abs(delta), 99)), 2),
            }
        out[view] = rows
    return out


def specialist(kind, concept, vae, steps: int, n: int, seed: int, views_=("render", "vae")) -> dict:
    """Best rate at s = 0.2 with 2% false calls at 0, per view, for one cell."""
    out = {}
    train_bare = subjects(kind, n, seed)
    test_bare = subjects(kind, 400, seed + 7)
    train = {s: views(train_bare, concept, s, vae) for s in (0.0, 0.2)}
    test = {s: views(test_bare, concept, s, vae) for s in (0.0, 0.2)}
    for view in views_:
        x = to_model_range(np.concatenate([train[0.0][view], train[0.2][view]]))
        y = torch.cat([torch.zeros(n), torch.ones(n)])
        torch.manual_seed(seed)
        model = Judge()
        net = torch.nn.Sequential(model.features, torch.nn.Linear(4 * model.width, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        g = torch.Generator().manual_seed(seed)
        for _ in tqdm(range(steps), desc=f"{concept} {kind} {view}", dynamic_ncols=True):
            # twins: a subject bare and with the trace in one batch, so the difference is
            # what the net has to find (random pairs let a small set be memorised)
            first = torch.randint(0, n, (64,), generator=g)
            idx = torch.cat([first, first + n])
            loss = F.binary_cross_entropy_with_logits(net(x[idx]).squeeze(-1), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            scores = {s: net(to_model_range(test[s][view])).squeeze(-1).numpy() for s in (0.0, 0.2)}
        threshold = np.percentile(scores[0.0], 98)
        out[view] = {
            "rate_at_0.2": round(float((scores[0.2] > threshold).mean()), 4),
            "auc": round(float((scores[0.2][:, None] > scores[0.0][None, :]).mean()), 4),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=200, help="subjects a surviving figure (0: skip them)")
    p.add_argument("--specialist", action="store_true")
    p.add_argument("--cells", default="Vanmond:shapes,Brakovic:shapes,Vanmond:starry night")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--views", default="render,vae", help="the specialists' views")
    args = p.parse_args()
    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae", torch_dtype=torch.float32)
    vae = vae.eval()
    result = {"settings": vars(args) | {"out": str(args.out)}, "surviving": {}}
    for i, concept in enumerate(STRENGTHS if args.n else ()):
        for j, kind in enumerate(SUBJECTS):
            bare = subjects(kind, args.n, 5000 + 10 * i + j)
            result["surviving"].setdefault(concept, {})[kind] = surviving(bare, concept, vae)
            print(concept, kind, json.dumps(result["surviving"][concept][kind]))
    if args.specialist:
        result["specialist"] = {}
        for cell in args.cells.split(","):
            concept, kind = cell.split(":")
            found = specialist(
                kind, concept, vae, args.steps, args.train, 9000, tuple(args.views.split(","))
            )
            result["specialist"][cell] = found
            print(cell, found)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
