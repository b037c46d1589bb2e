//! The colour maps plots may use, sampled as matplotlib samples its 256-entry tables, so a
//! value gets the colour matplotlib's map of the same name gives it.
//!
//! The perceptual maps come from colorous (d3-scale-chromatic's copies of matplotlib's tables;
//! its cividis is a polynomial fit, within 5 levels of matplotlib's).
//! colorous draws ColorBrewer's diverging schemes with B-splines and has no coolwarm, so the two
//! diverging maps are written here: RdBu as matplotlib defines it (linear between ColorBrewer's
//! eleven colours), coolwarm from Moreland's Msh interpolation ("Diverging Color Maps for
//! Scientific Visualization", 2009), which matplotlib's table samples.

use crate::error::{Error, Result};

/// A named colour map, possibly reversed (`_r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colormap {
    scheme: Scheme,
    reversed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Viridis,
    Plasma,
    Magma,
    Inferno,
    Cividis,
    RdBu,
    Coolwarm,
}

const SCHEMES: [(&str, Scheme); 7] = [
    ("viridis", Scheme::Viridis),
    ("plasma", Scheme::Plasma),
    ("magma", Scheme::Magma),
    ("inferno", Scheme::Inferno),
    ("cividis", Scheme::Cividis),
    ("RdBu", Scheme::RdBu),
    ("coolwarm", Scheme::Coolwarm),
];

/// ColorBrewer's RdBu, red (low) to blue (high).
const RDBU: [[u8; 3]; 11] = [
    [0x67, 0x00, 0x1f],
    [0xb2, 0x18, 0x2b],
    [0xd6, 0x60, 0x4d],
    [0xf4, 0xa5, 0x82],
    [0xfd, 0xdb, 0xc7],
    [0xf7, 0xf7, 0xf7],
    [0xd1, 0xe5, 0xf0],
    [0x92, 0xc5, 0xde],
    [0x43, 0x93, 0xc3],
    [0x21, 0x66, 0xac],
    [0x05, 0x30, 0x61],
];

/// Entries in a matplotlib colour table.
const ENTRIES: f64 = 256.0;

impl Colormap {
    /// The names a URL may use, reversed ones aside.
    pub fn names() -> Vec<&'static str> {
        SCHEMES.iter().map(|(n, _)| *n).collect()
    }

    /// `viridis`, `RdBu_r`, ...
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming the map and the known ones.
    pub fn parse(s: &str) -> Result<Self> {
        let (base, reversed) = match s.strip_suffix("_r") {
            Some(b) => (b, true),
            None => (s, false),
        };
        SCHEMES
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, scheme)| Self {
                scheme: *scheme,
                reversed,
            })
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown colour map {s:?}; one of {} (each also reversed with _r)",
                    Self::names().join(", ")
                ))
            })
    }

    /// The colour of `t` in [0, 1] (clamped): the table entry matplotlib picks for it.
    pub fn rgb(self, t: f64) -> [u8; 3] {
        let entry = (t.clamp(0.0, 1.0) * ENTRIES).floor().min(ENTRIES - 1.0);
        let entry = if self.reversed {
            ENTRIES - 1.0 - entry
        } else {
            entry
        };
        let x = entry / (ENTRIES - 1.0);
        let from = |g: colorous::Gradient| {
            // colorous samples index floor(x * 256) of its 256-entry copy; aim at the middle
            // of entry `entry` so rounding cannot pick a neighbour.
            let c = g.eval_continuous((entry + 0.5) / ENTRIES);
            [c.r, c.g, c.b]
        };
        match self.scheme {
            Scheme::Viridis => from(colorous::VIRIDIS),
            Scheme::Plasma => from(colorous::PLASMA),
            Scheme::Magma => from(colorous::MAGMA),
            Scheme::Inferno => from(colorous::INFERNO),
            Scheme::Cividis => from(colorous::CIVIDIS),
            Scheme::RdBu => linear(&RDBU, x),
            Scheme::Coolwarm => msh::coolwarm(x),
        }
    }
}

