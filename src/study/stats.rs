//! The statistics behind the report's verdicts: the mean and sample standard deviation of a few
//! runs, Welch's t-test of two groups of runs and the one-sample t-test of a group against a
//! threshold, both two-sided, with Student's t distribution from `statrs`; tested against
//! scipy.
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation (n - 1 in the denominator), `None` below two values.
pub fn std_dev(xs: &[f64]) -> Option<f64> {
    (xs.len() >= 2).then(|| sample_variance(xs).sqrt())
}

fn sample_variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
}

/// Mean, sample standard deviation (`None` for one value), lowest and highest of a few runs'
/// numbers, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!values.is_empty()).then(|| Spread { mean: mean(values), std: std_dev(values), min, max, runs: values.len() })
    }
}

/// A t-test's statistic, degrees of freedom and two-sided p-value. (In JSON an infinite `t`,
/// from runs without spread, is `null`.)
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TTest {
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// Welch's t-test of `a` against `b` (unequal variances; `t` > 0 when `a`'s mean is higher),
/// with the Welch-Satterthwaite degrees of freedom. `None` unless both have two values or more.
///
/// When both groups have no spread at all the test is undefined (scipy returns NaN); here the
/// groups then differ with certainty when their means differ (t infinite, p = 0) and not at all
/// when they are equal (p = 1), so that identical repeated runs still get a verdict.
pub fn welch(a: &[f64], b: &[f64]) -> Option<TTest> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sample_variance(a) / na, sample_variance(b) / nb);
    let difference = mean(a) - mean(b);
    if va + vb == 0.0 {
        return Some(degenerate(difference, na + nb - 2.0));
    }
    let t = difference / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    Some(TTest { t, df, p: students_t_two_sided(t, df) })
}

/// The one-sample t-test of `xs`'s mean against `threshold` (`t` > 0 when the mean is above
/// it). `None` below two values; no spread is handled as in [`welch`].
pub fn one_sample(xs: &[f64], threshold: f64) -> Option<TTest> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let difference = mean(xs) - threshold;
    let se = (sample_variance(xs) / n).sqrt();
    if se == 0.0 {
        return Some(degenerate(difference, n - 1.0));
    }
    let (t, df) = (difference / se, n - 1.0);
    Some(TTest { t, df, p: students_t_two_sided(t, df) })
}

fn degenerate(difference: f64, df: f64) -> TTest {
    match difference {
        0.0 => TTest { t: 0.0, df, p: 1.0 },
        d => TTest { t: d.signum() * f64::INFINITY, df, p: 0.0 },
    }
}

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom.
pub fn students_t_two_sided(t: f64, df: f64) -> f64 {
    let distribution = StudentsT::new(0.0, 1.0, df).expect("a t-test has positive degrees of freedom");
    2.0 * distribution.sf(t.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference values below are scipy 1.17.1's, printed by scripts/golden/t_tests.py
    // (stats.t.sf, stats.ttest_ind with equal_var=False, stats.ttest_1samp).

    /// Two groups, and scipy's t, degrees of freedom and p.
    type TwoGroups = (&'static [f64], &'static [f64], f64, f64, f64);
    /// One group, the threshold, and scipy's t, degrees of freedom and p.
    type OneGroup = (&'static [f64], f64, f64, f64, f64);

    fn close(got: f64, want: f64, relative: f64) -> bool {
        (got - want).abs() <= relative * want.abs().max(1e-300)
    }

    #[test]
    fn student_s_t_matches_scipy() {
        // stats.t.sf(|t|, df) * 2.
        for (t, df, want) in
            [(2.0, 3.0, 0.13932596855884305), (-8.5, 1.2, 0.051040607220258105), (0.1, 40.0, 0.9208438530452802)]
        {
            let got = students_t_two_sided(t, df);
            assert!(close(got, want, 1e-9), "t {t} df {df}: {got}, scipy {want}");
        }
        assert_eq!(students_t_two_sided(f64::INFINITY, 3.0), 0.0);
    }

    #[test]
    fn welch_s_t_test_matches_scipy() {
        let cases: [TwoGroups; 5] = [
            (&[95.31, 95.12, 95.48], &[94.2, 94.65, 94.41], 5.306371470944206, 3.815774024053948, 0.006910147258105585),
            (&[0.531, 0.54], &[0.601, 0.598], -13.492384683385039, 1.2195121951219512, 0.02815283806264431),
            (&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.5, 3.1], 0.26037782196164794, 4.930594900849859, 0.8050957935715624),
            (&[10.1, 10.2], &[10.15, 10.18, 10.3], -0.8846517369293901, 2.5026611472501634, 0.45303723823893394),
            (&[0.912, 0.915, 0.909, 0.921], &[0.913, 0.908], 1.047645443654344, 3.073126142595978, 0.3701084294381),
        ];
        for (a, b, t, df, p) in cases {
            let test = welch(a, b).unwrap();
            assert!(
                close(test.t, t, 1e-10) && close(test.df, df, 1e-10) && close(test.p, p, 1e-9),
                "{a:?} vs {b:?}: {test:?}, scipy t {t} df {df} p {p}"
            );
        }
    }

    #[test]
    fn the_one_sample_t_test_matches_scipy() {
        let cases: [OneGroup; 3] = [
            (&[95.2, 95.6, 95.4], 95.0, 3.464101615138001, 2.0, 0.07417990022743913),
            (&[0.5, 0.52], 0.6, -8.99999999999999, 1.0, 0.07044657495455463),
            (&[94.9, 95.3, 95.05, 94.8], 95.0, 0.11496024978592903, 3.0, 0.9157393309947153),
        ];
        for (xs, threshold, t, df, p) in cases {
            let test = one_sample(xs, threshold).unwrap();
            assert!(
                close(test.t, t, 1e-10) && test.df == df && close(test.p, p, 1e-9),
                "{xs:?} vs {threshold}: {test:?}, scipy t {t} df {df} p {p}"
            );
        }
    }

    #[test]
    fn one_value_a_side_gives_no_test_and_no_spread_a_certain_answer() {
        assert_eq!(welch(&[0.9], &[0.8, 0.7]), None);
        assert_eq!(one_sample(&[0.9], 0.5), None);
        assert_eq!(std_dev(&[0.9]), None);
        assert!((std_dev(&[1.0, 2.0, 3.0]).unwrap() - 1.0).abs() < 1e-15);
        assert_eq!(welch(&[0.5, 0.5], &[0.5, 0.5]).unwrap().p, 1.0);
        let apart = welch(&[0.6, 0.6], &[0.5, 0.5]).unwrap();
        assert_eq!((apart.p, apart.t), (0.0, f64::INFINITY));
        assert_eq!(one_sample(&[0.4, 0.4], 0.5).unwrap().t, f64::NEG_INFINITY);
    }
}
