"""Every notebook is a valid nbformat 4.5 file whose cells carry unique ids: without them nbformat warns today
and will refuse the file in a future version (a cell added by hand to the JSON has none)."""
import warnings
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_valid_with_unique_cell_ids(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MissingIDFieldWarning included
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    ids = [cell.get("id") for cell in nb.cells]
    assert None not in ids
    assert len(set(ids)) == len(ids)
