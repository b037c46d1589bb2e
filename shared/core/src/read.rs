//! The reads behind one request: chunk-table records and source byte ranges, merged, run
//! concurrently, checked against what the index recorded, and counted for `Server-Timing`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::assemble::{self, Region, Row};
use crate::codecs;
use crate::error::{Error, Result};
use crate::manifest::{self, ArrayMeta, ChunkRef, Manifest, RECORD_LEN, SourceInfo};
use crate::registry::version_dir;
use crate::store::Store;

/// Reads a request may have in flight at once (a Worker's limit of simultaneous connections).
pub const DEFAULT_CONCURRENCY: usize = 6;
/// Largest read that merging adjacent ranges may produce.
pub const DEFAULT_MERGE_CAP: u64 = 16 << 20;

/// Table records a warm function keeps: about 150 bytes each with the cache's bookkeeping, so
/// a few MB.
pub const DEFAULT_RECORD_CACHE: usize = 16_384;

/// Chunk-table records a warm function has read, least recently used out first: a chunk it has
/// resolved before is found again without a table read. Keys name the table by its versioned
/// path, so a reindex never meets stale records.
pub struct RecordCache(Mutex<Records>);

/// Records by table path and index.
type Records = lru::LruCache<(Arc<str>, u64), Option<ChunkRef>>;

impl RecordCache {
    /// A cache of at most `records` records (at least one).
    pub fn new(records: usize) -> Self {
        Self(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(records).unwrap_or(NonZeroUsize::MIN),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A poisoned lock only means a panic elsewhere; the cache is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RecordCache {
    fn default() -> Self {
        Self::new(DEFAULT_RECORD_CACHE)
    }
}

/// What one request may spend beyond bytes read: store reads (a Worker's subrequests) and
/// bytes decoded plus re-encoded (its CPU time, which no clock measures there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Chunk-table and source reads one request may make.
    pub reads: u64,
    /// Bytes one request may decode and re-encode.
    pub work: u64,
}

impl Default for Limits {
    /// No limit: a native process or a Lambda is bounded by the read budget alone.
    fn default() -> Self {
        Self {
            reads: u64::MAX,
            work: u64::MAX,
        }
    }
}

/// A clock in milliseconds; `None` where time cannot be read (it never advances in a Worker
/// during computation anyway).
pub type Clock = Option<fn() -> f64>;

/// What one request did, for the `Server-Timing` header.
#[derive(Debug, Default)]
pub struct Stats {
    reads: AtomicU64,
    bytes: AtomicU64,
    read_us: AtomicU64,
    decode_us: AtomicU64,
    encode_us: AtomicU64,
}

impl Stats {
    /// Store reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The `Server-Timing` header value.
    pub fn header(&self) -> String {
        let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        format!(
            "read;desc=\"{} store reads, {} bytes\";dur={:.3}, decode;dur={:.3}, encode;dur={:.3}",
            self.reads(),
            self.bytes.load(Ordering::Relaxed),
            ms(&self.read_us),
            ms(&self.decode_us),
            ms(&self.encode_us)
        )
    }
}

/// Time `f` into `slot` when a clock exists.
pub(crate) fn timed<T>(clock: Clock, slot: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t0 = clock.map(|now| now());
    let out = f();
    add_elapsed(clock, slot, t0);
    out
}

/// Add the microseconds since `t0` (a reading of `clock`) to `slot`.
fn add_elapsed(clock: Clock, slot: &AtomicU64, t0: Option<f64>) {
    if let (Some(now), Some(t0)) = (clock, t0) {
        slot.fetch_add(((now() - t0) * 1000.0).max(0.0) as u64, Ordering::Relaxed);
    }
}

/// Everything a request reads through.
pub struct Reader<'a> {
    pub(crate) bucket: &'a dyn Store,
    pub(crate) record_cache: &'a RecordCache,
    pub(crate) schemes: &'a BTreeMap<String, Arc<dyn Store>>,
    pub(crate) budget: u64,
    pub(crate) limits: Limits,
    pub(crate) concurrency: usize,
    pub(crate) merge_cap: u64,
    pub(crate) clock: Clock,
    pub(crate) stats: &'a Stats,
}

impl Reader<'_> {
    /// The counter re-encoding time is added to.
    pub(crate) fn stats_encode(&self) -> &AtomicU64 {
        &self.stats.encode_us
    }

