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


# ------------------------------------------------ the shared opening (issue 19), students' copies (issue 16)

def load_nbtools():
    """notebooks/nbtools.py, the tool `make student`, `make figures` and the setup cell come from."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nbtools", ROOT / "notebooks" / "nbtools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nbtools = load_nbtools()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_the_setup_cell_and_the_colab_badge(path):
    # `python notebooks/nbtools.py setup notebooks/NN_x.ipynb` writes both
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    assert code.source == nbtools.SETUP_SOURCE
    md = next(c for c in nb.cells if c.cell_type == "markdown").source.splitlines()
    assert md[0].startswith("# ") and md[2] == nbtools.colab_badge(path.name)
    assert nbtools.colab_url(path.name).endswith(f"/blob/main/notebooks/{path.name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solution_cells_are_collapsed(path):
    # "collapsed in JupyterLab: click to open", as the exercises say: JupyterLab reads jupyter.source_hidden and
    # jupyter.outputs_hidden (notebook 07's solutions had neither)
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if "solution" in cell.metadata.get("tags", []):
            assert cell.metadata.get("jupyter", {}) == {"source_hidden": True, "outputs_hidden": True}, f"cell {i}"


def test_setup_inserts_the_cell_and_badge_once_and_leaves_the_rest():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 42 · A new notebook\n\nWhat it is about."),
                nbformat.v4.new_code_cell("import torch"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]})]
    once = nbtools.apply_setup(nbformat.from_dict(nb), "42_new.ipynb")
    twice = nbtools.apply_setup(nbformat.from_dict(once), "42_new.ipynb")
    assert once == twice
    assert [c.source for c in once.cells] == [
        f"# 42 · A new notebook\n\n{nbtools.colab_badge('42_new.ipynb')}\n\nWhat it is about.",
        nbtools.SETUP_SOURCE, "import torch", "x = 1"]
    assert once.cells[1].id == "42-setup"
    assert once.cells[3].metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    nbformat.validate(once)


def test_student_copies_lose_the_solution_cells_and_nothing_else(tmp_path):
    written = nbtools.make_student(tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    removed = 0
    for path in NOTEBOOKS:
        original = nbformat.read(path, as_version=4)
        student = nbformat.read(tmp_path / path.name, as_version=4)
        kept = [c for c in original.cells if "solution" not in c.metadata.get("tags", [])]
        assert student.cells == kept  # same order, sources, outputs, metadata and ids
        assert student.metadata == original.metadata
        assert not [c for c in student.cells if "solution" in c.metadata.get("tags", [])]
        removed += len(original.cells) - len(kept)
    assert removed >= 20  # notebooks 01-08 have 3 or 4 solution cells each


def test_setup_uses_one_cpu_thread_without_a_gpu_and_leaves_threads_alone_with_one(monkeypatch):
    import torch

    from minimaskrcnn import notebook

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a device is only named, not touched
        assert notebook.setup(verbose=False) == torch.device("cuda:0") and torch.get_num_threads() == 2
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert notebook.setup(verbose=False) == torch.device("cpu") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_runs_go_to_the_clone_or_to_the_current_folder_never_beside_an_installed_package(monkeypatch, tmp_path):
    from minimaskrcnn import notebook, paths

    assert notebook.in_clone() and notebook.runs_dir() == ROOT / "runs"
    monkeypatch.setattr(paths, "REPO_ROOT", None)  # what an installed package sees (paths.clone_root)
    monkeypatch.chdir(tmp_path)
    assert not notebook.in_clone() and notebook.runs_dir() == tmp_path / "runs"
