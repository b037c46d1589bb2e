"""The Worker end to end: a bucket indexed by `cloudify index` (sources inside it, named by key),
loaded into wrangler's local R2, served by `wrangler dev` (workerd) and, for comparison, by
`cloudify serve` on the same folder."""
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from servers import Server, binary, index, indexed_bucket  # noqa: E402
from wrangler import READ_BUDGET, Wrangler, load_bucket, write_big  # noqa: E402

# A few CMIP6 samples of different calendars and grids (all 326 run in tests/python).
SAMPLES = 12


@pytest.fixture(scope="session")
def cloudify():
    return binary()


@pytest.fixture(scope="session")
def bucket(cloudify, tmp_path_factory):
    """{dataset id: source path} indexed into a bucket folder that holds the sources too, so
    the index names them by key and the Worker reads them from R2."""
    root = str(tmp_path_factory.mktemp("bucket"))
    sources = os.path.join(root, "sources")
    generated, chosen = indexed_bucket(cloudify, root, SAMPLES)
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


# The fault tests read which object failed in error bodies (an operator's setting), and
# republish datasets under the running Worker, which must see index.json change at once.
OPERATOR = ("ERROR_DETAIL:internal", "INDEX_TTL_SECONDS:0")


@pytest.fixture(scope="session")
def worker(state):
    w = Wrangler(state, extra_vars=(f"READ_BUDGET_BYTES:{READ_BUDGET}", *OPERATOR))
    yield w
    w.stop()


@pytest.fixture(scope="session")
def native(cloudify, bucket):
    s = Server(cloudify, bucket[0], "--read-budget", str(READ_BUDGET), "--error-detail",
               "internal", "--index-ttl", "0")
    yield s
    s.stop()
