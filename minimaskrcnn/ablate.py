"""The paper's ablations (Table 2), in miniature: `python -m minimaskrcnn ablate STUDY`.

Each study trains the CPU-sized model on the synthetic shapes once per variant and seed, with the
same data, schedule and seeds for every variant, so that the variant is the only difference. It
writes a Markdown table and a JSON file (mask and box AP, AP50, AP75: mean and spread over the
seeds, with the paper's numbers beside ours) and a bar chart.

The studies, after Table 2 of the paper:
  roi_layer     2c: RoIPool, RoIWarp, RoIAlign (max) and RoIAlign (avg), RoIs pooled at stride 16
  large_stride  2d: RoIPool against RoIAlign, RoIs pooled at stride 32
  mask_loss     2b: per-class sigmoid (binary loss) against multinomial softmax
  agnostic      Sec. 4.2: class-specific against class-agnostic masks
  mask_head     2e: the FCN mask head against an MLP
  aligned       not in the paper: RoIAlign with aligned=False against aligned=True
  strides       not in the paper: RoIPool against RoIAlign at strides 4 and 8, which with 2c and 2d
                shows RoIAlign's gain against the stride (STRIDE_SERIES, plot_gain_against_stride)

The paper's numbers are COCO mask AP of ResNet-50 models (C4 for 2b/2c, C5 for 2d, FPN for 2e);
ours are on 128 x 128 synthetic shapes with a small from-scratch model. Compare directions, not values.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import config as config_lib
from . import engine

METRICS = ("AP", "AP50", "AP75")


@dataclass(frozen=True)
class Variant:
    name: str  # used in file names, e.g. "roialign_avg"
    label: str  # as in the paper's table, e.g. "RoIAlign (avg)"
    overrides: dict  # RoIHeadsConfig fields this variant sets
    paper: dict = field(default_factory=dict)  # {"mask": (AP, AP50, AP75), "box": ...}; None where not given


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    paper_setting: str  # the paper's backbone for this table
    variants: tuple
    common: dict = field(default_factory=dict)  # RoIHeadsConfig fields every variant sets
    expectation: str = ""  # the paper's headline effect, in words
    claim: tuple = ()  # (better, worse, metric): the headline effect to check, or (a, b, metric, "close")


STRIDE_16, STRIDE_32 = {"pool_levels": ("p4",)}, {"pool_levels": ("p5",)}
ALIGN_AVG = {"pooler": "align", "pool_mode": "avg"}

STUDIES = {s.name: s for s in (
    Study("roi_layer", "RoI layer (Table 2c), stride 16", "ResNet-50-C4", (
        Variant("roipool", "RoIPool", {"pooler": "pool"}, {"mask": (26.9, 48.8, 26.4)}),
        Variant("roiwarp", "RoIWarp (avg)", {"pooler": "warp"}, {"mask": (27.1, 48.9, 27.1)}),
        Variant("roialign_max", "RoIAlign (max)", {"pooler": "align", "pool_mode": "max"}, {"mask": (30.2, 51.0, 31.8)}),
        Variant("roialign_avg", "RoIAlign (avg)", ALIGN_AVG, {"mask": (30.3, 51.2, 31.5)}),
    ), STRIDE_16, "RoIAlign beats RoIPool and RoIWarp by about 3 AP, most of it at AP75; max and avg tie.",
        ("roialign_avg", "roipool", "mask_AP75")),
    Study("large_stride", "RoIPool vs RoIAlign at stride 32 (Table 2d)", "ResNet-50-C5", (
        Variant("roipool", "RoIPool", {"pooler": "pool"}, {"mask": (23.6, 46.5, 21.6), "box": (28.2, 52.7, 26.9)}),
        Variant("roialign", "RoIAlign", ALIGN_AVG, {"mask": (30.9, 51.8, 32.1), "box": (34.0, 55.3, 36.4)}),
    ), STRIDE_32, "At stride 32 the gap grows: +7.3 mask AP, +10.5 AP75, and +5.8 box AP.",
        ("roialign", "roipool", "mask_AP75")),
    Study("mask_loss", "Multinomial vs independent masks (Table 2b)", "ResNet-50-C4", (
        Variant("softmax", "softmax (multinomial)", {"mask_loss": "softmax"}, {"mask": (24.8, 44.1, 25.1)}),
        Variant("sigmoid", "sigmoid (binary, ours)", {"mask_loss": "sigmoid"}, {"mask": (30.3, 51.2, 31.5)}),
    ), {}, "Decoupling masks from classes (sigmoid) beats the softmax by 5.5 mask AP.",
        ("sigmoid", "softmax", "mask_AP")),
    Study("agnostic", "Class-specific vs class-agnostic masks (Sec. 4.2)", "ResNet-50-C4", (
        Variant("specific", "class-specific", {"class_agnostic_masks": False}, {"mask": (30.3, None, None)}),
        Variant("agnostic", "class-agnostic", {"class_agnostic_masks": True}, {"mask": (29.7, None, None)}),
    ), {}, "A single class-agnostic mask is nearly as good: 29.7 against 30.3 mask AP.",
        ("specific", "agnostic", "mask_AP", "close")),
    Study("mask_head", "Mask branch: MLP vs FCN (Table 2e)", "ResNet-50-FPN", (
        Variant("mlp", "MLP (2 fc layers)", {"mask_head": "mlp"}, {"mask": (31.5, 53.7, 32.8)}),
        Variant("fcn", "FCN (convs + deconv)", {"mask_head": "fcn"}, {"mask": (33.6, 55.2, 35.3)}),
    ), {}, "The FCN, which keeps the mask's spatial layout, beats the MLP by 2.1 mask AP.",
        ("fcn", "mlp", "mask_AP")),
    Study("aligned", "RoIAlign: aligned=False vs aligned=True (not in the paper)", "-", (
        Variant("unaligned", "aligned=False (paper, torchvision)", {"aligned": False}),
        Variant("aligned", "aligned=True (half-pixel shift)", {"aligned": True}),
    ), ALIGN_AVG, "Not in the paper. Detectron2 reports aligned=True as slightly better.",
        ("aligned", "unaligned", "mask_AP75")),
    Study("strides", "RoIPool vs RoIAlign at strides 4 and 8 (not in the paper)", "-", (
        Variant("roipool_s4", "RoIPool, stride 4", {"pooler": "pool", "pool_levels": ("p2",)}),
        Variant("roialign_s4", "RoIAlign, stride 4", {**ALIGN_AVG, "pool_levels": ("p2",)}),
        Variant("roipool_s8", "RoIPool, stride 8", {"pooler": "pool", "pool_levels": ("p3",)}),
        Variant("roialign_s8", "RoIAlign, stride 8", {**ALIGN_AVG, "pool_levels": ("p3",)}),
    ), {}, "Not in the paper as such; with 2c (stride 16) and 2d (stride 32) it gives RoIAlign's gain "
           "against the stride, which the paper finds grows from 16 to 32.",
        ("roialign_s8", "roipool_s8", "mask_AP75")),
)}

# RoIPool and RoIAlign (avg) at each stride, from the studies that hold them: (stride, study, RoIPool
# variant, RoIAlign variant). All use the same recipe and seeds, so the rows can be set side by side.
STRIDE_SERIES = ((4, "strides", "roipool_s4", "roialign_s4"), (8, "strides", "roipool_s8", "roialign_s8"),
                 (16, "roi_layer", "roipool", "roialign_avg"), (32, "large_stride", "roipool", "roialign"))


def study_train_config(iters: int | None = None) -> engine.TrainConfig:
    """The schedule every run of a study uses: the demo's recipe (cli.DEMO). A shorter `iters` (a
    quick look, as in notebook 08) keeps the warmup's share of the schedule."""
    from .cli import DEMO  # the CLI owns the demo's recipe

    iters = iters or ABLATION_ITERS
    warmup = max(1, round(DEMO.warmup_iters * iters / DEMO.iters))
    return dataclasses.replace(DEMO, iters=iters, warmup_iters=warmup, ckpt_every=10**9, progress=False)


