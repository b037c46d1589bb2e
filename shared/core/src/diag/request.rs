//! Parsing diagnostic routes strictly: every segment is matched against a closed set of words
//! or validated as a name or number, so nothing from a URL is ever evaluated.
//!
//! ```text
//! groupby/{var}/{coord}/{action}[/{selection}][/zarr/{key}]
//! reduce/{var}/{dim,dim...}/{action}[/{selection}][/zarr/{key}]
//! plot/{var}/{kind}/{cmap}[/{selection}]
//! selection = {coord}/{low}_{high} ...   (time: indices or ISO dates; others: values)
//! ```

use crate::error::{Error, Result};
use crate::key::{ZarrKey, parse_zarr_key};

use super::colormap::Colormap;

/// A statistic computed over the values of a group or of the reduced dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Arithmetic mean, NaN skipped.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum, NaN skipped (0 for no value, as xarray's `skipna` sum).
    Sum,
    /// Number of values that are not missing.
    Count,
    /// Standard deviation, `ddof=0`.
    Std,
    /// Variance, `ddof=0`.
    Var,
    /// First value that is not missing, in index order.
    First,
    /// Last value that is not missing, in index order.
    Last,
}

impl Action {
    const ALL: [(&'static str, Action); 9] = [
        ("mean", Action::Mean),
        ("min", Action::Min),
        ("max", Action::Max),
        ("sum", Action::Sum),
        ("count", Action::Count),
        ("std", Action::Std),
        ("var", Action::Var),
        ("first", Action::First),
        ("last", Action::Last),
    ];

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown action {s:?}; one of {}",
                    Self::ALL.map(|(n, _)| n).join(", ")
                ))
            })
    }

    /// Its name in URLs.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }

    /// Its CF `cell_methods` method (count, first and last have none: `point` with a comment).
    pub fn cf_method(self) -> &'static str {
        match self {
            Action::Mean => "mean",
            Action::Min => "minimum",
            Action::Max => "maximum",
            Action::Sum => "sum",
            Action::Std => "standard_deviation",
            Action::Var => "variance",
            Action::Count | Action::First | Action::Last => "point",
        }
    }
}

/// A part of a CF time coordinate to group by (`time.month`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    /// Calendar year.
    Year,
    /// Month, 1-12.
    Month,
    /// DJF, JJA, MAM, SON (in that order, as xarray sorts them).
    Season,
    /// Day of the year, from 1.
    DayOfYear,
    /// Hour of the day, 0-23.
    Hour,
}

impl TimePart {
    const ALL: [(&'static str, TimePart); 5] = [
        ("year", TimePart::Year),
        ("month", TimePart::Month),
        ("season", TimePart::Season),
        ("dayofyear", TimePart::DayOfYear),
        ("hour", TimePart::Hour),
    ];

    /// Its name, which is also the grouped dimension's name in results.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What a groupby groups by: a coordinate, or a part of a time coordinate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBy {
    /// The coordinate's name.
    pub coord: String,
    /// For `{coord}.{part}`: the part of its dates.
    pub part: Option<TimePart>,
}

/// One bound of a selection range, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A number: an index on a time coordinate, a value on others.
    Number(f64),
    /// An ISO date (time coordinates only).
    Date(String),
}

/// `{coord}/{low}_{high}`: keep `low <= v < high`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// Coordinate (or dimension) name.
    pub coord: String,
    /// Inclusive lower bound.
    pub low: Bound,
    /// Exclusive upper bound.
    pub high: Bound,
}

/// How a reduction weights its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Every value counts once.
    None,
    /// By the cosine of latitude (`?weights=coslat`): an area mean on a regular grid.
    CosLat,
}

/// What a plot draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// A 2-D field on its last two dimensions (one time step).
    Map,
    /// The area mean against time.
    Timeseries,
}

/// Plot options from the query string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotOptions {
    /// Colour scale limits; the data's range where unset.
    pub vmin: Option<f64>,
    /// Upper colour scale limit.
    pub vmax: Option<f64>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            vmin: None,
            vmax: None,
            width: 800,
            height: 500,
        }
    }
}

