"""How `unsee evaluate` reports a figure: with its bootstrap interval at the run's settings,
and the results as a markdown table (results.md)."""

from unsee.evaluate.config import EvaluateConfig
from unsee.evaluate.metrics import bootstrap


def interval(
    cfg: EvaluateConfig, statistic, *samples, paired: bool = True, centred: bool = False
) -> dict:
    """The statistic with its bootstrap interval at cfg's resamples and seed."""
    return bootstrap(
        statistic, *samples, paired=paired, n_boot=cfg.bootstrap, seed=cfg.seed, centred=centred
    )


def results_table(suites: dict) -> str:
    """One row per suite and metric: mean [low, high]."""
    lines = ["| suite | metric | value | 95% interval |", "|---|---|---|---|"]
    for name, metrics in suites.items():
        for metric, v in metrics.items():
            lines.append(
                f"| {name} | {metric} | {v['mean']:.4f} | [{v['low']:.4f}, {v['high']:.4f}] |"
            )
    return "\n".join(lines) + "\n"
