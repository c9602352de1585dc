"""pyproject's dependency lists say what the ``eddy`` package imports: no more, no less.

Every third-party module imported anywhere in ``shared/eddy`` (inside functions too) comes from a distribution in
``[project].dependencies``, and every one declared there is imported. An optional extra (all but ``dev``, which
holds tools) belongs to one integration, ``eddy/integrations/<extra>.py``: its distributions are imported there and
nowhere else. Import names map to distributions through ``importlib.metadata.import_names_to_distributions()``.

An import inside ``try: ... except ImportError`` outside the integrations is optional (used where present, like
the httpx fork under confluent-kafka's registry client in ``eddy.cli.main``): it needs no declaration.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections import defaultdict
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT

pytestmark = pytest.mark.lint

PACKAGE = REPO_ROOT / "shared" / "eddy"
INTEGRATIONS = PACKAGE / "integrations"
# Extras of tools and test libraries: nothing in the package imports them.
TOOL_EXTRAS = {"dev"}
# Extras whose one module is not an integration: ``otel`` serves the runtime's tracing, under every stream loop
# (the integrations sit above the runtime), and imports it only inside ``try: ... except ImportError``.
EXTRA_MODULES = {"otel": PACKAGE / "runtime" / "tracing.py"}


@functools.cache
def import_names_to_distributions() -> Mapping[str, list[str]]:
    """``packages_distributions()``, read once: it walks every installed distribution's file list."""
    return metadata.packages_distributions()


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``PyYAML`` is ``pyyaml``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """``confluent-kafka[avro]>=2.6,<3`` -> ``confluent-kafka``."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, f"cannot read a distribution name from {requirement!r}"
    return normalized(found.group(1))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """The core dependencies, and each optional extra's distributions."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {name: {requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    return core, extras


def guards_import_errors(node: ast.AST) -> bool:
    """Whether ``node`` is a ``try`` with an ``except ImportError`` (or ``ModuleNotFoundError``) handler."""
    return isinstance(node, ast.Try) and any(
        handler.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(handler.type))
        for handler in node.handlers
    )


def third_party_imports(path: Path, optional: bool = True) -> set[str]:
    """The top-level names of the modules ``path`` imports that are neither the standard library nor eddy.

    Without ``optional``, imports in the body of a ``try`` that catches ImportError are left out.
    """
    tree = ast.parse(path.read_text(), str(path))
    guarded: set[int] = set()
    for node in ast.walk(tree) if not optional else ():
        if isinstance(node, ast.Try) and guards_import_errors(node):
            guarded.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found if name != "eddy" and name not in sys.stdlib_module_names}


def imports_by_file(optional: bool = True) -> dict[Path, set[str]]:
    """Each module's third-party imports; without ``optional``, outside the integrations, only those it needs."""
    paths = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    return {p: third_party_imports(p, optional=optional or is_integration(p)) for p in paths}


def distributions(module: str) -> set[str]:
    """The installed distributions that provide top-level module ``module``."""
    return {normalized(d) for d in import_names_to_distributions().get(module, [])}


def is_integration(path: Path) -> bool:
    return path.is_relative_to(INTEGRATIONS)


def test_every_module_the_package_imports_is_a_declared_dependency() -> None:
    core, _ = declared()
    undeclared: dict[str, list[str]] = defaultdict(list)
    for path, modules in imports_by_file(optional=False).items():
        for module in modules if not is_integration(path) else ():
            if not distributions(module) & core:
                undeclared[module].append(str(path.relative_to(REPO_ROOT)))
    assert not undeclared, "imported but not in [project].dependencies:\n" + "\n".join(
        f"{module} ({', '.join(sorted(distributions(module))) or 'not installed'}): {', '.join(files)}"
        for module, files in sorted(undeclared.items())
    )


def test_every_declared_dependency_is_imported() -> None:
    core, _ = declared()
    imported = {
        d
        for path, modules in imports_by_file().items()
        if not is_integration(path)
        for m in modules
        for d in distributions(m)
    }
    assert not core - imported, f"declared in [project].dependencies but imported nowhere: {sorted(core - imported)}"


@pytest.mark.parametrize("extra", sorted(set(declared()[1]) - TOOL_EXTRAS))
def test_an_extra_is_imported_by_its_integration_only(extra: str) -> None:
    core, extras = declared()
    wanted = extras[extra]
    modules = {m for m, dists in import_names_to_distributions().items() if {normalized(d) for d in dists} & wanted}
    installed = {d for m in modules for d in distributions(m)}
    if wanted - installed:
        pytest.skip(
            f"extra {extra!r} is not installed (missing {sorted(wanted - installed)}): pip install 'eddy[{extra}]'"
        )
    integration = EXTRA_MODULES.get(extra, INTEGRATIONS / f"{extra}.py")
    assert integration.exists(), f"extra {extra!r} has no integration module {integration.relative_to(REPO_ROOT)}"
    by_file = imports_by_file()
    elsewhere = {
        str(p.relative_to(REPO_ROOT)): sorted(ms & modules)
        for p, ms in by_file.items()
        if p != integration and ms & modules
    }
    assert not elsewhere, f"modules of extra {extra!r} imported outside {integration.name}: {elsewhere}"
    unused = {d for d in wanted if not any(d in distributions(m) for m in by_file[integration])}
    assert not unused, f"extra {extra!r} declares {sorted(unused)}, which {integration.name} does not import"
    undeclared = {m for m in by_file[integration] if not distributions(m) & (core | wanted)}
    assert not undeclared, f"{integration.name} imports {sorted(undeclared)}, in neither the core nor extra {extra!r}"


def test_the_check_sees_imports_inside_functions_and_guarded_ones_and_reads_requirement_names(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom . import x\n\ndef f():\n    import numpy.typing\n    from yaml import safe_load\n"
    )
    assert third_party_imports(module) == {"numpy", "yaml"}
    module.write_text("import yaml\ntry:\n    import httpx2\nexcept ImportError:\n    pass\n")
    assert third_party_imports(module) == {"yaml", "httpx2"}
    assert third_party_imports(module, optional=False) == {"yaml"}
    assert requirement_name("confluent-kafka[avro,schemaregistry]>=2.6,<3") == "confluent-kafka"
    assert requirement_name("PyYAML>=6") == "pyyaml"
