//! Summary statistics.

use serde::Serialize;

/// Percentiles of a sample of durations, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Nearest-rank percentiles of `values` (sorted in place). All zero for an empty sample.
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |p: f64| -> f64 {
        let r = ((p / 100.0) * n as f64).ceil() as usize;
        values[r.clamp(1, n) - 1]
    };
    Percentiles {
        min: values[0],
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: values[n - 1],
        mean: values.iter().sum::<f64>() / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.min, p.p50, p.p99, p.max), (1.0, 50.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []).p50, 0.0);
        assert_eq!(percentiles(&mut [3.0]).p99, 3.0);
    }
}
