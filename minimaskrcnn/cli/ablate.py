"""`python -m minimaskrcnn ablate STUDY`: rerun one of the paper's Table 2 studies (or Table 4's keypoint study) on
the synthetic shapes (ablation/ does the work), writing its results under --out only."""
from __future__ import annotations

import sys

from ..ablation.report import markdown_table
from ..ablation.run import earlier_results, run_study, write_results
from ..ablation.studies import ABLATION_ITERS, STUDIES, get_study
from ..devices import check_device_name
from ..paths import make_room
from .flags import check_flag, check_not_empty


def add_arguments(p) -> None:
    p.add_argument("study", nargs="?", help=f"one of {', '.join(STUDIES)}, or 'all'")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every variant (default 0 1 2)")
    p.add_argument("--iters", type=int, default=None, help=f"steps per run (default {ABLATION_ITERS})")
    p.add_argument("--device", default="cpu", help="cpu (the timings in the README) or cuda")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (a many-core machine or a GPU)")
    p.add_argument("--variants", nargs="+", default=None, help="train only these variants (default: all)")
    p.add_argument("--out", default="runs/ablations", help="folder for <study>.json/.md/.png and, under runs/, the "
                                                           "runs' logs (the stored studies: benchmarks/ablations)")
    p.add_argument("--overwrite", action="store_true", help="--out holds the study's results or runs: move them "
                                                            "into <out>/replaced-<time>/ and run afresh")


def check_arguments(args) -> None:
    """The flags that can be 0, negative, empty or repeated, as one-line errors before any run starts."""
    check_device_name("--device", args.device)
    check_flag("--jobs", args.jobs, 1)
    if args.iters is not None:  # 0 used to mean the default (900 steps), silently
        check_flag("--iters", args.iters, 1)
    for seed in args.seeds:
        check_flag("--seeds", seed, 0)
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:  # one run, written to one folder, would count as several, with a spread of zero
        raise ValueError(f"--seeds repeats {', '.join(map(str, repeated))}: each seed is one run; give distinct "
                         f"seeds (e.g. --seeds 0 1 2)")
    check_not_empty("--out", args.out, "the folder for the study's results")


def run(args) -> None:
    if args.list or not args.study:
        for study in STUDIES.values():
            print(f"{study.name:14s} {study.title}: {', '.join(v.label for v in study.variants)}")
        return
    check_arguments(args)
    names = list(STUDIES) if args.study == "all" else [get_study(args.study).name]
    if not args.overwrite:  # every study's earlier results refused before the first one trains
        for name in names:
            make_room(args.out, earlier_results(args.out, name, args.seeds, args.variants), False,
                      "choose another --out")
    command = "python -m minimaskrcnn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["ablate"] else ""
    for name in names:
        results = run_study(name, tuple(args.seeds), args.iters, args.out, args.device,
                            command or f"python -m minimaskrcnn ablate {name}", jobs=args.jobs,
                            variants=args.variants, overwrite=args.overwrite)
        paths = write_results(results, args.out)  # only ever under --out
        print(markdown_table(results))
        print("wrote " + ", ".join(str(p) for p in paths))
