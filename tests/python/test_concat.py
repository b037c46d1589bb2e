"""Multi-file datasets (`--concat-dim`): served through `/kerchunk`, `/zarr` and `/zarr3` exactly
as `xr.open_mfdataset` reads the same files, and every disagreement between files reported
naming the file."""
import glob
import os
import subprocess

import netCDF4
import numpy as np
import pytest
import xarray as xr

from compare import datasets_equal
from make_files import model_piece as write
from range_server import RangeServer
from servers import OPERATOR, sample_files

VIEWS = {"kerchunk": 2, "zarr": 2, "zarr3": 3}


def cmip(model, table):
    """esmvaltool-sample-data's files of one EC-Earth model and table, sorted."""
    return sorted(p for p in sample_files()
                  if f"/{model}/" in p and f"/{table}/" in p and "/ta/" in p)


def index(cloudify, bucket, ds_id, paths, *options):
    return subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", ds_id,
                           "--concat-dim", "time", *options, *paths],
                          capture_output=True, text=True)


def mfdataset(paths):
    return xr.open_mfdataset(paths, engine="netcdf4", combine="by_coords", data_vars="minimal",
                             coords="minimal", compat="override").load()


def assert_served_as_mfdataset(server, ds_id, paths, views=VIEWS):
    info = server.get(f"/datasets/{ds_id}/info").json()
    expected = mfdataset(paths)
    for view in views:
        out = set(info["skipped"]) | set(info["routes"][view]["excluded"])
        with xr.open_dataset(f"{server.url}/datasets/{ds_id}/{view}", engine="zarr",
                             zarr_format=VIEWS[view], consolidated=True) as actual:
            datasets_equal(actual, expected, out)
    return info


@pytest.mark.parametrize("model,table,steps", [
    ("EC-Earth3", "Amon", 780),          # 65 yearly files of 12 months, contiguous
    ("EC-Earth3-Veg", "day", 1096),      # 366 + 365 + 365 days, contiguous: cut into rows
    ("EC-Earth3-AerChem", "day", 1096),
])
def test_cmip6_files_concatenate_as_open_mfdataset(cloudify, tmp_path, start_server, model,
                                                   table, steps):
    paths = cmip(model, table)
    assert len(paths) >= 3
    bucket = str(tmp_path / "bucket")
    # Given in reverse: the order comes from the time coordinate.
    r = index(cloudify, bucket, "run", paths[::-1])
    assert r.returncode == 0, r.stderr
    server = start_server(bucket, "--publish-sources")
    info = assert_served_as_mfdataset(server, "run", paths)
    assert info["variables"]["ta"]["shape"][0] == steps
    assert [s["url"] for s in info["sources"]] == [f"file://{p}" for p in paths]


def test_files_of_different_lengths_and_formats_and_a_glob(cloudify, tmp_path, start_server):
    """120, 120 and 60 steps, chunked by one step; and the same as NetCDF-3 record files."""
    lengths = [120, 120, 60]
    starts = np.cumsum([0] + lengths[:-1])
    for fmt, tag in [("NETCDF4", "nc4"), ("NETCDF3_64BIT_OFFSET", "nc3")]:
        paths = [write(str(tmp_path / f"{tag}_{i}.nc"), np.arange(n) + s0, fmt=fmt, seed=i)
                 for i, (n, s0) in enumerate(zip(lengths, starts))]
        bucket = str(tmp_path / f"bucket_{tag}")
        r = index(cloudify, bucket, tag, [str(tmp_path / f"{tag}_*.nc")])
        assert r.returncode == 0, r.stderr
        server = start_server(bucket)
        info = assert_served_as_mfdataset(server, tag, paths)
        assert info["variables"]["tas"]["shape"] == [300, 4, 5]
        # Served chunks are assembled across the file boundaries.
        grid = server.get(f"/datasets/{tag}/zarr/tas/.zarray").json()
        assert grid["shape"] == [300, 4, 5]


