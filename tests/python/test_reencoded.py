"""`/zarr` (v2) and `/zarr3` (v3) end to end: every dataset, every codec, native and straddling
chunk grids, integrity, pinned versions and caching."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from compare import datasets_equal
from servers import OPERATOR, index_many, sample_files, sample_id
import make_files

IDS = list(make_files.GENERATORS) + [sample_id(p) for p in sample_files()]
VIEWS = {"zarr": 2, "zarr3": 3}
MAGIC = {"zlib": (b"\x78", b"\x1f\x8b"), "zstd": (b"\x28\xb5\x2f\xfd",) * 2}


def open_view(url, view):
    return xr.open_dataset(url, engine="zarr", zarr_format=VIEWS[view], consolidated=True)


def skipped(server, ds_id):
    return set(server.get(f"/datasets/{ds_id}/info").json()["skipped"])


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("ds_id", IDS)
def test_every_dataset_reencoded(server, datasets, ds_id, view):
    """Every variable the source has (those /kerchunk leaves out included) equals netCDF4's."""
    path = datasets[1][ds_id]
    url = f"{server.url}/datasets/{ds_id}/{view}"
    with xr.open_dataset(path, engine="netcdf4") as expected, open_view(url, view) as actual:
        datasets_equal(actual, expected, skipped(server, ds_id))


def index(cloudify, bucket, ds_id, path, *options):
    r = subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", ds_id, *options, path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


# Served grids that straddle the source chunks of the generated files (mixed's zlib_shuffle is
# chunked (4, 10, 20); many_chunks' values (2, 20)); CMIP6 samples are contiguous.
STRADDLING = {"mixed": "time=3,lat=7,lon=11,y=2,z=4", "many_chunks": "time=5,cell=30"}
CODECS = ["none", "zlib:6", "zstd"]


@pytest.fixture(scope="module")
def variants(cloudify, generated, tmp_path_factory, start_server_module):
    """One bucket with mixed and many_chunks indexed under every codec, with and without
    --chunks, plus a few CMIP6 samples re-chunked along time."""
    bucket = str(tmp_path_factory.mktemp("variants"))
    ids, config = {}, {}
    for name, chunks in STRADDLING.items():
        for codec in CODECS:
            for rechunk in (False, True):
                ds_id = f"{name}-{codec.split(':')[0]}-{'rechunked' if rechunk else 'native'}"
                config[ds_id] = ([generated[name]],
                                 {"codec": codec} | ({"chunks": chunks} if rechunk else {}))
                ids[ds_id] = (generated[name], codec.split(":")[0])
    for path in sample_files()[:6]:
        ds_id = "rechunked-" + sample_id(path)
        config[ds_id] = ([path], {"chunks": "time=7"})
        ids[ds_id] = (path, "zstd")
    index_many(cloudify, bucket, config)
    return start_server_module(bucket), ids


VARIANT_IDS = [f"{n}-{c.split(':')[0]}-{g}" for n in STRADDLING for c in CODECS
               for g in ("native", "rechunked")]


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("ds_id", VARIANT_IDS + ["rechunked-samples"])
def test_codecs_and_grids(variants, ds_id, view):
    server, ids = variants
    wanted = [d for d in ids if d.startswith("rechunked-")] if ds_id == "rechunked-samples" else [ds_id]
    for d in wanted:
        path, codec = ids[d]
        url = f"{server.url}/datasets/{d}/{view}"
        with xr.open_dataset(path, engine="netcdf4") as expected, open_view(url, view) as actual:
            datasets_equal(actual, expected, skipped(server, d))
        if d.startswith("rechunked-"):
            continue
        # The codec is declared in the metadata and its magic bytes open every served chunk.
        if view == "zarr":
            meta = server.get(f"/datasets/{d}/zarr/.zmetadata").json()["metadata"]
            compressor = meta["zlib_shuffle/.zarray" if "mixed" in d else "values/.zarray"]["compressor"]
            assert (compressor or {"id": "none"})["id"] == codec
            chunk = server.get(f"/datasets/{d}/zarr/" + ("zlib_shuffle/0.0.0" if "mixed" in d else "values/0.0"))
        else:
            meta = server.get(f"/datasets/{d}/zarr3/zarr.json").json()["consolidated_metadata"]["metadata"]
            codecs = [c["name"] for c in meta["zlib_shuffle" if "mixed" in d else "values"]["codecs"]]
            assert codecs == {"none": ["bytes"], "zlib": ["bytes", "gzip"], "zstd": ["bytes", "zstd"]}[codec]
            chunk = server.get(f"/datasets/{d}/zarr3/" + ("zlib_shuffle/c/0/0/0" if "mixed" in d else "values/c/0/0"))
        assert chunk.status_code == 200
        if codec in MAGIC:
            magic = MAGIC[codec][0 if view == "zarr" else 1]
            assert chunk.content.startswith(magic), chunk.content[:4]


