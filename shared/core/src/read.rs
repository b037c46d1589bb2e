//! The reads behind one request: chunk-table records and source byte ranges, merged, run
//! concurrently, checked against what the index recorded, and counted for `Server-Timing`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::admit::{self, Admission, Grant, Sleep};
use crate::assemble::{self, Region, Row};
use crate::codecs;
use crate::decoded::DecodedCache;
use crate::error::{Error, Result, ResultExt};
use crate::manifest::{self, ArrayMeta, ChunkRef, Manifest, RECORD_LEN, SourceInfo};
use crate::registry::version_dir;
use crate::store::{Counted, Fetched, GetOptions, OpCounter, OpCounts, ReadStore};

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

/// A clock in milliseconds; `None` where time cannot be read.
pub type Clock = Option<fn() -> f64>;

/// Work that keeps a core busy: decoding a source chunk or encoding a served one.
pub type Job = Box<dyn FnOnce() -> Result<Vec<u8>> + Send>;

/// Where a runtime runs [`Job`]s: `cloudify serve` on rayon's pool, so the source chunks of
/// one request and concurrent requests are decoded on every core while the request tasks go
/// on reading. Without one (a Worker's single thread, the Lambda) jobs run in place.
pub type Offload =
    Arc<dyn Fn(Job) -> futures_util::future::BoxFuture<'static, Result<Vec<u8>>> + Send + Sync>;

/// What one request did: every store operation, and time spent reading, decoding and
/// encoding. `Server-Timing` and the request log report it.
#[derive(Debug, Default)]
pub struct Stats {
    ops: OpCounter,
    /// Table and source reads, which the platform's subrequest limit is checked against.
    data_reads: AtomicU64,
    read_us: AtomicU64,
    decode_us: AtomicU64,
    encode_us: AtomicU64,
}

impl Stats {
    /// The store operations so far.
    pub fn ops(&self) -> OpCounts {
        self.ops.counts()
    }

    /// The counter every store operation of the request is recorded in.
    pub fn counter(&self) -> &OpCounter {
        &self.ops
    }

    /// The `Server-Timing` header value.
    pub fn header(&self) -> String {
        let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        let o = self.ops();
        format!(
            "read;desc=\"{} store reads ({} GET, {} ranged GET, {} HEAD, {} LIST), {} bytes\";dur={:.3}, decode;dur={:.3}, encode;dur={:.3}",
            o.total(),
            o.get,
            o.ranged_get,
            o.head,
            o.list,
            o.bytes,
            ms(&self.read_us),
            ms(&self.decode_us),
            ms(&self.encode_us)
        )
    }
}

/// Add the microseconds since `t0` (a reading of `clock`) to `slot`.
fn add_elapsed(clock: Clock, slot: &AtomicU64, t0: Option<f64>) {
    if let (Some(now), Some(t0)) = (clock, t0) {
        slot.fetch_add(((now() - t0) * 1000.0).max(0.0) as u64, Ordering::Relaxed);
    }
}

/// The stores sources are read through, by URL scheme (`file`, `s3`, `http`, `https`); a
/// source named by a key is read from the bucket.
pub type Sources = BTreeMap<String, Arc<dyn ReadStore>>;

/// Everything a request reads through.
pub struct Reader<'a> {
    /// The bucket, counted into the request's stats.
    pub(crate) bucket: &'a dyn ReadStore,
    pub(crate) record_cache: &'a RecordCache,
    pub(crate) decoded: &'a DecodedCache,
    pub(crate) sources: &'a Sources,
    pub(crate) budget: u64,
    pub(crate) limits: Limits,
    pub(crate) concurrency: usize,
    pub(crate) merge_cap: u64,
    pub(crate) clock: Clock,
    pub(crate) stats: &'a Stats,
    /// The budget of bytes in flight this request takes its room from.
    pub(crate) admission: &'a Arc<Admission>,
    /// How long it waits for room, and the timer that ends the wait (none: no end).
    pub(crate) queue: Option<(&'a Sleep, u64)>,
    /// The room it holds: the most it has asked for so far.
    pub(crate) grant: Mutex<Option<Grant>>,
    /// Where decoding and encoding run.
    pub(crate) offload: Option<&'a Offload>,
}

