//! Reading one NetCDF-3 source (classic, 64-bit offset, CDF-5) into a manifest.
//!
//! Written by hand: the format is a short big-endian header (the netCDF "classic format"
//! specification), and the `netcdf3` crate opens files by path, hides the variables' data
//! offsets and reads no CDF-5. Reads go through [`RangeRead`], the header only.
//!
//! Non-record variables are one chunk each; record variables one chunk per record, at
//! `begin + record * recsize`. Nothing is compressed, so the raw route serves every variable.

use cloudify_core::dtype::{Endian, Kind};
use cloudify_core::manifest::{encode_table, table_len};
use cloudify_core::{ArrayMeta, ChunkRef, DataType, Manifest};
use serde_json::{Map, Value, json};

use crate::attrs;
use crate::error::{IndexError, Result};
use crate::netcdf4::{ArrayTable, Indexed};
use crate::source::{RangeRead, SourceSpec};
use cloudify_core::unpack::{AttrType, packed_float};

const NC_DIMENSION: u32 = 0x0A;
const NC_VARIABLE: u32 = 0x0B;
const NC_ATTRIBUTE: u32 = 0x0C;
/// `numrecs` of a file still being written.
const STREAMING: u64 = 0xFFFF_FFFF;
/// Decoded bytes the re-encoding routes aim for per served chunk of a record variable.
const SERVED_RECORD_BYTES: u64 = 1 << 20;
/// Header bytes read at a time.
const BLOCK: usize = 64 << 10;

/// Whether `head` (the file's first bytes) opens a NetCDF-3 file.
pub fn is_netcdf3(head: &[u8]) -> bool {
    matches!(head, [b'C', b'D', b'F', 1 | 2 | 5, ..])
}

/// The header, read forward through a growing buffer of the file's first bytes.
struct Header<'a> {
    reader: &'a dyn RangeRead,
    buf: Vec<u8>,
    pos: usize,
    /// CDF-5: 64-bit counts and sizes.
    wide: bool,
    /// CDF-2 and CDF-5: 64-bit `begin` offsets.
    wide_offsets: bool,
}

impl Header<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.pos.checked_add(n).ok_or("header length overflows")?;
        if end > self.buf.len() {
            let size = usize::try_from(self.reader.size()).map_err(|e| e.to_string())?;
            let want = end.max(self.buf.len() + BLOCK).min(size);
            if end > want {
                return Err("the header runs past the end of the file (truncated?)".into());
            }
            let old = self.buf.len();
            self.buf.resize(want, 0);
            self.reader
                .read_at(old as u64, &mut self.buf[old..])
                .map_err(|e| format!("reading the header: {e}"))?;
        }
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A count or size: 32 bits, 64 in CDF-5.
    fn count(&mut self) -> std::result::Result<u64, String> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    fn offset(&mut self) -> std::result::Result<u64, String> {
        if self.wide_offsets {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    /// `n` bytes and the padding that follows them to a 4-byte boundary.
    fn padded(&mut self, n: u64) -> std::result::Result<Vec<u8>, String> {
        let n = usize::try_from(n).map_err(|e| e.to_string())?;
        let bytes = self.take(n)?.to_vec();
        self.take((4 - n % 4) % 4)?;
        Ok(bytes)
    }

    fn name(&mut self) -> std::result::Result<String, String> {
        let n = self.count()?;
        String::from_utf8(self.padded(n)?).map_err(|_| "a name is not UTF-8".into())
    }

    /// A list's tag and length; an absent list is two zeros.
    fn list(&mut self, tag: u32) -> std::result::Result<u64, String> {
        let t = self.u32()?;
        let n = self.count()?;
        match t {
            0 if n == 0 => Ok(0),
            t if t == tag => Ok(n),
            t => Err(format!("expected list tag {tag:#x}, found {t:#x}")),
        }
    }

    /// Attributes as JSON, and the types of those that may decide how values unpack.
    fn attributes(&mut self) -> std::result::Result<(Map<String, Value>, Packed), String> {
        let n = self.list(NC_ATTRIBUTE)?;
        let mut out = Map::new();
        let mut packed = Packed::default();
        for _ in 0..n {
            let name = self.name()?;
            let ty = NcType::from_code(self.u32()?)?;
            let len = self.count()?;
            let bytes = self.padded(len.checked_mul(ty.size()).ok_or("attribute too long")?)?;
            let kind = match ty {
                NcType::Float => AttrType::F32,
                NcType::Double => AttrType::F64,
                _ => AttrType::Other,
            };
            match name.as_str() {
                "scale_factor" => packed.scale = Some(kind),
                "add_offset" => packed.offset = Some(kind),
                _ => {}
            }
            out.insert(name, ty.attribute(&bytes));
        }
        Ok((out, packed))
    }
}

/// The external types of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NcType {
    Byte,
    Char,
    Short,
    Int,
    Float,
    Double,
    UByte,
    UShort,
    UInt,
    Int64,
    UInt64,
}

