//! HDF5 attributes as the JSON a Zarr client sees, with netCDF-4's internals removed.

use std::collections::HashMap;

use cloudify_core::DataType;
use cloudify_core::unpack::{AttrType, packed_float};
use hdf5_pure::AttrValue;
use serde_json::{Map, Number, Value, json};

/// Attributes netCDF-C keeps for itself; netCDF readers never show them.
const NETCDF_INTERNAL: &[&str] = &[
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "_NCProperties",
    "_nc3_strict",
    "_IsNetcdf4",
    "_SuperblockVersion",
];

/// A float as JSON; NaN and infinities become the strings Zarr v2 uses for them.
pub(crate) fn float(v: f64) -> Value {
    Number::from_f64(v).map_or_else(
        || {
            json!(if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        },
        Value::Number,
    )
}

fn list<T: Copy>(v: &[T], one: impl Fn(T) -> Value) -> Value {
    // netCDF readers present a one-element attribute as a scalar.
    match v {
        [x] => one(*x),
        _ => Value::Array(v.iter().map(|x| one(*x)).collect()),
    }
}

fn strings(v: &[String]) -> Value {
    match v {
        [s] => json!(s),
        _ => json!(v),
    }
}

/// One attribute value as JSON; `None` for kinds with no JSON form.
pub(crate) fn to_json(v: &AttrValue) -> Option<Value> {
    Some(match v {
        AttrValue::F32(x) => float(f64::from(*x)),
        AttrValue::F64(x) => float(*x),
        AttrValue::F32Array(a) => list(a, |x| float(f64::from(x))),
        AttrValue::F64Array(a) => list(a, float),
        AttrValue::I8(x) => json!(x),
        AttrValue::I16(x) => json!(x),
        AttrValue::I32(x) => json!(x),
        AttrValue::I64(x) => json!(x),
        AttrValue::U8(x) => json!(x),
        AttrValue::U16(x) => json!(x),
        AttrValue::U32(x) => json!(x),
        AttrValue::U64(x) => json!(x),
        AttrValue::I8Array(a) => list(a, |x| json!(x)),
        AttrValue::I16Array(a) => list(a, |x| json!(x)),
        AttrValue::I32Array(a) => list(a, |x| json!(x)),
        AttrValue::I64Array(a) => list(a, |x| json!(x)),
        AttrValue::U8Array(a) => list(a, |x| json!(x)),
        AttrValue::U16Array(a) => list(a, |x| json!(x)),
        AttrValue::U32Array(a) => list(a, |x| json!(x)),
        AttrValue::U64Array(a) => list(a, |x| json!(x)),
        AttrValue::String(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenString(s)
        | AttrValue::VarLenAsciiString(s)
        | AttrValue::StringSized { value: s, .. }
        | AttrValue::AsciiStringSized { value: s, .. } => json!(s),
        AttrValue::StringArray(v)
        | AttrValue::AsciiStringArray(v)
        | AttrValue::VarLenStringArray(v)
        | AttrValue::VarLenAsciiStringArray(v)
        | AttrValue::VarLenAsciiCharArray(v)
        | AttrValue::StringArraySized { values: v, .. }
        | AttrValue::AsciiStringArraySized { values: v, .. } => strings(v),
        _ => return None,
    })
}

/// An attribute as an integer, for netCDF-4's id attributes.
pub(crate) fn integers(v: &AttrValue) -> Option<Vec<i64>> {
    match to_json(v)? {
        Value::Number(n) => Some(vec![n.as_i64()?]),
        Value::Array(a) => a.iter().map(Value::as_i64).collect(),
        _ => None,
    }
}

/// An attribute as a string.
pub(crate) fn string(v: &AttrValue) -> Option<String> {
    match to_json(v)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The float type xarray unpacks a variable stored as `dtype` to, when it has a
/// `scale_factor` or `add_offset`: their HDF5 types decide it.
pub(crate) fn unpacked_dtype(
    dtype: DataType,
    raw: &HashMap<String, AttrValue>,
) -> Option<DataType> {
    let kind = |name: &str| {
        raw.get(name).map(|v| match v {
            AttrValue::F32(_) | AttrValue::F32Array(_) => AttrType::F32,
            AttrValue::F64(_) | AttrValue::F64Array(_) => AttrType::F64,
            _ => AttrType::Other,
        })
    };
    packed_float(dtype, kind("scale_factor"), kind("add_offset"))
}

/// User-visible attributes, sorted by name so manifests (and their versions) are reproducible.
/// `also_hidden` names further attributes to drop (a dimension scale's `CLASS` and `NAME`).
pub(crate) fn visible(
    raw: &HashMap<String, AttrValue>,
    also_hidden: &[&str],
) -> Map<String, Value> {
    let mut names: Vec<&String> = raw
        .keys()
        .filter(|k| {
            !NETCDF_INTERNAL.contains(&k.as_str())
                && !also_hidden.contains(&k.as_str())
                && k.as_str() != "_FillValue"
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|k| Some((k.clone(), to_json(raw.get(k)?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn values_as_netcdf_readers_show_them() {
        assert_eq!(to_json(&AttrValue::F32Array(vec![0.5])), Some(json!(0.5)));
        assert_eq!(
            to_json(&AttrValue::I16Array(vec![1, 2])),
            Some(json!([1, 2]))
        );
        assert_eq!(to_json(&AttrValue::F64(f64::NAN)), Some(json!("NaN")));
        assert_eq!(to_json(&AttrValue::String("K".into())), Some(json!("K")));
        let mut raw = HashMap::new();
        raw.insert("units".to_owned(), AttrValue::String("K".into()));
        raw.insert("_Netcdf4Dimid".to_owned(), AttrValue::I32(0));
        raw.insert("_FillValue".to_owned(), AttrValue::F32(1.0));
        raw.insert(
            "CLASS".to_owned(),
            AttrValue::String("DIMENSION_SCALE".into()),
        );
        let v = visible(&raw, &["CLASS"]);
        assert_eq!(v.keys().collect::<Vec<_>>(), vec!["units"]);
    }
}
