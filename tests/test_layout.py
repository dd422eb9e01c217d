"""The layout's rules, read from every module's syntax tree (no module is imported): the
product never imports the tests or the benches, the benches never import the tests, only the
entry point (and the lab's fault harness, which drives the command line as a user would)
imports `orchestrator.cli`, and no module is over 700 lines unless its docstring's first
sentence says why ("long because ...")."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("orchestrator", "bench", "tests")
MAX_LINES = 700
SAYS_WHY = re.compile(r"\blong because\b", re.IGNORECASE)

# Who may import the command line besides the command line itself: the entry point, and the
# lab's fault harness (`orchestrator/lab/faults*`: it runs `runc-rollout` as a user would).
CLI_IMPORTERS = ("orchestrator/__main__.py", "orchestrator/lab/faults")


def modules() -> Iterator[str]:
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix()


@cache
def tree(module: str) -> ast.Module:
    return ast.parse((ROOT / module).read_text(), filename=module)


def package_of(module: str) -> str:
    """`orchestrator/cli/app.py` -> `orchestrator.cli` (what a relative import starts from)."""
    parts = module.removesuffix(".py").split("/")
    return ".".join(parts if parts[-1] == "__init__" else parts[:-1]).removesuffix(".__init__")


def imports_in(parsed: ast.Module, module: str) -> set[str]:
    """Every module `module` imports, at its top or inside a function, as dotted names (for
    `from a import b`, both `a` and `a.b`: b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(parsed):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_of(module).split(".")
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rules(module: str, parsed: ast.Module | None = None) -> list[str]:
    """What `module` imports that the layout forbids it."""
    names = imports_in(parsed or tree(module), module)
    top = module.split("/")[0]
    wrong = []
    if top == "orchestrator":
        wrong += [name for name in names if under(name, "tests") or under(name, "bench")]
    if top == "bench":
        wrong += [name for name in names if under(name, "tests")]
    may_use_cli = module.startswith(("orchestrator/cli/", *CLI_IMPORTERS)) or top == "tests"
    if not may_use_cli:
        wrong += [name for name in names if under(name, "orchestrator.cli")]
    return sorted(set(wrong))


def test_the_rules_see_imports_of_every_kind() -> None:
    """The checker itself: plain, from-, relative and function-level imports are all seen,
    and each folder is held to its own rules."""
    source = ast.parse(
        "import tests.conftest\n"
        "def f():\n"
        "    from .. import cli\n"
        "    from bench.startup import main\n"
    )
    assert broken_rules("orchestrator/lab/example.py", source) == [
        "bench.startup",
        "bench.startup.main",
        "orchestrator.cli",
        "tests.conftest",
    ]
    assert broken_rules("bench/example.py", source) == ["tests.conftest"]
    assert broken_rules("orchestrator/cli/example.py", ast.parse("from . import plan")) == []
    assert (
        broken_rules("orchestrator/lab/faults/run.py", ast.parse("import orchestrator.cli")) == []
    )
    assert broken_rules("orchestrator/api.py", ast.parse("from orchestrator import cli")) == [
        "orchestrator.cli"
    ]


def test_the_product_and_the_benches_import_in_one_direction() -> None:
    problems = {module: wrong for module in modules() if (wrong := broken_rules(module))}
    assert not problems, f"imports against the layout (see docs/development.md): {problems}"


def first_sentence(module: str) -> str:
    docstring = ast.get_docstring(tree(module)) or ""
    paragraph = docstring.split("\n\n")[0].replace("\n", " ")
    return re.split(r"(?<=[.:])\s", paragraph, maxsplit=1)[0] if paragraph else ""


def long_modules() -> dict[str, int]:
    sizes = {module: len((ROOT / module).read_text().splitlines()) for module in modules()}
    return {module: lines for module, lines in sizes.items() if lines > MAX_LINES}


def test_no_module_is_long_without_saying_why() -> None:
    unexplained = {
        module: lines
        for module, lines in long_modules().items()
        if not SAYS_WHY.search(first_sentence(module))
    }
    assert not unexplained, (
        f"modules over {MAX_LINES} lines: split them, or say why in the docstring's first "
        f"sentence ('long because ...'): {unexplained}"
    )
