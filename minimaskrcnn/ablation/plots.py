"""Figures of the studies: one study's bars, ours beside the paper's Table 2, the headline differences, and
RoIAlign's gain against the stride."""
from __future__ import annotations

import math
from pathlib import Path

from .report import effect, gain_by_stride, paper_effect, short_labels
from .studies import METRICS, get_study


def plot_study(results: dict, path: str | Path | None = None):
    """Bar chart: mask AP, AP50, AP75 of each variant (the study's first task's: keypoint AP for the keypoint
    study), error bars one standard deviation."""
    import matplotlib.pyplot as plt

    rows, task = results["summary"], get_study(results["study"]).tasks[0]
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(rows), 3.2), dpi=80)
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        means = [100 * (row[f"{task}_{m}"]["mean"] or 0) for m in METRICS]
        errs = [100 * (row[f"{task}_{m}"]["std"] or 0) for m in METRICS]
        ax.bar([j + i * width for j in range(len(METRICS))], means, width, yerr=errs, capsize=3, label=row["label"])
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(METRICS))], [f"{task} {m}" for m in METRICS])
    ax.set_ylabel("AP x 100 (synthetic shapes)")
    ax.set_title(results["title"], fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def plot_against_paper(results: dict[str, dict], metric: str = "mask_AP75", cols: int = 3):
    """One panel per study: each variant's `metric` (e.g. "mask_AP75"), ours beside the paper's, AP x 100.
    A study scored on another task draws that task's AP of the same kind instead (the keypoint study: its
    keypoint AP75), and says so on its axis.

    Ours: mean over seeds (bar), one standard deviation (error bar) and every seed's run (dots).
    The paper's: its Table 2 entry (hatched bar), where it gives one. The scales differ (COCO with a
    ResNet-50 against small synthetic shapes): compare the order of the variants, not the heights."""
    import matplotlib.pyplot as plt

    wanted, m = metric.split("_", 1)
    rows_of_panels = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(3.4 * cols, 2.9 * rows_of_panels), dpi=80, squeeze=False)
    for ax, data in zip(axes.flat, results.values()):
        tasks = get_study(data["study"]).tasks
        task = wanted if wanted in tasks[:1] else tasks[0]
        if task != wanted:
            ax.set_ylabel(f"{task} {m} x 100", fontsize=8)
        for i, row in enumerate(data["summary"]):
            entry = row[f"{task}_{m}"]
            seeds = [100 * r[task][m] for r in data["runs"] if r["variant"] == row["variant"]]
            ax.bar(i - 0.2, 100 * entry["mean"], 0.4, yerr=100 * (entry["std"] or 0), capsize=3, color="tab:blue",
                   label="ours" if i == 0 else None)
            ax.plot([i - 0.2] * len(seeds), seeds, "o", markersize=3.5, markerfacecolor="white", markeredgecolor="k",
                    markeredgewidth=0.8)
            if entry["paper"] is not None:
                ax.bar(i + 0.2, entry["paper"], 0.4, color="white", edgecolor="tab:orange", hatch="///",
                       label="paper" if i == 0 else None)
        ticks = [r["label"].replace(" (", "\n(").replace(", ", "\n") for r in data["summary"]]  # a line per part
        ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
        ax.set_title(data["title"], fontsize=8)
        ax.set_ylim(0, 100)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes.flat[len(results):]:
        ax.axis("off")
    if not axes.flat[0].get_ylabel():  # unless the first panel says it draws another task
        axes.flat[0].set_ylabel(f"{metric.replace('_', ' ')} x 100", fontsize=8)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_effects(results: dict[str, dict]):
    """Every study's headline difference (its claim, better minus worse) in AP points: ours with two
    standard errors as the error bar, beside the paper's. A bar whose error bar crosses zero is an
    effect the seeds cannot tell from noise."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.3 + 1.5 * len(results), 3.4), dpi=80)
    names = []
    for i, data in enumerate(results.values()):
        study = get_study(data["study"])
        better, worse, metric = study.claim.better, study.claim.worse, study.claim.metric
        labels = short_labels(study)
        names.append(f"{study.name}\n{labels[better]}\nminus {labels[worse]}\n{metric.replace('_', ' ')}")
        measured, paper = effect(study, data["summary"]), paper_effect(study)
        if measured is not None:
            ax.bar(i - 0.2, measured[0], 0.4, yerr=measured[1] or 0.0, capsize=3, color="tab:blue",
                   label="ours (±2 s.e.)" if i == 0 else None)
        if paper is not None:
            ax.bar(i + 0.2, paper, 0.4, color="white", edgecolor="tab:orange", hatch="///",
                   label="paper" if i == 0 else None)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("difference, AP points")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_gain_against_stride(results: dict[str, dict], object_size: float, paper_object_size: float,
                             metric: str = "mask_AP75"):
    """RoIPool against RoIAlign at every stride of STRIDE_SERIES, drawn against the median object's size in
    feature cells, sqrt(w h) / stride: what RoIPool's rounding costs depends on how many cells an object
    spans, not on the stride alone (notebook 03).

    object_size: the median sqrt(w h) of our objects, pixels (the held-out shapes); paper_object_size: that
    of COCO objects at the paper's 800-pixel scale, which places the paper's Tables 2c (stride 16) and 2d
    (stride 32). Left: `metric` of both poolers (ours, mean ± std over seeds). Right: RoIAlign's gain
    (± two standard errors) beside the paper's. Each point is labelled with its stride."""
    import matplotlib.pyplot as plt

    rows = gain_by_stride(results, metric)
    cells = [object_size / r["stride"] for r in rows]  # ours: the median shape in cells at each stride
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.4), dpi=80, sharex=True)
    for key, label, colour in (("roipool", "RoIPool", "tab:red"), ("roialign", "RoIAlign", "tab:blue")):
        left.errorbar(cells, [100 * r[key]["mean"] for r in rows], [100 * (r[key]["std"] or 0) for r in rows],
                      marker="o", capsize=3, color=colour, label=label)
    left.set_ylabel(f"{metric.replace('_', ' ')} x 100 (ours)", fontsize=8)
    left.set_ylim(0, 100)
    left.legend(fontsize=8, loc="lower right")
    right.errorbar(cells, [r["gain"] for r in rows], [r["two_se"] or 0.0 for r in rows], marker="o", capsize=3,
                   color="tab:blue", label="ours, shapes (± 2 s.e.)")
    paper = [(paper_object_size / r["stride"], r["paper_gain"], r["stride"])  # the paper's, where Table 2 has it
             for r in rows if r["paper_gain"] is not None]
    if paper:
        right.plot([p[0] for p in paper], [p[1] for p in paper], "s", color="tab:orange", markerfacecolor="white",
                   markersize=7, label="paper, COCO (Table 2c, 2d)")
    for x, y, stride in paper:
        right.annotate(f"stride {stride}", (x, y), textcoords="offset points", xytext=(0, -13), ha="center",
                       fontsize=8, color="tab:orange")
    for x, r in zip(cells, rows):
        right.annotate(f"stride {r['stride']}", (x, r["gain"]), textcoords="offset points", xytext=(0, 9),
                       ha="center", fontsize=8, color="tab:blue")
        left.annotate(f"stride {r['stride']}", (x, 100 * r["roialign"]["mean"]), textcoords="offset points",
                      xytext=(0, 8), ha="center", fontsize=8)
    right.axhline(0, color="k", linewidth=0.8)
    right.margins(y=0.15)  # room for the labels above and below the points
    right.set_ylabel("RoIAlign - RoIPool, AP points", fontsize=8)
    right.legend(fontsize=8, loc="upper right")
    xs = cells + [p[0] for p in paper]
    ticks = [2.0 ** k for k in range(-3, 8) if min(xs) / 1.5 <= 2.0 ** k <= max(xs) * 1.5]
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
        ax.set_xlabel("median object size in feature cells, sqrt(w h) / stride", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig
