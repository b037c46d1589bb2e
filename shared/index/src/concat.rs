//! Several sources of one dataset concatenated along a dimension (`--concat-dim`).
//!
//! Each source is indexed alone (or taken from what the last run kept), then the sources are
//! ordered by the first value of the dimension's coordinate, checked against the first
//! (variables, dimensions, dtypes, codecs, the values of the other coordinates), and their
//! chunk tables are laid end to end along the dimension.
//!
//! - Chunk boundaries that stay regular across files (the same chunk length `c` in every
//!   file, every file but the last a multiple of `c` long) make a regular grid every route
//!   serves.
//! - An uncompressed contiguous variable (NetCDF-3, or HDF5 written without chunking) is cut
//!   into rows, whose byte ranges are known, so files of any lengths (leap years) line up.
//! - Other chunks that do not line up are recorded per file ([`Irregular`]): the re-encoding
//!   routes assemble their regular served grid across file boundaries; `/kerchunk` leaves
//!   them out.
//! - Time values in other units than the first file's are converted and stored in the bucket.
//! - Values packed differently (`scale_factor`, `add_offset`, `_FillValue`) are unpacked per
//!   file by the re-encoding routes ([`Unpack`]); `/kerchunk` leaves them out.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};

use cloudify_core::cftime::{Calendar, Units};
use cloudify_core::manifest::{self, Irregular, encode_table};
use cloudify_core::unpack::{Packing, UNPACKED_ATTRS, Unpack};
use cloudify_core::{ArrayMeta, ChunkRef, DataType, Manifest};
use serde_json::Value;

use crate::coords::{read_le_bytes, read_values};
use crate::error::{IndexError, Result};
use crate::kept::Kept;
use crate::netcdf4::{ArrayTable, Indexed};
use crate::source::SourceSpec;

/// Sources read at once. A remote source's reads wait on the network far longer than on a
/// core (tens of milliseconds per request to an object store), so this is sized for latency.
const READERS: usize = 16;

/// Largest array along the dimension stored whole in the bucket when its chunks do not line up.
const MAX_INLINE: u64 = 16 << 20;

/// Attributes that change how stored values decode: they must agree across files, but for the
/// packing (the first two) of variables along the dimension, which are unpacked per source.
const DECODING: [&str; 3] = ["scale_factor", "add_offset", "calendar"];

/// How to aggregate: the dimension, and the bucket's absolute URL (for the kerchunk export of
/// values the indexer stores in the bucket itself).
#[derive(Debug, Clone)]
pub struct Concat {
    /// The dimension the sources follow each other along.
    pub dim: String,
    /// Absolute URL of the bucket's root, without a trailing slash.
    pub bucket_url: String,
}

/// One source, indexed alone.
struct Part {
    indexed: Indexed,
    spec: SourceSpec,
}

impl Part {
    fn err(&self, variable: &str, fault: impl Into<String>) -> IndexError {
        IndexError::Variable {
            file: self.spec.url.clone(),
            variable: variable.to_owned(),
            fault: fault.into(),
        }
    }

    fn array(&self, name: &str) -> Option<(&ArrayMeta, &ArrayTable)> {
        let m = &self.indexed.manifest;
        let i = m.arrays.get_index_of(name)?;
        Some((&m.arrays[i], self.indexed.tables.get(i)?))
    }

    /// Every value of array `name`, as f64.
    fn values(&self, name: &str, sources: &[SourceSpec]) -> Result<Vec<f64>> {
        let (a, t) = self
            .array(name)
            .ok_or_else(|| self.err(name, "is missing"))?;
        read_values(a, &t.stored, sources).map_err(|f| self.err(name, f))
    }

    /// CF time units and calendar of array `name`, when it has them; a bounds variable
    /// without its own takes those of the variable it bounds, as CF says.
    fn time_units(&self, name: &str) -> Option<(Units, Calendar, String)> {
        let (a, _) = self.array(name)?;
        let parent = || {
            self.indexed
                .manifest
                .arrays
                .values()
                .find(|p| p.attrs.get("bounds").and_then(Value::as_str) == Some(name))
        };
        let owner = if a.attrs.contains_key("units") {
            a
        } else {
            parent()?
        };
        let text = owner.attrs.get("units")?.as_str()?;
        let units = Units::parse(text)?;
        let calendar = Calendar::parse(owner.attrs.get("calendar").and_then(Value::as_str))?;
        Some((units, calendar, text.to_owned()))
    }
}