# Optimizer steps per run: the demo's full schedule. At half of it (450 steps) the runs were still on
# the steep part of the learning curve, and three seeds of one variant spread from 0.13 to 0.44 mask AP,
# which hid every effect; a study of 4 variants x 3 seeds still fits in an hour on a 2-core CPU.
ABLATION_ITERS = 900


def variant_config(study: Study, variant: Variant, num_classes: int, cfg: engine.TrainConfig) -> config_lib.ModelConfig:
    """The model config of one variant: the training preset with the study's and variant's RoI-head fields."""
    base = engine.build_model_config(cfg, num_classes)
    fields = {f.name for f in dataclasses.fields(config_lib.RoIHeadsConfig)}
    overrides = {**study.common, **variant.overrides}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"study {study.name}, variant {variant.name}: unknown RoIHeadsConfig fields {unknown}")
    return dataclasses.replace(base, roi_heads=dataclasses.replace(base.roi_heads, **overrides))


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    return STUDIES[name]


def run_one(name: str, variant_name: str, seed: int, base: engine.TrainConfig, out: str,
            threads: int | None = None) -> dict:
    """Train and evaluate one variant of a study with one seed; return its metrics."""
    if threads:
        torch.set_num_threads(threads)
    study = get_study(name)
    variant = next(v for v in study.variants if v.name == variant_name)
    cfg = dataclasses.replace(base, seed=seed, out=str(Path(out) / name / variant.name / f"seed{seed}"))
    train_set, val_set = engine.build_datasets(cfg)
    model_config = variant_config(study, variant, train_set.num_classes, cfg)
    result = engine.train(cfg, model_config=model_config, train_set=train_set, val_set=val_set)
    metrics = result.metrics or {}
    run = {"variant": variant.name, "seed": seed, "seconds": round(result.seconds, 1),
           "mask": {m: metrics.get("segm", {}).get(m) for m in METRICS},
           "box": {m: metrics.get("bbox", {}).get(m) for m in METRICS}}
    print(f"{name} {variant.name} seed {seed}: mask AP {run['mask']['AP']:.3f}, box AP {run['box']['AP']:.3f} "
          f"({result.seconds:.0f} s)", flush=True)
    return run


