"""The implement-it-yourself checks (minimaskrcnn.exercises, `python -m minimaskrcnn check`, notebook 09).

- Every property passes on the package's own ops and on the checks' loop references: two independent
  implementations agree with the hand-computed values, which is what makes the checks the package's tests.
- The solutions (notebooks/solutions/my_ops.py) pass through the command line, exit status 0.
- Each planted bug (tests/planted_bugs) exits 1 and its report names the property and the hint that point
  at the bug; each known mistake is reported with its own hint; each property fails on some wrong function.
- The report shows the inputs of the first failing case, shrunk to one RoI; usage errors are one line, exit 2.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minimaskrcnn import cli
from minimaskrcnn.anchors import grid_anchors
from minimaskrcnn.exercises import COMPONENTS, check, load_module
from minimaskrcnn.exercises.core import run
from minimaskrcnn.ops import box_iou, decode_boxes, encode_boxes, nms, roi_align, roi_pool

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ROOT / "tests" / "planted_bugs"
PACKAGE = {"box_iou": {"box_iou": box_iou}, "box_coder": {"encode_boxes": encode_boxes, "decode_boxes": decode_boxes},
           "nms": {"nms": nms}, "grid_anchors": {"grid_anchors": grid_anchors}, "roi_pool": {"roi_pool": roi_pool},
           "roi_align": {"roi_align": roi_align}}


def failures(name: str, functions: dict) -> dict:
    """{property: Failure} of the component's failing properties for these functions."""
    outcomes = run(COMPONENTS[name], functions)
    assert outcomes is not None, "not implemented"
    return {o.property: o.failure for o in outcomes if o.failure is not None}


def test_every_component_has_properties_and_the_package_has_all_six():
    assert list(COMPONENTS) == list(PACKAGE)
    assert all(len(c.properties) >= 6 for c in COMPONENTS.values())


@pytest.mark.parametrize("name", list(PACKAGE))
def test_the_package_passes_every_property(name):
    assert failures(name, PACKAGE[name]) == {}


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_the_loop_references_pass_every_property(name):
    assert failures(name, COMPONENTS[name].reference) == {}


def test_the_checks_share_no_code_with_the_ops_they_check():
    for path in (ROOT / "minimaskrcnn" / "exercises").glob("*.py"):
        tree = ast.parse(path.read_text())
        imports = [("." * node.level + (node.module or "")) if isinstance(node, ast.ImportFrom) else alias.name
                   for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for alias in node.names]
        # only the standard library, numpy, torch and the checks' own modules (".core", ".roi_pool")
        assert not [m for m in imports if m.startswith(("..", "minimaskrcnn", "torchvision"))], (path.name, imports)


def test_the_solutions_pass_through_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "minimaskrcnn", "check", "all", "notebooks/solutions/my_ops.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("  PASS  ") == sum(len(c.properties) for c in COMPONENTS.values())
    assert "FAIL" not in proc.stdout and proc.stdout.rstrip().endswith("all: 6 of 6 components pass")


# file -> component, the first failing property (its start), the hint (its start)
BUGS = {
    "box_iou_plus_one.py": ("box_iou", "IoU = intersection / (area1 + area2 - intersection)",
                            "your IoU equals the +1 (inclusive pixel) convention, width = x2 - x1 + 1"),
    "box_coder_no_weights.py": ("box_coder", "encode: the weights (wx, wy, ww, wh) multiply the deltas",
                                "your encode_boxes ignores the weights"),
    "nms_greater_equal.py": ("nms", "a box is dropped only when its IoU is > iou_threshold",
                             "your NMS drops a box whose IoU equals the threshold"),
    "grid_anchors_w_over_h.py": ("grid_anchors", "w = size / sqrt(a), h = size * sqrt(a) for a = h / w",
                                 "your anchors are wide where they should be tall: the aspect ratio is h / w"),
    "roi_pool_truncate.py": ("roi_pool", "the RoI's corners are rounded to whole feature pixels, half away from zero",
                             "your RoIPool rounds the RoI with floor/truncation (int(), math.floor) instead of "
                             "round-half-away-from-zero"),
    "roi_pool_python_round.py": ("roi_pool", "the RoI's corners are rounded to whole feature pixels",
                                 "your RoIPool rounds the RoI's corners half to even (Python's round()"),
    "roi_align_no_half.py": ("roi_align", "each bin averages its sampling points at (b + (i + 0.5) / g) * bin_size",
                             "your outputs equal RoIAlign with the sample points at i / g instead of (i + 0.5) / g: "
                             "the +0.5 is missing"),
    "roi_align_no_grad.py": ("roi_align", "the gradient of output.sum() reaches each pixel",
                             "build the output from input's elements with torch operations"),
}


def test_every_planted_bug_is_listed():
    assert sorted(p.name for p in PLANTED.glob("*.py")) == sorted(BUGS)


@pytest.mark.parametrize("file", list(BUGS))
def test_a_planted_bug_fails_with_the_property_and_the_hint_that_point_at_it(file, capsys):
    component, prop, hint = BUGS[file]
    with pytest.raises(SystemExit) as stop:
        cli.main(["check", component, str(PLANTED / file)])
    assert stop.value.code == 1
    out = capsys.readouterr().out
    first = out.split("The first failure:\n", 1)[1]
    assert first.startswith(f"  property: {prop}")
    assert f"\n  hint: {hint}" in first
    assert "\n  expected: " in first and "\n  got:      " in first  # and the inputs before them
    assert re.search(r"\n    \w+ = ", first)


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_every_known_mistake_fails_and_its_first_failure_carries_its_own_hint(name):
    component = COMPONENTS[name]
    for mistake in component.mistakes:
        failed = failures(name, {**component.reference, **mistake.functions})
        assert failed, mistake.hint
        assert next(iter(failed.values())).hint == mistake.hint


