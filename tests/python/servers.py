"""The pieces the end-to-end suites and benchmarks share: the cloudify binary, the sample
files, and a `cloudify serve` process on a free loopback port."""
import glob
import hashlib
import itertools
import os
import re
import subprocess

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


class Server:
    def __init__(self, cloudify, bucket, *extra, env=None):
        self.proc = subprocess.Popen(
            [cloudify, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, text=True, env=env,
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


def digest(server, path):
    r = server.get(path)
    return r.status_code, hashlib.sha256(r.content).hexdigest()
