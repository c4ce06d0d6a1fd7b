"""What a dataset says about its keypoints (Sec. 5): their names, the skeleton that joins them, which pairs swap in
a mirror image, and how precisely each can be placed (the sigmas of COCO's keypoint similarity, OKS).

A dataset has one layout of K keypoint types; every instance has K keypoints (x, y, v) in image pixels, v = 0 not
labelled (x = y = 0), 1 labelled but hidden, 2 labelled and visible (COCO's convention). The datasets carry:
    ds.num_keypoints  K (0: no keypoints)
    ds.keypoint_names K names
    ds.skeleton       pairs (i, j) of 0-based keypoint indices to draw as limbs (COCO's files count from 1)
    ds.flip_pairs     pairs (i, j) that swap under a horizontal flip: a mirrored left eye is a right eye
    ds.keypoint_sigmas K OKS sigmas for the evaluation, or None where none are known

Glossary: N instances, K keypoint types.
"""
from __future__ import annotations

import re

# COCO's person keypoints, in the order of person_keypoints_*.json
COCO_PERSON_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                         "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                         "left_knee", "right_knee", "left_ankle", "right_ankle")
# COCO person_keypoints' skeleton (its files' "skeleton", counted from 1) made 0-based: legs, torso, arms, face
COCO_PERSON_SKELETON = [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
                        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
# COCO's OKS sigmas, one per person keypoint (pycocotools' kpt_oks_sigmas): the spread of human annotators'
# clicks about the true point, as a fraction of the person's scale. Eyes and nose are sharp (0.025), hips vague
# (0.107): a keypoint prediction is judged against how well people themselves agree.
COCO_PERSON_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
                      0.087, 0.087, 0.089, 0.089)


def flip_pairs_from_names(names) -> list[tuple[int, int]]:
    """Pairs (i, j) of keypoints whose names differ only by "left" and "right" (left_eye / right_eye), i < j.
    The others (nose, or a circle's top) map onto themselves in a mirror image."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        mirrored = re.sub("left", "right", name) if "left" in name else None
        if mirrored in index:
            pairs.append(tuple(sorted((i, index[mirrored]))))
    return pairs


def check_flip_pairs(pairs, num_keypoints: int, source: str) -> list[tuple[int, int]]:
    """The pairs as a list of (i, j) int tuples; ValueError naming `source` when a pair is not two distinct indices
    in 0..K-1 or a keypoint is in two pairs (a flip must be a permutation that undoes itself)."""
    out, seen = [], set()
    for pair in pairs:
        ok = (isinstance(pair, (list, tuple)) and len(pair) == 2 and
              all(isinstance(i, int) and not isinstance(i, bool) for i in pair))
        if not ok or not all(0 <= i < num_keypoints for i in pair) or pair[0] == pair[1]:
            raise ValueError(f"{source}: flip_pairs entry {pair!r} is not two different keypoint indices in "
                             f"0..{num_keypoints - 1} (there are {num_keypoints} keypoint types)")
        if seen & set(pair):
            raise ValueError(f"{source}: flip_pairs names keypoint {sorted(seen & set(pair))[0]} twice")
        seen |= set(pair)
        out.append((int(pair[0]), int(pair[1])))
    return out


def check_sigmas(sigmas, num_keypoints: int, source: str) -> tuple | None:
    """K positive OKS sigmas as a tuple (None stays None); ValueError naming `source` otherwise."""
    if sigmas is None:
        return None
    sigmas = tuple(sigmas)
    if len(sigmas) != num_keypoints or not all(isinstance(s, (int, float)) and s > 0 for s in sigmas):
        raise ValueError(f"{source}: keypoint_sigmas must be {num_keypoints} positive numbers, one per keypoint "
                         f"type; got {sigmas!r}")
    return sigmas
