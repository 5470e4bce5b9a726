"""The layout's rules (docs/development.md, "Layout"): arrows run from the commands down to the core, the package
has no import circle, and user-facing text states behaviour instead of citing our issue tracker."""

import ast
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import openrlhf_rerule.cli as cli_package

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "openrlhf_rerule"


@pytest.mark.parametrize("module", ["openrlhf_rerule.rewards", "openrlhf_rerule.replay", "openrlhf_rerule.losses"])
def test_the_core_loads_no_command_line(module):
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('openrlhf_rerule'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert module in loaded  # the probe did import it
    command_line = [m for m in loaded if m == "openrlhf_rerule.cli" or m.startswith("openrlhf_rerule.cli.")]
    assert not command_line, f"importing {module} loaded {command_line}"
    # and nothing above the core: the core is replay/, losses.py, rewards/ (plus the package's empty __init__)
    core = ("openrlhf_rerule.replay", "openrlhf_rerule.losses", "openrlhf_rerule.rewards")
    above = [m for m in loaded if m != "openrlhf_rerule" and not m.startswith(core)]
    assert not above, f"importing {module} loaded {above}"


def test_the_convention_is_reexported_by_the_cli_package():
    from openrlhf_rerule import cli_convention

    for name in ("Parser", "UserError", "user_errors", "number", "HelpFormatter", "underscore_flag", "USER_ERROR"):
        assert getattr(cli_package, name) is getattr(cli_convention, name)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module):
    """(node, lazy) for every import statement; lazy = inside a function body (runs when called, not on import)."""
    def walk(node, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            yield from walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from walk(tree, False)


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module: lazy}. An edge is lazy only when every import of that target is lazy.
    Importing `openrlhf_rerule.x.y` from outside package x also runs x/__init__: an edge to x as well."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {} for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, lazy in imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in paths]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix not in paths or prefix == name:
                        continue
                    if i < len(parts) and (name + ".").startswith(prefix + "."):
                        continue  # an enclosing package of the importer: its __init__ has already started
                    graph[name][prefix] = graph[name].get(prefix, True) and lazy
    return graph


def find_cycle(graph: dict[str, dict[str, bool]]) -> list[str] | None:
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    """Every import counts, lazy ones (inside a function) included: a lazy import is still a dependency of the
    importer, and lazy imports are here to keep `rerule --help` fast, not to hide a circle (the circle between the
    refusal tool, the command-line convention and the data schema closed through one). A circle of top-level
    imports fails just the same. Imports by computed name (importlib.import_module in the `rerule` dispatcher and in
    eval/__init__) are not seen: they name commands and submodules from above, never the other way."""
    graph = import_graph()
    assert len(graph) > 50 and graph["openrlhf_rerule.rewards"], "the walk found too little to mean anything"
    cycle = find_cycle(graph)
    if cycle:
        arrows = [f"{a} -{'(lazy)' if graph[a][b] else ''}-> {b}" for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle:\n  " + "\n  ".join(arrows))


def test_the_graph_walk_resolves_relative_and_package_imports():
    graph = import_graph()
    assert "openrlhf_rerule.rewards.refusal" in graph["openrlhf_rerule.rewards.rule"]  # from .refusal import ...
    # `from openrlhf_rerule.rewards.rule import ...` in data/schema runs rewards/__init__ too
    assert {"openrlhf_rerule.rewards", "openrlhf_rerule.rewards.rule"} <= set(graph["openrlhf_rerule.data.schema"])
    assert graph["openrlhf_rerule.local.grpo"]["openrlhf_rerule.rewards"] is True  # imported inside a function
    assert find_cycle({"a": {"b": False}, "b": {"c": True}, "c": {"a": False}}) == ["a", "b", "c", "a"]


# docs/development.md, "Layout": package -> (what it may import at import time, what only inside a function)
CORE = {"replay", "losses", "rewards"}
LEAVES = {"cli_convention", "atomic", "chat_endpoint"}
MAY_IMPORT = {
    **{name: (set(), set()) for name in LEAVES | CORE},
    "provenance": ({"atomic"}, set()),
    "lineage": ({"provenance", "cli_convention"}, set()),
    "data": ({"rewards", "atomic", "chat_endpoint", "cli_convention", "provenance"}, {"local", "openrlhf"}),
    "local": (CORE | {"data", "cli_convention", "provenance", "lineage"}, set()),
    "openrlhf": ({"replay", "losses", "atomic", "provenance", "lineage", "cli_convention"},
                 {"local", "cli", "data", "rewards"}),
    "experiments": (CORE | {"local", "data", "cli_convention", "atomic", "provenance"}, set()),
    "eval": ({"atomic", "chat_endpoint", "cli_convention", "data", "provenance"}, {"rewards", "openrlhf"}),
    "cli": ({"cli_convention", "openrlhf"}, set()),
}


def test_every_import_between_packages_is_one_the_layout_allows():
    def unit(module):
        return module.split(".")[1] if "." in module else None  # None: the package's own (empty) __init__

    wrong = []
    for importer, targets in import_graph().items():
        for target, lazy in targets.items():
            a, b = unit(importer), unit(target)
            if a == b or b is None or (importer == "openrlhf_rerule.rewards.__main__" and b == "cli_convention"):
                continue  # within a package; the refusal tool's command line follows the convention
            at_import, lazily = MAY_IMPORT[a]
            if b not in at_import and not (lazy and b in lazily):
                wrong.append(f"{importer} -> {target}{' (lazy)' if lazy else ''}")
    assert set(MAY_IMPORT) == {unit(m) for m in import_graph() if unit(m)}, "a package the layout does not list"
    assert not wrong, "imports the layout in docs/development.md does not allow:\n  " + "\n  ".join(wrong)


ISSUE_NUMBER = re.compile(r"\bissues? #?\d+", re.IGNORECASE)


def help_texts():
    """(command, --help text) for the dispatcher, every sub-command and sub-sub-command, and the refusal tool."""
    import argparse
    import importlib

    yield "rerule", cli_package.usage()
    for name, (module, _) in cli_package.COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        yield f"rerule {name}", parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield f"rerule {name} {sub}", subparser.format_help()
    from openrlhf_rerule.rewards.__main__ import main as refusal_tool
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert refusal_tool(["--help"]) == 0
    yield "python -m openrlhf_rerule.rewards", out.getvalue()


def test_user_text_cites_no_issue_numbers():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in pages
             for i, line in enumerate(p.read_text().splitlines(), 1) if ISSUE_NUMBER.search(line)]
    helps = list(help_texts())
    assert len(helps) > 10  # the dispatcher, six commands and their sub-commands
    found += [f"{who} --help: {m.group(0)}" for who, text in helps for m in ISSUE_NUMBER.finditer(text)]
    assert not found, "user text cites issue numbers:\n" + "\n".join(found)
