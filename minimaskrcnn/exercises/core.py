"""The machinery of the exercise checks: a component's properties, run against a student's function.

A *property* is one rule of an op, stated in words ("a box is dropped only when its IoU is > the
threshold"), with the small cases that test it. Each case calls the candidate function and compares
what it returns with the expected value: worked out by hand, or given by the component's *reference*,
a plain-Python loop transcription of the definition that lives next to the checks and shares no code
with minimaskrcnn.ops (so a check compares two independent implementations, never the package with
itself).

When a case fails, the checker replays the same inputs through the component's *known mistakes*:
copies of the reference with one thing done wrong (a missing +0.5, the +1 pixel convention, ...). If
one of them gives exactly what the candidate gave, its hint names the bug; otherwise there is no hint
(a guess would send a student looking in the wrong place).
"""
from __future__ import annotations

import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

Measure = Callable[[types.SimpleNamespace, dict], Any]  # (functions, inputs) -> what a case compares
TOLERANCE = 1e-5  # relative and absolute: far below any convention's effect, above float32 rounding


class Failure(Exception):
    """One failing case: its inputs, the expected and the got values, and a hint when a mistake explains it."""

    def __init__(self, case: str, inputs: dict, expected: Any, got: Any, hint: str | None = None,
                 detail: str | None = None):
        super().__init__(case)
        self.case, self.inputs, self.expected, self.got, self.hint = case, inputs, expected, got, hint
        self.detail = detail  # what differs, e.g. "largest difference 0.5 at [0, 0, 1, 1]"


class Unusable(Exception):
    """A result that cannot be compared at all (e.g. an output with no gradient); `got` says why."""

    def __init__(self, got: str, hint: str | None = None):
        super().__init__(got)
        self.got, self.hint = got, hint


@dataclass(frozen=True)
class Mistake:
    hint: str  # what the student did, in words, and the fix
    functions: dict  # name -> the wrong version of that function of the component


def mistake(hint: str, **functions) -> Mistake:
    return Mistake(hint, functions)


@dataclass(frozen=True)
class Property:
    name: str  # the rule, in words: printed on the report's PASS / FAIL line
    run: Callable  # (Tester) -> None; raises Failure


@dataclass
class Component:
    name: str  # what `python -m minimaskrcnn check NAME` takes
    title: str  # what the op is, and the paper's section
    reference: dict  # function name -> the loop reference, in the package's signature
    mistakes: list = field(default_factory=list)  # [Mistake], tried in order on a failing case
    properties: list = field(default_factory=list)  # [Property], in the order they are checked and printed

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(self.reference)

    @property
    def header(self) -> str:
        """'roi_align: RoIAlign, ...' or, for several functions, 'box_coder (encode_boxes, decode_boxes): ...'."""
        names = "" if self.functions == (self.name,) else f" ({', '.join(self.functions)})"
        return f"{self.name}{names}: {self.title}"

    def property(self, name: str):  # (last in the class: from here on, `property` in this body means this)
        """Decorator: register a property's function under its rule in words."""
        def register(fn):
            self.properties.append(Property(name, fn))
            return fn
        return register


def call(name: str) -> Measure:
    """The default measure: the result of calling function `name` with the case's inputs, in order."""
    return lambda functions, inputs: getattr(functions, name)(*inputs.values())


def input_gradient(name: str) -> Measure:
    """A measure for the RoI ops: the gradient of output.sum() with respect to the case's "input" (its
    first argument), i.e. how much each pixel contributes to all the outputs together."""
    def measure(functions, inputs):
        features = inputs["input"].clone().requires_grad_(True)
        out = getattr(functions, name)(features, *list(inputs.values())[1:])
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise Unusable("an output that does not depend on input through autograd",
                           "build the output from input's elements with torch operations (indexing, sum, amax); "
                           ".item(), float(), .tolist(), numpy and torch.no_grad() cut the gradient")
        (grad,) = torch.autograd.grad(out.sum(), features, allow_unused=True)
        return torch.zeros_like(features) if grad is None else grad
    return measure


def fresh(inputs: dict) -> dict:
    """A copy of a case's inputs for one call, so that a function that writes into its arguments cannot
    change the inputs shown in the report or given to the next function."""
    def copy(v):
        if isinstance(v, torch.Tensor):
            return v.detach().clone()
        return [copy(x) for x in v] if isinstance(v, list) else v
    return {k: copy(v) for k, v in inputs.items()}


def difference(got, expected, exact: bool = False, equal_nan: bool = False) -> str | None:
    """None when got matches expected (to TOLERANCE, or exactly), else what differs, in words."""
    if not isinstance(got, torch.Tensor):
        return f"a {type(got).__name__}, not a tensor"
    got, expected = got.detach().cpu(), torch.as_tensor(expected)
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if exact:
        return None if got.tolist() == expected.tolist() else "different values"
    if got.is_complex() or got.dtype == torch.bool:
        return f"dtype {got.dtype}"
    if torch.allclose(got.double(), expected.double(), rtol=TOLERANCE, atol=TOLERANCE, equal_nan=equal_nan):
        return None
    if got.numel():
        gap = (got.double() - expected.double()).abs().nan_to_num(nan=float("inf"))
        at = np.unravel_index(int(gap.argmax()), tuple(got.shape))
        return f"largest difference {float(gap.max()):.3g} at {list(map(int, at))}"
    return "different values"


