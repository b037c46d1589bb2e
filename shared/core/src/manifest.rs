//! The served form of one dataset: metadata JSON plus one binary chunk table per array.
//!
//! Bucket layout (DESIGN.md): `datasets/{id}/{version}/manifest.json` and
//! `datasets/{id}/{version}/{array.table}`. A table is a 16-byte header (magic, format version,
//! record size) followed by one fixed-width record per chunk of the source grid, in C order, so a
//! cold function resolves any chunk with one small range read and never loads a whole table.
//! Records after the last stored chunk are left out (a dimension declared long and written
//! little costs nothing), and each record carries a checksum of itself and its position, so a
//! damaged or reordered table is refused rather than read as other chunks.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codecs::ServedCodec;
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::unpack::Unpack;

/// Version of the manifest and table formats; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 2;

/// Magic bytes that open every chunk table.
pub const TABLE_MAGIC: &[u8; 8] = b"CLDYTBL\0";
/// Bytes before the first record.
pub const TABLE_HEADER_LEN: u64 = 16;
/// Bytes per record: source (u32), filter mask (u32), offset (u64), length (u64), and the
/// CRC-32 of the record's position (u64) and those 24 bytes; little-endian.
pub const RECORD_LEN: u64 = 28;
/// Bytes of a record before its checksum.
const RECORD_BODY: usize = 24;
/// The `source` value of a chunk that was never written (it reads as fill).
const ABSENT: u32 = u32::MAX;

/// One dataset as the functions serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Dataset id.
    pub id: String,
    /// Group (global) attributes.
    pub attrs: Map<String, Value>,
    /// The files the chunk tables point into; records name them by position.
    pub sources: Vec<SourceInfo>,
    /// Arrays by name, in source order.
    pub arrays: IndexMap<String, ArrayMeta>,
    /// Variables the indexer could not serve, with the reason.
    #[serde(default)]
    pub skipped: Map<String, Value>,
    /// The codec `/zarr` and `/zarr3` re-encode chunks with.
    #[serde(default)]
    pub codec: ServedCodec,
    /// Coordinate values summarised at index time, for catalogs (extents, steps).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub coords: IndexMap<String, CoordSummary>,
    /// Hash of what the indexer read (sources with their sizes and tags, options, indexer
    /// version): a rerun with the same inputs is skipped without reading any source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// The Zarr store or Icechunk repository the dataset was read from, when it was: its one
    /// source as a catalog names it (the manifest's `sources` are then its chunk objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSource>,
    /// The Icechunk repository that holds the dataset, for catalogs: the source repository,
    /// or the virtual one the indexer writes into an S3 bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icechunk: Option<IcechunkRepo>,
    /// Catalogued, not served: its STAC item names the original store or files, and the
    /// function's routes of the dataset answer 404 (`serve = false` in `cloudify.toml`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catalog_only: bool,
}

/// A Zarr store or Icechunk repository named as a dataset's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSource {
    /// A key relative to the bucket, or an absolute URL, as [`SourceInfo::url`].
    pub url: String,
    /// `zarr` or `icechunk`.
    pub kind: String,
    /// The Zarr format of its metadata (2 or 3).
    pub zarr_format: u8,
    /// The AWS region of an `s3://` store, for catalogs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl StoreSource {
    /// The store as a [`SourceInfo`], for the rules that say where sources may be named.
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            url: self.url.clone(),
            size: 0,
            etag: None,
        }
    }
}

