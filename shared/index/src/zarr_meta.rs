//! Zarr v2 and v3 array metadata, as a Zarr store or an Icechunk snapshot records it, read into
//! the manifest's terms, and the chunk keys each names its chunks by.
//!
//! Written here rather than taken from zarrs: the manifest keeps its own small codec and type
//! model (what the serving core decodes in wasm32), so what is needed is the mapping into it and
//! the reasons an array does not fit, which zarrs' array types would only add a step to.

use cloudify_core::manifest::{ArrayMeta, Codec};
use cloudify_core::unpack::{AttrType, packed_float};
use cloudify_core::{DataType, dtype::Kind};
use serde_json::{Map, Value, json};

/// Why an array below the root group is not served.
pub const IN_SUBGROUP: &str = "it lies in a subgroup, which xarray opens apart";

/// How an array names its chunks, relative to its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkKeys {
    /// Zarr v3's `default` encoding: `c/0/1` (`c` alone for a scalar).
    Default(char),
    /// Zarr v2's, also a v3 encoding: `0.1` (`0` for a scalar).
    V2(char),
}

impl ChunkKeys {
    /// The grid position `key` (relative to the array's folder) names, if it is a chunk key of
    /// `ndim` dimensions.
    pub fn position(&self, key: &str, ndim: usize) -> Option<Vec<u64>> {
        let (rest, separator) = match self {
            ChunkKeys::Default(sep) => match key.strip_prefix('c') {
                Some("") if ndim == 0 => return Some(Vec::new()),
                Some(rest) => (rest.strip_prefix(*sep)?, *sep),
                None => return None,
            },
            ChunkKeys::V2(_) if ndim == 0 => return (key == "0").then(Vec::new),
            ChunkKeys::V2(sep) => (key, *sep),
        };
        let idx: Vec<u64> = rest
            .split(separator)
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        (idx.len() == ndim).then_some(idx)
    }

    /// The key (relative to the array's folder) of grid position `idx`: the inverse of
    /// [`ChunkKeys::position`], for stores that cannot be listed.
    pub fn key(&self, idx: &[u64]) -> String {
        let joined = |sep: char| {
            let parts: Vec<String> = idx.iter().map(u64::to_string).collect();
            parts.join(&sep.to_string())
        };
        match self {
            ChunkKeys::Default(_) if idx.is_empty() => "c".into(),
            ChunkKeys::Default(sep) => format!("c{sep}{}", joined(*sep)),
            ChunkKeys::V2(_) if idx.is_empty() => "0".into(),
            ChunkKeys::V2(sep) => joined(*sep),
        }
    }
}

/// An array of a store: its manifest metadata (table fields left for the builder) and keys.
#[derive(Debug, Clone)]
pub struct StoreArray {
    /// Shape, type, grid, codecs, fill value and attributes.
    pub meta: ArrayMeta,
    /// How its chunks are named.
    pub keys: ChunkKeys,
}

fn field<'a>(doc: &'a Value, name: &str) -> Result<&'a Value, String> {
    doc.get(name)
        .ok_or_else(|| format!("its metadata has no {name:?}"))
}

fn u64_list(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect())
        .ok_or_else(|| format!("its {what} is not a list of whole numbers"))
}

