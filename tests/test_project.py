"""The project's own promises: environment.yml and pyproject.toml name the same packages,
and the package never imports torchvision (a test and benchmark reference only)."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# conda and PyPI spell two of our packages differently.
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _environment_packages():
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"^\s*-\s+[\"']?([A-Za-z0-9_.\-]+)", line)  # a pip line may be quoted (an environment marker)
        if m and not line.strip().startswith("- -e") and not line.strip().startswith("- pip:"):
            names.add(CONDA_TO_PYPI.get(_name(m.group(1)), _name(m.group(1))))
    return names - {"python", "pip"}


def test_environment_yml_agrees_with_pyproject():
    runtime, dev = _pyproject_packages()
    assert _environment_packages() == runtime | dev


def test_torch_version_floor_agrees():
    env = (ROOT / "environment.yml").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch>=2\.2"', pyproject)
    assert re.search(r"pytorch>=2\.2", env)


def test_package_never_imports_torchvision():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "minimaskrcnn").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+torchvision", p.read_text(), re.M)]
    assert offenders == []
