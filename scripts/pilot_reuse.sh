set -e
U=unsee
mkdir -p runs/pilot-reuse && cd runs/pilot-reuse
for k in 16 1; do
  /usr/bin/time -f "erase reuse $k: %e s" $U erase --concept Vanmond --reuse $k --checkpoint-every 0 --out erase-r$k 2>&1 | grep -v "it/s\|s/it" | tail -2
  $U evaluate --model erase-r$k --concept Vanmond --suite target leak neutral --n 64 --out eval-r$k 2>&1 | grep -v "it/s\|s/it\|img/s" | tail -3
done