@pytest.mark.parametrize("lengths,chunks", [
    ([120, 120, 60], [50, 50, 50]),   # files end inside a chunk
    ([31, 28, 31], [10, 7, 31]),      # each file chunked its own way
])
def test_chunks_that_do_not_line_up_across_files(cloudify, tmp_path, start_server, lengths,
                                                 chunks):
    """Compressed chunks whose boundaries do not line up across files: the manifest keeps
    each file's chunking, `/zarr` and `/zarr3` serve a regular grid assembled across the file
    boundaries (also with other served chunks), `/kerchunk` leaves the variable out and says
    why."""
    starts = np.cumsum([0] + lengths[:-1])
    paths = [write(str(tmp_path / f"f{i}.nc"), np.arange(n) + s0, seed=i, chunks=(c, 4, 5))
             for i, (n, c, s0) in enumerate(zip(lengths, chunks, starts))]
    bucket = str(tmp_path / "bucket")
    for ds_id, options in [("run", []), ("rechunked", ["--chunks", "time=25,lat=2"])]:
        r = index(cloudify, bucket, ds_id, paths, *options)
        assert r.returncode == 0, r.stderr
    server = start_server(bucket)
    for ds_id in ["run", "rechunked"]:
        info = assert_served_as_mfdataset(server, ds_id, paths, views=["zarr", "zarr3"])
        assert "do not line up" in info["routes"]["kerchunk"]["excluded"]["tas"]
        assert info["variables"]["tas"]["shape"] == [sum(lengths), 4, 5]
    grid = server.get("/datasets/run/zarr/tas/.zarray").json()
    assert grid["chunks"] == [chunks[0], 4, 5]
    assert server.get("/datasets/rechunked/zarr/tas/.zarray").json()["chunks"] == [25, 2, 5]
    # The kerchunk view serves the rest, and a diagnostic reads across the boundaries.
    with xr.open_dataset(f"{server.url}/datasets/run/kerchunk", engine="zarr") as raw:
        assert "tas" not in raw and "time" in raw
    expected = mfdataset(paths)
    mean = server.get("/datasets/run/reduce/tas/time/mean").json()
    np.testing.assert_allclose(mean["data"], expected["tas"].mean("time").values, rtol=1e-6)


def test_time_units_that_differ_are_converted_to_the_first_files(cloudify, tmp_path,
                                                                  start_server):
    a = write(str(tmp_path / "a.nc"), np.arange(10.0), seed=1)
    # The second file counts hours from day 10: the same calendar, other units.
    b = write(str(tmp_path / "b.nc"), np.arange(10) * 24.0 + 12, seed=2,
              units="hours since 2000-01-11 00:00:00")
    with netCDF4.Dataset(b, "a") as nc:  # its bounds in its own units too
        nc["time_bnds"][:] = np.stack([np.arange(10) * 24.0, np.arange(10) * 24.0 + 24], axis=1)
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "units", [a, b])
    assert r.returncode == 0, r.stderr
    server = start_server(bucket)
    assert_served_as_mfdataset(server, "units", [a, b])
    with xr.open_dataset(f"{server.url}/datasets/units/zarr", engine="zarr",
                         decode_times=False) as raw:
        assert raw["time"].attrs["units"] == "days since 2000-01-01"
        np.testing.assert_array_equal(raw["time"].values[10:], np.arange(10) + 10.5)
        np.testing.assert_array_equal(raw["time_bnds"].values[10:, 0], np.arange(10) + 10.0)
    # The converted values live in the bucket, named as a source.
    info = server.get("/datasets/units/info").json()
    assert info["sources"][-1]["url"].startswith("datasets/units/values/")


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF3_64BIT_OFFSET"])
def test_files_packed_differently_are_unpacked_per_file(cloudify, tmp_path, start_server, fmt):
    """scale_factor, add_offset and _FillValue differ between files, stored as float64 in two
    and float32 in the third: served as the floats open_mfdataset shows, exactly (compressed
    chunks, and NetCDF-3's big-endian records read in rows)."""
    f4, f8 = np.float32, np.float64
    packings = [(f8(0.01), f8(250.0), np.int16(-32767)), (f8(0.02), f8(200.0), np.int16(-1)),
                (f4(0.05), f4(100.0), np.int16(32767))]
    paths = [write(str(tmp_path / f"p{i}.nc"), np.arange(12.0) + 12 * i, seed=i, packing=p,
                   chunks=(4, 4, 5), fmt=fmt) for i, p in enumerate(packings)]
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "packed", paths)
    assert r.returncode == 0, r.stderr
    server = start_server(bucket)
    info = assert_served_as_mfdataset(server, "packed", paths, views=["zarr", "zarr3"])
    assert "pack its values differently" in info["routes"]["kerchunk"]["excluded"]["tas"]
    expected = mfdataset(paths)
    assert expected["tas"].dtype == np.float64
    with xr.open_dataset(f"{server.url}/datasets/packed/zarr", engine="zarr") as ds:
        assert ds["tas"].dtype == np.float64
        assert np.isnan(ds["tas"].values[[0, 12, 24], 1, 2]).all()
        assert not np.isnan(ds["tas"].values[1:12]).any()
    # The float32 file alone unpacks in float32, as xarray does.
    with xr.open_dataset(paths[2], engine="netcdf4") as one:
        assert one["tas"].dtype == np.float32
        one_f4 = one["tas"].values
    np.testing.assert_array_equal(expected["tas"].values[24:], one_f4.astype(np.float64))
    # A diagnostic computes on the unpacked values.
    mean = server.get("/datasets/packed/reduce/tas/time/mean").json()
    np.testing.assert_allclose(mean["data"], expected["tas"].mean("time").values, rtol=1e-12)