    fn count(&self, bytes: u64) {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Refuse, before making them, `more` reads that would take the request past its limit.
    fn check_reads(&self, more: u64, what: &str) -> Result<()> {
        let total = self.stats.reads().saturating_add(more);
        if total > self.limits.reads {
            return Err(Error::TooLarge(format!(
                "{what} needs {total} store reads, over this function's limit of {} per request",
                self.limits.reads
            )));
        }
        Ok(())
    }

    /// The records of `linear` chunks of an array's table: from the warm function's cache, else
    /// one read per run of consecutive indices.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] when the table is missing or short.
    pub async fn records(
        &self,
        m: &Manifest,
        version: &str,
        a: &ArrayMeta,
        linear: &[u64],
    ) -> Result<BTreeMap<u64, Option<ChunkRef>>> {
        let table: Arc<str> = format!("{}/{}", version_dir(&m.id, version), a.table).into();
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let mut cache = self.record_cache.lock();
            for i in linear {
                match cache.get(&(table.clone(), *i)) {
                    Some(rec) => {
                        out.insert(*i, *rec);
                    }
                    None => missing.push(*i),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let runs = assemble::runs(&missing);
        self.check_reads(runs.len() as u64, &format!("reading {table}"))?;
        for run in runs {
            let bytes_range =
                manifest::record_range(run.start).start..manifest::record_range(run.end - 1).end;
            let bytes = match self.bucket.get_range(&table, bytes_range.clone()).await {
                Ok(Some(b)) => b,
                Ok(None) => return Err(Error::Storage(format!("chunk table {table} is missing"))),
                Err(Error::RangeNotSatisfiable(_)) => {
                    return Err(Error::Corrupt(format!("chunk table {table} is truncated")));
                }
                Err(e) => return Err(e),
            };
            self.count(bytes.len() as u64);
            let mut cache = self.record_cache.lock();
            for (k, rec) in bytes.chunks(RECORD_LEN as usize).enumerate() {
                let rec = manifest::decode_record(rec)?;
                cache.put((table.clone(), run.start + k as u64), rec);
                out.insert(run.start + k as u64, rec);
            }
        }
        Ok(out)
    }

    /// Read byte ranges of sources: merged where they touch, at most `concurrency` at once,
    /// each conditional on the source being as indexed. Returns the merged reads, sorted.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over the budget, [`Error::Conflict`] for a changed source,
    /// [`Error::Storage`]/[`Error::Corrupt`] for a missing or short one.
    pub async fn source_ranges(
        &self,
        m: &Manifest,
        ranges: Vec<(u32, Range<u64>)>,
        what: &str,
    ) -> Result<Vec<(u32, Range<u64>, Bytes)>> {
        let merged = assemble::coalesce(ranges, self.merge_cap);
        let total: u64 = merged.iter().map(|(_, r)| r.end - r.start).sum();
        if total > self.budget {
            return Err(Error::TooLarge(format!(
                "{what} needs {total} bytes of source reads, over the read budget of {} bytes",
                self.budget
            )));
        }
        self.check_reads(merged.len() as u64, what)?;
        let t0 = self.clock.map(|now| now());
        let reads = merged.into_iter().map(|(s, r)| async move {
            let source = m.sources.get(s as usize).ok_or_else(|| {
                Error::Corrupt(format!("a chunk table of {} names source #{s}", m.id))
            })?;
            let bytes = self.source_range(source, r.clone()).await?;
            Ok::<_, Error>((s, r, bytes))
        });
        let out: Vec<_> = stream::iter(reads)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        add_elapsed(self.clock, &self.stats.read_us, t0);
        Ok(out)
    }

    async fn source_range(&self, source: &SourceInfo, range: Range<u64>) -> Result<Bytes> {
        let (store, key) = self.source_store(source)?;
        let want = range.end - range.start;
        match store
            .get_range_checked(key, range, source.size, source.etag.as_deref())
            .await
        {
            Ok(Some(b)) if b.len() as u64 == want => {
                self.count(want);
                Ok(b)
            }
            Ok(Some(_)) | Err(Error::RangeNotSatisfiable(_)) => Err(Error::Corrupt(format!(
                "source {} is shorter than when it was indexed; reindex the dataset",
                source.url
            ))),
            Ok(None) => Err(Error::Storage(format!(
                "source {} is missing; reindex the dataset",
                source.url
            ))),
            Err(Error::Conflict(why)) => Err(Error::Conflict(format!(
                "source {} changed since it was indexed ({why}); reindex the dataset",
                source.url
            ))),
            Err(e) => Err(e),
        }
    }

    /// The store a source URL is read through, and its key there.
    fn source_store<'s>(&'s self, source: &'s SourceInfo) -> Result<(&'s dyn Store, &'s str)> {
        match source.url.split_once("://") {
            None => Ok((self.bucket, source.url.as_str())),
            Some((scheme, rest)) => self
                .schemes
                .get(scheme)
                .map(|s| (s.as_ref(), rest.trim_start_matches('/')))
                .ok_or_else(|| {
                    Error::Storage(format!(
                        "this function has no store for {scheme}:// sources ({})",
                        source.url
                    ))
                }),
        }
    }

    /// The decoded, little-endian bytes of served chunk `idx` (padded to the full chunk shape
    /// with the fill value), built from every source chunk it overlaps. Uncompressed source
    /// chunks are read only where the served chunk needs them.
    ///
    /// # Errors
    /// As [`Self::records`] and [`Self::source_ranges`], plus [`Error::Corrupt`] for a chunk
    /// that does not decode.
    pub async fn served_chunk(
        &self,
        m: &Manifest,
        version: &str,
        name: &str,
        a: &ArrayMeta,
        idx: &[u64],
    ) -> Result<Vec<u8>> {
        self.check_served_size(name, a)?;
        let (_, linear) = source_chunks(name, a, &Region::served(a, idx))?;
        let records = self.records(m, version, a, &linear).await?;
        self.assemble(m, name, a, idx, &records).await
    }

    /// Refuse a served chunk larger than the budget before reading anything for it.
    fn check_served_size(&self, name: &str, a: &ArrayMeta) -> Result<()> {
        let out_len = a.served_chunk_bytes();
        if out_len > self.budget {
            return Err(Error::TooLarge(format!(
                "a served chunk of {name:?} is {out_len} bytes, over the budget of {} bytes",
                self.budget
            )));
        }
        Ok(())
    }

    /// [`Self::served_chunk`] from table records already read (`records` holds at least those
    /// of the source chunks it overlaps): callers assembling many chunks read the table once.
    ///
    /// # Errors
    /// As [`Self::served_chunk`].
    pub async fn assemble(
        &self,
        m: &Manifest,
        name: &str,
        a: &ArrayMeta,
        idx: &[u64],
        records: &BTreeMap<u64, Option<ChunkRef>>,
    ) -> Result<Vec<u8>> {
        self.check_served_size(name, a)?;
        let item = u64::from(a.item_size().unwrap_or(1));
        // Sources that pack values differently store another type than the one served.
        let src_item = a.unpack.as_ref().map_or(Ok(item), |u| u.item_size())?;
        let out_len = a.served_chunk_bytes();
        let fill = codecs::fill_bytes(&a.dtype, &a.fill_value);
        let mut out: Vec<u8> = fill
            .iter()
            .copied()
            .cycle()
            .take(out_len as usize)
            .collect();
        let region = Region::served(a, idx);
        let (pieces, linear) = source_chunks(name, a, &region)?;
        let dst_origin = &region.start;
        let largest = a.max_chunk_len() * src_item;
        if !a.codecs.is_empty() && out_len + largest > self.budget {
            return Err(Error::TooLarge(format!(
                "a served chunk of {name:?} decodes source chunks of {largest} bytes; with its \
                 {out_len} bytes that is over the budget of {} bytes",
                self.budget
            )));
        }
        // Per present source chunk: its record and the rows it contributes.
        let mut plans = Vec::new();
        let mut ranges = Vec::new();
        for (p, l) in pieces.iter().zip(&linear) {
            let c = match records.get(l) {
                Some(Some(c)) => c,
                Some(None) => continue, // never written: the fill already there stays
                None => return Err(Error::Corrupt(format!("{name:?}: no table record {l}"))),
            };
            // The chunk's box, and the part of the region in it that is the array's (a
            // partial chunk's padding may lie where the next file's chunk is).
            let spans: Vec<_> = p.iter().enumerate().map(|(d, j)| a.span(d, *j)).collect();
            let origin: Vec<u64> = spans.iter().map(|s| s.start).collect();
            let shape: Vec<u64> = spans.iter().map(|s| s.stored).collect();
            let src_len = shape.iter().product::<u64>() * src_item;
            let inside = Region {
                start: region.start.clone(),
                end: (region.end.iter().zip(&spans))
                    .map(|(e, s)| (*e).min(s.start + s.valid))
                    .collect(),
            };
            // In elements: the source and served sides may differ in element size.
            let rows = assemble::rows(&origin, &shape, dst_origin, &a.served_chunks, &inside, 1);
            let raw = a.codecs.is_empty() && c.length == src_len;
            if raw {
                ranges.extend(rows.iter().map(|r| {
                    let start = c.offset + r.src * src_item;
                    (c.source, start..start + r.len * src_item)
                }));
            } else {
                ranges.push((c.source, c.offset..c.offset + c.length));
            }
            plans.push((*c, rows, raw, p.clone(), src_len));
        }
        let what = format!("chunk {idx:?} of {name:?}");
        let decoded: u64 = (plans.iter().filter(|(_, _, raw, _, _)| !raw))
            .map(|(_, _, _, _, len)| len)
            .sum();
        let work = decoded + out_len;
        if work > self.limits.work {
            return Err(Error::TooLarge(format!(
                "{what} needs {work} bytes decoded and re-encoded, over this function's CPU \
                 budget of {} bytes per request",
                self.limits.work
            )));
        }
        let fetched = self.source_ranges(m, ranges, &what).await?;
        let slice = |source: u32, r: Range<u64>| -> Result<&[u8]> {
            let i = fetched.partition_point(|(s, fr, _)| (*s, fr.start) <= (source, r.start));
            let (_, fr, b) = i
                .checked_sub(1)
                .and_then(|i| fetched.get(i))
                .filter(|(s, fr, _)| *s == source && fr.end >= r.end)
                .ok_or_else(|| Error::Corrupt(format!("{what}: a planned read is missing")))?;
            Ok(&b[(r.start - fr.start) as usize..(r.end - fr.start) as usize])
        };
        let big_endian = a.dtype.starts_with('>');
        for (c, rows, raw, p, src_len) in plans {
            let decoded = if raw {
                None
            } else {
                let stored = slice(c.source, c.offset..c.offset + c.length)?;
                let url = m
                    .sources
                    .get(c.source as usize)
                    .map_or("?", |s| s.url.as_str());
                let label = format!("chunk {p:?} of {name:?} (source {url})");
                Some(timed(self.clock, &self.stats.decode_us, || {
                    codecs::decode_source(
                        &a.codecs,
                        c.filter_mask,
                        stored,
                        src_len as usize,
                        &label,
                    )
                })?)
            };
            for Row { src, dst, len } in rows {
                let (src, n) = (src * src_item, len * src_item);
                let bytes = match &decoded {
                    None => slice(c.source, c.offset + src..c.offset + src + n)?,
                    Some(d) => &d[src as usize..(src + n) as usize],
                };
                let target = &mut out[(dst * item) as usize..((dst + len) * item) as usize];
                match &a.unpack {
                    Some(u) => u.unpack_into(c.source, bytes, &a.dtype, target)?,
                    None => {
                        target.copy_from_slice(bytes);
                        if big_endian {
                            codecs::swap_bytes(target, item as usize);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The source chunks overlapping `region`: their grid indices and linear (table) indices.
///
/// # Errors
/// [`Error::Corrupt`] for a chunk outside the array's grid (a manifest that contradicts itself).
pub fn source_chunks(
    name: &str,
    a: &ArrayMeta,
    region: &Region,
) -> Result<(Vec<Vec<u64>>, Vec<u64>)> {
    let grid = a.grid();
    let pieces = assemble::overlapping_chunks(a, region);
    let linear = pieces
        .iter()
        .map(|p| {
            manifest::linear_index(&grid, p).ok_or_else(|| {
                Error::Corrupt(format!("{name:?}: source chunk {p:?} is outside its grid"))
            })
        })
        .collect::<Result<_>>()?;
    Ok((pieces, linear))
}
