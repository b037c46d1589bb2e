//! Groupby and reductions over one variable, streamed chunk by chunk: the request's reads and
//! memory are estimated and checked against its budgets before the first data read, then each
//! block is read, decoded and folded into the accumulators, in index order.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value, json};

use crate::assemble::Region;
use crate::error::{Error, Result};
use crate::manifest::{self, ArrayMeta, Manifest};
use crate::read::Reader;

use super::accumulate::Accumulator;
use super::blocks::{Blocks, for_each_row, in_flight};
use super::request::{Action, Diagnostic, Op, Weights};
use super::select::{
    Labels, SKIP, coord_attrs, coord_dtype, coordinate, groups, is_latitude, select,
};
use super::values::{Decoding, PACKING};

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
        // The dimension a 1-D coordinate runs along, when its length is that dimension's (a
        // manifest that says otherwise is not trusted with indexing).
        let along = |coord: &str| -> Option<usize> {
            let c = m.arrays.get(coord)?;
            let dim =
                (c.dims.len() == 1).then(|| a.dims.iter().position(|d| *d == c.dims[0]))??;
            (c.shape.first() == a.shape.get(dim)).then_some(dim)
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
                        (is_latitude(m, c) && along(c) == Some(*dim))
                            .then_some((*dim, c.to_owned()))
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
            .fold(1u64, u64::saturating_mul)
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
        let budget = reader.budget;
        // Each block needs at least one chunk record: refused on that count before the list of
        // chunks, which a selection over a long dimension makes large, is built.
        let at_least = blocks
            .ranges
            .iter()
            .fold(1u64, |n, r| n.saturating_mul(r.end - r.start))
            .saturating_mul(manifest::RECORD_LEN);
        let linear = match at_least.saturating_add(held) > budget {
            true => Vec::new(),
            false => blocks.source_chunks(&self.name)?,
        };
        let table_bytes = (linear.len() as u64 * manifest::RECORD_LEN).max(at_least);
        if table_bytes.saturating_add(held) > budget {
            return Err(Error::TooLarge(format!(
                "this {} of {:?} needs {} chunk records and {held} bytes of accumulators, \
                 over the budget of {budget} bytes; select fewer coordinates",
                self.action.name(),
                self.name,
                table_bytes / manifest::RECORD_LEN
            )));
        }
        // The accumulators, the records and the blocks assembled at once.
        let assembling =
            (in_flight(&blocks.meta, reader.concurrency) as u64).saturating_mul(blocks.per_block());
        let what = format!("this {} of {:?}", self.action.name(), self.name);
        reader.admit(table_bytes + held + assembling, &what).await?;
        let records = reader
            .records(self.m, version, &blocks.meta, &linear)
            .await?;
        let item = u64::from(self.a.item_size());
        let lengths: Vec<u64> = blocks.ranges.iter().map(|r| r.end - r.start).collect();
        let block_count = manifest::saturating_product(&lengths);
        let read: u64 = if self.a.codecs.is_empty() {
            block_count.saturating_mul(blocks.meta.served_chunk_bytes())
        } else {
            records
                .values()
                .flatten()
                .fold(0u64, |n, c| n.saturating_add(c.length))
        };
        let decoded = if self.a.codecs.is_empty() {
            0
        } else {
            (records.values().flatten().count() as u64)
                .saturating_mul(self.a.max_chunk_len())
                .saturating_mul(item)
        };
        if read.saturating_add(table_bytes).saturating_add(held) > budget {
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