def test_a_rerun_without_a_file_drops_it(cloudify, tmp_path, start_server):
    paths = [write(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i, seed=i) for i in range(3)]
    bucket = str(tmp_path / "bucket")
    assert index(cloudify, bucket, "run", paths).returncode == 0
    assert index(cloudify, bucket, "run", paths[:2]).returncode == 0
    server = start_server(bucket, "--publish-sources")
    info = assert_served_as_mfdataset(server, "run", paths[:2], views=["zarr"])
    # The two files, and the time values stored whole (their 512-step chunks do not line up).
    files = [s["url"] for s in info["sources"] if s["url"].startswith("file://")]
    assert files == [f"file://{p}" for p in paths[:2]]


def test_a_rerun_reads_only_new_or_changed_sources(cloudify, tmp_path, start_server):
    """Sources behind HTTP, so that every read of a file is a GET the server records: a rerun
    reads the files that are new or changed since the last run, and no other."""
    root = tmp_path / "web"
    root.mkdir()
    paths = [write(str(root / f"p{i}.nc"), np.arange(12.0) + 12 * i, seed=i) for i in range(3)]
    web = RangeServer(str(root))
    try:
        urls = [f"{web.url}/p{i}.nc" for i in range(4)]
        bucket = str(tmp_path / "bucket")

        def rerun(sources, reads):
            web.gets.clear()
            r = index(cloudify, bucket, "run", sources)
            assert r.returncode == 0, r.stderr
            assert set(web.gets) == reads
            assert f"({len(reads)} of {len(sources)} sources read," in r.stdout, r.stdout

        rerun(urls[:3], {"/p0.nc", "/p1.nc", "/p2.nc"})
        # A file added: only it is read.
        paths.append(write(str(root / "p3.nc"), np.arange(12.0) + 36, seed=3))
        rerun(urls, {"/p3.nc"})
        # A file rewritten (the same times, other values): only it is read again.
        write(str(root / "p1.nc"), np.arange(12.0) + 12, seed=7)
        rerun(urls, {"/p1.nc"})
        # The first file dropped: nothing is read, yet the order and the checks against the
        # (new) first file are made again, from what the last runs kept.
        rerun(urls[1:], set())
        server = start_server(bucket, *OPERATOR)
        assert_served_as_mfdataset(server, "run", paths[1:])
        info = server.get("/datasets/run/info").json()
        assert [s["url"] for s in info["sources"] if s["url"].startswith("http")] == urls[1:]
        # A change in the middle reorders nothing, and is served as the file now is.
        write(str(root / "p2.nc"), np.arange(12.0) + 24, seed=8)
        rerun(urls[1:], {"/p2.nc"})
        assert_served_as_mfdataset(server, "run", paths[1:])
    finally:
        web.stop()


@pytest.mark.parametrize("case,fault", [
    ("dtype", '"tas": dtype <f4, not <i2'),
    ("lat", '"lat": its values differ'),
    ("missing", '"time_bnds": is missing'),
    ("units", '"lat"'),
    ("chunks", "differ off the concatenated dimension"),
    ("repeat", "starts at the same value"),
])
def test_disagreeing_files_are_named(cloudify, tmp_path, case, fault):
    first = write(str(tmp_path / "first.nc"), np.arange(10.0), scale=0.01, chunks=(5, 4, 5))
    t = np.arange(10.0) + 10
    other = str(tmp_path / "other.nc")
    if case == "dtype":
        write(other, t, chunks=(5, 4, 5))
    elif case == "lat":
        write(other, t, scale=0.01, chunks=(5, 4, 5), lat=[-40, -15, 15, 40])
    elif case == "missing":
        write(other, t, scale=0.01, chunks=(5, 4, 5), with_bounds=False)
    elif case == "units":
        write(other, t, scale=0.01, chunks=(5, 4, 5))
        with netCDF4.Dataset(other, "a") as nc:
            nc["lat"].units = "degrees_south"
    elif case == "chunks":
        first = write(str(tmp_path / "first.nc"), np.arange(7.0), scale=0.01, chunks=(5, 4, 5))
        write(other, t, scale=0.01, chunks=(5, 2, 5))
    else:
        write(other, np.arange(10.0), scale=0.01, chunks=(5, 4, 5))
    bucket = str(tmp_path / "bucket")
    r = index(cloudify, bucket, "bad", [first, other])
    assert r.returncode != 0
    assert "first.nc" in r.stderr or "other.nc" in r.stderr, r.stderr
    assert fault in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(bucket, "index.json"))


def test_several_sources_need_a_concat_dim(cloudify, tmp_path):
    paths = [write(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i) for i in range(2)]
    r = subprocess.run([cloudify, "index", "--bucket", str(tmp_path / "b"), "--dataset", "x",
                        *paths], capture_output=True, text=True)
    assert r.returncode != 0 and "--concat-dim" in r.stderr
    r = index(cloudify, str(tmp_path / "b"), "x", [str(tmp_path / "nothing_*.nc")])
    assert r.returncode != 0 and "no file matches" in r.stderr
    assert glob.glob(str(tmp_path / "b" / "*")) == []
