# Does `unsee erase --reuse K` (K stops on each teacher walk) erase as well as the papers'
# one walk per sample? minisd, Vanmond, SDD at minisd's defaults with 50 neutral prompts kept
# (--preserve, as the table's sdd_text row), K = 1, 8 and 32 (KS), two seeds each (the
# seed-to-seed spread is the yardstick), each judged on the target, leak and neutral suites.
# minisd's 200 steps of 8 samples at K = 8 see as many distinct starting noises (200) as
# Stable Diffusion's 1500 steps of 4 at its default K = 32 (188).
#
#     bash scripts/pilot_reuse.sh          # writes runs/pilot-reuse/, summary.json last
set -e
OUT=${OUT:-runs/pilot-reuse}
mkdir -p "$OUT"
python -c "
from unsee.world.prompts import neutral_prompts
print('\n'.join(p for p, _ in neutral_prompts(50, 424242)))" > "$OUT/keep.txt"
for k in ${KS:-1 8 32}; do
  for seed in 0 1; do
    name=r$k-s$seed
    if [ ! -f "$OUT/erase-$name/erase.json" ]; then
      unsee erase --concept Vanmond --preserve "$OUT/keep.txt" --reuse $k --seed $seed \
        --checkpoint-every 0 --out "$OUT/erase-$name" 2>&1 | grep -v "it/s\|s/it" | tail -1
    fi
    if [ ! -f "$OUT/eval-$name/results.json" ]; then
      unsee evaluate --model "$OUT/erase-$name" --concept Vanmond --suite target leak neutral \
        --n 64 --out "$OUT/eval-$name" 2>&1 | grep -v "it/s\|s/it\|img/s" | tail -1
    fi
  done
done
python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {}
for run in sorted(out.glob("eval-*")):
    report = json.loads((run / "results.json").read_text())
    erase = json.loads((out / run.name.replace("eval-", "erase-") / "erase.json").read_text())
    rows[run.name[5:]] = {"erase_seconds": erase["seconds"], "suites": report["suites"]}
(out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
print(json.dumps({k: v["erase_seconds"] for k, v in rows.items()}))
EOF
