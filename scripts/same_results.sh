# Does minisd still compute what an older commit computed? SDD (6 steps, 50 neutral
# prompts kept), UCE, 8 generated images and 4 censored ones (a fixed random cnn reward,
# guidance through the U-Net and the VAE), made by REF's code and by this checkout's,
# compared bit for bit. (A random reward steers gently: a gradient summed in another order
# moved no pixel here, while the demo's trained reward moved guided images by up to 100
# grey levels; tests/test_guidance.py checks that order itself.)
#
#     bash scripts/same_results.sh a063c5c      # prints "identical" or "DIFFERENT" for each
set -e
REF=${1:?give a commit to compare with}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
git -C "$HERE" worktree add -q "$WORK/ref" "$REF"
trap 'git -C "$HERE" worktree remove --force "$WORK/ref"; rm -rf "$WORK"' EXIT
PY="$HERE/.venv/bin/python"
PYTHONPATH="$HERE/src" "$PY" -c "
from unsee.world.prompts import neutral_prompts
print('\n'.join(p for p, _ in neutral_prompts(50, 424242)))" > "$WORK/keep.txt"
PYTHONPATH="$HERE/src" "$PY" -c "
import torch
from unsee.reward.cnn import CnnReward
from unsee.reward.model import RewardModel
torch.manual_seed(0)
RewardModel({'backbone': 'cnn', 'ensemble': 1, 'image_size': 32}, [CnnReward(32)]).save(
    __import__('pathlib').Path('$WORK/reward'))"
for side in ref here; do
  if [ $side = ref ]; then SRC="$WORK/ref/src"; else SRC="$HERE/src"; fi
  run() { PYTHONPATH="$SRC" "$PY" -m unsee "$@" 2>&1 | grep -v "it/s\|img/s" | tail -1; }
  run erase --concept Vanmond --iterations 6 --checkpoint-every 0 --preserve "$WORK/keep.txt" --out "$WORK/$side/sdd"
  run erase --method uce --concept Vanmond --out "$WORK/$side/uce"
  run generate --prompt "a starry night in the style of Vanmond" --n 8 --out "$WORK/$side/gen"
  run censor --reward "$WORK/reward" --scale 8 --retry 0 --prompt "a starry night in the style of Vanmond" --n 4 --out "$WORK/$side/censor"
done
WORK="$WORK" "$PY" - <<'PY'
import os
import pathlib

import numpy as np
from PIL import Image
from safetensors.torch import load_file

work = pathlib.Path(os.environ["WORK"])
for m in ("sdd", "uce"):
    a, b = (load_file(work / s / m / "unet" / "diffusion_pytorch_model.safetensors")
            for s in ("ref", "here"))
    same = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    print(m, "identical" if same else "DIFFERENT")
def pixels(side, what):  # a PNG's bytes may name its folder; its pixels may not differ
    return [np.asarray(Image.open(f)) for f in sorted((work / side / what).rglob("*.png"))]
for what in ("gen", "censor"):
    a, b = pixels("ref", what), pixels("here", what)
    same = len(a) == len(b) > 0 and all(np.array_equal(x, y) for x, y in zip(a, b))
    print(what, "identical" if same else "DIFFERENT")
PY
