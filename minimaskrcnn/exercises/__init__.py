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


__all__ = ["COMPONENTS", "SWAPPABLE", "check", "check_file", "compare", "load_module", "use"]
