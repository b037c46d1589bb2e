//! The blocks a computation reads, in index order: source chunks, or slabs of uncompressed
//! arrays, each assembled through [`Reader::assemble`] from table records read once.

use std::collections::BTreeMap;

use crate::assemble::Region;
use crate::error::{Error, Result};
use crate::manifest::{self, ArrayMeta, ChunkRef, Manifest};
use crate::read::{self, Reader};

use super::values::Decoding;

/// Largest block of an uncompressed array decoded at once: contiguous variables are read in
/// slabs this size, so memory stays flat for them too.
const BLOCK_BYTES: u64 = 4 << 20;
/// Memory blocks in flight may take: each holds its stored bytes, its decoded bytes and, while
/// unshuffling, a copy (about three times its decoded size).
const IN_FLIGHT_BYTES: u64 = 24 << 20;

/// Values of array `name` (CF-decoded), read through served chunks with one table read.
///
/// # Errors
/// As [`Reader::assemble`]; [`Error::BadRequest`] when it holds no numbers.
pub async fn read_values(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    name: &str,
) -> Result<Vec<f64>> {
    let a = m.array(name)?;
    let decoding = Decoding::of(name, a)?;
    // Held as f64 whatever its type: refused before it is allocated when over the budget.
    let values = manifest::saturating_product(&a.shape);
    if values.saturating_mul(8) > reader.budget {
        return Err(Error::TooLarge(format!(
            "{name:?} has {values} values, over the read budget of {} bytes as numbers",
            reader.budget
        )));
    }
    let blocks = Blocks::new(a, &vec![0..u64::MAX; a.shape.len()]);
    let what = format!("the values of {name:?}");
    reader
        .admit(values.saturating_mul(8) + blocks.per_block(), &what)
        .await?;
    let records = blocks.records(reader, m, version, name).await?;
    let mut whole = vec![f64::NAN; usize::try_from(values).unwrap_or(usize::MAX)];
    let mut vals = Vec::new();
    for idx in blocks.indices() {
        let bytes = reader
            .assemble(m, name, &blocks.meta, &idx, &records)
            .await?;
        vals.clear();
        decoding.decode(&bytes, &mut vals);
        let region = Region::served(&blocks.meta, &idx);
        let n = match (region.start.last(), region.end.last()) {
            (Some(s), Some(e)) => (e - s) as usize,
            _ => 1,
        };
        for_each_row(&region, &blocks.meta.served_chunks, |global, local| {
            let at = manifest::linear_index(&a.shape, global).unwrap_or(0) as usize;
            if let (Some(dst), Some(src)) = (whole.get_mut(at..at + n), vals.get(local..local + n))
            {
                dst.copy_from_slice(src);
            }
        });
    }
    Ok(whole)
}

/// The blocks a computation reads: source chunks, or for uncompressed arrays slabs of at most
/// [`BLOCK_BYTES`], over the bounding box of a selection.
pub(super) struct Blocks {
    /// The array with `served_chunks` set to the block shape, for [`Reader::assemble`].
    pub(super) meta: ArrayMeta,
    /// Block index range per dimension.
    pub(super) ranges: Vec<std::ops::Range<u64>>,
}

impl Blocks {
    /// What assembling one block holds.
    pub(super) fn per_block(&self) -> u64 {
        per_block(&self.meta)
    }

    pub(super) fn new(a: &ArrayMeta, bbox: &[std::ops::Range<u64>]) -> Self {
        let mut shape = a.chunks.clone();
        if a.codecs.is_empty() {
            let item = u64::from(a.item_size());
            for d in 0..shape.len() {
                let rest = manifest::saturating_product(&shape[d + 1..]).saturating_mul(item);
                if shape[d].saturating_mul(rest) > BLOCK_BYTES {
                    shape[d] = (BLOCK_BYTES / rest.max(1)).max(1);
                } else {
                    break;
                }
            }
        }
        let mut meta = a.clone();
        meta.served_chunks = shape;
        let ranges = bbox
            .iter()
            .zip(&a.shape)
            .zip(&meta.served_chunks)
            .map(|((r, n), c)| {
                let end = r.end.min(*n);
                if r.start >= end {
                    0..0
                } else {
                    r.start / c..(end - 1) / c + 1
                }
            })
            .collect();
        Self { meta, ranges }
    }

    /// Block indices in C order.
    pub(super) fn indices(&self) -> impl Iterator<Item = Vec<u64>> + '_ {
        let lengths: Vec<u64> = self.ranges.iter().map(|r| r.end - r.start).collect();
        let total = manifest::saturating_product(&lengths);
        (0..total).map(move |mut k| {
            let mut idx = vec![0; self.ranges.len()];
            for d in (0..self.ranges.len()).rev() {
                let n = self.ranges[d].end - self.ranges[d].start;
                idx[d] = self.ranges[d].start + k % n;
                k /= n;
            }
            idx
        })
    }

    /// Source chunks the blocks overlap, as table indices.
    pub(super) fn source_chunks(&self, name: &str) -> Result<Vec<u64>> {
        let start: Vec<u64> = self
            .ranges
            .iter()
            .zip(&self.meta.served_chunks)
            .map(|(r, c)| r.start * c)
            .collect();
        let end = self
            .ranges
            .iter()
            .zip(&self.meta.served_chunks)
            .zip(&self.meta.shape)
            .map(|((r, c), n)| (r.end * c).min(*n))
            .collect();
        Ok(read::source_chunks(name, &self.meta, &Region { start, end })?.1)
    }

    async fn records(
        &self,
        reader: &Reader<'_>,
        m: &Manifest,
        version: &str,
        name: &str,
    ) -> Result<BTreeMap<u64, Option<ChunkRef>>> {
        let linear = self.source_chunks(name)?;
        reader.records(m, version, &self.meta, &linear).await
    }
}

/// Blocks read ahead at once: the reader's concurrency, fewer for large blocks so memory stays
/// within [`IN_FLIGHT_BYTES`].
pub(super) fn in_flight(meta: &ArrayMeta, concurrency: usize) -> usize {
    ((IN_FLIGHT_BYTES / per_block(meta)) as usize).clamp(1, concurrency.max(1))
}

/// What assembling one block of `meta` holds: its reads, decoded source chunks and the block.
fn per_block(meta: &ArrayMeta) -> u64 {
    3 * meta.served_chunk_bytes().max(1)
}

/// Call `row(global start, local offset)` for each innermost row of `region` within a block
/// of `shape` starting at the region's start.
pub(super) fn for_each_row(region: &Region, shape: &[u64], mut row: impl FnMut(&[u64], usize)) {
    let nd = region.start.len();
    if nd == 0 {
        row(&[], 0);
        return;
    }
    if region.start.iter().zip(&region.end).any(|(s, e)| s >= e) {
        return;
    }
    let mut global = region.start.clone();
    loop {
        let local = (0..nd).fold(0u64, |acc, d| {
            acc * shape[d] + (global[d] - region.start[d])
        });
        row(&global, local as usize);
        // Advance every dimension but the last, odometer-wise.
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            global[d] += 1;
            if global[d] < region.end[d] {
                break;
            }
            global[d] = region.start[d];
        }
    }
}
