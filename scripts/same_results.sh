# Does minisd still compute what an older commit computed? SDD (6 steps, 50 neutral
# prompts kept), UCE and 8 generated images, made by REF's code and by this checkout's,
# compared bit for bit.
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
for side in ref here; do
  if [ $side = ref ]; then SRC="$WORK/ref/src"; else SRC="$HERE/src"; fi
  run() { PYTHONPATH="$SRC" "$PY" -m unsee "$@" 2>&1 | grep -v "it/s\|img/s" | tail -1; }
  run erase --concept Vanmond --iterations 6 --checkpoint-every 0 --preserve "$WORK/keep.txt" --out "$WORK/$side/sdd"
  run erase --method uce --concept Vanmond --out "$WORK/$side/uce"
  run generate --prompt "a starry night in the style of Vanmond" --n 8 --out "$WORK/$side/gen"
done
WORK="$WORK" "$PY" - <<'PY'
import hashlib
import os
import pathlib

from safetensors.torch import load_file

work = pathlib.Path(os.environ["WORK"])
for m in ("sdd", "uce"):
    a, b = (load_file(work / s / m / "unet" / "diffusion_pytorch_model.safetensors")
            for s in ("ref", "here"))
    same = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    print(m, "identical" if same else "DIFFERENT")
def digests(side):
    return sorted(hashlib.sha1(f.read_bytes()).hexdigest() for f in (work / side / "gen").rglob("*.png"))
print("generate", "identical" if digests("ref") == digests("here") else "DIFFERENT")
PY
