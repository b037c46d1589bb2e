"""Catalogs and discovery: the static STAC catalog, STAC and intake from the function, OpenAPI
and the xpublish-style views, checked with the real clients (pystac, xpystac, intake)."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import numpy as np
import pystac
import pytest
import requests
import xarray as xr
from pystac.validation import JsonSchemaSTACValidator, set_validator

from compare import datasets_equal
from servers import ROOT, sample_files, sample_id

SCHEMAS = os.path.join(ROOT, "..", "shared", "stac-schemas")
GENERATED = ["mixed", "many_chunks", "curvilinear", "regional_0360"]
CONFIG = {
    "title": "cloudify test catalog",
    "description": "Generated files and CMIP6 samples",
    "collections": {
        "models": {
            "title": "CMIP6 samples",
            "description": "Real CMIP6 output from esmvaltool-sample-data",
            "license": "CC-BY-4.0",
            "keywords": ["CMIP6", "climate"],
            "providers": [{"name": "ESMValTool", "roles": ["producer"]}],
        }
    },
}


def extension_schemas():
    """The extension schemas kept in shared/, by the URL documents name them with."""
    out = {}
    for path in glob.glob(os.path.join(SCHEMAS, "*.json")):
        with open(path) as f:
            schema = json.load(f)
        out[schema["$id"].rstrip("#")] = schema
    return out


@pytest.fixture(scope="module", autouse=True)
def offline_validator():
    v = JsonSchemaSTACValidator()
    v.schema_cache.update(extension_schemas())
    set_validator(v)


def run(cloudify, *args):
    r = subprocess.run([cloudify, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def catalog(cloudify, generated, tmp_path_factory, start_server_module):
    bucket = str(tmp_path_factory.mktemp("catalog"))
    server = start_server_module(bucket)
    config = tmp_path_factory.mktemp("config") / "catalog.json"
    config.write_text(json.dumps(CONFIG))
    sources = {name: generated[name] for name in GENERATED}
    for name in GENERATED:
        run(cloudify, "index", "--bucket", bucket, "--dataset", name, "--public-url", server.url,
            "--catalog-config", str(config), sources[name])
    for path in sample_files()[:3]:
        ds_id = sample_id(path)
        sources[ds_id] = path
        run(cloudify, "index", "--bucket", bucket, "--dataset", ds_id, "--collection", "models", path)
    return server, bucket, sources


def test_static_catalog_validates_offline(catalog):
    server, bucket, sources = catalog
    root = pystac.Catalog.from_file(os.path.join(bucket, "stac", "catalog.json"))
    assert root.validate_all() == len(sources)
    schemas = extension_schemas()
    collections = list(root.get_children())
    assert {c.id for c in collections} == {"datasets", "models"}
    for item in root.get_items(recursive=True):
        d = item.to_dict(include_self_link=False)
        for uri in d["stac_extensions"]:
            jsonschema.validate(d, schemas[uri])
    models = root.get_child("models")
    assert models.license == "CC-BY-4.0" and models.keywords == ["CMIP6", "climate"]
    assert models.providers[0].name == "ESMValTool"


def test_collection_extents_come_from_items(catalog):
    server, bucket, _ = catalog
    root = pystac.Catalog.from_file(os.path.join(bucket, "stac", "catalog.json"))
    for c in root.get_children():
        items = list(c.get_items())
        boxes = [i.bbox for i in items if i.bbox]
        crosses = any(b[0] > b[2] for b in boxes)  # then the whole longitude range
        west = -180.0 if crosses else min(b[0] for b in boxes)
        east = 180.0 if crosses else max(b[2] for b in boxes)
        assert c.extent.spatial.bboxes[0] == [west, min(b[1] for b in boxes),
                                              east, max(b[3] for b in boxes)]
        starts = [i.properties["start_datetime"] for i in items if "start_datetime" in i.properties]
        interval = c.extent.temporal.intervals[0]
        assert interval[0] == pystac.utils.str_to_datetime(min(starts))


def test_walk_over_http_and_open_every_item(catalog):
    server, _, sources = catalog
    root = pystac.Catalog.from_file(server.url + "/stac/catalog.json")
    items = list(root.get_items(recursive=True))
    assert {i.id for i in items} == set(sources)
    for item in items:
        with xr.open_dataset(sources[item.id], engine="netcdf4") as expected, \
                xr.open_dataset(item.assets["zarr"]) as actual:  # through xpystac
            skipped = set(server.get(f"/datasets/{item.id}/info").json()["skipped"])
            datasets_equal(actual, expected, skipped)
        assert item.assets["zarr3"].extra_fields["zarr:zarr_format"] == 3
        assert "references" in item.assets["references"].roles


def expected_bbox(ds):
    lon = next(v for v in ds.variables.values() if v.attrs.get("units") == "degrees_east").values
    lat = next(v for v in ds.variables.values() if v.attrs.get("units") == "degrees_north").values
    spacing = float(np.abs(np.diff(lon)).max()) if lon.ndim == 1 else 0.0
    wrap = lambda x: (x + 180.0) % 360.0 - 180.0  # noqa: E731
    if lon.max() - lon.min() + spacing >= 360 - 1e-6:
        west, east = -180.0, 180.0
    elif lon.max() > 180:
        west, east = wrap(float(lon.min())), wrap(float(lon.max()))
    else:
        west, east = float(lon.min()), float(lon.max())
    return [west, float(lat.min()), east, float(lat.max())]


def iso(t):
    """RFC 3339 of a cftime date: a date with no Gregorian equivalent clamps to the month end."""
    last = [31, 29 if t.year % 4 == 0 and (t.year % 100 or t.year % 400 == 0) else 28, 31, 30,
            31, 30, 31, 31, 30, 31, 30, 31][t.month - 1]
    return (f"{t.year:04d}-{t.month:02d}-{min(t.day, last):02d}T"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z")


@pytest.mark.parametrize("name,has_space", [("mixed", True), ("curvilinear", True),
                                            ("regional_0360", True), ("many_chunks", False)])
def test_bbox_and_datetimes_match_the_source(catalog, name, has_space):
    server, _, sources = catalog
    item = server.get(f"/datasets/{name}/stac").json()
    with xr.open_dataset(sources[name], decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        if has_space:
            assert item["bbox"] == pytest.approx(expected_bbox(ds))
            crossing = item["bbox"][0] > item["bbox"][2]
            assert item["geometry"]["type"] == ("MultiPolygon" if crossing else "Polygon")
        else:
            assert "bbox" not in item and item["geometry"] is None
        times = ds["time"].values
        assert item["properties"]["start_datetime"] == iso(min(times))
        assert item["properties"]["end_datetime"] == iso(max(times))
        calendar = ds["time"].encoding.get("calendar", "standard")
    dims = item["properties"]["cube:dimensions"]
    assert calendar in dims["time"]["description"]
    assert dims["time"]["type"] == "temporal"
    if name == "curvilinear":
        assert item["properties"]["end_datetime"] == "2001-02-28T12:00:00Z"  # 30 Feb, clamped
    if name == "regional_0360":
        assert item["bbox"][0] > item["bbox"][2], "crosses the antimeridian"
        assert dims["plev"]["axis"] == "z" and dims["lat"]["axis"] == "y"
        assert dims["time"]["step"] == "PT6H"
    variables = item["properties"]["cube:variables"]
    with xr.open_dataset(sources[name], decode_cf=False) as ds:
        for v in ds.data_vars:
            if v in variables:
                assert variables[v]["dimensions"] == list(ds[v].dims)


def test_function_item_and_collection_of_all(catalog):
    server, _, sources = catalog
    r = server.get("/datasets/mixed/stac")
    assert r.headers["content-type"] == "application/geo+json"
    item = pystac.Item.from_dict(r.json())
    item.validate()
    assert item.assets["zarr"].href == f"{server.url}/datasets/mixed/zarr"
    assert requests.get(item.assets["references"].href, timeout=30).json()["version"] == 1
    other = requests.get(server.url + "/datasets/mixed/stac", headers={"Host": "example.org:9"},
                         timeout=30).json()
    assert other["assets"]["zarr"]["href"] == "http://example.org:9/datasets/mixed/zarr"
    c = pystac.Collection.from_dict(server.get("/stac-collection-all.json").json())
    c.validate()
    assert len([l for l in c.links if l.rel == "item"]) == len(sources)


def test_intake_catalog_opens_with_intake_and_intake_xarray(catalog):
    import intake

    server, _, sources = catalog
    cat = intake.open_catalog(server.url + "/intake.yaml")
    assert set(cat) == set(sources)
    with xr.open_dataset(sources["mixed"], engine="netcdf4") as expected:
        datasets_equal(cat["mixed"](method="zarr").to_dask(), expected, {"vlen_strings"})
    (param,) = cat["mixed"]._entry._user_parameters
    assert param.name == "method" and param.allowed == ["zarr", "zarr3", "kerchunk"]
    # intake 2 renders catalog templates with parameter defaults only; each method's URL is
    # an xarray-openable store of the same data.
    template = cat["mixed"]._entry._open_args["urlpath"]
    for method in param.allowed:
        url = template.replace("{{ method }}", method)
        with xr.open_dataset(url, engine="zarr", consolidated=True) as ds:
            assert "zlib_shuffle" in ds


def test_openapi_validates_and_every_path_answers_as_documented(catalog):
    from openapi_spec_validator import validate

    server, _, _ = catalog
    spec = server.get("/openapi.json").json()
    validate(spec)
    version = server.get("/datasets/mixed/info").json()["version"]
    examples = {"id": "mixed", "version": version, "var": "zlib_shuffle", "path": "catalog.json"}
    for path, item in spec["paths"].items():
        op = item["get"]
        url = path
        for p in (p for p in op["parameters"] if p["in"] == "path"):
            value = examples.get(p["name"], p.get("example"))
            if p["name"] == "key" and "zarr3" in path:
                value = "zarr.json"
            if p["name"] == "chunk" and "zarr3" in path:
                value = "0/0/0"
            url = url.replace("{" + p["name"] + "}", value)
        r = server.get(url)
        assert str(r.status_code) in op["responses"], (url, r.status_code, r.text[:200])
        documented = op["responses"][str(r.status_code)]["content"]
        assert r.headers["content-type"].split(";")[0] in documented, (url, r.headers["content-type"])


def test_reindex_without_change_keeps_stac_byte_identical(catalog, cloudify, generated, tmp_path):
    server, bucket, sources = catalog
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(bucket, "stac", "**", "*.json"), recursive=True)}
    r = run(cloudify, "index", "--bucket", bucket, "--dataset", "mixed", sources["mixed"])
    assert "STAC catalog: 0 files written" in r.stdout
    after = {p: open(p, "rb").read() for p in glob.glob(os.path.join(bucket, "stac", "**", "*.json"), recursive=True)}
    assert before == after
    # `cloudify stac` rebuilds the catalog from index.json alone: no source is read.
    copy = str(tmp_path / "bucket")
    shutil.copytree(bucket, copy)
    for p in glob.glob(os.path.join(copy, "stac", "**", "*.json"), recursive=True):
        if not p.endswith("stac/config.json"):  # the catalog configuration stays
            os.remove(p)
    hidden = {}
    for name in GENERATED:
        hidden[sources[name]] = sources[name] + ".hidden"
        os.rename(sources[name], hidden[sources[name]])
    try:
        run(cloudify, "stac", "--bucket", copy)
    finally:
        for a, b in hidden.items():
            os.rename(b, a)
    rebuilt = {p.replace(copy, bucket): open(p, "rb").read()
               for p in glob.glob(os.path.join(copy, "stac", "**", "*.json"), recursive=True)}
    assert rebuilt == before
    # Renamed away and back, the sources carry new tags (their ctime): index them again for
    # the tests that read their data after this one.
    for name in GENERATED:
        run(cloudify, "index", "--bucket", bucket, "--dataset", name, sources[name])


def test_xpublish_style_views(catalog):
    server, _, sources = catalog
    with xr.open_dataset(sources["mixed"], engine="netcdf4", decode_cf=False) as ds:
        keys = server.get("/datasets/mixed/keys").json()
        assert set(keys) == set(ds.variables) - {"vlen_strings"}
        d = server.get("/datasets/mixed/dict").json()
        assert set(d) == {"coords", "attrs", "dims", "data_vars"}
        assert d["dims"] == {k: v for k, v in ds.sizes.items() if k != "strlen" or "chars" in keys}
        assert d["data_vars"]["zlib_shuffle"]["shape"] == list(ds["zlib_shuffle"].shape)
        assert d["data_vars"]["zlib_shuffle"]["dtype"] == "float32"
        assert set(d["coords"]) >= {"time", "lat", "lon", "lat2d", "lon2d"}
        info = server.get("/datasets/mixed/info").json()
        assert info["dimensions"]["lat"] == 30
        assert info["variables"]["zlib_shuffle"]["type"] == "float32"
        assert info["variables"]["zlib_shuffle"]["dimensions"] == ["time", "lat", "lon"]
        assert info["global_attributes"]["title"] == ds.attrs["title"]
    html = server.get("/datasets/mixed/", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "zlib_shuffle" in html.text and "xr.open_dataset" in html.text
    assert server.get("/datasets/mixed/").headers["content-type"] == "application/json"


def test_summary_page_shows_a_map_and_links_that_answer(catalog, start_server):
    """A person who opens the page sees the data: a map of the first field, and every link
    (plots, groupbys, the STAC item) answers."""
    _, bucket, _ = catalog
    server = start_server(bucket)
    html = server.get("/datasets/mixed/", headers={"Accept": "text/html"})
    srcs = re.findall(r'<img src="([^"]+)"', html.text)
    hrefs = re.findall(r'<a href="([^"]+)"', html.text)
    assert len(srcs) == 1 and srcs[0].startswith("plot/") and "/map/" in srcs[0], srcs
    assert {"stac", "info"} <= set(hrefs), hrefs
    assert any("/timeseries/" in h for h in hrefs) and any("groupby/" in h for h in hrefs)
    for link in srcs + hrefs:
        r = server.get(f"/datasets/mixed/{link}")
        assert r.status_code == 200, (link, r.text[:300])
        if "plot/" in link:
            assert r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"


def test_catalogued_only_datasets_name_their_stores_and_are_not_served(cloudify, tmp_path,
                                                                       start_server):
    """`serve = false`: a Zarr store, an Icechunk repository and a NetCDF file are catalogued
    with items whose assets are the originals (a store's opening arguments, a repository's
    snapshot), each opening to the source's values; the function lists none of them and
    answers 404 naming the item for their data routes; served again, they are served."""
    from servers import make_stores
    import make_files
    source = make_files.model_piece(str(tmp_path / "src.nc"), np.arange(24.0), chunks=(6, 4, 5))
    snapshots = make_stores(source, str(tmp_path / "stores"))
    config = tmp_path / "cloudify.toml"
    tables = {"v2": "stores/v2.zarr", "virtual": "stores/virtual.icechunk", "file": "src.nc"}
    text = "".join(f'[datasets.{i}]\nsources = ["{s}"]\nserve = false\n' for i, s in tables.items())
    config.write_text(text)
    bucket = str(tmp_path / "bucket")
    run(cloudify, "index", "--bucket", bucket, "--config", str(config))
    registry = json.load(open(os.path.join(bucket, "index.json")))["datasets"]
    assert all(registry[i]["catalog_only"] for i in tables), registry
    server = start_server(bucket, "--index-ttl", "0")
    assert server.get("/datasets").json() == []
    assert "virtual" not in server.get("/intake.yaml").text
    for i in tables:
        for path in (f"/datasets/{i}/zarr/.zmetadata", f"/datasets/{i}/zarr3/zarr.json",
                     f"/datasets/{i}/", f"/datasets/{i}/info"):
            r = server.get(path)
            assert r.status_code == 404, (path, r.status_code)
            assert f"/datasets/{i}/stac" in r.json()["detail"] and "serve = false" in r.json()["detail"]
    root = pystac.Catalog.from_file(os.path.join(bucket, "stac", "catalog.json"))
    assert root.validate_all() == len(tables)
    schemas = extension_schemas()
    items = {i.id: i for i in root.get_items(recursive=True)}
    for item in items.values():
        d = item.to_dict(include_self_link=False)
        for uri in d["stac_extensions"]:
            jsonschema.validate(d, schemas[uri])
        assert not {"zarr", "zarr3", "references"} & set(item.assets), item.assets
        function_item = server.get(f"/datasets/{item.id}/stac").json()
        assert function_item["assets"] == d["assets"]
    with xr.open_dataset(source, engine="netcdf4") as ds:
        expected = ds.load()
    store = items["v2"].assets["source"]
    assert store.href == "file://" + str(tmp_path / "stores" / "v2.zarr")
    assert "data" in store.roles and store.extra_fields["zarr:zarr_format"] == 2
    with xr.open_dataset(store.href, **store.extra_fields["xarray:open_kwargs"]) as actual:
        datasets_equal(actual.load(), expected)
    assert items["file"].assets["source"].href.endswith("/src.nc")
    with xr.open_dataset(items["file"].assets["source"].href.removeprefix("file://"),
                         engine="netcdf4") as actual:
        datasets_equal(actual.load(), expected)
    repo = items["virtual"].assets["icechunk"]
    assert repo.media_type == "application/vnd.zarr+icechunk"
    assert repo.href == "file://" + str(tmp_path / "stores" / "virtual.icechunk") + "/"
    assert repo.extra_fields["version"] == snapshots["virtual"][-1]
    # The repository through icechunk at the item's snapshot, as read_repos.py opens an asset.
    python = os.path.join(ROOT, ".venv-ic", "bin", "python")
    jobs = [{"item": os.path.join(bucket, "stac", "datasets", "virtual", "virtual.json"),
             "asset": "icechunk", "sources": source, "left_out": []}]
    out = subprocess.run([python, os.path.join(ROOT, "tests", "icechunk", "read_repos.py")],
                         input=json.dumps(jobs), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.startswith("ok "), out.stdout + out.stderr
    # Served again: the same sources, now listed and answering.
    config.write_text(text.replace("serve = false\n", ""))
    run(cloudify, "index", "--bucket", bucket, "--config", str(config))
    assert sorted(server.get("/datasets").json()) == sorted(tables)
    with xr.open_dataset(server.url + "/datasets/virtual/zarr3", engine="zarr", zarr_format=3,
                         consolidated=True) as actual:
        datasets_equal(actual.load(), expected)


def test_the_published_catalog_walks_from_a_static_file_server(catalog, cloudify, tmp_path):
    """`cloudify publish` into a folder served by a plain static file server (not the
    function): pystac walks it from its root URL, validates every document (core and extension
    schemas), and every self, root and parent link answers."""
    _, bucket, sources = catalog
    site = tmp_path / "site"
    site.mkdir()
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind",
                               "127.0.0.1", "--directory", str(site)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = "http://127.0.0.1:{}".format(re.search(r"port (\d+)", server.stdout.readline())[1])
        run(cloudify, "publish", "--bucket", bucket, "--to", str(site), "--public-url", url)
        root = pystac.Catalog.from_file(url + "/stac/catalog.json")
        assert root.get_self_href() == url + "/stac/catalog.json"
        assert root.validate_all() == len(sources)
        schemas = extension_schemas()
        checked = set()
        for parent, children, items in root.walk():
            for obj in [parent, *children, *items]:
                for link in obj.links:
                    if link.rel in ("self", "root", "parent"):
                        href = link.get_absolute_href()
                        assert href.startswith(url), (obj.id, link.rel, href)
                        checked.add(href)
            for item in items:
                d = item.to_dict(include_self_link=False)
                for uri in d["stac_extensions"]:
                    jsonschema.validate(d, schemas[uri])
        for href in checked:
            r = requests.get(href, timeout=30)
            assert r.status_code == 200 and r.json()["type"] in ("Catalog", "Collection",
                                                                 "Feature"), href
    finally:
        server.terminate()
        server.wait()
