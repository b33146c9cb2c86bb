//! The trainer's side of the instruments (their estimators are in `crate::instruments`):
//! measuring the gradient noise scale and the curvature of the training loss on the network
//! being trained, without changing its training — own random streams, no update, weights
//! restored bit for bit.

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::Dataset;
use super::model::{Grads, Network};
use super::ops::{Assign, with_f32};
use super::rng::{Stream, stream};
use crate::error::{Error, Result};
use crate::instruments::{self, GradientOracle, InstrumentError, LanczosOptions};

/// Fraction of an epoch's examples one noise-scale measurement may use (≈ its share of an
/// epoch's training time when measured once per epoch).
pub const NOISE_SCALE_BUDGET: f64 = 0.1;
/// Examples of the fixed batch the curvature is measured on (the whole training set if smaller).
pub const CURVATURE_BATCH: usize = 1024;
/// Hutchinson probes for the Hessian trace.
pub const TRACE_PROBES: usize = 16;
/// Most Lanczos steps for the top eigenvalue (one Hessian-vector product each). On the exact
/// product of the curvature sweep's network the residual falls below [`LANCZOS_TOLERANCE`] in
/// 8–15 steps; on its finite-difference product it levels off at 1–6% near step 15–20
/// (docs/instruments.md).
pub const LANCZOS_STEPS: usize = 40;
/// Convergence tolerance of the Lanczos iteration: relative residual |Hx − θx|/|θ| of the top
/// Ritz pair, which puts an eigenvalue within 1% of θ (and within (0.01·θ)²/gap when the next
/// eigenvalue is a gap away).
pub const LANCZOS_TOLERANCE: f64 = 1e-2;

fn inst(e: InstrumentError) -> Error {
    Error::config("instruments", e.to_string())
}

/// All parameters, concatenated in `params()` order.
pub fn flat_params(params: &[Tensor]) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for p in params {
        with_f32(p, |v| out.extend_from_slice(v))?;
    }
    Ok(out)
}

/// Sets the parameters to the concatenated values `w`.
pub fn assign_params(params: &[Tensor], w: &[f32]) -> Result<()> {
    let mut at = 0;
    for p in params {
        let n = p.elem_count();
        p.inplace_op1(&Assign {
            src: &w[at..at + n],
        })?;
        at += n;
    }
    Ok(())
}

/// Gathers the rows `idx` of the training set.
fn gather(data: &Dataset, idx: &[u32]) -> Result<(Vec<f32>, Vec<u32>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    data.gather_train(idx, &mut x, &mut y)?;
    Ok((x, y))
}

/// The gradient noise scale of McCandlish et al. 2018 (App. A.1), measured at epoch ends.
pub struct NoiseProbe {
    rng: ChaCha8Rng,
    order: Vec<u32>,
    /// For B_noise: the Hessian batches' own stream and order (so B_simple's batches are the
    /// same with B_noise on or off).
    hessian: Option<(ChaCha8Rng, Vec<u32>)>,
}

/// One measurement: the averages of its own pairs' estimates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseReading {
    /// Average of the |G|² estimates.
    pub grad_sq: Option<f64>,
    /// Average of the tr(Σ) estimates.
    pub trace_sigma: Option<f64>,
    /// B_simple = tr(Σ)/|G|² of the two averages.
    pub b_simple: Option<f64>,
    /// Average of the GᵀHG estimates (B_noise on).
    pub grad_h_grad: Option<f64>,
    /// Average of the tr(HΣ) estimates (B_noise on).
    pub trace_h_sigma: Option<f64>,
    /// B_noise = tr(HΣ)/(GᵀHG) of the two averages.
    pub b_noise: Option<f64>,
}

/// Plain means of a measurement's pairs of estimates, divided only at the end; a non-finite
/// pair (a diverging run) is skipped, not averaged in.
#[derive(Default)]
struct PairMeans {
    sum: (f64, f64),
    pairs: u32,
}

impl PairMeans {
    fn add(&mut self, a: f64, b: f64) {
        if a.is_finite() && b.is_finite() {
            self.sum = (self.sum.0 + a, self.sum.1 + b);
            self.pairs += 1;
        }
    }

    fn means(&self) -> (Option<f64>, Option<f64>) {
        let k = f64::from(self.pairs);
        let mean = |s: f64| (self.pairs > 0).then(|| s / k);
        (mean(self.sum.0), mean(self.sum.1))
    }
}

