"""The implement-it-yourself checks (minimaskrcnn.exercises, `python -m minimaskrcnn check`, notebook 09).

- Every property passes on the checks' loop references, on the package's own functions and on torchvision's
  (tests/reference_adapters.py), --strict included: independent implementations agree with the hand-computed
  values, and no case asks for more than the contract says.
- The solutions (notebooks/solutions/my_ops.py) pass every property through the command line, and run the model
  with the same detections and losses as the package's functions (--in-model).
- Each planted bug (tests/planted_bugs) fails with the property and the hint that point at it; a convention's bug
  passes the core (exit 0) and fails --strict (exit 1); each known mistake is reported with its own hint; each
  property fails on some wrong function.
- A file cannot fake a pass (sys.exit(0), os._exit(0)) or hang the check (endless loops), and a function that
  writes into its inputs is caught.
- use() swaps every call site and restores them, also after an error; compare() names the first stage that differs.
"""
import ast
import re
import types
from pathlib import Path

import pytest
import torch

from minimaskrcnn import cli, config, ops, rpn
from minimaskrcnn.exercises import COMPONENTS, check, compare, load_module, use
from minimaskrcnn.exercises.backward import bilinear_ops
from minimaskrcnn.exercises.core import run
from minimaskrcnn.exercises.isolation import run_in_child
from minimaskrcnn.model import MaskRCNN
from reference_adapters import PACKAGE, TORCHVISION

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ROOT / "tests" / "planted_bugs"
SOLUTIONS = ROOT / "notebooks" / "solutions" / "my_ops.py"


def failures(name: str, functions: dict) -> dict:
    """{property: Failure} of the component's failing properties for these functions."""
    outcomes = run(COMPONENTS[name], functions)
    assert outcomes is not None, "not implemented"
    return {o.property: o.failure for o in outcomes if o.failure is not None}


def test_twelve_components_each_with_a_core_and_the_package_implements_all_but_the_backward_exercise():
    assert list(COMPONENTS) == ["box_iou", "box_coder", "nms", "grid_anchors", "roi_pool", "roi_align", "label_anchors",
                                "sample_rois", "mask_targets", "mask_loss", "paste_masks", "bilinear_backward"]
    assert all(sum(p.core for p in c.properties) >= 3 for c in COMPONENTS.values())
    assert all(any(not p.core for p in c.properties) for c in COMPONENTS.values())
    cores = [p.core for p in COMPONENTS["roi_align"].properties]
    assert cores == sorted(cores, reverse=True)  # the core first
    assert set(PACKAGE) == set(TORCHVISION) == set(COMPONENTS) - {"bilinear_backward"}


@pytest.mark.parametrize("name", list(PACKAGE))
def test_the_package_passes_every_property(name):
    assert failures(name, PACKAGE[name]) == {}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_passes_every_property_of_what_it_implements_conventions_included(name):
    assert failures(name, TORCHVISION[name]) == {}


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_the_loop_references_pass_every_property(name):
    assert failures(name, COMPONENTS[name].reference) == {}


def test_the_checks_share_no_code_with_the_ops_they_check():
    runs_the_model = {"in_model.py", "comparison.py"}  # they swap functions into the model: they import it
    for path in (ROOT / "minimaskrcnn" / "exercises").glob("*.py"):
        tree = ast.parse(path.read_text())
        imports = [("." * node.level + (node.module or "")) if isinstance(node, ast.ImportFrom) else alias.name
                   for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for alias in node.names]
        forbidden = [m for m in imports if m.startswith(("..", "minimaskrcnn", "torchvision"))]
        assert not forbidden or path.name in runs_the_model, (path.name, imports)