impl Reader<'_> {
    /// Hold `bytes` of the function's budget of bytes in flight, waiting for room behind earlier
    /// requests. A request keeps the most it has asked for; once admitted, it grows into room
    /// there is and otherwise goes on with what it holds, since waiting while holding room
    /// could wait on itself (the blocks of a diagnostic are assembled concurrently).
    ///
    /// # Errors
    /// [`Error::TooLarge`] over the whole budget, [`Error::Busy`] after the queue time.
    pub async fn admit(&self, bytes: u64, what: &str) -> Result<()> {
        let budget = self.admission.budget();
        if bytes > budget {
            return Err(Error::TooLarge(format!(
                "{what} needs about {bytes} bytes in memory at once, over this function's \
                 budget of {budget} bytes for requests in flight (MEMORY_BYTES)"
            )));
        }
        if let Some(held) = self.lock_grant().as_mut() {
            if held.bytes() < bytes {
                held.grow(bytes);
            }
            return Ok(());
        }
        let acquire = self.admission.acquire(bytes);
        let grant = match self.queue {
            None => acquire.await,
            Some((sleep, ms)) => match acquire.within(sleep, ms).await {
                Some(grant) => grant,
                None => {
                    self.admission.timed_out();
                    return Err(Error::Busy(format!(
                        "{what} waited {} s for room among this function's requests in flight \
                         and was not admitted; try again",
                        ms / 1000
                    )));
                }
            },
        };
        let mut held = self.lock_grant();
        // A concurrent part of this request may have been granted more meanwhile.
        if held.as_ref().is_none_or(|g| g.bytes() < grant.bytes()) {
            *held = Some(grant);
        }
        Ok(())
    }

    /// `body`, holding the request's room (shrunk to the body) until the runtime has sent it.
    pub fn hold(&self, body: Bytes) -> Bytes {
        match self.lock_grant().take() {
            Some(grant) => admit::hold(body, grant),
            None => body,
        }
    }

    fn lock_grant(&self) -> std::sync::MutexGuard<'_, Option<Grant>> {
        self.grant.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse, before making them, `more` reads that would take the request past its limit.
    fn check_reads(&self, more: u64, what: &str) -> Result<()> {
        let total = self
            .stats
            .data_reads
            .fetch_add(more, Ordering::Relaxed)
            .saturating_add(more);
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
        // Records past the table's end are chunks never written: nothing to read.
        let (missing, after) = missing.split_at(missing.partition_point(|i| *i < a.table_records));
        for i in after {
            if *i >= a.records {
                return Err(Error::corrupt_data(format!(
                    "chunk {i} of a grid of {} chunks",
                    a.records
                )));
            }
            out.insert(*i, None);
        }
        let runs = assemble::runs(missing);
        self.check_reads(
            runs.len() as u64,
            &format!("reading a chunk table of {}", m.id),
        )?;
        for run in runs {
            let bytes_range =
                manifest::record_range(run.start).start..manifest::record_range(run.end - 1).end;
            let want = bytes_range.end - bytes_range.start;
            let bytes = match self
                .bucket
                .get_with(&table, &GetOptions::range(bytes_range))
                .await
            {
                Ok(Fetched::Object(o)) if o.bytes.len() as u64 == want => o.bytes,
                Ok(Fetched::Object(_)) | Err(Error::RangeNotSatisfiable(_)) => {
                    return Err(Error::corrupt(&*table, "a chunk table is truncated"));
                }
                Ok(_) => return Err(Error::storage(&*table, "a chunk table is missing")),
                Err(e) => return Err(e),
            };
            let mut cache = self.record_cache.lock();
            for (k, rec) in bytes.chunks(RECORD_LEN as usize).enumerate() {
                let i = run.start + k as u64;
                let rec = manifest::decode_record(i, rec).map_err(|e| match e {
                    Error::Corrupt(f) => Error::corrupt(&*table, f.fault),
                    e => e,
                })?;
                cache.put((table.clone(), i), rec);
                out.insert(i, rec);
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
                Error::corrupt_data(format!("a chunk table of {} names source #{s}", m.id))
            })?;
            let bytes = self
                .source_range(source, r.clone())
                .await
                .context(|| format!("source #{s} of dataset {}", m.id))?;
            Ok::<_, Error>((s, r, bytes))
        });
        let out: Vec<_> = stream::iter(reads)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        add_elapsed(self.clock, &self.stats.read_us, t0);
        Ok(out)
    }

    /// One range of a source, conditional on its recorded tag, and checked against its
    /// recorded size.
    async fn source_range(&self, source: &SourceInfo, range: Range<u64>) -> Result<Bytes> {
        let (store, key) = self.source_store(source)?;
        let counted;
        let store = match store {
            Some(s) => {
                counted = Counted::new(s, self.stats.counter());
                &counted as &dyn ReadStore
            }
            None => self.bucket,
        };
        let want = range.end - range.start;
        let options = GetOptions {
            range: Some(range),
            if_match: source.etag.clone(),
            if_none_match: None,
        };
        let url = source.url.as_str();
        let changed = |why: String| {
            Error::changed(
                url,
                format!("a source changed since it was indexed ({why}); reindex the dataset"),
            )
        };
        let resized = |now: u64| {
            changed(format!(
                "its size is {now} bytes, {} when indexed",
                source.size
            ))
        };
        match store.get_with(key, &options).await {
            Ok(Fetched::Object(o)) if o.meta.size != source.size => Err(resized(o.meta.size)),
            Ok(Fetched::Object(o)) if o.bytes.len() as u64 == want => Ok(o.bytes),
            Ok(Fetched::Object(_)) => Err(Error::corrupt(
                url,
                "a source answered fewer bytes than asked for",
            )),
            // Past the end of the object: it shrank, or the index is wrong.
            Err(Error::RangeNotSatisfiable(_)) => match store.head(key).await? {
                Some(m) if m.size != source.size => Err(resized(m.size)),
                _ => Err(Error::corrupt(
                    url,
                    "a source is shorter than its index says; reindex the dataset",
                )),
            },
            Ok(_) => Err(Error::storage(
                url,
                "a source is missing; reindex the dataset",
            )),
            Err(Error::Conflict(f)) => Err(changed(f.fault)),
            Err(e) => Err(e),
        }
    }

    /// The store a source URL is read through (`None`: the bucket) and its key there.
    fn source_store<'s>(
        &'s self,
        source: &'s SourceInfo,
    ) -> Result<(Option<&'s dyn ReadStore>, &'s str)> {
        match source.url.split_once("://") {
            None => Ok((None, source.url.as_str())),
            Some((scheme, rest)) => self
                .sources
                .get(scheme)
                .map(|s| (Some(s.as_ref()), rest.trim_start_matches('/')))
                .ok_or_else(|| {
                    Error::storage(
                        &source.url,
                        format!("this function has no store for {scheme}:// sources"),
                    )
                }),
        }
    }

    /// The stored bytes of source chunk `linear` of array `name`: one table record, one
    /// source range read.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a chunk never written (it reads as the fill value), else as
    /// [`Self::records`] and [`Self::source_ranges`].
    pub async fn raw_chunk(
        &self,
        m: &Manifest,
        version: &str,
        name: &str,
        a: &ArrayMeta,
        linear: u64,
    ) -> Result<Bytes> {
        let record = self.records(m, version, a, &[linear]).await?;
        let Some(Some(c)) = record.get(&linear).copied() else {
            return Err(Error::NotFound(format!(
                "this chunk of {name:?} was never written; it reads as the fill value"
            )));
        };
        let what = format!("a chunk of {name:?}");
        self.admit(c.length, &what).await?;
        self.stored_chunk(m, &c, &what).await
    }

    /// The stored bytes of chunk `c`: one source range read, as `what`.
    async fn stored_chunk(&self, m: &Manifest, c: &ChunkRef, what: &str) -> Result<Bytes> {
        let mut read = self
            .source_ranges(m, vec![(c.source, c.offset..c.offset + c.length)], what)
            .await?;
        read.pop()
            .map(|(_, _, b)| b)
            .ok_or_else(|| Error::corrupt_data(format!("{what}: the read returned nothing")))
    }

    /// Run `encode` where the runtime runs such work, timing it as encoding.
    ///
    /// # Errors
    /// `encode`'s.
    pub async fn encode(
        &self,
        encode: impl FnOnce() -> Result<Vec<u8>> + Send + 'static,
    ) -> Result<Vec<u8>> {
        self.run(&self.stats.encode_us, Box::new(encode)).await
    }

    /// Run `job` through the runtime's offload (else in place), its time added to `slot`.
    async fn run(&self, slot: &AtomicU64, job: Job) -> Result<Vec<u8>> {
        let t0 = self.clock.map(|now| now());
        let out = match self.offload {
            Some(offload) => offload(job).await,
            None => job(),
        };
        add_elapsed(self.clock, slot, t0);
        out
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
    ) -> Result<Bytes> {
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
    ) -> Result<Bytes> {
        self.check_served_size(name, a)?;
        let item = u64::from(a.dtype.item_size());
        // Sources that pack values differently store another type than the one served.
        let src_item = a.unpack.as_ref().map_or(Ok(item), |u| u.item_size())?;
        let out_len = a.served_chunk_bytes();
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
                None => {
                    return Err(Error::corrupt_data(format!(
                        "{name:?}: no table record {l}"
                    )));
                }
            };
            // The chunk's box, and the part of the region in it that is the array's (a
            // partial chunk's padding may lie where the next file's chunk is).
            let spans: Vec<_> = p.iter().enumerate().map(|(d, j)| a.span(d, *j)).collect();
            let origin: Vec<u64> = spans.iter().map(|s| s.start).collect();
            let shape: Vec<u64> = spans.iter().map(|s| s.stored).collect();
            let src_len = manifest::saturating_product(&shape).saturating_mul(src_item);
            let inside = Region {
                start: region.start.clone(),
                end: (region.end.iter().zip(&spans))
                    .map(|(e, s)| (*e).min(s.start + s.valid))
                    .collect(),
            };
            // In elements: the source and served sides may differ in element size.
            let rows = assemble::rows(&origin, &shape, dst_origin, &a.served_chunks, &inside, 1);
            let raw = a.codecs.is_empty() && c.length == src_len;
            // A compressed chunk this served chunk uses in part is likely used by its
            // neighbours too: decoded through the cache, not read here.
            let used: u64 = rows.iter().map(|r| r.len).sum();
            let shared = !raw && used * src_item < src_len;
            if raw {
                ranges.extend(rows.iter().map(|r| {
                    let start = c.offset + r.src * src_item;
                    (c.source, start..start + r.len * src_item)
                }));
            } else if !shared {
                ranges.push((c.source, c.offset..c.offset + c.length));
            }
            plans.push((*c, rows, raw, shared, p.clone(), src_len));
        }
        let what = format!("chunk {idx:?} of {name:?}");
        let decoded: u64 = (plans.iter().filter(|(_, _, raw, ..)| !raw))
            .map(|(.., len)| len)
            .sum();
        let work = decoded + out_len;
        if work > self.limits.work {
            return Err(Error::TooLarge(format!(
                "{what} needs {work} bytes decoded and re-encoded, over this function's CPU \
                 budget of {} bytes per request",
                self.limits.work
            )));
        }
        // Held at once, at most: the reads, the source chunks decoded (all together, each
        // decoded on a core of its own) and the served chunk, then the served chunk and its
        // encoding.
        let reads: u64 = ranges.iter().map(|(_, r)| r.end - r.start).sum();
        // Shared chunks are read apart from `ranges`, through the cache.
        let shared_reads: u64 = (plans.iter().filter(|(.., shared, _, _)| *shared))
            .map(|(c, ..)| c.length)
            .sum();
        let need = (reads + shared_reads + decoded + out_len).max(2 * out_len);
        self.admit(need, &what).await?;
        let fetched = self.source_ranges(m, ranges, &what).await?;
        let slice = |source: u32, r: Range<u64>| -> Result<Bytes> {
            let i = fetched.partition_point(|(s, fr, _)| (*s, fr.start) <= (source, r.start));
            let (_, fr, b) = i
                .checked_sub(1)
                .and_then(|i| fetched.get(i))
                .filter(|(s, fr, _)| *s == source && fr.end >= r.end)
                .ok_or_else(|| Error::corrupt_data(format!("{what}: a planned read is missing")))?;
            Ok(b.slice((r.start - fr.start) as usize..(r.end - fr.start) as usize))
        };
        // Every compressed chunk, decoded at once: those neighbours use too through the cache,
        // the others here.
        let decodes: Vec<_> = (plans.iter().filter(|(_, _, raw, ..)| !raw))
            .map(|(c, _, _, shared, p, src_len)| {
                let stored = (!*shared).then(|| slice(c.source, c.offset..c.offset + c.length));
                async move {
                    match stored {
                        None => self.decoded_chunk(m, name, a, c, p, *src_len).await,
                        Some(stored) => (self.decode(m, name, a, c, p, stored?, *src_len).await)
                            .map(Bytes::from),
                    }
                }
            })
            .collect();
        let mut decodes = stream::iter(decodes)
            .buffered(self.concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?
            .into_iter();
        let big_endian = a.dtype.is_big_endian();
        let missing = || Error::corrupt_data(format!("{what}: a planned decode is missing"));
        let short = || Error::corrupt_data(format!("{what}: a decoded chunk is short"));
        // A served chunk that is one run of one decoded source chunk, its bytes as served
        // (little-endian, not unpacked): that run of the decoded chunk, not a copy of it.
        if let [(_, rows, false, ..)] = plans.as_slice()
            && let [Row { src, dst: 0, len }] = rows.as_slice()
            && a.unpack.is_none()
            && !big_endian
            && len * item == out_len
        {
            let decoded = decodes.next().ok_or_else(missing)?;
            let run = (src * item) as usize..((src + len) * item) as usize;
            decoded.get(run.clone()).ok_or_else(short)?;
            return Ok(decoded.slice(run));
        }
        let mut out = filled(&a.dtype.fill_bytes(&a.fill_value), out_len as usize);
        for (c, rows, raw, ..) in plans {
            let kept;
            let decoded: Option<&[u8]> = if raw {
                None
            } else {
                kept = decodes.next().ok_or_else(missing)?;
                Some(&kept)
            };
            for Row { src, dst, len } in rows {
                let (src, n) = (src * src_item, len * src_item);
                let read;
                let bytes = match decoded {
                    None => {
                        read = slice(c.source, c.offset + src..c.offset + src + n)?;
                        &read[..]
                    }
                    Some(d) => d.get(src as usize..(src + n) as usize).ok_or_else(short)?,
                };
                let target = &mut out[(dst * item) as usize..((dst + len) * item) as usize];
                match &a.unpack {
                    Some(u) => u.unpack_into(c.source, bytes, a.dtype, target)?,
                    None => {
                        target.copy_from_slice(bytes);
                        if big_endian {
                            codecs::swap_bytes(target, item as usize);
                        }
                    }
                }
            }
        }
        Ok(Bytes::from(out))
    }
}