impl NcType {
    fn from_code(code: u32) -> std::result::Result<Self, String> {
        Ok(match code {
            1 => Self::Byte,
            2 => Self::Char,
            3 => Self::Short,
            4 => Self::Int,
            5 => Self::Float,
            6 => Self::Double,
            7 => Self::UByte,
            8 => Self::UShort,
            9 => Self::UInt,
            10 => Self::Int64,
            11 => Self::UInt64,
            c => return Err(format!("unknown type code {c}")),
        })
    }

    fn size(self) -> u64 {
        match self {
            Self::Byte | Self::Char | Self::UByte => 1,
            Self::Short | Self::UShort => 2,
            Self::Int | Self::UInt | Self::Float => 4,
            Self::Double | Self::Int64 | Self::UInt64 => 8,
        }
    }

    /// NumPy type string; characters are fixed-length bytes, as xarray reads them.
    fn dtype(self) -> DataType {
        let (kind, size) = match self {
            Self::Byte => (Kind::Int, 1),
            Self::Char => (Kind::Bytes, 1),
            Self::Short => (Kind::Int, 2),
            Self::Int => (Kind::Int, 4),
            Self::Float => (Kind::Float, 4),
            Self::Double => (Kind::Float, 8),
            Self::UByte => (Kind::UInt, 1),
            Self::UShort => (Kind::UInt, 2),
            Self::UInt => (Kind::UInt, 4),
            Self::Int64 => (Kind::Int, 8),
            Self::UInt64 => (Kind::UInt, 8),
        };
        let t = DataType::new(kind, size);
        // NetCDF-3 stores every number big-endian.
        if size > 1 {
            DataType {
                endian: Endian::Big,
                ..t
            }
        } else {
            t
        }
    }

    /// An attribute's values as JSON: text for characters, a scalar for one number.
    fn attribute(self, b: &[u8]) -> Value {
        if self == Self::Char {
            let end = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
            return json!(String::from_utf8_lossy(&b[..end]));
        }
        let size = self.size() as usize;
        let values: Vec<Value> = b
            .chunks_exact(size)
            .map(|v| {
                let mut w = [0u8; 8];
                w[8 - size..].copy_from_slice(v);
                let bits = u64::from_be_bytes(w);
                match self {
                    Self::Byte => json!(v[0] as i8),
                    Self::Short => json!(bits as u16 as i16),
                    Self::Int => json!(bits as u32 as i32),
                    Self::Int64 => json!(bits as i64),
                    Self::Float => attrs::float(f64::from(f32::from_bits(bits as u32))),
                    Self::Double => attrs::float(f64::from_bits(bits)),
                    _ => json!(bits),
                }
            })
            .collect();
        match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        }
    }
}

struct Dim {
    name: String,
    /// 0 for the record dimension.
    len: u64,
}

struct Var {
    name: String,
    dims: Vec<usize>,
    attrs: Map<String, Value>,
    packed: Packed,
    ty: NcType,
    begin: u64,
}

/// The types of a variable's `scale_factor` and `add_offset`, when it has them.
#[derive(Debug, Default, Clone, Copy)]
struct Packed {
    scale: Option<AttrType>,
    offset: Option<AttrType>,
}

