"""The serving function under `cargo lambda watch` and `cloudify serve --bucket s3://…` answer
as `cloudify serve` on the folder does: every key of every test dataset byte for byte; xarray
reads the sources' values through the emulated Function URL; storage faults on the S3 path are
clear answers; the reindex function adds a new file to its dataset and writes nothing for a
repeated event."""
import json
import os
import subprocess

import numpy as np
import pytest
import xarray as xr

import make_files
from aws import SECRET, TIMEOUT_MS, s3_env
from compare import datasets_equal, source
from conftest import BUCKET, PREFIX
from servers import DIAGNOSTICS, assert_same_answers, every_key

VIEWS = ("kerchunk", "zarr", "zarr3")
FAULTY = {"victim", "forbidden", "slow", "big"}


# The function answers for every dataset; `cloudify serve --bucket s3://` shares its S3 store
# and router, so three datasets (HDF5 with every storage case, multi-file, NetCDF-3) show it.
@pytest.mark.parametrize("server,some", [("lam", None), ("s3serve", ("mixed", "pieces",
                                                                       "nc3_classic"))])
def test_every_key_answers_as_cloudify_serve(server, some, native, bucket, request):
    paths = every_key(native, some or [i for i in bucket[1] if i not in FAULTY])
    assert len(paths) > (1000 if some is None else 500)
    assert_same_answers(request.getfixturevalue(server), native, paths)


@pytest.mark.parametrize("view", VIEWS)
def test_xarray_reads_the_sources_through_the_function_url(lam, native, bucket, view):
    for ds_id, path in bucket[1].items():
        if ds_id in FAULTY:
            continue
        info = native.get(f"/datasets/{ds_id}/info").json()
        left_out = set(info["skipped"]) | set(info["routes"][view]["excluded"])
        fmt = 3 if view == "zarr3" else 2
        with source(path) as expected, \
                xr.open_dataset(f"{lam.url}/datasets/{ds_id}/{view}", engine="zarr",
                                zarr_format=fmt, consolidated=True,
                                storage_options=lam.storage_options) as actual:
            datasets_equal(actual, expected.load(), left_out)


def test_diagnostics_answer_as_cloudify_serve(lam, native):
    assert_same_answers(lam, native, DIAGNOSTICS)


def test_documents_match_but_for_the_host(lam, native):
    for path in ("/datasets", "/openapi.json", "/intake.yaml", "/stac/catalog.json",
                 "/datasets/pieces/info", "/datasets/pieces/stac"):
        theirs, ours = lam.get(path), native.get(path)
        assert theirs.status_code == ours.status_code == 200, path
        assert theirs.text.replace(lam.origin, "HOST") == ours.text.replace(native.url, "HOST"), path


def error_of(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"}
    return body["detail"]


def still_serving(server):
    assert server.get("/").status_code == 200
    assert server.get("/datasets/mixed/zarr/.zmetadata").status_code == 200


@pytest.mark.parametrize("server", ["lam", "s3serve"])
def test_missing_objects(server, s3, request):
    """An object the index does not name is a 404 (no index entry, no such key); a source the
    index names that was deleted is a 502 naming it."""
    srv = request.getfixturevalue(server)
    assert "nope" in error_of(srv.get("/datasets/nope/zarr/.zmetadata"), 404)
    assert error_of(srv.get("/datasets/mixed/zarr/nope/0.0"), 404)
    assert error_of(srv.get("/datasets/mixed/zarr/zlib_shuffle/99.0.0"), 404)
    still_serving(srv)


def test_a_deleted_source_is_a_502_naming_it(lam, s3serve, s3):
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/sources/victim.nc")
    for srv in (lam, s3serve):
        detail = error_of(srv.get("/datasets/victim/zarr/zlib_shuffle/0.0.0"), 502)
        assert "victim.nc" in detail
        still_serving(srv)


def test_a_forbidden_source_is_a_502_naming_it_without_credentials(lam):
    r = lam.get("/datasets/forbidden/zarr/zlib_shuffle/0.0.0")
    detail = error_of(r, 502)
    assert "forbidden.nc" in detail and "denied" in detail, detail
    for secret in (SECRET, "AKIACLOUDIFYTEST", "Signature", "Credential"):
        assert secret not in r.text
    still_serving(lam)


def test_a_slow_source_is_a_504_within_the_timeout(lam):
    import time

    start = time.time()
    detail = error_of(lam.get("/datasets/slow/zarr/zlib_shuffle/0.0.0"), 504)
    assert "slow.nc" in detail and f"{TIMEOUT_MS} ms" in detail, detail
    assert time.time() - start < 10
    still_serving(lam)


def test_an_answer_over_the_function_url_limit_is_a_413_that_says_why(lam, native):
    ours = native.get("/datasets/big/zarr/values/0.0")
    assert ours.status_code == 200 and len(ours.content) > 4_400_000
    detail = error_of(lam.get("/datasets/big/zarr/values/0.0"), 413)
    assert "RESPONSE_STREAM" in detail and "4.4 MB" in detail
    # The source's own chunks (800 kB) pass through.
    assert lam.get("/datasets/big/kerchunk/values/0.0").status_code == 200
    still_serving(lam)


def s3_notification(key):
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": {"key": key, "size": 1}},
    }]}


