//! The data type of an array: parsed once from its NumPy type string when a manifest is read,
//! and asked for everything the routes need (byte order, item size, the Zarr v2 string, the v3
//! name, fill values as bytes).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use zarrs_metadata::v3::{FillValueMetadataV3, MetadataV3};

use crate::error::{Error, Result};

/// What kind of values an array holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// IEEE floats of 2, 4 or 8 bytes.
    Float,
    /// Signed integers of 1, 2, 4 or 8 bytes.
    Int,
    /// Unsigned integers of 1, 2, 4 or 8 bytes.
    UInt,
    /// Fixed-length byte strings (NumPy `S`), such as NetCDF characters.
    Bytes,
}

/// Byte order of multi-byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
    /// Single bytes and byte strings have none (`|`).
    None,
}

/// An array's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataType {
    /// What the values are.
    pub kind: Kind,
    /// Bytes per element.
    pub size: u32,
    /// How multi-byte values are stored.
    pub endian: Endian,
}

impl DataType {
    /// Little-endian (or order-free) type of `kind` and `size`.
    pub const fn new(kind: Kind, size: u32) -> Self {
        let endian = if size == 1 || matches!(kind, Kind::Bytes) {
            Endian::None
        } else {
            Endian::Little
        };
        Self { kind, size, endian }
    }

    /// Little-endian float64.
    pub const F8: Self = Self::new(Kind::Float, 8);
    /// Little-endian float32.
    pub const F4: Self = Self::new(Kind::Float, 4);

