//! Evaluation's forward pass and loss, timed alone: the row-major pass (the gemm crate's
//! products, bias, ReLU, and `xent_rows` on the logits) against `Mlp::eval_loss`, which takes
//! the transposed path with the fused logit layer (`scalelab::train::eval_head`) where that pays,
//! and against `Mlp::eval_loss_t` given the inputs transposed as the trainer gives them
//! (`Dataset::train_x_t`).
//!
//! `cargo run --release --example evalbench` prints, per shape, the best of 200 calls of each
//! and the row-major pass's time over the last (one thread). The figures in
//! `src/train/model/mlp.rs` and docs/performance.md come from it.

mod common;

use common::{best, values};
use rand::SeedableRng;
use scalelab::error::Result;
use scalelab::train::model::{Mlp, Network};
use scalelab::train::ops::{MatRef, bias_act, matmul_into, transpose_into, xent_rows};

fn main() -> Result<()> {
    let classes = 10;
    let shapes: [(&[usize], usize); 11] = [
        (&[32, 128], 2000),
        (&[64, 256], 4096),
        (&[128, 128], 4096),
        (&[256, 128], 4096),
        (&[256, 512], 4096),
        (&[784, 128], 4096),
        (&[784, 800], 4096),
        (&[32, 128, 128], 2000),
        (&[32, 512, 512], 4096),
        (&[64, 1024, 1024], 4096),
        (&[32, 64], 1000),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    println!(
        "widths (then {classes} classes), rows: row-major pass, eval_loss, eval_loss_t, ratio"
    );
    for (widths, rows) in shapes {
        let mut all = widths.to_vec();
        all.push(classes);
        let mut net = Mlp::new(all[0], &all[1..all.len() - 1], classes, &mut rng)?;
        let x = values(rows * all[0], 1);
        let y: Vec<u32> = (0..rows as u32).map(|i| i * 7 % classes as u32).collect();
        // The row-major pass on weights of the same shapes.
        let w: Vec<Vec<f32>> = all
            .windows(2)
            .enumerate()
            .map(|(l, p)| values(p[0] * p[1], l + 2))
            .collect();
        let b: Vec<Vec<f32>> = all[1..].iter().map(|&n| vec![0.01; n]).collect();
        let mut acts: Vec<Vec<f32>> = all[1..].iter().map(|&n| vec![0.0; rows * n]).collect();
        let layers = acts.len();
        let old = best(200, || {
            for l in 0..layers {
                let (below, rest) = acts.split_at_mut(l);
                let input = if l == 0 { &x } else { &below[l - 1] };
                matmul_into(
                    &mut rest[0],
                    MatRef::row_major(input, rows, all[l]),
                    MatRef::row_major(&w[l], all[l], all[l + 1]),
                    false,
                )?;
                bias_act(&mut rest[0], &b[l], l + 1 < layers)?;
            }
            if let Some(z) = acts.last_mut() {
                xent_rows(z, classes, &y);
            }
            Ok(())
        })?;
        let new = best(200, || net.eval_loss(&x, &y).map(|_| ()))?;
        let mut xt = vec![0.0; x.len()];
        transpose_into(&x, rows, all[0], &mut xt);
        let xt = MatRef::row_major(&xt, all[0], rows);
        let with_t = best(200, || net.eval_loss_t(&x, xt, &y).map(|_| ()))?;
        println!(
            "{widths:?}, {rows}: {old:.1} µs, {new:.1} µs, {with_t:.1} µs, {:.2}×",
            old / with_t
        );
    }
    Ok(())
}
