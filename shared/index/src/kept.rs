//! What a rerun keeps of the sources it read before, so that it reads only new or changed ones.
//!
//! Beside each version of a concatenated dataset, [`KEPT_FILE`] holds every source indexed
//! alone (its manifest and chunk lists) and the stored bytes of its coordinate chunks: all that
//! the concatenation reads of a source. A rerun takes a source whose URL, size and tag are as
//! recorded from there, and reads only the others.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cloudify_core::manifest::encode_table;
use cloudify_core::registry::{Registry, version_dir};
use cloudify_core::{ChunkRef, Manifest, ReadStore, ReadStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::netcdf4::{ArrayTable, Indexed};
use crate::source::{RangeRead, SourceSpec};

/// The object's name in a version's folder.
pub const KEPT_FILE: &str = "sources.json.gz";
/// Most stored coordinate bytes kept of one source; a source with more is read again.
const MAX_KEPT: u64 = 16 << 20;
/// Bytes of one chunk in a kept table: linear index, offset, length, filter mask.
const KEPT_RECORD: usize = 28;

/// Sources read before, by URL, size and tag.
#[derive(Clone, Default)]
pub struct Kept(HashMap<(String, u64, Option<String>), Source>);

/// One source as read before.
#[derive(Clone)]
struct Source {
    /// The source indexed alone.
    indexed: Indexed,
    /// Stored bytes of its coordinate chunks, by offset.
    ranges: Arc<BTreeMap<u64, Vec<u8>>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kept({} sources)", self.0.len())
    }
}

fn identity(spec: &SourceSpec) -> (String, u64, Option<String>) {
    (spec.url.clone(), spec.meta.size, spec.meta.etag.clone())
}

impl Kept {
    /// What the current version of dataset `id` kept; nothing when it has no such file, or one
    /// another indexer version wrote (then every source is read).
    ///
    /// # Errors
    /// When the bucket cannot be read.
    pub async fn load(bucket: &dyn ReadStore, id: &str) -> Result<Self> {
        let registry = Registry::load(bucket).await?;
        let Some(entry) = registry.datasets.get(id) else {
            return Ok(Self::default());
        };
        let key = format!("{}/{KEPT_FILE}", version_dir(id, &entry.version));
        let Some(o) = bucket.get(&key).await? else {
            return Ok(Self::default());
        };
        // A file this indexer cannot read costs a full rerun, never a failed one.
        Ok(Self::decode(&o.bytes).unwrap_or_default())
    }

    /// Source `spec` as read before, its chunks naming it as source `index`, with a reader
    /// that answers its coordinate chunks from memory.
    pub(crate) fn get(&self, spec: &SourceSpec, index: u32) -> Option<(Indexed, SourceSpec)> {
        let kept = self.0.get(&identity(spec))?;
        let mut indexed = kept.indexed.clone();
        for t in &mut indexed.tables {
            for (_, c) in &mut t.stored {
                c.source = index;
            }
        }
        Some((indexed, remembering(spec, kept.ranges.clone())))
    }

    /// The stored bytes of the coordinate chunks (`names`) of `spec`, just indexed alone as
    /// `indexed`, by offset; `None` for a source with more than [`MAX_KEPT`] bytes of them.
    /// The reading half of keeping a source, which sources do at once.
    ///
    /// # Errors
    /// [`IndexError::Source`] when a chunk cannot be read.
    pub(crate) fn coordinate_chunks(
        spec: &SourceSpec,
        indexed: &Indexed,
        names: &[String],
    ) -> Result<Option<BTreeMap<u64, Vec<u8>>>> {
        let m = &indexed.manifest;
        let chunks: Vec<ChunkRef> = names
            .iter()
            .filter_map(|n| indexed.tables.get(m.arrays.get_index_of(n)?))
            .flat_map(|t| t.stored.iter().map(|(_, c)| *c))
            .collect();
        if chunks.iter().map(|c| c.length).sum::<u64>() > MAX_KEPT {
            return Ok(None);
        }
        let mut ranges = BTreeMap::new();
        for c in chunks {
            let mut buf = vec![0u8; c.length as usize];
            spec.reader
                .read_at(c.offset, &mut buf)
                .map_err(|e| IndexError::Source {
                    file: spec.url.clone(),
                    fault: format!("cannot read a coordinate chunk at {}: {e}", c.offset),
                })?;
            ranges.insert(c.offset, buf);
        }
        Ok(Some(ranges))
    }

