"""The package's structure (docs/design.md, "Architecture"): no import cycle between the modules of `mixacm_hf`
(imports inside functions included), and no module over MAX_LINES lines."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mixacm_hf"
MAX_LINES = 400


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package in `package_dir` (a package is its `__init__.py`)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, from every `import` / `from ... import` statement in
    its source, at any depth (inside functions and `if TYPE_CHECKING:` blocks too). `from .a import b` points at
    module `a.b` when that is a module, else at `a`; imports of other packages are left out."""
    modules = module_names(package_dir)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                targets = [f"{source}.{alias.name}" for alias in node.names]
                targets = [target if target in modules else source for target in targets]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None when the graph has none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))  # graphlib lists it against the edges' direction
    return None


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(source)
    return root / "toy"


def test_import_graph_resolves_relative_absolute_and_function_level_imports(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "toy/__init__.py": "from .a import f\n",
            "toy/a.py": "import os\n\ndef f():\n    from . import b\n    return b\n",
            "toy/b.py": "from toy.sub import g\n",
            "toy/sub/__init__.py": "from .c import g\n",
            "toy/sub/c.py": "from ..a import f\nfrom .. import b\n\ndef g():\n    import toy.sub.d\n",
            "toy/sub/d.py": "",
        },
    )
    assert import_graph(package) == {
        "toy": {"toy.a"},
        "toy.a": {"toy.b"},  # inside a function; `os` is not the package's
        "toy.b": {"toy.sub"},
        "toy.sub": {"toy.sub.c"},
        "toy.sub.c": {"toy.a", "toy.b", "toy.sub.d"},
        "toy.sub.d": set(),
    }


def test_find_cycle_reports_a_cycle_through_a_function_level_import(tmp_path):
    files = {"toy/__init__.py": "", "toy/a.py": "from .b import g\n", "toy/b.py": "def g():\n    return 1\n"}
    assert find_cycle(import_graph(_write_package(tmp_path, files))) is None
    (tmp_path / "toy" / "b.py").write_text("def g():\n    from .a import h\n    return h\n")
    cycle = find_cycle(import_graph(tmp_path / "toy"))
    assert cycle is not None and set(cycle) == {"toy.a", "toy.b"} and cycle[0] == cycle[-1]


def test_mixacm_hf_has_no_import_cycle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")))
def test_module_is_at_most_max_lines(path):
    lines = len((REPO / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines (at most {MAX_LINES}): split it by responsibility"


def test_every_import_the_readme_shows_works():
    """The public API survives the moves: each `from mixacm_hf... import ...` line of the README's code blocks."""
    import importlib
    import re

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines()]
    imports = [line for line in lines if re.match(r"from mixacm_hf[\w.]* import", line)]
    assert len(imports) >= 4
    for line in imports:
        module, names = re.match(r"from ([\w.]+) import (.+)", line).groups()
        loaded = importlib.import_module(module)
        for name in (name.strip() for name in names.split(",")):
            assert hasattr(loaded, name), f"README: {line!r}: {module} has no {name}"


def test_no_private_name_crosses_a_module_boundary():
    """A name starting with one underscore stays in its module: no module of the package imports one from another
    (make it public, or move the code that needs it)."""
    crossing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mixacm_hf")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                crossing += [f"{path.relative_to(REPO)}: {node.module} {name}" for name in private]
    assert crossing == []


def test_the_readme_starts_with_the_user_and_links_the_rest():
    """The README is a user's page: under 300 lines, code before line 80, and the documents it sends the reader to
    exist (the guide, the results, the design)."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 300
    assert next(i for i, line in enumerate(lines) if line.startswith("```")) < 80
    text = "\n".join(lines)
    for document in ("docs/guide.md", "docs/results.md", "docs/design.md", "benchmarks/README.md"):
        assert document in text and (REPO / document).is_file(), document