/// A v3 `zarr.json` of an array.
///
/// # Errors
/// Why the array cannot be served: a type or codec the core does not decode, a grid that is not
/// regular, sharded chunks, or no dimension names.
pub fn array_v3(doc: &Value) -> Result<StoreArray, String> {
    if doc.get("node_type").and_then(Value::as_str) != Some("array") {
        return Err("it is not an array".into());
    }
    let shape = u64_list(field(doc, "shape")?, "shape")?;
    let grid = field(doc, "chunk_grid")?;
    if grid.get("name").and_then(Value::as_str) != Some("regular") {
        return Err(format!("its chunk grid {grid} is not regular"));
    }
    let chunks = u64_list(
        grid.pointer("/configuration/chunk_shape")
            .unwrap_or(&Value::Null),
        "chunk shape",
    )?;
    let keys = match doc.get("chunk_key_encoding") {
        None => ChunkKeys::Default('/'),
        Some(e) => {
            let sep = e
                .pointer("/configuration/separator")
                .and_then(Value::as_str);
            match (e.get("name").and_then(Value::as_str), sep) {
                (Some("default"), None | Some("/")) => ChunkKeys::Default('/'),
                (Some("default"), Some(".")) => ChunkKeys::Default('.'),
                (Some("v2"), None | Some(".")) => ChunkKeys::V2('.'),
                (Some("v2"), Some("/")) => ChunkKeys::V2('/'),
                _ => {
                    return Err(format!(
                        "its chunk key encoding {e} is not one Zarr defines"
                    ));
                }
            }
        }
    };
    let type_name = field(doc, "data_type")?;
    let mut codecs = Vec::new();
    let mut endian = None;
    let list = field(doc, "codecs")?
        .as_array()
        .ok_or("its codecs are not a list")?;
    for c in list {
        let (name, conf) = match c {
            Value::String(s) => (s.as_str(), &Value::Null),
            _ => (
                c.get("name").and_then(Value::as_str).unwrap_or_default(),
                c.get("configuration").unwrap_or(&Value::Null),
            ),
        };
        let level = conf.get("level").and_then(Value::as_i64).unwrap_or(0);
        match name {
            "bytes" => {
                endian = Some(
                    conf.get("endian")
                        .and_then(Value::as_str)
                        .unwrap_or("little"),
                )
            }
            "zstd" | "numcodecs.zstd" => codecs.push(Codec::Zstd {
                level: i32::try_from(level).unwrap_or(0),
            }),
            "gzip" | "numcodecs.gzip" => codecs.push(Codec::Gzip {
                level: u32::try_from(level).unwrap_or(0),
            }),
            "numcodecs.zlib" => codecs.push(Codec::Zlib {
                level: u32::try_from(level).unwrap_or(0),
            }),
            "numcodecs.shuffle" => codecs.push(Codec::Shuffle {
                elementsize: conf
                    .get("elementsize")
                    .and_then(Value::as_u64)
                    .and_then(|e| u32::try_from(e).ok())
                    .ok_or("its shuffle codec names no element size")?,
            }),
            "sharding_indexed" => return Err("sharded chunks are not served yet".into()),
            other => return Err(format!("its codec {other:?} is not one cloudify decodes")),
        }
    }
    if endian.is_none() {
        return Err("its codecs have no bytes codec".into());
    }
    let dtype = v3_type(type_name, endian == Some("big"))?;
    let dims: Vec<String> = match doc.get("dimension_names") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("a dimension has no name")?,
        _ if shape.is_empty() => Vec::new(),
        _ => return Err("it has no dimension names (xarray needs them)".into()),
    };
    let mut attrs = match doc.get("attributes") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let fill_value = match attrs.remove("_FillValue") {
        Some(v) => cf_fill_v3(dtype, &v)?,
        None => zarr_fill(dtype, doc.get("fill_value").unwrap_or(&Value::Null)),
    };
    Ok(StoreArray {
        meta: meta(shape, dims, dtype, chunks, fill_value, attrs, codecs)?,
        keys,
    })
}

/// A v2 `.zarray` with its `.zattrs`.
///
/// # Errors
/// As [`array_v3`]; also Fortran order, and no `_ARRAY_DIMENSIONS`.
pub fn array_v2(zarray: &Value, mut attrs: Map<String, Value>) -> Result<StoreArray, String> {
    let shape = u64_list(field(zarray, "shape")?, "shape")?;
    let chunks = u64_list(field(zarray, "chunks")?, "chunks")?;
    if zarray.get("order").and_then(Value::as_str).unwrap_or("C") != "C" {
        return Err("its chunks are in Fortran order".into());
    }
    let keys = match zarray.get("dimension_separator").and_then(Value::as_str) {
        None | Some(".") => ChunkKeys::V2('.'),
        Some("/") => ChunkKeys::V2('/'),
        Some(s) => {
            return Err(format!(
                "its dimension separator {s:?} is not one Zarr defines"
            ));
        }
    };
    let type_name = field(zarray, "dtype")?
        .as_str()
        .ok_or("its dtype is not a NumPy type string")?;
    let dtype = DataType::parse(type_name)
        .map_err(|_| format!("its data type {type_name:?} is not one cloudify serves"))?;
    let mut codecs = Vec::new();
    let filters = match zarray.get("filters") {
        Some(Value::Array(f)) => f.clone(),
        _ => Vec::new(),
    };
    let compressor = zarray.get("compressor").filter(|c| !c.is_null());
    for c in filters.iter().chain(compressor) {
        codecs.push(serde_json::from_value::<Codec>(c.clone()).map_err(|_| {
            let id = c.get("id").unwrap_or(c);
            format!("its codec {id} is not one cloudify decodes")
        })?);
    }
    let dims: Vec<String> = match attrs.remove("_ARRAY_DIMENSIONS") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("its _ARRAY_DIMENSIONS are not names")?,
        _ if shape.is_empty() => Vec::new(),
        _ => return Err("it has no _ARRAY_DIMENSIONS (xarray needs them)".into()),
    };
    let fill_value = zarray.get("fill_value").cloned().unwrap_or(Value::Null);
    Ok(StoreArray {
        meta: meta(shape, dims, dtype, chunks, fill_value, attrs, codecs)?,
        keys,
    })
}