/// Index a NetCDF-3 source as dataset `id`.
///
/// # Errors
/// [`IndexError::Source`] for a malformed or truncated header, [`IndexError::Variable`] for a
/// variable whose data lies outside the file.
pub fn read(source: &SourceSpec, id: &str, source_index: u32) -> Result<Indexed> {
    let fault = |fault: String| IndexError::Source {
        file: source.url.clone(),
        fault: format!("not a readable NetCDF-3 file: {fault}"),
    };
    let reader = source.reader.as_ref();
    let mut h = Header {
        reader,
        buf: Vec::new(),
        pos: 0,
        wide: false,
        wide_offsets: false,
    };
    let version = h.take(4).map_err(fault)?[3];
    h.wide = version == 5;
    h.wide_offsets = version != 1;
    let numrecs = h.count().map_err(fault)?;
    let (dims, global, vars) = header(&mut h).map_err(fault)?;
    let record_dim = dims.iter().position(|d| d.len == 0);
    let is_record = |v: &Var| v.dims.first().is_some_and(|d| Some(*d) == record_dim);
    let record_vars: Vec<&Var> = vars.iter().filter(|v| is_record(v)).collect();
    // One record of a variable: its bytes, padded to 4 unless it is the only record variable.
    // Sizes saturate: a header claiming more than 2^64 bytes is refused by the check of each
    // variable's extent against the file.
    let record_bytes = |v: &Var| -> u64 {
        let n = v.dims[1..]
            .iter()
            .fold(v.ty.size(), |n, d| n.saturating_mul(dims[*d].len));
        if record_vars.len() == 1 {
            n
        } else {
            n.div_ceil(4).saturating_mul(4)
        }
    };
    let recsize: u64 = record_vars
        .iter()
        .fold(0, |s: u64, v| s.saturating_add(record_bytes(v)));
    let numrecs = match (numrecs, record_vars.first()) {
        (STREAMING, Some(first)) if recsize > 0 => {
            reader.size().saturating_sub(first.begin) / recsize
        }
        (STREAMING, _) => 0,
        (n, _) => n,
    };
    let len_of = |d: usize| {
        if dims[d].len == 0 {
            numrecs
        } else {
            dims[d].len
        }
    };

    let mut manifest = Manifest::new(id, global);
    let mut tables = Vec::new();
    for v in &vars {
        let shape: Vec<u64> = v.dims.iter().map(|d| len_of(*d)).collect();
        let item = v.ty.size();
        let record = is_record(v);
        let chunks: Vec<u64> = shape
            .iter()
            .enumerate()
            .map(|(i, s)| if record && i == 0 { 1 } else { (*s).max(1) })
            .collect();
        let chunk_bytes = chunks.iter().fold(item, |n, c| n.saturating_mul(*c));
        let mut served = chunks.clone();
        if record && let Some(first) = served.first_mut() {
            *first = (SERVED_RECORD_BYTES / chunk_bytes.max(1)).clamp(1, numrecs.max(1));
        }
        // Where the header says the data ends, checked against the file before any list the
        // header sizes is made: a header may claim more records than the file holds.
        // `None`: no data; `Some(None)`: an end past 2^64.
        let end = match (record, shape.contains(&0)) {
            (_, true) => None,
            (true, false) => Some(
                (numrecs - 1)
                    .checked_mul(recsize)
                    .and_then(|o| o.checked_add(v.begin)),
            ),
            (false, false) => Some(Some(v.begin)),
        }
        .map(|start| start.and_then(|s| s.checked_add(chunk_bytes)));
        if let Some(end) = end
            && end.is_none_or(|e| e > reader.size())
        {
            return Err(IndexError::Variable {
                file: source.url.clone(),
                variable: v.name.clone(),
                fault: format!(
                    "its data ends at byte {}, past the end of the file ({} bytes): truncated, \
                     or a header claiming more than the file holds",
                    end.map_or_else(|| "2^64 or more".into(), |e| e.to_string()),
                    reader.size()
                ),
            });
        }
        let stored: Vec<(u64, ChunkRef)> = match (record, shape.contains(&0)) {
            (_, true) => Vec::new(),
            (true, false) => (0..numrecs)
                .map(|r| (r, chunk(source_index, v.begin + r * recsize, chunk_bytes)))
                .collect(),
            (false, false) => vec![(0, chunk(source_index, v.begin, chunk_bytes))],
        };
        let mut attrs = v.attrs.clone();
        let fill_value = match attrs.remove("_FillValue") {
            Some(Value::String(text)) if v.ty == NcType::Char => v.ty.dtype().text_fill(&text),
            Some(f @ (Value::Number(_) | Value::String(_))) if v.ty != NcType::Char => f,
            _ => Value::Null,
        };
        let mut meta = ArrayMeta {
            dims: v.dims.iter().map(|d| dims[*d].name.clone()).collect(),
            dtype: v.ty.dtype(),
            chunks,
            served_chunks: served,
            fill_value,
            attrs,
            codecs: Vec::new(),
            table: format!("tables/{}.bin", tables.len()),
            records: 0,
            table_records: 0,
            stored_chunks: stored.len() as u64,
            kerchunk_excluded: None,
            unpacked_dtype: packed_float(v.ty.dtype(), v.packed.scale, v.packed.offset),
            unpack: None,
            irregular: None,
            shape,
        };
        meta.records = cloudify_core::manifest::saturating_product(&meta.grid());
        meta.table_records = table_len(&stored);
        tables.push(ArrayTable {
            bytes: encode_table(&stored),
            stored,
        });
        manifest.arrays.insert(v.name.clone(), meta);
    }
    Ok(Indexed {
        manifest,
        tables,
        absolute_urls: Vec::new(),
        warnings: Vec::new(),
        inline: Vec::new(),
        kept: None,
        sources_read: 1,
    })
}

fn chunk(source: u32, offset: u64, length: u64) -> ChunkRef {
    ChunkRef {
        source,
        filter_mask: 0,
        offset,
        length,
    }
}

type Parsed = (Vec<Dim>, Map<String, Value>, Vec<Var>);