# Every sample under the other codecs, each on a grid that straddles its source chunks (CMIP6
# samples are contiguous: served chunks of 7 time steps read parts of them).
SAMPLE_VARIANTS = {"zstd": {"codec": "zstd", "chunks": "time=7"},
                   "none": {"codec": "none", "chunks": "time=5,lat=16"}}


@pytest.fixture(scope="module")
def sample_variants(cloudify, tmp_path_factory, start_server_module):
    servers = {}
    for codec, opts in SAMPLE_VARIANTS.items():
        bucket = str(tmp_path_factory.mktemp(f"samples-{codec}"))
        index_many(cloudify, bucket, {sample_id(p): ([p], opts) for p in sample_files()})
        servers[codec] = start_server_module(bucket)
    return servers


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("codec", SAMPLE_VARIANTS)
@pytest.mark.parametrize("path", sample_files(), ids=sample_id)
def test_every_sample_for_each_codec_on_a_straddling_grid(sample_variants, path, codec, view):
    server = sample_variants[codec]
    ds_id = sample_id(path)
    url = f"{server.url}/datasets/{ds_id}/{view}"
    with xr.open_dataset(path, engine="netcdf4") as expected, open_view(url, view) as actual:
        datasets_equal(actual, expected, skipped(server, ds_id))


def test_auto_passes_source_chunks_through(server, datasets, variants):
    """The default codec, auto, serves a chunk that is one source chunk under codecs numcodecs
    decodes as its stored bytes, declaring the source's chain, and re-encodes the others."""
    import h5py
    import netCDF4
    import zarr

    path = datasets[1]["mixed"]
    v2 = server.get("/datasets/mixed/zarr/.zmetadata").json()["metadata"]
    v3 = server.get("/datasets/mixed/zarr3/zarr.json").json()["consolidated_metadata"]["metadata"]
    assert v2["zlib_shuffle/.zarray"]["filters"] == [{"id": "shuffle", "elementsize": 4}]
    assert v2["zlib_shuffle/.zarray"]["compressor"] == {"id": "zlib", "level": 6}
    assert v3["zlib_shuffle"]["codecs"] == [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
        {"name": "numcodecs.zlib", "configuration": {"level": 6}}]
    assert v2["big_endian/.zarray"]["dtype"] == ">f8"
    assert v3["big_endian"]["codecs"][0] == {"name": "bytes", "configuration": {"endian": "big"}}
    with h5py.File(path, "r") as h5, open(path, "rb") as f:
        for name, coord, v2key, v3key in [("zlib_shuffle", (4, 10, 20), "1.1.1", "c/1/1/1"),
                                          ("big_endian", (15, 0), "1.0", "c/1/0")]:
            info = h5[name].id.get_chunk_info_by_coord(coord)
            f.seek(info.byte_offset)
            stored = f.read(info.size)
            for key in [f"/datasets/mixed/zarr/{name}/{v2key}", f"/datasets/mixed/zarr3/{name}/{v3key}"]:
                chunk = server.get(key)
                assert chunk.status_code == 200 and chunk.content == stored, key
    # zarr-python alone (no xarray) decodes them to the values netCDF4 reads.
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        expected = {name: nc[name][:] for name in ["zlib_shuffle", "big_endian", "partial"]}
    for view, fmt in VIEWS.items():
        group = zarr.open_group(f"{server.url}/datasets/mixed/{view}", mode="r", zarr_format=fmt,
                                use_consolidated=True)
        for name, values in expected.items():
            np.testing.assert_array_equal(group[name][:], values, err_msg=f"{view} {name}")
    # Fletcher-32 is checked here, so those chunks are re-encoded with zstd:-5 (little-endian);
    # an explicit codec is honoured even where auto would pass the chunks through.
    assert v2["fletcher_i2/.zarray"]["compressor"] == {"id": "zstd", "level": -5}
    assert server.get("/datasets/mixed/zarr/fletcher_i2/0.0.0").content.startswith(MAGIC["zstd"][0])
    vserver, _ = variants
    for codec, magic in [("zstd", MAGIC["zstd"][1]), ("none", None)]:
        meta = vserver.get(f"/datasets/mixed-{codec}-native/zarr3/zarr.json").json()
        big = meta["consolidated_metadata"]["metadata"]["big_endian"]
        assert big["codecs"][0] == {"name": "bytes", "configuration": {"endian": "little"}}
        chunk = vserver.get(f"/datasets/mixed-{codec}-native/zarr3/zlib_shuffle/c/1/1/1").content
        assert chunk.startswith(magic) if magic else len(chunk) == 4 * 10 * 20 * 4


