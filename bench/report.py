"""The benchmark's output: the machine, one markdown table with targets and marks, the plot."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

OK_MARK = "✅ pass"
FAILED_MARK = "❌ fail"
NA = "n/a"


def mark(ok: bool | None) -> str:
    if ok is None:
        return NA
    return OK_MARK if ok else FAILED_MARK


@dataclass
class Row:
    bench: str
    measure: str
    result: str
    target: str = "—"
    mark: str = ""


@dataclass
class Panel:
    """What the plot shows for one benchmark."""

    bench: str
    title: str
    kind: str  # bars | latency | text
    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    hatched: list[bool] = field(default_factory=list)
    unit: str = ""
    target: float | None = None
    target_label: str = ""
    log: bool = False
    text: str = ""
    # More target lines (value, label) on a bars panel, drawn after ``target``.
    targets: list[tuple[float, str]] = field(default_factory=list)


def machine() -> str:
    """nproc, CPU model, RAM and Python version, on one line."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 0
    model = "unknown CPU"
    ram = "unknown RAM"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    return f"nproc {cpus} · {model} · {ram} · Python {platform.python_version()}"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def seconds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value:,.0f} s ({value / 60:.0f} min)"


def markdown(title: str, header: list[str], rows: list[Row], notes: list[str]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"# {title}", "", *header, ""]
    lines.append("| | measure | result | target | |")
    lines.append("|---|---|---|---|---|")
    for row in rows:
        lines.append(
            f"| {row.bench} | {cell(row.measure)} | {cell(row.result)} | {cell(row.target)} "
            f"| {row.mark} |"
        )
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _draw(ax: Axes, panel: Panel) -> None:
    ax.set_title(f"{panel.bench} {panel.title}", fontsize=10)
    if panel.kind == "text" or not panel.values:
        ax.axis("off")
        ax.text(0.5, 0.5, panel.text or "no data", ha="center", va="center", wrap=True, fontsize=9)
        return
    if panel.kind == "latency":
        ordered = sorted(panel.values)
        share = [(i + 1) / len(ordered) * 100 for i in range(len(ordered))]
        ax.step([v * 1000 for v in ordered], share, where="post")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("% of samples")
        ax.set_ylim(0, 102)
        for p, style, height in ((50, ":", 10), (95, "--", 25), (99, "-.", 40)):
            value = percentile(panel.values, p) * 1000
            ax.axvline(value, color="grey", linestyle=style, linewidth=1)
            ax.text(value, height, f" p{p} {value:,.0f} ms", fontsize=7)
        if panel.target is not None:
            ax.axvline(panel.target * 1000, color="red", linewidth=1.5)
            ax.text(panel.target * 1000, 50, f" {panel.target_label}", color="red", fontsize=8)
        if panel.log:
            ax.set_xscale("log")
        return
    positions = list(range(len(panel.values)))
    bars = ax.barh(positions, panel.values, color="tab:blue")
    for bar, hatched in zip(bars, panel.hatched or [False] * len(bars), strict=False):
        if hatched:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    ax.set_yticks(positions, panel.labels)
    ax.invert_yaxis()
    ax.set_xlabel(panel.unit)
    if panel.log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
    for pos, value in zip(positions, panel.values, strict=True):
        text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
        ax.text(value, pos, f" {text}", va="center", fontsize=8)
    lines = [(panel.target, panel.target_label)] if panel.target is not None else []
    lines += panel.targets
    colors = ("red", "darkorange", "purple")
    for k, (value, label) in enumerate(lines):
        style = "-" if k == 0 else "--"
        ax.axvline(
            value, color=colors[k % len(colors)], linewidth=1.5, linestyle=style, label=label
        )
    if lines:  # in a legend under the axis: labels by the lines would cross bars and values
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=len(lines),
            fontsize=7,
            frameon=False,
        )
    ax.margins(x=0.25)


def plot(path: Path, title: str, panels: list[Panel]) -> None:
    """One panel per benchmark, written as a PNG (Agg, no display needed)."""
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6 * columns, 4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=11)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index < len(panels):
            _draw(ax, panels[index])
        else:
            ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110)
