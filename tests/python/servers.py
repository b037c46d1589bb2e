"""The pieces the end-to-end suites and benchmarks share: the cloudify binary, the sample
files, a bucket folder indexed from them, a `cloudify serve` process on a free loopback port,
and key-by-key comparison of two servers."""
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary():
    path = os.environ.get("CLOUDIFY_BIN", os.path.join(ROOT, "target", "debug", "cloudify"))
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-p", "cloudify"], cwd=ROOT, check=True)
    return path


def sample_files():
    """Every NetCDF4 file of esmvaltool-sample-data (real CMIP6 output)."""
    import esmvaltool_sample_data

    base = os.path.dirname(esmvaltool_sample_data.__file__)
    return sorted(glob.glob(os.path.join(base, "**", "*.nc"), recursive=True))


def sample_id(path):
    """A dataset id for a sample file: its name, made unique by a hash of its path."""
    stem = os.path.basename(path)[:-3]
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:100] + "-" + digest


def index(cloudify, root, ds_id, *args):
    """`cloudify index` of dataset `ds_id` into the bucket folder `root`: its sources and
    options in `args`. Gives what it printed."""
    return subprocess.run([cloudify, "index", "--bucket", root, "--dataset", ds_id, *args],
                          check=True, capture_output=True, text=True).stdout


def index_many(cloudify, root, datasets):
    """`cloudify index --config` of `datasets` ({id: (sources, {option: value})}, the options
    as cloudify.toml names them) into the bucket folder `root`: one run, which indexes eight
    datasets at a time and writes the catalog once (a run per dataset rewrites it each time)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "cloudify.toml")
        with open(config, "w") as f:
            for ds_id, (sources, options) in datasets.items():
                # JSON strings and arrays of them are TOML's too.
                f.write(f"[datasets.{json.dumps(ds_id)}]\nsources = {json.dumps(list(sources))}\n")
                f.writelines(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
        r = subprocess.run([cloudify, "index", "--bucket", root, "--config", config],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cloudify index --config failed: {r.stderr}")
    return r.stdout


def indexed_bucket(cloudify, root, samples, leave_out=()):
    """A bucket folder whose `sources/` hold the generated test files (but `leave_out`) and
    `samples` CMIP6 sample files, each indexed as a dataset by key, so a function reads them
    from the bucket, plus `pieces`: a run in three files along time, its 512-step time chunks
    not lining up. Gives the generated files by name and {dataset id: source path(s)}."""
    import numpy as np

    import make_files

    sources = os.path.join(root, "sources")
    generated = make_files.write_all(sources)
    for name in leave_out:
        os.remove(generated.pop(name))
    chosen = dict(generated)
    files = sample_files()
    for p in files[:: max(1, len(files) // samples)][:samples]:
        dest = os.path.join(sources, os.path.basename(p))
        shutil.copyfile(p, dest)
        chosen[sample_id(p)] = dest
    for ds_id, path in chosen.items():
        index(cloudify, root, ds_id, path)
    pieces = [make_files.model_piece(os.path.join(sources, f"piece{i}.nc"),
                                     np.arange(n) + start, seed=i)
              for i, (n, start) in enumerate([(40, 0), (40, 40), (25, 80)])]
    index(cloudify, root, "pieces", *pieces, "--concat-dim", "time")
    chosen["pieces"] = pieces
    # Stores other tools made from one file, each served as that file: Icechunk native (its
    # first commit) and virtual, Zarr v3 and v2.
    made = make_files.model_piece(os.path.join(sources, "stored.nc"), np.arange(24.0),
                                  chunks=(6, 4, 5))
    make_stores(made, os.path.join(sources, "stores"))
    for ds_id, store, *args in [("icechunk-native", "native.icechunk", "--ref", "first"),
                                ("icechunk-virtual", "virtual.icechunk"),
                                ("zarr-v3", "v3.zarr"), ("zarr-v2", "v2.zarr")]:
        index(cloudify, root, ds_id, os.path.join(sources, "stores", store), *args)
        chosen[ds_id] = made
    return generated, chosen


def make_stores(*args, env=None):
    """tests/icechunk/make_stores.py with `args` (and environment `env`), in the Python 3.12
    venv with icechunk (.venv-ic); gives the snapshots it made."""
    python = os.path.join(ROOT, ".venv-ic", "bin", "python")
    assert os.path.exists(python), "no .venv-ic: scripts/test makes it"
    out = subprocess.run([python, os.path.join(ROOT, "tests", "icechunk", "make_stores.py"),
                          *args], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


# An operator's `cloudify serve`: error bodies name the object at fault (bucket keys, paths,
# URLs), answers name sources by URL, and index.json is read on every request, for tests that
# rewrite a bucket under it.
OPERATOR = ("--error-detail", "internal", "--index-ttl", "0", "--publish-sources")


class Server:
    def __init__(self, cloudify, bucket, *extra, env=None, preexec_fn=None):
        # The request log (one line per request, on stderr) goes to a file of its own.
        # `preexec_fn` runs in the child before `cloudify serve` starts (e.g. to lower limits).
        fd, self.log_path = tempfile.mkstemp(prefix="cloudify-serve-", suffix=".log")
        self._log = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            [cloudify, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
            preexec_fn=preexec_fn,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"http://[0-9.:]+", line)
        assert match, f"no address in {line!r}"
        self.url = match.group(0)

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._log.close()

    def log(self):
        """The request log so far."""
        with open(self.log_path) as f:
            return f.read()


def chunk_keys(shape, chunks, sep, prefix):
    if not shape:
        return [prefix + ("c" if sep == "/" else "0")]
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks)]
    return [prefix + sep.join(map(str, i)) for i in itertools.product(*grid)]


def view_keys(server, ds_id, view):
    """Every key of a dataset's view: its metadata documents and every chunk of every array."""
    base = f"/datasets/{ds_id}/{view}/"
    if view == "zarr3":
        root = server.get(base + "zarr.json").json()
        arrays = root["consolidated_metadata"]["metadata"]
        keys = ["zarr.json"]
        for name, meta in arrays.items():
            keys.append(f"{name}/zarr.json")
            sep = meta["chunk_key_encoding"]["configuration"]["separator"]
            prefix = f"{name}/c{sep}" if meta["shape"] else f"{name}/"
            shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
            keys += chunk_keys(shape, chunks, sep, prefix)
        return [base + k for k in keys]
    meta = server.get(base + ".zmetadata").json()["metadata"]
    keys = [".zmetadata", ".zgroup", ".zattrs"]
    for key, doc in meta.items():
        if key.endswith("/.zarray"):
            name = key[: -len("/.zarray")]
            keys += [key, f"{name}/.zattrs"]
            keys += chunk_keys(doc["shape"], doc["chunks"], doc.get("dimension_separator", "."),
                               f"{name}/")
    return [base + k for k in keys]


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def digest(server, path):
    """The status and body hash of `path`; of a zstd frame, the hash of what it decodes to:
    a Worker encodes zstd with ruzstd, other bytes than libzstd's for the same values."""
    r = server.get(path)
    body = r.content
    if body.startswith(ZSTD_MAGIC):
        import numcodecs

        body = b"zstd:" + bytes(numcodecs.Zstd().decode(body))
    return r.status_code, hashlib.sha256(body).hexdigest()


