"""`python -m minimaskrcnn ablate STUDY`: rerun one of the paper's Table 2 studies on the synthetic shapes
(ablation/ does the work), writing its results under --out only."""
from __future__ import annotations

import sys

from ..ablation.report import markdown_table
from ..ablation.run import run_study, write_results
from ..ablation.studies import ABLATION_ITERS, STUDIES, get_study


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


def run(args) -> None:
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
        paths = write_results(results, args.out)  # only ever under --out
        print(markdown_table(results))
        print("wrote " + ", ".join(str(p) for p in paths))
