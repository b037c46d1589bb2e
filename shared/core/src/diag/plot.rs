//! PNG plots drawn in the core, so every runtime draws the same picture: a map of a 2-D field
//! with a colour bar, or the area-mean time series. Text uses the public-domain 8x8 bitmap
//! font of font8x8 (no system fonts at run time); the PNG is written by the png crate.
//!
//! The plot area is recorded in the PNG's text chunks (`plot-area`: x0 y0 x1 y1, end
//! exclusive; `vmin`, `vmax` or `ymin`, `ymax`), so programs can find the pixel of a value.

use font8x8::UnicodeFonts;
use serde_json::Value;

use crate::cftime::{Calendar, Units};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::read::Reader;

use super::blocks::read_values;
use super::colormap::Colormap;
use super::compute::{Outcome, Plan};
use super::request::{Action, Diagnostic, Op, Output, PlotKind, PlotOptions, Weights};
use super::select::Labels;

const LEFT: u32 = 80;
const RIGHT_MAP: u32 = 110;
const RIGHT_LINE: u32 = 30;
const TOP: u32 = 50;
const BOTTOM: u32 = 40;
const BLACK: [u8; 4] = [0, 0, 0, 255];
const WHITE: [u8; 4] = [255, 255, 255, 255];
const CLEAR: [u8; 4] = [0, 0, 0, 0];

