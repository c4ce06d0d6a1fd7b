"""Implement it yourself: check your own versions of Mask R-CNN's pieces, then run the model with them.

Twelve components, each a list of properties (rules of the op in words) tested on small cases against
hand-computed values and plain-Python loop references that share no code with the package (core.py):
Faster R-CNN's geometry (box_iou, box_coder, nms, grid_anchors, roi_pool, roi_align), what Mask R-CNN
adds (label_anchors, sample_rois, mask_targets, mask_loss, paste_masks) and one backward pass written
by hand (bilinear_backward). Each property is core (the idea, as the paper defines it) or a convention
(torchvision's rule); a component passes when its core passes, and with strict=True / --strict when
every convention passes too.

    from minimaskrcnn import exercises
    exercises.check("roi_align", roi_align)             # in a notebook, in this process: prints, returns True / False
    exercises.check_file("all", "my_ops.py")            # a file's functions, in a child process
    with exercises.use("my_ops.py"): model(images)      # the model runs your functions (in_model.py)
    exercises.compare("my_ops.py")                      # ... against the package's: same detections, same losses?

    python -m minimaskrcnn check roi_align my_ops.py    # exit 0: the core passes; 1: it does not; 2: usage error
    python -m minimaskrcnn check all my_ops.py --strict # the conventions too
    python -m minimaskrcnn check --in-model my_ops.py   # compare() from the command line

check() runs in the notebook's own process (its functions live there); everything the command line and
check_file() run happens in a child process with a time limit per component (isolation.py), so that a
file cannot fake a pass with sys.exit(0) or hang the check with an endless loop.
Notebook 09 has the skeletons; notebooks/solutions/my_ops.py has worked solutions.
"""
from __future__ import annotations

from pathlib import Path

from .components import COMPONENTS, get_component
from .core import run
from .in_model import SWAPPABLE, use
from .isolation import IN_MODEL, run_in_child
from .loading import load_module
from .report import report


def check(component: str, *functions, print_=print, strict: bool = False) -> bool:
    """Run a component's properties on your function(s) in this process, print the report, return whether
    the core passes (strict=True: every property).

    check("roi_align", roi_align); check("box_coder", encode_boxes, decode_boxes). Never raises for a
    wrong or unfinished function: a skeleton that raises NotImplementedError is reported as not
    implemented yet, so that a notebook runs top to bottom before the exercises are done.
    """
    c = get_component(component)
    if len(functions) != len(c.functions) or not all(callable(f) for f in functions):
        raise ValueError(f"check({component!r}, ...) takes the function(s) {', '.join(c.functions)}, "
                         f"got {len(functions)} argument(s)")
    print_(c.header)
    return report(c, run(c, dict(zip(c.functions, functions))), print_, strict)


def check_file(component: str | None, path, print_=print, strict: bool = False, in_model: bool = False,
               checkpoint=None, time_limit: float = 60.0) -> bool:
    """Check the function(s) named after the component in a Python file, in a child process with
    `time_limit` seconds per component; component 'all' checks every component (one the file does not
    define counts as failed), None none. in_model: then compare() the model (`checkpoint`, else
    comparison.default_model's) with the file's functions (the component's, or all). Returns whether everything
    passes (the core, or with strict every property). ValueError when the file cannot be imported or lacks
    the component's functions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix != ".py":
        raise ValueError(f"{path} is not a Python file (.py)")
    try:  # a syntax error is found here, without a child process
        compile(path.read_text(), str(path), "exec")
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"{path} could not be imported: {type(e).__name__}: {e}") from e
    names = list(COMPONENTS) if component == "all" else [get_component(component).name] if component else []
    swap = None if component in ("all", None) else list(COMPONENTS[component].functions)
    job = {"file": str(path.resolve()), "units": names + [IN_MODEL] * in_model, "names": swap, "strict": strict,
           "checkpoint": str(checkpoint) if checkpoint else None}
    (result,) = run_in_child([job], time_limit, 10 * time_limit, print_)
    if result.error:
        raise ValueError(result.error.replace(str(path.resolve()), str(path)))
    missing = [u for u in result.units if u.missing]
    if component not in ("all", None) and missing:
        c = COMPONENTS[component]
        raise ValueError(f"{path} defines no function {' or '.join(missing[0].missing)} (the {c.name} check needs "
                         f"{' and '.join(c.functions)})")
    passed = {u.name: u.strict if strict else u.core for u in result.units}
    if component == "all":
        checked = [n for n in passed if n != IN_MODEL]
        strict_ok = sum(u.strict for u in result.units if u.name != IN_MODEL)
        print_(f"all: {sum(passed[n] for n in checked)} of {len(checked)} components pass their core, {strict_ok} "
               f"every convention too" + ("" if all(passed[n] for n in checked) else
                                          f" (not yet: {', '.join(n for n in checked if not passed[n])})"))
    return all(passed.values())


def compare(source, model=None, **kwargs) -> bool:
    """Run a model with the package's functions and with yours, in this process: see comparison.py."""
    from .comparison import compare as run_comparison

    return run_comparison(source, model, **kwargs)


def add_arguments(p) -> None:
    """The `check` subcommand's arguments (cli.py builds the parser)."""
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


def cmd_check(args) -> None:
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


__all__ = ["COMPONENTS", "SWAPPABLE", "check", "check_file", "compare", "load_module", "use", "add_arguments",
           "cmd_check"]
