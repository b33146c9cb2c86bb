//! Profile-likelihood interval on the exponent β of error = α·x^β + γ (the learning curve,
//! docs/fits.md §7).
//!
//! For a fixed β the model is linear in its other two parameters. With the basis
//! u_β(x) = (x^β − 1)/β (→ ln x as β → 0, so the family is continuous through β = 0, where
//! α·x^β + γ has no finite limit), error = a·u_β(x) + c is an ordinary least-squares line, and
//! RSS(β) is its residual sum of squares. The confidence set is
//! {β : RSS(β) ≤ RSS_min·(1 + t²_{n−3}/(n − 3))}, the F-based profile interval for one parameter
//! of a three-parameter Gaussian model (Bates & Watts 1988, *Nonlinear Regression Analysis*, §6.1).
//!
//! Why not the Wald interval β̂ ± t·se(β̂) from the Jacobian: with 4–5 sizes and moderate noise
//! the curvature of the model makes RSS(β) strongly asymmetric (flat towards β → 0, where the fit
//! can trade α → ∞ against γ → −∞), and the Wald interval covered a planted β in 0.74–0.87 of
//! simulated sweeps at a nominal 0.95 (docs/fits.md §7). The profile follows the RSS itself.
//!
//! β is searched on a grid over [`BETA_SEARCH`] (widened to hold the point estimate), then the
//! ends are refined by bisection. A side whose set reaches the edge of the search is reported
//! unbounded: the data do not bound β there.

use super::stats::t_quantile;

/// The β range searched: wider than anything reported for learning curves (Hestness et al. 2017,
/// arXiv 1712.00409: −0.07 to −0.35; theory −0.5 or −1) on both sides.
pub(crate) const BETA_SEARCH: (f64, f64) = (-4.0, 2.0);
/// How far beyond a point estimate outside [`BETA_SEARCH`] the search is widened.
const WIDEN: f64 = 0.5;
/// Grid step in β before the ends are refined.
const STEP: f64 = 0.002;
/// Bisection steps for each end (the bracket is one grid step: 2⁻⁴⁰·0.002 is far below print).
const BISECT: usize = 40;

/// The profile interval on β and where it was searched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BetaProfile {
    /// Lower end; `None` when the confidence set reaches the lower edge of the search.
    pub lo: Option<f64>,
    /// Upper end; `None` when the set reaches the upper edge.
    pub hi: Option<f64>,
    /// The β range searched.
    pub searched: (f64, f64),
    /// The smallest RSS found (the least-squares fit's, or the profile's if lower).
    pub rss_min: f64,
    /// The β of the profile's minimum on the grid (refined); the point estimate's cross-check.
    pub beta_min: f64,
}

/// RSS of the least-squares line err = a·u_β(x) + c, with `lx` = ln x. `None` if not finite.
pub(crate) fn profile_rss(lx: &[f64], err: &[f64], beta: f64) -> Option<f64> {
    let k = lx.len() as f64;
    let u: Vec<f64> = lx
        .iter()
        .map(|&l| {
            if beta == 0.0 {
                l
            } else {
                (beta * l).exp_m1() / beta
            }
        })
        .collect();
    let mu = u.iter().sum::<f64>() / k;
    let my = err.iter().sum::<f64>() / k;
    let suu: f64 = u.iter().map(|v| (v - mu).powi(2)).sum();
    let suy: f64 = u.iter().zip(err).map(|(a, y)| (a - mu) * (y - my)).sum();
    let slope = if suu > 0.0 { suy / suu } else { 0.0 };
    // Residuals summed directly (not syy − suy²/suu): no cancellation when the fit is close.
    let rss: f64 = u
        .iter()
        .zip(err)
        .map(|(a, y)| ((y - my) - slope * (a - mu)).powi(2))
        .sum();
    rss.is_finite().then_some(rss)
}

