"""Implement it yourself: check your own box_iou, box coder, nms, roi_pool, roi_align and grid_anchors.

Each component has a list of properties, rules of the op in words, each tested on small cases against
hand-computed values and plain-Python loop references that share no code with minimaskrcnn.ops (see
core.py). Two ways to run them, with the same report:

    from minimaskrcnn.exercises import check
    check("roi_align", roi_align)                  # in a notebook: prints the report, returns True / False
    python -m minimaskrcnn check roi_align my_ops.py   # the command: exit status 0 when all pass, 1 if not

Notebook 09 has the skeletons; notebooks/solutions/my_ops.py has worked solutions.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .anchors import GRID_ANCHORS
from .boxes import BOX_CODER, BOX_IOU
from .core import Component, report, run
from .nms import NMS
from .roi_align import ROI_ALIGN
from .roi_pool import ROI_POOL

# In the notebook's order: geometry first, then the RoI ops.
COMPONENTS: dict[str, Component] = {c.name: c for c in (BOX_IOU, BOX_CODER, NMS, GRID_ANCHORS, ROI_POOL, ROI_ALIGN)}


def get_component(name: str) -> Component:
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}: choose one of {', '.join(COMPONENTS)} (or 'all')")
    return COMPONENTS[name]


def check(component: str, *functions, print_=print) -> bool:
    """Run a component's properties on your function(s), print the report, return whether all pass.

    check("roi_align", roi_align); check("box_coder", encode_boxes, decode_boxes). Never raises for a
    wrong or unfinished function: a skeleton that raises NotImplementedError is reported as not
    implemented yet, so that a notebook runs top to bottom before the exercises are done.
    """
    c = get_component(component)
    if len(functions) != len(c.functions) or not all(callable(f) for f in functions):
        raise ValueError(f"check({component!r}, ...) takes the function(s) {', '.join(c.functions)}, "
                         f"got {len(functions)} argument(s)")
    print_(c.header)
    return report(c, run(c, dict(zip(c.functions, functions))), print_)


def load_module(path) -> object:
    """Import a Python file (e.g. my_ops.py) as a module, with its folder on sys.path for its own imports."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix != ".py":
        raise ValueError(f"{path} is not a Python file (.py)")
    spec = importlib.util.spec_from_file_location(f"_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does (dataclasses, for one, look the module up there)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[spec.name]
        raise ValueError(f"{path} could not be imported: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def check_file(component: str, path, print_=print) -> bool:
    """Check the function(s) named after the component in a Python file; component 'all' checks every
    component (a function the file does not define counts as failed). Returns whether all pass."""
    module = load_module(path)
    if component != "all":
        c = get_component(component)
        missing = [name for name in c.functions if not callable(getattr(module, name, None))]
        if missing:
            raise ValueError(f"{path} defines no function {' or '.join(missing)} (the {c.name} check needs "
                             f"{' and '.join(c.functions)})")
        return check(c.name, *(getattr(module, name) for name in c.functions), print_=print_)
    passed = {}
    for c in COMPONENTS.values():
        functions = [getattr(module, name, None) for name in c.functions]
        if all(callable(f) for f in functions):
            passed[c.name] = check(c.name, *functions, print_=print_)
        else:
            print_(f"{c.header}\n{c.name}: {path} does not define {' and '.join(c.functions)}")
            passed[c.name] = False
        print_("")
    print_(f"all: {sum(passed.values())} of {len(passed)} components pass" + (
        "" if all(passed.values()) else f" (not yet: {', '.join(n for n, ok in passed.items() if not ok)})"))
    return all(passed.values())


__all__ = ["COMPONENTS", "check", "check_file", "load_module"]