def select_variants(study: Study, names=None) -> Study:
    """The study with only the variants named (all of them when names is None), in the study's order."""
    if names is None:
        return study
    known = [v.name for v in study.variants]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"study {study.name}: unknown variants {unknown}; choose from {known}")
    return dataclasses.replace(study, variants=tuple(v for v in study.variants if v.name in names))


def run_study(name: str, seeds=(0, 1, 2), iters: int | None = None, out: str = "runs/ablations",
              device: str = "cpu", command: str = "", overrides: dict | None = None, jobs: int = 1,
              variants=None) -> dict:
    """Train every variant of study `name` with every seed; return the results dict (see write_results).

    overrides: TrainConfig fields to change for every run (tests use it to shrink the data).
    jobs > 1 runs that many trainings at once in separate processes, one thread each (a many-core
    machine or a GPU); every run is seeded on its own, so the results do not depend on jobs.
    variants: names of the variants to train (default: all); the summary then holds only those."""
    study = select_variants(get_study(name), variants)
    base = dataclasses.replace(study_train_config(iters), device=device, **(overrides or {}))
    tasks = [(name, v.name, seed, base, out) for v in study.variants for seed in seeds]
    start = time.perf_counter()
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(run_one, *zip(*tasks), [1] * len(tasks)))
    else:
        runs = [run_one(*task) for task in tasks]
    train = dataclasses.asdict(base)
    train.pop("seed"), train.pop("out")
    return {"study": name, "title": study.title, "paper_setting": study.paper_setting,
            "expectation": study.expectation, "command": command, "seeds": list(seeds),
            "train_config": train, "runs": runs, "summary": (summary := summarize(study, runs)),
            "finding": finding(study, summary), "wall_seconds": round(time.perf_counter() - start, 1),
            "run_seconds": round(sum(r["seconds"] for r in runs), 1), "jobs": jobs,
            "machine": {"torch": torch.__version__, "threads": 1 if jobs > 1 else torch.get_num_threads(),
                        "device": device, "platform": platform.platform()}}


