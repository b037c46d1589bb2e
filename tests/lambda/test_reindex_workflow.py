"""The reindex workflow's steps (infra/reindex.sh, what infra/github/reindex.yml runs) end to
end: moto's S3 server stands in for the index bucket and the public bucket, a bare git
repository for the GitHub Pages branch. A first run indexes, publishes and commits; a rerun
with nothing changed writes no object and makes no commit; a dataset added to cloudify.toml adds
exactly its catalog entries; the published catalogs open through pystac."""
import json
import os
import subprocess

import numpy as np
import pystac
import pytest

import make_files
from aws import s3_env
from servers import ROOT

SCRIPT = os.path.join(ROOT, "infra", "reindex.sh")
BUCKET, PUBLIC = "cloudify-ci", "cloudify-public"
PUBLIC_URL, PAGES_URL = "https://data.example.org/catalog", "https://example.github.io/data"


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def workflow(cloudify, moto, s3, tmp_path_factory):
    """A run of the script: (returncode, stdout), and where it wrote."""
    here = tmp_path_factory.mktemp("workflow")
    for b in (BUCKET, PUBLIC):
        s3.create_bucket(Bucket=b)
    for name, start in (("a", 0.0), ("b", 100.0)):
        make_files.model_piece(str(here / f"{name}.nc"), np.arange(start, start + 4))
    s3.upload_file(str(here / "a.nc"), BUCKET, "sources/a.nc")
    # GitHub Pages: a gh-pages branch with a page of its own, checked out.
    origin, site = here / "pages.git", here / "site"
    git(here, "init", "-q", "--bare", "-b", "gh-pages", str(origin))
    git(here, "clone", "-q", str(origin), str(site))
    (site / "index.html").write_text("<p>the project's page</p>\n")
    (site / ".nojekyll").write_text("")
    git(site, "checkout", "-q", "-b", "gh-pages")
    git(site, "add", "-A")
    git(site, "commit", "-q", "-m", "pages")
    git(site, "push", "-q", "origin", "gh-pages")
    # The datasets are the files under a prefix, found there.
    config = here / "cloudify.toml"
    config.write_text(f'[[discover]]\nunder = "s3://{BUCKET}/sources/"\nfiles = "{{name}}.nc"\n'
                      'id = "{name}"\n')
    env = s3_env(moto.url, CLOUDIFY=cloudify, CLOUDIFY_BUCKET=f"s3://{BUCKET}/idx",
                 CLOUDIFY_CONFIG=str(config), CLOUDIFY_PUBLISH_TO=f"s3://{PUBLIC}/catalog",
                 CLOUDIFY_PUBLIC_URL=PUBLIC_URL, CLOUDIFY_PAGES_DIR=str(site),
                 CLOUDIFY_PAGES_URL=PAGES_URL)

    def run():
        out = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    return run, site, origin, {name: here / f"{name}.nc" for name in ("a", "b")}


def published(stdout):
    """The keys each publish wrote, and its summary lines."""
    written = [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("wrote ")]
    return written, [line for line in stdout.splitlines() if " deleted, " in line]


def test_runs_publish_what_changed_and_only_that(workflow, s3):
    run, site, origin, files = workflow
    commits = int(git(site, "rev-list", "--count", "HEAD"))
    first = run()
    written, summaries = published(first)
    assert "stac/catalog.json" in written and "stac/datasets/a/a.json" in written, first
    assert len(summaries) == 2, first
    assert "committed and pushed" in first, first
    assert int(git(site, "rev-list", "--count", "HEAD")) == commits + 1
    assert git(origin, "rev-parse", "gh-pages") == git(site, "rev-parse", "HEAD")
    # The page the branch had is kept, beside the catalog.
    assert (site / "index.html").exists() and (site / "stac" / "catalog.json").exists()
    head = s3.head_object(Bucket=PUBLIC, Key="catalog/stac/catalog.json")
    assert head["ContentType"] == "application/json", head
    assert head["CacheControl"] == "public, max-age=60", head

    again = run()
    written, summaries = published(again)
    assert written == [], again
    assert all(" 0 objects written, 0 deleted" in line for line in summaries), again
    assert "unchanged, nothing committed" in again, again
    assert int(git(site, "rev-list", "--count", "HEAD")) == commits + 1

    # A file lands under the prefix: exactly its dataset is added.
    s3.upload_file(str(files["b"]), BUCKET, "sources/b.nc")
    added = run()
    written, _ = published(added)
    # Its item, and the collection that lists it (the root lists collections: unchanged).
    assert sorted(set(written)) == ["stac/datasets/b/b.json", "stac/datasets/collection.json"], \
        added
    assert int(git(site, "rev-list", "--count", "HEAD")) == commits + 2

    # It is deleted: its dataset leaves the catalogs (its objects stay for cloudify gc).
    s3.delete_object(Bucket=BUCKET, Key="sources/b.nc")
    removed = run()
    assert "dataset b: no longer under" in removed, removed
    assert "deleted stac/datasets/b/b.json" in removed, removed
    assert not (site / "stac" / "datasets" / "b").exists()
    listed = s3.list_objects_v2(Bucket=PUBLIC, Prefix="catalog/stac/datasets/b/")
    assert listed["KeyCount"] == 0, listed
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="idx/datasets/b/")["KeyCount"] > 0
    assert int(git(site, "rev-list", "--count", "HEAD")) == commits + 3


def test_published_catalogs_open_through_pystac(workflow, s3, tmp_path):
    run, site, _, files = workflow
    s3.upload_file(str(files["b"]), BUCKET, "sources/b.nc")
    run()
    root = json.loads((site / "stac" / "catalog.json").read_text())
    selfs = [link["href"] for link in root["links"] if link["rel"] == "self"]
    assert selfs == [f"{PAGES_URL}/stac/catalog.json"], root["links"]
    catalog = pystac.Catalog.from_file(str(site / "stac" / "catalog.json"))
    items = {item.id: item for item in catalog.get_items(recursive=True)}
    assert sorted(items) == ["a", "b"]
    for item in items.values():
        # Links stay relative inside the copy; what it does not hold is named by its S3 URL.
        raw = json.loads((site / "stac" / "datasets" / item.id / f"{item.id}.json").read_text())
        assert all("://" not in link["href"] for link in raw["links"]), raw["links"]
        refs = raw["assets"]["references"]["href"]
        assert refs.startswith(f"s3://{BUCKET}/idx/datasets/{item.id}/"), refs
        key = refs.removeprefix(f"s3://{BUCKET}/")
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    # The public bucket's copy is the same catalog, self at its own address.
    local = tmp_path / "public"
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=PUBLIC)["Contents"]]:
        path = local / key
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(PUBLIC, key, str(path))
    path = local / "catalog" / "stac" / "catalog.json"
    copy = pystac.Catalog.from_file(str(path))
    assert sorted(i.id for i in copy.get_items(recursive=True)) == ["a", "b"]
    selfs = [link["href"] for link in json.loads(path.read_text())["links"]
             if link["rel"] == "self"]
    assert selfs == [f"{PUBLIC_URL}/stac/catalog.json"]
