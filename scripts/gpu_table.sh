#!/usr/bin/env bash
# The method table (`unsee bench table --seeds 3 --n 64`) on a lent GPU, as the device tool
# runs it (carry .whl, the diffusers wheel). Written for a session that was lent none: it
# has not run on a card yet, and no figure in docs/ comes from it.
#
#   scripts/gpu_table.sh [OUT_FOLDER] [SECONDS]
#
# `--workers 3` makes three seeds or concepts side by side on the card. Each finished row
# is kept, so a second call (with the folder carried back) resumes; the table gathers the
# rows into results.json, results.md and index.html when all are made. What comes back in
# $OUT: the log, every JSON/JSONL/Markdown/HTML file of the table (numbers.tgz) and seed 0's
# image grids (grids_artist.tar, grids_watermark.tar).
set -uo pipefail
folder=${1:-runs/table-gpu}
limit=${2:-480}
out=${OUT:-/tmp/gpu-table-out}
mkdir -p "$out" "$folder"
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
timeout "$limit" python3 -m unsee bench table --seeds 3 --n 64 --workers 3 --out "$folder" \
  > "$out/table.log" 2>&1
echo "table: rc $? after $(( $(date +%s) - start )) s," \
  "$(find "$folder/eval" -name row.json | wc -l) of 84 rows made"
tail -n 60 "$out/table.log"
cd "$folder" || exit 1
find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.html' \) \
  -not -path '*/images/*' | tar czf "$out/numbers.tgz" -T -
find eval/seed0/artist -maxdepth 2 -name 'grid_*.png' | tar cf "$out/grids_artist.tar" -T -
find eval/seed0/watermark -maxdepth 2 -name 'grid_*.png' | tar cf "$out/grids_watermark.tar" -T -
ls -la "$out"