def summarize(study: Study, runs: list[dict]) -> list[dict]:
    """Per variant: mean and standard deviation (over seeds, n - 1) of each metric, and the paper's."""
    rows = []
    for variant in study.variants:
        mine = [r for r in runs if r["variant"] == variant.name]
        row = {"variant": variant.name, "label": variant.label, "n": len(mine)}
        for task in ("mask", "box"):
            for m in METRICS:
                values = [r[task][m] for r in mine if r[task][m] is not None]
                mean = sum(values) / len(values) if values else None
                std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                       if len(values) > 1 else None)
                row[f"{task}_{m}"] = {"mean": mean, "std": std, "paper": paper_value(variant, f"{task}_{m}")}
        rows.append(row)
    return rows


def difference(summary: list[dict], better: str, worse: str, metric: str) -> tuple[float, float] | None:
    """(mean of `better` minus mean of `worse`, two standard errors of that difference) for `metric`
    of a study's summary, in AP points (x 100); None where a variant or a mean is missing, and two
    standard errors None where a variant has a single seed (no spread to estimate them from).

    The standard error of a difference of two means over seeds: sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
    rows = {r["variant"]: r for r in summary}
    if better not in rows or worse not in rows:
        return None
    a, b = rows[better][metric], rows[worse][metric]
    if a["mean"] is None or b["mean"] is None:
        return None
    if a["std"] is None or b["std"] is None:
        return 100 * (a["mean"] - b["mean"]), None
    se = math.sqrt(a["std"] ** 2 / rows[better]["n"] + b["std"] ** 2 / rows[worse]["n"])
    return 100 * (a["mean"] - b["mean"]), 200 * se


def effect(study: Study, summary: list[dict]) -> tuple[float, float] | None:
    """The study's headline difference on our data (its claim: better minus worse), with two standard
    errors, in AP points; None when the study has no claim or a metric was not measured."""
    return difference(summary, *study.claim[:3]) if study.claim else None


def paper_value(variant: Variant, metric: str) -> float | None:
    """The paper's number for a variant's `metric` (e.g. "mask_AP75"), or None where it gives none."""
    task, m = metric.split("_", 1)
    values = variant.paper.get(task)
    return None if values is None else values[METRICS.index(m)]


def paper_difference(study: Study, better: str, worse: str, metric: str) -> float | None:
    """The paper's number for `better` minus `worse` on `metric`, or None where it does not give both."""
    variants = {v.name: v for v in study.variants}
    values = [paper_value(variants[name], metric) for name in (better, worse)]
    return None if None in values else round(values[0] - values[1], 2)


def paper_effect(study: Study) -> float | None:
    """The paper's number for the study's headline difference, or None where the paper gives none."""
    return paper_difference(study, *study.claim[:3]) if study.claim else None


def verdict(study: Study, summary: list[dict]) -> str:
    """Whether the study's headline effect shows on our data, judged against the seeds' spread.

    A difference counts when it exceeds twice the standard error of the difference of two means
    (about a 95% two-sided test); "close" claims hold when the difference is within 2 AP points."""
    measured = effect(study, summary)
    if measured is None:
        return "not measured" if study.claim else ""
    diff, two_se = measured
    if len(study.claim) > 3:  # a "close" claim
        return "reproduced" if abs(diff) <= 2.0 else "not reproduced"
    if two_se is None:
        return "one seed: no spread to judge it against"
    if diff > two_se and diff > 0:
        return "reproduced"
    if diff < -two_se:
        return "reversed on this data"
    return "not shown on this data (within the seeds' spread)"