    /// Parse a NumPy type string (`<f4`, `>i2`, `|u1`, `|S8`).
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a type this crate cannot serve.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::BadRequest(format!("data type {s:?} is not one cloudify serves"));
        let mut chars = s.chars();
        let endian = match chars.next() {
            Some('<') => Endian::Little,
            Some('>') => Endian::Big,
            Some('|' | '=') => Endian::None,
            _ => return Err(bad()),
        };
        let kind = match chars.next() {
            Some('f') => Kind::Float,
            Some('i') => Kind::Int,
            Some('u') => Kind::UInt,
            Some('S') => Kind::Bytes,
            _ => return Err(bad()),
        };
        let size: u32 = chars.as_str().parse().map_err(|_| bad())?;
        let ok = match kind {
            Kind::Float => matches!(size, 2 | 4 | 8),
            Kind::Int | Kind::UInt => matches!(size, 1 | 2 | 4 | 8),
            Kind::Bytes => size >= 1,
        };
        if !ok {
            return Err(bad());
        }
        // A one-byte or byte-string type has no order, whatever the string says.
        let endian = match (kind, size) {
            (Kind::Bytes, _) | (_, 1) => Endian::None,
            _ if endian == Endian::None => Endian::Little,
            _ => endian,
        };
        Ok(Self { kind, size, endian })
    }

    /// The NumPy type string, as Zarr v2's `dtype` writes it.
    pub fn v2(&self) -> String {
        let order = match self.endian {
            Endian::Little => '<',
            Endian::Big => '>',
            Endian::None => '|',
        };
        let kind = match self.kind {
            Kind::Float => 'f',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Bytes => 'S',
        };
        format!("{order}{kind}{}", self.size)
    }

    /// The same type in little-endian order (what the re-encoding routes serve).
    #[must_use]
    pub fn little_endian(self) -> Self {
        match self.endian {
            Endian::Big => Self {
                endian: Endian::Little,
                ..self
            },
            _ => self,
        }
    }

    /// Whether values are stored most significant byte first.
    pub fn is_big_endian(&self) -> bool {
        self.endian == Endian::Big
    }

    /// Bytes per element.
    pub fn item_size(&self) -> u32 {
        self.size
    }

    /// Whether values are numbers (not byte strings).
    pub fn is_numeric(&self) -> bool {
        self.kind != Kind::Bytes
    }

    /// Whether values are floats.
    pub fn is_float(&self) -> bool {
        self.kind == Kind::Float
    }

    /// The numeric type, for reading values; `None` for byte strings and float16.
    pub fn number(&self) -> Option<Number> {
        Some(match (self.kind, self.size) {
            (Kind::Float, 4) => Number::F4,
            (Kind::Float, 8) => Number::F8,
            (Kind::Int, 1) => Number::I1,
            (Kind::Int, 2) => Number::I2,
            (Kind::Int, 4) => Number::I4,
            (Kind::Int, 8) => Number::I8,
            (Kind::UInt, 1) => Number::U1,
            (Kind::UInt, 2) => Number::U2,
            (Kind::UInt, 4) => Number::U4,
            (Kind::UInt, 8) => Number::U8,
            _ => return None,
        })
    }

    /// NumPy's name of the type (`float32`, `int16`, `S1`), as xarray shows it.
    pub fn numpy_name(&self) -> String {
        match self.v3_name() {
            Some(n) => n.to_owned(),
            None => format!("S{}", self.size),
        }
    }

    /// The Zarr v3 core name of a numeric type.
    fn v3_name(&self) -> Option<&'static str> {
        Some(match (self.kind, self.size) {
            (Kind::Float, 2) => "float16",
            (Kind::Float, 4) => "float32",
            (Kind::Float, 8) => "float64",
            (Kind::Int, 1) => "int8",
            (Kind::Int, 2) => "int16",
            (Kind::Int, 4) => "int32",
            (Kind::Int, 8) => "int64",
            (Kind::UInt, 1) => "uint8",
            (Kind::UInt, 2) => "uint16",
            (Kind::UInt, 4) => "uint32",
            (Kind::UInt, 8) => "uint64",
            _ => return None,
        })
    }

    /// The Zarr v3 `data_type`: a core name, or zarr-python's `null_terminated_bytes` for
    /// NumPy's fixed-width bytes.
    pub fn v3(&self) -> MetadataV3 {
        match self.v3_name() {
            Some(n) => MetadataV3::new(n),
            None => {
                let mut c = serde_json::Map::new();
                c.insert("length_bytes".into(), json!(self.size));
                MetadataV3::new_with_configuration("null_terminated_bytes", c)
            }
        }
    }

    /// One element of `fill_value` (Zarr v2 JSON) as little-endian bytes; zeros when no fill
    /// value applies, as Zarr does.
    pub fn fill_bytes(&self, fill_value: &Value) -> Vec<u8> {
        let item = self.size as usize;
        let as_f64 = fill_as_f64(fill_value);
        let bytes: Option<Vec<u8>> = match (self.kind, item, fill_value) {
            (Kind::Float, 2, _) => as_f64.map(|v| half::f16::from_f64(v).to_le_bytes().to_vec()),
            (Kind::Float, 4, _) => as_f64.map(|v| (v as f32).to_le_bytes().to_vec()),
            (Kind::Float, 8, _) => as_f64.map(|v| v.to_le_bytes().to_vec()),
            (Kind::Int, _, Value::Number(n)) => {
                n.as_i64().map(|v| v.to_le_bytes()[..item.min(8)].to_vec())
            }
            (Kind::UInt, _, Value::Number(n)) => {
                n.as_u64().map(|v| v.to_le_bytes()[..item.min(8)].to_vec())
            }
            (Kind::Bytes, _, Value::String(s)) => STANDARD.decode(s).ok().map(|mut b| {
                b.resize(item, 0);
                b
            }),
            _ => None,
        };
        bytes.unwrap_or_else(|| vec![0u8; item])
    }

    /// The Zarr v2 `fill_value` of a byte-string type whose `_FillValue` attribute is `text`
    /// (a NetCDF character): its bytes, cut or padded to one element, in base64.
    pub fn text_fill(&self, text: &str) -> Value {
        let mut b = text.as_bytes().to_vec();
        b.resize(self.size as usize, 0);
        json!(STANDARD.encode(b))
    }

    /// The v3 `fill_value`, which v3 requires: the v2 one, else zero (base64 zero bytes for
    /// byte strings).
    pub fn v3_fill(&self, fill_value: &Value) -> FillValueMetadataV3 {
        let v = match (self.kind, fill_value) {
            (Kind::Bytes, _) => json!(STANDARD.encode(self.fill_bytes(fill_value))),
            (_, Value::Null) => json!(0),
            (_, v) => v.clone(),
        };
        serde_json::from_value(v).unwrap_or(FillValueMetadataV3::Null)
    }

    /// `_FillValue` as xarray's zarr backend reads it from v3 attributes: floats as the base64
    /// of the little-endian float64 (a plain number fails the open), integers as they are.
    /// None for byte strings: xarray (2026.9) cannot decode theirs and would refuse the whole
    /// dataset; their fill value stays in the array's `fill_value`.
    pub fn v3_fill_attribute(&self, fill_value: &Value) -> Option<Value> {
        match fill_value {
            Value::Null => None,
            _ if self.kind == Kind::Bytes => None,
            v if self.is_float() => Some(json!(STANDARD.encode(fill_as_f64(v)?.to_le_bytes()))),
            v => Some(v.clone()),
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.v2())
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.v2())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A Zarr v2 JSON fill value as a float: numbers, and the strings `"NaN"`, `"Infinity"` and
/// `"-Infinity"` Zarr writes for the values JSON has no number for.
pub fn fill_as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "NaN" => Some(f64::NAN),
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// The numeric types values are read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// `f4`
    F4,
    /// `f8`
    F8,
    /// `i1`
    I1,
    /// `i2`
    I2,
    /// `i4`
    I4,
    /// `i8`
    I8,
    /// `u1`
    U1,
    /// `u2`
    U2,
    /// `u4`
    U4,
    /// `u8`
    U8,
}

