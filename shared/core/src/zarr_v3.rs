//! Zarr v3 documents for the re-encoded `/zarr3` route: one root `zarr.json` holding every
//! array's metadata as consolidated metadata, as zarr-python 3 opens with `consolidated=True`.
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v3/core/index.html>.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value, json};
use zarrs_metadata::v3::{ArrayMetadataV3, MetadataV3};

use crate::codecs::ServedCodec;
use crate::manifest::{ArrayMeta, Codec, Manifest};
use crate::unpack;

/// An array's `zarr.json`: zarrs' metadata type, which serialises exactly as zarr-python
/// writes it for the codecs served here (each has a configuration).
pub type ArrayV3 = ArrayMetadataV3;

/// `{"name": name, "configuration": configuration}`.
fn named(name: &str, configuration: Value) -> MetadataV3 {
    match configuration {
        Value::Object(c) => MetadataV3::new_with_configuration(name, c),
        _ => MetadataV3::new(name),
    }
}

/// Consolidated metadata inline in the root `zarr.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsolidatedV3 {
    /// Always `inline`.
    pub kind: &'static str,
    /// Readers that ignore it still open the store.
    pub must_understand: bool,
    /// Every array's document by name, in the manifest's order.
    pub metadata: IndexMap<String, ArrayV3>,
}

/// The root `zarr.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupV3 {
    /// Always 3.
    pub zarr_format: u8,
    /// Always `group`.
    pub node_type: &'static str,
    /// Global attributes.
    pub attributes: Map<String, Value>,
    /// Every array's metadata.
    pub consolidated_metadata: ConsolidatedV3,
}

impl ServedCodec {
    /// The Zarr v3 codec chain: little-endian `bytes`, then the compressor.
    pub fn v3_codecs(&self) -> Vec<MetadataV3> {
        let bytes = named("bytes", json!({ "endian": "little" }));
        match self.reencoding() {
            ServedCodec::Auto | ServedCodec::None => vec![bytes],
            ServedCodec::Zlib { level } => vec![bytes, named("gzip", json!({ "level": level }))],
            ServedCodec::Zstd { level } => vec![
                bytes,
                named("zstd", json!({ "level": level, "checksum": false })),
            ],
        }
    }
}

/// The Zarr v3 codec chain of chunks served as stored: `bytes` in the source's byte order,
/// then the source's filters in write order as the numcodecs codecs zarr-python 3 registers
/// (`numcodecs.shuffle`, `numcodecs.zlib`), as VirtualiZarr declares them; the compressors
/// Zarr v3 itself names (`zstd`, `gzip`) by those names.
fn source_codecs(a: &ArrayMeta) -> Vec<MetadataV3> {
    let endian = if a.dtype.is_big_endian() {
        "big"
    } else {
        "little"
    };
    let mut chain = vec![named("bytes", json!({ "endian": endian }))];
    chain.extend(a.codecs.iter().map(|c| match c {
        Codec::Zlib { level } => named("numcodecs.zlib", json!({ "level": level })),
        Codec::Shuffle { elementsize } => {
            named("numcodecs.shuffle", json!({ "elementsize": elementsize }))
        }
        Codec::Fletcher32 => named("numcodecs.fletcher32", json!({})),
        Codec::Zstd { level } => named("zstd", json!({ "level": level, "checksum": false })),
        Codec::Gzip { level } => named("gzip", json!({ "level": level })),
    }));
    chain
}

/// An array's `zarr.json`: as stored where `codec` passes it through, else re-encoded with
/// `codec`.
pub fn array(a: &ArrayMeta, codec: &ServedCodec) -> ArrayV3 {
    let codecs = if codec.passes(a) {
        source_codecs(a)
    } else {
        codec.reencoding_for(a).v3_codecs()
    };
    with_codecs(a, codecs)
}

/// An array's `zarr.json` for its chunks as the source stores them (the source's grid and
/// codec chain), as kerchunk's references and a virtual Icechunk repository point at them.
pub fn stored_array(a: &ArrayMeta) -> ArrayV3 {
    let stored = ArrayMeta {
        served_chunks: a.chunks.clone(),
        ..a.clone()
    };
    with_codecs(&stored, source_codecs(&stored))
}

