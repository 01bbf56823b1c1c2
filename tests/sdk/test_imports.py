"""spoofsdk's imports point one way: no cycle between its modules, nothing from training or export.

Every import counts (module level and inside functions); only those under ``if TYPE_CHECKING:`` are
annotations and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spoofsdk

SDK = Path(spoofsdk.__file__).resolve().parent
FORBIDDEN = ("torch", "transformers", "spoof_train", "spoof_export")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SDK.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SDK.rglob("*.py")}
    return {
        name: {m for m in _runtime_imports(path) if m in modules and m != name and m != "spoofsdk"}
        for name, path in modules.items()
    }


def test_sdk_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    assert {"spoofsdk.detector", "spoofsdk.session", "spoofsdk.scheduler", "spoofsdk.audio"} <= graph.keys()
    assert "spoofsdk.detector" not in graph["spoofsdk.session"]
    assert "spoofsdk.detector" not in graph["spoofsdk.scheduler"]
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_sdk_never_imports_training_export_or_torch() -> None:
    for path in SDK.rglob("*.py"):
        bad = sorted(m for m in _runtime_imports(path) if m.split(".")[0] in FORBIDDEN)
        assert not bad, f"{path.relative_to(SDK.parent)} imports {bad}"


def test_audio_encodings_are_the_native_decoders() -> None:
    native = pytest.importorskip("spoofsdk._native")
    from spoofsdk.audio import ENCODINGS

    assert tuple(native.ENCODINGS) == ENCODINGS
