//! Stored numbers to the values xarray shows: CF decoding of a chunk's little-endian bytes
//! (missing values masked to NaN, then `scale_factor` and `add_offset` applied), in f64.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
}

/// How one array's stored numbers decode.
#[derive(Debug, Clone)]
pub struct Decoding {
    kind: Kind,
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
        let code = a.dtype.trim_start_matches(['<', '>', '|', '=']);
        let kind = match code {
            "f4" => Kind::F4,
            "f8" => Kind::F8,
            "i1" => Kind::I1,
            "i2" => Kind::I2,
            "i4" => Kind::I4,
            "i8" => Kind::I8,
            "u1" => Kind::U1,
            "u2" => Kind::U2,
            "u4" => Kind::U4,
            "u8" => Kind::U8,
            _ => {
                return Err(Error::BadRequest(format!(
                    "{name:?} holds {} values, not numbers",
                    a.dtype
                )));
            }
        };
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
        match self.kind {
            Kind::I1 | Kind::U1 => 1,
            Kind::I2 | Kind::U2 => 2,
            Kind::F4 | Kind::I4 | Kind::U4 => 4,
            Kind::F8 | Kind::I8 | Kind::U8 => 8,
        }
    }

    /// The values of little-endian `bytes`, appended to `out`.
    pub fn decode(&self, bytes: &[u8], out: &mut Vec<f64>) {
        let size = self.item_size();
        out.reserve(bytes.len() / size);
        for b in bytes.chunks_exact(size) {
            let raw = match self.kind {
                Kind::F4 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Kind::F8 => f64::from_le_bytes(std::array::from_fn(|i| b[i])),
                Kind::I1 => f64::from(b[0] as i8),
                Kind::U1 => f64::from(b[0]),
                Kind::I2 => f64::from(i16::from_le_bytes([b[0], b[1]])),
                Kind::U2 => f64::from(u16::from_le_bytes([b[0], b[1]])),
                Kind::I4 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Kind::U4 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Kind::I8 => i64::from_le_bytes(std::array::from_fn(|i| b[i])) as f64,
                Kind::U8 => u64::from_le_bytes(std::array::from_fn(|i| b[i])) as f64,
            };
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