fn with_codecs(a: &ArrayMeta, codecs: Vec<MetadataV3>) -> ArrayV3 {
    let mut attributes = a.attrs.clone();
    if let Some(f) = a.dtype.v3_fill_attribute(&a.fill_value) {
        attributes.insert("_FillValue".into(), f);
    }
    ArrayMetadataV3::new(
        a.shape.clone(),
        named("regular", json!({ "chunk_shape": a.served_chunks })),
        a.dtype.v3(),
        a.dtype.v3_fill(&a.fill_value),
        codecs,
    )
    .with_chunk_key_encoding(named("default", json!({ "separator": "/" })))
    .with_attributes(attributes)
    .with_dimension_names(Some(a.dims.clone()))
}

/// The root `zarr.json` with every array's metadata consolidated.
pub fn root(m: &Manifest) -> GroupV3 {
    GroupV3 {
        zarr_format: 3,
        node_type: "group",
        attributes: m.attrs.clone(),
        consolidated_metadata: ConsolidatedV3 {
            kind: "inline",
            must_understand: false,
            metadata: m
                .arrays
                .iter()
                .map(|(name, a)| {
                    let a = unpack::served(a);
                    (name.clone(), array(&a, &m.codec))
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dtype::DataType;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    /// A 3-element array of `dtype` in source chunks of `chunks`, served in `served`.
    fn meta(dtype: &str, chunks: u64, served: u64, codecs: Vec<Codec>) -> ArrayMeta {
        ArrayMeta {
            shape: vec![3],
            dims: vec!["x".into()],
            dtype: DataType::parse(dtype).unwrap(),
            chunks: vec![chunks],
            served_chunks: vec![served],
            fill_value: json!("NaN"),
            attrs: Map::new(),
            codecs,
            table: "t".into(),
            records: 1,
            table_records: 1,
            stored_chunks: 1,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        }
    }

    #[test]
    fn types_and_fill_values() {
        let a = meta(">f8", 3, 2, vec![]);
        let z = json!(array(&a, &ServedCodec::Zlib { level: 1 }));
        assert_eq!(z["data_type"], "float64");
        assert_eq!(z["fill_value"], "NaN");
        assert_eq!(
            z["attributes"]["_FillValue"],
            STANDARD.encode(f64::NAN.to_le_bytes())
        );
        assert_eq!(z["chunk_grid"]["configuration"]["chunk_shape"], json!([2]));
        assert_eq!(
            z["chunk_key_encoding"],
            json!({"name": "default", "configuration": {"separator": "/"}})
        );
        assert_eq!(
            z["codecs"],
            json!([{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "gzip", "configuration": {"level": 1}}])
        );
    }

    #[test]
    fn auto_declares_the_source_chain_where_it_passes_through() {
        let shuffled = vec![Codec::Shuffle { elementsize: 4 }, Codec::Zlib { level: 4 }];
        let a = meta(">i4", 2, 2, shuffled);
        let z = json!(array(&a, &ServedCodec::Auto));
        assert_eq!(z["data_type"], "int32");
        assert_eq!(
            z["codecs"],
            json!([{"name": "bytes", "configuration": {"endian": "big"}},
                   {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
                   {"name": "numcodecs.zlib", "configuration": {"level": 4}}])
        );
        // On another grid, or under an explicit codec, the chunks are re-encoded.
        let rechunked = meta(">i4", 2, 1, a.codecs.clone());
        let zstd = json!([{"name": "bytes", "configuration": {"endian": "little"}},
                          {"name": "zstd", "configuration": {"level": -5, "checksum": false}}]);
        assert_eq!(json!(array(&rechunked, &ServedCodec::Auto))["codecs"], zstd);
        let gzip = json!([{"name": "bytes", "configuration": {"endian": "little"}},
                          {"name": "gzip", "configuration": {"level": 1}}]);
        assert_eq!(
            json!(array(&a, &ServedCodec::Zlib { level: 1 }))["codecs"],
            gzip
        );
        let checksummed = meta(
            ">i4",
            2,
            2,
            vec![Codec::Fletcher32, Codec::Zlib { level: 4 }],
        );
        assert_eq!(
            json!(array(&checksummed, &ServedCodec::Auto))["codecs"],
            zstd
        );
    }
}
