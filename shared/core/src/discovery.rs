//! Documents for finding and describing data: xpublish-style views (`keys`, `dict`, `info`),
//! an HTML summary, the intake catalog and the OpenAPI description of the router.

use serde_json::{Map, Value, json};

use crate::diag::colormap::Colormap;
use crate::manifest::{ArrayMeta, Manifest};

/// Dimension name → length, in order of appearance.
pub fn dims(m: &Manifest) -> Map<String, Value> {
    let mut out = Map::new();
    for a in m.arrays.values() {
        for (d, n) in a.dims.iter().zip(&a.shape) {
            out.entry(d.clone()).or_insert(json!(n));
        }
    }
    out
}

/// `/keys`: every variable's name.
pub fn keys(m: &Manifest) -> Value {
    json!(m.arrays.keys().collect::<Vec<_>>())
}

fn variable(a: &ArrayMeta) -> Value {
    json!({ "dims": a.dims, "attrs": a.attrs, "dtype": a.dtype.numpy_name(), "shape": a.shape })
}

/// `/dict`: the shape of `xarray.Dataset.to_dict(data=False)` (undecoded attributes).
pub fn dict(m: &Manifest) -> Value {
    let coords = m.coordinate_names();
    let (mut c, mut d) = (Map::new(), Map::new());
    for (n, a) in &m.arrays {
        let slot = if coords.contains(&n.as_str()) {
            &mut c
        } else {
            &mut d
        };
        slot.insert(n.clone(), variable(a));
    }
    json!({ "coords": c, "attrs": m.attrs, "dims": dims(m), "data_vars": d })
}

