"""Shared fixtures. `coco_root`: the real tiny COCO (50 train2017 + 50 val2017 images) the tests read.

Set MINIMASKRCNN_COCO to point at it (the Makefile and .ci/run do, at ../shared/coco/tiny_coco). When the
variable is set but the folder is incomplete, the tests FAIL: a CI that silently skipped the real-data
tests would pass without testing them. They skip only when the variable is unset and the default
<repo>/data/coco does not exist either.
"""
import os

import pytest

from minimaskrcnn import paths


@pytest.fixture(scope="session")
def coco_root():
    root = paths.coco_root()
    if not os.environ.get(paths.COCO_ENV) and not root.exists():
        pytest.skip(f"no COCO data: {paths.COCO_ENV} is unset and the default {root} does not exist "
                    f"(export {paths.COCO_ENV}=<path to shared/coco/tiny_coco>)")
    problems = paths.coco_root_problems(root)
    if problems:
        pytest.fail(f"{paths.COCO_ENV}={os.environ.get(paths.COCO_ENV, '')!r} -> {root}: " + "; ".join(problems),
                    pytrace=False)
    return root