def test_reencoded_routes_serve_what_kerchunk_leaves_out(server):
    info = server.get("/datasets/mixed/info").json()
    assert "fletcher_shuffle_f8" in info["routes"]["kerchunk"]["excluded"]
    assert info["routes"]["zarr"]["excluded"] == {} and info["routes"]["zarr3"]["excluded"] == {}
    for view, key in [("zarr", "fletcher_shuffle_f8/.zarray"), ("zarr3", "fletcher_shuffle_f8/zarr.json")]:
        assert server.get(f"/datasets/mixed/{view}/{key}").status_code == 200


def test_v3_fill_values_follow_xarray(server):
    import base64
    import struct

    meta = server.get("/datasets/mixed/zarr3/zarr.json").json()["consolidated_metadata"]["metadata"]
    assert meta["partial"]["fill_value"] == "NaN"
    assert np.isnan(struct.unpack("<d", base64.b64decode(meta["partial"]["attributes"]["_FillValue"]))[0])
    # int16 packed with a float32 scale_factor and add_offset is served as the float32 values
    # xarray unpacks on the file (the fidelity case), its fill as NaN.
    assert meta["packed"]["data_type"] == "float32"
    assert np.isnan(struct.unpack("<d", base64.b64decode(meta["packed"]["attributes"]["_FillValue"]))[0])
    assert meta["scalar"]["shape"] == [] and meta["uneven"]["dimension_names"] == ["z", "lat", "lon"]


def test_same_size_edit_is_409_and_bad_checksum_502(cloudify, generated, tmp_path, start_server):
    import h5py

    from range_server import RangeServer

    bucket = str(tmp_path / "bucket")
    src = str(tmp_path / "copy.nc")
    shutil.copy(generated["mixed"], src)
    index(cloudify, bucket, "m", src)
    # The same file behind HTTP, whose server tags it by size and mtime: an edit that keeps
    # both only the chunk's checksum can tell.
    web_root = tmp_path / "web"
    web_root.mkdir()
    remote = str(web_root / "copy.nc")
    shutil.copy(generated["mixed"], remote)
    web = RangeServer(str(web_root))
    index(cloudify, bucket, "w", f"{web.url}/copy.nc")
    server = start_server(bucket, *OPERATOR)
    info = server.get("/datasets/m/info").json()
    assert info["variables"]["fletcher_i2"]["codecs"] == [{"id": "fletcher32"}]
    chunk = "/datasets/m/zarr/fletcher_i2/1.1.0"
    assert server.get(chunk).status_code == 200
    assert server.get(chunk.replace("/m/", "/w/")).status_code == 200

    with h5py.File(src, "r") as h5:
        offset = h5["fletcher_i2"].id.get_chunk_info_by_coord((5, 15, 0)).byte_offset

    def flip(path, keep_mtime):
        stat = os.stat(path)
        with open(path, "r+b") as f:
            f.seek(offset + 10)
            b = f.read(1)
            f.seek(offset + 10)
            f.write(bytes([b[0] ^ 0xFF]))
        if keep_mtime:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    # Flip one byte inside a chunk of the fletcher32-only variable, keeping size and mtime.
    flip(remote, keep_mtime=True)
    try:
        r = server.get(chunk.replace("/m/", "/w/"))
    finally:
        web.stop()
    assert r.status_code == 502 and "Fletcher-32" in r.json()["detail"] and "fletcher_i2" in r.json()["detail"], r.text
    # In a local folder the same edit is a changed source (the tag holds the inode's change
    # time, which no one can put back), and so is one with a new mtime: 409, asking for a
    # reindex.
    for keep_mtime in [True, False]:
        flip(src, keep_mtime)
        for route in [chunk, "/datasets/m/kerchunk/zlib_shuffle/0.0.0", "/datasets/m/zarr3/contiguous/c/0/0"]:
            r = server.get(route)
            assert r.status_code == 409, r.text
            assert src in r.json()["detail"] and "reindex" in r.json()["detail"]