impl Reader<'_> {
    /// Decode stored chunk `c` (grid index `p`) of array `name` where the runtime runs such
    /// work, timed as decoding.
    #[allow(clippy::too_many_arguments)]
    async fn decode(
        &self,
        m: &Manifest,
        name: &str,
        a: &ArrayMeta,
        c: &ChunkRef,
        p: &[u64],
        stored: Bytes,
        src_len: u64,
    ) -> Result<Vec<u8>> {
        let label = format!("source chunk {p:?} of {name:?}");
        let (chain, mask) = (a.codecs.clone(), c.filter_mask);
        let job = move || codecs::decode_source(&chain, mask, &stored, src_len as usize, &label);
        (self.run(&self.stats.decode_us, Box::new(job)).await).map_err(|e| e.at(source_url(m, c)))
    }

    /// Stored chunk `c` decoded: from the warm function's cache, else read and decoded once
    /// however many requests ask for it at the same time.
    async fn decoded_chunk(
        &self,
        m: &Manifest,
        name: &str,
        a: &ArrayMeta,
        c: &ChunkRef,
        p: &[u64],
        src_len: u64,
    ) -> Result<Bytes> {
        let key = (Arc::from(source_url(m, c)), c.offset, c.length);
        self.decoded
            .get_or_decode(key, || async {
                let what = format!("source chunk {p:?} of {name:?}");
                let stored = self.stored_chunk(m, c, &what).await?;
                self.decode(m, name, a, c, p, stored, src_len).await
            })
            .await
    }
}

