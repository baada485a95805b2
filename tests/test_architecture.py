"""The layers of the house: import direction, sizes, and the one interface."""

import ast
import pathlib

import pytest

import sknn_large
from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._estimator import BaseLargeMLP

ROOT = pathlib.Path(sknn_large.__file__).parent
_CORE = ("sknn_large._engine", "sknn_large._data", "sknn_large._estimator")
_ON_TOP = {
    "sknn_large._persist",
    "sknn_large._onnx",
    "sknn_large._plotting",
    "sknn_large.model_selection",
    "sknn_large.ensemble",
    "sknn_large.tabular",
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: pathlib.Path, mods) -> set[str]:
    """Modules of the package that ``name`` imports, function bodies included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in mods}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            full = (
                (base + "." + node.module if node.module else base)
                if node.level
                else node.module
            )
            subs = {full + "." + a.name for a in node.names} & set(mods)
            found |= subs
            if full in mods and len(subs) < len(node.names):
                found.add(full)
    found.discard(name)
    return found


def _graph():
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}, mods


def test_no_import_cycles():
    # No module reaches itself through imports, not even lazily in a function.
    graph, _ = _graph()
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, m, n]))
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_core_imports_nothing_that_sits_on_top():
    # Persistence, ONNX, plotting, searches and ensembles build on the core;
    # the engine, the data feed and the estimators never import them.
    graph, _ = _graph()
    core = [m for m in graph if m.startswith(_CORE)]
    core += ["sknn_large._classifier", "sknn_large._regressor"]
    for m in core:
        assert not {n for n in graph[m] if n.startswith(tuple(_ON_TOP))}, m


def test_engine_and_data_never_import_sklearn():
    # The engine and the data feed are pure torch/numpy.
    _, mods = _graph()
    for m, path in mods.items():
        if m.startswith(("sknn_large._engine", "sknn_large._data")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                assert not any(n.split(".")[0] == "sklearn" for n in names), m


def test_modules_and_classes_stay_small():
    # No module over 600 lines; no class over 300 lines of code (docstrings,
    # which numpydoc makes long for every parameter, not counted).
    for m, path in _modules().items():
        text = path.read_text()
        assert text.count("\n") <= 600, (m, text.count("\n"))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                for inner in ast.walk(node):
                    body = getattr(inner, "body", None)
                    if (
                        isinstance(inner, ast.ClassDef | ast.FunctionDef)
                        and body
                        and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)
                    ):
                        lines -= body[0].end_lineno - body[0].lineno + 1
                assert lines <= 300, (m, node.name, lines)


def _private_estimator_names() -> set[str]:
    names = set()
    for cls in (BaseLargeMLP, LargeMLPClassifier, LargeMLPRegressor):
        for klass in cls.__mro__:
            if klass.__module__.startswith("sknn_large"):
                names |= {n for n in vars(klass) if n.startswith("_")}
    names |= {"_state", "_param_dtype", "_output_dtype", "_no_improvement_count"}
    names |= {"_label_binarizer"}
    # scikit-learn's own developer API, which every estimator shares.
    names -= {"_parameter_constraints", "_validate_params"}
    return {n for n in names if not n.startswith("__")}


@pytest.mark.parametrize(
    "module",
    [
        "sknn_large.ensemble",
        "sknn_large.model_selection._search",
        "sknn_large.model_selection._folds",
        "sknn_large._checkpoint",
        "sknn_large._checkpoint._file",
        "sknn_large._checkpoint._validate",
        "sknn_large._checkpoint._fingerprint",
        "sknn_large._persist",
        "sknn_large._persist._save",
        "sknn_large._persist._restore",
        "sknn_large._persist._schema",
        "sknn_large._persist._composite",
        "sknn_large._persist._codec",
        "sknn_large._persist._format",
        "sknn_large._onnx",
        "sknn_large.tabular._estimators",
        "sknn_large.tabular._base",
    ],
)
def test_layers_on_top_use_no_private_estimator_members(module):
    # Searches, ensembles and checkpoints talk to estimators through their
    # public API and the stacked-fit interface only.
    private = _private_estimator_names()
    tree = ast.parse(_modules()[module].read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    }
    assert not used & private, sorted(used & private)


def test_import_time_packages_are_declared_dependencies():
    # `pip install .` alone must give a working `import sknn_large`: every
    # third-party package imported at module level is a core dependency
    # (optional ones are imported inside the functions that need them).
    import re
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    declared = {
        re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].replace("-", "_").lower()
        for d in pyproject["project"]["dependencies"]
    }
    declared = {"sklearn" if d == "scikit_learn" else d for d in declared}
    found = set()
    for path in _modules().values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third_party = found - set(sys.stdlib_module_names) - {"sknn_large", "__future__"}
    assert third_party <= declared, sorted(third_party - declared)
