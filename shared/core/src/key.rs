//! Parsing request paths into routes and Zarr keys, strictly: nothing a client sends becomes a
//! storage key unless it names something the index holds.

use percent_encoding::percent_decode_str;

use crate::diag::Diagnostic;
use crate::error::{Error, Result};

/// A dataset reference from a URL: `{id}` or `{id}@{version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRef {
    /// Dataset id.
    pub id: String,
    /// Pinned version, if the URL names one.
    pub version: Option<String>,
}

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `GET /`.
    Root,
    /// `GET /datasets`.
    Datasets,
    /// `GET /datasets/{id}/` and `/datasets/{id}/info`.
    Info(DatasetRef),
    /// A Zarr store view of a dataset; `None` for the store root itself.
    Zarr(DatasetRef, View, Option<ZarrKey>),
    /// `GET /datasets/{id}/`: an HTML summary for browsers, the info JSON otherwise.
    Summary(DatasetRef),
    /// `GET /datasets/{id}/keys`: variable names (xpublish).
    Keys(DatasetRef),
    /// `GET /datasets/{id}/dict`: `xarray.Dataset.to_dict(data=False)` (xpublish).
    Dict(DatasetRef),
    /// `GET /datasets/{id}/stac`: the dataset's STAC item.
    Item(DatasetRef),
    /// `GET /datasets/{id}/{version}/refs.json`, or `.../refs.parq/{key}` for a large
    /// dataset: the kerchunk export of a version (the file below the version's folder).
    Refs(DatasetRef, String),
    /// `GET /stac-collection-all.json`: a collection of every dataset.
    CollectionAll,
    /// `GET /stac/{path}`: the static catalog in the bucket.
    StaticStac(String),
    /// `GET /intake.yaml`.
    Intake,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET /datasets/{id}/groupby|reduce|plot/...`: a diagnostic.
    Diagnostic(DatasetRef, Box<Diagnostic>),
    /// `GET /__self-test/conformance`: the store conformance suite, where enabled.
    Conformance,
}

/// The Zarr views of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `/kerchunk`: Zarr v2, the source's chunks and codecs as stored.
    Kerchunk,
    /// `/zarr`: Zarr v2, re-encoded.
    Zarr,
    /// `/zarr3`: Zarr v3, re-encoded, consolidated in the root `zarr.json`.
    Zarr3,
}

impl View {
    fn from_segment(s: &str) -> Option<Self> {
        match s {
            "kerchunk" => Some(View::Kerchunk),
            "zarr" => Some(View::Zarr),
            "zarr3" => Some(View::Zarr3),
            _ => None,
        }
    }
}

/// A Zarr key within a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZarrKey {
    /// `.zgroup`, `.zattrs` or `.zmetadata` (v2), `zarr.json` (v3) at the root.
    Group(GroupDoc),
    /// `{var}/.zarray` or `{var}/.zattrs` (v2), `{var}/zarr.json` (v3).
    Array(String, ArrayDoc),
    /// `{var}/{i}.{j}...` (v2), `{var}/c/{i}/{j}...` (v3): a chunk index.
    Chunk(String, Vec<u64>),
}

/// Root metadata documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupDoc {
    /// `.zgroup`.
    Zgroup,
    /// `.zattrs`.
    Zattrs,
    /// `.zmetadata` (consolidated).
    Zmetadata,
    /// v3 `zarr.json` (with consolidated metadata).
    ZarrJson,
}

/// Per-array metadata documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayDoc {
    /// `.zarray`.
    Zarray,
    /// `.zattrs`.
    Zattrs,
    /// v3 `zarr.json`.
    ZarrJson,
}

/// Longest path the router looks at; longer ones are refused before any parsing.
const MAX_PATH: usize = 4096;

/// Parse a raw (still percent-encoded) request path.
///
/// # Errors
/// [`Error::BadRequest`] for traversal, encoded separators, malformed ids or keys;
/// [`Error::NotFound`] for paths that match no route or keys that name no document.
pub fn parse_path(raw: &str) -> Result<Route> {
    if raw.len() > MAX_PATH {
        return Err(Error::BadRequest(format!(
            "path of {} bytes is longer than {MAX_PATH}",
            raw.len()
        )));
    }
    let lower = raw.to_ascii_lowercase();
    if raw.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return Err(Error::BadRequest(
            "path contains a backslash or a percent-encoded separator".into(),
        ));
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::BadRequest("path is not valid UTF-8 once percent-decoded".into()))?;
    if decoded.chars().any(char::is_control) {
        return Err(Error::BadRequest("path contains control characters".into()));
    }
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(Error::BadRequest("path must start with '/'".into()));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return Err(Error::BadRequest(
            "path contains '.' or '..' segments".into(),
        ));
    }
    match segments.as_slice() {
        [""] => Ok(Route::Root),
        ["datasets"] | ["datasets", ""] => Ok(Route::Datasets),
        ["datasets", id, "info"] => Ok(Route::Info(parse_dataset(id)?)),
        ["datasets", id] | ["datasets", id, ""] => Ok(Route::Summary(parse_dataset(id)?)),
        ["datasets", id, "keys"] => Ok(Route::Keys(parse_dataset(id)?)),
        ["datasets", id, "dict"] => Ok(Route::Dict(parse_dataset(id)?)),
        ["datasets", id, "stac"] => Ok(Route::Item(parse_dataset(id)?)),
        ["datasets", id, version, "refs.json"] if View::from_segment(version).is_none() => {
            Ok(Route::Refs(
                parse_dataset(&format!("{id}@{version}"))?,
                "refs.json".into(),
            ))
        }
        ["datasets", id, version, "refs.parq", rest @ ..]
            if View::from_segment(version).is_none() =>
        {
            let ok = match rest {
                [".zmetadata"] => true,
                [name, file] => {
                    let n = file
                        .strip_prefix("refs.")
                        .and_then(|f| f.strip_suffix(".parq"));
                    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
                    !name.starts_with('.') && !name.contains(['/', '\\']) && n.is_some_and(digits)
                }
                _ => false,
            };
            if !ok {
                return Err(Error::NotFound(format!(
                    "no kerchunk Parquet file {:?}: only .zmetadata and {{variable}}/refs.{{n}}.parq",
                    rest.join("/")
                )));
            }
            Ok(Route::Refs(
                parse_dataset(&format!("{id}@{version}"))?,
                format!("refs.parq/{}", rest.join("/")),
            ))
        }
        ["stac-collection-all.json"] => Ok(Route::CollectionAll),
        ["intake.yaml"] => Ok(Route::Intake),
        ["openapi.json"] => Ok(Route::OpenApi),
        ["__self-test", "conformance"] => Ok(Route::Conformance),
        ["stac", path @ ..] => {
            let ok = !path.is_empty()
                && path.iter().all(|p| is_valid_id(p))
                && path.last().is_some_and(|p| p.ends_with(".json"));
            if !ok {
                return Err(Error::BadRequest(
                    "a static catalog path is segments of [A-Za-z0-9._-] ending in .json".into(),
                ));
            }
            Ok(Route::StaticStac(path.join("/")))
        }
        [
            "datasets",
            id,
            kind @ ("groupby" | "reduce" | "plot"),
            rest @ ..,
        ] => Ok(Route::Diagnostic(
            parse_dataset(id)?,
            Box::new(Diagnostic::parse(kind, rest)?),
        )),
        ["datasets", id, view, key @ ..] if View::from_segment(view).is_some() => {
            let view = View::from_segment(view)
                .ok_or_else(|| Error::NotFound(format!("no route for {decoded}")))?;
            let ds = parse_dataset(id)?;
            let key = match (view, key) {
                (_, [] | [""]) => None,
                (View::Zarr3, k) => Some(parse_v3_key(k)?),
                (_, k) => Some(parse_zarr_key(k)?),
            };
            Ok(Route::Zarr(ds, view, key))
        }
        _ => Err(Error::NotFound(format!("no route for {decoded}"))),
    }
}

/// Parse `{id}` or `{id}@{version}`.
///
/// # Errors
/// [`Error::BadRequest`] when the id or version has characters outside `[A-Za-z0-9._-]`.
pub fn parse_dataset(segment: &str) -> Result<DatasetRef> {
    let (id, version) = match segment.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (segment, None),
    };
    if !is_valid_id(id) {
        return Err(Error::BadRequest(format!(
            "dataset id {id:?} must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    if let Some(v) = version
        && (v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(Error::BadRequest(format!(
            "version {v:?} must be alphanumeric"
        )));
    }
    Ok(DatasetRef {
        id: id.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// Why a variable called `name` could never be requested, if it could not: a key holds it as
/// one path segment, so the indexer leaves such a variable out rather than index it unserved.
pub fn unservable_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("its name is not a path segment")
    } else if name.chars().any(char::is_control) {
        Some("its name holds control characters, which no request path may")
    } else if name.contains('/') {
        Some("its name holds '/', which separates the segments of a key")
    } else if name.starts_with('.') {
        Some("its name starts with '.', as Zarr metadata documents do")
    } else {
        None
    }
}

/// Whether `id` may name a dataset (also used by the indexer, so ids it writes are servable).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn no_empty_segments(segments: &[&str]) -> Result<()> {
    if segments.iter().any(|s| s.is_empty()) {
        return Err(Error::BadRequest(
            "Zarr key has an empty segment (a leading, doubled or trailing '/')".into(),
        ));
    }
    Ok(())
}

fn parse_v3_key(segments: &[&str]) -> Result<ZarrKey> {
    no_empty_segments(segments)?;
    match segments {
        ["zarr.json"] => Ok(ZarrKey::Group(GroupDoc::ZarrJson)),
        [var, "zarr.json"] => Ok(ZarrKey::Array((*var).to_owned(), ArrayDoc::ZarrJson)),
        [var, "c", idx @ ..] => {
            let idx = idx
                .iter()
                .map(|p| {
                    parse_chunk_index(p).and_then(|v| match v.as_slice() {
                        [i] => Ok(*i),
                        _ => Err(Error::BadRequest(format!(
                            "chunk key segment {p:?} is not an integer"
                        ))),
                    })
                })
                .collect::<Result<Vec<u64>>>()?;
            Ok(ZarrKey::Chunk((*var).to_owned(), idx))
        }
        [doc] | [_, doc] if doc.starts_with('.') || doc.ends_with(".json") => Err(Error::NotFound(
            format!("no metadata document {doc:?} in a Zarr v3 store"),
        )),
        _ => Err(Error::BadRequest(format!(
            "{:?} is not a Zarr v3 key (zarr.json, VAR/zarr.json, VAR/c/I/J...)",
            segments.join("/")
        ))),
    }
}

/// Parse the segments of a Zarr v2 key (`.zmetadata`, `VAR/.zarray`, `VAR/0.1.2`).
///
/// # Errors
/// [`Error::BadRequest`] for malformed keys, [`Error::NotFound`] for unknown documents.
pub(crate) fn parse_zarr_key(segments: &[&str]) -> Result<ZarrKey> {
    no_empty_segments(segments)?;
    match segments {
        [".zgroup"] => Ok(ZarrKey::Group(GroupDoc::Zgroup)),
        [".zattrs"] => Ok(ZarrKey::Group(GroupDoc::Zattrs)),
        [".zmetadata"] => Ok(ZarrKey::Group(GroupDoc::Zmetadata)),
        [var, ".zarray"] => Ok(ZarrKey::Array((*var).to_owned(), ArrayDoc::Zarray)),
        [var, ".zattrs"] => Ok(ZarrKey::Array((*var).to_owned(), ArrayDoc::Zattrs)),
        [var, doc] if doc.starts_with('.') || doc.ends_with(".json") => Err(Error::NotFound(
            format!("no metadata document {doc:?} for {var:?} in a Zarr v2 store"),
        )),
        [var, chunk] => Ok(ZarrKey::Chunk((*var).to_owned(), parse_chunk_index(chunk)?)),
        [doc] => Err(Error::NotFound(format!(
            "no document {doc:?} at the store root"
        ))),
        _ => Err(Error::BadRequest(format!(
            "Zarr key {:?} is nested deeper than variable/chunk",
            segments.join("/")
        ))),
    }
}

fn parse_chunk_index(s: &str) -> Result<Vec<u64>> {
    s.split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::BadRequest(format!(
                    "chunk key {s:?} is not dot-separated non-negative integers"
                )));
            }
            p.parse::<u64>()
                .map_err(|_| Error::BadRequest(format!("chunk index {p:?} is out of range")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ds(id: &str) -> DatasetRef {
        DatasetRef {
            id: id.into(),
            version: None,
        }
    }

    #[test]
    fn routes() {
        assert_eq!(parse_path("/").unwrap(), Route::Root);
        assert_eq!(parse_path("/datasets").unwrap(), Route::Datasets);
        assert_eq!(
            parse_path("/datasets/a/info").unwrap(),
            Route::Info(ds("a"))
        );
        assert_eq!(
            parse_path("/datasets/a/kerchunk/tas/0.1.2").unwrap(),
            Route::Zarr(
                ds("a"),
                View::Kerchunk,
                Some(ZarrKey::Chunk("tas".into(), vec![0, 1, 2]))
            )
        );
        assert_eq!(
            parse_path("/datasets/a/zarr/my%20var/.zarray").unwrap(),
            Route::Zarr(
                ds("a"),
                View::Zarr,
                Some(ZarrKey::Array("my var".into(), ArrayDoc::Zarray))
            )
        );
        assert_eq!(
            parse_path("/datasets/a@abc123/kerchunk/.zmetadata").unwrap(),
            Route::Zarr(
                DatasetRef {
                    id: "a".into(),
                    version: Some("abc123".into())
                },
                View::Kerchunk,
                Some(ZarrKey::Group(GroupDoc::Zmetadata))
            )
        );
        assert_eq!(
            parse_path("/datasets/a/zarr3/tas/c/0/1/2").unwrap(),
            Route::Zarr(
                ds("a"),
                View::Zarr3,
                Some(ZarrKey::Chunk("tas".into(), vec![0, 1, 2]))
            )
        );
        assert_eq!(
            parse_path("/datasets/a/zarr3/scalar/c").unwrap(),
            Route::Zarr(
                ds("a"),
                View::Zarr3,
                Some(ZarrKey::Chunk("scalar".into(), vec![]))
            )
        );
        assert_eq!(
            parse_path("/datasets/a/zarr3/zarr.json").unwrap(),
            Route::Zarr(
                ds("a"),
                View::Zarr3,
                Some(ZarrKey::Group(GroupDoc::ZarrJson))
            )
        );
    }

    #[test]
    fn hostile_paths_are_bad_requests() {
        for p in [
            "/datasets/a/kerchunk/../../etc/passwd",
            "/datasets/a/kerchunk/%2e%2e/x/0",
            "/datasets/a/kerchunk/tas%2F0.0",
            "/datasets/a/kerchunk/tas%5c0.0",
            "/datasets/a/kerchunk/tas\\0.0",
            "/datasets/a/kerchunk//etc/passwd",
            "/datasets/..%2fx/info",
            "/datasets/.hidden/info",
            "/datasets/a/kerchunk/tas/0.x",
            "/datasets/a/kerchunk/tas/-1.0",
            "/datasets/a/kerchunk/tas/99999999999999999999999",
            "/datasets/a/kerchunk/a/b/c",
            "/datasets/a/zarr3/tas/c/0.1",
            "/datasets/a/zarr3/tas/0.1",
            "/datasets/a/zarr3/tas/c/x",
            "/datasets/a/kerchunk/tas/0%00",
            "/datasets/a/kerchunk/%ff/0",
            "datasets",
        ] {
            assert!(
                matches!(parse_path(p), Err(Error::BadRequest(_))),
                "{p} -> {:?}",
                parse_path(p)
            );
        }
    }

    #[test]
    fn unknown_documents_are_not_found() {
        for p in [
            "/nowhere",
            "/datasets/a/kerchunk/zarr.json",
            "/datasets/a/kerchunk/tas/zarr.json",
            "/datasets/a/kerchunk/tas/.zfoo",
            "/datasets/a/zarr3/.zmetadata",
            "/datasets/a/zarr3/tas/.zarray",
        ] {
            assert!(matches!(parse_path(p), Err(Error::NotFound(_))), "{p}");
        }
    }
}