fn meta(
    shape: Vec<u64>,
    dims: Vec<String>,
    dtype: DataType,
    chunks: Vec<u64>,
    fill_value: Value,
    attrs: Map<String, Value>,
    codecs: Vec<Codec>,
) -> Result<ArrayMeta, String> {
    if dims.len() != shape.len() || chunks.len() != shape.len() || chunks.contains(&0) {
        return Err(format!(
            "its shape {shape:?}, chunks {chunks:?} and dimensions {dims:?} do not agree"
        ));
    }
    // JSON numbers are doubles when xarray reads them back.
    let number = |name: &str| attrs.get(name).map(|_| AttrType::F64);
    let unpacked_dtype = packed_float(dtype, number("scale_factor"), number("add_offset"));
    let mut a = ArrayMeta {
        shape,
        dims,
        dtype,
        served_chunks: chunks.clone(),
        chunks,
        fill_value,
        attrs,
        codecs,
        table: String::new(),
        records: 0,
        table_records: 0,
        stored_chunks: 0,
        kerchunk_excluded: None,
        unpacked_dtype,
        unpack: None,
        irregular: None,
    };
    a.records = a
        .grid_records()
        .ok_or("its grid has more than 2^64 chunks")?;
    Ok(a)
}

/// A v3 data type name, in the byte order the `bytes` codec gives.
fn v3_type(name: &Value, big: bool) -> Result<DataType, String> {
    let (kind, size) = match name.as_str() {
        Some("int8") => (Kind::Int, 1),
        Some("int16") => (Kind::Int, 2),
        Some("int32") => (Kind::Int, 4),
        Some("int64") => (Kind::Int, 8),
        Some("uint8") => (Kind::UInt, 1),
        Some("uint16") => (Kind::UInt, 2),
        Some("uint32") => (Kind::UInt, 4),
        Some("uint64") => (Kind::UInt, 8),
        Some("float16") => (Kind::Float, 2),
        Some("float32") => (Kind::Float, 4),
        Some("float64") => (Kind::Float, 8),
        _ => return Err(format!("its data type {name} is not one cloudify serves")),
    };
    let mut t = DataType::new(kind, size);
    if big && size > 1 {
        t.endian = cloudify_core::dtype::Endian::Big;
    }
    Ok(t)
}

/// Zarr v2 JSON for a float: the names JSON has no number for.
fn float_json(v: f64) -> Value {
    match v {
        v if v.is_nan() => json!("NaN"),
        v if v == f64::INFINITY => json!("Infinity"),
        v if v == f64::NEG_INFINITY => json!("-Infinity"),
        v => json!(v),
    }
}

/// The `_FillValue` attribute xarray writes into v3 metadata (floats as the base64 of the
/// little-endian float64), as the served fill value.
fn cf_fill_v3(dtype: DataType, v: &Value) -> Result<Value, String> {
    use base64::Engine as _;
    match v {
        Value::String(s) if dtype.is_float() => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| format!("its _FillValue {s:?} is not a base64 float64"))?;
            Ok(float_json(f64::from_le_bytes(bytes)))
        }
        v => Ok(zarr_fill(dtype, v)),
    }
}

