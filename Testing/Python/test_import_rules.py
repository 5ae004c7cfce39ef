"""Package rule: DCEUSResponseLib modules import only the standard library, numpy, scipy and vtk when
they are imported (Slicer's Python, a bare Python with the engine's few dependencies and the
``slicer-core`` wheel must all be able to import every module); everything else is imported inside
the functions that need it."""
import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "DCEUSResponseLib"
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "vtk", "vtkmodules"}
MODULES = sorted(PACKAGE.rglob("*.py"))


def _is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): never executed, for annotations only."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_imports(body):
    """Import statements that run when the module is imported: module level, in if/try/with blocks
    and class bodies, but not in function bodies nor under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif _is_type_checking_block(node):
            yield from _import_time_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _import_time_imports(children)


def _top_level_names(node) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level or (node.module or "").split(".")[0] == PACKAGE.name:  # this package
            return []
        return [node.module.split(".")[0]]
    return [alias.name.split(".")[0] for alias in node.names]


def test_the_package_has_modules():
    assert PACKAGE.is_dir() and len(MODULES) > 5


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_imports_only_stdlib_numpy_scipy_vtk_at_import_time(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed = set(sys.stdlib_module_names) | ALLOWED_THIRD_PARTY | {"__future__"}
    offending = [f"{path.name}:{node.lineno}: {ast.unparse(node)}"
                 for node in _import_time_imports(tree.body)
                 if any(name not in allowed for name in _top_level_names(node))]
    assert not offending, ("imports at module level outside the standard library, numpy, scipy and vtk "
                           "(move them into the functions that use them):\n" + "\n".join(offending))


def test_the_check_catches_what_it_should():
    source = """
import os, pydicom
from DCEUSResponseLib import clip
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import slicer
try:
    import PIL
except ImportError:
    import nrrd
class A:
    import matplotlib
def f():
    import slicer
"""
    names = [name for node in _import_time_imports(ast.parse(source).body) for name in _top_level_names(node)]
    assert names == ["os", "pydicom", "typing", "PIL", "nrrd", "matplotlib"]
