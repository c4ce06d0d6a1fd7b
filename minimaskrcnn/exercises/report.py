"""The report of a check: core properties and conventions in two groups, then the first failure in full.

    box_iou: intersection over union (...)
      core, the idea as the paper defines it:
        PASS  IoU = intersection / (area1 + area2 - intersection), ...
      conventions, torchvision's rules (--strict requires them):
        FAIL  the result has the boxes' dtype: ...
    box_iou: the core passes (5 of 5); 1 of 1 conventions fail (only --strict requires them). The first failure:
      property: ...   case: ...   the inputs ...   expected: ...   got: ...   hint: ...
"""
from __future__ import annotations

import numpy as np
import torch

from .core import Component, Outcome

GROUPS = {True: "core, the idea as the paper defines it:",
          False: "conventions, torchvision's rules (--strict requires them):"}


def show(value, indent: str, dtype: bool = True) -> str:
    """A value as the report prints it: a tensor as its numbers with its shape (and dtype), else repr()."""
    if not isinstance(value, torch.Tensor):
        return repr(value) if not isinstance(value, str) else value
    t = value.detach().cpu()
    numbers = t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
    body = np.array2string(numbers, precision=5, suppress_small=True, separator=", ", max_line_width=100,
                           threshold=400)
    body = body.replace("\n", "\n" + indent)
    return f"{body}  ({str(t.dtype).replace('torch.', '') + ', ' if dtype else ''}shape {tuple(t.shape)})"


def verdict(outcomes: list[Outcome] | None, strict: bool = False) -> bool:
    """Whether a component passes: its core (strict=False), or every property (strict=True)."""
    return outcomes is not None and all(o.failure is None for o in outcomes if o.core or strict)


def report(component: Component, outcomes: list[Outcome] | None, print_=print, strict: bool = False) -> bool:
    """Print the core and the conventions, one line per property, then the first failure in full (a core
    one if any); return whether the component passes (`verdict`)."""
    groups = {core: [p for p in component.properties if p.core == core] for core in (True, False)}
    if outcomes is None:  # the rules to meet, so that a student knows them before writing anything
        names = " and ".join(component.functions)
        print_(f"{component.name}: not implemented yet (the skeleton of {names} raises NotImplementedError). "
               f"Its {len(component.properties)} properties:")
        for core, props in groups.items():
            print_(f"  {GROUPS[core]}" if props else "")
            for prop in props:
                print_(f"    ----  {prop.name}")
        return False
    for core in (True, False):
        group = [o for o in outcomes if o.core == core]
        if group:
            print_(f"  {GROUPS[core]}")
        for o in group:
            print_(f"    {'PASS' if o.failure is None else 'FAIL'}  {o.property}")
    failed = [o for o in outcomes if o.failure is not None]
    n_core = sum(o.core for o in outcomes)
    core_failed, conventions_failed = sum(o.core for o in failed), sum(not o.core for o in failed)
    if not failed:
        n = len(outcomes) - n_core
        print_(f"{component.name}: all {len(outcomes)} properties pass ({n_core} core, {n} "
               f"convention{'s' * (n != 1)})")
        return True
    if core_failed:
        summary = f"{core_failed} of {n_core} core properties {'fails' if core_failed == 1 else 'fail'}"
    else:
        summary = f"the core passes ({n_core} of {n_core}); {conventions_failed} of {len(outcomes) - n_core} " \
                  f"conventions {'fails' if conventions_failed == 1 else 'fail'}" + \
                  ("" if strict else " (only --strict requires them)")
    print_(f"{component.name}: {summary}. The first failure:")
    first = failed[0]
    f = first.failure
    print_(f"  property: {first.property}")
    if f.case:
        print_(f"  case: {f.case}")
    for name, value in f.inputs.items():
        print_(f"    {name} = {show(value, ' ' * (len(name) + 7))}")
    print_(f"  expected: {show(f.expected, ' ' * 12, dtype=False)}")
    print_(f"  got:      {show(f.got, ' ' * 12)}")
    if f.detail and not f.detail.startswith("raised"):
        print_(f"  ({f.detail})")
    if f.hint:
        print_(f"  hint: {f.hint}")
    return verdict(outcomes, strict)
