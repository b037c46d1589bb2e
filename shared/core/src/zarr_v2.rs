//! Zarr v2 documents for the raw (`/kerchunk`) and re-encoded (`/zarr`) routes, and the
//! kerchunk v1 reference export.
//!
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html>; kerchunk references:
//! <https://fsspec.github.io/kerchunk/spec.html>. Source codecs are declared as the numcodecs
//! configurations clients already decode; the HDF5 pipeline's write order maps onto Zarr v2's
//! `filters` (applied in order) followed by the `compressor` (the last deflate, if any).

use serde_json::{Map, Value, json};

use crate::codecs::ServedCodec;
use crate::manifest::{ArrayMeta, ChunkRef, Codec, Manifest};

/// `.zgroup`.
pub fn zgroup() -> Value {
    json!({ "zarr_format": 2 })
}

/// `.zarray` of an array served with its source codecs.
pub fn zarray(a: &ArrayMeta) -> Value {
    let (filters, compressor) = match a.codecs.split_last() {
        Some((last @ Codec::Zlib { .. }, rest)) => (rest, Some(last)),
        _ => (a.codecs.as_slice(), None),
    };
    json!({
        "zarr_format": 2,
        "shape": a.shape,
        "chunks": a.chunks,
        "dtype": a.dtype,
        "fill_value": a.fill_value,
        "order": "C",
        "filters": if filters.is_empty() { Value::Null } else { json!(filters) },
        "compressor": compressor,
        "dimension_separator": ".",
    })
}

/// The little-endian form of a NumPy type string (what the re-encoding routes serve).
pub fn little_endian(dtype: &str) -> String {
    match dtype.strip_prefix('>') {
        Some(rest) => format!("<{rest}"),
        None => dtype.to_owned(),
    }
}

/// `.zarray` of an array re-encoded with `codec`: little-endian, on the served grid.
pub fn served_zarray(a: &ArrayMeta, codec: &ServedCodec) -> Value {
    json!({
        "zarr_format": 2,
        "shape": a.shape,
        "chunks": a.served_chunks,
        "dtype": little_endian(&a.dtype),
        "fill_value": a.fill_value,
        "order": "C",
        "filters": null,
        "compressor": codec.v2_compressor(),
        "dimension_separator": ".",
    })
}

/// An array's `.zattrs`: its attributes plus xarray's `_ARRAY_DIMENSIONS`.
pub fn array_attrs(a: &ArrayMeta) -> Value {
    let mut attrs = a.attrs.clone();
    attrs.insert("_ARRAY_DIMENSIONS".into(), json!(a.dims));
    Value::Object(attrs)
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

/// The metadata documents of a v2 view, by key, in order: the raw route's (source codecs,
/// arrays it cannot pass through left out) or, with `codec`, the re-encoded route's.
pub fn documents(m: &Manifest, codec: Option<&ServedCodec>) -> Map<String, Value> {
    let mut docs = Map::new();
    docs.insert(".zgroup".into(), zgroup());
    docs.insert(".zattrs".into(), Value::Object(m.attrs.clone()));
    for (name, a) in &m.arrays {
        let zarray = match codec {
            Some(c) => served_zarray(a, c),
            None if a.kerchunk_excluded.is_none() => zarray(a),
            None => continue,
        };
        docs.insert(format!("{name}/.zarray"), zarray);
        docs.insert(format!("{name}/.zattrs"), array_attrs(a));
    }
    docs
}

/// `.zmetadata`: the consolidated metadata of a v2 view (see [`documents`]).
pub fn zmetadata(m: &Manifest, codec: Option<&ServedCodec>) -> Value {
    json!({ "zarr_consolidated_format": 1, "metadata": documents(m, codec) })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn array(codecs: Vec<Codec>) -> ArrayMeta {
        ArrayMeta {
            shape: vec![5, 4],
            dims: vec!["y".into(), "x".into()],
            dtype: ">f8".into(),
            chunks: vec![2, 4],
            served_chunks: vec![2, 4],
            fill_value: json!("NaN"),
            attrs: Map::new(),
            codecs,
            table: "t".into(),
            records: 3,
            stored_chunks: 3,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        }
    }

    #[test]
    fn pipeline_maps_to_filters_then_compressor() {
        let z = zarray(&array(vec![
            Codec::Fletcher32,
            Codec::Shuffle { elementsize: 8 },
            Codec::Zlib { level: 4 },
        ]));
        assert_eq!(z["compressor"], json!({"id": "zlib", "level": 4}));
        assert_eq!(
            z["filters"],
            json!([{"id": "fletcher32"}, {"id": "shuffle", "elementsize": 8}])
        );
        let plain = zarray(&array(vec![]));
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
