"""Running a study: `python -m minimaskrcnn ablate STUDY`, every variant with every seed, then its results.

Every run trains with the demo's recipe (`training.DEMO`; a study's `train` fields over it) and is evaluated
with pycocotools on the held-out shapes; a study writes <study>.json (every run, the summary, the command, the
machine), <study>.md and <study>.png (`write_results`).
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from .. import config as config_lib
from ..paths import holds_run, make_room
from ..training import DEMO, TrainConfig, build_datasets, build_model_config, train
from ..training.config import settings
from .plots import plot_study
from .report import finding, markdown_table, summarize
from .studies import ABLATION_ITERS, METRICS, STUDIES, TASKS, Study, Variant, get_study, select_variants


def study_train_config(iters: int | None = None) -> TrainConfig:
    """The schedule every run of a study uses: the demo's recipe (training.DEMO). A shorter `iters` (a
    quick look, as in notebook 08) keeps the warmup's share of the schedule."""
    iters = iters or ABLATION_ITERS
    warmup = max(1, round(DEMO.warmup_iters * iters / DEMO.iters))
    return dataclasses.replace(DEMO, iters=iters, warmup_iters=warmup, ckpt_every=10**9, progress=False)


def variant_config(study: Study, variant: Variant, num_classes: int, cfg: TrainConfig,
                   num_keypoints: int = 0) -> config_lib.ModelConfig:
    """The model config of one variant: the training preset with the study's and variant's RoI-head fields
    (num_keypoints: the data's keypoint types, which a keypoint preset learns)."""
    base = build_model_config(cfg, num_classes, num_keypoints)
    fields = {f.name for f in dataclasses.fields(config_lib.RoIHeadsConfig)}
    overrides = {**study.common, **variant.overrides}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"study {study.name}, variant {variant.name}: unknown RoIHeadsConfig fields {unknown}")
    return dataclasses.replace(base, roi_heads=dataclasses.replace(base.roi_heads, **overrides))


def run_folder(out, name: str, variant: str, seed: int) -> Path:
    """Where one run of a study writes: out/runs/<study>/<variant>/seed<k>."""
    return Path(out) / "runs" / name / variant / f"seed{seed}"


def earlier_results(out, name: str, seeds=(0, 1, 2), variants=None) -> list[str]:
    """What a run of study `name` would replace in out (paths relative to it): its results files, and the folders
    of its runs that hold one."""
    study = select_variants(get_study(name), variants)
    held = [run_folder(out, name, v.name, seed) for v in study.variants for seed in seeds]
    return ([f"{name}.{ext}" for ext in ("json", "md", "png") if (Path(out) / f"{name}.{ext}").exists()]
            + [str(folder.relative_to(out)) for folder in held if holds_run(folder)])


def run_one(name: str, variant_name: str, seed: int, base: TrainConfig, out: str,
            threads: int | None = None) -> dict:
    """Train and evaluate one variant of a study with one seed; return its metrics."""
    if threads:
        torch.set_num_threads(threads)
    study = get_study(name)
    variant = next(v for v in study.variants if v.name == variant_name)
    cfg = dataclasses.replace(base, seed=seed, out=str(run_folder(out, name, variant.name, seed)))
    train_set, val_set = build_datasets(cfg)
    model_config = variant_config(study, variant, train_set.num_classes, cfg, train_set.num_keypoints)
    result = train(cfg, model_config=model_config, train_set=train_set, val_set=val_set)
    metrics = result.metrics or {}
    run = {"variant": variant.name, "seed": seed, "seconds": round(result.seconds, 1),
           **{task: {m: metrics.get(COCO_IOU_TYPE[task], {}).get(m) for m in METRICS} for task in TASKS}}
    measured = ", ".join(f"{task} AP {run[task]['AP']:.3f}" for task in study.tasks if run[task]["AP"] is not None)
    print(f"{name} {variant.name} seed {seed}: {measured} ({result.seconds:.0f} s)", flush=True)
    return run


COCO_IOU_TYPE = {"mask": "segm", "box": "bbox", "keypoints": "keypoints"}  # a run's task -> evaluate()'s key


def run_study(name: str, seeds=(0, 1, 2), iters: int | None = None, out: str = "runs/ablations",
              device: str = "cpu", command: str = "", overrides: dict | None = None, jobs: int = 1,
              variants=None, overwrite: bool = False) -> dict:
    """Train every variant of study `name` with every seed, each run in out/runs/<study>/<variant>/seed<k>;
    return the results dict (see write_results, which `ablate` calls with the same `out`).

    overrides: TrainConfig fields to change for every run, over the study's own `train` fields (tests use it to
    shrink the data: data=RunData.shapes(8)).
    jobs > 1 runs that many trainings at once in separate processes, one thread each (a many-core
    machine or a GPU); every run is seeded on its own, so the results do not depend on jobs.
    variants: names of the variants to train (default: all); the summary then holds only those.
    overwrite: out holds this study's results or runs: move them into out/replaced-<time>/ (paths.make_room) instead of
    refusing, before any training starts."""
    study = select_variants(get_study(name), variants)
    base = dataclasses.replace(study_train_config(iters), device=device, **{**study.train, **(overrides or {})})
    tasks = [(name, v.name, seed, base, out) for v in study.variants for seed in seeds]
    make_room(out, earlier_results(out, name, seeds, variants), overwrite, "choose another --out")
    start = time.perf_counter()
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(run_one, *zip(*tasks), [1] * len(tasks)))
    else:
        runs = [run_one(*task) for task in tasks]
    train = {**settings(base), "data": base.data.to_dict()}  # the schedule and data every run shares
    train.pop("seed"), train.pop("out")
    return {"study": name, "title": study.title, "paper_setting": study.paper_setting,
            "expectation": study.expectation, "command": command, "seeds": list(seeds),
            "train_config": train, "runs": runs, "summary": (summary := summarize(study, runs)),
            "finding": finding(study, summary, base.iters), "wall_seconds": round(time.perf_counter() - start, 1),
            "run_seconds": round(sum(r["seconds"] for r in runs), 1), "jobs": jobs,
            "machine": {"torch": torch.__version__, "threads": 1 if jobs > 1 else torch.get_num_threads(),
                        "device": device, "platform": platform.platform()}}


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
