"""The Worker (wasm32, workerd, local R2) answers as `cloudify serve` does: every key of every
test dataset byte for byte, xarray reads the sources' values through it, and faults are clear
answers that leave the isolate serving."""
import hashlib
import json
import os

import pytest
import xarray as xr

from compare import datasets_equal, source
from range_server import RangeServer
from servers import (DIAGNOSTICS, assert_same_answers, every_key, logged_request,
                     write_conformance_fixture)
from wrangler import READ_BUDGET, Wrangler, bulk_put

VIEWS = ("kerchunk", "zarr", "zarr3")
# Documents that link back to the function: compared with the hosts made equal.
DOCS = ("info", "keys", "dict", "stac", "")


def test_every_key_answers_as_cloudify_serve(worker, native, bucket):
    paths = every_key(native, bucket[1], VIEWS)
    assert len(paths) > 5000
    assert_same_answers(worker, native, paths, threads=6)


def test_diagnostics_answer_as_cloudify_serve(worker, native):
    assert_same_answers(worker, native, DIAGNOSTICS)


@pytest.mark.parametrize("doc", DOCS)
def test_documents_match_but_for_the_host(worker, native, bucket, doc):
    for ds_id in bucket[1]:
        path = f"/datasets/{ds_id}/{doc}"
        theirs, ours = worker.get(path), native.get(path)
        assert theirs.status_code == ours.status_code == 200, path
        assert theirs.text.replace(worker.url, "HOST") == ours.text.replace(native.url, "HOST"), path
    for path in ("/datasets", "/openapi.json", "/intake.yaml", "/stac/catalog.json",
                 "/stac-collection-all.json"):
        theirs, ours = worker.get(path), native.get(path)
        assert theirs.status_code == ours.status_code, path
        assert theirs.text.replace(worker.url, "HOST") == ours.text.replace(native.url, "HOST"), path


@pytest.mark.parametrize("view", VIEWS)
def test_xarray_reads_the_sources_through_the_worker(worker, native, bucket, view):
    for ds_id, path in bucket[1].items():
        info = native.get(f"/datasets/{ds_id}/info").json()
        left_out = set(info["skipped"]) | set(info["routes"][view]["excluded"])
        url = f"{worker.url}/datasets/{ds_id}/{view}"
        fmt = 3 if view == "zarr3" else 2
        with source(path) as expected, \
                xr.open_dataset(url, engine="zarr", zarr_format=fmt, consolidated=True) as actual:
            datasets_equal(actual, expected.load(), left_out)


@pytest.mark.parametrize("view", ["zarr", "zarr3"])
def test_zstd_chunks_decode_to_the_sources_values(worker, native, bucket, view):
    path = os.path.join(bucket[0], "sources", "mixed.nc")
    info = native.get("/datasets/zstd/info").json()
    assert info["codec"]["name"] == "zstd"
    url = f"{worker.url}/datasets/zstd/{view}"
    fmt = 3 if view == "zarr3" else 2
    with xr.open_dataset(path, engine="netcdf4") as expected, \
            xr.open_dataset(url, engine="zarr", zarr_format=fmt, consolidated=True) as actual:
        datasets_equal(actual, expected, set(info["skipped"]))


@pytest.mark.parametrize("pinned", [False, True])
def test_chunks_come_from_the_cache_api_the_second_time(worker, pinned):
    """A chunk no test above asked for (`victim` is only read by the fault test below), under
    its moving and its pinned URL: the second answer is the cached one, with the same body and
    the headers the router gave the first."""
    version = worker.get("/datasets/victim/info").json()["version"]
    ds = f"victim@{version}" if pinned else "victim"
    path = f"/datasets/{ds}/zarr/zlib_shuffle/1.1.1"
    first, second = worker.get(path), worker.get(path)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cloudify-cache"] == "miss"
    assert second.headers["x-cloudify-cache"] == "hit"
    assert first.content == second.content
    for h in ("etag", "cache-control", "vary", "content-type"):
        assert second.headers[h] == first.headers[h], h
    assert ("immutable" if pinned else "max-age=60") in second.headers["cache-control"]
    # A revalidation still answers 304 from the version alone.
    again = worker.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def served(worker):
    """The isolate still answers after a fault: the service document and a chunk."""
    assert worker.get("/").status_code == 200
    assert worker.get("/datasets/mixed/zarr/.zmetadata").status_code == 200


