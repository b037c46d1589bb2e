//! Groupby and reductions over one variable, streamed chunk by chunk: the request's reads and
//! memory are estimated and checked against its budgets before the first data read, then each
//! block is read, decoded and folded into the accumulators, in index order.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value, json};

use crate::assemble::Region;
use crate::cftime::{Calendar, Units};
use crate::error::{Error, Result};
use crate::manifest::{self, ArrayMeta, ChunkRef, Manifest};
use crate::read::{self, Reader};

use super::accumulate::Accumulator;
use super::request::{Action, Bound, Diagnostic, GroupBy, Op, Range, TimePart, Weights};
use super::values::Decoding;

/// Largest block of an uncompressed array decoded at once: contiguous variables are read in
/// slabs this size, so memory stays flat for them too.
const BLOCK_BYTES: u64 = 4 << 20;
/// Memory blocks in flight may take: each holds its stored bytes, its decoded bytes and, while
/// unshuffling, a copy (about three times its decoded size).
const IN_FLIGHT_BYTES: u64 = 24 << 20;
/// Marks an index left out by the selection.
const SKIP: u32 = u32::MAX;
/// Seasons in xarray's (alphabetical) order, and the season of each month.
const SEASONS: [&str; 4] = ["DJF", "JJA", "MAM", "SON"];
const SEASON_OF_MONTH: [usize; 12] = [0, 0, 2, 2, 2, 1, 1, 1, 3, 3, 3, 0];

/// Values of a result's coordinate.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Numbers (coordinate values, or years, months, days of year, hours).
    Numbers(Vec<f64>, &'static str),
    /// Season names.
    Strings(Vec<&'static str>),
}

impl Labels {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Labels::Numbers(v, _) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 1-D coordinate of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordOut {
    /// Name (also its dimension's).
    pub name: String,
    /// Values.
    pub labels: Labels,
    /// Attributes.
    pub attrs: Map<String, Value>,
}

/// A computed diagnostic: one variable on a small grid, with its coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The variable's name.
    pub name: String,
    /// Dimensions of the result.
    pub dims: Vec<String>,
    /// Shape of the result.
    pub shape: Vec<u64>,
    /// Values in C order (counts as whole numbers).
    pub values: Vec<f64>,
    /// Whether values are counts (written as integers).
    pub counts: bool,
    /// The variable's attributes, packing removed, `cell_methods` extended.
    pub attrs: Map<String, Value>,
    /// Coordinates along the result's dimensions, where the dataset has them.
    pub coords: Vec<CoordOut>,
}

/// How each index of one of the variable's dimensions maps into the result.
struct Axis {
    /// Output position per index ([`SKIP`]: not selected).
    map: Vec<u32>,
    /// Result dimension it becomes, and its length; `None` when reduced away.
    out: Option<(String, u64)>,
}

/// Attributes describing how values were stored, meaningless on a computed result.
const PACKING: [&str; 8] = [
    "scale_factor",
    "add_offset",
    "missing_value",
    "_FillValue",
    "valid_range",
    "valid_min",
    "valid_max",
    "_Unsigned",
];

/// A request for a groupby or reduce, resolved against a dataset.
pub struct Plan<'m> {
    m: &'m Manifest,
    name: String,
    a: &'m ArrayMeta,
    decoding: Decoding,
    action: Action,
    axes: Vec<Axis>,
    /// The weighted dimension and each of its indices' weight.
    weights: Option<(usize, Vec<f64>)>,
    coords: Vec<CoordOut>,
    cell_method: String,
    /// Dimensions the request's selection restricts.
    selected: Vec<bool>,
}

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
    let blocks = Blocks::new(a, &vec![0..u64::MAX; a.shape.len()]);
    let records = blocks.records(reader, m, version, name).await?;
    let mut whole = vec![f64::NAN; a.shape.iter().product::<u64>() as usize];
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
struct Blocks {
    /// The array with `served_chunks` set to the block shape, for [`Reader::assemble`].
    meta: ArrayMeta,
    /// Block index range per dimension.
    ranges: Vec<std::ops::Range<u64>>,
}