/// An RGBA picture.
struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Self {
            w,
            h,
            px: WHITE.repeat((w * h) as usize),
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 4]) {
        if x >= 0 && y >= 0 && x < i64::from(self.w) && y < i64::from(self.h) {
            let i = ((y as u32 * self.w + x as u32) * 4) as usize;
            self.px[i..i + 4].copy_from_slice(&c);
        }
    }

    fn frame(&mut self, x0: u32, y0: u32, x1: u32, y1: u32) {
        for x in x0 - 1..=x1 {
            self.set(x.into(), i64::from(y0) - 1, BLACK);
            self.set(x.into(), y1.into(), BLACK);
        }
        for y in y0 - 1..=y1 {
            self.set(i64::from(x0) - 1, y.into(), BLACK);
            self.set(x1.into(), y.into(), BLACK);
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` pixels wide.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::LATIN_FONTS.get(ch))
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(
                                    x + (k as i64 * 8 + col) * scale + dx,
                                    y + row as i64 * scale + dy,
                                    BLACK,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Text centred on x.
    fn centred(&mut self, x: i64, y: i64, s: &str, scale: i64) {
        let w = s.chars().count() as i64 * 8 * scale;
        self.text(x - w / 2, y, s, scale);
    }

    /// Text ending at x.
    fn right(&mut self, x: i64, y: i64, s: &str) {
        self.text(x - s.chars().count() as i64 * 8, y, s, 1);
    }

    fn png(&self, notes: &[(&str, String)]) -> Result<Vec<u8>> {
        let failed = |e: png::EncodingError| {
            Error::Storage(crate::error::Fault::bare(format!(
                "PNG encoding failed: {e}"
            )))
        };
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.w, self.h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in notes {
            enc.add_text_chunk((*k).to_owned(), v.clone())
                .map_err(failed)?;
        }
        let mut w = enc.write_header().map_err(failed)?;
        w.write_image_data(&self.px).map_err(failed)?;
        w.finish().map_err(failed)?;
        Ok(out)
    }
}

/// A short label for a number: four significant digits, exponent form when large or small.
fn label(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs();
    if !(1e-2..1e5).contains(&mag) {
        return format!("{x:.2e}");
    }
    let decimals = (3 - mag.log10().floor() as i32).clamp(0, 4) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// The variable's long name (or name) and units, for a title.
fn title(m: &Manifest, var: &str) -> String {
    let attrs = m.arrays.get(var).map(|a| &a.attrs);
    let get = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_str);
    let name = get("long_name").unwrap_or(var);
    match get("units") {
        Some(u) => format!("{name} [{u}]"),
        None => name.to_owned(),
    }
}

/// The variable's time dimension: the one whose coordinate has CF time units.
fn time_dim(m: &Manifest, var: &str) -> Option<(usize, Units, Calendar)> {
    let a = m.arrays.get(var)?;
    a.dims.iter().enumerate().find_map(|(d, dim)| {
        let c = m.arrays.get(dim)?;
        let units = c
            .attrs
            .get("units")
            .and_then(Value::as_str)
            .and_then(Units::parse)?;
        let calendar = Calendar::parse(c.attrs.get("calendar").and_then(Value::as_str))?;
        (c.dims.len() == 1).then_some((d, units, calendar))
    })
}

/// Draw plot `d`.
///
/// # Errors
/// [`Error::BadRequest`] for a variable that cannot be drawn so; as [`Plan::run`].
pub async fn draw(
    reader: &Reader<'_>,
    m: &Manifest,
    version: &str,
    d: &Diagnostic,
    kind: PlotKind,
    cmap: Colormap,
    o: &PlotOptions,
) -> Result<Vec<u8>> {
    let a = m.arrays.get(&d.var).ok_or_else(|| {
        Error::BadRequest(format!(
            "unknown variable {:?}; variables: {}",
            d.var,
            m.arrays.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let nd = a.dims.len();
    let time = time_dim(m, &d.var);
    let (reduced, weights): (Vec<usize>, Weights) = match kind {
        PlotKind::Map if nd < 2 => {
            return Err(Error::BadRequest(format!(
                "{:?} has {nd} dimension(s); a map needs two",
                d.var
            )));
        }
        PlotKind::Map => ((0..nd - 2).collect(), Weights::None),
        PlotKind::Timeseries => {
            let (t, _, _) = time.ok_or_else(|| {
                Error::BadRequest(format!(
                    "{:?} has no time dimension (a coordinate with CF time units)",
                    d.var
                ))
            })?;
            let others: Vec<usize> = (0..nd).filter(|x| *x != t).collect();
            let lat = others.iter().any(|x| {
                let c = &a.dims[*x];
                matches!(c.as_str(), "lat" | "latitude")
                    || m.arrays.get(c).is_some_and(|c| {
                        c.attrs.get("units").and_then(Value::as_str) == Some("degrees_north")
                    })
            });
            (others, if lat { Weights::CosLat } else { Weights::None })
        }
    };
    let dims = reduced.iter().map(|x| a.dims[*x].clone()).collect();
    let reduce = Diagnostic {
        var: d.var.clone(),
        op: Op::Reduce(dims, Action::Mean, weights),
        selection: d.selection.clone(),
        output: Output::Document,
    };
    let mut plan = Plan::new(reader, m, version, &reduce).await?;
    let mut notes = Vec::new();
    if kind == PlotKind::Map {
        for dim in 0..nd - 2 {
            if plan.selects(dim) {
                continue;
            }
            // No selection: the last time step, the first of other dimensions (levels).
            let last = time.as_ref().is_some_and(|(t, _, _)| *t == dim);
            let at = if last {
                a.shape[dim].saturating_sub(1)
            } else {
                0
            };
            plan.only(dim, at);
        }
        for dim in 0..nd - 2 {
            let (first, last, n) = plan.span(dim);
            let values = match m.arrays.get(&a.dims[dim]) {
                Some(c) if c.dims.len() == 1 => {
                    Some(read_values(reader, m, version, &a.dims[dim]).await?)
                }
                _ => None,
            };
            let show = |i: u64| -> String {
                let v = values.as_ref().and_then(|v| v.get(i as usize).copied());
                match (&time, v) {
                    (Some((t, units, cal)), Some(v)) if *t == dim => units
                        .decode(v, *cal)
                        .map_or_else(|| label(v), |dt| dt.rfc3339()[..10].to_owned()),
                    (_, Some(v)) => label(v),
                    _ => format!("#{i}"),
                }
            };
            notes.push(if n == 1 {
                format!("{} {}", a.dims[dim], show(first))
            } else {
                format!(
                    "{} mean of {n}, {} to {}",
                    a.dims[dim],
                    show(first),
                    show(last)
                )
            });
        }
    }
    let outcome = plan.run(reader, version).await?;
    let (w, h) = (o.width, o.height);
    match kind {
        PlotKind::Map => map(
            &outcome,
            &title(m, &d.var),
            &notes.join(", "),
            cmap,
            o,
            w,
            h,
        ),
        PlotKind::Timeseries => {
            let times = outcome.coords.iter().find(|c| c.name == outcome.dims[0]);
            let dates: Vec<String> = match (times.map(|c| &c.labels), &time) {
                (Some(Labels::Numbers(v, _)), Some((_, units, cal))) => v
                    .iter()
                    .map(|x| {
                        units
                            .decode(*x, *cal)
                            .map_or_else(|| label(*x), |t| t.rfc3339()[..10].to_owned())
                    })
                    .collect(),
                _ => (0..outcome.values.len()).map(|i| i.to_string()).collect(),
            };
            let what = if weights == Weights::CosLat {
                "area mean (cos(lat) weights)"
            } else {
                "mean"
            };
            line(
                &outcome,
                &format!("{what} of {}", title(m, &d.var)),
                &dates,
                cmap,
                w,
                h,
            )
        }
    }
}

/// A map of `o` (2-D: y then x) with a colour bar.
fn map(
    o: &Outcome,
    title: &str,
    note: &str,
    cmap: Colormap,
    opts: &PlotOptions,
    w: u32,
    h: u32,
) -> Result<Vec<u8>> {
    let (ny, nx) = (o.shape[0] as usize, o.shape[1] as usize);
    let finite = o.values.iter().copied().filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let vmin = opts.vmin.unwrap_or(if lo.is_finite() { lo } else { 0.0 });
    let vmax = opts.vmax.unwrap_or(if hi.is_finite() { hi } else { 1.0 });
    let coord = |k: usize| {
        o.coords
            .iter()
            .find(|c| c.name == o.dims[k])
            .and_then(|c| match &c.labels {
                Labels::Numbers(v, _) => Some(v.clone()),
                Labels::Strings(_) => None,
            })
    };
    let (ys, xs) = (coord(0), coord(1));
    // North up and east right when the coordinates say which way they run.
    let y_up = ys.as_ref().is_none_or(|v| v.first() <= v.last());
    let x_right = xs.as_ref().is_none_or(|v| v.first() <= v.last());
    let mut c = Canvas::new(w, h);
    let (x0, y0, x1, y1) = (LEFT, TOP, w - RIGHT_MAP, h - BOTTOM);
    let (pw, ph) = (u64::from(x1 - x0), u64::from(y1 - y0));
    let colour = |v: f64| -> [u8; 4] {
        if !v.is_finite() {
            return CLEAR;
        }
        let t = if vmax > vmin {
            (v - vmin) / (vmax - vmin)
        } else {
            0.0
        };
        let [r, g, b] = cmap.rgb(t);
        [r, g, b, 255]
    };
    for py in 0..ph {
        let from_bottom = (ph - 1 - py) * ny as u64 / ph;
        let row = if y_up {
            from_bottom
        } else {
            ny as u64 - 1 - from_bottom
        } as usize;
        for px in 0..pw {
            let col = (px * nx as u64 / pw) as usize;
            let col = if x_right { col } else { nx - 1 - col };
            let v = o.values.get(row * nx + col).copied().unwrap_or(f64::NAN);
            c.set(
                (u64::from(x0) + px) as i64,
                (u64::from(y0) + py) as i64,
                colour(v),
            );
        }
    }
    c.frame(x0, y0, x1, y1);
    c.centred(i64::from(w / 2), 8, title, 2);
    c.centred(i64::from(w / 2), 30, note, 1);
    let ends = |v: &Option<Vec<f64>>, flip: bool| {
        v.as_ref().map(|v| {
            let (a, b) = (
                v.first().copied().unwrap_or(0.0),
                v.last().copied().unwrap_or(0.0),
            );
            if flip { (b, a) } else { (a, b) }
        })
    };
    if let Some((left, right)) = ends(&xs, !x_right) {
        c.text(i64::from(x0), i64::from(y1) + 6, &label(left), 1);
        c.right(i64::from(x1), i64::from(y1) + 6, &label(right));
    }
    c.centred(i64::from((x0 + x1) / 2), i64::from(y1) + 20, &o.dims[1], 1);
    if let Some((bottom, top)) = ends(&ys, !y_up) {
        c.right(i64::from(x0) - 6, i64::from(y1) - 8, &label(bottom));
        c.right(i64::from(x0) - 6, i64::from(y0), &label(top));
    }
    c.right(i64::from(x0) - 6, i64::from((y0 + y1) / 2), &o.dims[0]);
    // Colour bar: vmin at the bottom, vmax at the top.
    let (bx0, bx1) = (x1 + 20, x1 + 40);
    for py in y0..y1 {
        let t = f64::from(y1 - 1 - py) / f64::from(y1 - y0 - 1).max(1.0);
        let [r, g, b] = cmap.rgb(t);
        for px in bx0..bx1 {
            c.set(px.into(), py.into(), [r, g, b, 255]);
        }
    }
    c.frame(bx0, y0, bx1, y1);
    c.text(i64::from(bx1) + 4, i64::from(y0), &label(vmax), 1);
    c.text(
        i64::from(bx1) + 4,
        i64::from((y0 + y1) / 2) - 4,
        &label((vmin + vmax) / 2.0),
        1,
    );
    c.text(i64::from(bx1) + 4, i64::from(y1) - 8, &label(vmin), 1);
    c.png(&[
        ("plot-area", format!("{x0} {y0} {x1} {y1}")),
        ("vmin", vmin.to_string()),
        ("vmax", vmax.to_string()),
    ])
}

/// A line plot of `o` (1-D) against `dates`.
fn line(
    o: &Outcome,
    title: &str,
    dates: &[String],
    cmap: Colormap,
    w: u32,
    h: u32,
) -> Result<Vec<u8>> {
    let finite = o.values.iter().copied().filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    let (ymin, ymax) = (lo - pad, hi + pad);
    let mut c = Canvas::new(w, h);
    let (x0, y0, x1, y1) = (LEFT, TOP, w - RIGHT_LINE, h - BOTTOM);
    let n = o.values.len();
    let at = |i: usize, v: f64| -> (i64, i64) {
        let fx = if n > 1 {
            i as f64 / (n - 1) as f64
        } else {
            0.5
        };
        let fy = (v - ymin) / (ymax - ymin);
        (
            i64::from(x0) + (fx * f64::from(x1 - x0 - 1)).round() as i64,
            i64::from(y1) - 1 - (fy * f64::from(y1 - y0 - 1)).round() as i64,
        )
    };
    let [r, g, b] = cmap.rgb(0.0);
    let ink = [r, g, b, 255];
    let mut prev: Option<(i64, i64)> = None;
    for (i, v) in o.values.iter().enumerate() {
        if !v.is_finite() {
            prev = None;
            continue;
        }
        let p = at(i, *v);
        let from = prev.unwrap_or(p);
        // Bresenham, two pixels thick.
        let (mut x, mut y) = from;
        let (dx, dy) = ((p.0 - x).abs(), -(p.1 - y).abs());
        let (sx, sy) = (if x < p.0 { 1 } else { -1 }, if y < p.1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            c.set(x, y, ink);
            c.set(x, y + 1, ink);
            if (x, y) == p {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
        prev = Some(p);
    }
    c.frame(x0, y0, x1, y1);
    c.centred(
        i64::from(w / 2),
        8,
        title,
        if title.len() * 16 < w as usize { 2 } else { 1 },
    );
    if let (Some(first), Some(last)) = (dates.first(), dates.last()) {
        c.text(i64::from(x0), i64::from(y1) + 6, first, 1);
        c.right(i64::from(x1), i64::from(y1) + 6, last);
    }
    c.centred(i64::from((x0 + x1) / 2), i64::from(y1) + 20, &o.dims[0], 1);
    c.right(i64::from(x0) - 6, i64::from(y0), &label(ymax));
    c.right(i64::from(x0) - 6, i64::from(y1) - 8, &label(ymin));
    c.png(&[
        ("plot-area", format!("{x0} {y0} {x1} {y1}")),
        ("ymin", ymin.to_string()),
        ("ymax", ymax.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(label(273.16), "273.2");
        assert_eq!(label(-0.5), "-0.5");
        assert_eq!(label(1e-5), "1.00e-5");
        assert_eq!(label(100000.0), "1.00e5");
        assert_eq!(label(12.0), "12");
    }
}