/// Index `sources` as one dataset concatenated along `how.dim`. Chunk references name the
/// sources by their position in the returned list (ordered along the dimension), which ends
/// with any object the indexer stores in the bucket (see [`Indexed::inline`]).
///
/// # Errors
/// [`IndexError::Variable`]/[`IndexError::Source`] naming the first file that disagrees with
/// the first one, and what disagrees.
pub(crate) fn concat(
    id: &str,
    sources: &[SourceSpec],
    how: &Concat,
    kept: &Kept,
    read_one: impl Fn(&SourceSpec, u32) -> Result<Indexed> + Sync,
) -> Result<(Indexed, Vec<SourceSpec>)> {
    let dim = how.dim.as_str();
    let mut parts = Vec::with_capacity(sources.len());
    let mut keep = kept.only(sources);
    let known: Vec<Option<(Indexed, SourceSpec)>> = (sources.iter().enumerate())
        .map(|(i, spec)| kept.get(spec, i as u32))
        .collect();
    let fresh = read_many(
        sources,
        |i| known[i].is_none(),
        |spec, i| {
            let indexed = read_one(spec, i)?;
            let names = coordinates_and_bounds(&indexed.manifest);
            let ranges = Kept::coordinate_chunks(spec, &indexed, &names)?;
            Ok((indexed, ranges))
        },
    );
    for ((spec, known), fresh) in sources.iter().zip(known).zip(fresh) {
        let (indexed, spec) = match (known, fresh) {
            (Some(known), _) => known,
            (None, Some(read)) => {
                let (indexed, ranges) = read?;
                let spec = keep.insert(spec, &indexed, ranges);
                (indexed, spec)
            }
            // Reads stop at a failure, which comes earlier in this order (or a reader died).
            (None, None) => {
                return Err(IndexError::Source {
                    file: spec.url.clone(),
                    fault: "not read: its reader stopped".into(),
                });
            }
        };
        parts.push(Part { indexed, spec });
    }
    // Sources are read through the parts' readers from here on.
    let sources: Vec<SourceSpec> = parts.iter().map(|p| p.spec.clone()).collect();
    let sources = sources.as_slice();
    if !parts[0]
        .indexed
        .manifest
        .arrays
        .values()
        .any(|a| a.dims.iter().any(|d| d == dim))
    {
        return Err(IndexError::Invalid(format!(
            "{}: no variable has the dimension {dim:?} given to --concat-dim",
            sources[0].url
        )));
    }
    let mut parts = order(parts, dim, sources)?;
    // Chunk references by position along the dimension.
    let mut specs: Vec<SourceSpec> = parts.iter().map(|p| p.spec.clone()).collect();
    for (j, p) in parts.iter_mut().enumerate() {
        for t in &mut p.indexed.tables {
            for (_, c) in &mut t.stored {
                c.source = j as u32;
            }
            t.bytes = encode_table(&t.stored);
        }
    }
    let first = &parts[0];
    let fixed = fixed_coordinates(first, dim, &specs)?;
    for p in &parts[1..] {
        agree(first, p, dim, &fixed, &specs)?;
    }

    let mut out = first.indexed.clone();
    out.warnings = parts
        .iter()
        .flat_map(|p| p.indexed.warnings.clone())
        .collect();
    let names: Vec<String> = out.manifest.arrays.keys().cloned().collect();
    let coordinates = coordinates_and_bounds(&out.manifest);
    for (position, name) in names.iter().enumerate() {
        let a = out.manifest.arrays[position].clone();
        let Some(k) = a.dims.iter().position(|d| d == dim) else {
            continue;
        };
        let converted = match first.time_units(name) {
            Some((units, calendar, text)) if parts[1..].iter().any(|p| differs(p, name, &text)) => {
                Some(convert(&parts, name, k, &units, calendar, &specs)?)
            }
            _ => None,
        };
        let stored = match converted {
            Some(values) => Some((
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DataType::F8,
            )),
            None => match join(&parts, name, k, !coordinates.contains(name)) {
                Ok(joined) => {
                    (out.manifest.arrays[position], out.tables[position]) = joined;
                    None
                }
                // A coordinate (or its bounds) along the dimension, say with an unlimited
                // dimension's 512-long chunks, is stored whole instead: it is small, and read
                // at index time anyway. Data variables are never read.
                Err(_) if k == 0 && coordinates.contains(name) && bytes_of(&a) <= MAX_INLINE => {
                    Some((concatenated(&parts, name, &specs)?, a.dtype.little_endian()))
                }
                Err(e) => return Err(e),
            },
        };
        if let Some((bytes, dtype)) = stored {
            let (meta, table, spec) = inline(id, &a, bytes.clone(), dtype, specs.len() as u32, how);
            out.inline.push((spec.url.clone(), bytes));
            specs.push(spec);
            out.manifest.arrays[position] = meta;
            out.tables[position] = table;
        } else if let Some(packings) = packed_differently(&parts, name) {
            unpacked(&mut out.manifest.arrays[position], packings);
        }
    }
    out.manifest.sources = specs.iter().map(SourceSpec::info).collect();
    out.absolute_urls = specs.iter().map(|s| s.absolute_url.clone()).collect();
    out.kept = Some(keep);
    out.sources_read = parts.iter().map(|p| p.indexed.sources_read).sum();
    Ok((out, specs))
}

