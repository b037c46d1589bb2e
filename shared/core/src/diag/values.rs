//! Stored numbers to the values xarray shows: CF decoding of a chunk's little-endian bytes
//! (missing values masked to NaN, then `scale_factor` and `add_offset` applied), in f64.

use crate::dtype::Number;
use crate::error::{Error, Result};
use crate::manifest::ArrayMeta;
use crate::unpack::Packing;

/// Attributes describing how values were stored, meaningless on a computed result.
pub(super) const PACKING: [&str; 8] = [
    "scale_factor",
    "add_offset",
    "missing_value",
    "_FillValue",
    "valid_range",
    "valid_min",
    "valid_max",
    "_Unsigned",
];

/// How one array's stored numbers decode.
#[derive(Debug, Clone)]
pub struct Decoding {
    kind: Number,
    /// `_FillValue` and `missing_value`, as the stored type holds them.
    missing: Vec<f64>,
    scale: f64,
    offset: f64,
}

impl Decoding {
    /// The decoding of array `name`.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for arrays that hold no numbers (strings, characters).
    pub fn of(name: &str, a: &ArrayMeta) -> Result<Self> {
        let kind = a.dtype.number().ok_or_else(|| {
            Error::BadRequest(format!("{name:?} holds {} values, not numbers", a.dtype))
        })?;
        let packing = Packing::of(a);
        Ok(Self {
            kind,
            missing: packing.missing,
            scale: packing.scale_factor.unwrap_or(1.0),
            offset: packing.add_offset.unwrap_or(0.0),
        })
    }

    /// Bytes per stored value.
    pub fn item_size(&self) -> usize {
        self.kind.size()
    }

    /// The values of little-endian `bytes`, appended to `out`.
    pub fn decode(&self, bytes: &[u8], out: &mut Vec<f64>) {
        let size = self.item_size();
        out.reserve(bytes.len() / size);
        for b in bytes.chunks_exact(size) {
            let raw = self.kind.read_le(b);
            out.push(if self.missing.contains(&raw) {
                f64::NAN
            } else {
                raw * self.scale + self.offset
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn array(dtype: &str, fill: Value, attrs: Value) -> ArrayMeta {
        serde_json::from_value(json!({
            "shape": [3], "dims": ["x"], "dtype": dtype, "chunks": [3], "served_chunks": [3],
            "fill_value": fill, "attrs": attrs, "codecs": [], "table": "t", "records": 1,
            "stored_chunks": 1
        }))
        .unwrap()
    }

    #[test]
    fn masks_then_scales_as_xarray() {
        let a = array(
            "<i2",
            json!(-999),
            json!({"scale_factor": 0.5, "add_offset": [10.0], "missing_value": [-1]}),
        );
        let d = Decoding::of("x", &a).unwrap();
        let mut out = Vec::new();
        let bytes: Vec<u8> = [4i16, -999, -1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        d.decode(&bytes, &mut out);
        assert_eq!(out[0], 12.0);
        assert!(out[1].is_nan() && out[2].is_nan());
        // A float32 fill compares as float32 holds it.
        let a = array("<f4", json!(1e20), json!({}));
        let mut out = Vec::new();
        Decoding::of("x", &a)
            .unwrap()
            .decode(&1e20f32.to_le_bytes(), &mut out);
        assert!(out[0].is_nan());
        assert!(Decoding::of("x", &array("|S1", json!(null), json!({}))).is_err());
    }
}