/// A store's own fill value as the served one: zero is every reader's default, so none.
fn zarr_fill(dtype: DataType, v: &Value) -> Value {
    match v {
        Value::Number(n) if n.as_f64() == Some(0.0) => Value::Null,
        Value::Number(n) if dtype.is_float() => n.as_f64().map_or(Value::Null, float_json),
        Value::Number(_) => v.clone(),
        Value::String(s)
            if dtype.is_float() && ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) =>
        {
            v.clone()
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunk_keys_of_each_encoding() {
        assert_eq!(
            ChunkKeys::Default('/').position("c/1/20", 2),
            Some(vec![1, 20])
        );
        assert_eq!(ChunkKeys::Default('.').position("c.3", 1), Some(vec![3]));
        assert_eq!(ChunkKeys::Default('/').position("c", 0), Some(vec![]));
        assert_eq!(ChunkKeys::Default('/').position("c/1", 2), None);
        assert_eq!(ChunkKeys::Default('/').position("zarr.json", 1), None);
        assert_eq!(ChunkKeys::V2('.').position("4.0", 2), Some(vec![4, 0]));
        assert_eq!(ChunkKeys::V2('.').position(".zarray", 1), None);
        assert_eq!(ChunkKeys::V2('/').position("4/x", 2), None);
        assert_eq!(ChunkKeys::V2('.').position("0", 0), Some(vec![]));
    }

    #[test]
    fn chunk_keys_are_named_back_from_positions() {
        for (keys, idx) in [
            (ChunkKeys::Default('/'), vec![1, 20]),
            (ChunkKeys::Default('.'), vec![3]),
            (ChunkKeys::Default('/'), vec![]),
            (ChunkKeys::V2('.'), vec![4, 0]),
            (ChunkKeys::V2('/'), vec![4, 0, 7]),
            (ChunkKeys::V2('.'), vec![]),
        ] {
            let key = keys.key(&idx);
            assert_eq!(keys.position(&key, idx.len()), Some(idx), "{key}");
        }
        assert_eq!(ChunkKeys::Default('/').key(&[1, 20]), "c/1/20");
        assert_eq!(ChunkKeys::V2('.').key(&[4, 0]), "4.0");
    }

    #[test]
    fn a_v3_array_as_xarray_writes_it() {
        let doc = json!({
            "zarr_format": 3, "node_type": "array", "shape": [4, 10], "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 5]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0.0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "big"}},
                       {"name": "zstd", "configuration": {"level": 0, "checksum": false}}],
            "attributes": {"units": "K", "_FillValue": "AAAAAAAA+H8="},
            "dimension_names": ["time", "x"]
        });
        let a = array_v3(&doc).unwrap();
        assert_eq!(a.meta.dtype.v2(), ">f4");
        assert_eq!(a.meta.codecs, vec![Codec::Zstd { level: 0 }]);
        assert_eq!(a.meta.fill_value, json!("NaN"));
        assert_eq!(a.meta.attrs, *json!({"units": "K"}).as_object().unwrap());
        assert_eq!(a.meta.records, 4);
        assert_eq!(a.keys, ChunkKeys::Default('/'));
    }

    #[test]
    fn v3_arrays_that_do_not_fit_say_why() {
        let doc = |codecs: Value, dtype: &str| {
            json!({"node_type": "array", "shape": [4], "data_type": dtype,
                   "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
                   "codecs": codecs, "dimension_names": ["x"], "fill_value": 0})
        };
        let bytes = json!([{"name": "bytes"}]);
        let e = |d| array_v3(&d).unwrap_err();
        assert!(e(doc(json!([{"name": "sharding_indexed"}]), "int8")).contains("sharded"));
        assert!(e(doc(json!([{"name": "bytes"}, {"name": "blosc"}]), "int8")).contains("blosc"));
        assert!(e(doc(bytes.clone(), "string")).contains("data type"));
        assert!(e(doc(json!([]), "int8")).contains("bytes codec"));
        assert!(array_v3(&doc(bytes, "int16")).is_ok());
    }

    #[test]
    fn a_v2_array_with_filters_and_a_compressor() {
        let zarray = json!({
            "zarr_format": 2, "shape": [6], "chunks": [4], "dtype": "<i2", "order": "C",
            "fill_value": -1, "filters": [{"id": "shuffle", "elementsize": 2}],
            "compressor": {"id": "zstd", "level": 3, "checksum": false},
        });
        let attrs = json!({"_ARRAY_DIMENSIONS": ["x"], "long_name": "n"});
        let a = array_v2(&zarray, attrs.as_object().unwrap().clone()).unwrap();
        assert_eq!(
            a.meta.codecs,
            vec![Codec::Shuffle { elementsize: 2 }, Codec::Zstd { level: 3 }]
        );
        assert_eq!(a.meta.dims, vec!["x"]);
        assert_eq!(a.meta.fill_value, json!(-1));
        assert_eq!(a.meta.records, 2);
        assert!(!a.meta.attrs.contains_key("_ARRAY_DIMENSIONS"));
        let blosc = json!({"shape": [6], "chunks": [4], "dtype": "<i2",
                           "compressor": {"id": "blosc", "cname": "lz4"}});
        let why = array_v2(&blosc, attrs.as_object().unwrap().clone()).unwrap_err();
        assert!(why.contains("blosc"), "{why}");
    }
}
