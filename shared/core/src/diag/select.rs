//! Coordinates of a request: the indices a selection keeps, the group each index falls in,
//! and how coordinates are carried into a result.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::cftime::{Calendar, Units};
use crate::dtype::Kind;
use crate::error::{Error, Result};
use crate::manifest::{ArrayMeta, Manifest};
use crate::read::Reader;

use super::blocks::read_values;
use super::request::{Bound, GroupBy, Range, TimePart};
use super::values::PACKING;

/// Marks an index left out by the selection.
pub(super) const SKIP: u32 = u32::MAX;
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

/// A coordinate's CF time units and calendar, when it has them.
pub(super) fn time_units(m: &Manifest, coord: &str) -> Result<Option<(Units, Calendar)>> {
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

/// Whether a coordinate holds latitudes (by name, standard name or units).
pub(super) fn is_latitude(m: &Manifest, coord: &str) -> bool {
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
pub(super) fn coord_attrs(m: &Manifest, coord: &str) -> Map<String, Value> {
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
pub(super) fn coord_dtype(m: &Manifest, coord: &str) -> &'static str {
    let packed = m.arrays.get(coord).is_some_and(|c| {
        c.attrs.contains_key("scale_factor") || c.attrs.contains_key("add_offset")
    });
    match m.arrays.get(coord).map(|c| (c.dtype.kind, c.dtype.size)) {
        Some((Kind::Int, _) | (Kind::UInt, 1 | 2 | 4)) if !packed => "<i8",
        Some((Kind::Float, 4)) if !packed => "<f4",
        _ => "<f8",
    }
}

/// A coordinate's values, read once per request.
pub(super) async fn coordinate<'v>(
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
pub(super) async fn select(
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
pub(super) async fn groups(
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
