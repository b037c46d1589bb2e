"""`/kerchunk` end to end: xarray through `cloudify serve` sees exactly what netCDF4 sees."""
import pytest
import xarray as xr

from compare import datasets_equal
from servers import sample_files, sample_id
import make_files

IDS = list(make_files.GENERATORS) + [sample_id(p) for p in sample_files()]


def left_out(server, ds_id):
    info = server.get(f"/datasets/{ds_id}/info").json()
    return set(info["routes"]["kerchunk"]["excluded"]) | set(info["skipped"])


@pytest.mark.parametrize("ds_id", IDS)
def test_served_dataset_equals_source(server, datasets, ds_id):
    path = datasets[1][ds_id]
    url = f"{server.url}/datasets/{ds_id}/kerchunk"
    out = left_out(server, ds_id)
    with xr.open_dataset(path, engine="netcdf4") as expected, \
            xr.open_dataset(url, engine="zarr") as actual:
        datasets_equal(actual, expected, out)
    with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as expected, \
            xr.open_dataset(url, engine="zarr", decode_cf=False) as actual:
        # A raw open sees the declared fill value as `_FillValue` on both sides.
        datasets_equal(actual, expected, out, raw=True)


def test_what_is_left_out_is_named_with_a_reason(server):
    info = server.get("/datasets/mixed/info").json()
    excluded = info["routes"]["kerchunk"]["excluded"]
    assert set(excluded) == {"fletcher_shuffle_f8"}
    assert "shuffle" in excluded["fletcher_shuffle_f8"]
    assert set(info["skipped"]) == {"vlen_strings"}
    assert "variable-length string" in info["skipped"]["vlen_strings"]
    assert len(info["variables"]) >= 20


def test_mixed_covers_every_storage_case(server):
    v = server.get("/datasets/mixed/info").json()["variables"]
    ids = lambda name: [c["id"] for c in v[name]["codecs"]]  # noqa: E731
    assert ids("zlib_shuffle") == ["shuffle", "zlib"]
    assert ids("fletcher_i2") == ["fletcher32"]
    assert ids("fletcher_shuffle_zlib_i2") == ["fletcher32", "shuffle", "zlib"]
    assert ids("uncompressed_chunked") == []
    assert v["big_endian"]["dtype"] == ">f8"
    assert v["contiguous"]["chunks"] == [30, 40] and v["contiguous"]["stored_chunks"] == 1
    assert v["never_written"]["stored_chunks"] == 0
    assert v["partial"]["stored_chunks"] < v["partial"]["chunk_grid"][0] * 12
    assert v["short"]["shape"] == [10, 30]
    assert v["uneven"]["chunk_grid"] == [3, 5, 5]
    assert v["scalar"]["shape"] == [] and v["scalar"]["stored_chunks"] == 1
    assert v["lat2d"]["dims"] == ["y", "x"]


def test_fill_values_follow_xarray(server):
    md = server.get("/datasets/mixed/kerchunk/.zmetadata").json()["metadata"]
    assert md["partial/.zarray"]["fill_value"] == "NaN"
    assert md["packed/.zarray"]["fill_value"] == -32767
    assert md["zlib_shuffle/.zarray"]["fill_value"] is None
    assert "_FillValue" not in md["packed/.zattrs"]
