"""Looking after a bucket: `cloudify check` reports changed and missing sources without serving
anything, `cloudify rm` removes a dataset, `cloudify gc` deletes what no reader can reach."""
import json
import os
import shutil
import subprocess

from make_files import model_piece
import numpy as np


def run(cloudify, *args):
    return subprocess.run([cloudify, *args], capture_output=True, text=True)


def index(cloudify, bucket, ds_id, *args):
    r = run(cloudify, "index", "--bucket", bucket, "--dataset", ds_id, *args)
    assert r.returncode == 0, r.stderr
    return r


def objects(bucket, under="datasets"):
    out = []
    for base, _, files in os.walk(os.path.join(bucket, under)):
        out += [os.path.relpath(os.path.join(base, f), bucket) for f in files]
    return sorted(out)


def registry(bucket):
    with open(os.path.join(bucket, "index.json")) as f:
        return json.load(f)["datasets"]


def test_check_names_changed_and_missing_sources(cloudify, generated, tmp_path):
    bucket = str(tmp_path / "bucket")
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    shutil.copy(generated["mixed"], a)
    shutil.copy(generated["many_chunks"], b)
    pieces = [model_piece(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i) for i in range(2)]
    index(cloudify, bucket, "a", str(a))
    index(cloudify, bucket, "b", str(b))
    index(cloudify, bucket, "p", "--concat-dim", "time", *pieces)
    r = run(cloudify, "check", "--bucket", bucket)
    assert r.returncode == 0, r.stderr
    assert "a: all 1 sources as indexed" in r.stdout and "p: all 3 sources" in r.stdout
    with open(a, "ab") as f:
        f.write(b"\0" * 7)
    os.remove(pieces[1])
    r = run(cloudify, "check", "--bucket", bucket)
    assert r.returncode == 1
    assert f"a: file://{a}: changed" in r.stdout and "bytes" in r.stdout, r.stdout
    assert f"p: file://{pieces[1]}: missing" in r.stdout, r.stdout
    assert "b: all 1 sources as indexed" in r.stdout
    assert "2 sources changed or missing" in r.stderr
    # One dataset only; an unknown one is an error naming it.
    assert run(cloudify, "check", "--bucket", bucket, "b").returncode == 0
    r = run(cloudify, "check", "--bucket", bucket, "nope")
    assert r.returncode != 0 and "nope" in r.stderr


def test_rm_removes_a_dataset_and_its_catalog_entry(cloudify, generated, tmp_path, start_server):
    bucket = str(tmp_path / "bucket")
    index(cloudify, bucket, "a", generated["mixed"])
    index(cloudify, bucket, "b", generated["many_chunks"])
    r = run(cloudify, "rm", "--bucket", bucket, "a")
    assert r.returncode == 0, r.stderr
    assert set(registry(bucket)) == {"b"}
    assert not any(o.startswith("datasets/a/") for o in objects(bucket))
    # Its Icechunk repository goes with it.
    assert {o.split("/")[1] for o in objects(bucket, "icechunk")} == {"b"}
    assert not any("/a/" in o or o.endswith("/a.json") for o in objects(bucket, "stac"))
    server = start_server(bucket)
    assert server.get("/datasets").json() == ["b"]
    assert server.get("/datasets/a/zarr/.zmetadata").status_code == 404
    assert server.get("/datasets/b/zarr/.zmetadata").status_code == 200
    r = run(cloudify, "rm", "--bucket", bucket, "a")
    assert r.returncode != 0 and '"a"' in r.stderr


