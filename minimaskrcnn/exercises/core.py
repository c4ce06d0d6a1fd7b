"""The machinery of the exercise checks: a component's properties, run against a student's function.

A *property* is one rule of an op, stated in words ("a box is dropped only when its IoU is > the
threshold"), with the small cases that test it. Each case calls the candidate function and compares
what it returns with the expected value: worked out by hand, or given by the component's *reference*,
a plain-Python loop transcription of the definition that lives next to the checks and shares no code
with minimaskrcnn.ops (so a check compares two independent implementations, never the package with
itself).

A property is *core* (the idea, as the paper defines it) or a *convention* (a rule that torchvision
and the package follow where another choice would be as right: a border clamp, a rounding rule, a
dtype). A function passes when its core passes; `strict` also requires the conventions.

When a case fails, the checker replays the same inputs through the component's *known mistakes*:
copies of the reference with one thing done wrong (a missing +0.5, the +1 pixel convention, ...). If
one of them gives exactly what the candidate gave, its hint names the bug; otherwise there is no hint
(a guess would send a student looking in the wrong place). Every call gets fresh copies of its inputs,
and a function that writes into them is caught: the model reads them again after the call.
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
    core: bool  # True: the idea; False: a convention (only --strict requires it)


@dataclass
class Component:
    name: str  # what `python -m minimaskrcnn check NAME` takes
    title: str  # what the op is, and the paper's section
    reference: dict  # function name -> the loop reference, in the package's signature
    mistakes: list = field(default_factory=list)  # [Mistake], tried in order on a failing case
    properties: list = field(default_factory=list)  # [Property], core first, in the order they are printed

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(self.reference)

    @property
    def header(self) -> str:
        """'roi_align: RoIAlign, ...' or, for several functions, 'box_coder (encode_boxes, decode_boxes): ...'."""
        names = "" if self.functions == (self.name,) else f" ({', '.join(self.functions)})"
        return f"{self.name}{names}: {self.title}"

    def core(self, name: str):
        """Decorator: register a core property (the idea) under its rule in words."""
        return self._register(name, True)

    def convention(self, name: str):
        """Decorator: register a convention (torchvision's rule) under its rule in words."""
        return self._register(name, False)

    def _register(self, name: str, core: bool):
        def register(fn):
            self.properties.append(Property(name, fn, core))
            self.properties.sort(key=lambda p: not p.core)  # stable: core first, each group in its order
            return fn
        return register


def call(name: str) -> Measure:
    """The default measure: the result of calling function `name` with the case's inputs, in order."""
    return lambda functions, inputs: getattr(functions, name)(*inputs.values())


def input_gradient(name: str, weights: torch.Tensor | None = None) -> Measure:
    """A measure for the RoI ops: the gradient of output.sum() (or of (output * weights).sum()) with
    respect to the case's "input" (its first argument): how much each pixel contributes to the outputs."""
    def measure(functions, inputs):
        features = inputs["input"].clone().requires_grad_(True)
        out = getattr(functions, name)(features, *list(inputs.values())[1:])
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise Unusable("an output that does not depend on input through autograd",
                           "build the output from input's elements with torch operations (indexing, sum, amax); "
                           ".item(), float(), .tolist(), numpy and torch.no_grad() cut the gradient")
        total = out.sum() if weights is None else (out * weights.to(out.dtype)).sum()
        (grad,) = torch.autograd.grad(total, features, allow_unused=True)
        return torch.zeros_like(features) if grad is None else grad
    return measure


def _copy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    return [_copy(x) for x in v] if isinstance(v, list) else v


def fresh(inputs: dict) -> dict:
    """A copy of a case's inputs for one call, so that a function that writes into its arguments cannot
    change the inputs shown in the report or given to the next function."""
    return {k: _copy(v) for k, v in inputs.items()}


def _same(a, b) -> bool:
    """Whether an argument is as it was given: same type, shape, dtype and values (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        b = b.detach()
        return bool(((a == b) | (a.isnan() & b.isnan())).all()) if a.is_floating_point() else torch.equal(a, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return True


def changed_argument(before: dict, after: dict) -> str | None:
    """The name of the first argument that a call wrote into, or None."""
    return next((name for name in before if not _same(before[name], after[name])), None)


def difference(got, expected, exact: bool = False) -> str | None:
    """None when got matches expected (to TOLERANCE, or exactly; NaN matches NaN), else what differs."""
    if not isinstance(got, torch.Tensor):
        return f"a {type(got).__name__}, not a tensor"
    got, expected = got.detach().cpu(), torch.as_tensor(expected)
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if exact:
        return None if got.tolist() == expected.tolist() else "different values"
    if got.is_complex() or got.dtype == torch.bool:
        return f"dtype {got.dtype}"
    if torch.allclose(got.double(), expected.double(), rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True):
        return None
    if got.numel():
        gap = (got.double() - expected.double()).abs().nan_to_num(nan=float("inf"))
        at = np.unravel_index(int(gap.argmax()), tuple(got.shape))
        return f"largest difference {float(gap.max()):.3g} at {list(map(int, at))}"
    return "different values"


def _where(error: BaseException, functions: types.SimpleNamespace) -> str:
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
               exact: bool = False, shrink: Callable[[dict], Iterable[tuple[str, dict]]] | None = None,
               also: Iterable[dict] = ()) -> None:
        """Run one case. expected: the hand-computed value, or None for the reference's. exact: compare
        values exactly (indices). shrink(inputs): smaller cases (description, inputs) to report instead
        of a failing random case, smallest first; the first that fails too is reported. also: other
        references {function name: function} whose results are accepted too (two conventions that the
        contract allows, e.g. RoIAlign's two pixel frames)."""
        measure = measure or call(self.component.functions[0])
        alternatives = [types.SimpleNamespace(**{**self.component.reference, **a}) for a in also]

        def problem_of(x, got, expected):
            problem = self._problem(got, expected, exact)
            for alternative in alternatives if problem is not None and not isinstance(got, Exception) else ():
                if self._problem(got, measure(alternative, fresh(x)), exact) is None:
                    return None
            return problem

        expected = measure(self.reference, fresh(inputs)) if expected is None else torch.as_tensor(expected)
        got = self._run(measure, inputs)
        problem = problem_of(inputs, got, expected)
        if problem is None:
            return
        for smaller_case, smaller in (shrink(inputs) if shrink else ()):
            smaller_expected = measure(self.reference, fresh(smaller))
            smaller_got = self._run(measure, smaller)
            smaller_problem = problem_of(smaller, smaller_got, smaller_expected)
            if smaller_problem is not None:
                case, inputs, expected, got, problem = smaller_case, smaller, smaller_expected, smaller_got, \
                    smaller_problem
                break
        if isinstance(got, Unusable):
            raise Failure(case, inputs, expected, got.got, got.hint)
        if isinstance(got, BaseException):
            raise Failure(case, inputs, expected, self._raised(got))
        shown = got if isinstance(got, torch.Tensor) else repr(got)
        raise Failure(case, inputs, expected, shown, self._diagnose(inputs, got, measure, exact), problem)

    def expect_dtype(self, case: str, inputs: dict, dtype: torch.dtype, *, measure: Measure | None = None) -> None:
        """Run one case and check only the dtype of the result."""
        got = self._run(measure or call(self.component.functions[0]), inputs)
        wanted = f"a {str(dtype).replace('torch.', '')} tensor"
        if isinstance(got, Unusable):
            raise Failure(case, inputs, wanted, got.got, got.hint)
        if isinstance(got, BaseException):
            raise Failure(case, inputs, wanted, self._raised(got))
        if not isinstance(got, torch.Tensor) or got.dtype != dtype:
            kind = f"a {str(got.dtype).replace('torch.', '')} tensor" if isinstance(got, torch.Tensor) else repr(got)
            raise Failure(case, inputs, wanted, kind)

    def _run(self, measure: Measure, inputs: dict):
        """The candidate's result on a case, or the exception its code raised (that is the case's result too;
        SystemExit included, so that sys.exit() in a function cannot end the check). NotImplementedError
        goes through: the function is not written yet. An argument written into makes the result Unusable."""
        given = fresh(inputs)
        try:
            result = measure(self.candidate, given)
        except NotImplementedError:
            raise
        except (Exception, SystemExit) as e:
            return e
        name = changed_argument(inputs, given)
        if name is not None:
            return Unusable(f"changed its argument {name} in place",
                            f"do not write into {name} ({name}[...] = ..., {name}.zero_(), {name} += ...): the caller "
                            f"uses {name} again after the call (an nms that zeroes the scores breaks the detector); "
                            f"work on a copy, {name}.clone()")
        return result

    @staticmethod
    def _problem(got, expected, exact: bool) -> str | None:
        if isinstance(got, Unusable):
            return got.got
        if isinstance(got, BaseException):
            return f"raised {type(got).__name__}"
        return difference(got, expected, exact)

    def _raised(self, error: BaseException) -> str:
        return f"raised {type(error).__name__}: {error}{_where(error, self.candidate)}"

    def _diagnose(self, inputs, got, measure, exact) -> str | None:
        """The hint of the first known mistake that reproduces `got` on these inputs."""
        for m in self.component.mistakes:
            wrong = types.SimpleNamespace(**{**self.component.reference, **m.functions})
            try:
                theirs = measure(wrong, fresh(inputs))
            except Exception:
                continue
            if difference(got, theirs, exact) is None:
                return m.hint
        return None


@dataclass
class Outcome:
    property: str
    failure: Failure | None  # None: passed
    core: bool = True


def run(component: Component, candidate: dict) -> list[Outcome] | None:
    """Every property of the component against the candidate functions {name: function}.
    Returns None when the candidate raises NotImplementedError on the first property (not written yet)."""
    outcomes = []
    for prop in component.properties:
        try:
            prop.run(Tester(component, candidate))
            outcomes.append(Outcome(prop.name, None, prop.core))
        except NotImplementedError as e:
            if not outcomes:
                return None
            outcomes.append(Outcome(prop.name, Failure("", {}, "a result", f"raised NotImplementedError: {e}"),
                                    prop.core))
        except Failure as failure:
            outcomes.append(Outcome(prop.name, failure, prop.core))
    return outcomes