/// Σ a·b over two gradient layouts, in f64.
fn dot(a: &Grads, b: &Grads) -> f64 {
    a.bufs()
        .iter()
        .flatten()
        .zip(b.bufs().iter().flatten())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

impl NoiseProbe {
    /// A probe for a run with `seed` on `n` training examples; `b_noise` also measures
    /// B_noise.
    pub fn new(seed: u64, n: usize, b_noise: bool) -> Self {
        NoiseProbe {
            rng: stream(seed, Stream::NoiseScale),
            order: (0..n as u32).collect(),
            hessian: b_noise.then(|| (stream(seed, Stream::NoiseHessian), (0..n as u32).collect())),
        }
    }

    /// Measures at the current weights, with the training batch size in force: mean gradients
    /// at B_small = batch and at B_big, without replacement, no weight update.
    ///
    /// The averages start afresh at each measurement: a reading describes the weights it was
    /// taken at. Carried over from earlier epochs (as they were), the averages spanned about ten
    /// pairs, ten epochs where a measurement had one pair (B ≥ N/20), and a B_simple that grew
    /// from 50 to 900 read 218 at the end; runs at different B were smoothed over different
    /// stretches of training.
    pub fn measure(
        &mut self,
        net: &mut dyn Network,
        data: &Dataset,
        batch: usize,
    ) -> Result<NoiseReading> {
        let n = data.train_len();
        let budget = ((n as f64 * NOISE_SCALE_BUDGET) as usize).max(2 * batch);
        let plan = instruments::plan_noise_scale(batch, n, budget).map_err(inst)?;
        let (bs, bb) = (plan.b_small, plan.b_big);
        let params = net.params();
        let (mut gs, mut gr) = (Grads::for_params(&params), Grads::for_params(&params));
        // |G|² and tr(Σ).
        let mut simple = PairMeans::default();
        // The same for B_noise: H·G_small and H·G_rest on a Hessian batch of B_big examples
        // drawn independently of the pair (E[H̃] = H, and H̃ independent of the gradients).
        let (mut hs, mut hr) = (Grads::for_params(&params), Grads::for_params(&params));
        let mut curved = PairMeans::default();
        let mut exact = true;
        for _ in 0..plan.repeats {
            let (picked, _) = self.order.partial_shuffle(&mut self.rng, bb);
            let picked = picked.to_vec();
            let (xs, ys) = gather(data, &picked[..bs])?;
            net.loss_and_grads(&xs, &ys, &mut gs)?;
            let gs_sq = gs.sq_norm();
            let (xr, yr) = gather(data, &picked[bs..])?;
            net.loss_and_grads(&xr, &yr, &mut gr)?;
            // G_big = (B_s·G_s + (B_b − B_s)·G_rest)/B_b, its squared norm element by element.
            let (ws, wr) = (bs as f64 / bb as f64, (bb - bs) as f64 / bb as f64);
            let gb_sq: f64 = gs
                .bufs()
                .iter()
                .flatten()
                .zip(gr.bufs().iter().flatten())
                .map(|(&x, &y)| {
                    let g = ws * x as f64 + wr * y as f64;
                    g * g
                })
                .sum();
            // Gradients that overflowed (a diverging run whose loss is still finite): this pair
            // is skipped, not the run failed.
            if !(gs_sq.is_finite() && gb_sq.is_finite()) {
                continue;
            }
            let est = instruments::two_batch_estimates_finite(
                n as f64, bs as f64, gs_sq, bb as f64, gb_sq,
            )
            .map_err(inst)?;
            simple.add(est.g_sq, est.trace);
            let Some((hrng, horder)) = self.hessian.as_mut().filter(|_| exact) else {
                continue;
            };
            let (hidx, _) = horder.partial_shuffle(hrng, bb);
            let (xh, yh) = gather(data, hidx)?;
            exact = net.loss_hessian_vector(&xh, &yh, &gs, &mut hs)?
                && net.loss_hessian_vector(&xh, &yh, &gr, &mut hr)?;
            if !exact {
                continue;
            }
            // q_small = G_sᵀH̃G_s; q_big = G_bᵀH̃G_b with H̃G_b = w_s·H̃G_s + w_r·H̃G_r.
            let q_small = dot(&gs, &hs);
            let (d_ss, d_sr, d_rs, d_rr) = (q_small, dot(&gs, &hr), dot(&gr, &hs), dot(&gr, &hr));
            let q_big = ws * ws * d_ss + ws * wr * (d_sr + d_rs) + wr * wr * d_rr;
            if !(q_small.is_finite() && q_big.is_finite()) {
                continue;
            }
            let est = instruments::two_batch_curved_finite(
                n as f64, bs as f64, q_small, bb as f64, q_big,
            )
            .map_err(inst)?;
            curved.add(est.grad_h_grad, est.trace_h_sigma);
        }
        let (grad_sq, trace_sigma) = simple.means();
        let (grad_h_grad, trace_h_sigma) = if exact { curved.means() } else { (None, None) };
        Ok(NoiseReading {
            grad_sq,
            trace_sigma,
            b_simple: grad_sq
                .zip(trace_sigma)
                .and_then(|(g, t)| instruments::b_simple_of(g, t)),
            grad_h_grad,
            trace_h_sigma,
            b_noise: grad_h_grad
                .zip(trace_h_sigma)
                .and_then(|(g, t)| instruments::b_noise_of(g, t)),
        })
    }
}

/// Curvature of the training loss at the current weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curvature {
    /// The algebraically largest eigenvalue of the Hessian (the top Ritz value of a Lanczos
    /// iteration on the network's exact Hessian-vector products).
    pub top_eigenvalue: f64,
    /// Whether its relative residual fell to [`LANCZOS_TOLERANCE`]; when not, the value is the
    /// Ritz value of least residual, within `eigen_residual`·|value| of an eigenvalue.
    pub converged: bool,
    /// Lanczos steps used.
    pub iterations: usize,
    /// Relative residual |Hx − θx|/|θ| of the reported Ritz pair.
    pub eigen_residual: f64,
    /// The algebraically smallest eigenvalue from the same Krylov basis (less accurate: the
    /// iteration stops when the top one converges).
    pub bottom_eigenvalue: f64,
    /// Whether the smallest one met the same residual test; when not, `bottom_eigenvalue` is
    /// only an upper bound on the smallest eigenvalue (a Ritz value lies inside the spectrum), so
    /// a positive value does not say the Hessian is positive semi-definite.
    #[serde(default)]
    pub bottom_converged: bool,
    /// Relative residual of the smallest Ritz pair.
    #[serde(default)]
    pub bottom_residual: f64,
    /// Hutchinson estimate of the Hessian trace.
    pub trace: f64,
    /// Its standard error.
    pub trace_se: f64,
    /// Examples of the fixed batch the loss was taken over.
    pub batch: usize,
    /// Whether the Hessian-vector products were exact ([`Network::loss_hessian_vector`]; both
    /// models have it) rather than central differences of gradients.
    pub exact_product: bool,
}

