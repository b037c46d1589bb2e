"""Exact, NaN-aware comparison of a dataset served by cloudify with the source file."""
import numpy as np
import xarray as xr


def source(path):
    """A dataset's source as xarray reads it: one file, or several (`pieces`) concatenated."""
    if isinstance(path, list):
        return xr.open_mfdataset(path, engine="netcdf4", combine="by_coords",
                                 data_vars="minimal", coords="minimal", compat="override")
    return xr.open_dataset(path, engine="netcdf4")


def _as_array(v):
    return np.asarray(v.tolist() if hasattr(v, "tolist") else v)


def attrs_equal(actual, expected, where):
    assert set(actual) == set(expected), f"{where}: attribute names differ: {set(actual) ^ set(expected)}"
    for k, e in expected.items():
        a = actual[k]
        if isinstance(e, (str, bytes)):
            assert a == e, f"{where}.{k}: {a!r} != {e!r}"
            continue
        ea, aa = _as_array(e), _as_array(a)
        assert ea.shape == aa.shape, f"{where}.{k}: shape {aa.shape} != {ea.shape}"
        assert np.array_equal(aa.astype("f8"), ea.astype("f8"), equal_nan=True), (
            f"{where}.{k}: {a!r} != {e!r}"
        )


def values_equal(actual, expected, where):
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{where}: shape {a.shape} != {e.shape}"
    if e.dtype.kind == "f" and a.dtype != e.dtype:
        # JSON attributes carry no float width, so xarray unpacks to float64 where netCDF4
        # uses the float32 of scale_factor; the packed integers are compared exactly in the
        # raw pass, and here the float64 result rounds to netCDF4's float32 exactly.
        a = a.astype(e.dtype)
    if e.dtype.kind in "fc":
        ok = np.array_equal(a, e, equal_nan=True)
    elif e.dtype.kind == "M":
        ok = np.array_equal(a.astype("M8[ns]"), e.astype("M8[ns]"), equal_nan=True)
    elif e.dtype.kind == "O":
        ok = a.shape == e.shape and all(x == y for x, y in zip(a.ravel(), e.ravel()))
    else:
        ok = a.dtype.kind == e.dtype.kind and np.array_equal(a, e)
    assert ok, f"{where}: values differ ({a.dtype} vs {e.dtype})"


def datasets_equal(actual, expected, left_out=(), raw=False):
    """Every variable, coordinate, attribute and value of `expected` (less `left_out`) equals
    `actual`'s. `raw`: opened with decode_cf=False, where `_FillValue` is compared too."""
    want = set(expected.variables) - set(left_out)
    assert set(actual.variables) == want, (
        f"variables differ: served-only {set(actual.variables) - want}, "
        f"missing {want - set(actual.variables)}"
    )
    attrs_equal(actual.attrs, expected.attrs, "global")
    for name in sorted(want):
        a, e = actual.variables[name], expected.variables[name]
        assert a.dims == e.dims, f"{name}: dims {a.dims} != {e.dims}"
        attrs_equal(a.attrs, e.attrs, name)
        if raw:
            assert a.dtype.kind == e.dtype.kind and a.dtype.itemsize == e.dtype.itemsize, (
                f"{name}: stored dtype {a.dtype} != {e.dtype}"
            )
        values_equal(a.values, e.values, name)