/// An Icechunk repository holding a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcechunkRepo {
    /// Its absolute URL (`s3://bucket/prefix/`, `file:///folder/`).
    pub href: String,
    /// Whether it lies in the bucket (so any catalog of the bucket may name it).
    pub in_bucket: bool,
    /// The snapshot holding this version of the dataset; none for the indexer's own
    /// repository, whose commit of the version is tagged with the version instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The prefixes its virtual chunks point into; empty for a native repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_prefixes: Vec<String>,
    /// The AWS region of an `s3://` repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Manifest {
    /// Dataset `id` with its global attributes, in the current format: no sources or arrays
    /// yet, served with the default codec.
    pub fn new(id: &str, attrs: Map<String, Value>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            id: id.to_owned(),
            attrs,
            sources: Vec::new(),
            arrays: IndexMap::new(),
            skipped: Map::new(),
            codec: ServedCodec::default(),
            coords: IndexMap::new(),
            inputs: None,
            store: None,
            icechunk: None,
            catalog_only: false,
        }
    }

    /// Names of the coordinate variables: dimension coordinates, then those a `coordinates`
    /// attribute names.
    pub fn coordinate_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .arrays
            .iter()
            .filter(|(n, a)| a.dims.len() == 1 && a.dims[0] == **n)
            .map(|(n, _)| n.as_str())
            .collect();
        for a in self.arrays.values() {
            let listed = a
                .attrs
                .get("coordinates")
                .and_then(Value::as_str)
                .unwrap_or("");
            for n in listed.split_whitespace() {
                if self.arrays.contains_key(n) && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }
}

/// What a catalog needs of a coordinate variable's values, read once at index time; fill
/// values and NaN left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordSummary {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Number of valid values.
    pub count: u64,
    /// First and last valid value (in storage order).
    pub first: f64,
    /// Last valid value.
    pub last: f64,
    /// Smallest and largest difference between neighbours (1-D only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<(f64, f64)>,
    /// The values themselves, when there are few.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
}

impl CoordSummary {
    /// Most values a summary lists.
    pub const MAX_VALUES: usize = 64;

    /// Summarise `values`, skipping NaN and `fill`; `None` when nothing valid is left.
    pub fn of(values: &[f64], fill: Option<f64>, one_dimensional: bool) -> Option<Self> {
        let valid: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && Some(*v) != fill)
            .collect();
        let (first, last) = (*valid.first()?, *valid.last()?);
        let min = valid.iter().copied().fold(f64::INFINITY, f64::min);
        let max = valid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let steps = (one_dimensional && valid.len() > 1).then(|| {
            valid
                .windows(2)
                .map(|w| w[1] - w[0])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| {
                    (lo.min(d), hi.max(d))
                })
        });
        Some(Self {
            min,
            max,
            count: valid.len() as u64,
            first,
            last,
            steps,
            values: (valid.len() <= Self::MAX_VALUES).then_some(valid),
        })
    }
}

/// A source file as recorded at index time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// A key relative to the bucket, or an absolute `file://`, `s3://` or `https://` URL.
    pub url: String,
    /// Size in bytes when indexed.
    pub size: u64,
    /// ETag (or size-and-mtime tag on a local folder) when indexed.
    pub etag: Option<String>,
}

impl SourceInfo {
    /// Whether the source is in the function's bucket (named by a key, not a URL).
    pub fn in_bucket(&self) -> bool {
        !self.url.contains("://")
    }

    /// Whether the index itself stored the source (values it assembled from the files, in
    /// the bucket's `datasets/` folder, which is the index's own) rather than it being one of
    /// the dataset's files.
    pub fn stored_by_index(&self) -> bool {
        self.in_bucket() && self.url.starts_with("datasets/")
    }

    /// The source as answers may name it: a bucket key as it is; a URL only when
    /// `publish` allows, and never with its query string or fragment (where tokens live).
    pub fn published_url(&self, publish: bool) -> Option<&str> {
        if self.in_bucket() {
            return Some(&self.url);
        }
        publish.then(|| strip_query(&self.url))
    }
}

/// `url` without its query string and fragment.
pub fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// One source codec, named and configured as numcodecs names it (the Zarr v2 codec JSON):
/// HDF5's filters, and the compressors Zarr stores and Icechunk repositories use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id", rename_all = "lowercase")]
pub enum Codec {
    /// HDF5 deflate: zlib stream.
    Zlib {
        /// Compression level the file declares.
        level: u32,
    },
    /// HDF5 byte shuffle.
    Shuffle {
        /// Element size in bytes.
        elementsize: u32,
    },
    /// HDF5 Fletcher-32 checksum, 4 bytes appended.
    Fletcher32,
    /// Zstandard frame (zarr-python 3's default compressor).
    Zstd {
        /// Compression level the store declares.
        level: i32,
    },
    /// gzip stream.
    Gzip {
        /// Compression level the store declares.
        level: u32,
    },
}

