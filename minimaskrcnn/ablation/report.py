"""A study's runs in numbers: mean and spread over the seeds, the headline difference against its standard
error, the verdict, and the Markdown tables (one per study, and the overview the README shows)."""
from __future__ import annotations

import math

from .studies import ABLATION_ITERS, METRICS, STRIDE_SERIES, Study, get_study, paper_value


def summarize(study: Study, runs: list[dict]) -> list[dict]:
    """Per variant: mean and standard deviation (over seeds, n - 1) of each metric, and the paper's."""
    rows = []
    for variant in study.variants:
        mine = [r for r in runs if r["variant"] == variant.name]
        row = {"variant": variant.name, "label": variant.label, "n": len(mine)}
        for task in study.tasks:
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
    diff = 100 * (a["mean"] - b["mean"]) + 0.0  # + 0.0: two equal means give 0.0, which prints as +0.0, not -0.0
    if a["std"] is None or b["std"] is None:
        return diff, None
    se = math.sqrt(a["std"] ** 2 / rows[better]["n"] + b["std"] ** 2 / rows[worse]["n"])
    return diff, 200 * se


def effect(study: Study, summary: list[dict]) -> tuple[float, float] | None:
    """The study's headline difference on our data (its claim: better minus worse), with two standard
    errors, in AP points; None when the study has no claim or a metric was not measured."""
    c = study.claim
    return difference(summary, c.better, c.worse, c.metric) if c is not None else None


def paper_difference(study: Study, better: str, worse: str, metric: str) -> float | None:
    """The paper's number for `better` minus `worse` on `metric`, or None where it does not give both."""
    variants = {v.name: v for v in study.variants}
    values = [paper_value(variants[name], metric) for name in (better, worse)]
    return None if None in values else round(values[0] - values[1], 2)


def paper_effect(study: Study) -> float | None:
    """The paper's number for the study's headline difference, or None where the paper gives none."""
    c = study.claim
    return paper_difference(study, c.better, c.worse, c.metric) if c is not None else None


def verdict(study: Study, summary: list[dict], iters: int = ABLATION_ITERS) -> str:
    """Whether the study's headline effect shows on our data, judged against the seeds' spread.

    A difference counts when it exceeds twice the standard error of the difference of two means
    (about a 95% two-sided test); close claims hold when the difference is within study.close_within AP
    points. Runs of fewer than ABLATION_ITERS steps (`iters`) get no verdict: they did not train enough."""
    measured = effect(study, summary)
    if measured is None:
        return "not measured" if study.claim is not None else ""
    if iters < ABLATION_ITERS:
        return f"no verdict: {iters}-step runs, short of a study's {ABLATION_ITERS}"
    diff, two_se = measured
    if study.claim.close:
        return "reproduced" if abs(diff) <= study.close_within else "not reproduced"
    if two_se is None:
        return "one seed: no spread to judge it against"
    if diff > two_se and diff > 0:
        return "reproduced"
    if diff < -two_se:
        return "reversed on this data"
    return "not shown on this data (within the seeds' spread)"


def finding(study: Study, summary: list[dict], iters: int = ABLATION_ITERS) -> str:
    """The verdict in a sentence: which difference, how large, against what spread."""
    measured = effect(study, summary)
    if measured is None:
        return verdict(study, summary, iters)
    diff, two_se = measured
    labels = {r["variant"]: r["label"] for r in summary}
    better, worse, metric = study.claim.better, study.claim.worse, study.claim.metric
    name = metric.replace("_", " ")
    if two_se is None and not study.claim.close:
        return f"{labels[better]} minus {labels[worse]}: {diff:+.1f} {name} ({verdict(study, summary, iters)})."
    spread = (f"close if within {study.close_within:g}" if study.claim.close
              else f"2 standard errors: {two_se:.1f}")
    return f"{labels[better]} minus {labels[worse]}: {diff:+.1f} {name} ({spread}): {verdict(study, summary, iters)}."


def mean_std_text(entry: dict, scale: float = 100.0) -> str:
    """A summary entry ({"mean", "std"} as fractions) as AP x 100, e.g. '57.3 ± 1.2'; '-' where not measured."""
    if entry["mean"] is None:
        return "-"
    spread = f" ± {scale * entry['std']:.1f}" if entry["std"] is not None else ""
    return f"{scale * entry['mean']:.1f}{spread}"