def test_gc_keeps_the_last_versions_and_drops_the_unreachable(cloudify, generated, tmp_path,
                                                              start_server):
    bucket = str(tmp_path / "bucket")
    versions = []
    for codec in ["none", "zlib:1", "zlib:5"]:
        index(cloudify, bucket, "a", "--codec", codec, generated["mixed"])
        versions.append(registry(bucket)["a"]["version"])
    assert registry(bucket)["a"]["previous"] == versions[1::-1]
    index(cloudify, bucket, "b", generated["many_chunks"])
    # Left by a killed run (no manifest), and by a dataset index.json no longer names.
    orphans = ["datasets/a/0123456789abcdef0123/tables/0.bin", "datasets/gone/v/manifest.json"]
    # And the Icechunk repository of a dataset index.json no longer names.
    repository = "icechunk/gone/config.yaml"
    for o in orphans + [repository]:
        os.makedirs(os.path.dirname(os.path.join(bucket, o)), exist_ok=True)
        open(os.path.join(bucket, o), "w").write("x")
    before = objects(bucket)
    repositories = objects(bucket, "icechunk")
    r = run(cloudify, "gc", "--bucket", bucket, "--keep", "2")
    assert r.returncode == 0, r.stderr
    after = objects(bucket)
    gone = set(before) - set(after)
    assert gone == {o for o in before if o.startswith(f"datasets/a/{versions[0]}/")} | set(orphans)
    # The other repositories stay whole.
    assert set(repositories) - set(objects(bucket, "icechunk")) == {repository}
    assert "3 versions" in r.stdout, r.stdout
    server = start_server(bucket)
    for v, status in [(versions[0], 404), (versions[1], 200), (versions[2], 200)]:
        assert server.get(f"/datasets/a@{v}/zarr/.zmetadata").status_code == status
    assert server.get("/datasets/b/zarr/zlib_shuffle/0.0.0").status_code in (200, 404)
    assert server.get("/datasets/b/zarr/.zmetadata").status_code == 200
    # Nothing more to collect.
    r = run(cloudify, "gc", "--bucket", bucket, "--keep", "2")
    assert "0 versions and 0 objects" in r.stdout


def test_gc_keeps_values_a_kept_version_names(cloudify, tmp_path, start_server):
    bucket = str(tmp_path / "bucket")
    pieces = [model_piece(str(tmp_path / f"p{i}.nc"), np.arange(5) + 5 * i) for i in range(3)]
    index(cloudify, bucket, "p", "--concat-dim", "time", *pieces)
    index(cloudify, bucket, "p", "--concat-dim", "time", *pieces[:2])
    values = [o for o in objects(bucket) if "/values/" in o]
    assert len(values) == 2  # the time values of each membership
    r = run(cloudify, "gc", "--bucket", bucket, "--keep", "1")
    assert r.returncode == 0, r.stderr
    kept = [o for o in objects(bucket) if "/values/" in o]
    assert len(kept) == 1
    server = start_server(bucket)
    r = server.get("/datasets/p/zarr/time/0")
    assert r.status_code == 200


def test_a_config_file_indexes_every_dataset_it_lists(cloudify, generated, tmp_path,
                                                      start_server):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        model_piece(str(data / f"run_{i}.nc"), np.arange(4) + 4 * i, seed=i)
    shutil.copy(generated["nc3_classic"], data / "nc3.nc")
    config = tmp_path / "cloudify.toml"
    config.write_text('''
[catalog]
title = "Test archive"
public_url = "https://example.org/cloudify"

[datasets.run]
sources = ["data/run_*.nc"]
concat_dim = "time"
collection = "runs"

[datasets.nc3]
sources = ["data/nc3.nc"]
codec = "zstd"

[datasets.broken]
sources = ["data/none_*.nc"]
''')
    bucket = str(tmp_path / "bucket")
    r = run(cloudify, "index", "--bucket", bucket, "--config", str(config))
    # One line per dataset (stdout is not a terminal), the broken one named, the others indexed.
    assert r.returncode == 1
    assert "cloudify.toml: broken failed" in r.stderr, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("dataset ")]
    assert len(lines) == 3, r.stdout
    assert any(line.startswith("dataset broken: error:") and "no file matches" in line
               for line in lines)
    assert set(registry(bucket)) == {"run", "nc3"}
    assert registry(bucket)["run"]["collection"] == "runs"
    with open(os.path.join(bucket, "stac", "catalog.json")) as f:
        assert json.load(f)["title"] == "Test archive"
    server = start_server(bucket)
    info = server.get("/datasets/run/info").json()
    assert info["variables"]["tas"]["shape"][0] == 12
    assert server.get("/datasets/nc3/info").json()["codec"]["name"] == "zstd"
    # A rerun with nothing changed reads no source and writes nothing.
    config.write_text(config.read_text().replace('[datasets.broken]\nsources = ["data/none_*.nc"]\n', ""))
    stamps = {o: os.stat(os.path.join(bucket, o)).st_mtime_ns for o in objects(bucket, ".")}
    r = run(cloudify, "index", "--bucket", bucket, "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("unchanged") == 2, r.stdout
    assert {o: os.stat(os.path.join(bucket, o)).st_mtime_ns
            for o in objects(bucket, ".")} == stamps