/// `len` bytes of the element `fill` repeated: zeros straight from the allocator, else by
/// `slice::repeat`'s doubling copies (a byte-by-byte iterator took a sixth of a re-encoding
/// server's time).
fn filled(fill: &[u8], len: usize) -> Vec<u8> {
    if fill.iter().all(|b| *b == 0) {
        return vec![0; len];
    }
    let mut out = fill.repeat(len.div_ceil(fill.len()));
    out.truncate(len);
    out
}

/// The URL (or bucket key) of the source chunk `c` lies in; `?` for a table naming a source
/// the manifest lacks, which the read of it reports.
fn source_url<'m>(m: &'m Manifest, c: &ChunkRef) -> &'m str {
    m.sources
        .get(c.source as usize)
        .map_or("?", |s| s.url.as_str())
}

/// What the costliest served chunk of `a` (as served) asks of a request, at worst: the bytes
/// of the served chunk, of the largest source chunk decoded beside it, of all source chunks
/// it decodes, and its store reads (table records and sources). The index-time check
/// ([`crate::Config::refusal`]) and [`Reader::assemble`]'s checks count alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Bytes of the decoded served chunk.
    pub out: u64,
    /// Bytes of the largest source chunk it decodes (0 for uncompressed sources).
    pub largest: u64,
    /// Bytes of every source chunk it decodes.
    pub decoded: u64,
    /// Store reads: one per source chunk and one table record run per row of them.
    pub reads: u64,
}