impl Codec {
    /// Whether this codec compresses (so it is Zarr v2's `compressor` when last).
    pub fn compresses(&self) -> bool {
        matches!(
            self,
            Codec::Zlib { .. } | Codec::Zstd { .. } | Codec::Gzip { .. }
        )
    }
}

/// One array of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// Shape; a variable shorter than its unlimited dimension has the dimension's length.
    pub shape: Vec<u64>,
    /// Dimension names, one per axis.
    pub dims: Vec<String>,
    /// The data type, written as its NumPy type string with byte order (`<f4`, `>f8`, `|S1`).
    pub dtype: DataType,
    /// Source chunk shape (the whole shape for contiguous storage).
    pub chunks: Vec<u64>,
    /// Chunk shape of the re-encoding routes (`--chunks`; the source's by default).
    pub served_chunks: Vec<u64>,
    /// Zarr v2 `fill_value` (`"NaN"` for NaN, `null` when none applies).
    pub fill_value: Value,
    /// Attributes, `_FillValue` and netCDF-4 internals removed.
    pub attrs: Map<String, Value>,
    /// Source codecs in the file's pipeline (write) order.
    pub codecs: Vec<Codec>,
    /// Table key relative to the manifest's folder.
    pub table: String,
    /// Number of chunks in the grid.
    pub records: u64,
    /// Records the table holds: up to the last stored chunk; those after it are absent.
    #[serde(default)]
    pub table_records: u64,
    /// Chunks actually stored.
    pub stored_chunks: u64,
    /// Why `/kerchunk` leaves this array out, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kerchunk_excluded: Option<String>,
    /// The float type xarray unpacks the stored values to, by the types of their
    /// `scale_factor` and `add_offset` attributes (when either is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_dtype: Option<DataType>,
    /// How each source packed the values, when sources pack them differently: `dtype`,
    /// `fill_value` and `attrs` are then those of the unpacked floats served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpack: Option<Unpack>,
    /// Source chunk boundaries along one dimension, when they are not every `chunks[d]`
    /// elements (files concatenated along it whose chunks do not line up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irregular: Option<Irregular>,
}

/// Source chunks along one dimension laid end to end in runs: one run per file, each cut
/// into chunks of its own length. A run's last chunk may be partial; it is stored at full
/// length, as HDF5 stores edge chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Irregular {
    /// The dimension.
    pub dim: usize,
    /// Per run: elements along the dimension, and the chunk length.
    pub runs: Vec<(u64, u64)>,
}

/// Source chunk `j` along a dimension: where it starts, its stored length and how many of
/// those elements are the array's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First element.
    pub start: u64,
    /// Stored length.
    pub stored: u64,
    /// Elements of the array in it (less than `stored` for a partial chunk).
    pub valid: u64,
}

impl Irregular {
    /// Chunks along the dimension.
    pub fn count(&self) -> u64 {
        self.runs.iter().map(|(n, c)| n.div_ceil((*c).max(1))).sum()
    }

    /// Chunk `j`, or an empty span past the end.
    pub fn span(&self, j: u64) -> Span {
        let (mut start, mut first) = (0, 0);
        for &(n, c) in &self.runs {
            let c = c.max(1);
            let k = n.div_ceil(c);
            if j < first + k {
                let at = (j - first) * c;
                return Span {
                    start: start + at,
                    stored: c,
                    valid: c.min(n - at),
                };
            }
            start += n;
            first += k;
        }
        Span {
            start,
            stored: 0,
            valid: 0,
        }
    }

    /// The chunk holding element `e` (the count when past the end).
    pub fn chunk_of(&self, e: u64) -> u64 {
        let (mut start, mut first) = (0, 0);
        for &(n, c) in &self.runs {
            let c = c.max(1);
            if e < start + n {
                return first + (e - start) / c;
            }
            start += n;
            first += n.div_ceil(c);
        }
        first
    }
}

impl ArrayMeta {
    /// Source chunks per dimension.
    pub fn grid(&self) -> Vec<u64> {
        let mut g = grid(&self.shape, &self.chunks);
        if let Some(ir) = &self.irregular
            && let Some(slot) = g.get_mut(ir.dim)
        {
            *slot = ir.count();
        }
        g
    }

