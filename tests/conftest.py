"""Shared fixtures. `coco_root`: the real COCO images the tests read.

By default the sample shipped in minimaskrcnn/data/coco_sample (24 train2017 + 20 val2017 images), so the real-data
tests run on every fresh clone, with nothing beside it and no network. MINIMASKRCNN_COCO points them at another COCO
root instead (any root with train2017 and val2017); when it names a folder that is missing or incomplete, the tests
FAIL rather than skip: a CI that silently skipped the real-data tests would pass without testing them.
"""
import os

import pytest

from minimaskrcnn import paths


@pytest.fixture(scope="session")
def coco_root():
    root = paths.coco_root() if os.environ.get(paths.COCO_ENV) else paths.SAMPLE_ROOT
    problems = paths.coco_root_problems(root)
    if problems:
        pytest.fail(f"{paths.COCO_ENV}={os.environ.get(paths.COCO_ENV, '')!r} -> {root}: " + "; ".join(problems),
                    pytrace=False)
    return root
