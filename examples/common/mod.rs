//! Helpers shared by the micro-benchmarks in `examples/` (not an example itself).

use std::time::Instant;

use scalelab::error::Result;

/// Best wall time of `f` over `calls` calls, in microseconds (noise on a shared machine only
/// ever slows a call down).
pub fn best(calls: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut b = f64::MAX;
    for _ in 0..calls {
        let t = Instant::now();
        f()?;
        b = b.min(t.elapsed().as_secs_f64());
    }
    Ok(b * 1e6)
}

/// Deterministic values in [−0.5, 0.5).
pub fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}