def snapshot(s3):
    """Every object of the bucket with its tag and time: what a run that writes nothing keeps."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], o["LastModified"])
    return out


def test_reindex_adds_a_new_file_and_a_repeated_event_writes_nothing(lam, s3, tmp_path):
    runs = [make_files.model_piece(str(tmp_path / f"run{i}.nc"), np.arange(n) + start, seed=i)
            for i, (n, start) in enumerate([(30, 0), (30, 30), (12, 60)])]
    for p in runs[:2]:
        s3.upload_file(p, BUCKET, f"runs/{os.path.basename(p)}")
    config = (f'[datasets.runs]\nsources = ["s3://{BUCKET}/runs/*.nc"]\n'
              'concat_dim = "time"\n')
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/cloudify.toml", Body=config.encode())

    def invoke(event):
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        return lam.invoke("cloudify-reindex", str(path))

    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    assert invoke(scheduled) == {"datasets": ["runs"], "failed": []}
    with xr.open_dataset(f"{lam.url}/datasets/runs/zarr", engine="zarr",
                         storage_options=lam.storage_options) as ds:
        assert ds.sizes["time"] == 60
    s3.upload_file(runs[2], BUCKET, "runs/run2.nc")
    assert invoke(s3_notification("runs/run2.nc")) == {"datasets": ["runs"], "failed": []}
    with source(runs) as expected, \
            xr.open_dataset(f"{lam.url}/datasets/runs/zarr", engine="zarr",
                            storage_options=lam.storage_options) as actual:
        assert actual.sizes["time"] == 72
        datasets_equal(actual, expected.load(), set())
    before = snapshot(s3)
    assert invoke(s3_notification("runs/run2.nc")) == {"datasets": ["runs"], "failed": []}
    assert snapshot(s3) == before
    # The index's own objects and files of no dataset start nothing.
    assert invoke(s3_notification(f"{PREFIX}/index.json")) == {"datasets": [], "failed": []}
    assert invoke(s3_notification("elsewhere/x.nc")) == {"datasets": [], "failed": []}


def test_the_serving_function_carries_no_indexing_code(lam):
    """The linker keeps none of the HDF5 reader or the indexer in cloudify-serve (the release
    build `cargo lambda watch` runs the functions from), while cloudify-reindex has them."""
    from aws import ROOT

    def symbols(name):
        path = os.path.join(ROOT, "target", "release", name)
        return subprocess.run(["nm", "-C", path], capture_output=True, text=True,
                              check=True).stdout

    serve = symbols("cloudify-serve")
    assert "cloudify_core::router" in serve
    assert "hdf5_pure::" not in serve and "cloudify_index::" not in serve
    assert "hdf5_pure::" in symbols("cloudify-reindex")


def test_s3_sources_are_indexed_from_metadata_and_coordinates_only(cloudify, bucket, s3,
                                                                  proxy, tmp_path):
    path = make_files.mostly_data(str(tmp_path / "mostly.nc"))
    key = "remote/mostly.nc"
    s3.upload_file(path, BUCKET, key)
    size = os.path.getsize(path)
    metadata_and_coordinates = size - make_files.data_chunk_bytes(path, "noise")
    assert metadata_and_coordinates < size / 50
    before = proxy.sent(f"/{BUCKET}/{key}")
    r = subprocess.run([cloudify, "index", "--bucket", str(tmp_path / "bucket"), "--dataset",
                        "mostly", f"s3://{BUCKET}/{key}"],
                       capture_output=True, text=True, env=s3_env(proxy.url))
    assert r.returncode == 0, r.stderr
    sent = proxy.sent(f"/{BUCKET}/{key}") - before
    assert 0 < sent <= metadata_and_coordinates + size // 100, (sent, size)


def test_settings_come_from_the_one_config(lam, s3serve):
    """The function's settings are the core's Config from the Lambda preset and the
    environment the template sets (here READ_BUDGET_BYTES); `cloudify serve` has the native
    preset's."""
    c = lam.get("/").json()["config"]
    assert c["platform"] == "lambda"
    assert c["read_budget_bytes"] == 16 << 20
    assert c["max_response_bytes"] == 4_400_000
    assert c["index_ttl_seconds"] == 0  # INDEX_TTL_SECONDS, as the fixture's environment sets
    native = s3serve.get("/").json()["config"]
    assert native["platform"] == "native" and native["max_response_bytes"] is None


def test_s3_passes_the_store_conformance_suite(cloudify, moto):
    r = subprocess.run([cloudify, "check-store", f"s3://{BUCKET}/conformance-run"],
                       capture_output=True, text=True, env=s3_env(moto.url))
    assert r.returncode == 0, r.stderr


def test_the_lambda_crate_depends_on_no_command_line_crate():
    """The reindex function calls the job library, not the `cloudify` binary's crate: neither
    clap nor indicatif is in its tree."""
    from aws import ROOT

    tree = subprocess.run(["cargo", "tree", "-p", "cloudify-lambda", "-e", "normal",
                           "--prefix", "none"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    crates = {line.split()[0] for line in tree.splitlines() if line.strip()}
    assert "cloudify-job" in crates
    assert not crates & {"clap", "indicatif", "cloudify"}, crates & {"clap", "indicatif", "cloudify"}


def test_every_request_is_logged_as_a_json_line(lam):
    """Lambda's preset logs JSON lines, as CloudWatch takes them."""
    from servers import logged_request

    path = "/datasets/mixed/zarr/zlib_shuffle/1.2.1"
    r = lam.get(path)
    assert r.status_code == 200
    with open(lam.log.name) as f:
        line = logged_request(f.read(), path)
    assert (line["method"], line["status"], line["level"]) == ("GET", 200, "INFO")
    assert line["store_ops"] >= 1 and line["bytes_read"] > 0
