//! The quickstart network's matrix products, timed alone: the gemm crate against
//! `ops::matmul_into`, which hands the products `train::thin` serves to that kernel.
//!
//! `cargo run --release --example thinbench` prints, per batch size and product, the best of
//! 2,000 calls of each (one thread), and whether the two results are the same bits. The figures
//! in `src/train/thin.rs` and docs/performance.md come from it.

mod common;

use common::{best, values};
use scalelab::error::Result;
use scalelab::train::ops::{MatRef, matmul_gemm_crate, matmul_into};
use scalelab::train::thin;

fn main() -> Result<()> {
    let (d, h, c) = (32, 128, 10);
    let narrow = values(c * h, 9);
    let mut into = vec![0.0; c * h];
    let t = best(2000, || {
        scalelab::train::ops::transpose_into(&narrow, c, h, &mut into);
        Ok(())
    })?;
    println!("transpose of the logit layer's {c} × {h} gradient: {t:.2} µs");
    println!("batch: product gemm crate / matmul_into µs (served by thin?, same bits?)");
    for batch in [4, 8, 16, 32, 64, 128, 256, 512] {
        let x = values(batch * d, 1);
        let w1 = values(d * h, 2);
        let act = values(batch * h, 3);
        let w2 = values(h * c, 4);
        let dz2 = values(batch * c, 5);
        let dz1 = values(batch * h, 6);
        let products = [
            (
                "x·W1",
                MatRef::row_major(&x, batch, d),
                MatRef::row_major(&w1, d, h),
            ),
            (
                "h·W2",
                MatRef::row_major(&act, batch, h),
                MatRef::row_major(&w2, h, c),
            ),
            (
                "dZ2ᵀ·h",
                MatRef::row_major(&dz2, batch, c).t(),
                MatRef::row_major(&act, batch, h),
            ),
            (
                "xᵀ·dZ1",
                MatRef::row_major(&x, batch, d).t(),
                MatRef::row_major(&dz1, batch, h),
            ),
            (
                "hᵀ·dZ2",
                MatRef::row_major(&act, batch, h).t(),
                MatRef::row_major(&dz2, batch, c),
            ),
            (
                "dZ2·W2ᵀ",
                MatRef::row_major(&dz2, batch, c),
                MatRef::row_major(&w2, h, c).t(),
            ),
        ];
        let mut line = format!("{batch:4}:");
        for (name, a, b) in products {
            let (mut want, mut got) = (vec![0.0; a.rows * b.cols], vec![0.0; a.rows * b.cols]);
            let old = best(2000, || matmul_gemm_crate(&mut want, a, b, false))?;
            let new = best(2000, || matmul_into(&mut got, a, b, false))?;
            let same = want
                .iter()
                .zip(&got)
                .all(|(p, q)| p.to_bits() == q.to_bits());
            line += &format!(
                "  {name} {old:.2}/{new:.2} ({}, {})",
                if thin::serves(&a, &b) { "thin" } else { "gemm" },
                if same { "same" } else { "DIFFERENT" }
            );
        }
        println!("{line}");
    }
    Ok(())
}
