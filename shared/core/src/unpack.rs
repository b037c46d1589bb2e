//! Values packed differently by the sources of one dataset (their `scale_factor`, `add_offset`
//! or `_FillValue` differ), unpacked per source chunk into one float encoding, so the
//! re-encoding routes serve them as `xr.open_mfdataset` shows them.
//!
//! The arithmetic is xarray's, operation by operation: stored values equal to a missing value
//! become NaN, the rest are cast to the float type xarray chooses for that source, multiplied
//! by `scale_factor`, then `add_offset` is added, each rounded in that type; the result is
//! widened to the served type. So the served floats are exactly xarray's.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dtype::{DataType, Kind, Number, fill_as_f64};
use crate::error::{Error, Result};
use crate::manifest::ArrayMeta;

/// The attributes xarray's CF decoding moves from an unpacked variable into its encoding.
pub const UNPACKED_ATTRS: [&str; 3] = ["scale_factor", "add_offset", "missing_value"];

/// How the re-encoding routes serve `a`: as stored, or, where
/// xarray unpacks the stored numbers to float32 (a `scale_factor` or `add_offset` of type
/// float32), as those float32 values, unpacked per chunk. JSON attributes cannot say float32,
/// so a client unpacking them itself would get float64: this way it gets xarray's dtype and
/// values. `/kerchunk` keeps the stored numbers.
pub fn served(a: &ArrayMeta) -> Cow<'_, ArrayMeta> {
    let float32 = a.unpacked_dtype == Some(DataType::F4)
        && a.unpack.is_none()
        && !a.attrs.contains_key("_Unsigned")
        && a.dtype.number().is_some();
    if !float32 {
        return Cow::Borrowed(a);
    }
    let mut s = a.clone();
    s.unpack = Some(Unpack {
        dtype: a.dtype,
        sources: Vec::new(),
        all: Some(Packing::of(a)),
    });
    s.dtype = DataType::F4;
    s.fill_value = Value::from("NaN");
    s.unpacked_dtype = None;
    for attr in UNPACKED_ATTRS {
        s.attrs.remove(attr);
    }
    Cow::Owned(s)
}

/// How the sources of one array packed its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unpack {
    /// The type the sources store (`<i2`, `>i2`).
    pub dtype: DataType,
    /// Per source, by position in [`crate::Manifest::sources`]; `None` for sources that hold
    /// no chunk of the array.
    pub sources: Vec<Option<Packing>>,
    /// The packing of every source, when they all pack alike (then `sources` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Packing>,
}

/// How one source packed an array's values (CF conventions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Packing {
    /// The float type xarray unpacks to (`<f4`, `<f8`), in which the arithmetic is done.
    pub float: DataType,
    /// Multiplier, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_factor: Option<f64>,
    /// Offset added after scaling, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_offset: Option<f64>,
    /// Stored values read as missing: `_FillValue` and `missing_value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<f64>,
}

/// Kinds of float attribute, for [`float_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Any other type (an integer).
    Other,
}

/// The float type xarray decodes values stored as `dtype` to, given the types of their
/// `scale_factor` and `add_offset` attributes (xarray's `_choose_float_dtype`).
pub fn float_type(dtype: DataType, scale: Option<AttrType>, offset: Option<AttrType>) -> DataType {
    let integer = matches!(dtype.kind, Kind::Int | Kind::UInt);
    let size = dtype.size;
    let f = |t: AttrType| {
        if t == AttrType::F32 {
            DataType::F4
        } else {
            DataType::F8
        }
    };
    match (scale, offset) {
        (Some(s), Some(o)) if s == o && s != AttrType::Other => {
            if size == 4 && integer {
                DataType::F8
            } else {
                f(s)
            }
        }
        (_, Some(_)) => DataType::F8,
        (Some(s), None) => f(s),
        (None, None) if size <= 4 && dtype.kind == Kind::Float => DataType::F4,
        (None, None) if size <= 2 && integer => DataType::F4,
        (None, None) => DataType::F8,
    }
}

/// The float type xarray unpacks values stored as `dtype` to when they have a `scale_factor`
/// or an `add_offset` of the given types (for [`crate::ArrayMeta::unpacked_dtype`]); `None`
/// when they have neither.
pub fn packed_float(
    dtype: DataType,
    scale: Option<AttrType>,
    offset: Option<AttrType>,
) -> Option<DataType> {
    (scale.is_some() || offset.is_some()).then(|| float_type(dtype, scale, offset))
}

impl Unpack {
    /// The stored type.
    fn number(&self) -> Result<Number> {
        self.dtype.number().ok_or_else(|| {
            Error::corrupt_data(format!("unpacking {} values is not supported", self.dtype))
        })
    }

    /// Bytes per stored value.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a stored type that is not a number.
    pub fn item_size(&self) -> Result<u64> {
        Ok(self.number()?.size() as u64)
    }

