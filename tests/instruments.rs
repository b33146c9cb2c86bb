//! The instruments on real training: they do not change training, the noise scale behaves as
//! McCandlish et al. report, and the curvature matches a dense Hessian of a small network.

use std::sync::atomic::AtomicBool;

use nalgebra::DMatrix;
use scalelab::config::{Budget, CurvatureWhen, Instruments, example_config};
use scalelab::train::instrument::{assign_params, flat_params, measure_curvature};
use scalelab::train::model::{Grads, Mlp, Network};
use scalelab::train::rng::{Stream, stream};
use scalelab::train::{EpochMetrics, RunOutcome, data, train};

fn run(cfg: &scalelab::config::RunConfig) -> (Vec<EpochMetrics>, RunOutcome) {
    let ds = data::load(&cfg.data).unwrap();
    let mut rows = Vec::new();
    let mut sink = |m: &EpochMetrics| -> scalelab::Result<()> {
        rows.push(m.clone());
        Ok(())
    };
    let out = train(cfg, &ds, &mut sink, &AtomicBool::new(false)).unwrap();
    (rows, out)
}

#[test]
fn instruments_do_not_change_training() {
    let mut off = example_config();
    off.data.train_size = 600;
    off.batch_size = 64;
    off.budget = Budget::Epochs(4);
    let mut on = off.clone();
    on.instruments = Instruments {
        noise_scale_every: 1,
        curvature: CurvatureWhen::InitAndFinal,
    };
    assert_ne!(
        off.run_id(),
        on.run_id(),
        "instruments are part of a run's identity when on"
    );
    let mut plain = off.clone();
    plain.instruments = Instruments::default();
    assert_eq!(off.run_id(), plain.run_id(), "and absent from it when off");
    let (a, oa) = run(&off);
    let (b, ob) = run(&on);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.train_loss, x.test_loss, x.train_acc, x.test_acc, x.step),
            (y.train_loss, y.test_loss, y.train_acc, y.test_acc, y.step),
            "epoch {}",
            x.epoch
        );
        assert!(x.b_simple.is_none() && y.b_simple.is_some());
    }
    assert!(oa.curvature_init.is_none() && ob.curvature_init.is_some());
    assert!(ob.curvature_final.is_some());
    assert_eq!(oa.instruments_s, 0.0);
    assert!(ob.instruments_s > 0.0);
    // The same instrumented run twice: the same readings.
    let (c, oc) = run(&on);
    let bs = |v: &[EpochMetrics]| v.iter().map(|m| m.b_simple).collect::<Vec<_>>();
    assert_eq!(bs(&b), bs(&c));
    assert_eq!(ob.curvature_init, oc.curvature_init);
}

/// McCandlish et al. 2018 (Fig. 5, Table 1): B_simple is finite, positive, and grows as the
/// training loss falls.
#[test]
fn b_simple_is_positive_and_grows_as_the_loss_falls() {
    let mut cfg = example_config();
    cfg.data.train_size = 2000;
    cfg.model.hidden = vec![128];
    cfg.lr = 0.02;
    cfg.batch_size = 128;
    cfg.budget = Budget::Epochs(15);
    cfg.instruments.noise_scale_every = 1;
    let (rows, _) = run(&cfg);
    let b: Vec<f64> = rows.iter().map(|m| m.b_simple.unwrap()).collect();
    let loss: Vec<f64> = rows.iter().map(|m| m.train_loss).collect();
    assert!(b.iter().all(|v| v.is_finite() && *v > 0.0), "{b:?}");
    let rho = scalelab::fit::spearman(&b, &loss).unwrap();
    assert!(rho < -0.7, "ρ(B_simple, loss) = {rho}: {b:?}");
    assert!(b.last().unwrap() > &(2.0 * b[0]), "{b:?}");
    assert!(loss.last().unwrap() < &(0.7 * loss[0]));
}

/// The curvature instrument on a model small enough for a dense Hessian: softmax regression
/// (an mlp without hidden layers), whose loss is smooth — a ReLU network's loss has kinks that
/// make a finite-difference "Hessian" depend on the step (docs/instruments.md). The dense matrix
/// is H·e_j for every basis vector, by the same central differences.
/// The power iteration's eigenvalue of largest magnitude must match the dense matrix's within 1%,
/// the Hutchinson trace its trace within 4 standard errors, and the weights come back bit for bit.
#[test]
fn curvature_matches_a_dense_hessian_of_a_small_network() {
    use scalelab::instruments::{
        DEFAULT_RELATIVE_STEP, GradientOracle, InstrumentError, hessian_vector,
    };
    let mut cfg = example_config();
    cfg.data.train_size = 200;
    cfg.data.dim = Some(6);
    cfg.data.classes = Some(3);
    cfg.data.fill_defaults();
    let ds = data::load(&cfg.data).unwrap();
    let mut net = Mlp::new(6, &[], 3, &mut stream(4, Stream::Init)).unwrap();
    let params = net.params();
    let w0 = flat_params(&params).unwrap();
    let d = w0.len();
    assert_eq!(d, 6 * 3 + 3);
    struct Oracle<'a> {
        net: &'a mut Mlp,
        params: Vec<candle_core::Tensor>,
        ds: &'a data::Dataset,
    }
    impl GradientOracle for Oracle<'_> {
        fn dim(&self) -> usize {
            flat_params(&self.params).unwrap().len()
        }
        fn gradient(&mut self, w: &[f32], out: &mut [f32]) -> Result<(), InstrumentError> {
            assign_params(&self.params, w).unwrap();
            let mut g = Grads::for_params(&self.params);
            let x = self
                .ds
                .train_x
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            self.net
                .loss_and_grads(&x, &self.ds.train_y, &mut g)
                .unwrap();
            let flat: Vec<f32> = g.bufs().concat();
            out.copy_from_slice(&flat);
            Ok(())
        }
    }
    let mut hess = DMatrix::<f64>::zeros(d, d);
    {
        let mut oracle = Oracle {
            net: &mut net,
            params: params.clone(),
            ds: &ds,
        };
        let mut col = vec![0f32; d];
        for j in 0..d {
            let mut e = vec![0f32; d];
            e[j] = 1.0;
            hessian_vector(&mut oracle, &w0, &e, DEFAULT_RELATIVE_STEP, &mut col).unwrap();
            for i in 0..d {
                hess[(i, j)] = col[i] as f64;
            }
        }
    }
    assign_params(&params, &w0).unwrap();
    let asym = (&hess - hess.transpose()).norm() / hess.norm();
    assert!(
        asym < 1e-3,
        "finite-difference Hessian far from symmetric: {asym}"
    );
    let hess = (&hess + hess.transpose()) * 0.5;
    let eig = hess.clone().symmetric_eigen();
    let top = eig
        .eigenvalues
        .iter()
        .copied()
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap();
    let trace = hess.trace();
    let c = measure_curvature(&mut net, &ds, 7).unwrap();
    assert_eq!(c.batch, 200);
    assert!(c.converged);
    assert!(
        (c.top_eigenvalue - top).abs() < 0.01 * top.abs(),
        "power iteration {} vs dense {top}",
        c.top_eigenvalue
    );
    assert!(
        (c.trace - trace).abs() < 4.0 * c.trace_se,
        "Hutchinson {} ± {} vs dense {trace}",
        c.trace,
        c.trace_se
    );
    // The weights are back, bit for bit.
    assert_eq!(flat_params(&net.params()).unwrap(), w0);
}