def test_the_solutions_pass_every_property_and_run_the_model_alike_through_the_command_line(tmp_path, capsys):
    torch.manual_seed(0)  # an untrained model: the comparison needs the same weights twice, not good ones
    model = MaskRCNN(config.get_config("cpu_small"))
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "model_config": config.to_dict(model.config),
                "progress": {"step": 0}}, checkpoint)
    argv = ["check", "all", str(SOLUTIONS), "--strict", "--in-model", "--checkpoint", str(checkpoint)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("    PASS  ") == sum(len(c.properties) for c in COMPONENTS.values())
    assert "FAIL" not in out and "DIFF" not in out
    assert "all: 12 of 12 components pass their core, 12 every convention too" in out
    assert out.count("SAME  ") == 11 and "identical (within 0.0001)" in out and "losses: equal" in out
    assert "\nin the model: PASS, identical detections and equal losses\n" in out


# file -> component, the first failing property (its start), the hint (its start), whether the core fails
BUGS = {
    "box_iou_plus_one.py": ("box_iou", "IoU = intersection / (area1 + area2 - intersection)",
                            "your IoU equals the +1 (inclusive pixel) convention, width = x2 - x1 + 1", True),
    "box_coder_no_weights.py": ("box_coder", "encode: the weights (wx, wy, ww, wh) multiply the deltas",
                                "your encode_boxes ignores the weights", False),
    "nms_greater_equal.py": ("nms", "a box is dropped only when its IoU is > iou_threshold",
                             "your NMS drops a box whose IoU equals the threshold", False),
    "grid_anchors_w_over_h.py": ("grid_anchors", "w * h = size^2 and h / w = a",
                                 "your anchors are wide where they should be tall: the aspect ratio is h / w", True),
    "roi_pool_truncate.py": ("roi_pool", "the RoI's corners are rounded to whole feature pixels, half away from zero",
                             "your RoIPool rounds the RoI with floor/truncation (int(), math.floor)", False),
    "roi_pool_python_round.py": ("roi_pool", "the RoI's corners are rounded to whole feature pixels",
                                 "your RoIPool rounds the RoI's corners half to even (Python's round()", False),
    "roi_align_no_half.py": ("roi_align", "each bin averages its sampling points at (b + (i + 0.5) / g) * bin_size",
                             "your outputs equal RoIAlign with the sample points at i / g instead of (i + 0.5) / g",
                             True),
    "roi_align_no_grad.py": ("roi_align", "the gradient of output.sum() reaches each pixel",
                             "build the output from input's elements with torch operations", True),
    "label_anchors_no_low_quality.py": ("label_anchors", "low-quality rule: a ground truth's best anchor is positive",
                                        "a ground truth whose best anchor has IoU < fg_iou_thresh gets no positive",
                                        True),
    "sample_rois_first.py": ("sample_rois", "the picks are random", "your sample always picks the same RoIs", True),
    "mask_targets_crop_resize.py": ("mask_targets", "the crop is RoIAlign's: bilinear samples of the mask",
                                    "your targets equal the ground-truth mask cut at the rounded RoI and resized",
                                    True),
    "mask_targets_rounded.py": ("mask_targets", "the crop is RoIAlign's: bilinear samples of the mask",
                                "your RoI corners are rounded to whole pixels before sampling", True),
    "mask_loss_all_classes.py": ("mask_loss", "binary cross-entropy of sigmoid(mask_logits[i, labels[i]])",
                                 "your loss covers all K masks of an RoI", True),
    "mask_loss_softmax.py": ("mask_loss", "binary cross-entropy of sigmoid(mask_logits[i, labels[i]])",
                             "your loss is a softmax across the classes", True),
    "mask_loss_negatives.py": ("mask_loss", "only positive RoIs count", "background RoIs (label 0) count in your loss",
                               True),
    "paste_masks_no_border.py": ("paste_masks", "torchvision's paste: a one-pixel zero border",
                                 "your mask is resized to the box and cut at its edge", False),
    "bilinear_wrong_corner.py": ("bilinear_backward", "backward: pixel (i, j) receives weight * grad_out[k]",
                                 "your backward sends a point's gradient to the wrong corner", True),
    "bilinear_no_accumulation.py": ("bilinear_backward", "backward: pixel (i, j) receives weight * grad_out[k]",
                                    "where points share a pixel, their gradients must add up", True),
}


@pytest.fixture(scope="module")
def planted_reports():
    """Every planted bug checked in one child process: {file: UnitResult}."""
    jobs = [{"file": str(PLANTED / f), "units": [component]} for f, (component, *_) in BUGS.items()]
    return {f: r.units[0] for f, r in zip(BUGS, run_in_child(jobs))}


def test_every_planted_bug_is_listed():
    assert sorted(p.name for p in PLANTED.glob("*.py")) == sorted(BUGS)


@pytest.mark.parametrize("file", list(BUGS))
def test_a_planted_bug_fails_with_the_property_and_the_hint_that_point_at_it(file, planted_reports):
    component, prop, hint, core_fails = BUGS[file]
    unit = planted_reports[file]
    assert (unit.name, unit.core, unit.strict) == (component, not core_fails, False)
    out = "\n".join(unit.lines)
    assert ("core properties fail" in out) == core_fails and ("the core passes" in out) == (not core_fails)
    first = out.split("The first failure:\n", 1)[1]
    assert first.startswith(f"  property: {prop}")
    assert f"\n  hint: {hint}" in first
    assert "\n  expected: " in first and "\n  got:      " in first  # and the inputs before them
    assert re.search(r"\n    \w+ = ", first)


def test_exit_status_0_when_the_core_passes_1_with_strict_or_when_sys_exit_ends_a_function(tmp_path, capsys):
    bug = str(PLANTED / "paste_masks_no_border.py")
    assert cli.main(["check", "paste_masks", bug]) == 0
    assert "the core passes (5 of 5); 1 of 2 conventions fails (only --strict requires them)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        cli.main(["check", "paste_masks", bug, "--strict"])
    assert stop.value.code == 1
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\n\ndef nms(boxes, scores, iou_threshold):\n    sys.exit(0)\n")
    with pytest.raises(SystemExit) as stop:
        cli.main(["check", "nms", str(exits)])
    assert stop.value.code == 1
    assert "got:      raised SystemExit: 0 (in nms, line 4 of exits.py)" in capsys.readouterr().out


GOOD_IOU = SOLUTIONS.read_text().split("# --- the box coder")[0]  # the solution's box_iou (and torch), nothing else


def test_a_file_cannot_fake_a_pass_or_hang_the_check(tmp_path):
    files = {"exit_at_import": "import sys\nsys.exit(0)\n" + GOOD_IOU,
             "exit_in_function": "import sys\n\ndef box_iou(boxes1, boxes2):\n    sys.exit(0)\n",
             "good": GOOD_IOU,
             "os_exit_in_function": "import os\n\ndef box_iou(boxes1, boxes2):\n    os._exit(0)\n",
             "loop_in_function": "def box_iou(boxes1, boxes2):\n    while True:\n        pass\n",
             "good_after_a_loop": GOOD_IOU,
             "loop_at_import": "while True:\n    pass\n"}
    jobs = []
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
        jobs.append({"file": str(tmp_path / f"{name}.py"), "units": ["box_iou"]})
    results = dict(zip(files, run_in_child(jobs, time_limit=2)))
    assert "could not be imported: SystemExit: 0" in results["exit_at_import"].error
    for name in ("exit_in_function", "os_exit_in_function", "loop_in_function"):
        (unit,) = results[name].units
        assert (unit.core, unit.strict) == (False, False), name
    assert "raised SystemExit: 0" in "\n".join(results["exit_in_function"].units[0].lines)
    assert "ended the checker's process (exit status 0)" in results["os_exit_in_function"].units[0].lines[0]
    assert "no result within 2 s: an endless loop?" in results["loop_in_function"].units[0].lines[0]
    assert "its import stopped: no result within 2 s" in results["loop_at_import"].error
    assert results["good"].units[0].core and results["good_after_a_loop"].units[0].strict  # a fresh child goes on


def test_a_function_that_writes_into_its_inputs_is_caught(capsys):
    def zeroes_the_scores(boxes, scores, iou_threshold):
        keep = ops.nms(boxes, scores, iou_threshold)
        scores.zero_()
        return keep
    assert check("nms", zeroes_the_scores) is False
    out = capsys.readouterr().out
    assert "got:      changed its argument scores in place" in out and "hint: do not write into scores" in out


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


def _first_gt(anchors, gt_boxes, fg=0.7, bg=0.3):
    m = PACKAGE["label_anchors"]["label_anchors"](anchors, gt_boxes, fg, bg)
    return torch.where(m >= 0, 0, m)  # every positive matched to ground truth 0


def _solutions():
    return load_module(SOLUTIONS)


def _half_positive(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    return _solutions().sample_rois(proposals, gt_boxes, gt_labels, batch_size, 0.5)  # the RPN's fraction


def _no_empty_guard(proposals, gt_boxes, gt_labels, batch_size=512, positive_fraction=0.25):
    candidates = torch.cat([proposals, gt_boxes])
    best_iou, matched = ops.box_iou(gt_boxes, candidates).max(dim=0)  # fails without ground truth
    labels = torch.where(best_iou >= 0.5, gt_labels[matched], 0)
    return candidates, labels, matched


def _nearest_forward(fmap, ys, xs):
    mine = _solutions()

    class Nearest(mine.BilinearSample):
        @staticmethod
        def forward(ctx, fmap, ys, xs):
            ctx.save_for_backward(ys, xs)
            ctx.size = fmap.shape
            return fmap[ys.floor().long(), xs.floor().long()].clone()
    return Nearest.apply(fmap, ys, xs)


# Wrong functions beyond the known mistakes and the planted bugs: the kinds of slips those do not cover.
WRONG = {
    "box_iou": [{"box_iou": lambda a, b: ops.box_iou(a, b).float()}],
    "box_coder": [{"encode_boxes": _stack_rows(ops.encode_boxes), "decode_boxes": _stack_rows(ops.decode_boxes)},
                  {"encode_boxes": lambda *a: ops.encode_boxes(*a).float(), "decode_boxes": ops.decode_boxes}],
    "nms": [{"nms": lambda b, s, t: (b[0], ops.nms(b, s, t))[1]},  # looks at the first box before anything else
            {"nms": lambda b, s, t: ops.nms(b, s, t).int()}],
    "grid_anchors": [{"grid_anchors": lambda *a: torch.stack(list(PACKAGE["grid_anchors"]["grid_anchors"](*a)))},
                     {"grid_anchors": lambda *a: PACKAGE["grid_anchors"]["grid_anchors"](*a).double()}],
    "roi_pool": [{"roi_pool": _one_roi_at_a_time(ops.roi_pool)}, {"roi_pool": lambda *a: ops.roi_pool(*a).float()},
                 {"roi_pool": lambda x, b, s, scale=1.0: ops.roi_align(x, b, s, scale, 2)},  # an average, not a max
                 {"roi_pool": lambda x, b, s, scale=1.0: ops.roi_pool(x, b, s, 1.0)},  # spatial_scale ignored
                 {"roi_pool": lambda *a: ops.roi_pool(*a).detach()}],
    "roi_align": [{"roi_align": _one_roi_at_a_time(ops.roi_align)},
                  {"roi_align": lambda *a: ops.roi_align(*a).float()}],
    "label_anchors": [{"label_anchors": _first_gt},
                      {"label_anchors": lambda *a: PACKAGE["label_anchors"]["label_anchors"](*a).int()}],
    "sample_rois": [{"sample_rois": _half_positive}, {"sample_rois": _no_empty_guard},
                    {"sample_rois": lambda *a: tuple(x.int() if i else x for i, x in
                                                     enumerate(_solutions().sample_rois(*a)))}],
    "mask_targets": [{"mask_targets": lambda *a: 1 - PACKAGE["mask_targets"]["mask_targets"](*a)},
                     {"mask_targets": lambda *a: PACKAGE["mask_targets"]["mask_targets"](*a).double()},
                     {"mask_targets": lambda m, r, i, s: torch.stack([
                         _solutions().mask_targets(m, r[k:k + 1], i[k:k + 1], s)[0] for k in range(len(r))])}],
    "mask_loss": [{"mask_loss": lambda *a: PACKAGE["mask_loss"]["mask_loss"](*a).double()}],
    "paste_masks": [{"paste_masks": lambda m, b, s: PACKAGE["paste_masks"]["paste_masks"](m, b + 3, s)},
                    {"paste_masks": lambda m, b, s: torch.stack([PACKAGE["paste_masks"]["paste_masks"](
                        m[d:d + 1], b[d:d + 1], s)[0] for d in range(len(m))])},
                    {"paste_masks": lambda *a: PACKAGE["paste_masks"]["paste_masks"](*a).double()}],
    "bilinear_backward": [{"bilinear_sample": _nearest_forward}, {"bilinear_sample": bilinear_ops},
                          {"bilinear_sample": lambda f, y, x: _solutions().bilinear_sample(f, y, x).float()}],
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
        out = ops.roi_align(input, boxes, *args)
        return out + (boxes[:, 3] == boxes[:, 1]).to(out.dtype)[:, None, None, None]
    assert check("roi_align", zero_width_wrong) is True  # a convention: the core passes
    out = capsys.readouterr().out
    assert out.count("  FAIL  ") == 1 and "FAIL  random RoIs (some outside" in out
    first = out.split("The first failure:\n", 1)[1]
    assert "case: RoI 0 of a random case, alone on its image's first channel" in first
    assert "(float64, shape (1, 1, 5, 6))" in first  # input: one image, one channel
    assert re.search(r"boxes = \[\[0\. *, [^\n]*\]\]  \(float64, shape \(1, 5\)\)", first)
    assert check("roi_align", zero_width_wrong, print_=lambda line: None, strict=True) is False


def test_the_notebook_api_reports_unwritten_exiting_and_crashing_functions_without_raising(capsys):
    def skeleton(boxes1, boxes2):
        raise NotImplementedError

    def crashes(boxes, scores, iou_threshold):
        return boxes[:, 4]  # no column 4

    def exits(boxes1, boxes2):
        raise SystemExit(0)
    assert check("box_iou", skeleton) is False
    out = capsys.readouterr().out
    assert "box_iou: not implemented yet" in out and "  core, the idea" in out and "    ----  " in out
    assert check("nms", crashes) is False
    out = capsys.readouterr().out
    assert re.search(r"got: +raised IndexError: .*\(in crashes, line \d+ of test_check\.py\)", out)
    assert check("box_iou", exits) is False
    assert "raised SystemExit: 0" in capsys.readouterr().out
    with pytest.raises(ValueError, match="takes the function"):
        check("box_coder", ops.encode_boxes)
    with pytest.raises(ValueError, match="unknown component 'roialign'"):
        check("roialign", ops.roi_align)


def test_list_and_usage_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert cli.main(["check", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(COMPONENTS)
    assert re.search(r"^roi_align +roi_align +6 core,  6 conventions: RoIAlign", "\n".join(listed), re.M)
    mine = tmp_path / "my_ops.py"
    mine.write_text("def box_iou(boxes1, boxes2):\n    raise NotImplementedError\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def roi_align(:\n")
    for argv, message in [(["check", "roialign", str(mine)], "unknown component 'roialign'"),
                          (["check", "roi_align", str(tmp_path / "nope.py")], "no such file"),
                          (["check", "roi_align", str(mine)], "my_ops.py defines no function roi_align"),
                          (["check", "roi_align", str(broken)], "broken.py could not be imported: SyntaxError"),
                          (["check", "roi_align"], "check needs a component and a file"),
                          (["check", "--in-model", str(mine), "--checkpoint", str(tmp_path / "none.pt")],
                           "--checkpoint"),
                          (["check", "nms", str(mine), "--time-limit", "0"], "--time-limit must be > 0"),
                          (["check", "", str(mine)], "check needs a component and a file"),  # empty: the same
                          (["check", "roi_align", ""], "check needs a component and a file")]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as stop:  # all: a file with one unwritten skeleton and nothing else fails
        cli.main(["check", "all", str(mine)])
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "box_iou: not implemented yet" in out and f"nms: {mine.resolve()} does not define nms" in out
    assert out.rstrip().endswith("all: 0 of 12 components pass their core, 0 every convention too (not yet: box_iou, "
                                 "box_coder, nms, grid_anchors, roi_pool, roi_align, label_anchors, sample_rois, "
                                 "mask_targets, mask_loss, paste_masks, bilinear_backward)")


def test_use_swaps_every_call_site_and_puts_them_back_even_after_an_error():
    from minimaskrcnn import poolers, roi_heads
    from minimaskrcnn.ops import boxes as ops_boxes
    nms_module = __import__("minimaskrcnn.ops.nms", fromlist=["nms"])
    package = {"rpn": rpn.box_iou, "roi_heads": roi_heads.box_iou, "ops": ops.box_iou, "nms": nms_module.nms,
               "pool": poolers.roi_align}

    def skeleton(boxes1, boxes2):
        raise NotImplementedError
    with pytest.raises(RuntimeError, match="inside"):
        with use({"box_iou": skeleton, "nms": ops.nms, "roi_align": ops.roi_align}) as swapped:
            assert {"minimaskrcnn.rpn.box_iou", "minimaskrcnn.roi_heads.box_iou", "minimaskrcnn.ops.box_iou",
                    "minimaskrcnn.ops.boxes.box_iou", "minimaskrcnn.ops.nms.nms", "minimaskrcnn.ops.nms",
                    "minimaskrcnn.poolers.roi_align", "minimaskrcnn.ops.roi_warp.roi_align"} <= set(swapped.places)
            assert rpn.box_iou is not package["rpn"] and ops_boxes.box_iou is not package["ops"]
            a = torch.tensor([[0.0, 0, 2, 2]])
            assert torch.equal(rpn.box_iou(a, a), torch.ones(1, 1))  # the skeleton hands the call to the package's
            assert swapped.fallbacks == {"box_iou"}
            poolers.roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), 2, 1.0, 2, False, "max")
            assert swapped.not_covered == {"roi_align (roi_align with mode='max')"}
            raise RuntimeError("inside")
    assert (rpn.box_iou, roi_heads.box_iou, ops.box_iou, nms_module.nms, poolers.roi_align) == tuple(package.values())
    assert ops_boxes.box_iou is package["ops"]


def test_compare_names_the_first_stage_whose_outputs_differ(capsys):
    torch.manual_seed(0)
    model = MaskRCNN(config.get_config("cpu_small"))

    def shifted_roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        return ops.roi_align(input, boxes + torch.tensor([0.0, 2, 2, 2, 2]), output_size, spatial_scale,
                             sampling_ratio, aligned)
    assert compare({"roi_align": shifted_roi_align}, model, images=1, steps=1) is False
    out = capsys.readouterr().out
    assert "SAME  RoI sampling" in out and "DIFF  box head: call 1, class logits: largest difference" in out
    assert "the first stage whose outputs differ: box head (it runs your roi_align (or roi_pool))" in out
    assert out.rstrip().endswith("in the model: FAIL")
