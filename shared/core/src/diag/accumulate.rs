//! Running statistics per output cell, fed one value at a time in index order, so a
//! computation holds one chunk and the accumulators whatever the length of the record.
//!
//! Mean, variance and standard deviation use West's weighted form of Welford's update (stable
//! without a second pass); sums are Neumaier-compensated. Semantics follow xarray's `skipna`
//! reductions: NaN is skipped, a sum of nothing is 0, any other statistic of nothing is NaN,
//! `ddof=0`.

use super::request::Action;

/// Accumulators of one action over `cells` output cells.
#[derive(Debug)]
pub enum Accumulator {
    /// Valid values per cell.
    Count(Vec<u64>),
    /// Compensated sums of weighted values: sum and running compensation.
    Sum(Vec<f64>, Vec<f64>),
    /// Weight, mean and (for std/var) the sum of weighted squared deviations.
    Moments {
        weight: Vec<f64>,
        mean: Vec<f64>,
        m2: Option<Vec<f64>>,
    },
    /// Smallest (`false`) or largest (`true`) value so far; NaN before the first.
    Extreme(Vec<f64>, bool),
    /// First value (`false`: kept once set) or last value (`true`: replaced each time).
    Pick(Vec<f64>, bool),
}

impl Accumulator {
    /// Empty accumulators of `action` for `cells` cells.
    pub fn new(action: Action, cells: usize) -> Self {
        let zeros = || vec![0.0; cells];
        let nans = || vec![f64::NAN; cells];
        match action {
            Action::Count => Accumulator::Count(vec![0; cells]),
            Action::Sum => Accumulator::Sum(zeros(), zeros()),
            Action::Mean => Accumulator::Moments {
                weight: zeros(),
                mean: zeros(),
                m2: None,
            },
            Action::Std | Action::Var => Accumulator::Moments {
                weight: zeros(),
                mean: zeros(),
                m2: Some(zeros()),
            },
            Action::Min => Accumulator::Extreme(nans(), false),
            Action::Max => Accumulator::Extreme(nans(), true),
            Action::First => Accumulator::Pick(nans(), false),
            Action::Last => Accumulator::Pick(nans(), true),
        }
    }

    /// Bytes the accumulators of `action` take for `cells` cells, before making them.
    pub fn bytes(action: Action, cells: u64) -> u64 {
        let per_cell = match action {
            Action::Std | Action::Var => 24,
            Action::Sum | Action::Mean => 16,
            _ => 8,
        };
        cells.saturating_mul(per_cell)
    }

    /// Add value `x` (NaN: skipped) of weight `w` to cell `i`.
    #[inline]
    pub fn add(&mut self, i: usize, x: f64, w: f64) {
        if x.is_nan() {
            return;
        }
        match self {
            Accumulator::Count(n) => n[i] += 1,
            Accumulator::Sum(sum, comp) => {
                let v = x * w;
                let t = sum[i] + v;
                comp[i] += if sum[i].abs() >= v.abs() {
                    (sum[i] - t) + v
                } else {
                    (v - t) + sum[i]
                };
                sum[i] = t;
            }
            Accumulator::Moments { weight, mean, m2 } => {
                if w <= 0.0 {
                    return;
                }
                let total = weight[i] + w;
                let delta = x - mean[i];
                let r = delta * w / total;
                mean[i] += r;
                if let Some(m2) = m2 {
                    m2[i] += weight[i] * delta * r;
                }
                weight[i] = total;
            }
            Accumulator::Extreme(v, largest) => {
                let better = if *largest { x > v[i] } else { x < v[i] };
                if v[i].is_nan() || better {
                    v[i] = x;
                }
            }
            Accumulator::Pick(v, last) => {
                if *last || v[i].is_nan() {
                    v[i] = x;
                }
            }
        }
    }

    /// The statistic per cell (`std` takes the square root of the variance).
    pub fn finish(self, action: Action) -> Vec<f64> {
        match self {
            Accumulator::Count(n) => n.into_iter().map(|c| c as f64).collect(),
            Accumulator::Sum(sum, comp) => sum.iter().zip(&comp).map(|(s, c)| s + c).collect(),
            Accumulator::Moments { weight, mean, m2 } => {
                let empty = |i: usize| weight[i] <= 0.0;
                match m2 {
                    None => (0..mean.len())
                        .map(|i| if empty(i) { f64::NAN } else { mean[i] })
                        .collect(),
                    Some(m2) => (0..m2.len())
                        .map(|i| {
                            let var = if empty(i) {
                                f64::NAN
                            } else {
                                (m2[i] / weight[i]).max(0.0)
                            };
                            if action == Action::Std {
                                var.sqrt()
                            } else {
                                var
                            }
                        })
                        .collect(),
                }
            }
            Accumulator::Extreme(v, _) | Accumulator::Pick(v, _) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: Action, xs: &[f64]) -> f64 {
        let mut acc = Accumulator::new(action, 1);
        for x in xs {
            acc.add(0, *x, 1.0);
        }
        acc.finish(action)[0]
    }

    #[test]
    fn statistics_skip_nan_as_xarray() {
        let xs = [2.0, f64::NAN, 4.0, 9.0];
        assert_eq!(run(Action::Count, &xs), 3.0);
        assert_eq!(run(Action::Sum, &xs), 15.0);
        assert_eq!(run(Action::Mean, &xs), 5.0);
        assert_eq!(run(Action::Min, &xs), 2.0);
        assert_eq!(run(Action::Max, &xs), 9.0);
        assert_eq!(run(Action::First, &[f64::NAN, 3.0, 1.0]), 3.0);
        assert_eq!(run(Action::Last, &[3.0, 1.0, f64::NAN]), 1.0);
        assert!((run(Action::Var, &xs) - 26.0 / 3.0).abs() < 1e-12);
        assert!((run(Action::Std, &xs) - (26.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let none = [f64::NAN];
        assert_eq!(run(Action::Sum, &none), 0.0);
        assert_eq!(run(Action::Count, &none), 0.0);
        for a in [Action::Mean, Action::Std, Action::Min, Action::First] {
            assert!(run(a, &none).is_nan(), "{a:?}");
        }
    }

    #[test]
    fn weighted_moments_and_compensated_sums() {
        let mut acc = Accumulator::new(Action::Var, 1);
        for (x, w) in [(1.0, 1.0), (3.0, 3.0)] {
            acc.add(0, x, w);
        }
        // Weighted mean 2.5; variance (1 * 2.25 + 3 * 0.25) / 4.
        assert!((acc.finish(Action::Var)[0] - 0.75).abs() < 1e-12);
        let mut big = vec![1e16];
        big.extend(std::iter::repeat_n(1.0, 1000));
        assert_eq!(run(Action::Sum, &big), 1e16 + 1000.0);
    }
}