def finding(study: Study, summary: list[dict]) -> str:
    """The verdict in a sentence: which difference, how large, against what spread."""
    measured = effect(study, summary)
    if measured is None:
        return verdict(study, summary)
    diff, two_se = measured
    labels = {r["variant"]: r["label"] for r in summary}
    better, worse, metric = study.claim[:3]
    name = metric.replace("_", " ")
    if two_se is None and len(study.claim) == 3:
        return f"{labels[better]} minus {labels[worse]}: {diff:+.1f} {name} ({verdict(study, summary)})."
    spread = "close if within 2" if len(study.claim) > 3 else f"2 standard errors: {two_se:.1f}"
    return f"{labels[better]} minus {labels[worse]}: {diff:+.1f} {name} ({spread}): {verdict(study, summary)}."


def mean_std_text(entry: dict, scale: float = 100.0) -> str:
    """A summary entry ({"mean", "std"} as fractions) as AP x 100, e.g. '57.3 ± 1.2'; '-' where not measured."""
    if entry["mean"] is None:
        return "-"
    spread = f" ± {scale * entry['std']:.1f}" if entry["std"] is not None else ""
    return f"{scale * entry['mean']:.1f}{spread}"


def markdown_table(results: dict) -> str:
    """The study's table: ours (mean ± std over seeds, x100 as in the paper) beside the paper's."""
    lines = [f"### {results['title']}", "",
             f"Ours: mean ± standard deviation over seeds {results['seeds']}, COCO AP x 100 on "
             f"{results['train_config']['num_val_images']} held-out synthetic images. "
             + (f"Paper: COCO, {results['paper_setting']}." if results["paper_setting"] != "-" else "Not in the paper."),
             "",
             "| variant | mask AP | AP50 | AP75 | box AP | AP50 | AP75 | paper mask AP | AP50 | AP75 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["summary"]:
        ours = [mean_std_text(row[f"{t}_{m}"]) for t in ("mask", "box") for m in METRICS]
        paper = [("-" if row[f"mask_{m}"]["paper"] is None else f"{row[f'mask_{m}']['paper']:.1f}") for m in METRICS]
        lines.append(f"| {row['label']} | " + " | ".join(ours + paper) + " |")
    lines += ["", f"Paper's finding: {results['expectation']}"]
    if results.get("finding"):
        lines += [f"Here: {results['finding']}"]
    m = results["machine"]
    lines += ["", f"Command: `{results['command']}`; wall time {results['wall_seconds'] / 60:.1f} min with "
                  f"{results.get('jobs', 1)} job(s) on {m['device']} ({m['threads']} thread(s) each); the runs "
                  f"took {results.get('run_seconds', results['wall_seconds']) / 60:.1f} min together."]
    return "\n".join(lines) + "\n"


def overview_table(results: dict[str, dict]) -> str:
    """One line per study (Markdown): the headline difference in the paper and here, the verdict,
    and the study's wall time. The README shows this table for the stored results."""
    lines = ["| study | difference | paper | ours (± 2 s.e.) | verdict | wall time |",
             "|---|---|---|---|---|---|"]
    for data in results.values():
        study = get_study(data["study"])
        labels = short_labels(study)
        better, worse, metric = study.claim[:3]
        measured, paper = effect(study, data["summary"]), paper_effect(study)
        ours = "-"
        if measured is not None:
            diff, two_se = measured
            ours = f"{diff:+.1f}" + ("" if two_se is None else f" ± {two_se:.1f}")
        lines.append(f"| {study.name} | {labels[better]} - {labels[worse]}, {metric.replace('_', ' ')} | "
                     f"{'-' if paper is None else f'{paper:+.1f}'} | {ours} | {verdict(study, data['summary'])} | "
                     f"{data['wall_seconds'] / 60:.0f} min |")
    return "\n".join(lines) + "\n"


def short_labels(study: Study) -> dict[str, str]:
    """Variant name -> its label without the parenthesis ("RoIWarp (avg)" -> "RoIWarp"), unless
    two variants of the study would then look the same ("RoIAlign (max)", "RoIAlign (avg)")."""
    short = {v.name: v.label.split(" (")[0] for v in study.variants}
    taken = list(short.values())
    return {v.name: short[v.name] if taken.count(short[v.name]) == 1 else v.label for v in study.variants}


def plot_study(results: dict, path: str | Path | None = None):
    """Bar chart: mask AP, AP50, AP75 of each variant, error bars one standard deviation."""
    import matplotlib.pyplot as plt

    rows = results["summary"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(rows), 3.2), dpi=80)
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        means = [100 * (row[f"mask_{m}"]["mean"] or 0) for m in METRICS]
        errs = [100 * (row[f"mask_{m}"]["std"] or 0) for m in METRICS]
        ax.bar([j + i * width for j in range(len(METRICS))], means, width, yerr=errs, capsize=3, label=row["label"])
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(METRICS))], [f"mask {m}" for m in METRICS])
    ax.set_ylabel("AP x 100 (synthetic shapes)")
    ax.set_title(results["title"], fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def plot_against_paper(results: dict[str, dict], metric: str = "mask_AP75", cols: int = 3):
    """One panel per study: each variant's `metric` (e.g. "mask_AP75"), ours beside the paper's, AP x 100.

    Ours: mean over seeds (bar), one standard deviation (error bar) and every seed's run (dots).
    The paper's: its Table 2 entry (hatched bar), where it gives one. The scales differ (COCO with a
    ResNet-50 against small synthetic shapes): compare the order of the variants, not the heights."""
    import matplotlib.pyplot as plt

    task, m = metric.split("_", 1)
    rows_of_panels = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(3.4 * cols, 2.9 * rows_of_panels), dpi=80, squeeze=False)
    for ax, data in zip(axes.flat, results.values()):
        for i, row in enumerate(data["summary"]):
            entry = row[metric]
            seeds = [100 * r[task][m] for r in data["runs"] if r["variant"] == row["variant"]]
            ax.bar(i - 0.2, 100 * entry["mean"], 0.4, yerr=100 * (entry["std"] or 0), capsize=3, color="tab:blue",
                   label="ours" if i == 0 else None)
            ax.plot([i - 0.2] * len(seeds), seeds, "o", markersize=3.5, markerfacecolor="white", markeredgecolor="k",
                    markeredgewidth=0.8)
            if entry["paper"] is not None:
                ax.bar(i + 0.2, entry["paper"], 0.4, color="white", edgecolor="tab:orange", hatch="///",
                       label="paper" if i == 0 else None)
        ticks = [r["label"].replace(" (", "\n(").replace(", ", "\n") for r in data["summary"]]  # a line per part
        ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
        ax.set_title(data["title"], fontsize=8)
        ax.set_ylim(0, 100)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.flat[len(results):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(f"{metric.replace('_', ' ')} x 100", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="upper left")
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
        better, worse, metric = study.claim[:3]
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
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_ylabel("difference, AP points")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def gain_by_stride(results: dict[str, dict], metric: str = "mask_AP75") -> list[dict]:
    """RoIPool and RoIAlign at every stride of STRIDE_SERIES whose study is in `results`: per stride,
    both summary entries of `metric`, RoIAlign's gain with two standard errors (AP points), and the
    paper's gain where its tables give both numbers."""
    rows = []
    for stride, name, pool, align in STRIDE_SERIES:
        if name not in results:
            continue
        summary = results[name]["summary"]
        entries = {r["variant"]: r[metric] for r in summary}
        gain, two_se = difference(summary, align, pool, metric)
        rows.append({"stride": stride, "roipool": entries[pool], "roialign": entries[align], "gain": gain,
                     "two_se": two_se, "paper_gain": paper_difference(get_study(name), align, pool, metric)})
    return rows


def plot_gain_against_stride(results: dict[str, dict], metric: str = "mask_AP75"):
    """Left: `metric` of RoIPool and RoIAlign against the stride the RoIs are pooled at (mean ± std
    over seeds). Right: RoIAlign's gain (± two standard errors) beside the paper's at 16 and 32."""
    import matplotlib.pyplot as plt

    rows = gain_by_stride(results, metric)
    strides = [r["stride"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.0), dpi=80)
    for key, label, colour in (("roipool", "RoIPool", "tab:red"), ("roialign", "RoIAlign", "tab:blue")):
        left.errorbar(strides, [100 * r[key]["mean"] for r in rows], [100 * (r[key]["std"] or 0) for r in rows],
                      marker="o", capsize=3, color=colour, label=label)
    left.set_ylabel(f"{metric.replace('_', ' ')} x 100 (ours)")
    left.legend(fontsize=8)
    right.errorbar(strides, [r["gain"] for r in rows], [r["two_se"] or 0.0 for r in rows], marker="o", capsize=3,
                   color="tab:blue", label="ours (± 2 s.e.)")
    paper = [(r["stride"], r["paper_gain"]) for r in rows if r["paper_gain"] is not None]
    if paper:
        right.plot(*zip(*paper), "s", color="tab:orange", markerfacecolor="white", label="paper (COCO)")
    right.axhline(0, color="k", linewidth=0.8)
    right.set_ylabel("RoIAlign - RoIPool, AP points")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(strides, [str(s) for s in strides])
        ax.set_xlabel("stride of the pooled feature map (pixels)")
    fig.tight_layout()
    return fig


def write_results(results: dict, folder: str | Path) -> list[Path]:
    """Write <study>.json, <study>.md and <study>.png into folder; return their paths."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{results['study']}.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown_table(results))
    plt.close(plot_study(results, paths[2]))
    return paths


def load_results(folder: str | Path) -> dict[str, dict]:
    """The stored results of every study found in folder, by study name, in the order of STUDIES."""
    found = {}
    for path in Path(folder).glob("*.json"):
        data = json.loads(path.read_text())
        if data.get("study") in STUDIES:
            found[data["study"]] = data
    return {name: found[name] for name in STUDIES if name in found}


def add_arguments(p) -> None:
    """The `ablate` subcommand's flags (cli.py builds the parser)."""
    p.add_argument("study", nargs="?", help=f"one of {', '.join(STUDIES)}, or 'all'")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every variant (default 0 1 2)")
    p.add_argument("--iters", type=int, default=None, help=f"steps per run (default {ABLATION_ITERS})")
    p.add_argument("--device", default="cpu", help="cpu (the timings in the README) or cuda")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (a many-core machine or a GPU)")
    p.add_argument("--variants", nargs="+", default=None, help="train only these variants (default: all)")
    p.add_argument("--out", default="runs/ablations", help="folder for the runs' logs")
    p.add_argument("--results", default="benchmarks/ablations", help="folder for <study>.json/.md/.png")


def cmd_ablate(args) -> None:
    import sys

    if args.list or not args.study:
        for study in STUDIES.values():
            print(f"{study.name:14s} {study.title}: {', '.join(v.label for v in study.variants)}")
        return
    names = list(STUDIES) if args.study == "all" else [get_study(args.study).name]
    command = "python -m minimaskrcnn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["ablate"] else ""
    for name in names:
        results = run_study(name, tuple(args.seeds), args.iters, args.out, args.device,
                            command or f"python -m minimaskrcnn ablate {name}", jobs=args.jobs,
                            variants=args.variants)
        paths = write_results(results, args.results)
        print(markdown_table(results))
        print("wrote " + ", ".join(str(p) for p in paths))
