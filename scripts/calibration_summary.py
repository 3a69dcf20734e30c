"""One line per judge from `unsee judge calibrate` results: how many of the 16 cells
(concept x subject x view) hold all three bars, the worst detection rate at strength 0,
the mean and worst detection rate at strength 0.2, and the mean strength error.

    python scripts/calibration_summary.py runs/cal-a/results.json runs/cal-b/results.json
"""

import json
import sys
from pathlib import Path

import numpy as np


def summary(path: str) -> list[str]:
    results = json.loads(Path(path).read_text())
    lines = []
    for judge, sweeps in results["sweeps"].items():
        cells = [
            (c, k, v, points)
            for c, by_kind in sweeps.items()
            for k, by_view in by_kind.items()
            for v, points in by_view.items()
        ]
        held = sum(results["summary"][judge][c][k][v]["holds"] for c, k, v, _ in cells)
        at = {
            s: [p["rate"] for *_, ps in cells for p in ps if p["strength"] == s] for s in (0, 0.2)
        }
        mae = np.mean([results["summary"][judge][c][k][v]["mae"] for c, k, v, _ in cells])
        lines.append(
            f"{path} {judge}: {held}/{len(cells)} cells hold; rate@0 max {max(at[0]):.2f};"
            f" rate@0.2 mean {np.mean(at[0.2]):.2f} min {min(at[0.2]):.2f}; MAE mean {mae:.3f}"
        )
    return lines


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print("\n".join(summary(arg)))
