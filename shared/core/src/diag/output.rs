//! A computed diagnostic as programs and people read it: JSON in the layout of xarray's
//! `DataArray.to_dict()` (so `xr.DataArray.from_dict` rebuilds it), a consolidated Zarr v2
//! store of one chunk per array, and an HTML summary.

use serde_json::{Map, Value, json};

use crate::codecs::ServedCodec;
use crate::discovery::escape;
use crate::error::{Error, Result};
use crate::key::{ArrayDoc, GroupDoc, ZarrKey};
use crate::zarr_v2::{ArrayV2, Consolidated, ZGROUP};

use super::compute::Outcome;
use super::select::Labels;

/// A JSON number, or `null` for NaN and infinities (which JSON cannot hold).
fn number(x: f64, whole: bool) -> Value {
    if !x.is_finite() {
        Value::Null
    } else if whole {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// `values` nested as lists along `shape`.
fn nested(values: &[f64], shape: &[u64], whole: bool) -> Value {
    match shape.split_first() {
        None => values.first().map_or(Value::Null, |x| number(*x, whole)),
        Some((n, rest)) => {
            let step = rest.iter().product::<u64>() as usize;
            Value::Array(
                (0..*n as usize)
                    .map(|i| nested(&values[i * step..(i + 1) * step], rest, whole))
                    .collect(),
            )
        }
    }
}

fn labels_json(labels: &Labels) -> Value {
    match labels {
        Labels::Numbers(v, dtype) => {
            Value::Array(v.iter().map(|x| number(*x, dtype.contains('i'))).collect())
        }
        Labels::Strings(v) => json!(v),
    }
}

/// The result as `DataArray.to_dict()` lays it out.
pub fn to_json(o: &Outcome) -> Value {
    let coords: Map<String, Value> = o
        .coords
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({ "dims": [c.name], "attrs": c.attrs, "data": labels_json(&c.labels) }),
            )
        })
        .collect();
    json!({
        "name": o.name,
        "dims": o.dims,
        "attrs": o.attrs,
        "data": nested(&o.values, &o.shape, o.counts),
        "coords": coords,
    })
}

/// One array of the result store: its `.zarray`, `.zattrs` and single chunk.
struct Array {
    name: String,
    dims: Vec<String>,
    shape: Vec<u64>,
    dtype: &'static str,
    fill: Value,
    attrs: Map<String, Value>,
    bytes: Vec<u8>,
}