def error_of(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"}
    return body["detail"]


def test_missing_objects_are_404(worker):
    assert "nope" in error_of(worker.get("/datasets/nope/zarr/.zmetadata"), 404)
    assert "stac/none.json" in error_of(worker.get("/stac/none.json"), 404)
    assert "x" in error_of(worker.get("/datasets/mixed/zarr/x/0"), 404)
    served(worker)


def test_bad_keys_are_400(worker):
    assert worker.get("/datasets/mixed/zarr/%2e%2e%2fsecret").status_code == 400
    assert worker.get("/datasets/mixed/zarr/zlib_shuffle/0.a.0").status_code == 400
    error_of(worker.get("/datasets/mixed/zarr/zlib_shuffle/99.0.0"), 404)
    served(worker)


def test_oversized_request_is_413(worker):
    """`big` is served in one 9.6 MB chunk, over the 8 MiB budget both servers run with; its
    800 kB source chunks pass through /kerchunk."""
    detail = error_of(worker.get("/datasets/big/zarr/values/0.0"), 413)
    assert "budget" in detail
    assert worker.get("/datasets/big/kerchunk/values/3.0").status_code == 200
    served(worker)


def test_concurrent_requests_wait_for_room_in_the_isolates_memory(state, native):
    """An isolate with room for one of `big`'s 800 kB source chunks in flight: 24 concurrent
    requests for them are all answered, byte for byte as `cloudify serve` answers, one after
    the other; what the core counted in the isolate never passed the budget."""
    room = 1 << 20
    # The Worker preset's caches (manifests 16 MiB, decoded chunks 16 MiB) and the runtime's
    # 32 MiB reserve, then the room; no Cache API, so every request reads.
    memory = (32 << 20) + (16 << 20) + (16 << 20) + room
    isolate = Wrangler(state, extra_vars=(f"READ_BUDGET_BYTES:{READ_BUDGET}",
                                          f"MEMORY_BYTES:{memory}", "CACHE_CHUNKS:false"))
    try:
        config = isolate.get("/").json()["config"]
        assert config["in_flight_budget_bytes"] == room
        paths = [f"/datasets/big/kerchunk/values/{i % 12}.0" for i in range(24)]
        assert_same_answers(isolate, native, paths, threads=24)
        counts = isolate.get("/").json()["in_flight"]
        assert counts["granted"] >= 24 and counts["held"] == 0, counts
        assert 800_000 <= counts["peak"] <= room, counts
        assert counts["waited"] >= 1 and counts["timed_out"] == 0, counts
        # One chunk larger than the whole room is refused, not queued.
        detail = error_of(isolate.get("/datasets/big/zarr/values/0.0"), 413)
        assert "budget" in detail
    finally:
        isolate.stop()


def test_changed_and_missing_sources(worker, bucket, tmp_path):
    """A source whose size changed since indexing is 409; one that is gone is 502; the
    isolate answers the next request either way."""
    key = "sources/victim.nc"
    url = "/datasets/victim/zarr/zlib_shuffle/0.0.0"
    grown = tmp_path / "grown.nc"
    with open(os.path.join(bucket[0], key), "rb") as f:
        grown.write_bytes(f.read() + b"\0" * 100)
    worker.put(key, str(grown))
    detail = error_of(worker.get(url), 409)
    assert key in detail and "reindex" in detail
    served(worker)
    worker.delete(key)
    detail = error_of(worker.get("/datasets/victim/zarr/zlib_shuffle/1.0.0"), 502)
    assert key in detail and "missing" in detail
    served(worker)


def republish(worker, root, ds_id, tmp_path, edit):
    """Put into R2 a new version of `ds_id` whose manifest `edit` changed (the same chunk
    tables), and make it current."""
    registry = json.load(open(os.path.join(root, "index.json")))
    folder = os.path.join(root, "datasets", ds_id, registry["datasets"][ds_id]["version"])
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    edit(manifest)
    moved = "f" * 20
    objects = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            objects[f"datasets/{ds_id}/{moved}/{os.path.relpath(path, folder)}"] = path
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    objects[f"datasets/{ds_id}/{moved}/manifest.json"] = str(tmp_path / "manifest.json")
    registry["datasets"][ds_id]["version"] = moved
    (tmp_path / "index.json").write_text(json.dumps(registry))
    objects["index.json"] = str(tmp_path / "index.json")
    bulk_put(worker.state, objects)


def test_r2_reads_are_conditional_on_the_recorded_etag(worker, bucket, tmp_path):
    """Recorded under R2's own tag (an MD5), a source rewritten with other bytes of the same
    size is caught by the read's `onlyIf`, where a size check cannot."""
    key = "sources/tagged.nc"
    with open(os.path.join(bucket[0], key), "rb") as f:
        data = f.read()
    tag = f'"{hashlib.md5(data).hexdigest()}"'
    republish(worker, bucket[0], "tagged", tmp_path,
              lambda m: m["sources"][0].update(etag=tag))
    assert worker.get("/datasets/tagged/zarr/values/0.0").status_code == 200
    changed = bytearray(data)
    changed[-1] ^= 0xFF
    (tmp_path / "changed.nc").write_bytes(changed)
    worker.put(key, str(tmp_path / "changed.nc"))
    detail = error_of(worker.get("/datasets/tagged/zarr/values/1.0"), 409)
    assert key in detail and tag.strip('"') in detail, detail
    served(worker)


def test_sources_behind_https_urls_are_read_with_range(worker, bucket, tmp_path):
    """A dataset whose source is named by an http:// URL: the Worker reads it with ranged
    `fetch`es, conditional on the recorded tag, and reports a changed source as 409."""
    root = bucket[0]
    web = RangeServer(os.path.join(root, "web"))
    try:
        def to_web(manifest):
            assert manifest["sources"][0]["url"] == "web/remote.nc"
            manifest["sources"][0]["url"] = f"{web.url}/remote.nc"
            # The tag the web server gives the file (the bucket's own tag is another).
            st = os.stat(os.path.join(root, "web", "remote.nc"))
            manifest["sources"][0]["etag"] = f'"{st.st_size}-{st.st_mtime_ns}"'

        republish(worker, root, "remote", tmp_path, to_web)
        source = os.path.join(root, "web", "remote.nc")
        url = f"{worker.url}/datasets/remote/zarr"
        with xr.open_dataset(source, engine="netcdf4") as expected, \
                xr.open_dataset(url, engine="zarr", consolidated=True) as actual:
            datasets_equal(actual, expected)
        assert 0 < web.sent < os.path.getsize(source) * 2

        with open(source, "ab") as f:
            f.write(b"\0" * 10)
        # /kerchunk's chunks were not read above, so none is in the Cache API.
        meta = worker.get("/datasets/remote/kerchunk/.zmetadata").json()["metadata"]
        name = next(k[:-len("/.zarray")] for k, v in meta.items()
                    if k.endswith("/.zarray") and len(v["shape"]) >= 2)
        zeros = ".".join("0" * len(meta[f"{name}/.zarray"]["shape"]))
        detail = error_of(worker.get(f"/datasets/remote/kerchunk/{name}/{zeros}"), 409)
        assert "remote.nc" in detail
        served(worker)
    finally:
        web.stop()


def test_settings_come_from_the_one_config(worker, state):
    """The Worker's settings are the core's Config: the paid plan's preset and `[vars]` over
    it; `PLATFORM = "worker-free"` picks the free plan's preset."""
    c = worker.get("/").json()["config"]
    assert c["platform"] == "worker-paid"
    assert (c["read_budget_bytes"], c["max_reads"], c["cpu_budget_bytes"]) == (
        READ_BUDGET, 1000, 1 << 30)
    assert c["cache_chunks"] is True and c["index_ttl_seconds"] == 0
    free = Wrangler(state, extra_vars=("PLATFORM:worker-free",))
    try:
        c = free.get("/").json()["config"]
        assert c["platform"] == "worker-free"
        assert (c["read_budget_bytes"], c["max_reads"], c["cpu_budget_bytes"]) == (
            4 << 20, 40, 512 << 10)
        assert c["index_ttl_seconds"] == 60
    finally:
        free.stop()


def test_r2_and_fetch_pass_the_store_conformance_suite(worker, state, tmp_path):
    """The suite's reads, run inside workerd on the R2 binding and on `fetch` (HTTP sources),
    where a Worker configured with SELF_TEST exposes them."""
    write_conformance_fixture(str(tmp_path))
    base = os.path.join(str(tmp_path), "conformance")
    bulk_put(state, {f"conformance/{os.path.relpath(os.path.join(b, n), base)}":
                     os.path.join(b, n) for b, _, files in os.walk(base) for n in files})
    assert worker.get("/__self-test/conformance").status_code == 404, "off unless configured"
    web = RangeServer(str(tmp_path))
    checker = Wrangler(state, extra_vars=("SELF_TEST:true",))
    try:
        r2 = checker.get("/__self-test/conformance?store=bucket&prefix=conformance").json()
        assert r2 == {"store": "bucket", "failures": []}, r2
        prefix = f"{web.url.removeprefix('http://')}/conformance"
        http = checker.get(f"/__self-test/conformance?store=http&prefix={prefix}").json()
        assert http == {"store": "http", "failures": []}, http
    finally:
        checker.stop()
        web.stop()


def test_every_request_is_logged_on_the_console_as_json(worker):
    path = "/datasets/mixed/zarr/zlib_shuffle/0.1.1"
    r = worker.get(path)
    assert r.status_code == 200
    worker.log.flush()
    with open(worker.log.name) as f:
        line = logged_request(f.read(), path)
    assert (line["method"], line["status"], line["bytes_out"]) == ("GET", 200, len(r.content))
    assert line["store_ops"] >= 1 and line["version"]