def _stack_rows(op):
    """op on one row of its (N, 4) arguments at a time, stacked, as a student may write it: torch.stack of no
    rows raises."""
    def one_row_at_a_time(first, second, *rest):
        return torch.stack([op(first[i:i + 1], second[i:i + 1], *rest)[0] for i in range(len(first))])
    return one_row_at_a_time


def _one_roi_at_a_time(op):
    """An RoI op on one RoI at a time, stacked: fails when there are no RoIs."""
    return lambda x, boxes, *rest: torch.stack([op(x, boxes[k:k + 1], *rest)[0] for k in range(len(boxes))])


# Wrong functions beyond the known mistakes and the planted bugs: the kinds of slips those do not cover.
WRONG = {
    "box_iou": [{"box_iou": lambda a, b: box_iou(a, b).float()}],
    "box_coder": [{"encode_boxes": _stack_rows(encode_boxes), "decode_boxes": _stack_rows(decode_boxes)},
                  {"encode_boxes": lambda *a: encode_boxes(*a).float(), "decode_boxes": decode_boxes}],
    "nms": [{"nms": lambda b, s, t: (b[0], nms(b, s, t))[1]},  # looks at the first box before anything else
            {"nms": lambda b, s, t: nms(b, s, t).int()}],
    "grid_anchors": [{"grid_anchors": lambda *a: torch.stack(list(grid_anchors(*a)))},
                     {"grid_anchors": lambda *a: grid_anchors(*a).double()}],
    "roi_pool": [{"roi_pool": _one_roi_at_a_time(roi_pool)}, {"roi_pool": lambda *a: roi_pool(*a).float()}],
    "roi_align": [{"roi_align": _one_roi_at_a_time(roi_align)}, {"roi_align": lambda *a: roi_align(*a).float()}],
}


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_every_property_fails_on_some_wrong_function(name):
    component = COMPONENTS[name]
    candidates = [{**component.reference, **m.functions} for m in component.mistakes] + WRONG[name]
    for path in PLANTED.glob("*.py"):
        module = load_module(path)
        if all(hasattr(module, f) for f in component.functions):
            candidates.append({f: getattr(module, f) for f in component.functions})
    failed = set()
    for candidate in candidates:
        failed |= set(failures(name, candidate))
    assert [p.name for p in component.properties if p.name not in failed] == []


def test_a_random_case_is_shrunk_to_the_one_failing_roi(capsys):
    def zero_width_wrong(input, boxes, *args):  # right, except for RoIs of zero width (x2 = x1)
        out = roi_align(input, boxes, *args)
        return out + (boxes[:, 3] == boxes[:, 1]).to(out.dtype)[:, None, None, None]
    assert check("roi_align", zero_width_wrong) is False
    out = capsys.readouterr().out
    assert out.count("  FAIL  ") == 1 and "FAIL  random RoIs" in out
    first = out.split("The first failure:\n", 1)[1]
    assert "case: RoI 0 of a random case, alone on its image's first channel" in first
    assert "(float64, shape (1, 1, 5, 6))" in first  # input: one image, one channel
    assert re.search(r"boxes = \[\[0\. *, [^\n]*\]\]  \(float64, shape \(1, 5\)\)", first)


def test_the_notebook_api_reports_unwritten_and_crashing_functions_without_raising(capsys):
    def skeleton(boxes1, boxes2):
        raise NotImplementedError

    def crashes(boxes, scores, iou_threshold):
        return boxes[:, 4]  # no column 4
    assert check("box_iou", skeleton) is False
    assert "box_iou: not implemented yet" in capsys.readouterr().out
    assert check("nms", crashes) is False
    out = capsys.readouterr().out
    assert re.search(r"got: +raised IndexError: .*\(in crashes, line \d+ of test_check\.py\)", out)
    with pytest.raises(ValueError, match="takes the function"):
        check("box_coder", encode_boxes)
    with pytest.raises(ValueError, match="unknown component 'roialign'"):
        check("roialign", roi_align)


def test_list_and_usage_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert cli.main(["check", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(COMPONENTS)
    mine = tmp_path / "my_ops.py"
    mine.write_text("def box_iou(boxes1, boxes2):\n    raise NotImplementedError\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def roi_align(:\n")
    for argv, message in [(["check", "roialign", str(mine)], "unknown component 'roialign'"),
                          (["check", "roi_align", str(tmp_path / "nope.py")], "no such file"),
                          (["check", "roi_align", str(mine)], "my_ops.py defines no function roi_align"),
                          (["check", "roi_align", str(broken)], "broken.py could not be imported: SyntaxError"),
                          (["check", "roi_align"], "check needs a component and a file"),
                          (["check", "", str(mine)], "check needs a component and a file"),  # empty: the same
                          (["check", "roi_align", ""], "check needs a component and a file")]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as stop:  # all: a file with one unwritten skeleton and nothing else fails
        cli.main(["check", "all", str(mine)])
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "box_iou: not implemented yet" in out and f"nms: {mine} does not define nms" in out
    assert out.rstrip().endswith("all: 0 of 6 components pass (not yet: box_iou, box_coder, nms, grid_anchors, "
                                 "roi_pool, roi_align)")
