"""Pictures of training: the rows of one or more runs' metrics.jsonl drawn as curves over steps.

One figure, one panel per quantity: the losses (smoothed, the raw values faint behind them), the mean real and
fake logits, every other number the step logs (R1, rewards, ELBO terms, ...) and every evaluation metric. Several
runs share the panels, one colour per run. The loop writes curves.png at each checkpoint; `fastgan plot` draws
several runs. matplotlib is an optional dependency (`pip install 'fastgan[plot]'`); only its object-oriented API
is used, so drawing touches no global pyplot state of the caller.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from ..atomic import atomic_write_bytes

CURVES = "curves.png"
#: logged numbers that are no training signal (n: how many samples an evaluation scored)
NOT_PLOTTED = ("step", "img_per_s", "skipped_updates", "n")
#: weight of the exponential moving average that smooths the losses (TensorBoard's default 0.6 is too little for
#: the noise of a GAN loss logged every few steps)
SMOOTHING = 0.9
MISSING = "matplotlib is not installed (pip install 'fastgan[plot]')"

__all__ = ["CURVES", "MISSING", "draw_curves", "matplotlib_available", "panels", "smooth"]


def matplotlib_available() -> bool:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return False
    return True


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased as TensorBoard's: the first values are not pulled toward zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def panels(rows: list[dict]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{panel title: {series: (steps, values)}} of one run's metrics.jsonl rows, in the order they are drawn."""
    losses, logits, other, evals = {}, {}, {}, {}
    for row in rows:
        step = row.get("step")
        values = row["eval"] if isinstance(row.get("eval"), dict) else row
        for key, value in values.items():
            if key in NOT_PLOTTED or key.endswith("_std") or isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not math.isfinite(value):
                continue
            if values is not row:
                target = evals.setdefault(f"eval: {key}", {})
            elif "loss" in key:
                target = losses
            elif key.endswith("_logit"):
                target = logits
            else:
                target = other.setdefault(key, {})
            steps, series = target.setdefault(key, ([], []))
            steps.append(step)
            series.append(float(value))
    out = {}
    if losses:
        out["losses (smoothed)"] = losses
    if logits:
        out["mean logits"] = logits
    return {**out, **other, **evals}


def draw_curves(runs: dict[str, list[dict]], path: str | Path, ncols: int = 3) -> Path:
    """Draw the runs {label: metrics.jsonl rows} on one figure and write it as a PNG at path (atomically).

    ImportError (one line, saying how to install it) without matplotlib; ValueError when no run logged anything
    to draw.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MISSING) from None
    drawn = {label: panels(rows) for label, rows in runs.items()}
    titles = list(dict.fromkeys(title for run in drawn.values() for title in run))
    if not titles:
        raise ValueError(f"nothing to plot: {', '.join(runs)} logged no numbers yet")
    ncols = min(ncols, len(titles))
    nrows = math.ceil(len(titles) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    several = len(runs) > 1
    for i, title in enumerate(titles):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for r, (label, run) in enumerate(drawn.items()):
            for s, (name, (steps, values)) in enumerate(run.get(title, {}).items()):
                color = f"C{r if several else s}"
                style = ("-", "--", ":", "-.")[s % 4] if several else "-"
                legend = f"{label}: {name}" if several else name
                if title.startswith("losses"):
                    ax.plot(steps, values, color=color, linestyle=style, alpha=0.2, linewidth=0.8)
                    values = smooth(values)
                ax.plot(steps, values, color=color, linestyle=style, label=legend, linewidth=1.4,
                        marker="o" if len(steps) < 8 else None, markersize=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and (several or title in ("losses (smoothed)", "mean logits")):
            ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())