impl Number {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::I1 | Self::U1 => 1,
            Self::I2 | Self::U2 => 2,
            Self::F4 | Self::I4 | Self::U4 => 4,
            Self::F8 | Self::I8 | Self::U8 => 8,
        }
    }

    /// One value from its little-endian bytes (at least [`Self::size`] of them), as f64:
    /// exact but for 64-bit integers beyond 2^53.
    pub fn read_le(self, b: &[u8]) -> f64 {
        let mut a = [0u8; 8];
        let n = self.size().min(b.len());
        a[..n].copy_from_slice(&b[..n]);
        let u = u64::from_le_bytes(a);
        match self {
            Self::F4 => f64::from(f32::from_bits(u as u32)),
            Self::F8 => f64::from_bits(u),
            Self::I1 => f64::from(u as u8 as i8),
            Self::I2 => f64::from(u as u16 as i16),
            Self::I4 => f64::from(u as u32 as i32),
            Self::I8 => u as i64 as f64,
            Self::U1 | Self::U2 | Self::U4 | Self::U8 => u as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numpy_strings_round_trip_and_reject_what_is_not_served() {
        for s in [
            "<f4", ">f8", "<f2", "|u1", "|i1", ">i2", "<u8", "|S1", "|S32",
        ] {
            assert_eq!(DataType::parse(s).unwrap().v2(), s);
        }
        assert_eq!(DataType::parse("<u1").unwrap().v2(), "|u1");
        for bad in ["<c8", "f4", "<f3", "<i16", "|S0", "", "<b1", "<U4"] {
            assert!(DataType::parse(bad).is_err(), "{bad}");
        }
        let t = DataType::parse(">i2").unwrap();
        assert!(t.is_big_endian());
        assert_eq!(t.little_endian().v2(), "<i2");
        assert_eq!(t.number(), Some(Number::I2));
        assert_eq!(t.numpy_name(), "int16");
        assert_eq!(DataType::parse("|S1").unwrap().numpy_name(), "S1");
    }

    #[test]
    fn v3_types_and_fill_values() {
        let f8 = DataType::parse(">f8").unwrap();
        assert_eq!(json!(f8.v3()), json!("float64"));
        let s1 = DataType::parse("|S1").unwrap();
        assert_eq!(json!(s1.v3())["configuration"]["length_bytes"], 1);
        assert_eq!(json!(s1.v3_fill(&Value::Null)), json!("AA=="));
        assert_eq!(json!(s1.v3_fill(&json!("Yg=="))), json!("Yg=="));
        assert_eq!(
            f8.v3_fill_attribute(&json!("NaN")),
            Some(json!(STANDARD.encode(f64::NAN.to_le_bytes())))
        );
        assert_eq!(json!(f8.v3_fill(&json!("NaN"))), json!("NaN"));
        let i2 = DataType::parse("<i2").unwrap();
        assert_eq!(json!(i2.v3_fill(&Value::Null)), json!(0));
        assert_eq!(i2.v3_fill_attribute(&json!(-32767)), Some(json!(-32767)));
        assert_eq!(s1.v3_fill_attribute(&json!("Yg==")), None);
    }

    #[test]
    fn fill_values_as_bytes() {
        let t = |s: &str| DataType::parse(s).unwrap();
        assert_eq!(
            t("<f4").fill_bytes(&json!("NaN")),
            f32::NAN.to_le_bytes().to_vec()
        );
        assert_eq!(
            t(">f8").fill_bytes(&json!(1e20)),
            1e20f64.to_le_bytes().to_vec()
        );
        assert_eq!(
            t("<i2").fill_bytes(&json!(-32767)),
            (-32767i16).to_le_bytes().to_vec()
        );
        assert_eq!(t("|u1").fill_bytes(&json!(255)), vec![255]);
        assert_eq!(t("<f2").fill_bytes(&json!(-1.0)), vec![0x00, 0xbc]);
        assert_eq!(t("<f4").fill_bytes(&Value::Null), vec![0; 4]);
        assert_eq!(t("|S1").fill_bytes(&json!("Yg==")), b"b".to_vec());
        assert_eq!(t("|S1").text_fill("b"), json!("Yg=="));
        assert_eq!(
            t("|S2").fill_bytes(&t("|S2").text_fill("x")),
            b"x\0".to_vec()
        );
    }
}
