#!/usr/bin/env bash
# The method table (`unsee bench table --seeds 3 --n 64`) on a lent GPU, as the device tool
# runs it: docs/bench-world-table/README.md says which card made which figures.
#
#   scripts/gpu_table.sh [OUT_FOLDER] [SECONDS]
#
# The original row first (every other row is compared with its images), then two processes
# share the card: the inference interventions that take the word, and the rows made from
# the simulated feedback (UCE among them: it keeps the feedback's benign prompts). Each finished
# row is kept, so a second call (with the folder carried back) resumes. The last step
# gathers the rows into results.json, results.md and index.html. What comes back in $OUT:
# the log, every JSON/JSONL/Markdown/HTML file of the table (numbers.tgz) and seed 0's
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
table=(python3 -m unsee bench table --seeds 3 --n 64 --out "$folder")
start=$(date +%s)
# seconds left, at least 1 (`timeout 0` would mean no limit at all)
left() { local s=$(( start + limit - $(date +%s) )); echo $(( s > 1 ? s : 1 )); }
timeout "$(left)" "${table[@]}" --methods original > "$out/table_original.log" 2>&1
timeout "$(left)" "${table[@]}" --methods neg_text sld_medium sld_max sega \
  > "$out/table_a.log" 2>&1 &
timeout "$(left)" "${table[@]}" --methods neg_token esd_x esd_u sdd_text hfi_sdd uce hfi_neg \
  feedback_erase censored > "$out/table_b.log" 2>&1 &
wait
done_rows=$(find "$folder/eval" -name row.json | wc -l)
echo "rows: $(( $(date +%s) - start )) s, $done_rows of 84 done"
if [ "$done_rows" -eq 84 ]; then
  "${table[@]}" --methods all > "$out/table.log" 2>&1
  echo "gather: rc $?"
fi
tail -n 5 "$out/table_original.log" "$out/table_a.log" "$out/table_b.log"
tail -n 60 "$out/table.log" 2>/dev/null
cd "$folder" || exit 1
find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.html' \) \
  -not -path '*/images/*' | tar czf "$out/numbers.tgz" -T -
find eval/seed0/artist -maxdepth 2 -name 'grid_*.png' | tar cf "$out/grids_artist.tar" -T -
find eval/seed0/watermark -maxdepth 2 -name 'grid_*.png' | tar cf "$out/grids_watermark.tar" -T -
ls -la "$out"