def every_key(server, ids, views=("kerchunk", "zarr", "zarr3")):
    """Every key of every view of the datasets `ids`, as `server` lists them."""
    return [p for ds_id in ids for view in views for p in view_keys(server, ds_id, view)]


def assert_same_answers(theirs, ours, paths, threads=4):
    """`theirs` answers every path with the status and bytes `ours` gives, and most of them
    are answers (not errors both give)."""
    with ThreadPoolExecutor(threads) as pool:
        a = list(pool.map(lambda p: digest(theirs, p), paths))
        b = list(pool.map(lambda p: digest(ours, p), paths))
    differ = [(p, x, y) for p, x, y in zip(paths, a, b) if x != y]
    assert not differ, f"{len(differ)} of {len(paths)} keys differ, first {differ[:3]}"
    assert sum(status == 200 for status, _ in b) > 0.9 * len(paths)


# The store conformance suite's objects (`cloudify_core::store::Fixture`), for stores it can
# only read: below `{prefix}/`, `small.bin` and `dir/big.bin`.
CONFORMANCE_SMALL = b"cloudify store conformance\n"
CONFORMANCE_BIG = bytes(i % 251 for i in range(70000))


def write_conformance_fixture(root):
    """The suite's objects below `root/conformance/`."""
    os.makedirs(os.path.join(root, "conformance", "dir"), exist_ok=True)
    with open(os.path.join(root, "conformance", "small.bin"), "wb") as f:
        f.write(CONFORMANCE_SMALL)
    with open(os.path.join(root, "conformance", "dir", "big.bin"), "wb") as f:
        f.write(CONFORMANCE_BIG)


# Diagnostics over the shared test bucket's datasets: JSON, Zarr and PNG answers that must be
# byte for byte the same on every runtime (the core computes and draws them all).
DIAGNOSTICS = [
    "/datasets/mixed/groupby/zlib_shuffle/time.month/mean",
    "/datasets/mixed/groupby/fletcher_shuffle_zlib_i2/time.season/std/lat/-30_30",
    "/datasets/mixed/reduce/zlib_shuffle/lat,lon/mean?weights=coslat",
    "/datasets/mixed/reduce/zlib_shuffle/time/last/zarr/zlib_shuffle/0.0",
    "/datasets/pieces/groupby/tas/time.year/max/zarr/.zmetadata",
    "/datasets/pieces/groupby/tas/time.year/max/zarr/tas/0.0.0",
    "/datasets/mixed/plot/zlib_shuffle/map/viridis",
    "/datasets/pieces/plot/tas/timeseries/RdBu_r/time/10_90?width=300&height=200",
]


def logged_request(log_text, path):
    """The JSON request line logged for `path` in a runtime's output (which may prefix lines
    or interleave its own)."""
    import json

    for line in log_text.splitlines():
        if f'"path":"{path}"' in line and "{" in line:
            return json.loads(line[line.index("{"):line.rindex("}") + 1])
    raise AssertionError(f"no request line for {path}")
