"""One line per judge from `unsee judge calibrate` results (and one per view under it):
how many cells (concept x subject x view) hold all three bars, the worst detection rate
at strength 0, the mean and worst detection rate at strength 0.2, and the mean strength
error. With
--cells, a markdown table per judge instead: each cell's rates at s = 0 ... 0.4, its
lowest rate from 0.2 on, and its strength error (docs/judge-calibration/README.md).

    python scripts/calibration_summary.py runs/cal-a/results.json runs/cal-b/results.json
    python scripts/calibration_summary.py --cells docs/judge-calibration/results.json
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
        for view in sorted({v for _, _, v, _ in cells}):
            mine = [(c, k, ps) for c, k, v, ps in cells if v == view]
            held = sum(results["summary"][judge][c][k][view]["holds"] for c, k, _ in mine)
            at2 = [p["rate"] for *_, ps in mine for p in ps if p["strength"] == 0.2]
            mae = np.mean([results["summary"][judge][c][k][view]["mae"] for c, k, _ in mine])
            lines.append(
                f"    {view}: {held}/{len(mine)} hold; rate@0.2 mean {np.mean(at2):.2f}"
                f" min {min(at2):.2f}; MAE mean {mae:.3f}"
            )
    return lines


def cell_tables(path: str) -> list[str]:
    results = json.loads(Path(path).read_text())
    strengths = (0, 0.1, 0.2, 0.3, 0.4)
    lines = []
    for judge, sweeps in results["sweeps"].items():
        lines += [
            f"{judge}:",
            "",
            "| concept | subject | view | " + " | ".join(f"{s:g}" for s in strengths)
            + " | min >= 0.2 | MAE |",
            "|---" * (len(strengths) + 5) + "|",
        ]  # fmt: skip
        for concept, by_kind in sweeps.items():
            for kind, by_view in by_kind.items():
                for view, points in by_view.items():
                    rate = {round(p["strength"], 4): p["rate"] for p in points}
                    figures = results["summary"][judge][concept][kind][view]
                    cells = " | ".join(f"{rate[s]:.2f}" for s in strengths)
                    lines.append(
                        f"| {concept} | {kind} | {view} | {cells} |"
                        f" {figures['rate_when_present']:.2f} | {figures['mae']:.3f} |"
                    )
        lines.append("")
    return lines


if __name__ == "__main__":
    tables = "--cells" in sys.argv
    for arg in [a for a in sys.argv[1:] if a != "--cells"]:
        print("\n".join(cell_tables(arg) if tables else summary(arg)))
