"""`python -m minimaskrcnn check COMPONENT FILE.py`: the implement-it-yourself checks (exercises/) on the
functions of your own file, run in a child process, as notebook 09 runs them; `--in-model` then runs Mask R-CNN
with them."""
from __future__ import annotations

from pathlib import Path

from ..exercises import COMPONENTS, check_file, get_component


def add_arguments(p) -> None:
    p.add_argument("component", nargs="?", help=f"one of {', '.join(COMPONENTS)}, or 'all'")
    p.add_argument("file", nargs="?", help="your Python file, e.g. my_ops.py, defining the component's function(s)")
    p.add_argument("--list", action="store_true", help="list the components and the functions each one checks")
    p.add_argument("--strict", action="store_true", help="require the conventions (torchvision's rules) too, not "
                                                         "only the core")
    p.add_argument("--in-model", action="store_true", help="then run Mask R-CNN with the file's functions (those of "
                   "COMPONENT, or all) against the package's: same detections, same losses (`make demo`'s model "
                   "when there is one, else a quick one)")
    p.add_argument("--checkpoint", default=None, help="the model of --in-model (default: runs/demo/last.pt, else "
                                                       "notebook 05's run, else a cpu_small model trained 20 steps)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="per component (default 60; the in-model run gets 10 times as long)")


def run(args) -> None:
    """`python -m minimaskrcnn check COMPONENT FILE.py`: exit status 0 when the core of every component checked
    passes (with --strict: every property), and with --in-model the model agrees; 1 when not; 2 for a usage
    error (ValueError / FileNotFoundError, printed as one line by cli.main). The file runs in a child process."""
    if args.list:
        for c in COMPONENTS.values():
            core = sum(p.core for p in c.properties)
            n = len(c.properties) - core
            print(f"{c.name:17s} {', '.join(c.functions):27s} {core:2d} core, {n:2d} convention{'s' if n != 1 else ' '}"
                  f": {c.title}")
        return
    component, file = args.component, args.file
    if args.in_model and file is None and component is not None and component not in COMPONENTS \
            and component != "all":
        component, file = None, component  # check --in-model my_ops.py
    if not file or not (component or args.in_model):
        raise ValueError("check needs a component and a file: python -m minimaskrcnn check COMPONENT FILE.py "
                         "(--list shows the components; check --in-model FILE.py runs the model with them)")
    if component not in (None, "all"):
        get_component(component)  # an unknown name is a usage error before the file is imported
    if args.time_limit <= 0:
        raise ValueError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file")
    if not check_file(component, file, strict=args.strict, in_model=args.in_model, checkpoint=args.checkpoint,
                      time_limit=args.time_limit):
        raise SystemExit(1)