/// The gradient of the mean loss over a fixed batch, at parameters set from a flat vector.
struct NetOracle<'a> {
    net: &'a mut dyn Network,
    params: Vec<Tensor>,
    x: Vec<f32>,
    y: Vec<u32>,
    grads: Grads,
    /// A direction of a Hessian-vector product, laid out as the gradients.
    direction: Grads,
    dim: usize,
}

impl GradientOracle for NetOracle<'_> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> std::result::Result<(), InstrumentError> {
        let err = |e: Error| InstrumentError::Oracle(e.to_string());
        assign_params(&self.params, w).map_err(err)?;
        self.net
            .loss_and_grads(&self.x, &self.y, &mut self.grads)
            .map_err(err)?;
        let mut at = 0;
        for g in self.grads.bufs() {
            out[at..at + g.len()].copy_from_slice(g);
            at += g.len();
        }
        Ok(())
    }

    fn exact_hessian_vector(
        &mut self,
        w: &[f32],
        u: &[f64],
        out: &mut [f64],
    ) -> std::result::Result<bool, InstrumentError> {
        let err = |e: Error| InstrumentError::Oracle(e.to_string());
        assign_params(&self.params, w).map_err(err)?;
        let mut at = 0;
        for d in self.direction.bufs_mut() {
            for (dv, &uv) in d.iter_mut().zip(&u[at..]) {
                *dv = uv as f32;
            }
            at += d.len();
        }
        let exact = self
            .net
            .loss_hessian_vector(&self.x, &self.y, &self.direction, &mut self.grads)
            .map_err(err)?;
        if exact {
            let mut at = 0;
            for g in self.grads.bufs() {
                for (o, &gv) in out[at..at + g.len()].iter_mut().zip(g) {
                    *o = f64::from(gv);
                }
                at += g.len();
            }
        }
        Ok(exact)
    }
}

/// Measures the curvature of the training loss at the network's current weights, on the first
/// [`CURVATURE_BATCH`] training examples; the weights are restored afterwards.
pub fn measure_curvature(net: &mut dyn Network, data: &Dataset, seed: u64) -> Result<Curvature> {
    let params = net.params();
    let w0 = flat_params(&params)?;
    let m = data.train_len().min(CURVATURE_BATCH);
    let idx: Vec<u32> = (0..m as u32).collect();
    let (x, y) = gather(data, &idx)?;
    let probe_seed = {
        use rand::Rng;
        stream(seed, Stream::Curvature).random::<u64>()
    };
    let result = {
        let mut oracle = NetOracle {
            net: &mut *net,
            params: params.clone(),
            x,
            y,
            grads: Grads::for_params(&params),
            direction: Grads::for_params(&params),
            dim: w0.len(),
        };
        let eig = instruments::extreme_eigenvalues(
            &mut oracle,
            &w0,
            LanczosOptions {
                seed: probe_seed,
                max_steps: LANCZOS_STEPS,
                tol: LANCZOS_TOLERANCE,
                ..LanczosOptions::default()
            },
        );
        let tr = instruments::hutchinson_trace(
            &mut oracle,
            &w0,
            TRACE_PROBES,
            probe_seed ^ 0x5eed,
            instruments::DEFAULT_RELATIVE_STEP,
        );
        (eig, tr)
    };
    // The weights go back exactly as they were, whatever happened.
    assign_params(&params, &w0)?;
    let (eig, tr) = result;
    let eig = eig.map_err(inst)?;
    let tr = tr.map_err(inst)?;
    Ok(Curvature {
        top_eigenvalue: eig.max.value,
        converged: eig.max.converged,
        iterations: eig.max.iterations,
        eigen_residual: eig.max.relative_residual,
        bottom_eigenvalue: eig.min.value,
        bottom_converged: eig.min.converged,
        bottom_residual: eig.min.relative_residual,
        trace: tr.mean,
        trace_se: tr.std_error,
        batch: m,
        exact_product: eig.exact_product && tr.exact_product,
    })
}
