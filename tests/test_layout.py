"""The package's layout shows its architecture: no import cycle (read from the source with `ast`, imports
inside functions included), no arrow that runs back up (the model and inference side never import training/,
ablation/, exercises/ or cli/), no module over about 300 lines (320 at most), and the README's package map lists
every module."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minimaskrcnn"
MAX_LINES = 320  # "about 300": a few lines over is fine, a second screenful is not


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set) -> set:
    """The package modules `path` imports anywhere in it (top level or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            # "from . import x" imports the module x when there is one, else a name of the package
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def graph() -> dict:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def find_cycle(edges: dict) -> list | None:
    """One cycle of the directed graph as a list of nodes, or None (depth-first search, three colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        colour[node] = "black"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    edges = graph()
    assert "minimaskrcnn.training.loop" in edges["minimaskrcnn.training"]  # package imports are seen
    assert "minimaskrcnn.model" in edges["minimaskrcnn.training.start"]  # so are imports inside functions


def test_no_import_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def reachable(edges: dict, start: str) -> set:
    """Every module `start` imports, directly or through others."""
    reached, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    return reached


# The house, bottom to top: the model and inference side (the model's components, ops, data, checkpoints,
# devices, evaluation, predict, pretrained weights, drawing), then the training side and the studies built on it,
# then the rooms that use everything (the exercises, the command line). An arrow may only point down.
UPPER_ROOMS = ("minimaskrcnn.training", "minimaskrcnn.ablation", "minimaskrcnn.exercises", "minimaskrcnn.cli")


def in_room(module: str, rooms) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


def test_the_model_and_inference_side_never_import_training_ablation_or_the_cli():
    edges = graph()
    lower = [m for m in edges if not in_room(m, UPPER_ROOMS) and m != "minimaskrcnn.__main__"]
    assert {"minimaskrcnn.model", "minimaskrcnn.evaluation", "minimaskrcnn.predict", "minimaskrcnn.pretrained",
            "minimaskrcnn.checkpoint", "minimaskrcnn.devices", "minimaskrcnn.viz"} <= set(lower)
    for name in lower:
        upward = sorted(m for m in reachable(edges, name) if in_room(m, UPPER_ROOMS))
        assert not upward, f"{name} imports {upward}: the model and inference side must not need them"


def test_training_and_ablation_never_import_the_cli_or_the_exercises():
    edges = graph()
    for name in [m for m in edges if in_room(m, ("minimaskrcnn.training", "minimaskrcnn.ablation"))]:
        upward = sorted(m for m in reachable(edges, name)
                        if in_room(m, ("minimaskrcnn.cli", "minimaskrcnn.exercises")))
        assert not upward, f"{name} imports {upward}"


def test_the_layering_test_sees_an_upward_arrow():
    edges = {"minimaskrcnn.viz": {"minimaskrcnn.training.log"}, "minimaskrcnn.training.log": set()}
    assert reachable(edges, "minimaskrcnn.viz") == {"minimaskrcnn.training.log"}
    assert in_room("minimaskrcnn.training.log", UPPER_ROOMS) and not in_room("minimaskrcnn.trainingx", UPPER_ROOMS)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_about_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_readme_package_map_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The package, in pipeline order", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(minimaskrcnn/[\w/]*\.py|minimaskrcnn/[\w/]+/)`", section))
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in ("__init__.py", "__main__.py"):
            continue  # the package's own plumbing
        rel = str(path.relative_to(ROOT))
        folder = str(path.parent.relative_to(ROOT)) + "/"
        assert rel in listed or folder in listed, f"{rel} is not in the README's package map"
    for entry in listed:
        assert (ROOT / entry).exists(), f"the README's package map lists {entry}, which does not exist"
