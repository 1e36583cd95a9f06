"""The generic layers know no task and no domain: every task is declared in configuration
and reached through its kind (issue 14).

Scanned: ``core/``, ``daemon/``, ``handlers/``, ``storage/`` and ``models/`` but for the FIT
domain package (``models/fit``: the FIT parser and retriever kinds, the register, the
simulated users). A generic module may not import the FIT package (kinds are reached
through the ``kaizend.task_kinds`` entry points), nor hold a string literal that is a task
or kind name of the shipped configuration (docstrings aside); the built-in kinds
``llm-json`` (``models/llm``) and ``embedder`` (``models/retriever``) are generic too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from kaizend.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("core", "daemon", "handlers", "storage", "models")
NOT_GENERIC = ("models/fit",)
"""The FIT domain package."""
DOMAIN_MODULES = tuple("kaizend." + path.replace("/", ".") for path in NOT_GENERIC)


def generic_modules() -> list[Path]:
    files = []
    for top in GENERIC:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(NOT_GENERIC):
                files.append(path)
    return files


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def violations(path: Path, names: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                alias.name for alias in node.names
            ]  # fmt: skip
            found += [
                f"line {node.lineno}: imports {m}" for m in modules if m.startswith(DOMAIN_MODULES)
            ]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in names
            and id(node) not in docstrings
        ):
            found.append(f"line {node.lineno}: the literal {node.value!r}")
    return found


def test_no_generic_module_names_a_task_or_imports_the_domain() -> None:
    shipped = load_config(ROOT / "config.toml")
    names = set(shipped.tasks) | {d.kind for d in shipped.tasks.values()}
    assert names >= {"parser", "retriever", "fit-parser", "fit-retriever"}
    found = {}
    for path in generic_modules():
        relative = path.relative_to(ROOT).as_posix()
        problems = violations(path, names)
        if problems:
            found[relative] = problems
    assert not found, f"generic modules that name a task or import the domain: {found}"


def test_the_scan_sees_a_violation(tmp_path: Path) -> None:
    path = tmp_path / "sample.py"
    path.write_text(
        '"""About the parser."""\nfrom kaizend.models.fit import rules\nTASK = "parser"\n'
    )
    assert violations(path, {"parser"}) == [
        "line 2: imports kaizend.models.fit",
        "line 3: the literal 'parser'",
    ]