/// Dimensions, global attributes and variables, after magic and `numrecs`.
fn header(h: &mut Header<'_>) -> std::result::Result<Parsed, String> {
    let ndims = h.list(NC_DIMENSION)?;
    let mut dims = Vec::new();
    for _ in 0..ndims {
        let name = h.name()?;
        let len = h.count()?;
        dims.push(Dim { name, len });
    }
    let (global, _) = h.attributes()?;
    let nvars = h.list(NC_VARIABLE)?;
    let mut vars = Vec::new();
    for _ in 0..nvars {
        let name = h.name()?;
        let rank = h.count()?;
        let mut ids = Vec::new();
        for _ in 0..rank {
            let d = usize::try_from(h.count()?).map_err(|e| e.to_string())?;
            if d >= dims.len() {
                return Err(format!("variable {name:?} names dimension #{d}"));
            }
            ids.push(d);
        }
        if ids.iter().skip(1).any(|d| dims[*d].len == 0) {
            return Err(format!(
                "variable {name:?} has the record dimension other than first"
            ));
        }
        let (attrs, packed) = h.attributes()?;
        let ty = NcType::from_code(h.u32()?)?;
        let _vsize = h.count()?; // recomputed: it saturates for large variables
        let begin = h.offset()?;
        vars.push(Var {
            name,
            dims: ids,
            attrs,
            packed,
            ty,
            begin,
        });
    }
    Ok((dims, global, vars))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// In-memory bytes as a source.
    fn name(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u32).to_be_bytes());
        out.extend(s.as_bytes());
        out.resize(out.len().div_ceil(4) * 4, 0);
    }

    /// A classic file written while streaming (`numrecs` unknown) with two record variables,
    /// `a` (3 shorts: 6 bytes, padded to 8 in a record) and `b` (one float), three records.
    fn streaming_file() -> Vec<u8> {
        let mut h = b"CDF\x01".to_vec();
        h.extend(0xFFFF_FFFFu32.to_be_bytes());
        h.extend(NC_DIMENSION.to_be_bytes());
        h.extend(2u32.to_be_bytes());
        name(&mut h, "time");
        h.extend(0u32.to_be_bytes());
        name(&mut h, "n");
        h.extend(3u32.to_be_bytes());
        h.extend([0u8; 8]); // no global attributes
        h.extend(NC_VARIABLE.to_be_bytes());
        h.extend(2u32.to_be_bytes());
        let header_len = h.len() + 40 + 36; // the two variables below
        for (var, dims, ty, vsize, offset) in [
            ("a", &[0u32, 1][..], 3u32, 8u32, 0u32),
            ("b", &[0u32][..], 5u32, 4u32, 8u32),
        ] {
            name(&mut h, var);
            h.extend((dims.len() as u32).to_be_bytes());
            for d in dims {
                h.extend(d.to_be_bytes());
            }
            h.extend([0u8; 8]); // no attributes
            h.extend(ty.to_be_bytes());
            h.extend(vsize.to_be_bytes());
            h.extend((header_len as u32 + offset).to_be_bytes());
        }
        assert_eq!(h.len(), header_len);
        for r in 0..3u8 {
            h.extend([0, r, 0, r + 1, 0, r + 2, 0, 0]);
            h.extend(f32::from(r).to_be_bytes());
        }
        h
    }

    #[test]
    fn streaming_records_are_counted_from_the_size_and_padded() {
        let file = streaming_file();
        let begin = (file.len() - 36) as u64;
        let source = SourceSpec::in_memory("s.nc".into(), "file:///s.nc".into(), file);
        let indexed = read(&source, "s", 0).unwrap();
        let a = &indexed.manifest.arrays["a"];
        assert_eq!(
            (a.shape.clone(), a.chunks.clone()),
            (vec![3, 3], vec![1, 3])
        );
        assert_eq!(a.dtype.v2(), ">i2");
        let offsets: Vec<(u64, u64)> = indexed.tables[0]
            .stored
            .iter()
            .map(|(_, c)| (c.offset, c.length))
            .collect();
        assert_eq!(offsets, vec![(begin, 6), (begin + 12, 6), (begin + 24, 6)]);
        let b = &indexed.tables[1].stored;
        assert_eq!(b[2].1.offset, begin + 8 + 24);
        assert_eq!(indexed.manifest.arrays["b"].served_chunks, vec![3]);
    }

    #[test]
    fn only_cdf_magic_is_netcdf3() {
        assert!(is_netcdf3(b"CDF\x02rest"));
        assert!(is_netcdf3(b"CDF\x05"));
        assert!(!is_netcdf3(b"CDF\x03"));
        assert!(!is_netcdf3(b"\x89HDF\r\n"));
    }
}
