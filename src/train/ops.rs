//! Fused CPU kernels as candle custom ops: each reads and writes its tensors once, in place,
//! instead of chaining several elementwise passes that each allocate a new tensor.
//!
//! They need contiguous `f32` CPU storage (what the trainer always has); anything else is an
//! error, never a silent copy.

use std::cell::RefCell;

use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor};

use crate::error::Result;

fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: needs a contiguous f32 tensor"),
    }
}

fn slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{op}: needs a contiguous f32 tensor"),
    }
}

/// `z ← z + b` row-wise (z is `(rows, n)`, b is `(n,)`), then ReLU if `relu`.
pub struct BiasAct {
    /// Apply ReLU after adding the bias.
    pub relu: bool,
}

impl InplaceOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let b = slice(s2, l2, "bias-act")?;
        let z = slice_mut(s1, l1, "bias-act")?;
        let n = b.len();
        if n == 0 || z.len() % n != 0 {
            candle_core::bail!("bias-act: {} values do not split into rows of {n}", z.len());
        }
        for row in z.chunks_exact_mut(n) {
            if self.relu {
                for (v, bb) in row.iter_mut().zip(b) {
                    *v = (*v + bb).max(0.0);
                }
            } else {
                for (v, bb) in row.iter_mut().zip(b) {
                    *v += bb;
                }
            }
        }
        Ok(())
    }
}

/// `d ← d ⊙ [h > 0]`: back-propagation through a ReLU whose output was h.
pub struct ReluBackward;

impl InplaceOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let h = slice(s2, l2, "relu-backward")?;
        let d = slice_mut(s1, l1, "relu-backward")?;
        if h.len() != d.len() {
            candle_core::bail!("relu-backward: {} vs {} values", d.len(), h.len());
        }
        // Branch-free, so the loop vectorises.
        for (dv, hv) in d.iter_mut().zip(h) {
            *dv = if *hv > 0.0 { *dv } else { 0.0 };
        }
        Ok(())
    }
}

/// One momentum-SGD update of one parameter tensor, in PyTorch's form (torch.optim.SGD with
/// dampening 0): g ← g + λw; u ← m·u + g; d = g + m·u (Nesterov) or u; w ← w − ε·d.
/// With m = 0 the buffer is not touched and d = g.
pub struct SgdUpdate<'a> {
    /// Learning rate ε.
    pub lr: f32,
    /// Momentum m.
    pub momentum: f32,
    /// Weight decay λ.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The momentum buffer u of this parameter (same length).
    pub buf: RefCell<&'a mut [f32]>,
}

impl InplaceOp2 for SgdUpdate<'_> {
    fn name(&self) -> &'static str {
        "sgd-update"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let g = slice(s2, l2, "sgd-update")?;
        let w = slice_mut(s1, l1, "sgd-update")?;
        let mut buf = self.buf.borrow_mut();
        if g.len() != w.len() || buf.len() != w.len() {
            candle_core::bail!(
                "sgd-update: parameter {} / gradient {} / buffer {} lengths differ",
                w.len(),
                g.len(),
                buf.len()
            );
        }
        let (lr, m, wd) = (self.lr, self.momentum, self.weight_decay);
        if m == 0.0 {
            for (wv, gv) in w.iter_mut().zip(g) {
                let gg = gv + wd * *wv;
                *wv -= lr * gg;
            }
        } else if self.nesterov {
            for ((wv, gv), u) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
                let gg = gv + wd * *wv;
                *u = m * *u + gg;
                *wv -= lr * (gg + m * *u);
            }
        } else {
            for ((wv, gv), u) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
                let gg = gv + wd * *wv;
                *u = m * *u + gg;
                *wv -= lr * *u;
            }
        }
        Ok(())
    }
}

/// `dst ← dst + α·src`, elementwise (moves parameters along a direction: finite differences,
/// Hessian-vector products).
pub struct Axpy {
    /// The multiplier α.
    pub alpha: f32,
}

impl InplaceOp2 for Axpy {
    fn name(&self) -> &'static str {
        "axpy"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let x = slice(s2, l2, "axpy")?;
        let d = slice_mut(s1, l1, "axpy")?;
        if x.len() != d.len() {
            candle_core::bail!("axpy: {} vs {} values", d.len(), x.len());
        }
        for (dv, xv) in d.iter_mut().zip(x) {
            *dv += self.alpha * xv;
        }
        Ok(())
    }
}

/// `dst ← src` from a host slice (sets parameters to a given point, then back).
pub struct Assign<'a> {
    /// The values, as many as the tensor holds.
    pub src: &'a [f32],
}

impl candle_core::InplaceOp1 for Assign<'_> {
    fn name(&self) -> &'static str {
        "assign"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let d = slice_mut(s, l, "assign")?;
        if d.len() != self.src.len() {
            candle_core::bail!("assign: {} values into {}", self.src.len(), d.len());
        }
        d.copy_from_slice(self.src);
        Ok(())
    }
}

/// Column sums of a `(rows, n)` tensor: the bias gradient Σ_rows dZ. One pass adding rows into
/// an accumulator (candle's `sum(0)` walks the columns with a stride, far slower).
pub fn sum_rows(t: &Tensor) -> Result<Tensor> {
    let (_, n) = t.dims2()?;
    let acc = with_f32(t, |v| {
        let mut acc = vec![0f32; n];
        for row in v.chunks_exact(n) {
            for (a, x) in acc.iter_mut().zip(row) {
                *a += x;
            }
        }
        acc
    })?;
    Ok(Tensor::from_vec(acc, n, &Device::Cpu)?)
}