impl Blocks {
    fn new(a: &ArrayMeta, bbox: &[std::ops::Range<u64>]) -> Self {
        let mut shape = a.chunks.clone();
        if a.codecs.is_empty() {
            let item = u64::from(a.item_size().unwrap_or(1));
            for d in 0..shape.len() {
                let rest: u64 = shape[d + 1..].iter().product::<u64>() * item;
                if shape[d] * rest > BLOCK_BYTES {
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
    fn indices(&self) -> impl Iterator<Item = Vec<u64>> + '_ {
        let total: u64 = self.ranges.iter().map(|r| r.end - r.start).product();
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
    fn source_chunks(&self, name: &str) -> Result<Vec<u64>> {
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
fn in_flight(meta: &ArrayMeta, concurrency: usize) -> usize {
    let per_block = 3 * meta.served_chunk_bytes().max(1);
    ((IN_FLIGHT_BYTES / per_block) as usize).clamp(1, concurrency.max(1))
}

/// Call `row(global start, local offset)` for each innermost row of `region` within a block
/// of `shape` starting at the region's start.
fn for_each_row(region: &Region, shape: &[u64], mut row: impl FnMut(&[u64], usize)) {
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

/// A coordinate's CF time units and calendar, when it has them.
fn time_units(m: &Manifest, coord: &str) -> Result<Option<(Units, Calendar)>> {
    let a = m.array(coord)?;
    let Some(units) = a
        .attrs
        .get("units")
        .and_then(Value::as_str)
        .and_then(Units::parse)
    else {
        return Ok(None);
    };
    let cal = a.attrs.get("calendar").and_then(Value::as_str);
    let calendar = Calendar::parse(cal).ok_or_else(|| {
        Error::BadRequest(format!(
            "{coord:?} has calendar {:?}, which is not a CF calendar",
            cal.unwrap_or_default()
        ))
    })?;
    Ok(Some((units, calendar)))
}

impl<'m> Plan<'m> {
    /// Resolve `d` (a groupby or reduce) against dataset `m`, reading the coordinates it
    /// needs.
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming an unknown variable, coordinate or dimension, or a
    /// selection that keeps nothing; read errors of the coordinates.
    pub async fn new(
        reader: &Reader<'_>,
        m: &'m Manifest,
        version: &str,
        d: &Diagnostic,
    ) -> Result<Self> {
        let name = d.var.clone();
        let a = m.arrays.get(&name).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown variable {name:?}; variables: {}",
                m.arrays.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let decoding = Decoding::of(&name, a)?;
        let nd = a.dims.len();
        // The 1-D coordinate along each dimension (its values read when needed).
        let along = |coord: &str| -> Option<usize> {
            let c = m.arrays.get(coord)?;
            (c.dims.len() == 1).then(|| a.dims.iter().position(|d| *d == c.dims[0]))?
        };
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut keep: Vec<Option<Vec<bool>>> = vec![None; nd];
        for r in &d.selection {
            let (dim, mask) = select(reader, m, version, a, &name, r, &along, &mut values).await?;
            keep[dim] = Some(mask);
        }
        let (action, reduced, group) = match &d.op {
            Op::GroupBy(by, action) => {
                let dim = along(&by.coord).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "{:?} is not a 1-D coordinate along a dimension of {name:?} ({})",
                        by.coord,
                        a.dims.join(", ")
                    ))
                })?;
                (*action, vec![dim], Some((dim, by)))
            }
            Op::Reduce(dims, action, _) => {
                let reduced = dims
                    .iter()
                    .map(|dim| {
                        a.dims.iter().position(|x| x == dim).ok_or_else(|| {
                            Error::BadRequest(format!(
                                "{dim:?} is not a dimension of {name:?} ({})",
                                a.dims.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if matches!(action, Action::First | Action::Last) && reduced.len() > 1 {
                    return Err(Error::BadRequest(format!(
                        "{} reduces one dimension at a time",
                        action.name()
                    )));
                }
                (*action, reduced, None)
            }
            Op::Plot(..) => {
                return Err(Error::BadRequest("a plot is not a reduction".into()));
            }
        };
        let mut axes = Vec::with_capacity(nd);
        let mut coords = Vec::new();
        for dim in 0..nd {
            let n = a.shape[dim] as usize;
            let kept = |i: usize| keep[dim].as_ref().is_none_or(|k| k[i]);
            if let Some((_, by)) = group.filter(|(g, _)| *g == dim) {
                let (map, labels) =
                    groups(reader, m, version, by, keep[dim].as_deref(), &mut values).await?;
                let out_name = by.part.map_or(by.coord.clone(), |p| p.name().to_owned());
                let attrs = match by.part {
                    Some(_) => Map::new(),
                    None => coord_attrs(m, &by.coord),
                };
                axes.push(Axis {
                    map,
                    out: Some((out_name.clone(), labels.len() as u64)),
                });
                coords.push(CoordOut {
                    name: out_name,
                    labels,
                    attrs,
                });
            } else if reduced.contains(&dim) {
                let map = (0..n).map(|i| if kept(i) { 0 } else { SKIP }).collect();
                axes.push(Axis { map, out: None });
            } else {
                let mut next = 0u32;
                let map: Vec<u32> = (0..n)
                    .map(|i| {
                        if kept(i) {
                            next += 1;
                            next - 1
                        } else {
                            SKIP
                        }
                    })
                    .collect();
                let dim_name = a.dims[dim].clone();
                if along(&dim_name) == Some(dim) && dim_name != name {
                    let v = coordinate(reader, m, version, &dim_name, &mut values).await?;
                    let picked = v
                        .iter()
                        .zip(&map)
                        .filter(|(_, o)| **o != SKIP)
                        .map(|(x, _)| *x)
                        .collect();
                    coords.push(CoordOut {
                        name: dim_name.clone(),
                        labels: Labels::Numbers(picked, coord_dtype(m, &dim_name)),
                        attrs: coord_attrs(m, &dim_name),
                    });
                }
                axes.push(Axis {
                    map,
                    out: Some((dim_name, u64::from(next))),
                });
            }
            if axes[dim].map.iter().all(|o| *o == SKIP) {
                return Err(Error::BadRequest(format!(
                    "nothing of {name:?} is left along {:?} once selected and grouped",
                    a.dims[dim]
                )));
            }
        }
        let weights = match &d.op {
            Op::Reduce(_, _, Weights::CosLat) => {
                let (dim, lat) = reduced
                    .iter()
                    .find_map(|dim| {
                        let c = a.dims[*dim].as_str();
                        is_latitude(m, c).then_some((*dim, c.to_owned()))
                    })
                    .ok_or_else(|| {
                        Error::BadRequest(
                            "weights=coslat needs a latitude coordinate among the reduced \
                             dimensions"
                                .into(),
                        )
                    })?;
                let v = coordinate(reader, m, version, &lat, &mut values).await?;
                Some((dim, v.iter().map(|x| x.to_radians().cos()).collect()))
            }
            _ => None,
        };
        let dims_text = reduced
            .iter()
            .map(|dim| format!("{}:", a.dims[*dim]))
            .collect::<Vec<_>>()
            .join(" ");
        let mut comments = Vec::new();
        if let Some((_, by)) = group {
            comments.push(format!(
                "grouped by {}",
                by.part
                    .map_or(by.coord.clone(), |p| format!("{}.{}", by.coord, p.name()))
            ));
        }
        match action {
            Action::Count => comments.push("number of values".into()),
            Action::First | Action::Last => comments.push(format!("{} value", action.name())),
            _ => {}
        }
        if weights.is_some() {
            comments.push("weighted by cos(latitude)".into());
        }
        let cell_method = if comments.is_empty() {
            format!("{dims_text} {}", action.cf_method())
        } else {
            format!(
                "{dims_text} {} (comment: {})",
                action.cf_method(),
                comments.join(", ")
            )
        };
        Ok(Self {
            m,
            name,
            a,
            decoding,
            action,
            axes,
            weights,
            coords,
            cell_method,
            selected: keep.iter().map(Option::is_some).collect(),
        })
    }

    /// Whether the request's selection restricts dimension `dim`.
    pub fn selects(&self, dim: usize) -> bool {
        self.selected.get(dim).copied().unwrap_or(false)
    }

    /// Keep only index `at` of reduced dimension `dim` (a plot's default time step or level).
    pub fn only(&mut self, dim: usize, at: u64) {
        if let Some(x) = self.axes.get_mut(dim).filter(|x| x.out.is_none()) {
            for (i, o) in x.map.iter_mut().enumerate() {
                if i as u64 != at {
                    *o = SKIP;
                }
            }
        }
    }

    /// First and last index kept along `dim`, and how many are.
    pub fn span(&self, dim: usize) -> (u64, u64, usize) {
        let map = self.axes.get(dim).map_or(&[][..], |x| x.map.as_slice());
        let kept = || {
            map.iter()
                .enumerate()
                .filter(|(_, o)| **o != SKIP)
                .map(|(i, _)| i as u64)
        };
        (
            kept().next().unwrap_or(0),
            kept().next_back().unwrap_or(0),
            kept().count(),
        )
    }

    /// Cells of the result.
    fn cells(&self) -> u64 {
        self.axes
            .iter()
            .filter_map(|x| x.out.as_ref().map(|(_, n)| *n))
            .product()
    }

    /// The selection's bounding box per dimension.
    fn bbox(&self) -> Vec<std::ops::Range<u64>> {
        self.axes
            .iter()
            .map(|x| {
                let first = x.map.iter().position(|o| *o != SKIP).unwrap_or(0) as u64;
                let last = x.map.iter().rposition(|o| *o != SKIP).map_or(0, |i| i + 1) as u64;
                first..last
            })
            .collect()
    }

    /// Check the budgets, then read, decode and fold every block.
    ///
    /// # Errors
    /// [`Error::TooLarge`] with the estimate and the budget; read and decode errors.
    pub async fn run(self, reader: &Reader<'_>, version: &str) -> Result<Outcome> {
        let cells = self.cells();
        let blocks = Blocks::new(self.a, &self.bbox());
        let held = Accumulator::bytes(self.action, cells);
        let linear = blocks.source_chunks(&self.name)?;
        let table_bytes = linear.len() as u64 * manifest::RECORD_LEN;
        let budget = reader.budget;
        if table_bytes + held > budget {
            return Err(Error::TooLarge(format!(
                "this {} of {:?} needs {} chunk records and {held} bytes of accumulators, \
                 over the budget of {budget} bytes; select fewer coordinates",
                self.action.name(),
                self.name,
                linear.len()
            )));
        }
        let records = reader
            .records(self.m, version, &blocks.meta, &linear)
            .await?;
        let item = u64::from(self.a.item_size().unwrap_or(1));
        let block_count = blocks
            .ranges
            .iter()
            .map(|r| r.end - r.start)
            .product::<u64>();
        let read: u64 = if self.a.codecs.is_empty() {
            block_count * blocks.meta.served_chunk_bytes()
        } else {
            records.values().flatten().map(|c| c.length).sum()
        };
        let decoded = if self.a.codecs.is_empty() {
            0
        } else {
            records.values().flatten().count() as u64 * self.a.chunks.iter().product::<u64>() * item
        };
        if read + table_bytes + held > budget {
            return Err(Error::TooLarge(format!(
                "this {} of {:?} reads about {read} bytes of source data and holds {held} \
                 bytes of accumulators, over the budget of {budget} bytes; select fewer \
                 time steps or a smaller region",
                self.action.name(),
                self.name
            )));
        }
        if decoded > reader.limits.work {
            return Err(Error::TooLarge(format!(
                "this {} of {:?} decodes about {decoded} bytes, over this function's CPU \
                 budget of {} bytes per request; select fewer time steps or a smaller region",
                self.action.name(),
                self.name,
                reader.limits.work
            )));
        }
        let mut acc = Accumulator::new(self.action, cells as usize);
        let strides = self.strides();
        let last = self.axes.len().saturating_sub(1);
        let meta = &blocks.meta;
        let (m, name, records) = (self.m, self.name.as_str(), &records);
        let mut pending = stream::iter(blocks.indices())
            .map(|idx| async move {
                let bytes = reader.assemble(m, name, meta, &idx, records).await?;
                Ok::<_, Error>((idx, bytes))
            })
            .buffered(in_flight(meta, reader.concurrency));
        let size = self.decoding.item_size();
        let mut row_values = Vec::new();
        while let Some((idx, bytes)) = pending.try_next().await? {
            let region = Region::served(meta, &idx);
            if region.start.is_empty() {
                row_values.clear();
                self.decoding.decode(&bytes, &mut row_values);
                acc.add(0, row_values.first().copied().unwrap_or(f64::NAN), 1.0);
                continue;
            }
            let (lo, hi) = (region.start[last] as usize, region.end[last] as usize);
            let last_map = &self.axes[last].map[lo..hi];
            for_each_row(&region, &meta.served_chunks, |global, local| {
                let mut base = 0u64;
                let mut w_row = 1.0;
                for d in 0..last {
                    let o = self.axes[d].map[global[d] as usize];
                    if o == SKIP {
                        return;
                    }
                    base += u64::from(o) * strides[d];
                    if let Some((wd, w)) = &self.weights
                        && *wd == d
                    {
                        w_row = w[global[d] as usize];
                    }
                }
                // One row decoded at a time: the block stays in its stored width.
                row_values.clear();
                let Some(row) = bytes.get(local * size..(local + hi - lo) * size) else {
                    return;
                };
                self.decoding.decode(row, &mut row_values);
                for (j, (x, o)) in row_values.iter().zip(last_map).enumerate() {
                    if *o == SKIP {
                        continue;
                    }
                    let w = match &self.weights {
                        Some((wd, w)) if *wd == last => w[lo + j],
                        _ => w_row,
                    };
                    acc.add((base + u64::from(*o) * strides[last]) as usize, *x, w);
                }
            });
        }
        drop(pending);
        let values = acc.finish(self.action);
        Ok(self.outcome(values))
    }

    /// The result's description without its values: enough for its Zarr metadata and
    /// coordinates.
    pub fn skeleton(self) -> Outcome {
        self.outcome(Vec::new())
    }

    fn outcome(self, values: Vec<f64>) -> Outcome {
        let mut attrs = self.a.attrs.clone();
        for k in PACKING {
            attrs.remove(k);
        }
        if self.action == Action::Count {
            attrs.remove("units");
            attrs.remove("standard_name");
        }
        let methods = match attrs.get("cell_methods").and_then(Value::as_str) {
            Some(before) => format!("{before} {}", self.cell_method),
            None => self.cell_method.clone(),
        };
        attrs.insert("cell_methods".into(), json!(methods));
        let (dims, shape) = self.axes.iter().filter_map(|x| x.out.clone()).unzip();
        Outcome {
            name: self.name,
            dims,
            shape,
            values,
            counts: self.action == Action::Count,
            attrs,
            coords: self.coords,
        }
    }

    /// Result stride per variable dimension (0 for reduced ones).
    fn strides(&self) -> Vec<u64> {
        let mut strides = vec![0; self.axes.len()];
        let mut s = 1;
        for (d, x) in self.axes.iter().enumerate().rev() {
            if let Some((_, n)) = &x.out {
                strides[d] = s;
                s *= n;
            }
        }
        strides
    }
}

/// Whether a coordinate holds latitudes (by name, standard name or units).
fn is_latitude(m: &Manifest, coord: &str) -> bool {
    let Some(c) = m.arrays.get(coord) else {
        return false;
    };
    let attr = |k: &str| c.attrs.get(k).and_then(Value::as_str).unwrap_or_default();
    c.dims.len() == 1
        && (matches!(coord, "lat" | "latitude")
            || attr("standard_name") == "latitude"
            || attr("units") == "degrees_north")
}

/// A coordinate's attributes on a result (its bounds are not part of it).
fn coord_attrs(m: &Manifest, coord: &str) -> Map<String, Value> {
    let mut attrs = m
        .arrays
        .get(coord)
        .map(|c| c.attrs.clone())
        .unwrap_or_default();
    attrs.remove("bounds");
    for k in PACKING {
        attrs.remove(k);
    }
    attrs
}

/// The Zarr type a result writes a coordinate's values with.
fn coord_dtype(m: &Manifest, coord: &str) -> &'static str {
    let packed = m.arrays.get(coord).is_some_and(|c| {
        c.attrs.contains_key("scale_factor") || c.attrs.contains_key("add_offset")
    });
    match m
        .arrays
        .get(coord)
        .map(|c| c.dtype.trim_start_matches(['<', '>', '|']))
    {
        Some("i1" | "i2" | "i4" | "i8" | "u1" | "u2" | "u4") if !packed => "<i8",
        Some("f4") if !packed => "<f4",
        _ => "<f8",
    }
}

/// A coordinate's values, read once per request.
async fn coordinate<'v>(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    coord: &str,
    cache: &'v mut BTreeMap<String, Vec<f64>>,
) -> Result<&'v Vec<f64>> {
    if !cache.contains_key(coord) {
        let v = read_values(reader, m, version, coord).await?;
        cache.insert(coord.to_owned(), v);
    }
    cache
        .get(coord)
        .ok_or_else(|| Error::NotFound(format!("no coordinate {coord:?}")))
}

/// The dimension a selection range applies to, and the indices it keeps.
#[allow(clippy::too_many_arguments)]
async fn select(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    a: &ArrayMeta,
    name: &str,
    r: &Range,
    along: &impl Fn(&str) -> Option<usize>,
    cache: &mut BTreeMap<String, Vec<f64>>,
) -> Result<(usize, Vec<bool>)> {
    let text = |b: &Bound| match b {
        Bound::Number(x) => x.to_string(),
        Bound::Date(s) => s.clone(),
    };
    let pair = format!("{}/{}_{}", r.coord, text(&r.low), text(&r.high));
    let dim_only = a.dims.iter().position(|d| *d == r.coord);
    let (dim, time) = match along(&r.coord) {
        Some(dim) => (dim, time_units(m, &r.coord)?),
        None => match dim_only {
            Some(dim) if !m.arrays.contains_key(&r.coord) => (dim, None),
            _ => {
                return Err(Error::BadRequest(format!(
                    "selection {pair}: {:?} is not a coordinate along a dimension of {name:?} ({})",
                    r.coord,
                    a.dims.join(", ")
                )));
            }
        },
    };
    let n = a.shape[dim] as usize;
    let by_index = |lo: f64, hi: f64| -> Result<Vec<bool>> {
        if lo.fract() != 0.0 || hi.fract() != 0.0 || lo < 0.0 {
            return Err(Error::BadRequest(format!(
                "selection {pair}: {:?} is selected by index, with whole numbers from 0",
                r.coord
            )));
        }
        Ok((0..n)
            .map(|i| (i as f64) >= lo && (i as f64) < hi)
            .collect())
    };
    let mask = match (&r.low, &r.high, &time) {
        (Bound::Number(lo), Bound::Number(hi), _)
            if time.is_some() || !m.arrays.contains_key(&r.coord) =>
        {
            by_index(*lo, *hi)?
        }
        (Bound::Number(lo), Bound::Number(hi), None) => {
            let v = coordinate(reader, m, version, &r.coord, cache).await?;
            v.iter().map(|x| *x >= *lo && *x < *hi).collect()
        }
        (lo, hi, Some((units, calendar))) => {
            let value = |b: &Bound| -> Result<f64> {
                match b {
                    Bound::Date(s) => units.value_of(s, *calendar).ok_or_else(|| {
                        Error::BadRequest(format!("selection {pair}: {s:?} is not an ISO date"))
                    }),
                    Bound::Number(_) => Err(Error::BadRequest(format!(
                        "selection {pair}: give two dates or two indices"
                    ))),
                }
            };
            let (lo, hi) = (value(lo)?, value(hi)?);
            let v = coordinate(reader, m, version, &r.coord, cache).await?;
            v.iter().map(|x| *x >= lo && *x < hi).collect()
        }
        (_, _, None) => {
            return Err(Error::BadRequest(format!(
                "selection {pair}: dates select only a coordinate with CF time units"
            )));
        }
    };
    if !mask.iter().any(|k| *k) {
        return Err(Error::BadRequest(format!(
            "selection {pair} keeps no value of {:?}",
            r.coord
        )));
    }
    Ok((dim, mask))
}

/// Group of each index of the grouped coordinate ([`SKIP`] for none, or left out by `keep`),
/// and the labels of the groups the kept indices fall in, sorted.
async fn groups(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    by: &GroupBy,
    keep: Option<&[bool]>,
    cache: &mut BTreeMap<String, Vec<f64>>,
) -> Result<(Vec<u32>, Labels)> {
    let time = time_units(m, &by.coord)?;
    let all = coordinate(reader, m, version, &by.coord, cache).await?;
    let kept = |i: usize| keep.is_none_or(|k| k.get(i).copied().unwrap_or(false));
    let values: Vec<f64> = all
        .iter()
        .enumerate()
        .map(|(i, x)| if kept(i) { *x } else { f64::NAN })
        .collect();
    let Some(part) = by.part else {
        let mut labels: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        labels.sort_by(f64::total_cmp);
        labels.dedup();
        let ids = values
            .iter()
            .map(|x| {
                labels
                    .binary_search_by(|l| l.total_cmp(x))
                    .map_or(SKIP, |i| i as u32)
            })
            .collect();
        return Ok((ids, Labels::Numbers(labels, coord_dtype(m, &by.coord))));
    };
    let (units, calendar) = time.ok_or_else(|| {
        Error::BadRequest(format!(
            "{:?} has no CF time units, so it has no {}",
            by.coord,
            part.name()
        ))
    })?;
    let keys: Vec<Option<i64>> = values
        .iter()
        .map(|x| {
            let t = units.decode(*x, calendar)?;
            Some(match part {
                TimePart::Year => t.date.year,
                TimePart::Month => i64::from(t.date.month),
                TimePart::Season => SEASON_OF_MONTH[(t.date.month - 1) as usize] as i64,
                TimePart::DayOfYear => i64::from(calendar.day_of_year(t.date)),
                TimePart::Hour => i64::from(t.seconds / 3600),
            })
        })
        .collect();
    let mut present: Vec<i64> = keys.iter().flatten().copied().collect();
    present.sort_unstable();
    present.dedup();
    let ids = keys
        .iter()
        .map(|k| {
            k.and_then(|k| present.binary_search(&k).ok())
                .map_or(SKIP, |i| i as u32)
        })
        .collect();
    let labels = match part {
        TimePart::Season => Labels::Strings(present.iter().map(|s| SEASONS[*s as usize]).collect()),
        _ => Labels::Numbers(present.iter().map(|k| *k as f64).collect(), "<i8"),
    };
    Ok((ids, labels))
}
