"""The package's shape: no import circle between modules, no private name used outside its
module. Both are read from the source (ast), so they hold for imports inside functions too."""

import ast
from pathlib import Path

import unlearnkit

PACKAGE = Path(unlearnkit.__file__).parent


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def imported(tree: ast.Module) -> list[tuple[str, str]]:
    """(module, name) of every `from unlearnkit... import name` and `import unlearnkit...`."""
    pairs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs += [(alias.name, "") for alias in node.names if alias.name.startswith("unlearnkit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("unlearnkit"):
            pairs += [(node.module, alias.name) for alias in node.names]
    return pairs


def import_graph() -> dict[str, set[str]]:
    """Module → the modules it imports, leaving out a package's imports of its own submodules
    (how a registry package loads what registers itself)."""
    trees = modules()
    graph = {name: set() for name in trees}
    for name, tree in trees.items():
        for module, member in imported(tree):
            for target in (f"{module}.{member}", module):
                if target in trees:
                    if target != name and not target.startswith(name + "."):
                        graph[name].add(target)
                    break
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_modules():
    assert cycle(import_graph()) is None, " → ".join(cycle(import_graph()))


def test_the_cycle_finder_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_private_name_is_used_outside_its_module():
    used = []
    for name, tree in modules().items():
        used += [f"{name} imports {module}.{member}" for module, member in imported(tree) if member.startswith("_") and not member.startswith("__")]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                owner = root.id if isinstance(root, ast.Name) else None
                if owner not in ("self", "cls", "nn", "torch"):  # our own objects; torch's internals are torch's affair
                    used.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not used, used
