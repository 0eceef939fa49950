//! The statistics behind the report's verdicts: the mean and sample standard deviation of a few
//! runs, Welch's t-test of two groups of runs and the one-sample t-test of a group against a
//! threshold, both two-sided, with Student's t distribution computed through the regularized
//! incomplete beta function (no statistics crate: the few functions are short and tested
//! against scipy).

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

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn students_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1], by its
/// continued fraction (Numerical Recipes' `betacf`, evaluated with Lentz's method), on the side
/// of x where it converges fast.
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    assert!(a > 0.0 && b > 0.0 && (0.0..=1.0).contains(&x), "I_x(a, b) needs a, b > 0 and 0 <= x <= 1");
    if x == 0.0 || x == 1.0 {
        return x;
    }
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=1000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // The even step, then the odd one.
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
            if (d * c - 1.0).abs() < 1e-16 && aa < 0.0 {
                return h;
            }
        }
    }
    h
}

/// ln Γ(x) for x > 0: Lanczos's approximation (g = 7, nine coefficients, relative error about
/// 1e-15), with the reflection formula below 1/2.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let sum = COEFFICIENTS[1..].iter().enumerate().fold(COEFFICIENTS[0], |sum, (i, c)| sum + c / (x + i as f64 + 1.0));
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference values below are scipy 1.17.1's, printed by scripts/golden/t_tests.py
    // (special.gammaln, special.betainc, stats.ttest_ind with equal_var=False, stats.ttest_1samp).

    /// Two groups, and scipy's t, degrees of freedom and p.
    type TwoGroups = (&'static [f64], &'static [f64], f64, f64, f64);
    /// One group, the threshold, and scipy's t, degrees of freedom and p.
    type OneGroup = (&'static [f64], f64, f64, f64, f64);

    fn close(got: f64, want: f64, relative: f64) -> bool {
        (got - want).abs() <= relative * want.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_matches_scipy() {
        let cases = [
            (0.3, 1.0957979948180756),
            (0.5, 0.5723649429247),
            (1.0, 0.0),
            (2.5, 0.2846828704729192),
            (10.0, 12.801827480081469),
            (150.5, 602.5139548705853),
        ];
        for (x, want) in cases {
            assert!((ln_gamma(x) - want).abs() < 1e-13, "ln_gamma({x}) = {}, scipy {want}", ln_gamma(x));
        }
    }

    #[test]
    fn the_regularized_incomplete_beta_matches_scipy() {
        let cases = [
            (0.5, 0.5, 0.3, 0.36901011956554536),
            (2.5, 0.5, 0.9, 0.48958974456442755),
            (10.0, 0.5, 0.2, 1.994982493613096e-08),
            (150.0, 0.5, 0.99, 0.0827480032540805),
            (1.0, 1.0, 0.37, 0.37),
            (3.7, 2.2, 0.61, 0.4382319035807387),
            (1.5, 0.5, 0.999, 0.9597433418849682),
        ];
        for (a, b, x, want) in cases {
            let got = regularized_incomplete_beta(a, b, x);
            assert!(close(got, want, 1e-11), "I_{x}({a}, {b}) = {got}, scipy {want}");
        }
        assert_eq!(
            (regularized_incomplete_beta(2.0, 3.0, 0.0), regularized_incomplete_beta(2.0, 3.0, 1.0)),
            (0.0, 1.0)
        );
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
