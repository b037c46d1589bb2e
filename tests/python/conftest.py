"""Shared fixtures: the cloudify binary, the test sources, one bucket holding all of them, and
`cloudify serve` processes on free loopback ports."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import make_files  # noqa: E402
from servers import Server, binary, index_many, sample_files, sample_id  # noqa: E402


@pytest.fixture(scope="session")
def cloudify():
    return binary()


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    return make_files.write_all(str(tmp_path_factory.mktemp("sources")))


@pytest.fixture(scope="session")
def datasets(cloudify, generated, tmp_path_factory):
    """{dataset id: source path} for every generated and sample file, indexed into one bucket."""
    bucket = str(tmp_path_factory.mktemp("bucket"))
    all_sources = dict(generated)
    all_sources.update({sample_id(p): p for p in sample_files()})
    index_many(cloudify, bucket, {ds_id: ([path], {}) for ds_id, path in all_sources.items()})
    return bucket, all_sources


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
