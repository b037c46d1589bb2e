//! Zarr v3 documents for the re-encoded `/zarr3` route: one root `zarr.json` holding every
//! array's metadata as consolidated metadata, as zarr-python 3 opens with `consolidated=True`.
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v3/core/index.html>.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::codecs::ServedCodec;
use crate::manifest::{ArrayMeta, Manifest, fill_as_f64, item_size};

/// The v3 `data_type` of a NumPy type string, `None` where v3 has none.
pub fn data_type(dtype: &str) -> Option<Value> {
    let kind = dtype.as_bytes().get(1)?;
    let size = item_size(dtype)?;
    let name = match (kind, size) {
        (b'f', 2) => "float16",
        (b'f', 4) => "float32",
        (b'f', 8) => "float64",
        (b'i', 1) => "int8",
        (b'i', 2) => "int16",
        (b'i', 4) => "int32",
        (b'i', 8) => "int64",
        (b'u', 1) => "uint8",
        (b'u', 2) => "uint16",
        (b'u', 4) => "uint32",
        (b'u', 8) => "uint64",
        // zarr-python's name for NumPy's fixed-width bytes (`S`).
        (b'S', n) => {
            return Some(json!({
                "name": "null_terminated_bytes",
                "configuration": { "length_bytes": n }
            }));
        }
        _ => return None,
    };
    Some(json!(name))
}

/// The array's `fill_value` in v3, which requires one: the manifest's, else zero.
fn fill_value(a: &ArrayMeta) -> Value {
    if let Some(n) = a
        .dtype
        .strip_prefix("|S")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return json!(STANDARD.encode(vec![0u8; n]));
    }
    match &a.fill_value {
        Value::Null => json!(0),
        v => v.clone(),
    }
}

/// `_FillValue` as xarray's zarr backend reads it from v3 attributes: floats as the base64 of
/// the little-endian float64 (a plain number fails the open), integers as numbers.
fn fill_attribute(a: &ArrayMeta) -> Option<Value> {
    let is_float = a.dtype.as_bytes().get(1) == Some(&b'f');
    match &a.fill_value {
        Value::Null => None,
        v if is_float => Some(json!(STANDARD.encode(fill_as_f64(v)?.to_le_bytes()))),
        v => Some(v.clone()),
    }
}

/// An array's `zarr.json`, or `None` when v3 cannot describe its type.
pub fn array(a: &ArrayMeta, codec: &ServedCodec) -> Option<Value> {
    let mut attrs = a.attrs.clone();
    if let Some(f) = fill_attribute(a) {
        attrs.insert("_FillValue".into(), f);
    }
    Some(json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": a.shape,
        "data_type": data_type(&a.dtype)?,
        "chunk_grid": { "name": "regular", "configuration": { "chunk_shape": a.served_chunks } },
        "chunk_key_encoding": { "name": "default", "configuration": { "separator": "/" } },
        "fill_value": fill_value(a),
        "codecs": codec.v3_codecs(),
        "attributes": attrs,
        "dimension_names": a.dims,
    }))
}

/// The root `zarr.json` with every array's metadata consolidated.
pub fn root(m: &Manifest) -> Value {
    let metadata: Map<String, Value> = m
        .arrays
        .iter()
        .filter_map(|(name, a)| Some((name.clone(), array(a, &m.codec)?)))
        .collect();
    json!({
        "zarr_format": 3,
        "node_type": "group",
        "attributes": m.attrs,
        "consolidated_metadata": { "kind": "inline", "must_understand": false, "metadata": metadata },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn types_and_fill_values() {
        assert_eq!(data_type("<f4"), Some(json!("float32")));
        assert_eq!(data_type(">i2"), Some(json!("int16")));
        assert_eq!(
            data_type("|S1").unwrap()["configuration"]["length_bytes"],
            1
        );
        assert_eq!(data_type("<c8"), None);
        let a = ArrayMeta {
            shape: vec![3],
            dims: vec!["x".into()],
            dtype: ">f8".into(),
            chunks: vec![3],
            served_chunks: vec![2],
            fill_value: json!("NaN"),
            attrs: Map::new(),
            codecs: vec![],
            table: "t".into(),
            records: 1,
            stored_chunks: 1,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        };
        let z = array(&a, &ServedCodec::default()).unwrap();
        assert_eq!(z["fill_value"], "NaN");
        assert_eq!(
            z["attributes"]["_FillValue"],
            STANDARD.encode(f64::NAN.to_le_bytes())
        );
        assert_eq!(z["chunk_grid"]["configuration"]["chunk_shape"], json!([2]));
        assert_eq!(z["codecs"][1]["name"], "gzip");
    }
}