    /// Unpack `stored` values of source `source` into `out`, as little-endian `served`
    /// (float32 or float64) values.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the manifest has no packing for the source, or the lengths do
    /// not match.
    pub fn unpack_into(
        &self,
        source: u32,
        stored: &[u8],
        served: DataType,
        out: &mut [u8],
    ) -> Result<()> {
        let p = self
            .all
            .as_ref()
            .or_else(|| self.sources.get(source as usize).and_then(Option::as_ref))
            .ok_or_else(|| {
                Error::corrupt_data(format!("no packing recorded for source #{source}"))
            })?;
        let number = self.number()?;
        let size = number.size();
        let out_size = served.size as usize;
        if stored.len() / size * out_size != out.len() || !stored.len().is_multiple_of(size) {
            return Err(Error::corrupt_data(format!(
                "unpacking {} bytes of {} into {} bytes of {served}",
                stored.len(),
                self.dtype,
                out.len()
            )));
        }
        let big = self.dtype.is_big_endian();
        let mut le = [0u8; 8];
        for (b, o) in stored
            .chunks_exact(size)
            .zip(out.chunks_exact_mut(out_size))
        {
            le[..size].copy_from_slice(b);
            if big {
                le[..size].reverse();
            }
            let v = p.value(number.read_le(&le));
            if out_size == 4 {
                o.copy_from_slice(&(v as f32).to_le_bytes());
            } else {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
}

impl Packing {
    /// How array `a` (as stored) packs its values: its `scale_factor`, `add_offset`, fill
    /// value and `missing_value`s (as the stored type holds them; NaN left out, as it is
    /// missing anyway).
    pub fn of(a: &ArrayMeta) -> Self {
        let number = |key: &str| match a.attrs.get(key)? {
            Value::Array(v) if v.len() == 1 => fill_as_f64(&v[0]),
            v => fill_as_f64(v),
        };
        let as_stored = |v: f64| {
            if a.dtype.is_float() && a.dtype.size == 4 {
                f64::from(v as f32)
            } else {
                v
            }
        };
        let mut missing: Vec<f64> = fill_as_f64(&a.fill_value).into_iter().collect();
        match a.attrs.get("missing_value") {
            Some(Value::Array(vs)) => missing.extend(vs.iter().filter_map(fill_as_f64)),
            Some(v) => missing.extend(fill_as_f64(v)),
            None => {}
        }
        missing = missing.into_iter().map(as_stored).collect();
        missing.retain(|v| !v.is_nan());
        Self {
            float: a
                .unpacked_dtype
                .unwrap_or_else(|| float_type(a.dtype, None, None)),
            scale_factor: number("scale_factor"),
            add_offset: number("add_offset"),
            missing,
        }
    }

    /// One stored value (exact as f64) unpacked, rounded as in [`Packing::float`].
    pub(crate) fn value(&self, x: f64) -> f64 {
        if self.missing.contains(&x) {
            return f64::NAN;
        }
        if self.float.size == 4 {
            let mut y = x as f32;
            if let Some(s) = self.scale_factor {
                y *= s as f32;
            }
            if let Some(o) = self.add_offset {
                y += o as f32;
            }
            f64::from(y)
        } else {
            let mut y = x;
            if let Some(s) = self.scale_factor {
                y *= s;
            }
            if let Some(o) = self.add_offset {
                y += o;
            }
            y
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> DataType {
        DataType::parse(s).unwrap()
    }

    #[test]
    fn float_types_follow_xarray() {
        use AttrType::{F32, F64, Other};
        let float_type = |d: &str, s, o| float_type(t(d), s, o).v2();
        assert_eq!(float_type("<i2", Some(F32), Some(F32)), "<f4");
        assert_eq!(float_type("<i2", Some(F64), Some(F64)), "<f8");
        assert_eq!(float_type("<i4", Some(F32), Some(F32)), "<f8");
        assert_eq!(float_type(">i2", Some(F32), None), "<f4");
        assert_eq!(float_type("<i2", Some(F32), Some(F64)), "<f8");
        assert_eq!(float_type("<i2", None, Some(F32)), "<f8");
        assert_eq!(float_type("<f4", Some(F64), Some(F64)), "<f8");
        assert_eq!(float_type("<i2", Some(Other), None), "<f8");
        assert_eq!(float_type("<i2", None, None), "<f4");
        assert_eq!(float_type("<i4", None, None), "<f8");
        assert_eq!(float_type("<f4", None, None), "<f4");
    }

    #[test]
    fn values_unpack_as_xarray_rounds_them() {
        let p = |float: &str| Packing {
            float: t(float),
            scale_factor: Some(f64::from(0.01f32)),
            add_offset: Some(250.0),
            missing: vec![-32767.0],
        };
        let u = Unpack {
            dtype: t(">i2"),
            all: None,
            sources: vec![Some(p("<f4")), None, Some(p("<f8"))],
        };
        let stored: Vec<u8> = [1234i16, -32767]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let mut out = [0u8; 16];
        u.unpack_into(0, &stored, DataType::F8, &mut out).unwrap();
        let first = f64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(first, f64::from(1234f32 * 0.01f32 + 250f32));
        assert!(f64::from_le_bytes(out[8..].try_into().unwrap()).is_nan());
        u.unpack_into(2, &stored, DataType::F8, &mut out).unwrap();
        let wide = f64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(wide, 1234.0 * f64::from(0.01f32) + 250.0);
        assert!(u.unpack_into(1, &stored, DataType::F8, &mut out).is_err());
        assert!(
            u.unpack_into(0, &stored, DataType::F8, &mut out[..8])
                .is_err()
        );
    }
}
