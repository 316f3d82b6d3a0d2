"""The package layout: layers import only downward, packages say what they export, modules stay small."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "dsr"

# Bottom to top. A module may import from its own layer or any layer below it.
LAYERS = [
    ("dsr", "dsr.errors", "dsr._validation", "dsr.atomic", "dsr.progress", "dsr._allocator"),
    ("dsr.io",),
    ("dsr.signal",),
    ("dsr.synthetic",),
    ("dsr.models",),
    ("dsr.training",),
    ("dsr.analysis",),
    ("dsr.report",),
    ("dsr.pipeline", "dsr.cli"),
]
PACKAGES = [
    "dsr.io",
    "dsr.signal",
    "dsr.synthetic",
    "dsr.models",
    "dsr.training",
    "dsr.analysis",
    "dsr.report",
]
FORBIDDEN = {
    "snakemake",
    "neurolib",
}  # the library never depends on the workflow or validation-only tools


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """Index of the layer holding ``module`` (longest matching prefix wins)."""
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = i, name.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS in {__file__}")
    return best


def _imports(path: Path) -> list[str]:
    """Absolute module names imported anywhere in the file (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "dsr":  # `from dsr import x` may name a sub-module
                found += [f"dsr.{alias.name}" for alias in node.names]
    return found


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_only_downward(path):
    here = _module_name(path)
    for target in _imports(path):
        top = target.split(".")[0]
        assert top not in FORBIDDEN, f"{here} imports {target}"
        if top != "dsr" or target in ("dsr.__version__",):
            continue
        if target.startswith("dsr.") and not importlib.util.find_spec(target):
            continue  # `from dsr import __version__`: an attribute, not a module
        assert _layer(target) <= _layer(here), (
            f"{here} (layer {_layer(here)}) imports {target} (layer {_layer(target)})"
        )


def test_the_check_sees_an_upward_import():
    assert _layer("dsr.report.html") > _layer("dsr.models.plrnn")
    assert _layer("dsr.analysis.metrics") > _layer("dsr.training.loop")
    assert _layer("dsr.errors") == 0


@pytest.mark.parametrize("package", PACKAGES)
def test_package_docstring_lists_its_exports(package):
    mod = importlib.import_module(package)
    assert mod.__doc__ and len(mod.__doc__.split()) > 20, (
        f"{package} needs a docstring naming its job"
    )
    missing = [name for name in mod.__all__ if f"``{name}``" not in mod.__doc__]
    assert not missing, f"{package}'s docstring does not list {missing}"
    for name in mod.__all__:
        assert hasattr(mod, name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n <= 310, f"{path.relative_to(ROOT)} has {n} lines; split it by job"


def test_no_path_outside_the_repository_in_docs_or_code():
    repo = ROOT.parent
    files = [repo / "README.md", *repo.glob("docs/*.md"), *MODULES]
    assert len(files) > len(MODULES)  # README and docs/ exist
    for path in files:
        text = path.read_text()
        for outside in ("../shared", "/work/", "shared/spec"):
            assert outside not in text, f"{path.relative_to(repo)} names {outside!r}"
