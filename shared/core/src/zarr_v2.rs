//! Zarr v2 documents for the raw (`/kerchunk`) and re-encoded (`/zarr`) routes and the
//! diagnostics' results, and the kerchunk v1 reference export.
//!
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html>; kerchunk references:
//! <https://fsspec.github.io/kerchunk/spec.html>. Source codecs are declared as the numcodecs
//! configurations clients already decode; the HDF5 pipeline's write order maps onto Zarr v2's
//! `filters` (applied in order) followed by the `compressor` (the last deflate, if any).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::codecs::ServedCodec;
use crate::manifest::{ArrayMeta, ChunkRef, Codec, Manifest};
use crate::unpack;

/// `.zgroup`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Group {
    /// Always 2.
    pub zarr_format: u8,
}

/// `.zgroup`.
pub const ZGROUP: Group = Group { zarr_format: 2 };

/// A numcodecs codec configuration, as `.zarray` declares filters and compressors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CodecV2 {
    /// A source codec (zlib, shuffle, fletcher32), as the manifest records it.
    Source(Codec),
    /// The re-encoding routes' compressor.
    Served(Compressor),
}

/// A compressor of the re-encoding routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "id", rename_all = "lowercase")]
pub enum Compressor {
    /// numcodecs `zlib`.
    Zlib {
        /// 0-9.
        level: u32,
    },
    /// numcodecs `zstd`.
    Zstd {
        /// 1-22.
        level: i32,
    },
}

/// `.zarray`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrayV2 {
    /// Always 2.
    pub zarr_format: u8,
    /// Elements per dimension.
    pub shape: Vec<u64>,
    /// Elements per chunk and dimension.
    pub chunks: Vec<u64>,
    /// NumPy type string.
    pub dtype: String,
    /// The fill value (`"NaN"` for NaN, base64 for byte strings, `null` for none).
    pub fill_value: Value,
    /// Always `C`.
    pub order: &'static str,
    /// Applied in order before the compressor; `null` when none.
    pub filters: Option<Vec<CodecV2>>,
    /// The last codec, if any.
    pub compressor: Option<CodecV2>,
    /// Always `.`.
    pub dimension_separator: &'static str,
}

impl ArrayV2 {
    /// An array of `dtype` in chunks of `chunks`, compressed by `compressor` alone.
    pub fn new(
        shape: Vec<u64>,
        chunks: Vec<u64>,
        dtype: String,
        fill_value: Value,
        compressor: Option<CodecV2>,
    ) -> Self {
        Self {
            zarr_format: 2,
            shape,
            chunks,
            dtype,
            fill_value,
            order: "C",
            filters: None,
            compressor,
            dimension_separator: ".",
        }
    }
}

impl ServedCodec {
    /// The Zarr v2 `compressor`.
    pub fn v2_compressor(&self) -> Option<CodecV2> {
        match self.reencoding() {
            ServedCodec::Auto | ServedCodec::None => None,
            ServedCodec::Zlib { level } => Some(CodecV2::Served(Compressor::Zlib { level })),
            ServedCodec::Zstd { level } => Some(CodecV2::Served(Compressor::Zstd { level })),
        }
    }
}

/// `.zarray` of an array served with its source codecs.
pub fn zarray(a: &ArrayMeta) -> ArrayV2 {
    let (filters, compressor) = match a.codecs.split_last() {
        Some((last, rest)) if last.compresses() => (rest, Some(last)),
        _ => (a.codecs.as_slice(), None),
    };
    let source = |c: &Codec| CodecV2::Source(c.clone());
    ArrayV2 {
        filters: (!filters.is_empty()).then(|| filters.iter().map(source).collect()),
        ..ArrayV2::new(
            a.shape.clone(),
            a.chunks.clone(),
            a.dtype.v2(),
            a.fill_value.clone(),
            compressor.map(source),
        )
    }
}

/// `.zarray` of an array on a re-encoding route: as stored where `codec` passes it through,
/// else re-encoded with `codec`, little-endian, on the served grid.
pub fn served_zarray(a: &ArrayMeta, codec: &ServedCodec) -> ArrayV2 {
    if codec.passes(a) {
        return zarray(a);
    }
    ArrayV2::new(
        a.shape.clone(),
        a.served_chunks.clone(),
        a.dtype.little_endian().v2(),
        a.fill_value.clone(),
        codec.reencoding_for(a).v2_compressor(),
    )
}

/// An array's `.zattrs`: its attributes plus xarray's `_ARRAY_DIMENSIONS`.
pub fn array_attrs(a: &ArrayMeta) -> Map<String, Value> {
    let mut attrs = a.attrs.clone();
    attrs.insert("_ARRAY_DIMENSIONS".into(), json!(a.dims));
    attrs
}

/// Chunks above which a dataset's kerchunk references are exported as Parquet, not JSON.
pub const KERCHUNK_PARQUET_ABOVE: u64 = 100_000;

/// Whether `m`'s kerchunk references are Parquet: more than [`KERCHUNK_PARQUET_ABOVE`] chunks
/// in the arrays the raw route serves.
pub fn kerchunk_as_parquet(m: &Manifest) -> bool {
    kerchunk_arrays(m).map(|(_, a)| a.records).sum::<u64>() > KERCHUNK_PARQUET_ABOVE
}

/// Arrays the raw route serves, in order.
pub fn kerchunk_arrays(m: &Manifest) -> impl Iterator<Item = (&String, &ArrayMeta)> {
    m.arrays
        .iter()
        .filter(|(_, a)| a.kerchunk_excluded.is_none())
}

