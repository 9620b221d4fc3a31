"""The domain libraries never reach up into the catalog, the stores, the runner or the cluster (issue 11).

``mfrs/meg``, ``mfrs/nets``, ``mfrs/images``, ``mfrs/similarity`` and ``mfrs/demo`` compute on
arrays, files and xarray objects they are given; the stages (``mfrs/stages``) open catalog entries
and stores and hand them over. Checked on the import statements of every module (at any depth,
deferred imports inside functions included), read with :mod:`ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mfrs"
DOMAIN = ("meg", "nets", "images", "similarity", "demo")
FORBIDDEN = ("mfrs.catalog", "mfrs.store", "mfrs.runner", "mfrs.cluster", "mfrs.stages", "mfrs.pipeline",
             "distributed", "dask.distributed", "dask_jobqueue")

#: Imports still to move out, as ``(path, forbidden module)``: none left. Remove an entry when its import
#: goes; the test fails on a stale entry.
KNOWN: set[tuple[str, str]] = set()


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "mfrs":  # from mfrs import store
                found += [(node.lineno, f"mfrs.{alias.name}") for alias in node.names]
    return found


def _forbidden(name: str) -> str | None:
    return next((f for f in FORBIDDEN if name == f or name.startswith(f + ".")), None)


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_library_imports_no_catalog_store_runner_or_cluster(package: str) -> None:
    found = {(str(path.relative_to(PACKAGE.parent)), line, _forbidden(name))
             for path in sorted((PACKAGE / package).rglob("*.py"))
             for line, name in _imports(path) if _forbidden(name)}
    bad = sorted(f"{path}:{line}: {name}" for path, line, name in found if (path, name) not in KNOWN)
    assert not bad, "domain modules import the stage layer:\n" + "\n".join(bad)
    stale = {(p, n) for p, n in KNOWN if p.startswith(f"mfrs/{package}/")} - {(p, n) for p, _, n in found}
    assert not stale, f"remove {sorted(stale)} from KNOWN: the import is gone"