impl Cost {
    /// The worst served chunk of `a`: one that overlaps the most source chunks along every
    /// dimension (a served length over a source length starting off its boundaries overlaps
    /// one chunk more than it holds whole).
    pub fn worst(a: &ArrayMeta) -> Self {
        let src_item = a
            .unpack
            .as_ref()
            .and_then(|u| u.item_size().ok())
            .unwrap_or(u64::from(a.item_size()));
        let chunk = a.max_chunk_len().saturating_mul(src_item);
        let grid = a.grid();
        let overlapped: Vec<u64> = (0..a.shape.len())
            .map(|d| {
                let s = a.served_chunks.get(d).copied().unwrap_or(1).max(1);
                let c = a.span(d, 0).stored.max(1);
                let whole = s.div_ceil(c) + u64::from(s % c != 0 || a.irregular.is_some());
                whole.min(grid.get(d).copied().unwrap_or(1)).max(1)
            })
            .collect();
        let chunks = manifest::saturating_product(&overlapped);
        let compressed = !a.codecs.is_empty();
        Self {
            out: a.served_chunk_bytes(),
            largest: if compressed { chunk } else { 0 },
            decoded: if compressed {
                chunks.saturating_mul(chunk)
            } else {
                0
            },
            reads: chunks.saturating_add(chunks / overlapped.last().copied().unwrap_or(1).max(1)),
        }
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
                Error::corrupt_data(format!("{name:?}: source chunk {p:?} is outside its grid"))
            })
        })
        .collect::<Result<_>>()?;
    Ok((pieces, linear))
}

#[cfg(test)]
mod tests {
    use super::filled;

    #[test]
    fn filled_repeats_the_element_to_the_length() {
        assert_eq!(
            filled(&[0, 0, 0xc0, 0x7f], 12),
            [0, 0, 0xc0, 0x7f].repeat(3)
        );
        assert_eq!(filled(&[0; 4], 8), vec![0; 8]);
        assert_eq!(filled(&[1, 2], 3), vec![1, 2, 1]);
        assert!(filled(&[7], 0).is_empty());
    }
}