def _where(error: Exception, functions: types.SimpleNamespace) -> str:
    """' (in roi_align, line 12 of my_ops.py)': the innermost line of the student's code that raised."""
    files = {getattr(getattr(f, "__code__", None), "co_filename", None) for f in vars(functions).values()}
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename in files]
    if not frames:
        return ""
    f = frames[-1]
    place = "its cell" if "ipykernel" in f.filename else f.filename.replace("\\", "/").rsplit("/", 1)[-1]
    return f" (in {f.name}, line {f.lineno} of {place})"


class Tester:
    """What a property function receives: `expect` runs one case against the candidate."""

    def __init__(self, component: Component, candidate: dict):
        self.component = component
        self.candidate = types.SimpleNamespace(**candidate)
        self.reference = types.SimpleNamespace(**component.reference)

    def expect(self, case: str, inputs: dict, expected=None, *, measure: Measure | None = None,
               exact: bool = False, shrink: Callable[[dict], Iterable[tuple[str, dict]]] | None = None) -> None:
        """Run one case. expected: the hand-computed value, or None for the reference's. exact: compare
        values exactly (indices). shrink(inputs): smaller cases (description, inputs) to report instead
        of a failing random case, smallest first; the first that fails too is reported."""
        measure = measure or call(self.component.functions[0])
        expected = measure(self.reference, fresh(inputs)) if expected is None else torch.as_tensor(expected)
        got = self._run(measure, inputs)
        problem = self._problem(got, expected, exact)
        if problem is None:
            return
        for smaller_case, smaller in (shrink(inputs) if shrink else ()):
            smaller_expected = measure(self.reference, fresh(smaller))
            smaller_got = self._run(measure, smaller)
            smaller_problem = self._problem(smaller_got, smaller_expected, exact)
            if smaller_problem is not None:
                case, inputs, expected, got = smaller_case, smaller, smaller_expected, smaller_got
                problem = smaller_problem
                break
        if isinstance(got, Unusable):
            raise Failure(case, inputs, expected, got.got, got.hint)
        if isinstance(got, Exception):
            raise Failure(case, inputs, expected, self._raised(got))
        shown = got if isinstance(got, torch.Tensor) else repr(got)
        raise Failure(case, inputs, expected, shown, self._diagnose(inputs, got, measure, exact), problem)

    def expect_dtype(self, case: str, inputs: dict, dtype: torch.dtype, *, measure: Measure | None = None) -> None:
        """Run one case and check only the dtype of the result."""
        got = self._run(measure or call(self.component.functions[0]), inputs)
        wanted = f"a {str(dtype).replace('torch.', '')} tensor"
        if isinstance(got, Exception):
            raise Failure(case, inputs, wanted, self._raised(got))
        if not isinstance(got, torch.Tensor) or got.dtype != dtype:
            kind = f"a {str(got.dtype).replace('torch.', '')} tensor" if isinstance(got, torch.Tensor) else repr(got)
            raise Failure(case, inputs, wanted, kind)

    def _run(self, measure: Measure, inputs: dict):
        """The candidate's result on a case, or the exception its code raised (that is the case's result too).
        NotImplementedError goes through: the function is not written yet."""
        try:
            return measure(self.candidate, fresh(inputs))
        except NotImplementedError:
            raise
        except Exception as e:
            return e

    @staticmethod
    def _problem(got, expected, exact: bool) -> str | None:
        if isinstance(got, Unusable):
            return got.got
        if isinstance(got, Exception):
            return f"raised {type(got).__name__}"
        return difference(got, expected, exact)

    def _raised(self, error: Exception) -> str:
        return f"raised {type(error).__name__}: {error}{_where(error, self.candidate)}"

    def _diagnose(self, inputs, got, measure, exact) -> str | None:
        """The hint of the first known mistake that reproduces `got` on these inputs."""
        for m in self.component.mistakes:
            wrong = types.SimpleNamespace(**{**self.component.reference, **m.functions})
            try:
                theirs = measure(wrong, fresh(inputs))
            except Exception:
                continue
            if difference(got, theirs, exact, equal_nan=True) is None:
                return m.hint
        return None


@dataclass
class Outcome:
    property: str
    failure: Failure | None  # None: passed


def run(component: Component, candidate: dict) -> list[Outcome] | None:
    """Every property of the component against the candidate functions {name: function}.
    Returns None when the candidate raises NotImplementedError on the first property (not written yet)."""
    outcomes = []
    for prop in component.properties:
        try:
            prop.run(Tester(component, candidate))
            outcomes.append(Outcome(prop.name, None))
        except NotImplementedError as e:
            if not outcomes:
                return None
            outcomes.append(Outcome(prop.name, Failure("", {}, "a result", f"raised NotImplementedError: {e}")))
        except Failure as failure:
            outcomes.append(Outcome(prop.name, failure))
    return outcomes


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


def report(component: Component, outcomes: list[Outcome] | None, print_=print) -> bool:
    """Print one line per property and the first failure in full; return whether all passed."""
    names = " and ".join(component.functions)
    if outcomes is None:  # the rules to meet, so that a student knows them before writing anything
        print_(f"{component.name}: not implemented yet (the skeleton of {names} raises NotImplementedError). "
               f"Its {len(component.properties)} properties:")
        for prop in component.properties:
            print_(f"  ----  {prop.name}")
        return False
    for o in outcomes:
        print_(f"  {'PASS' if o.failure is None else 'FAIL'}  {o.property}")
    failed = [o for o in outcomes if o.failure is not None]
    if not failed:
        print_(f"{component.name}: all {len(outcomes)} properties pass")
        return True
    first = failed[0]
    f = first.failure
    print_(f"{component.name}: {len(failed)} of {len(outcomes)} properties fail. The first failure:")
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
    return False
