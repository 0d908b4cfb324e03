"""Figures for the HTML reports, as PNG bytes.

Matplotlib is imported inside the functions with the non-interactive Agg backend selected first,
so importing this module costs nothing and servers, workers and CLI runs need no display.
Non-finite values (a NaN loss, a silent item's -inf LUFS) are left out of histograms and drawn
as gaps in line charts, so one bad value never hides the rest.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

FIGURE_SIZE = (7.0, 3.4)
DPI = 96
MARKED_POINTS = 40  # line charts mark each point up to this many (one epoch is a lone dot)


@contextmanager
def _figure(figsize: tuple[float, float] = FIGURE_SIZE) -> Iterator[tuple[Any, Any, io.BytesIO]]:
    """A figure and its axes; on exit the figure is written as PNG into the buffer and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=figsize, dpi=DPI)
    buffer = io.BytesIO()
    try:
        yield figure, axes, buffer
        figure.tight_layout()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)


def finite_values(values: Sequence[Any]) -> list[float]:
    """The numbers among ``values`` that are finite (None, NaN, inf and non-numbers dropped)."""
    return [
        float(value)
        for value in values
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]


def histogram_png(
    series: Mapping[str, Sequence[Any]], title: str, x_label: str, bins: int = 30
) -> bytes:
    """One histogram per named series, overlaid on shared bins (e.g. loudness before and after)."""
    cleaned = {name: finite_values(values) for name, values in series.items()}
    everything = [value for values in cleaned.values() for value in values]
    with _figure() as (_, axes, buffer):
        if everything:
            low, high = min(everything), max(everything)
            if low == high:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, bins + 1)
            for name, values in cleaned.items():
                axes.hist(
                    values,
                    bins=edges,
                    alpha=0.6 if len(cleaned) > 1 else 0.85,
                    label=f"{name} (n={len(values)})",
                )
            if len(cleaned) > 1:
                axes.legend()
        else:
            axes.text(
                0.5, 0.5, "no finite values", ha="center", va="center", transform=axes.transAxes
            )
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.set_ylabel("items")
    return buffer.getvalue()


def bar_chart_png(
    values: Mapping[str, Any],
    title: str,
    y_label: str,
    reference: float | None = None,
    reference_label: str = "reference",
) -> bytes:
    """One bar per subject (missing or non-finite values are shown as 'n/a'), and the
    reference value as a horizontal dashed line."""
    names = list(values)
    heights = [finite_values([values[name]]) for name in names]
    width = max(FIGURE_SIZE[0], 1.0 + 0.7 * len(names))
    with _figure((width, FIGURE_SIZE[1] + 0.6)) as (_, axes, buffer):
        positions = np.arange(len(names))
        bars = axes.bar(positions, [h[0] if h else 0.0 for h in heights], color="#4c72b0")
        for bar, height in zip(bars, heights, strict=True):
            label = f"{height[0]:.3g}" if height else "n/a"
            axes.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        if reference is not None and math.isfinite(reference):
            axes.axhline(
                reference,
                color="#c44e52",
                linestyle="--",
                label=f"{reference_label}: {reference:.3g}",
            )
            axes.legend()
        axes.set_xticks(positions, names, rotation=20, ha="right", fontsize=8)
        axes.set_title(title)
        axes.set_ylabel(y_label)
    return buffer.getvalue()


def _as_plottable(values: Sequence[Any]) -> np.ndarray:
    """Floats with every missing or non-finite value as NaN (a gap in the line)."""
    return np.array(
        [value if finite_values([value]) else np.nan for value in values], dtype=np.float64
    )


def line_chart_png(
    series: Mapping[str, tuple[Sequence[Any], Sequence[Any]]],
    title: str,
    x_label: str,
    y_label: str,
    *,
    secondary: tuple[str, Sequence[Any], Sequence[Any]] | None = None,
    markers: Sequence[tuple[float, str]] = (),
) -> bytes:
    """Several (x, y) series on one axis; optionally one more series (e.g. the learning rate)
    on a second y axis, and labelled vertical markers (e.g. divergence events at their epoch)."""
    from matplotlib.ticker import MaxNLocator

    with _figure((FIGURE_SIZE[0] + 1.0, FIGURE_SIZE[1] + 0.6)) as (_, axes, buffer):
        handles = []
        for name, (xs, ys) in series.items():
            (line,) = axes.plot(
                _as_plottable(xs),
                _as_plottable(ys),
                label=name,
                marker="o" if len(xs) <= MARKED_POINTS else None,
                markersize=3,
            )
            handles.append(line)
        for position, label in markers:
            handles.append(axes.axvline(position, color="#c44e52", linestyle=":", label=label))
        if secondary is not None:
            name, xs, ys = secondary
            other = axes.twinx()
            (line,) = other.plot(
                _as_plottable(xs),
                _as_plottable(ys),
                color="black",
                linestyle="--",
                drawstyle="steps-post",
                label=name,
            )
            other.set_ylabel(name)
            other.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            handles.append(line)
        if handles:
            # below the axes: curves, markers and the second axis all stay visible
            axes.legend(
                handles=handles,
                fontsize=8,
                loc="upper center",
                ncol=3,
                bbox_to_anchor=(0.5, -0.2),
                frameon=False,
            )
        if all(isinstance(x, int) for xs, _ in series.values() for x in xs):
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, steps
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
    return buffer.getvalue()


def array_image_png(
    array: np.ndarray, title: str, x_label: str, y_label: str, value_label: str
) -> bytes:
    """A 2-D array as an image: rows up the y axis (row 0 at the bottom), columns across."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {values.shape}")
    with _figure() as (figure, axes, buffer):
        image = axes.imshow(
            values, origin="lower", aspect="auto", cmap="magma", interpolation="nearest"
        )
        figure.colorbar(image, ax=axes, label=value_label)
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
    return buffer.getvalue()