/// The operation of a diagnostic route.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `groupby/{var}/{coord}/{action}`.
    GroupBy(GroupBy, Action),
    /// `reduce/{var}/{dims}/{action}`.
    Reduce(Vec<String>, Action, Weights),
    /// `plot/{var}/{kind}/{cmap}`.
    Plot(PlotKind, Colormap, PlotOptions),
}

/// What a diagnostic result is asked as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The route itself: JSON (or HTML for browsers), or the PNG of a plot.
    Document,
    /// `.../zarr/{key}`: a key of the result as a Zarr v2 store.
    Zarr(Option<ZarrKey>),
}

/// A parsed diagnostic route.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The variable computed on.
    pub var: String,
    /// What is computed.
    pub op: Op,
    /// Ranges of coordinates the computation is restricted to.
    pub selection: Vec<Range>,
    /// Document or Zarr key.
    pub output: Output,
}

/// Smallest and largest plot sides in pixels.
const PLOT_SIDES: std::ops::RangeInclusive<u32> = 64..=2000;

impl Diagnostic {
    /// Parse the segments after `/datasets/{id}/`: `kind` is `groupby`, `reduce` or `plot`.
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming the first bad segment.
    pub fn parse(kind: &str, segments: &[&str]) -> Result<Self> {
        let (head, rest) = match segments {
            [var, a, b, rest @ ..] => ([*var, *a, *b], rest),
            _ => {
                return Err(Error::BadRequest(format!(
                    "{kind} needs {}",
                    match kind {
                        "plot" => "/plot/{var}/{kind}/{cmap}",
                        "reduce" => "/reduce/{var}/{dims}/{action}",
                        _ => "/groupby/{var}/{coord}/{action}",
                    }
                )));
            }
        };
        let [var, a, b] = head;
        let var = name(var, "variable")?;
        let op = match kind {
            "groupby" => {
                let by = match a.split_once('.') {
                    Some((coord, part)) => GroupBy {
                        coord: name(coord, "coordinate")?,
                        part: Some(
                            TimePart::ALL
                                .iter()
                                .find(|(n, _)| *n == part)
                                .map(|(_, p)| *p)
                                .ok_or_else(|| {
                                    Error::BadRequest(format!(
                                        "unknown time part {part:?} in {a:?}; one of {}",
                                        TimePart::ALL.map(|(n, _)| n).join(", ")
                                    ))
                                })?,
                        ),
                    },
                    None => GroupBy {
                        coord: name(a, "coordinate")?,
                        part: None,
                    },
                };
                Op::GroupBy(by, Action::parse(b)?)
            }
            "reduce" => {
                let dims = a
                    .split(',')
                    .map(|d| name(d, "dimension"))
                    .collect::<Result<Vec<_>>>()?;
                let mut seen = dims.clone();
                seen.sort();
                seen.dedup();
                if seen.len() != dims.len() {
                    return Err(Error::BadRequest(format!("dimension named twice in {a:?}")));
                }
                Op::Reduce(dims, Action::parse(b)?, Weights::None)
            }
            _ => {
                let kind = match a {
                    "map" => PlotKind::Map,
                    "timeseries" => PlotKind::Timeseries,
                    _ => {
                        return Err(Error::BadRequest(format!(
                            "unknown plot kind {a:?}; map or timeseries"
                        )));
                    }
                };
                Op::Plot(kind, Colormap::parse(b)?, PlotOptions::default())
            }
        };
        let zarr_at = rest.iter().step_by(2).position(|s| *s == "zarr");
        let (pairs, output) = match zarr_at {
            Some(i) if !matches!(op, Op::Plot(..)) => {
                let key = match &rest[2 * i + 1..] {
                    [] | [""] => None,
                    k => Some(parse_zarr_key(k)?),
                };
                (&rest[..2 * i], Output::Zarr(key))
            }
            _ => (rest, Output::Document),
        };
        let pairs = match pairs {
            [p @ .., ""] => p,
            p => p,
        };
        if pairs.len() % 2 == 1 {
            return Err(Error::BadRequest(format!(
                "selection segment {:?} has no range: selections are pairs {{coord}}/{{low}}_{{high}}",
                pairs[pairs.len() - 1]
            )));
        }
        let selection = pairs
            .chunks(2)
            .map(|p| range(p[0], p[1]))
            .collect::<Result<Vec<_>>>()?;
        let mut coords: Vec<&str> = selection.iter().map(|r| r.coord.as_str()).collect();
        coords.sort_unstable();
        if coords.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::BadRequest(
                "a coordinate is selected twice; give one range per coordinate".into(),
            ));
        }
        Ok(Self {
            var,
            op,
            selection,
            output,
        })
    }

    /// Apply the query string's options (`weights`, and `vmin`, `vmax`, `width`, `height` for
    /// plots); other parameters are ignored, as on every route.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a known parameter with a bad value.
    pub fn with_query(mut self, query: Option<&str>) -> Result<Self> {
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| Error::BadRequest(format!("query parameter {k} is not UTF-8")))?;
            match (&mut self.op, k) {
                (Op::Reduce(_, action, weights), "weights") => {
                    *weights = match &*v {
                        "coslat" => Weights::CosLat,
                        "" | "none" => Weights::None,
                        _ => {
                            return Err(Error::BadRequest(format!(
                                "unknown weights {v:?}; coslat or none"
                            )));
                        }
                    };
                    if *weights == Weights::CosLat
                        && !matches!(
                            action,
                            Action::Mean | Action::Sum | Action::Std | Action::Var
                        )
                    {
                        return Err(Error::BadRequest(format!(
                            "weights apply to mean, sum, std and var, not {}",
                            action.name()
                        )));
                    }
                }
                (Op::Plot(_, _, o), "vmin" | "vmax") if !v.is_empty() => {
                    let x = number(&v).ok_or_else(|| {
                        Error::BadRequest(format!("{k} must be a finite number, not {v:?}"))
                    })?;
                    if k == "vmin" {
                        o.vmin = Some(x);
                    } else {
                        o.vmax = Some(x);
                    }
                }
                (Op::Plot(_, _, o), "width" | "height") if !v.is_empty() => {
                    let px = v
                        .parse::<u32>()
                        .ok()
                        .filter(|p| PLOT_SIDES.contains(p))
                        .ok_or_else(|| {
                            Error::BadRequest(format!(
                                "{k} must be a whole number of pixels from {} to {}, not {v:?}",
                                PLOT_SIDES.start(),
                                PLOT_SIDES.end()
                            ))
                        })?;
                    if k == "width" {
                        o.width = px;
                    } else {
                        o.height = px;
                    }
                }
                _ => {}
            }
        }
        if let Op::Plot(
            _,
            _,
            PlotOptions {
                vmin: Some(lo),
                vmax: Some(hi),
                ..
            },
        ) = self.op
            && lo >= hi
        {
            return Err(Error::BadRequest(format!(
                "vmin ({lo}) must be below vmax ({hi})"
            )));
        }
        Ok(self)
    }
}