def test_oversized_chunks_are_refused(cloudify, generated, tmp_path, start_server):
    bucket = str(tmp_path / "bucket")
    r = subprocess.run([cloudify, "index", "--bucket", bucket, "--dataset", "big",
                        "--chunks", "time=100000000", generated["mixed"]], capture_output=True, text=True)
    assert r.returncode != 0 and "budget" in r.stderr, r.stderr
    index(cloudify, bucket, "m", generated["mixed"])
    server = start_server(bucket, "--read-budget", "1000")
    for route in ["/datasets/m/zarr/zlib_shuffle/0.0.0", "/datasets/m/kerchunk/zlib_shuffle/0.0.0"]:
        r = server.get(route)
        assert r.status_code == 413 and "budget" in r.json()["detail"], r.text
    assert server.get("/datasets/m/zarr/lat/0").status_code == 200


def test_pinned_versions_and_revalidation(cloudify, generated, tmp_path, start_server):
    import netCDF4

    bucket = str(tmp_path / "bucket")
    src = str(tmp_path / "copy.nc")
    shutil.copy(generated["many_chunks"], src)
    index(cloudify, bucket, "d", src)
    server = start_server(bucket, *OPERATOR)
    v1 = server.get("/datasets/d/info").json()["version"]
    key = "/zarr/values/0.0"
    unpinned_before = server.get("/datasets/d" + key)
    pinned_before = server.get(f"/datasets/d@{v1}" + key)
    assert unpinned_before.content == pinned_before.content
    assert "immutable" in pinned_before.headers["cache-control"]
    assert "immutable" not in unpinned_before.headers["cache-control"]
    etag = unpinned_before.headers["etag"]
    assert server.get("/datasets/d" + key, headers={"If-None-Match": etag}).status_code == 304
    assert "store reads" in unpinned_before.headers["server-timing"]

    # The data changes: a new file replaces the old one as the dataset's source.
    src2 = str(tmp_path / "copy2.nc")
    shutil.copy(src, src2)
    with netCDF4.Dataset(src2, "a") as nc:
        nc["values"][0:2, 0:20] = -1.0
    index(cloudify, bucket, "d", src2)
    v2 = server.get("/datasets/d/info").json()["version"]
    assert v2 != v1
    unpinned_after = server.get("/datasets/d" + key)
    assert unpinned_after.content != unpinned_before.content
    assert unpinned_after.headers["etag"] != etag
    assert server.get("/datasets/d" + key, headers={"If-None-Match": etag}).status_code == 200
    pinned_after = server.get(f"/datasets/d@{v1}" + key)
    assert pinned_after.status_code == 200
    assert pinned_after.content == pinned_before.content
    assert pinned_after.headers["etag"] == pinned_before.headers["etag"]
    assert server.get(f"/datasets/d@{v1}/info").json()["version"] == v1
    assert server.get(f"/datasets/d@{v2}" + key).content == unpinned_after.content
