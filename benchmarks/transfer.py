"""Transfer on data the repository makes itself: the `make demo` model (trained on squares, circles and triangles)
fine-tuned on shapes of NEW kinds (stars, rings, crosses), against the same model trained from scratch.

    python benchmarks/transfer.py                    # trains the demo model first when runs/demo/last.pt is missing
    python benchmarks/transfer.py --source runs/demo/last.pt --jobs 2

Every run has the same recipe and step budget: the demo's (training.DEMO: AdamW, lr 2e-3, batch 4 of 128x128,
flips), but a constant lr after a 25-step warmup, so that one run evaluated every `--eval-every` steps gives the
whole curve of AP against the budget (a cosine schedule would need a run per budget). The variants:

    scratch        random weights, every stage trains (what training on your own data did before --init)
    finetune_tl0   init from the demo model, the backbone frozen (trainable_layers 0: the FPN and the heads train)
    finetune_tl3   the same, the last 3 stages train (the default from pretrained weights)
    finetune_tl5   the same, every stage trains

The class-dependent tensors (box classifier, box regressor, mask predictor) start afresh: no new kind shares a
name with an old one. 200 training images (a small dataset, like most of your own), 50 held-out ones scored with
pycocotools (the package's `evaluate`), 3 seeds (model init of the fresh tensors, data order, augmentation).
"Fine-tuning wins" at a budget when the mean mask AP of finetune_tl3 is above scratch's by more than two
standard errors of the difference of the means.

Writes benchmarks/transfer/{transfer.json, transfer.md, transfer.png} (`--out`); each run's log stays in
runs/transfer/<variant>_s<seed>/ and a finished run is not run again (`--fresh` reruns them). One thread per
run (torch.set_num_threads(1)); `--jobs 2` runs two at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from minimaskrcnn.data.sources import RunData, Shapes
from minimaskrcnn.training import DEMO, read_records, train

NEW_KINDS = ("star", "ring", "cross")
VARIANTS = {  # name -> TrainConfig fields of its own
    "scratch": {},
    "finetune_tl0": {"trainable_layers": 0},
    "finetune_tl3": {"trainable_layers": 3},
    "finetune_tl5": {"trainable_layers": 5},
}
HEADLINE = "finetune_tl3"
LABELS = {"scratch": "from scratch", "finetune_tl0": "fine-tune, 0 stages train",
          "finetune_tl3": "fine-tune, 3 stages train", "finetune_tl5": "fine-tune, 5 stages train"}


def study_config(iters: int, eval_every: int, num_images: int, num_val: int):
    """The recipe of every run: the demo's, on new kinds, at a constant lr after the warmup."""
    train_set = Shapes(num_images, 128, seed=10, kinds=NEW_KINDS)
    return dataclasses.replace(DEMO, data=RunData(train_set, train_set.held_out(num_val)), iters=iters,
                               eval_every=eval_every, warmup_iters=25, schedule="step", milestones=(),
                               log_every=5, ckpt_every=iters, progress=False)


def run_one(variant: str, seed: int, base, source: str, out: str) -> str:
    """Train one run (in a worker process, one thread); returns its folder."""
    torch.set_num_threads(1)
    fields = dict(VARIANTS[variant])
    if variant != "scratch":
        fields["init"] = source
    cfg = dataclasses.replace(base, seed=seed, out=out, **fields)
    train(cfg)
    return out


def finished(out: Path, iters: int, settings: dict) -> bool:
    """Whether out holds a run of these settings evaluated at step `iters` or later. A longer run counts: at a
    constant lr nothing before step `iters` depends on the step count, so its first `iters` steps are this run."""
    log, marker = out / "metrics.jsonl", out / "study_run.json"
    if not log.exists() or not marker.exists() or json.loads(marker.read_text()) != settings:
        return False
    return any(r.get("step", 0) >= iters and "eval" in r for r in read_records(log))


