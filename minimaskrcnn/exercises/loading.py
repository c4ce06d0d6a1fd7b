"""Importing the student's file: load_module("my_ops.py") -> a module, with one-line errors.

A file that raises at import, or calls sys.exit() at its top level, is a failed import (ValueError),
never an exit of the checker.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_module(path) -> object:
    """Import a Python file (e.g. my_ops.py) as a module, with its folder on sys.path for its own imports."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix != ".py":
        raise ValueError(f"{path} is not a Python file (.py)")
    spec = importlib.util.spec_from_file_location(f"_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does (dataclasses, for one, look the module up there)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # sys.exit() at the top of the file is a failed import, not an exit
        del sys.modules[spec.name]
        raise ValueError(f"{path} could not be imported: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module
