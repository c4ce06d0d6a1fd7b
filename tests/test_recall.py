"""found_objects: which objects of an image its detections find. Every expected value is worked out by hand."""
import torch

from minimaskrcnn.recall import found_objects


def dets(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores)}


TARGET = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]]), "labels": torch.tensor([1, 2])}


def test_an_object_is_found_by_a_detection_of_its_class_at_iou_half():
    # [0, 0, 10, 5] inside [0, 0, 10, 10]: IoU = 50 / 100 = 0.5 exactly, which counts (>=)
    assert found_objects(dets([[0, 0, 10, 5]], [1], [0.9]), TARGET).tolist() == [True, False]
    # [0, 0, 10, 4.9]: IoU 0.49, not found
    assert found_objects(dets([[0, 0, 10, 4.9]], [1], [0.9]), TARGET).tolist() == [False, False]


def test_the_wrong_class_or_a_low_score_finds_nothing():
    assert found_objects(dets([[0, 0, 10, 10]], [2], [0.9]), TARGET).tolist() == [False, False]
    assert found_objects(dets([[0, 0, 10, 10]], [1], [0.49]), TARGET).tolist() == [False, False]
    assert found_objects(dets([[0, 0, 10, 10]], [1], [0.49]), TARGET, score_thresh=0.4).tolist() == [True, False]


def test_a_detection_finds_one_object_and_a_duplicate_finds_nothing_more():
    # two objects of class 1 side by side, [0, 0, 10, 10] and [5, 0, 15, 10]; one detection on the first:
    # IoU with the first 1, with the second 50 / 150 = 1/3: it finds the first only
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]]), "labels": torch.tensor([1, 1])}
    assert found_objects(dets([[0, 0, 10, 10]], [1], [0.9]), target).tolist() == [True, False]
    # a second, weaker detection on the same first object: IoU 1/3 < 0.5 with the second, so still one found
    assert found_objects(dets([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8]), target).tolist() == [True, False]
    # at iou_thresh 0.3 the duplicate takes the second object (1/3 >= 0.3), the one left for it
    assert found_objects(dets([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8]), target,
                         iou_thresh=0.3).tolist() == [True, True]


def test_detections_are_matched_best_score_first():
    # object A [0, 0, 10, 10], object B [0, 0, 10, 6]; iou_thresh 0.65.
    # d = [0, 0, 10, 8]: IoU 0.8 with A, 60 / 80 = 0.75 with B: it prefers A but could take B.
    # e = [0, 0, 10, 10]: IoU 1 with A, 0.6 with B (below 0.65): it can only take A.
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0]]), "labels": torch.tensor([1, 1])}
    # d scores higher: d takes A first, e finds nothing left: B is missed
    assert found_objects(dets([[0, 0, 10, 8], [0, 0, 10, 10]], [1, 1], [0.9, 0.8]), target,
                         iou_thresh=0.65).tolist() == [True, False]
    # e scores higher: e takes A, then d takes B: both found
    assert found_objects(dets([[0, 0, 10, 8], [0, 0, 10, 10]], [1, 1], [0.8, 0.9]), target,
                         iou_thresh=0.65).tolist() == [True, True]


def test_no_detections_or_no_objects():
    empty = dets(torch.zeros(0, 4).tolist(), [], [])
    assert found_objects(empty, TARGET).tolist() == [False, False]
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    assert found_objects(dets([[0, 0, 10, 10]], [1], [0.9]), none).tolist() == []