/// `read(source, position)` of each source `wanted(position)` says, [`READERS`] at a time on
/// scoped threads, taken in order; the results by position, `None` where not wanted or not
/// started because a read had failed.
fn read_many<T: Send>(
    sources: &[SourceSpec],
    wanted: impl Fn(usize) -> bool + Sync,
    read: impl Fn(&SourceSpec, u32) -> Result<T> + Sync,
) -> Vec<Option<Result<T>>> {
    let todo: Vec<usize> = (0..sources.len()).filter(|&i| wanted(i)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut out: Vec<Option<Result<T>>> = (0..sources.len()).map(|_| None).collect();
    let work = || {
        let mut done = Vec::new();
        while !failed.load(AtomicOrdering::Relaxed) {
            let Some(&i) = todo.get(next.fetch_add(1, AtomicOrdering::Relaxed)) else {
                break;
            };
            let result = read(&sources[i], i as u32);
            if result.is_err() {
                failed.store(true, AtomicOrdering::Relaxed);
            }
            done.push((i, result));
        }
        done
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..READERS.min(todo.len()))
            .map(|_| scope.spawn(work))
            .collect();
        for w in workers {
            // A reader that panicked leaves its sources unread, reported as such.
            for (i, result) in w.join().unwrap_or_default() {
                out[i] = Some(result);
            }
        }
    });
    out
}

/// How each part packs the numbers of array `name`, when not every part packs them alike.
fn packed_differently(parts: &[Part], name: &str) -> Option<Vec<Packing>> {
    let packings: Vec<Packing> = parts
        .iter()
        .map(|p| p.array(name).map(|(a, _)| Packing::of(a)))
        .collect::<Option<_>>()?;
    let numeric = parts[0]
        .array(name)
        .is_some_and(|(a, _)| a.dtype.is_numeric());
    (numeric && packings.iter().any(|p| *p != packings[0])).then_some(packings)
}

/// Serve array `a` as floats unpacked per source (`packings`, by source position), in the
/// widest type any source unpacks to; `/kerchunk`, which passes stored chunks through, leaves
/// it out.
fn unpacked(a: &mut ArrayMeta, packings: Vec<Packing>) {
    let wide = packings.iter().any(|p| p.float.size == 8);
    a.unpack = Some(Unpack {
        dtype: a.dtype,
        sources: packings.into_iter().map(Some).collect(),
        all: None,
    });
    a.dtype = if wide { DataType::F8 } else { DataType::F4 };
    a.fill_value = Value::from("NaN");
    a.unpacked_dtype = None;
    for attr in UNPACKED_ATTRS {
        a.attrs.remove(attr);
    }
    a.kerchunk_excluded = Some(
        "its files pack its values differently (scale_factor, add_offset or _FillValue); the \
         re-encoding routes unpack them per file"
            .into(),
    );
}

