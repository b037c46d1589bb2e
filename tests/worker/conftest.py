"""The Worker end to end: a bucket indexed by `cloudify index` (sources inside it, named by key),
loaded into wrangler's local R2, served by `wrangler dev` (workerd) and, for comparison, by
`cloudify serve` on the same folder."""
import os
import shutil
import sys

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import make_files  # noqa: E402
from servers import Server, binary, sample_files, sample_id  # noqa: E402
from wrangler import READ_BUDGET, Wrangler, index, load_bucket, write_big  # noqa: E402

# A few CMIP6 samples of different calendars and grids (all 326 run in tests/python).
SAMPLES = 12


def picked_samples():
    files = sample_files()
    step = max(1, len(files) // SAMPLES)
    return files[::step][:SAMPLES]


@pytest.fixture(scope="session")
def cloudify():
    return binary()


@pytest.fixture(scope="session")
def bucket(cloudify, tmp_path_factory):
    """{dataset id: source path} indexed into a bucket folder that holds the sources too, so
    the index names them by key and the Worker reads them from R2."""
    root = str(tmp_path_factory.mktemp("bucket"))
    sources = os.path.join(root, "sources")
    generated = make_files.write_all(sources)
    chosen = dict(generated)
    for p in picked_samples():
        dest = os.path.join(sources, os.path.basename(p))
        shutil.copyfile(p, dest)
        chosen[sample_id(p)] = dest
    for ds_id, path in chosen.items():
        index(cloudify, root, ds_id, path)
    # A multi-file dataset: three pieces of a run, its time values stored in the bucket (their
    # 512-step chunks do not line up), read from R2 like any source.
    pieces = [make_files.model_piece(os.path.join(sources, f"piece{i}.nc"),
                                     np.arange(n) + start, seed=i)
              for i, (n, start) in enumerate([(40, 0), (40, 40), (25, 80)])]
    index(cloudify, root, "pieces", *pieces, "--concat-dim", "time")
    chosen["pieces"] = pieces
    # For the fault tests only: a source they change, and one chunked over the read budget.
    victim = os.path.join(sources, "victim.nc")
    shutil.copyfile(generated["mixed"], victim)
    index(cloudify, root, "victim", victim)
    # For the ETag test: read under R2's own tag for it.
    tagged = os.path.join(sources, "tagged.nc")
    shutil.copyfile(generated["many_chunks"], tagged)
    index(cloudify, root, "tagged", tagged)
    # Served as zstd, which the Worker encodes with ruzstd: other bytes, the same values.
    index(cloudify, root, "zstd", generated["mixed"], "--codec", "zstd:3")
    index(cloudify, root, "big", write_big(os.path.join(sources, "big.nc")), "--chunks", "t=1200")
    # For the HTTP-source test: its source is moved behind a web server.
    remote = os.path.join(root, "web", "remote.nc")
    os.makedirs(os.path.dirname(remote))
    shutil.copyfile(generated["regional_0360"], remote)
    index(cloudify, root, "remote", remote)
    return root, chosen


@pytest.fixture(scope="session")
def state(bucket, tmp_path_factory):
    state = str(tmp_path_factory.mktemp("wrangler"))
    load_bucket(bucket[0], state)
    return state


@pytest.fixture(scope="session")
def worker(state):
    w = Wrangler(state)
    yield w
    w.stop()


@pytest.fixture(scope="session")
def native(cloudify, bucket):
    s = Server(cloudify, bucket[0], "--read-budget", str(READ_BUDGET))
    yield s
    s.stop()