/// The profile interval at `level` for data `err` at `lx` = ln(N/N_ref), given the least-squares
/// estimate `beta_hat` with residual sum of squares `rss_hat`. `None` with fewer than 4 points
/// (no residual degrees of freedom) or non-finite input.
pub(crate) fn profile_beta_interval(
    lx: &[f64],
    err: &[f64],
    beta_hat: f64,
    rss_hat: f64,
    level: f64,
) -> Option<BetaProfile> {
    let n = lx.len();
    if n < 4 || err.len() != n || !beta_hat.is_finite() || !rss_hat.is_finite() {
        return None;
    }
    let dof = (n - 3) as f64;
    let t = t_quantile(0.5 + level / 2.0, dof)?;
    let searched = (
        BETA_SEARCH.0.min(beta_hat - WIDEN),
        BETA_SEARCH.1.max(beta_hat + WIDEN),
    );
    let m = ((searched.1 - searched.0) / STEP).ceil() as usize;
    let grid: Vec<(f64, Option<f64>)> = (0..=m)
        .map(|i| {
            let b = (searched.0 + i as f64 * STEP).min(searched.1);
            (b, profile_rss(lx, err, b))
        })
        .collect();
    // The grid's minimum, refined by golden section over its two neighbouring steps.
    let (i_min, _) = grid
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| r.map(|r| (i, r)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let (beta_min, rss_grid) = golden_min(
        |b| profile_rss(lx, err, b).unwrap_or(f64::INFINITY),
        grid[i_min.saturating_sub(1)].0,
        grid[(i_min + 1).min(m)].0,
    );
    let rss_min = rss_hat.min(rss_grid).max(0.0);
    let threshold = rss_min * (1.0 + t * t / dof);
    let inside = |b: f64| profile_rss(lx, err, b).is_some_and(|r| r <= threshold);
    let in_grid = |i: usize| grid[i].1.is_some_and(|r| r <= threshold);
    // The set's hull, holding the point estimate (at an exact fit the threshold is 0 and the
    // grid may miss it).
    let first = (0..=m).find(|&i| in_grid(i));
    let last = (0..=m).rev().find(|&i| in_grid(i));
    let lo_in = first.map_or(beta_hat, |i| grid[i].0.min(beta_hat));
    let hi_in = last.map_or(beta_hat, |i| grid[i].0.max(beta_hat));
    let lo = if first == Some(0) {
        None
    } else {
        // The grid point below lo_in is outside the set (none inside lies below lo_in).
        let out = grid.iter().rev().map(|g| g.0).find(|&b| b < lo_in)?;
        Some(bisect(&inside, out, lo_in))
    };
    let hi = if last == Some(m) {
        None
    } else {
        let out = grid.iter().map(|g| g.0).find(|&b| b > hi_in)?;
        Some(bisect(&inside, out, hi_in))
    };
    Some(BetaProfile {
        lo,
        hi,
        searched,
        rss_min,
        beta_min,
    })
}

/// The boundary between `outside` and `inside` (the end of the set nearer `outside`).
fn bisect(inside: &impl Fn(f64) -> bool, mut outside: f64, mut inside_at: f64) -> f64 {
    for _ in 0..BISECT {
        let mid = 0.5 * (outside + inside_at);
        if inside(mid) {
            inside_at = mid;
        } else {
            outside = mid;
        }
    }
    inside_at
}

/// Golden-section minimum of `f` on [a, b]: (argmin, min).
fn golden_min(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64) -> (f64, f64) {
    let g = 0.5 * (5f64.sqrt() - 1.0);
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    if fc <= fd { (c, fc) } else { (d, fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lx_of(n: &[f64]) -> Vec<f64> {
        let k = n.len() as f64;
        let lref = n.iter().map(|v| v.ln()).sum::<f64>() / k;
        n.iter().map(|v| v.ln() - lref).collect()
    }

    #[test]
    fn the_basis_is_continuous_through_beta_zero() {
        let lx = lx_of(&[250.0, 500.0, 1000.0, 2000.0, 4000.0]);
        let err = [0.3, 0.22, 0.17, 0.14, 0.12];
        let at0 = profile_rss(&lx, &err, 0.0).unwrap();
        // u_β = ln x + β·(ln x)²/2 + …: RSS moves by O(β) relative to itself.
        for b in [1e-9, -1e-9, 1e-6, -1e-6] {
            let r = profile_rss(&lx, &err, b).unwrap();
            assert!(
                (r - at0).abs() < 10.0 * b.abs() * at0,
                "RSS({b}) = {r}, RSS(0) = {at0}"
            );
        }
    }

    #[test]
    fn an_exact_power_law_has_its_rss_zero_at_beta() {
        let n = [1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0];
        let lx = lx_of(&n);
        let err: Vec<f64> = n.iter().map(|v| 2.0 * v.powf(-0.3) + 0.05).collect();
        assert!(profile_rss(&lx, &err, -0.3).unwrap() < 1e-24);
        let p = profile_beta_interval(&lx, &err, -0.3, 0.0, 0.95).unwrap();
        let (lo, hi) = (p.lo.unwrap(), p.hi.unwrap());
        assert!((lo + 0.3).abs() < 1e-6 && (hi + 0.3).abs() < 1e-6, "{p:?}");
    }
}