    /// Source chunks in the whole grid; `None` past 2^64 (a header claiming too much).
    pub fn grid_records(&self) -> Option<u64> {
        self.grid().iter().try_fold(1u64, |n, g| n.checked_mul(*g))
    }

    /// Source chunk `j` along dimension `d`.
    pub fn span(&self, d: usize, j: u64) -> Span {
        match &self.irregular {
            Some(ir) if ir.dim == d => ir.span(j),
            _ => {
                let c = self.chunks.get(d).copied().unwrap_or(1).max(1);
                let start = j * c;
                Span {
                    start,
                    stored: c,
                    valid: c.min(
                        self.shape
                            .get(d)
                            .copied()
                            .unwrap_or(0)
                            .saturating_sub(start),
                    ),
                }
            }
        }
    }

    /// Source chunks along dimension `d` that hold elements `start..end` (not empty).
    pub fn chunks_along(&self, d: usize, start: u64, end: u64) -> std::ops::Range<u64> {
        match &self.irregular {
            Some(ir) if ir.dim == d => ir.chunk_of(start)..ir.chunk_of(end - 1) + 1,
            _ => {
                let c = self.chunks.get(d).copied().unwrap_or(1).max(1);
                start / c..(end - 1) / c + 1
            }
        }
    }

    /// Elements of the largest source chunk (as stored).
    pub fn max_chunk_len(&self) -> u64 {
        let mut shape = self.chunks.clone();
        if let Some(ir) = &self.irregular
            && let Some(slot) = shape.get_mut(ir.dim)
        {
            *slot = ir.runs.iter().map(|(_, c)| *c).max().unwrap_or(1);
        }
        saturating_product(&shape)
    }

    /// Served chunks per dimension.
    pub fn served_grid(&self) -> Vec<u64> {
        grid(&self.shape, &self.served_chunks)
    }

    /// Bytes of one decoded served chunk.
    pub fn served_chunk_bytes(&self) -> u64 {
        // Saturating: a header's claims must not wrap round to a size that passes a budget.
        self.served_chunks
            .iter()
            .fold(u64::from(self.item_size()), |n, c| n.saturating_mul(*c))
    }

    /// Bytes per element.
    pub fn item_size(&self) -> u32 {
        self.dtype.item_size()
    }

    /// Linear (C-order) index of source chunk `idx`, or `None` when it lies outside the grid.
    pub fn linear_index(&self, idx: &[u64]) -> Option<u64> {
        linear_index(&self.grid(), idx)
    }
}

/// Chunks per dimension of `shape` cut into `chunks`.
pub fn grid(shape: &[u64], chunks: &[u64]) -> Vec<u64> {
    shape
        .iter()
        .zip(chunks)
        .map(|(s, c)| s.div_ceil((*c).max(1)))
        .collect()
}

/// The chunk index of linear (C-order) index `linear` in `grid`: the inverse of
/// [`linear_index`].
pub fn grid_index(grid: &[u64], linear: u64) -> Vec<u64> {
    let mut idx = vec![0u64; grid.len()];
    let mut rest = linear;
    for (slot, g) in idx.iter_mut().zip(grid).rev() {
        *slot = rest % g.max(&1);
        rest /= g.max(&1);
    }
    idx
}

/// Linear (C-order) index of `idx` in `grid`, or `None` when it lies outside.
pub fn linear_index(grid: &[u64], idx: &[u64]) -> Option<u64> {
    if idx.len() != grid.len() {
        return None;
    }
    let mut linear = 0u64;
    for (i, g) in idx.iter().zip(grid) {
        if i >= g {
            return None;
        }
        linear = linear.checked_mul(*g)?.checked_add(*i)?;
    }
    Some(linear)
}

impl Manifest {
    /// Parse and check the format version.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON, [`Error::Corrupt`] for an unknown format version.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::json("manifest", e))?;
        if m.format_version != FORMAT_VERSION {
            return Err(Error::corrupt_data(format!(
                "manifest format {} is not {FORMAT_VERSION}; reindex with this version",
                m.format_version
            )));
        }
        Ok(m)
    }

    /// The named array's metadata.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown name.
    pub fn array(&self, name: &str) -> Result<&ArrayMeta> {
        self.arrays
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("no variable {name:?} in dataset {}", self.id)))
    }
}