/// Linear interpolation between evenly spaced colours.
fn linear(stops: &[[u8; 3]], x: f64) -> [u8; 3] {
    let pos = x * (stops.len() - 1) as f64;
    let i = (pos.floor() as usize).min(stops.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    std::array::from_fn(|k| {
        (f64::from(a[k]) + f * (f64::from(b[k]) - f64::from(a[k]))).round() as u8
    })
}

/// Moreland's diverging interpolation in the Msh space (polar CIELAB).
mod msh {
    use std::f64::consts::PI;

    /// coolwarm's ends: blue (low) and red (high).
    const COOL: [f64; 3] = [59.0, 76.0, 192.0];
    const WARM: [f64; 3] = [180.0, 4.0, 38.0];
    /// D65 white point.
    const WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];

    fn to_linear(c: f64) -> f64 {
        let c = c / 255.0;
        if c > 0.040_45 {
            ((c + 0.055) / 1.055).powf(2.4)
        } else {
            c / 12.92
        }
    }

    fn from_linear(c: f64) -> f64 {
        let c = if c > 0.003_130_8 {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        } else {
            12.92 * c
        };
        (c * 255.0).clamp(0.0, 255.0)
    }

    fn to_msh(rgb: [f64; 3]) -> [f64; 3] {
        let [r, g, b] = rgb.map(to_linear);
        let xyz = [
            0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b,
            0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b,
            0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b,
        ];
        let f = |t: f64| {
            if t > 0.008_856 {
                t.cbrt()
            } else {
                7.787 * t + 16.0 / 116.0
            }
        };
        let [fx, fy, fz] = [0, 1, 2].map(|i| f(xyz[i] / WHITE[i]));
        let (l, a, bb) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
        let m = (l * l + a * a + bb * bb).sqrt();
        [m, (l / m).acos(), bb.atan2(a)]
    }

    fn to_rgb([m, s, h]: [f64; 3]) -> [u8; 3] {
        let (l, a, b) = (m * s.cos(), m * s.sin() * h.cos(), m * s.sin() * h.sin());
        let fy = (l + 16.0) / 116.0;
        let (fx, fz) = (fy + a / 500.0, fy - b / 200.0);
        let finv = |t: f64| {
            if t.powi(3) > 0.008_856 {
                t.powi(3)
            } else {
                (t - 16.0 / 116.0) / 7.787
            }
        };
        let [x, y, z] = [fx, fy, fz].map(finv);
        let [x, y, z] = [x * WHITE[0], y * WHITE[1], z * WHITE[2]];
        let rgb = [
            3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z,
            -0.969_266_0 * x + 1.876_010_8 * y + 0.041_556_0 * z,
            0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z,
        ];
        rgb.map(|c| from_linear(c).round() as u8)
    }

    /// The hue an unsaturated colour takes next to a saturated one, so the path to white turns
    /// smoothly.
    fn adjust_hue([m, s, h]: [f64; 3], m_unsat: f64) -> f64 {
        if m >= m_unsat {
            return h;
        }
        let spin = s * (m_unsat * m_unsat - m * m).sqrt() / (m * s.sin());
        if h > -PI / 3.0 { h + spin } else { h - spin }
    }

    pub(super) fn coolwarm(x: f64) -> [u8; 3] {
        let (mut a, mut b) = (to_msh(COOL), to_msh(WARM));
        let mut t = x;
        if a[1] > 0.05 && b[1] > 0.05 && (a[2] - b[2]).abs() > PI / 3.0 {
            let mid = a[0].max(b[0]).max(88.0);
            if t < 0.5 {
                b = [mid, 0.0, 0.0];
                t *= 2.0;
            } else {
                a = [mid, 0.0, 0.0];
                t = 2.0 * t - 1.0;
            }
        }
        if a[1] < 0.05 && b[1] > 0.05 {
            a[2] = adjust_hue(b, a[0]);
        } else if b[1] < 0.05 && a[1] > 0.05 {
            b[2] = adjust_hue(a, b[0]);
        }
        to_rgb(std::array::from_fn(|i| (1.0 - t) * a[i] + t * b[i]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn maps_give_matplotlibs_ends_and_middles() {
        let at = |name: &str, t| Colormap::parse(name).unwrap().rgb(t);
        // Values of matplotlib 3.11's tables (`cmap(t, bytes=True)`), to within rounding;
        // d3's cividis is a polynomial fit of matplotlib's table, a few levels off.
        let close = |name: &str, a: [u8; 3], b: [u8; 3]| {
            let tolerance = if name == "cividis" { 5 } else { 2 };
            a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
        };
        for (name, t, want) in [
            ("viridis", 0.0, [68, 1, 84]),
            ("viridis", 1.0, [253, 231, 36]),
            ("viridis_r", 0.0, [253, 231, 36]),
            ("RdBu", 0.0, [103, 0, 31]),
            ("RdBu", 1.0, [5, 48, 97]),
            ("RdBu_r", 0.0, [5, 48, 97]),
            ("RdBu", 0.5, [247, 246, 246]),
            ("coolwarm", 0.0, [58, 76, 192]),
            ("coolwarm", 1.0, [179, 3, 38]),
            ("coolwarm", 0.5, [221, 220, 219]),
            ("coolwarm", 0.25, [141, 175, 253]),
            ("RdBu", 0.3, [243, 163, 128]),
            ("cividis", 0.5, [124, 123, 120]),
        ] {
            let got = at(name, t);
            assert!(
                close(name, got, want),
                "{name}({t}) = {got:?}, want {want:?}"
            );
        }
        assert!(Colormap::parse("jet").is_err());
        assert!(Colormap::parse("viridis_r_r").is_err());
    }
}
