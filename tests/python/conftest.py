"""Shared fixtures: the cloudify binary, the test sources, one bucket holding all of them, and
a `cloudify serve` process on a free loopback port."""
import glob
import hashlib
import os
import re
import subprocess
import sys

import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))
import make_files  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _binary():
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


@pytest.fixture(scope="session")
def cloudify():
    return _binary()


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    return make_files.write_all(str(tmp_path_factory.mktemp("sources")))


@pytest.fixture(scope="session")
def datasets(cloudify, generated, tmp_path_factory):
    """{dataset id: source path} for every generated and sample file, indexed into one bucket."""
    bucket = str(tmp_path_factory.mktemp("bucket"))
    all_sources = dict(generated)
    all_sources.update({sample_id(p): p for p in sample_files()})
    for ds_id, path in all_sources.items():
        subprocess.run(
            [cloudify, "index", "--bucket", bucket, "--dataset", ds_id, path],
            check=True, capture_output=True,
        )
    return bucket, all_sources


class Server:
    def __init__(self, cloudify, bucket, *extra):
        self.proc = subprocess.Popen(
            [cloudify, "serve", "--bucket", bucket, "--addr", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, text=True,
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


@pytest.fixture(scope="session")
def server(cloudify, datasets):
    s = Server(cloudify, datasets[0])
    yield s
    s.stop()


def _starter(cloudify):
    """Start servers on other buckets; stop them when the fixture ends."""
    started = []

    def start(bucket, *extra):
        s = Server(cloudify, bucket, *extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def start_server(cloudify):
    yield from _starter(cloudify)


@pytest.fixture(scope="module")
def start_server_module(cloudify):
    yield from _starter(cloudify)