def summarize_run(out: Path, iters: int, log_every: int) -> dict:
    """A run's curve (step -> box and mask AP, up to `iters`) and its median seconds per step (the log records
    whose period holds no evaluation)."""
    records = [r for r in read_records(out / "metrics.jsonl") if r["step"] <= iters]
    curve = {r["step"]: {"box": r["eval"]["bbox"]["AP"], "mask": r["eval"]["segm"]["AP"]}
             for r in records if "eval" in r}
    # a record at step k covers steps k - log_every + 1 .. k; an evaluation after step s falls in the next one
    times = [r["sec_per_iter"] for r in records
             if "sec_per_iter" in r and r["step"] > log_every and r["step"] - log_every not in curve]
    times = times or [r["sec_per_iter"] for r in records if "sec_per_iter" in r]  # a run too short to choose
    return {"curve": {str(k): v for k, v in sorted(curve.items())}, "sec_per_step": statistics.median(times)}


def step_cpu_seconds(run_folder: Path, variant: str, base, steps: int = 10, warmup: int = 3) -> float:
    """CPU seconds of one training step (forward, backward, AdamW update) of a finished run's model, with the
    variant's frozen stages, on a fixed batch of 4 training images, one thread: the median of `steps` after
    `warmup`. Timed from the run's final weights, where it finds as many objects (positive RoIs, whose masks
    dominate the step) as it will at the end of the budget; CPU time, since wall time on a shared machine
    measures the other jobs."""
    from minimaskrcnn.checkpoint import read_checkpoint
    from minimaskrcnn.data import collate
    from minimaskrcnn.data.sources import build
    from minimaskrcnn.model import MaskRCNN
    from minimaskrcnn.training import build_model_config
    from minimaskrcnn.training.schedule import build_optimizer

    torch.set_num_threads(1)
    weights = run_folder / "last.pt"
    cfg = dataclasses.replace(base, **VARIANTS[variant], **({"init": str(weights)} if variant != "scratch" else {}))
    data = build(cfg.data.train)
    model = MaskRCNN(build_model_config(cfg, data.num_classes))
    model.load_state_dict(read_checkpoint(weights)["model"])
    optimizer = build_optimizer(model.train(), dataclasses.replace(cfg, lr=cfg.lr or 1e-3))
    images, targets = collate([data[i] for i in range(4)])
    times = []
    for k in range(warmup + steps):
        start = time.process_time()
        losses = model(images, targets).losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        if k >= warmup:
            times.append(time.process_time() - start)
    return statistics.median(times)


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (None for one value)."""
    n = len(values)
    return statistics.mean(values), (statistics.stdev(values) / math.sqrt(n) if n > 1 else None)


def pm(entry, scale: float = 100) -> str:
    """"72.1 ± 1.3" (mean ± s.e.), or "72.1 (1 seed)"."""
    mean, se = entry
    return f"{scale * mean:.1f} ± {scale * se:.1f}" if se is not None else f"{scale * mean:.1f} (1 seed)"


def summarize(runs: list[dict], budgets: list[int]) -> dict:
    """Per variant and budget: mean and standard error of mask / box AP over the seeds; the headline difference
    (HEADLINE - scratch) with its standard error, and whether it is above two of them."""
    by_variant = {}
    for v in VARIANTS:
        rows = [r for r in runs if r["variant"] == v]
        if not rows:
            continue
        by_variant[v] = {
            "label": LABELS[v], "seeds": [r["seed"] for r in rows],
            "sec_per_step": mean_se([r["sec_per_step"] for r in rows]),  # wall, from the logs
            "cpu_sec_per_step": next((r["cpu_sec_per_step"] for r in rows if "cpu_sec_per_step" in r), None),
            "mask": {str(b): mean_se([r["curve"][str(b)]["mask"] for r in rows]) for b in budgets},
            "box": {str(b): mean_se([r["curve"][str(b)]["box"] for r in rows]) for b in budgets},
        }
    comparison = []
    if HEADLINE in by_variant and "scratch" in by_variant:
        for b in budgets:
            (m1, s1), (m0, s0) = by_variant[HEADLINE]["mask"][str(b)], by_variant["scratch"]["mask"][str(b)]
            if s1 is None or s0 is None:  # one seed: no standard error, no verdict
                continue
            se = math.sqrt(s1 ** 2 + s0 ** 2)
            comparison.append({"budget": b, "difference": m1 - m0, "se": se, "wins": m1 - m0 > 2 * se})
    first = next((c for c in comparison if c["wins"]), None)
    return {"variants": by_variant, "comparison": comparison, "first_win": first}


def markdown(results: dict) -> str:
    s = results["summary"]
    budgets = results["budgets"]
    variants = list(s["variants"])
    lines = [f"# Transfer: the demo model fine-tuned on {', '.join(NEW_KINDS)}, against from scratch", "",
             f"Mask AP x 100 on {results['num_val_images']} held-out images, mean ± standard error over seeds "
             f"{results['seeds']}; {results['num_images']} training images, batch 4, constant lr after warmup. "
             f"Command: `{results['command']}`.", "",
             "| steps | " + " | ".join(s["variants"][v]["label"] for v in variants)
             + f" | {LABELS[HEADLINE]} - scratch (± 2 s.e.) |",
             "|---:|" + "---:|" * (len(variants) + 1)]
    comparison = {c["budget"]: c for c in s["comparison"]}
    for b in budgets:
        cells = [pm(s["variants"][v]["mask"][str(b)]) for v in variants]
        c = comparison.get(b)
        diff = (f"{100 * c['difference']:+.1f} ± {200 * c['se']:.1f}" + (" **wins**" if c["wins"] else "")) if c else "-"
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {diff} |")
    lines += ["", "| variant | mask AP at the full budget | box AP | CPU seconds per step (1 thread) | "
                  "wall seconds per step (shared machine) |", "|---|---:|---:|---:|---:|"]
    last = str(budgets[-1])
    for v in variants:
        row = s["variants"][v]
        cpu = f"{row['cpu_sec_per_step']:.3f}" if row["cpu_sec_per_step"] is not None else "-"
        lines.append(f"| {row['label']} | {pm(row['mask'][last])} | {pm(row['box'][last])} | {cpu} | "
                     f"{row['sec_per_step'][0]:.2f} |")
    lines += ["", verdict(results), ""]
    return "\n".join(lines)


def verdict(results: dict) -> str:
    first = results["summary"]["first_win"]
    if first is None:
        return "Fine-tuning did not beat from-scratch by more than two standard errors at any budget measured."
    return (f"Fine-tuning ({LABELS[HEADLINE]}) first beats from-scratch by more than two standard errors at "
            f"{first['budget']} steps: {100 * first['difference']:+.1f} mask AP points (± {200 * first['se']:.1f}).")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=90)
    budgets = results["budgets"]
    for v, row in results["summary"]["variants"].items():
        mean = [100 * row["mask"][str(b)][0] for b in budgets]
        se = [100 * (row["mask"][str(b)][1] or 0) for b in budgets]
        ax.plot(budgets, mean, "o-", markersize=3, label=row["label"] + (" (1 seed)" if len(row["seeds"]) == 1 else ""))
        ax.fill_between(budgets, [m - 2 * e for m, e in zip(mean, se)], [m + 2 * e for m, e in zip(mean, se)],
                        alpha=0.2)
    ax.set_xlabel("training steps (batch 4)")
    ax.set_ylabel("held-out mask AP x 100")
    ax.set_title(f"new kinds ({', '.join(NEW_KINDS)}): fine-tuned demo model vs from scratch\n"
                 f"mean of {len(results['seeds'])} seeds, band ± 2 standard errors", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ensure_source(source: str | None) -> Path:
    """The model to fine-tune: --source, else runs/demo/last.pt, trained now (the `make demo` recipe) if missing."""
    if source is not None:
        if not Path(source).is_file():
            raise SystemExit(f"--source {source}: no such file")
        return Path(source)
    path = Path("runs/demo/last.pt")
    if not path.exists():
        print(f"{path} is missing: training the demo model first (training.DEMO)", flush=True)
        torch.set_num_threads(1)
        train(dataclasses.replace(DEMO, out=str(path.parent)))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=None, help="checkpoint to fine-tune (default: runs/demo/last.pt)")
    p.add_argument("--iters", type=int, default=100, help="steps of every run (the largest budget)")
    p.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations (the budgets)")
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--num-val-images", type=int, default=50)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    p.add_argument("--runs", default="runs/transfer", help="the runs' folders")
    p.add_argument("--out", default="benchmarks/transfer", help="where transfer.json, .md and .png go")
    p.add_argument("--fresh", action="store_true", help="rerun finished runs")
    p.add_argument("--no-report", action="store_true", help="only train the runs")
    p.add_argument("--report-only", action="store_true", help="train nothing: report the finished runs")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    source = ensure_source(args.source) if any(v != "scratch" for v in variants) else None
    base = study_config(args.iters, args.eval_every, args.num_images, args.num_val_images)
    checksum = hashlib.sha256(source.read_bytes()).hexdigest()[:12] if source else None

    def settings_of(v: str) -> dict:  # what a finished run must have been trained with (beside its seed)
        return {"eval_every": args.eval_every, "num_images": args.num_images, "num_val_images": args.num_val_images,
                "source": checksum if v != "scratch" else None}

    todo = []
    for v in variants:
        for seed in seeds:
            out = Path(args.runs) / f"{v}_s{seed}"
            settings = settings_of(v)
            if args.report_only:
                continue
            if args.fresh or not finished(out, args.iters, settings):
                if (out / "metrics.jsonl").exists():
                    (out / "metrics.jsonl").unlink()
                out.mkdir(parents=True, exist_ok=True)
                todo.append((v, seed, str(out), settings))
    start = time.perf_counter()
    if todo:
            print(f"{len(todo)} runs to train ({args.jobs} at once)", flush=True)
    if args.jobs > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, v, seed, base, str(source), out): (out, settings)
                       for v, seed, out, settings in todo}
            for future, (out, settings) in futures.items():
                future.result()
                (Path(out) / "study_run.json").write_text(json.dumps(settings))
                print(f"done {out} ({time.perf_counter() - start:.0f} s)", flush=True)
    else:
        for v, seed, out, settings in todo:
            run_one(v, seed, base, str(source), out)
            (Path(out) / "study_run.json").write_text(json.dumps(settings))
            print(f"done {out} ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.no_report:
        return
    budgets = list(range(args.eval_every, args.iters + 1, args.eval_every))
    runs = [{"variant": v, "seed": seed, **summarize_run(Path(args.runs) / f"{v}_s{seed}", args.iters,
                                                         base.log_every)}
            for v in variants for seed in seeds if finished(Path(args.runs) / f"{v}_s{seed}", args.iters,
                                                            settings_of(v))]
    for v in variants:  # the time per step of each variant, from its first seed's final weights
        first = next((r for r in runs if r["variant"] == v), None)
        if first is not None:
            first["cpu_sec_per_step"] = step_cpu_seconds(Path(args.runs) / f"{v}_s{first['seed']}", v, base)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--report-only", "--no-report")]
    results = {"command": " ".join(["python benchmarks/transfer.py", *given]),  # what trains these runs again
               "source": str(source), "source_sha256": checksum, "kinds": list(NEW_KINDS),
               "num_images": args.num_images, "num_val_images": args.num_val_images, "seeds": seeds,
               "iters": args.iters, "eval_every": args.eval_every, "budgets": budgets,
               "recipe": {"optimizer": base.optimizer, "lr": base.lr, "batch_size": base.batch_size,
                          "warmup_iters": base.warmup_iters, "image_size": 128},
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads per run, {args.jobs} runs at once",
               "torch": torch.__version__, "runs": runs}
    results["summary"] = summarize(runs, budgets)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transfer.json").write_text(json.dumps(results, indent=1))
    (folder / "transfer.md").write_text(markdown(results))
    plot(results, folder / "transfer.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