TASK_NAMES = {"mask": "mask", "box": "box", "keypoints": "keypoint"}  # in the tables' headers


def markdown_table(results: dict) -> str:
    """The study's table: ours (mean ± std over seeds, x100 as in the paper) for each of the study's tasks,
    beside the paper's numbers for the first of them (mask AP; keypoint AP for the keypoint study)."""
    tasks = get_study(results["study"]).tasks
    header = " | ".join(f"{TASK_NAMES[t]} AP | AP50 | AP75" for t in tasks)
    lines = [f"### {results['title']}", "",
             f"Ours: mean ± standard deviation over seeds {results['seeds']}, COCO AP x 100 on "
             f"{held_out_images(results)} held-out synthetic images. "
             + (f"Paper: COCO, {results['paper_setting']}." if results["paper_setting"] != "-" else "Not in the paper."),
             "",
             f"| variant | {header} | paper {TASK_NAMES[tasks[0]]} AP | AP50 | AP75 |",
             "|---|" + "---|" * 3 * (len(tasks) + 1)]
    for row in results["summary"]:
        ours = [mean_std_text(row[f"{t}_{m}"]) for t in tasks for m in METRICS]
        paper = [("-" if row[f"{tasks[0]}_{m}"]["paper"] is None else f"{row[f'{tasks[0]}_{m}']['paper']:.1f}")
                 for m in METRICS]
        lines.append(f"| {row['label']} | " + " | ".join(ours + paper) + " |")
    lines += ["", f"Paper's finding: {results['expectation']}"]
    if results.get("finding"):
        lines += [f"Here: {results['finding']}"]
    m = results["machine"]
    lines += ["", f"Command: `{results['command']}`; wall time {results['wall_seconds'] / 60:.1f} min with "
                  f"{results.get('jobs', 1)} job(s) on {m['device']} ({m['threads']} thread(s) each); the runs "
                  f"took {results.get('run_seconds', results['wall_seconds']) / 60:.1f} min together."]
    return "\n".join(lines) + "\n"


def held_out_images(results: dict) -> int:
    """How many held-out images a study's runs were evaluated on. Its train_config holds the data record
    (data/sources.py); results stored before TrainConfig held one say data="shapes" and num_val_images."""
    train = results["train_config"]
    return train["data"]["val"]["num_images"] if isinstance(train["data"], dict) else train["num_val_images"]


def overview_table(results: dict[str, dict]) -> str:
    """One line per study (Markdown): the headline difference in the paper and here, the verdict,
    and the study's wall time. The README shows this table for the stored results."""
    lines = ["| study | difference | paper | ours (± 2 s.e.) | verdict | wall time |",
             "|---|---|---|---|---|---|"]
    for data in results.values():
        study = get_study(data["study"])
        labels = short_labels(study)
        better, worse, metric = study.claim.better, study.claim.worse, study.claim.metric
        measured, paper = effect(study, data["summary"]), paper_effect(study)
        ours = "-"
        if measured is not None:
            diff, two_se = measured
            ours = f"{diff:+.1f}" + ("" if two_se is None else f" ± {two_se:.1f}")
        judged = verdict(study, data["summary"], data.get("train_config", {}).get("iters", ABLATION_ITERS))
        lines.append(f"| {study.name} | {labels[better]} - {labels[worse]}, {metric.replace('_', ' ')} | "
                     f"{'-' if paper is None else f'{paper:+.1f}'} | {ours} | {judged} | "
                     f"{data['wall_seconds'] / 60:.0f} min |")
    return "\n".join(lines) + "\n"


def short_labels(study: Study) -> dict[str, str]:
    """Variant name -> its label without the parenthesis ("RoIWarp (avg)" -> "RoIWarp"), unless
    two variants of the study would then look the same ("RoIAlign (max)", "RoIAlign (avg)")."""
    short = {v.name: v.label.split(" (")[0] for v in study.variants}
    taken = list(short.values())
    return {v.name: short[v.name] if taken.count(short[v.name]) == 1 else v.label for v in study.variants}


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
