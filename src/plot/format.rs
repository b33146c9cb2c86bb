//! Number formats shared by the figures and the index: learning rates as `3.2e-2`, accuracies
//! with 4 digits, B_opt and other estimates with 3 significant digits.

use crate::fit::{Interval, MetricKind};

/// `v` with `sig` significant digits, trailing zeros trimmed; scientific notation outside
/// [1e-3, 1e6). Non-finite values print as "–".
pub fn sig(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sig = sig.max(1);
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return sci(v, sig);
    }
    let mag = a.log10().floor() as i32;
    let decimals = (sig as i32 - 1 - mag).max(0) as usize;
    // Above `sig` integer digits, round away the extra ones (1234 → 1230 at 3 digits).
    let extra = mag + 1 - sig as i32;
    let v = if extra > 0 {
        let unit = 10f64.powi(extra);
        (v / unit).round() * unit
    } else {
        v
    };
    let s = format!("{v:.decimals$}");
    // Rounding can carry into a new digit (999.96 → "1000.0"); the trim below handles that.
    trim_zeros(&s)
}

/// Scientific notation with `sig` significant digits and a short exponent: 3.2e-2, 1e5.
pub fn sci(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.*e}", sig.max(1) - 1, v);
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
        None => s,
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A slope or exponent (order 1): 2 decimals, so intervals line up ("1.00", not "1").
pub fn slope(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "–".into()
    }
}

/// A batch size or B_opt: whole numbers exactly (4096, not 4100), others with 3 significant
/// digits.
pub fn batch(v: f64) -> String {
    if (1.0..1e9).contains(&v) && (v - v.round()).abs() <= 1e-9 * v {
        format!("{}", v.round() as u64)
    } else {
        sig(v, 3)
    }
}

/// Fixed decimals (regression coefficients: "0.976", "1.003").
pub fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".into()
    }
}

/// A learning rate (or any rate-like small number): 2 significant digits, scientific.
pub fn lr(v: f64) -> String {
    sci(v, 2)
}

/// A momentum: plain, up to 4 decimals (0.9, 0.99, 0).
pub fn momentum(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    trim_zeros(&format!("{v:.4}"))
}

/// An integer with thousands separators: 78,200.
pub fn int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count-like float (steps, examples): rounded with separators below 1e9, else scientific.
pub fn count(v: f64) -> String {
    if v.is_finite() && (0.0..1e9).contains(&v) {
        int(v.round() as u64)
    } else {
        sci(v, 3)
    }
}

/// A value of the fitted metric: accuracies with 4 decimals, losses with 4 significant digits.
pub fn metric(v: f64, kind: MetricKind) -> String {
    if !v.is_finite() {
        "–".into()
    } else if kind.is_accuracy() {
        format!("{v:.4}")
    } else {
        sig(v, 4)
    }
}

/// An interval as "[lo, hi]" with `f` applied to both ends.
pub fn interval(i: &Interval, f: impl Fn(f64) -> String) -> String {
    format!("[{}, {}]", f(i.lo), f(i.hi))
}

/// A p-value: 3 significant digits, "< 1e-4" below that.
pub fn p_value(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 1e-4 {
        "< 1e-4".into()
    } else {
        sig(p, 3)
    }
}

/// A share in [0, 1] as a percentage with `decimals`.
pub fn percent(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{:.*}%", decimals, 100.0 * v)
    } else {
        "–".into()
    }
}

/// Axis tick labels in data units: plain between 1e-3 and 1e5 (3 significant digits), else
/// short scientific (1e5, 2e-4).
pub fn tick(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a < 1e-12 {
        "0".into()
    } else if (1.0..1e5).contains(&a) && (v - v.round()).abs() <= 1e-9 * a {
        // Whole numbers (batch sizes, N) exactly: 4096, not 4100.
        format!("{:.0}", v.round())
    } else if (1e-3..1e5).contains(&a) {
        sig(v, 3)
    } else {
        sci(v, 2)
    }
}

/// A linear-axis tick label with a fixed number of decimals (chosen from the tick step).
pub fn tick_fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return String::new();
    }
    // "-0.00" would look like a bug.
    let v = if v.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
        0.0
    } else {
        v
    };
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-4) {
        sci(v, 3)
    } else {
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_like_a_paper() {
        assert_eq!(lr(0.032), "3.2e-2");
        assert_eq!(lr(0.1), "1e-1");
        assert_eq!(lr(0.05), "5e-2");
        assert_eq!(sig(80.7049, 3), "80.7");
        assert_eq!(sig(1234.0, 3), "1230");
        assert_eq!(sig(0.012345, 3), "0.0123");
        assert_eq!(sig(2.5e7, 3), "2.5e7");
        assert_eq!(sig(999.96, 3), "1000");
        assert_eq!(sig(-0.5, 2), "-0.5");
        assert_eq!(sig(f64::NAN, 3), "–");
        assert_eq!(int(78200), "78,200");
        assert_eq!(int(999), "999");
        assert_eq!(int(1_000_000), "1,000,000");
        assert_eq!(metric(0.91234, MetricKind::TestAcc), "0.9123");
        assert_eq!(metric(0.123456, MetricKind::TestLoss), "0.1235");
        assert_eq!(p_value(0.00001), "< 1e-4");
        assert_eq!(p_value(0.5111), "0.511");
        assert_eq!(momentum(0.9), "0.9");
        assert_eq!(momentum(0.0), "0");
        assert_eq!(tick(4096.0), "4096");
        assert_eq!(tick(0.001), "0.001");
        assert_eq!(tick(1e5), "1e5");
        assert_eq!(tick(2e-4), "2e-4");
        assert_eq!(tick_fixed(-0.0001, 2), "0.00");
        assert_eq!(tick_fixed(0.85, 2), "0.85");
        assert_eq!(percent(0.934, 1), "93.4%");
        assert_eq!(batch(4096.0), "4096");
        assert_eq!(batch(80.7049), "80.7");
        assert_eq!(fixed(1.0, 3), "1.000");
    }
}