    /// Keep source `spec`, indexed alone as `indexed`, with its coordinate chunks `ranges`
    /// ([`Self::coordinate_chunks`]). Returns the reader the concatenation should read it
    /// through, which answers those chunks from memory; a source without them is not kept.
    pub(crate) fn insert(
        &mut self,
        spec: &SourceSpec,
        indexed: &Indexed,
        ranges: Option<BTreeMap<u64, Vec<u8>>>,
    ) -> SourceSpec {
        let Some(ranges) = ranges else {
            return spec.clone();
        };
        let ranges = Arc::new(ranges);
        self.0.insert(
            identity(spec),
            Source {
                indexed: indexed.clone(),
                ranges: ranges.clone(),
            },
        );
        remembering(spec, ranges)
    }

    /// What is kept of the sources `specs` (those of the new version).
    pub(crate) fn only(&self, specs: &[SourceSpec]) -> Self {
        let kept = specs.iter().filter_map(|s| {
            let key = identity(s);
            self.0.get(&key).map(|source| (key, source.clone()))
        });
        Self(kept.collect())
    }

    /// The gzipped JSON file.
    ///
    /// # Errors
    /// Never in practice: serialising and compressing into memory.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut sources: Vec<KeptJson> = self
            .0
            .iter()
            .map(|((url, size, etag), s)| KeptJson {
                url: url.clone(),
                size: *size,
                etag: etag.clone(),
                manifest: s.indexed.manifest.clone(),
                tables: s.indexed.tables.iter().map(encode_chunks).collect(),
                warnings: s.indexed.warnings.clone(),
                ranges: s
                    .ranges
                    .iter()
                    .map(|(o, b)| (*o, BASE64.encode(b)))
                    .collect(),
            })
            .collect();
        sources.sort_by(|a, b| a.url.cmp(&b.url));
        let file = FileJson {
            indexer: env!("CARGO_PKG_VERSION").to_owned(),
            sources,
        };
        let json = serde_json::to_vec(&file).map_err(|e| IndexError::Invalid(e.to_string()))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|e| IndexError::Invalid(format!("compressing {KEPT_FILE}: {e}")))
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .ok()?;
        let file: FileJson = serde_json::from_slice(&json).ok()?;
        if file.indexer != env!("CARGO_PKG_VERSION") {
            return None;
        }
        let mut out = HashMap::new();
        for s in file.sources {
            if s.tables.len() != s.manifest.arrays.len() {
                return None;
            }
            let mut tables = Vec::with_capacity(s.tables.len());
            for t in &s.tables {
                let stored = decode_chunks(t)?;
                tables.push(ArrayTable {
                    bytes: encode_table(&stored),
                    stored,
                });
            }
            let mut ranges = BTreeMap::new();
            for (offset, b) in &s.ranges {
                ranges.insert(*offset, BASE64.decode(b).ok()?);
            }
            let indexed = Indexed {
                manifest: s.manifest,
                tables,
                absolute_urls: Vec::new(),
                warnings: s.warnings,
                inline: Vec::new(),
                kept: None,
                sources_read: 0,
            };
            let source = Source {
                indexed,
                ranges: Arc::new(ranges),
            };
            out.insert((s.url, s.size, s.etag), source);
        }
        Some(Self(out))
    }
}

#[derive(Serialize, Deserialize)]
struct FileJson {
    /// The indexer's version: another's file is not used.
    indexer: String,
    sources: Vec<KeptJson>,
}