/// Coordinate variables and the bounds variables they name.
fn coordinates_and_bounds(m: &Manifest) -> Vec<String> {
    let mut names: Vec<String> = m
        .coordinate_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let bounds: Vec<String> = names
        .iter()
        .filter_map(|n| {
            m.arrays
                .get(n)?
                .attrs
                .get("bounds")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    names.extend(bounds);
    names
}

/// Decoded size of a whole array.
fn bytes_of(a: &ArrayMeta) -> u64 {
    manifest::saturating_product(&a.shape).saturating_mul(u64::from(a.item_size()))
}

/// Sort the parts by the first value of the dimension's coordinate (in the first file's time
/// units when it has them); keep the given order when there is no coordinate.
fn order(parts: Vec<Part>, dim: &str, sources: &[SourceSpec]) -> Result<Vec<Part>> {
    if parts[0].array(dim).is_none() {
        return Ok(parts);
    }
    let mut keyed = Vec::with_capacity(parts.len());
    for p in parts {
        let first = p.values(dim, sources)?.first().copied().unwrap_or(f64::NAN);
        let key = match p.time_units(dim) {
            Some((units, calendar, _)) => units.seconds(first, calendar),
            None => first,
        };
        keyed.push((key, p));
    }
    keyed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if let Some(w) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(w[1].1.err(
            dim,
            format!(
                "starts at the same value as in {}; a dimension cannot repeat",
                w[0].1.spec.url
            ),
        ));
    }
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

/// Whether `p` writes `name` in other time units than `first_units`.
fn differs(p: &Part, name: &str, first_units: &str) -> bool {
    p.time_units(name).is_some_and(|(_, _, t)| t != first_units)
}

/// Check `p` against the first part: the same variables, dimensions, types, codecs and
/// decoding attributes, the same shape off the dimension and the values of the `fixed`
/// coordinates.
fn agree(
    first: &Part,
    p: &Part,
    dim: &str,
    fixed: &[(String, Vec<f64>)],
    sources: &[SourceSpec],
) -> Result<()> {
    let fm = &first.indexed.manifest;
    let pm = &p.indexed.manifest;
    if let Some(extra) = pm.arrays.keys().find(|n| !fm.arrays.contains_key(*n)) {
        return Err(p.err(extra, format!("is not in {}", first.spec.url)));
    }
    for (name, a) in &fm.arrays {
        let Some(b) = pm.arrays.get(name) else {
            return Err(p.err(name, format!("is missing; {} has it", first.spec.url)));
        };
        let k = a.dims.iter().position(|d| d == dim);
        let off = |shape: &[u64]| -> Vec<u64> {
            shape
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != k)
                .map(|(_, s)| *s)
                .collect()
        };
        let mismatch = if a.dims != b.dims {
            Some(format!("dimensions {:?}, not {:?}", b.dims, a.dims))
        } else if a.dtype != b.dtype {
            Some(format!("dtype {}, not {}", b.dtype, a.dtype))
        } else if a.codecs != b.codecs {
            Some(format!("codecs {:?}, not {:?}", b.codecs, a.codecs))
        } else if off(&a.shape) != off(&b.shape) {
            Some(format!("shape {:?}, not {:?}", b.shape, a.shape))
        } else if a.attrs.get("units") != b.attrs.get("units")
            && (first.time_units(name).is_none() || p.time_units(name).is_none())
        {
            Some(format!(
                "units {}, not {}",
                b.attrs.get("units").unwrap_or(&Value::Null),
                a.attrs.get("units").unwrap_or(&Value::Null)
            ))
        } else if k.is_none() && a.fill_value != b.fill_value {
            Some(format!("_FillValue {}, not {}", b.fill_value, a.fill_value))
        } else {
            // Along the dimension, packing may differ: such values are unpacked per source.
            let decoding: &[&str] = if k.is_some() {
                &DECODING[2..]
            } else {
                &DECODING
            };
            decoding.iter().find_map(|attr| {
                (a.attrs.get(*attr) != b.attrs.get(*attr)).then(|| {
                    format!(
                        "{attr} {}, not {}",
                        b.attrs.get(*attr).unwrap_or(&Value::Null),
                        a.attrs.get(*attr).unwrap_or(&Value::Null)
                    )
                })
            })
        };
        if let Some(m) = mismatch {
            return Err(p.err(name, format!("{m} as in {}", first.spec.url)));
        }
    }
    for (name, x) in fixed {
        let y = p.values(name, sources)?;
        let same = |x: &f64, y: &f64| x == y || (x.is_nan() && y.is_nan());
        if x.len() != y.len() || !x.iter().zip(&y).all(|(x, y)| same(x, y)) {
            return Err(p.err(
                name,
                format!("its values differ from those in {}", first.spec.url),
            ));
        }
    }
    Ok(())
}

/// The values of the first part's numeric coordinates off the dimension: every other part must
/// have the same.
fn fixed_coordinates(
    first: &Part,
    dim: &str,
    sources: &[SourceSpec],
) -> Result<Vec<(String, Vec<f64>)>> {
    let m = &first.indexed.manifest;
    let mut out = Vec::new();
    for name in m.coordinate_names() {
        let a = &m.arrays[name];
        let numeric = a.dtype.is_numeric();
        if numeric && !a.dims.iter().any(|d| d == dim) {
            out.push((name.to_owned(), first.values(name, sources)?));
        }
    }
    Ok(out)
}

/// Concatenate one array's chunk tables along dimension `k`; chunks that do not line up
/// across files are recorded as [`Irregular`] when `may_be_irregular`.
fn join(
    parts: &[Part],
    name: &str,
    k: usize,
    may_be_irregular: bool,
) -> Result<(ArrayMeta, ArrayTable)> {
    let mut pieces: Vec<(ArrayMeta, Vec<(u64, ChunkRef)>)> = Vec::with_capacity(parts.len());
    for p in parts {
        let (a, t) = p.array(name).ok_or_else(|| p.err(name, "is missing"))?;
        pieces.push((a.clone(), t.stored.clone()));
    }
    let lengths: Vec<u64> = pieces.iter().map(|(a, _)| a.shape[k]).collect();
    let regular = |pieces: &[(ArrayMeta, Vec<(u64, ChunkRef)>)]| {
        let c = pieces[0].0.chunks[k];
        pieces.iter().enumerate().all(|(i, (a, _))| {
            a.chunks == pieces[0].0.chunks && (i + 1 == pieces.len() || a.shape[k] % c == 0)
        })
    };
    let served_k = pieces[0].0.served_chunks[k];
    let mut irregular = None;
    if !regular(&pieces) {
        let contiguous = k == 0
            && pieces
                .iter()
                .all(|(a, stored)| a.codecs.is_empty() && a.chunks == a.shape && stored.len() <= 1);
        let off = |a: &ArrayMeta| -> Vec<u64> {
            (a.chunks.iter().enumerate())
                .filter(|(d, _)| *d != k)
                .map(|(_, c)| *c)
                .collect()
        };
        if contiguous {
            let g = lengths.iter().copied().fold(0, gcd).max(1);
            for (a, stored) in &mut pieces {
                rows(a, stored, g);
            }
        } else if let Some((i, (a, _))) = (pieces.iter().enumerate())
            .find(|(_, (a, _))| !may_be_irregular || off(a) != off(&pieces[0].0))
        {
            return Err(parts[i].err(
                name,
                format!(
                    "its chunks {:?} over a length of {} along the concatenated dimension do \
                     not line up with the other files' (chunks {:?}){}",
                    a.chunks,
                    a.shape[k],
                    pieces[0].0.chunks,
                    if may_be_irregular {
                        "; chunks that differ off the concatenated dimension are not served"
                    } else {
                        ""
                    }
                ),
            ));
        } else {
            irregular = Some(Irregular {
                dim: k,
                runs: pieces
                    .iter()
                    .map(|(a, _)| (a.shape[k], a.chunks[k]))
                    .collect(),
            });
        }
    }
    let mut meta = pieces[0].0.clone();
    meta.shape[k] = lengths.iter().sum();
    // Served chunks are at least the source's along the dimension, but for irregular ones,
    // which have no one source length.
    let served = if irregular.is_some() {
        served_k
    } else {
        served_k.max(meta.chunks[k])
    };
    meta.served_chunks[k] = served.min(meta.shape[k].max(1));
    if irregular.is_some() {
        meta.kerchunk_excluded = Some(format!(
            "its files' chunks along {:?} do not line up (a file ends inside a chunk, or \
             files chunk it differently); a Zarr grid is regular, so only the re-encoding \
             routes serve it, assembled across files",
            meta.dims[k]
        ));
    }
    meta.irregular = irregular;
    let grid = meta.grid();
    let mut stored = Vec::new();
    let mut offset = 0;
    for (a, refs) in &pieces {
        let part_grid = a.grid();
        for (linear, c) in refs {
            let mut idx = manifest::grid_index(&part_grid, *linear);
            idx[k] += offset;
            let at = manifest::linear_index(&grid, &idx)
                .ok_or_else(|| IndexError::Invalid(format!("{name}: chunk {idx:?} off grid")))?;
            stored.push((at, *c));
        }
        offset += part_grid[k];
    }
    stored.sort_by_key(|(i, _)| *i);
    meta.records = manifest::saturating_product(&grid);
    meta.stored_chunks = stored.len() as u64;
    meta.table_records = manifest::table_len(&stored);
    let bytes = encode_table(&stored);
    Ok((meta, ArrayTable { bytes, stored }))
}

/// Cut an uncompressed array stored in one piece into chunks of `g` rows (dimension 0).
fn rows(a: &mut ArrayMeta, stored: &mut Vec<(u64, ChunkRef)>, g: u64) {
    let item = u64::from(a.item_size());
    let row_bytes = manifest::saturating_product(&a.shape[1..]).saturating_mul(item);
    let n = a.shape[0] / g;
    a.chunks[0] = g;
    *stored = stored
        .first()
        .map(|(_, c)| {
            (0..n)
                .map(|j| {
                    let r = ChunkRef {
                        offset: c.offset + j * g * row_bytes,
                        length: g * row_bytes,
                        ..*c
                    };
                    (j, r)
                })
                .collect()
        })
        .unwrap_or_default();
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The values of time array `name` of every part, in the first part's units, concatenated
/// along dimension `k` (which must be the first).
fn convert(
    parts: &[Part],
    name: &str,
    k: usize,
    to: &Units,
    calendar: Calendar,
    sources: &[SourceSpec],
) -> Result<Vec<f64>> {
    if k != 0 {
        return Err(parts[0].err(
            name,
            "its time units differ between files and its first dimension is not the \
             concatenated one; converting it is not supported",
        ));
    }
    let mut out = Vec::new();
    for p in parts {
        let (units, cal, _) = p
            .time_units(name)
            .ok_or_else(|| p.err(name, "has no CF time units, unlike the first file"))?;
        if cal != calendar {
            return Err(p.err(name, "its calendar differs from the first file's"));
        }
        out.extend(
            p.values(name, sources)?
                .into_iter()
                .map(|v| units.convert(v, to, calendar)),
        );
    }
    Ok(out)
}

/// The decoded, little-endian values of array `name` of every part, one after the other
/// (concatenated along the first dimension).
fn concatenated(parts: &[Part], name: &str, sources: &[SourceSpec]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in parts {
        let (a, t) = p.array(name).ok_or_else(|| p.err(name, "is missing"))?;
        out.extend(read_le_bytes(a, &t.stored, sources).map_err(|f| p.err(name, f))?);
    }
    Ok(out)
}

/// Values the indexer assembled (`bytes`, little-endian `dtype`), stored in the bucket as one
/// chunk under a content-addressed key, and read as source `source` like any other.
fn inline(
    id: &str,
    a: &ArrayMeta,
    bytes: Vec<u8>,
    dtype: DataType,
    source: u32,
    how: &Concat,
) -> (ArrayMeta, ArrayTable, SourceSpec) {
    let len = bytes.len() as u64;
    let spec = SourceSpec::stored_values(id, &how.bucket_url, bytes);
    let mut meta = a.clone();
    meta.dtype = dtype;
    let row =
        manifest::saturating_product(&meta.shape[1..]).saturating_mul(u64::from(meta.item_size()));
    meta.shape[0] = len / row.max(1);
    meta.codecs = Vec::new();
    meta.chunks = meta.shape.iter().map(|s| (*s).max(1)).collect();
    meta.served_chunks = meta.chunks.clone();
    meta.records = 1;
    meta.table_records = 1;
    meta.stored_chunks = 1;
    meta.kerchunk_excluded = None;
    let c = ChunkRef {
        source,
        filter_mask: 0,
        offset: 0,
        length: len,
    };
    let stored = vec![(0, c)];
    let table = ArrayTable {
        bytes: encode_table(&stored),
        stored,
    };
    (meta, table, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sources are read many at a time (counted, not timed), in order of position, only those
    /// wanted; after a failure no more start, and the first failure by position is reported.
    #[test]
    fn sources_are_read_at_once_and_a_failure_stops_the_reads() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Duration;

        let sources: Vec<SourceSpec> = (0..400)
            .map(|i| SourceSpec::in_memory(format!("s{i}"), format!("file:///s{i}"), vec![]))
            .collect();
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let read = |spec: &SourceSpec, i: u32| {
            let n = now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            most.fetch_max(n, AtomicOrdering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            now.fetch_sub(1, AtomicOrdering::SeqCst);
            match i {
                40 => Err(IndexError::Invalid(format!("{} is bad", spec.url))),
                _ => Ok(i),
            }
        };
        let out = read_many(&sources, |i| i % 2 == 0, read);
        assert!(most.load(AtomicOrdering::SeqCst) > 1, "one read at a time");
        assert!(most.load(AtomicOrdering::SeqCst) <= READERS);
        for (i, r) in out.iter().enumerate() {
            match (i % 2, i) {
                (1, _) => assert!(r.is_none(), "{i} was not wanted"),
                (_, 0..40) => assert!(matches!(r, Some(Ok(n)) if *n == i as u32), "{i}"),
                (_, 40) => {
                    assert!(matches!(r, Some(Err(IndexError::Invalid(m))) if m == "s40 is bad"))
                }
                _ => {}
            }
        }
        // Readers stop taking sources after the failure: fewer than all were started.
        assert!(out.iter().filter(|r| r.is_some()).count() < 100);
    }

    #[test]
    fn rows_cut_a_contiguous_array_into_byte_ranges() {
        let mut a = ArrayMeta {
            shape: vec![6, 2],
            dims: vec!["t".into(), "x".into()],
            dtype: DataType::F4,
            chunks: vec![6, 2],
            served_chunks: vec![6, 2],
            fill_value: Value::Null,
            attrs: serde_json::Map::new(),
            codecs: vec![],
            table: "t".into(),
            records: 1,
            table_records: 1,
            stored_chunks: 1,
            kerchunk_excluded: None,
            unpacked_dtype: None,
            unpack: None,
            irregular: None,
        };
        let c = ChunkRef {
            source: 3,
            filter_mask: 0,
            offset: 100,
            length: 48,
        };
        let mut stored = vec![(0, c)];
        rows(&mut a, &mut stored, gcd(6, 4));
        assert_eq!(a.chunks, vec![2, 2]);
        let ranges: Vec<(u64, u64, u64)> = stored
            .iter()
            .map(|(i, c)| (*i, c.offset, c.length))
            .collect();
        assert_eq!(ranges, vec![(0, 100, 16), (1, 116, 16), (2, 132, 16)]);
        assert!(stored.iter().all(|(_, c)| c.source == 3));
    }
}