/// Runs `f` on the contiguous `f32` CPU data of `t` without copying it.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(slice(s, layout, "read")?)),
        _ => Err(candle_core::Error::Msg("scalelab trains on the CPU only".into()).into()),
    }
}

/// Sum of the cross-entropy losses over a batch and the number of correct predictions
/// (argmax, first maximum on ties, as torch.argmax).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    /// Σᵢ (log Σⱼ exp zᵢⱼ − zᵢ,yᵢ), accumulated in f64.
    pub loss: f64,
    /// Number of rows whose argmax equals the label.
    pub correct: usize,
    /// Number of rows.
    pub count: usize,
}

/// Softmax cross-entropy of `logits` `(rows, k)` against labels `y`; with `grad`, also the
/// gradient of the *mean* loss with respect to the logits, (softmax − onehot)/rows.
pub fn softmax_xent(logits: &Tensor, y: &[u32], grad: bool) -> Result<(LossSum, Option<Tensor>)> {
    let (rows, k) = logits.dims2()?;
    if rows != y.len() {
        return Err(candle_core::Error::Msg(format!(
            "cross-entropy: {rows} logits rows but {} labels",
            y.len()
        ))
        .into());
    }
    let mut dl = if grad {
        vec![0f32; rows * k]
    } else {
        Vec::new()
    };
    let inv = 1.0 / rows as f32;
    let sum = with_f32(logits, |z| {
        let mut s = LossSum {
            count: rows,
            ..LossSum::default()
        };
        let mut e = vec![0f32; k];
        for (i, row) in z.chunks_exact(k).enumerate() {
            let mut best = 0;
            let mut max = f32::NEG_INFINITY;
            for (j, &v) in row.iter().enumerate() {
                if v > max {
                    max = v;
                    best = j;
                }
            }
            let label = y[i] as usize;
            if best == label {
                s.correct += 1;
            }
            // exp in f32 (every term is ≤ 1 after the shift), sums and logs in f64.
            let mut se = 0f64;
            for (ej, &v) in e.iter_mut().zip(row) {
                *ej = (v - max).exp();
                se += *ej as f64;
            }
            let lse = max as f64 + se.ln();
            s.loss += lse - row.get(label).copied().unwrap_or(f32::NAN) as f64;
            if grad {
                let out = &mut dl[i * k..(i + 1) * k];
                let scale = (1.0 / se) as f32 * inv;
                for (o, &ej) in out.iter_mut().zip(&e) {
                    *o = ej * scale;
                }
                if let Some(o) = out.get_mut(label) {
                    *o -= inv;
                }
            }
        }
        s
    })?;
    let dl = if grad {
        Some(Tensor::from_vec(dl, (rows, k), &Device::Cpu)?)
    } else {
        None
    };
    Ok((sum, dl))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: w = 1, g = 0.5, u₀ = 0.2, m = 0.9, ε = 0.1, λ = 0.
    /// Heavy-ball: u = 0.9·0.2 + 0.5 = 0.68; w = 1 − 0.1·0.68 = 0.932.
    /// Nesterov:   u = 0.68; d = 0.5 + 0.9·0.68 = 1.112; w = 1 − 0.1112 = 0.8888.
    /// With λ = 0.01: g' = 0.51, u = 0.69, w = 0.931.
    #[test]
    fn momentum_and_nesterov_steps_match_hand_computed_values() {
        for (nesterov, wd, want_w, want_u) in [
            (false, 0.0, 0.932f32, 0.68f32),
            (true, 0.0, 0.8888, 0.68),
            (false, 0.01, 0.931, 0.69),
        ] {
            let w = Tensor::new(&[1f32], &Device::Cpu).unwrap();
            let g = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
            let mut buf = vec![0.2f32];
            w.inplace_op2(
                &g,
                &SgdUpdate {
                    lr: 0.1,
                    momentum: 0.9,
                    weight_decay: wd,
                    nesterov,
                    buf: RefCell::new(&mut buf),
                },
            )
            .unwrap();
            let got = w.to_vec1::<f32>().unwrap()[0];
            assert!(
                (got - want_w).abs() < 1e-6,
                "nesterov {nesterov}: w {got} vs {want_w}"
            );
            assert!((buf[0] - want_u).abs() < 1e-6, "u {} vs {want_u}", buf[0]);
        }
    }

    #[test]
    fn cross_entropy_matches_closed_form() {
        // Logits (0, ln 3): softmax (1/4, 3/4). Label 1 → loss ln(4/3); label 0 → ln 4.
        let z = Tensor::new(&[[0f32, 3f32.ln()], [0.0, 3f32.ln()]], &Device::Cpu).unwrap();
        let (s, g) = softmax_xent(&z, &[1, 0], true).unwrap();
        let want = (4.0f64 / 3.0).ln() + 4f64.ln();
        assert!((s.loss - want).abs() < 1e-6);
        assert_eq!(s.correct, 1);
        let g = g.unwrap().to_vec2::<f32>().unwrap();
        // (softmax − onehot)/2
        assert!((g[0][0] - 0.125).abs() < 1e-6 && (g[0][1] + 0.125).abs() < 1e-6);
        assert!((g[1][0] + 0.375).abs() < 1e-6 && (g[1][1] - 0.375).abs() < 1e-6);
    }
}