#[derive(Serialize, Deserialize)]
struct KeptJson {
    url: String,
    size: u64,
    etag: Option<String>,
    manifest: Manifest,
    /// Per array, its stored chunks as [`KEPT_RECORD`]-byte records, base64.
    tables: Vec<String>,
    warnings: Vec<String>,
    /// Coordinate chunks: offset and base64 bytes.
    ranges: Vec<(u64, String)>,
}

fn encode_chunks(t: &ArrayTable) -> String {
    let mut out = Vec::with_capacity(t.stored.len() * KEPT_RECORD);
    for (linear, c) in &t.stored {
        out.extend_from_slice(&linear.to_le_bytes());
        out.extend_from_slice(&c.offset.to_le_bytes());
        out.extend_from_slice(&c.length.to_le_bytes());
        out.extend_from_slice(&c.filter_mask.to_le_bytes());
    }
    BASE64.encode(out)
}

fn decode_chunks(text: &str) -> Option<Vec<(u64, ChunkRef)>> {
    let bytes = BASE64.decode(text).ok()?;
    if bytes.len() % KEPT_RECORD != 0 {
        return None;
    }
    let u64_at =
        |r: &[u8], at: usize| Some(u64::from_le_bytes(r.get(at..at + 8)?.try_into().ok()?));
    bytes
        .chunks_exact(KEPT_RECORD)
        .map(|r| {
            let mask = u32::from_le_bytes(r.get(24..28)?.try_into().ok()?);
            let c = ChunkRef {
                source: 0,
                filter_mask: mask,
                offset: u64_at(r, 8)?,
                length: u64_at(r, 16)?,
            };
            Some((u64_at(r, 0)?, c))
        })
        .collect()
}

/// `spec`, read through memory where `ranges` hold the bytes.
fn remembering(spec: &SourceSpec, ranges: Arc<BTreeMap<u64, Vec<u8>>>) -> SourceSpec {
    SourceSpec {
        reader: Arc::new(Remembered {
            ranges,
            source: spec.reader.clone(),
        }),
        ..spec.clone()
    }
}

/// A source some of whose ranges are in memory: reads inside them cost nothing, others go to
/// the source.
struct Remembered {
    ranges: Arc<BTreeMap<u64, Vec<u8>>>,
    source: Arc<dyn RangeRead>,
}

impl RangeRead for Remembered {
    fn size(&self) -> u64 {
        self.source.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if let Some((start, bytes)) = self.ranges.range(..=offset).next_back() {
            let from = (offset - start) as usize;
            if let Some(src) = bytes.get(from..from + buf.len()) {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        self.source.read_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Counting(std::sync::atomic::AtomicUsize);

    impl RangeRead for Counting {
        fn size(&self) -> u64 {
            100
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = offset as u8 + i as u8);
            Ok(())
        }
    }

    #[test]
    fn remembered_ranges_answer_from_memory_and_the_rest_from_the_source() {
        let source = Arc::new(Counting(0.into()));
        let ranges = Arc::new(BTreeMap::from([(10, vec![1, 2, 3, 4]), (40, vec![9, 9])]));
        let r = Remembered {
            ranges,
            source: source.clone(),
        };
        let mut buf = [0u8; 2];
        r.read_at(11, &mut buf).unwrap();
        assert_eq!(buf, [2, 3]);
        r.read_at(40, &mut buf).unwrap();
        assert_eq!(buf, [9, 9]);
        assert_eq!(source.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        // Past the end of a kept range, and before the first: from the source.
        r.read_at(13, &mut buf).unwrap();
        assert_eq!(buf, [13, 14]);
        r.read_at(0, &mut buf).unwrap();
        assert_eq!(source.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn chunk_lists_round_trip() {
        let c = ChunkRef {
            source: 0,
            filter_mask: 2,
            offset: 1 << 40,
            length: 77,
        };
        let t = ArrayTable {
            bytes: Vec::new(),
            stored: vec![(3, c), (9, ChunkRef { offset: 5, ..c })],
        };
        assert_eq!(decode_chunks(&encode_chunks(&t)), Some(t.stored.clone()));
        assert_eq!(decode_chunks("AAAA"), None);
    }
}