/// `s` safe inside HTML text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `/datasets/{id}/` for a browser.
pub fn html(m: &Manifest, version: &str, base: &str) -> String {
    let id = escape(&m.id);
    let title = m
        .attrs
        .get("title")
        .and_then(Value::as_str)
        .map(escape)
        .unwrap_or_else(|| id.clone());
    let mut rows = String::new();
    for (n, a) in &m.arrays {
        let text = a
            .attrs
            .get("long_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let units = a.attrs.get("units").and_then(Value::as_str).unwrap_or("");
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>({})</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(n),
            escape(&a.dims.join(", ")),
            escape(&a.dtype.numpy_name()),
            escape(text),
            escape(units)
        ));
    }
    let url = format!("{}/datasets/{id}/zarr", escape(base));
    let first = first_field(m).map_or_else(String::new, |(name, timed)| {
        let v = escape(name);
        let mut links = format!(
            "<a href=\"plot/{v}/map/viridis\">map</a> · \
             <a href=\"reduce/{v}/{}/mean\">mean over the map</a>",
            escape(&m.arrays[name].dims[1..].join(","))
        );
        if timed {
            links.push_str(&format!(
                " · <a href=\"plot/{v}/timeseries/viridis\">area-mean time series</a> · \
                 <a href=\"groupby/{v}/time.month/mean\">monthly climatology</a> · \
                 <a href=\"groupby/{v}/time.season/mean\">seasonal means</a>"
            ));
        }
        format!(
            "<h2><code>{v}</code></h2>\n<img src=\"plot/{v}/map/viridis?width=720\" \
             alt=\"map of {v}\" width=\"720\">\n<p>{links}</p>\n"
        )
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style></head>\n\
         <body><h1>{title}</h1><p>Dataset <code>{id}</code>, version <code>{}</code>.</p>\n\
         <pre>import xarray as xr\nds = xr.open_dataset(\"{url}\", engine=\"zarr\")</pre>\n\
         {first}<table><tr><th>variable</th><th>dimensions</th><th>type</th><th>description</th><th>units</th></tr>\n{rows}</table>\n\
         <p><a href=\"info\">info</a> · <a href=\"stac\">STAC item</a> · <a href=\"zarr/.zmetadata\">Zarr v2</a> · \
         <a href=\"zarr3/zarr.json\">Zarr v3</a> · <a href=\"kerchunk/.zmetadata\">source chunks</a></p></body></html>\n",
        escape(version)
    )
}

/// The variable the summary page maps: the first numeric data variable of two or more
/// dimensions (the map is of its last two; not a coordinate, nor a coordinate's bounds), and
/// whether its first dimension is a CF time.
fn first_field(m: &Manifest) -> Option<(&str, bool)> {
    let mut auxiliary = m.coordinate_names();
    auxiliary
        .extend((m.arrays.values()).filter_map(|a| a.attrs.get("bounds").and_then(Value::as_str)));
    let (name, a) = m.arrays.iter().find(|(n, a)| {
        a.dims.len() >= 2 && a.dtype.is_numeric() && !auxiliary.contains(&n.as_str())
    })?;
    let timed = (m.arrays.get(&a.dims[0]))
        .and_then(|t| t.attrs.get("units")?.as_str())
        .is_some_and(|u| crate::cftime::Units::parse(u).is_some());
    Some((name, timed))
}

/// A YAML string scalar (JSON's quoting is valid YAML).
fn yaml_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `/intake.yaml`: one zarr source per dataset, with a `method` parameter choosing the route.
pub fn intake(ids: &[(String, Option<String>)], base: &str) -> String {
    let mut out =
        String::from("metadata:\n  version: 1\n  description: \"cloudify datasets\"\nsources:\n");
    for (id, title) in ids {
        let description = title.clone().unwrap_or_else(|| format!("dataset {id}"));
        out.push_str(&format!(
            "  {}:\n    description: {}\n    driver: zarr\n    parameters:\n      method:\n        \
             description: \"route: zarr (Zarr v2), zarr3 (Zarr v3) or kerchunk (source chunks)\"\n        \
             type: str\n        default: zarr\n        allowed: [zarr, zarr3, kerchunk]\n    args:\n      \
             urlpath: {}\n      consolidated: true\n",
            yaml_str(id),
            yaml_str(&description),
            yaml_str(&format!("{base}/datasets/{id}/{{{{ method }}}}")),
        ));
    }
    out
}

/// `/openapi.json`: OpenAPI 3.1 of every route.
pub fn openapi() -> Value {
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let errors = |codes: &[&str]| -> Map<String, Value> {
        codes
            .iter()
            .map(|c| ((*c).to_owned(), error.clone()))
            .collect()
    };
    let id = json!({ "name": "id", "in": "path", "required": true, "description": "dataset id, or id@version", "schema": { "type": "string" }, "example": "sample" });
    let var = json!({ "name": "var", "in": "path", "required": true, "schema": { "type": "string" }, "example": "tas" });
    let json_ok = |what: &str| json!({ "description": what, "content": { "application/json": { "schema": { "type": ["object", "array"] } } } });
    let op = |summary: &str, params: Vec<Value>, ok: Value, codes: &[&str]| {
        let mut responses = errors(codes);
        responses.insert("200".into(), ok);
        json!({ "get": { "summary": summary, "parameters": params, "responses": responses } })
    };
    let chunk_ok = json!({ "description": "chunk bytes", "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
    let zarr_key = |example: &str| json!({ "name": "key", "in": "path", "required": true, "description": "a Zarr key", "schema": { "type": "string" }, "example": example });
    let dataset_errors: &[&str] = &["400", "404", "502"];
    let chunk_errors: &[&str] = &["400", "404", "409", "413", "502"];
    let mut paths = Map::new();
    paths.insert(
        "/".into(),
        op(
            "service info and links",
            vec![],
            json_ok("service info"),
            &[],
        ),
    );
    paths.insert(
        "/openapi.json".into(),
        op("this document", vec![], json_ok("OpenAPI 3.1"), &[]),
    );
    paths.insert(
        "/datasets".into(),
        op("dataset ids", vec![], json_ok("ids"), &["502"]),
    );
    paths.insert(
        "/datasets/{id}/info".into(),
        op(
            "variables, version, and what each route leaves out",
            vec![id.clone()],
            json_ok("info"),
            dataset_errors,
        ),
    );
    paths.insert(
        "/datasets/{id}/keys".into(),
        op(
            "variable names (xpublish)",
            vec![id.clone()],
            json_ok("names"),
            dataset_errors,
        ),
    );
    paths.insert(
        "/datasets/{id}/dict".into(),
        op(
            "xarray.Dataset.to_dict(data=False) (xpublish)",
            vec![id.clone()],
            json_ok("dict"),
            dataset_errors,
        ),
    );
    paths.insert("/datasets/{id}/".into(), op("summary: HTML for browsers, info JSON otherwise", vec![id.clone()],
        json!({ "description": "summary", "content": { "text/html": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": "object" } } } }), dataset_errors));
    paths.insert("/datasets/{id}/stac".into(), op("the dataset's STAC item", vec![id.clone()],
        json!({ "description": "STAC item", "content": { "application/geo+json": { "schema": { "type": "object" } } } }), dataset_errors));
    for (view, key_example, what) in [
        (
            "kerchunk",
            ".zmetadata",
            "Zarr v2 with the source's chunks and codecs",
        ),
        ("zarr", ".zmetadata", "Zarr v2, re-encoded"),
        ("zarr3", "zarr.json", "Zarr v3, re-encoded, consolidated"),
    ] {
        paths.insert(
            format!("/datasets/{{id}}/{view}/{{key}}"),
            op(
                &format!("{what}: metadata documents"),
                vec![id.clone(), zarr_key(key_example)],
                json_ok("Zarr metadata"),
                dataset_errors,
            ),
        );
    }
    paths.insert("/datasets/{id}/kerchunk/{var}/{chunk}".into(), op("a source chunk as stored", vec![id.clone(), var.clone(),
        json!({ "name": "chunk", "in": "path", "required": true, "description": "dot-separated chunk index", "schema": { "type": "string" }, "example": "0.0.0" })], chunk_ok.clone(), chunk_errors));
    paths.insert("/datasets/{id}/zarr/{var}/{chunk}".into(), op("a re-encoded chunk (Zarr v2)", vec![id.clone(), var.clone(),
        json!({ "name": "chunk", "in": "path", "required": true, "description": "dot-separated chunk index", "schema": { "type": "string" }, "example": "0.0.0" })], chunk_ok.clone(), chunk_errors));
    paths.insert("/datasets/{id}/zarr3/{var}/c/{chunk}".into(), op("a re-encoded chunk (Zarr v3)", vec![id.clone(), var.clone(),
        json!({ "name": "chunk", "in": "path", "required": true, "description": "slash-separated chunk index", "schema": { "type": "string" }, "example": "0/0/0" })], chunk_ok, chunk_errors));
    paths.insert("/datasets/{id}/{version}/refs.json".into(), op("kerchunk v1 references of a version", vec![
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "example": "sample" }),
        json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string" }, "example": "0123456789abcdef0123" })],
        json_ok("kerchunk references"), dataset_errors));
    let version = json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string" }, "example": "0123456789abcdef0123" });
    paths.insert(
        "/datasets/{id}/{version}/refs.parq/.zmetadata".into(),
        op(
            "kerchunk Parquet references of a large version: the metadata",
            vec![id.clone(), version.clone()],
            json_ok("metadata documents and references per file"),
            dataset_errors,
        ),
    );
    let parquet_ok = json!({ "description": "references of one record", "content": { "application/vnd.apache.parquet": { "schema": { "type": "string", "format": "binary" } } } });
    paths.insert("/datasets/{id}/{version}/refs.parq/{var}/refs.{record}.parq".into(), op("kerchunk Parquet references of a large version: one file", vec![id.clone(), version, var.clone(),
        json!({ "name": "record", "in": "path", "required": true, "description": "file number (chunks record*record_size onwards)", "schema": { "type": "string", "pattern": "^[0-9]+$" }, "example": "0" })],
        parquet_ok, dataset_errors));
    diagnostics(&mut paths, &id, &var, &op, &json_ok, &zarr_key);
    paths.insert(
        "/stac-collection-all.json".into(),
        op(
            "a STAC collection of every dataset",
            vec![],
            json_ok("STAC collection"),
            &["502"],
        ),
    );
    paths.insert("/stac/{path}".into(), op("the static STAC catalog", vec![
        json!({ "name": "path", "in": "path", "required": true, "schema": { "type": "string" }, "example": "catalog.json" })],
        json_ok("STAC catalog, collection or item"), &["400", "404", "502"]));
    paths.insert("/intake.yaml".into(), op("an intake catalog of every dataset", vec![],
        json!({ "description": "intake catalog", "content": { "text/yaml": { "schema": { "type": "string" } } } }), &["502"]));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cloudify",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "NetCDF/HDF5 in object storage served as Zarr. GET and HEAD everywhere; \
                            unpinned answers carry an ETag and answer If-None-Match with 304.",
        },
        "paths": paths,
        "components": { "schemas": { "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": { "error": { "type": "string" }, "detail": { "type": "string" } },
        } } },
    })
}

/// Builds one path item: summary, parameters, the 200 answer, error codes.
type Operation<'a> = &'a dyn Fn(&str, Vec<Value>, Value, &[&str]) -> Value;

/// The diagnostic routes of [`openapi`]. A selection (`/{coord}/{low}_{high}` pairs) may follow
/// each route; OpenAPI paths cannot say so, their descriptions do.
fn diagnostics(
    paths: &mut Map<String, Value>,
    id: &Value,
    var: &Value,
    op: Operation<'_>,
    json_ok: &dyn Fn(&str) -> Value,
    zarr_key: &dyn Fn(&str) -> Value,
) {
    let errors: &[&str] = &["400", "404", "409", "413", "502", "504"];
    let selection = "Append a selection as path pairs /{coord}/{low}_{high} (low <= v < high): \
                     time by index (time/0_12) or ISO dates (time/2000-01-01_2001-01-01), other \
                     coordinates by value (lat/-30_30).";
    let action = json!({ "name": "action", "in": "path", "required": true, "schema": { "type": "string", "enum": ["mean", "min", "max", "sum", "count", "std", "var", "first", "last"] }, "example": "mean" });
    let coord = json!({ "name": "coord", "in": "path", "required": true, "description": "time.year, time.month, time.season, time.dayofyear, time.hour or a 1-D coordinate", "schema": { "type": "string" }, "example": "time.month" });
    let dims = json!({ "name": "dims", "in": "path", "required": true, "description": "comma-separated dimensions to reduce", "schema": { "type": "string" }, "example": "lat,lon" });
    let weights = json!({ "name": "weights", "in": "query", "required": false, "schema": { "type": "string", "enum": ["none", "coslat"] } });
    let result = json!({ "description": "the result, laid out as xarray's DataArray.to_dict()", "content": { "application/json": { "schema": { "type": "object" } }, "text/html": { "schema": { "type": "string" } } } });
    let groupby = vec![id.clone(), var.clone(), coord, action.clone()];
    let reduce = vec![id.clone(), var.clone(), dims, action, weights];
    let base = "/datasets/{id}";
    for (route, params, what) in [
        ("groupby/{var}/{coord}/{action}", groupby, "a groupby"),
        ("reduce/{var}/{dims}/{action}", reduce, "a reduction"),
    ] {
        paths.insert(
            format!("{base}/{route}"),
            op(
                &format!("{what}, computed on demand. {selection}"),
                params.clone(),
                result.clone(),
                errors,
            ),
        );
        let mut with_key = params;
        with_key.push(zarr_key(".zmetadata"));
        paths.insert(
            format!("{base}/{route}/zarr/{{key}}"),
            op(
                &format!("{what} as a consolidated Zarr v2 store (one chunk per array)"),
                with_key,
                json_ok("Zarr metadata"),
                errors,
            ),
        );
    }
    let kind = json!({ "name": "kind", "in": "path", "required": true, "schema": { "type": "string", "enum": ["map", "timeseries"] }, "example": "map" });
    let mut maps: Vec<String> = Colormap::names().iter().map(|n| (*n).to_owned()).collect();
    maps.extend(Colormap::names().iter().map(|n| format!("{n}_r")));
    let cmap = json!({ "name": "cmap", "in": "path", "required": true, "schema": { "type": "string", "enum": maps }, "example": "viridis" });
    let number = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "number" } });
    let pixels = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "integer", "minimum": 64, "maximum": 2000 } });
    paths.insert(
        format!("{base}/plot/{{var}}/{{kind}}/{{cmap}}"),
        op(
            &format!("a PNG: a map (last time step unless selected) or the area-mean time series. {selection}"),
            vec![id.clone(), var.clone(), kind, cmap, number("vmin"), number("vmax"), pixels("width"), pixels("height")],
            json!({ "description": "PNG image", "content": { "image/png": { "schema": { "type": "string", "format": "binary" } } } }),
            errors,
        ),
    );
}
