"""The floors of the engine (docs/NOTES.md, "Map of the house"): the import graph of DCEUSResponseLib
has no cycle, every module imports only rooms on lower floors (or its own room), and modules and
functions stay small enough to read.

Imports are read with ``ast`` from every module, wherever they sit (module level or inside a
function: both are dependencies), except under ``if TYPE_CHECKING:`` (annotations only).
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "DCEUSResponseLib"
NAME = PACKAGE.name

# Each room's floor; a module may import its own room and rooms on lower floors only. A new room
# (pet/, fusion/, ...) gets its floor here, and in the map of the house in docs/NOTES.md.
FLOORS = {
    "DCEUSResponseLib": 0,  # __init__: the version and software name
    "errors": 0,
    "parallel": 0,  # how many threads the process may use
    "spatial": 1,  # the frame geometry: below clip, which gives each clip its geometry
    "clip": 2,
    "catalogue": 2,  # parameter names, units, codes, colour maps
    "io": 3,
    "kinetics": 4,
    "ceus": 5,
    "pet": 5,
    "fusion": 6,  # one clip's analysis placed in the patient's CT / PET
    "export": 7,  # files are views of the results below (and the atomic staging every writer uses)
    "longitudinal": 8,  # a trial's exams: reads analyses and fusions, writes its tables through export
    "scene": 9,  # Slicer nodes of any of the above (analyses, fusions, a study's follow-up)
    "synthetic": 9,
    "app": 10,
    "__main__": 11,
}
# Rooms only the application may use: the engine below ``app`` never builds a Slicer scene (the
# command line passes the bundle writer to export as an extra output) nor makes test data.
ONLY_FOR_THE_APPLICATION = {"scene": {"scene", "app"}, "synthetic": {"synthetic", "app"}, "app": {"app", "__main__"}}

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_MARK = "# long:"  # on a def line (or in a module's header, before its imports): why it may be longer


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(tree: ast.AST, module: str) -> set[str]:
    """The package's modules imported anywhere in ``tree`` (``from X import name`` counts as X.name when
    that is a module, else X)."""
    found = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            if base.split(".")[0] == NAME:
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
        stack.extend(ast.iter_child_nodes(node))
    found.discard(module)
    return found


GRAPH = {module: _imports(ast.parse(path.read_text(encoding="utf-8")), module) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_graph_is_read():
    assert len(GRAPH) > 30
    assert "DCEUSResponseLib.ceus.pipeline" in GRAPH["DCEUSResponseLib.app.commands.analyze"]
    assert "DCEUSResponseLib.kinetics.models" in GRAPH["DCEUSResponseLib.kinetics.bolus"]


def test_every_room_has_a_floor():
    assert {_room(m) for m in MODULES} <= set(FLOORS), "give the new room a floor in FLOORS and in docs/NOTES.md"


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_floors_import_only_lower_floors():
    upward = [f"{module} imports {target}" for module, targets in GRAPH.items() for target in sorted(targets)
              if _room(target) != _room(module) and FLOORS[_room(target)] >= FLOORS[_room(module)]]
    assert not upward, "imports of a room on the same or a higher floor:\n" + "\n".join(upward)


def test_scene_synthetic_and_app_are_used_only_by_the_application():
    misplaced = [f"{module} imports {target}" for module, targets in GRAPH.items() for target in sorted(targets)
                 if _room(target) in ONLY_FOR_THE_APPLICATION
                 and _room(module) not in ONLY_FOR_THE_APPLICATION[_room(target)]]
    assert not misplaced, "\n".join(misplaced)


def test_kinetics_never_imports_ceus_and_io_reads_only():
    assert not any(_room(t) == "ceus" for m, ts in GRAPH.items() if _room(m) == "kinetics" for t in ts)
    assert not any(_room(t) in ("export", "scene") for m, ts in GRAPH.items() if _room(m) == "io" for t in ts)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from DCEUSResponseLib.ceus import pipeline\nif TYPE_CHECKING:\n    import DCEUSResponseLib.app.cli\n"
                     "def f():\n    from DCEUSResponseLib.scene.tables import add_analysis_results\n")
    assert _imports(tree, "DCEUSResponseLib.kinetics.bolus") == {"DCEUSResponseLib.ceus.pipeline",
                                                                  "DCEUSResponseLib.scene.tables"}


# ----------------------------------------------------------------------------------------------
# sizes


def _docstring_lines(node: ast.FunctionDef) -> int:
    first = node.body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
        isinstance(first.value.value, str)
    return first.end_lineno - first.lineno + 1 if is_docstring else 0


def _long_functions() -> dict[str, int]:
    """Functions longer than MAX_FUNCTION_LINES (code lines, the docstring not counted) and unmarked."""
    out = {}
    for module, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if length > MAX_FUNCTION_LINES and LONG_MARK not in lines[node.lineno - 1]:
                    out[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = length
    return out


def test_no_function_over_80_lines_without_a_reason():
    offenders = _long_functions()
    assert not offenders, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or say why on the def line "
                           f"with '{LONG_MARK} <reason>'): {offenders}")



@pytest.mark.parametrize("module", sorted(MODULES), ids=sorted(MODULES))
def test_no_module_over_500_lines_without_a_reason(module):
    text = MODULES[module].read_text(encoding="utf-8")
    lines = text.splitlines()
    body = ast.parse(text).body
    first_code = next((node.lineno for node in body if not isinstance(node, ast.Expr)), len(lines) + 1)
    justified = any(LONG_MARK in line for line in lines[:first_code - 1])  # a comment in the module's header
    assert len(lines) <= MAX_MODULE_LINES or justified, \
        f"{module}: {len(lines)} lines; split it by job, or say why before its imports with '{LONG_MARK} <reason>'"