fn arrays(o: &Outcome) -> Vec<Array> {
    let mut out = vec![Array {
        name: o.name.clone(),
        dims: o.dims.clone(),
        shape: o.shape.clone(),
        dtype: if o.counts { "<i8" } else { "<f8" },
        fill: if o.counts { Value::Null } else { json!("NaN") },
        attrs: o.attrs.clone(),
        bytes: if o.counts {
            o.values
                .iter()
                .flat_map(|x| (*x as i64).to_le_bytes())
                .collect()
        } else {
            o.values.iter().flat_map(|x| x.to_le_bytes()).collect()
        },
    }];
    for c in &o.coords {
        let (dtype, fill, bytes): (&'static str, Value, Vec<u8>) = match &c.labels {
            Labels::Numbers(v, "<i8") => (
                "<i8",
                Value::Null,
                v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
            ),
            Labels::Numbers(v, "<f4") => (
                "<f4",
                json!("NaN"),
                v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
            ),
            Labels::Numbers(v, _) => (
                "<f8",
                json!("NaN"),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            // Seasons: three UTF-32 characters each, as NumPy's `<U3`.
            Labels::Strings(v) => (
                "<U3",
                json!(""),
                v.iter()
                    .flat_map(|s| {
                        let mut chars: Vec<u32> = s.chars().map(u32::from).collect();
                        chars.resize(3, 0);
                        chars
                            .into_iter()
                            .flat_map(u32::to_le_bytes)
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            ),
        };
        out.push(Array {
            name: c.name.clone(),
            dims: vec![c.name.clone()],
            shape: vec![c.labels.len() as u64],
            dtype,
            fill,
            attrs: c.attrs.clone(),
            bytes,
        });
    }
    out
}

fn zarray(a: &Array, codec: &ServedCodec) -> Value {
    // One chunk of the whole shape; a dimension of length 0 cannot be one.
    let chunks: Vec<u64> = a.shape.iter().map(|n| (*n).max(1)).collect();
    json!(ArrayV2::new(
        a.shape.clone(),
        chunks,
        a.dtype.to_owned(),
        a.fill.clone(),
        codec.v2_compressor(),
    ))
}

fn zattrs(a: &Array) -> Value {
    let mut attrs = a.attrs.clone();
    attrs.insert("_ARRAY_DIMENSIONS".into(), json!(a.dims));
    Value::Object(attrs)
}

/// A key of the result as a Zarr v2 store: JSON documents, or an encoded chunk.
pub enum ZarrAnswer {
    /// A metadata document.
    Json(Value),
    /// Chunk bytes.
    Bytes(Vec<u8>),
}

/// Answer `key` of the result store (`None`: the store root, answered with `.zmetadata`).
///
/// # Errors
/// [`Error::NotFound`] for keys the store does not hold.
pub fn zarr_key(
    o: &Outcome,
    attrs: &Map<String, Value>,
    codec: &ServedCodec,
    key: Option<&ZarrKey>,
) -> Result<ZarrAnswer> {
    let arrays = arrays(o);
    let find = |name: &str| {
        arrays
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::NotFound(format!("the result has no array {name:?}")))
    };
    Ok(match key {
        Some(ZarrKey::Group(GroupDoc::Zgroup)) => ZarrAnswer::Json(json!(ZGROUP)),
        Some(ZarrKey::Group(GroupDoc::Zattrs)) => ZarrAnswer::Json(Value::Object(attrs.clone())),
        None | Some(ZarrKey::Group(GroupDoc::Zmetadata)) => {
            let mut meta = Map::new();
            meta.insert(".zgroup".into(), json!(ZGROUP));
            meta.insert(".zattrs".into(), Value::Object(attrs.clone()));
            for a in &arrays {
                meta.insert(format!("{}/.zarray", a.name), zarray(a, codec));
                meta.insert(format!("{}/.zattrs", a.name), zattrs(a));
            }
            ZarrAnswer::Json(json!(Consolidated {
                zarr_consolidated_format: 1,
                metadata: meta
            }))
        }
        Some(ZarrKey::Array(name, ArrayDoc::Zarray)) => {
            ZarrAnswer::Json(zarray(find(name)?, codec))
        }
        Some(ZarrKey::Array(name, ArrayDoc::Zattrs)) => ZarrAnswer::Json(zattrs(find(name)?)),
        Some(ZarrKey::Chunk(name, idx)) => {
            let a = find(name)?;
            let whole = if a.shape.is_empty() {
                idx.as_slice() == [0]
            } else {
                idx.len() == a.shape.len() && idx.iter().all(|i| *i == 0)
            };
            if !whole {
                return Err(Error::NotFound(format!(
                    "{name:?} of the result is one chunk, {}",
                    if a.shape.is_empty() {
                        "0".to_owned()
                    } else {
                        vec!["0"; a.shape.len()].join(".")
                    }
                )));
            }
            ZarrAnswer::Bytes(codec.encode(&a.bytes, false)?)
        }
        Some(other) => {
            return Err(Error::NotFound(format!(
                "{other:?} is not a key of a Zarr v2 store"
            )));
        }
    })
}

/// A readable page: what was computed, the result's shape and range, and links to the JSON
/// and Zarr forms.
pub fn html(o: &Outcome, title: &str, zarr_url: &str) -> String {
    let finite: Vec<f64> = o.values.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(*x), h.max(*x))
        });
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let dims: Vec<String> = o
        .dims
        .iter()
        .zip(&o.shape)
        .map(|(d, n)| format!("{}: {n}", escape(d)))
        .collect();
    let mut rows = String::new();
    for (k, v) in &o.attrs {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        ));
    }
    let mut coords = String::new();
    for c in &o.coords {
        let shown = match &c.labels {
            Labels::Numbers(v, _) => v
                .iter()
                .take(12)
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>(),
            Labels::Strings(v) => v.iter().map(|s| (*s).to_owned()).collect(),
        };
        let more = if c.labels.len() > shown.len() {
            " …"
        } else {
            ""
        };
        coords.push_str(&format!(
            "<tr><th>{}</th><td>{}{more}</td></tr>",
            escape(&c.name),
            escape(&shown.join(", "))
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\
         <h1>{t}</h1><p><b>{name}</b> ({dims}): {n} values, {valid} valid; min {lo:.6}, mean \
         {mean:.6}, max {hi:.6}</p><h2>Coordinates</h2><table>{coords}</table>\
         <h2>Attributes</h2><table>{rows}</table><p>As JSON: ask for <code>application/json\
         </code>. As Zarr: <code>xr.open_dataset(\"{z}\", engine=\"zarr\")</code></p>\
         </body></html>",
        t = escape(title),
        name = escape(&o.name),
        dims = dims.join(", "),
        n = o.values.len(),
        valid = finite.len(),
        z = escape(zarr_url),
    )
}