/// The `.zarray` of one array in a v2 view: the raw route's (source codecs; `None` for an
/// array it cannot pass through) or, with `codec`, the re-encoded route's.
pub fn view_zarray(a: &ArrayMeta, codec: Option<&ServedCodec>) -> Option<ArrayV2> {
    match codec {
        Some(c) => Some(served_zarray(a, c)),
        None if a.kerchunk_excluded.is_none() => Some(zarray(a)),
        None => None,
    }
}

/// The metadata documents of a v2 view, by key, in order (see [`view_zarray`]).
pub fn documents(m: &Manifest, codec: Option<&ServedCodec>) -> Map<String, Value> {
    let mut docs = Map::new();
    docs.insert(".zgroup".into(), json!(ZGROUP));
    docs.insert(".zattrs".into(), Value::Object(m.attrs.clone()));
    for (name, a) in &m.arrays {
        let a = match codec {
            Some(_) => unpack::served(a),
            None => Cow::Borrowed(a),
        };
        let Some(zarray) = view_zarray(&a, codec) else {
            continue;
        };
        docs.insert(format!("{name}/.zarray"), json!(zarray));
        docs.insert(format!("{name}/.zattrs"), Value::Object(array_attrs(&a)));
    }
    docs
}

/// `.zmetadata`: consolidated metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Consolidated {
    /// Always 1.
    pub zarr_consolidated_format: u8,
    /// Every document by key.
    pub metadata: Map<String, Value>,
}

/// `.zmetadata` of a v2 view (see [`documents`]).
pub fn zmetadata(m: &Manifest, codec: Option<&ServedCodec>) -> Consolidated {
    Consolidated {
        zarr_consolidated_format: 1,
        metadata: documents(m, codec),
    }
}

/// The Zarr v2 key (`i.j.k`, or `0` for a scalar) of linear source chunk `linear` of `a`.
pub fn chunk_key(a: &ArrayMeta, linear: u64) -> String {
    let grid = a.grid();
    if grid.is_empty() {
        return "0".into();
    }
    let idx = crate::manifest::grid_index(&grid, linear);
    idx.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A kerchunk version-1 reference set for the raw route: every document as a JSON string and
/// every stored chunk as `[url, offset, length]`. `chunks(name)` lists an array's stored chunks
/// by linear index; `urls` are the sources' absolute URLs.
pub fn kerchunk_refs<'a>(
    m: &'a Manifest,
    urls: &[String],
    mut chunks: impl FnMut(&'a str) -> &'a [(u64, ChunkRef)],
) -> Value {
    let mut refs = Map::new();
    for (key, doc) in documents(m, None) {
        refs.insert(key, Value::String(doc.to_string()));
    }
    for (name, a) in kerchunk_arrays(m) {
        for &(linear, c) in chunks(name) {
            let url = urls.get(c.source as usize).cloned().unwrap_or_default();
            refs.insert(
                format!("{name}/{}", chunk_key(a, linear)),
                json!([url, c.offset, c.length]),
            );
        }
    }
    json!({ "version": 1, "refs": refs })
}

/// A stored kerchunk JSON reference set with each chunk's `[url, offset, length]` replaced by
/// `[{chunks}/{key}]`, the function's own URL of the same bytes; documents and inline chunks
/// are kept. What the bucket holds is parsed as untrusted: anything but JSON is an error.
///
/// # Errors
/// When `stored` is not JSON.
pub fn refs_through(stored: &[u8], chunks: &str) -> serde_json::Result<bytes::Bytes> {
    let mut doc: Value = serde_json::from_slice(stored)?;
    if let Some(Value::Object(refs)) = doc.get_mut("refs") {
        for (k, v) in refs.iter_mut() {
            if let Value::Array(parts) = v
                && matches!(parts.first(), Some(Value::String(_)))
            {
                *v = json!([format!("{chunks}/{k}")]);
            }
        }
    }
    serde_json::to_vec(&doc).map(bytes::Bytes::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dtype::DataType;

    fn array(codecs: Vec<Codec>) -> ArrayMeta {
        ArrayMeta {
            shape: vec![5, 4],
            dims: vec!["y".into(), "x".into()],
            dtype: DataType::parse(">f8").unwrap(),
            chunks: vec![2, 4],
            served_chunks: vec![2, 4],
            fill_value: json!("NaN"),
            attrs: Map::new(),
            codecs,
            table: "t".into(),
            records: 3,
            table_records: 3,
            stored_chunks: 3,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        }
    }

    #[test]
    fn pipeline_maps_to_filters_then_compressor() {
        let z = json!(zarray(&array(vec![
            Codec::Fletcher32,
            Codec::Shuffle { elementsize: 8 },
            Codec::Zlib { level: 4 },
        ])));
        assert_eq!(z["compressor"], json!({"id": "zlib", "level": 4}));
        assert_eq!(
            z["filters"],
            json!([{"id": "fletcher32"}, {"id": "shuffle", "elementsize": 8}])
        );
        let plain = json!(zarray(&array(vec![])));
        assert_eq!(plain["filters"], Value::Null);
        assert_eq!(plain["compressor"], Value::Null);
        assert_eq!(plain["fill_value"], json!("NaN"));
    }

    #[test]
    fn chunk_keys_invert_linear_index() {
        let a = array(vec![]);
        assert_eq!(chunk_key(&a, 0), "0.0");
        assert_eq!(chunk_key(&a, 2), "2.0");
        assert_eq!(a.linear_index(&[2, 0]), Some(2));
    }
}