/// Where one chunk's stored bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Index into [`Manifest::sources`].
    pub source: u32,
    /// HDF5 filter mask: bit i set means filter i was skipped for this chunk.
    pub filter_mask: u32,
    /// Byte offset in the source.
    pub offset: u64,
    /// Stored length in bytes.
    pub length: u64,
}

/// The product of `xs`, saturating: sizes come from headers, which must not wrap round to a
/// small number that passes a check.
pub fn saturating_product<'a>(xs: impl IntoIterator<Item = &'a u64>) -> u64 {
    xs.into_iter().fold(1u64, |n, x| n.saturating_mul(*x))
}

/// Byte range of record `index` within a table.
pub fn record_range(index: u64) -> std::ops::Range<u64> {
    let start = TABLE_HEADER_LEN + index * RECORD_LEN;
    start..start + RECORD_LEN
}

/// Records a table of `stored` holds: up to the last stored chunk.
pub fn table_len(stored: &[(u64, ChunkRef)]) -> u64 {
    stored.iter().map(|(i, _)| i + 1).max().unwrap_or(0)
}

/// The checksum of record `index`'s first 24 bytes.
fn record_check(index: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Encode the table of `stored` chunks (sorted or not, by linear index): [`table_len`]
/// records, those not in `stored` absent.
pub fn encode_table(stored: &[(u64, ChunkRef)]) -> Vec<u8> {
    let records = table_len(stored);
    // `stored` came from the file, so the table is no larger than its chunk list describes.
    let len = usize::try_from(records.saturating_mul(RECORD_LEN)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(TABLE_HEADER_LEN as usize + len);
    out.extend_from_slice(TABLE_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(RECORD_LEN as u32).to_le_bytes());
    let mut body = vec![0u8; len];
    for rec in body.chunks_exact_mut(RECORD_LEN as usize) {
        rec[..4].copy_from_slice(&ABSENT.to_le_bytes());
    }
    for (i, c) in stored {
        let at = (*i * RECORD_LEN) as usize;
        if let Some(rec) = body.get_mut(at..at + RECORD_LEN as usize) {
            rec[..4].copy_from_slice(&c.source.to_le_bytes());
            rec[4..8].copy_from_slice(&c.filter_mask.to_le_bytes());
            rec[8..16].copy_from_slice(&c.offset.to_le_bytes());
            rec[16..24].copy_from_slice(&c.length.to_le_bytes());
        }
    }
    for (i, rec) in body.chunks_exact_mut(RECORD_LEN as usize).enumerate() {
        let check = record_check(i as u64, &rec[..RECORD_BODY]);
        rec[RECORD_BODY..].copy_from_slice(&check.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// Decode record `index`; `None` for a chunk that was never written.
///
/// # Errors
/// [`Error::Corrupt`] when `bytes` is not one record, or not record `index` (its checksum
/// fails: damaged, or moved from another position).
pub fn decode_record(index: u64, bytes: &[u8]) -> Result<Option<ChunkRef>> {
    if bytes.len() as u64 != RECORD_LEN {
        return Err(Error::corrupt_data(format!(
            "chunk table record of {} bytes, expected {RECORD_LEN}",
            bytes.len()
        )));
    }
    let (body, check) = bytes.split_at(RECORD_BODY);
    let u32_at =
        |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let stored_check = u32::from_le_bytes([check[0], check[1], check[2], check[3]]);
    if record_check(index, body) != stored_check {
        return Err(Error::corrupt_data(format!(
            "chunk table record {index} fails its checksum (damaged or out of place)"
        )));
    }
    let source = u32_at(0);
    if source == ABSENT {
        return Ok(None);
    }
    Ok(Some(ChunkRef {
        source,
        filter_mask: u32_at(4),
        offset: u64_at(8),
        length: u64_at(16),
    }))
}

/// Check a table's header, so a stale or foreign object is reported, not misread.
///
/// # Errors
/// [`Error::Corrupt`] for a wrong magic, format or record size.
pub fn check_table_header(header: &[u8]) -> Result<()> {
    let ok = header.len() as u64 == TABLE_HEADER_LEN
        && &header[..8] == TABLE_MAGIC
        && header[8..12] == FORMAT_VERSION.to_le_bytes()
        && header[12..16] == (RECORD_LEN as u32).to_le_bytes();
    if ok {
        Ok(())
    } else {
        Err(Error::corrupt_data("chunk table header is not cloudify's"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn array(shape: Vec<u64>, chunks: Vec<u64>) -> ArrayMeta {
        ArrayMeta {
            shape,
            dims: vec![],
            dtype: DataType::F4,
            served_chunks: chunks.clone(),
            chunks,
            fill_value: Value::Null,
            attrs: Map::new(),
            codecs: vec![],
            table: "t.bin".into(),
            records: 0,
            table_records: 0,
            stored_chunks: 0,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        }
    }

    #[test]
    fn the_indexs_own_values_are_told_from_the_files() {
        let source = |url: &str| SourceInfo {
            url: url.into(),
            size: 1,
            etag: None,
        };
        assert!(source("datasets/tas/values/0a.bin").stored_by_index());
        assert!(!source("sources/tas.nc").stored_by_index());
        assert!(!source("file:///datasets/tas.nc").stored_by_index());
    }

    #[test]
    fn grid_and_linear_index() {
        let a = array(vec![10, 7], vec![4, 3]);
        assert_eq!(a.grid(), vec![3, 3]);
        assert_eq!(a.linear_index(&[2, 1]), Some(7));
        assert_eq!(a.linear_index(&[3, 0]), None);
        assert_eq!(a.linear_index(&[0]), None);
        let scalar = array(vec![], vec![]);
        assert_eq!(scalar.linear_index(&[]), Some(0));
        assert_eq!(a.item_size(), 4);
    }

    #[test]
    fn irregular_chunks_follow_each_file() {
        // Files of 12, 12 and 6 steps chunked by 5, then a file of 4 steps chunked by 4.
        let mut a = array(vec![34, 2], vec![5, 2]);
        a.irregular = Some(Irregular {
            dim: 0,
            runs: vec![(12, 5), (12, 5), (6, 5), (4, 4)],
        });
        assert_eq!(a.grid(), vec![3 + 3 + 2 + 1, 1]);
        let span = |j| {
            let s = a.span(0, j);
            (s.start, s.stored, s.valid)
        };
        assert_eq!(span(0), (0, 5, 5));
        assert_eq!(span(2), (10, 5, 2)); // partial: the file ends at 12
        assert_eq!(span(3), (12, 5, 5));
        assert_eq!(span(7), (29, 5, 1));
        assert_eq!(span(8), (30, 4, 4));
        assert_eq!(span(9).1, 0);
        assert_eq!(a.chunks_along(0, 9, 13), 1..4);
        assert_eq!(a.chunks_along(0, 29, 34), 7..9);
        assert_eq!(a.chunks_along(1, 0, 2), 0..1);
        assert_eq!(a.max_chunk_len(), 10);
    }

    #[test]
    fn table_round_trip() {
        let c = ChunkRef {
            source: 0,
            filter_mask: 2,
            offset: 1 << 40,
            length: 77,
        };
        // Records up to the last stored chunk: the absent one before it, not the ones after.
        let t = encode_table(&[(1, c)]);
        assert_eq!(t.len() as u64, TABLE_HEADER_LEN + 2 * RECORD_LEN);
        assert_eq!(table_len(&[(1, c)]), 2);
        assert_eq!(encode_table(&[]).len() as u64, TABLE_HEADER_LEN);
        check_table_header(&t[..16]).unwrap();
        let rec = |i| &t[record_range(i).start as usize..record_range(i).end as usize];
        assert_eq!(decode_record(0, rec(0)).unwrap(), None);
        assert_eq!(decode_record(1, rec(1)).unwrap(), Some(c));
        assert!(decode_record(0, &t[16..30]).is_err());
        assert!(check_table_header(b"not a table head").is_err());
        // A record read at another position (swapped records), or with a flipped bit, fails.
        assert!(decode_record(0, rec(1)).is_err());
        let mut damaged = rec(1).to_vec();
        damaged[9] ^= 1;
        assert!(decode_record(1, &damaged).is_err());
    }
}
