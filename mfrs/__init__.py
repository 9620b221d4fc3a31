"""mfrs: do CNNs see faces the way the brain does? MEG source RSA against CNN layers at scale.

Everything is a labelled xarray object in chunked Zarr, named in ``data_catalog.yaml``::

    import mfrs
    ds = mfrs.open("stimuli")        # lazy, dask-backed xarray.Dataset

Heavy dependencies (torch, MNE, Numba) load only in the stages that use them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

try:
    __version__ = version("mfrs")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = ["open", "load_catalog", "__version__"]


def open(name: str, *, catalog: Any = None) -> xr.Dataset:  # noqa: A001 - the natural name here
    """Open catalog entry ``name`` as a lazy, dask-backed xarray Dataset.

    Parameters
    ----------
    name : str
        Entry name (``stimuli``, ``sources``, ``rsa``, ``activations/mobilenet_v2/imagenet``).
    catalog : Catalog or path, optional
        Default: the catalog found by :func:`mfrs.catalog.find_catalog_file`.

    Returns
    -------
    xarray.Dataset
    """
    from mfrs.catalog import _open_default

    return _open_default(name, catalog=catalog)


def load_catalog(path: Any = None) -> Any:
    """Load the data catalog (see :func:`mfrs.catalog.load_catalog`)."""
    from mfrs.catalog import load_catalog as _load

    return _load(path)
