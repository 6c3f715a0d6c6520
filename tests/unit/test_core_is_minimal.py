"""The core owns mechanisms, no capability: no capability word and no plugin import under core/bottle/,
and no import circle anywhere in the tree.

A capability (the egress proxy, the git gate, the operator's channel, an
agent's CLI, the image builds) lives in a distribution of its own under
plugins/ and reaches the core through hooks; the core that names one is a core
a third party cannot extend the same way. The one package of the core's that
plugins' sidecar services import is the kit, ``bottle_sidecar``.
"""

import ast
import re
from pathlib import Path

REPO = Path(__file__).parents[2]
CORE = REPO / "core" / "bottle"
#: Words that name a capability or an agent. The card's provisioner phases
#: (``bottle_provision_git``, ``bottle_provision_supervise``) are one word with
#: their prefix, so they do not match.
CAPABILITY = re.compile(r"\b(egress|gate|gitgate|supervise|proposals?|allowlist|mitmproxy|claude)\b", re.IGNORECASE)
KIT = "bottle_sidecar"


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_modules(path: Path, known: set[str] | None = None) -> set[str]:
    """Every module *path* imports when it runs, at any depth (lazy imports in functions count; those under
    ``if TYPE_CHECKING:`` do not). ``from package import name`` is the module ``package.name`` when that is one
    of *known*, else ``package`` itself."""
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for statement in block.body for node in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            inside = submodules & known if known is not None else submodules
            found |= inside if inside == submodules else {node.module, *inside}
    return found


def test_the_core_names_no_capability():
    hits = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for path in core_files() for number, line in enumerate(path.read_text().splitlines(), 1)
            if CAPABILITY.search(line)]
    assert hits == [], "capability words in the core (they belong to a plugin):\n" + "\n".join(hits)


def test_the_core_imports_no_plugin():
    plugin_packages = {init.parent.name for init in REPO.glob("plugins/**/__init__.py")}
    hits = sorted(f"{path.relative_to(REPO)}: {module}" for path in core_files() for module in imported_modules(path)
                  if module.split(".")[0] in plugin_packages)
    assert hits == []


def test_the_capability_word_check_would_see_one():
    assert CAPABILITY.search("the egress proxy") and CAPABILITY.search("Claude Code")
    assert not CAPABILITY.search("bottle_provision_supervise bottle_provision_git navigate delegate")


def package_roots() -> dict[str, Path]:
    """Every top-level package of the repository's distributions (core and plugins), by name."""
    inits = [*REPO.glob("core/*/__init__.py"), *REPO.glob("plugins/**/__init__.py")]
    return {init.parent.name: init.parent for init in inits if "tests" not in init.parts and "build" not in init.parts}


def module_graph() -> dict[str, set[str]]:
    """Module name -> the repository modules it imports."""
    modules: dict[str, Path] = {}
    for name, root in package_roots().items():
        for path in root.rglob("*.py"):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    known = set(modules)
    return {name: {module for module in imported_modules(path, known) if module in modules and module != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_tree():
    assert cycles(module_graph()) == []


def test_the_circle_check_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