/// A variable, coordinate or dimension name: netCDF names are letters, digits and `_.-+@`;
/// anything else (quotes, parentheses, `;`, spaces) cannot name one.
fn name(s: &str, what: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | '@'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Error::BadRequest(format!("{s:?} is not a {what} name")))
    }
}

/// A finite number written plainly (`-30`, `2.5`, `1e3`; not `inf` or `nan`).
fn number(s: &str) -> Option<f64> {
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    s.parse::<f64>().ok().filter(|x| plain && x.is_finite())
}

fn bound(s: &str, pair: &str) -> Result<Bound> {
    if let Some(x) = number(s) {
        return Ok(Bound::Number(x));
    }
    let date = s.len() >= 10
        && s.as_bytes()[4] == b'-'
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'T' | b'.'));
    if date {
        return Ok(Bound::Date(s.to_owned()));
    }
    Err(Error::BadRequest(format!(
        "selection bound {s:?} in {pair:?} is neither a number nor an ISO date (2000-01-31)"
    )))
}

fn range(coord: &str, pair: &str) -> Result<Range> {
    let coord = name(coord, "coordinate")?;
    let (low, high) = pair.split_once('_').ok_or_else(|| {
        Error::BadRequest(format!(
            "selection {coord}/{pair} is not {{low}}_{{high}} (for example 0_12 or -30_30)"
        ))
    })?;
    let (low, high) = (bound(low, pair)?, bound(high, pair)?);
    if let (Bound::Number(l), Bound::Number(h)) = (&low, &high)
        && l >= h
    {
        return Err(Error::BadRequest(format!(
            "selection {coord}/{pair} is empty: low must be below high"
        )));
    }
    Ok(Range { coord, low, high })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parse(path: &str) -> Result<Diagnostic> {
        let segments: Vec<&str> = path.split('/').collect();
        Diagnostic::parse(segments[0], &segments[1..])
    }

    #[test]
    fn routes_parse() {
        let d = parse("groupby/tas/time.month/mean").unwrap();
        assert_eq!(d.var, "tas");
        assert_eq!(
            d.op,
            Op::GroupBy(
                GroupBy {
                    coord: "time".into(),
                    part: Some(TimePart::Month)
                },
                Action::Mean
            )
        );
        assert_eq!(d.output, Output::Document);
        let d = parse("reduce/tas/lat,lon/std/time/0_12/lat/-30_30.5/zarr/tas/0").unwrap();
        assert_eq!(
            d.op,
            Op::Reduce(vec!["lat".into(), "lon".into()], Action::Std, Weights::None)
        );
        assert_eq!(d.selection.len(), 2);
        assert_eq!(d.selection[1].low, Bound::Number(-30.0));
        assert_eq!(d.selection[1].high, Bound::Number(30.5));
        assert_eq!(
            d.output,
            Output::Zarr(Some(ZarrKey::Chunk("tas".into(), vec![0])))
        );
        let d = parse("groupby/tas/lat/max/time/2000-01-01_2001-01-01/zarr/").unwrap();
        assert_eq!(d.selection[0].low, Bound::Date("2000-01-01".into()));
        assert_eq!(d.output, Output::Zarr(None));
        let d = parse("plot/tas/map/RdBu_r/time/3_4")
            .unwrap()
            .with_query(Some("vmin=-2&vmax=2.5&width=300&other=x"))
            .unwrap();
        let Op::Plot(PlotKind::Map, _, o) = d.op else {
            panic!("{d:?}")
        };
        assert_eq!(
            (o.vmin, o.vmax, o.width, o.height),
            (Some(-2.0), Some(2.5), 300, 500)
        );
        let d = parse("reduce/tas/lat,lon/mean")
            .unwrap()
            .with_query(Some("weights=coslat"))
            .unwrap();
        assert!(matches!(d.op, Op::Reduce(_, _, Weights::CosLat)));
    }

    #[test]
    fn hostile_or_malformed_parts_are_named() {
        for (path, part) in [
            ("groupby/tas/time.month/median", "median"),
            ("groupby/tas/time.week/mean", "week"),
            ("groupby/__import__('os')/time.month/mean", "__import__"),
            ("groupby/tas;rm/time.month/mean", "tas;rm"),
            ("groupby/tas/time.month/mean/time", "time"),
            ("groupby/tas/time.month/mean/time/0-12", "0-12"),
            ("groupby/tas/time.month/mean/time/12_0", "empty"),
            ("groupby/tas/time.month/mean/time/a_b", "\"a\""),
            ("groupby/tas/time.month/mean/time/nan_inf", "nan"),
            ("groupby/tas/time.month/mean/time/0_1/time/1_2", "twice"),
            ("groupby/'tas'/time.month/mean", "'tas'"),
            ("groupby/tas", "groupby needs"),
            ("reduce/tas/lat,,lon/mean", "\"\""),
            ("reduce/tas/lat,lat/mean", "twice"),
            ("plot/tas/contour/viridis", "contour"),
            ("plot/tas/map/jet2", "jet2"),
        ] {
            let e = parse(path).unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{path}: {e:?}");
            assert!(e.to_string().contains(part), "{path}: {e}");
        }
        for (path, query, part) in [
            ("reduce/tas/lat/max", "weights=coslat", "weights apply"),
            ("reduce/tas/lat/mean", "weights=area", "area"),
            ("plot/tas/map/viridis", "vmin=1&vmax=0", "below"),
            ("plot/tas/map/viridis", "width=9999", "width"),
            ("plot/tas/map/viridis", "vmin=__import__", "vmin"),
        ] {
            let e = parse(path).unwrap().with_query(Some(query)).unwrap_err();
            assert!(e.to_string().contains(part), "{path}?{query}: {e}");
        }
    }
}
