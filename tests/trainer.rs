//! The trainer's numerics: gradients against finite differences, momentum against its
//! effective-learning-rate prediction, determinism, divergence, and the data readers.

use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use scalelab::config::{
    Budget, DEFAULT_DIVERGENCE_FACTOR, DataConfig, DatasetKind, ModelConfig, ModelKind, RunConfig,
    Schedule, TRAINER_VERSION,
};
use scalelab::train::model::{Cnn, Grads, Mlp, Network};
use scalelab::train::ops::{Axpy, softmax_xent};
use scalelab::train::optim::MomentumSgd;
use scalelab::train::rng::{Stream, stream};
use scalelab::train::{EpochMetrics, RunState, data, train};

fn random_input(rows: usize, d: usize, seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = stream(seed, Stream::TrainSamples);
    let v: Vec<f32> = (0..rows * d)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(v, (rows, d), &Device::Cpu).unwrap()
}

fn mean_loss(net: &dyn Network, x: &Tensor, y: &[u32]) -> f64 {
    let (s, _) = softmax_xent(&net.logits(x).unwrap(), y, false).unwrap();
    s.loss / s.count as f64
}

/// Compares analytic partial derivatives with central differences (step h), moving one
/// coordinate at a time in place, and returns the share of coordinates that agree at one of the
/// given steps.
///
/// ReLU and max-pooling are piecewise linear: where a step of h crosses a kink the finite
/// difference is not the derivative, so a network with many kinks (the cnn) may disagree at a
/// few coordinates; those shrink as h does (checked by hand: they converge to the analytic value).
fn gradient_agreement(net: &mut dyn Network, x: &Tensor, y: &[u32], steps: &[f32]) -> f64 {
    let params = net.params();
    let mut grads = Grads::for_params(&params);
    let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    net.loss_and_grads(&xv, y, &mut grads).unwrap();
    assert_eq!(params.len(), grads.bufs().len());
    let mut checked = 0;
    let mut agree = 0;
    for (p, g) in params.iter().zip(grads.bufs()) {
        assert_eq!(p.elem_count(), g.len());
        let n = p.elem_count();
        // Every coordinate of small tensors, a spread of them in larger ones.
        let stride = (n / 40).max(1);
        for i in (0..n).step_by(stride) {
            let mut e = vec![0f32; n];
            e[i] = 1.0;
            let e = Tensor::from_vec(e, p.shape(), &Device::Cpu).unwrap();
            let ok = steps.iter().any(|&h| {
                p.inplace_op2(&e, &Axpy { alpha: h }).unwrap();
                let up = mean_loss(&*net, x, y);
                p.inplace_op2(&e, &Axpy { alpha: -2.0 * h }).unwrap();
                let down = mean_loss(&*net, x, y);
                p.inplace_op2(&e, &Axpy { alpha: h }).unwrap();
                let fd = (up - down) / (2.0 * h as f64);
                (fd - g[i] as f64).abs() < 2e-4 + 1e-2 * fd.abs()
            });
            agree += ok as usize;
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} coordinates checked");
    agree as f64 / checked as f64
}

#[test]
fn mlp_gradients_match_central_finite_differences() {
    let mut rng = stream(3, Stream::Init);
    let mut net = Mlp::new(6, &[9, 7], 4, &mut rng).unwrap();
    let x = random_input(8, 6, 1);
    let y = [0, 1, 2, 3, 3, 2, 1, 0];
    let share = gradient_agreement(&mut net, &x, &y, &[1e-3]);
    assert_eq!(share, 1.0, "{share}");
}

/// Layers of 32 units or more take the other weight-gradient product (aᵀ·dZ written in place
/// rather than (dZᵀ·a)ᵀ).
#[test]
fn wide_mlp_gradients_match_central_finite_differences() {
    let mut rng = stream(4, Stream::Init);
    let mut net = Mlp::new(5, &[40, 33], 3, &mut rng).unwrap();
    let x = random_input(6, 5, 7);
    let y = [0, 1, 2, 2, 1, 0];
    let share = gradient_agreement(&mut net, &x, &y, &[1e-3, 3e-4]);
    assert!(share >= 0.99, "only {share} of the coordinates agree");
}

/// Batches of 512 or more into a layer of 128+ inputs and 384+ units take the packed AVX-512
/// product for its weight gradient (where the CPU has AVX-512; elsewhere the gemm crate's,
/// checked the same way).
#[test]
fn large_batch_mlp_gradients_match_central_finite_differences() {
    let mut rng = stream(5, Stream::Init);
    let mut net = Mlp::new(130, &[400], 3, &mut rng).unwrap();
    let rows = 600;
    let x = random_input(rows, 130, 9);
    let y: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
    let share = gradient_agreement(&mut net, &x, &y, &[1e-3, 3e-4]);
    assert!(share >= 0.99, "only {share} of the coordinates agree");
}

/// The step writes into buffers that outlive it (the network's scratch, the caller's
/// gradients): every gradient is overwritten, whatever the buffers held and whatever batch
/// size the scratch was last sized for.
#[test]
fn training_steps_overwrite_their_reused_buffers() {
    let nets: Vec<(Box<dyn Network>, usize)> = vec![
        (
            Box::new(Mlp::new(64, &[40, 9], 3, &mut stream(1, Stream::Init)).unwrap()),
            64,
        ),
        (
            Box::new(Cnn::new((1, 8, 8), (2, 3), 3, &mut stream(1, Stream::Init)).unwrap()),
            64,
        ),
    ];
    for (mut net, d) in nets {
        let params = net.params();
        let big = random_input(8, d, 3)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let small = random_input(3, d, 4)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (yb, ys) = ([0, 1, 2, 0, 1, 2, 2, 1], [2, 0, 1]);
        let mut first = Grads::for_params(&params);
        let s1 = net.loss_and_grads(&big, &yb, &mut first).unwrap();
        let mut again = Grads::for_params(&params);
        for b in again.bufs_mut() {
            b.fill(f32::NAN);
        }
        net.loss_and_grads(&small, &ys, &mut again).unwrap();
        let s2 = net.loss_and_grads(&big, &yb, &mut again).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(first, again);
        assert!(first.sq_norm() > 0.0);
        // A batch whose inputs do not match its labels is an error, not a panic.
        assert!(net.loss_and_grads(&big[1..], &yb, &mut again).is_err());
    }
}

#[test]
fn cnn_gradients_match_central_finite_differences() {
    let mut rng = stream(5, Stream::Init);
    let mut net = Cnn::new((1, 8, 8), (2, 3), 3, &mut rng).unwrap();
    let x = random_input(4, 64, 2);
    let y = [0, 1, 2, 1];
    let share = gradient_agreement(&mut net, &x, &y, &[1e-3, 3e-4]);
    assert!(share >= 0.97, "only {share} of the coordinates agree");
}

/// On a quadratic L = ½ Σ hᵢ wᵢ², heavy-ball momentum with rate ε contracts each slow mode by
/// the dominant root of λ² − (1 + m − εh)λ + m = 0, which is 1 − εh/(1−m) + O((εh)²): after the
/// transient it tracks plain SGD with rate ε/(1−m) (Smith & Le 2017; docs/science.md §1).
#[test]
fn momentum_tracks_plain_sgd_with_the_effective_learning_rate() {
    let curv = [0.002f32, 0.005, 0.01];
    let (lr, m) = (0.01f64, 0.9f64);
    let run = |lr: f64, m: f64| -> Vec<Vec<f64>> {
        let w = Tensor::new(&[1f32, 1.0, 1.0], &Device::Cpu).unwrap();
        let mut opt = MomentumSgd::new(std::slice::from_ref(&w), m, false, 0.0);
        let mut traj = Vec::new();
        for _ in 0..1600 {
            let wv = w.to_vec1::<f32>().unwrap();
            traj.push(wv.iter().map(|&v| v as f64).collect());
            let g: Vec<f32> = wv.iter().zip(&curv).map(|(w, h)| w * h).collect();
            let mut grads = Grads::for_params(std::slice::from_ref(&w));
            grads.bufs_mut()[0].copy_from_slice(&g);
            opt.step(lr, std::slice::from_ref(&w), &grads).unwrap();
        }
        traj
    };
    let heavy = run(lr, m);
    let plain = run(lr / (1.0 - m), 0.0);
    for (i, h) in curv.iter().enumerate() {
        let rate = |t: &Vec<Vec<f64>>| (t[1500][i] / t[500][i]).ln() / 1000.0;
        let (rh, rp) = (rate(&heavy), rate(&plain));
        let predicted = (1.0 - lr * *h as f64 / (1.0 - m)).ln();
        assert!(
            (rh - rp).abs() < 0.02 * rp.abs(),
            "mode h={h}: momentum log-rate {rh} vs plain SGD at ε/(1−m) {rp}"
        );
        assert!((rp - predicted).abs() < 1e-3 * predicted.abs());
    }
    // Without the 1/(1−m) correction the rates differ by an order of magnitude.
    let slow = run(lr, 0.0);
    let r_slow = (slow[1500][0] / slow[500][0]).ln();
    let r_heavy = (heavy[1500][0] / heavy[500][0]).ln();
    assert!(r_heavy / r_slow > 8.0);
}

pub fn teacher_config(seed: u64) -> RunConfig {
    RunConfig {
        trainer_version: TRAINER_VERSION,
        data: DataConfig::new(DatasetKind::Teacher, 500, 300),
        model: ModelConfig {
            kind: ModelKind::Mlp,
            hidden: vec![64],
        },
        lr: 0.1,
        batch_size: 32,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        budget: Budget::Epochs(4),
        schedule: Schedule::Constant,
        seed,
        noise_scale: None,
        divergence_factor: DEFAULT_DIVERGENCE_FACTOR,
        warmup_epochs: 0,
        instruments: Default::default(),
    }
}

fn collect(cfg: &RunConfig) -> (Vec<EpochMetrics>, scalelab::train::RunOutcome) {
    let data = data::load(&cfg.data).unwrap();
    let mut rows = Vec::new();
    let mut sink = |m: &EpochMetrics| -> scalelab::Result<()> {
        rows.push(m.clone());
        Ok(())
    };
    let out = train(cfg, &data, &mut sink, &AtomicBool::new(false)).unwrap();
    (rows, out)
}

/// Gradual warmup (Goyal et al. 2017): over the first 2 epochs' 2·⌈500/32⌉ = 32 updates the
/// rate rises linearly to ε, each epoch storing the mean of its updates' rates ((1 + … + 16)/16
/// and (17 + … + 32)/16 of ε/32), and
/// after it the run follows its schedule (a decay at half the budget). The warmup changes the
/// first epochs' numbers and nothing else about the run's identity or determinism; a run
/// without it is the same bit for bit as before the key existed.
#[test]
fn warmup_ramps_the_rate_linearly_then_hands_over_to_the_schedule() {
    let mut plain = teacher_config(3);
    plain.budget = Budget::Epochs(6);
    plain.schedule = Schedule::DecayLr {
        milestones: vec![0.5],
        factor: 10.0,
    };
    let mut warm = plain.clone();
    warm.warmup_epochs = 2;
    assert_eq!(warm.warmup_steps(), 32);
    assert_ne!(warm.run_id(), plain.run_id());
    let (a, _) = collect(&plain);
    let (b, ob) = collect(&warm);
    let lrs: Vec<f64> = b.iter().map(|m| m.lr).collect();
    let expected = [
        0.1,
        0.1 * 8.5 / 32.0,
        0.1 * 24.5 / 32.0,
        0.1,
        0.01,
        0.01,
        0.01,
    ];
    for (got, want) in lrs.iter().zip(expected) {
        assert!((got / want - 1.0).abs() < 1e-14, "{lrs:?}");
    }
    assert_eq!(
        a.iter().map(|m| m.lr).collect::<Vec<_>>(),
        [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    );
    // Epoch 0 is before any update; the warm run's first epoch moved less far.
    assert_eq!(a[0].train_loss, b[0].train_loss);
    assert_ne!(a[1].train_loss, b[1].train_loss);
    assert_eq!(ob.steps, 6 * 16);
    let (c, _) = collect(&warm);
    assert_eq!(without_wall(&b), without_wall(&c));
    // The per-update factors: (t + 1)/32 for t < 32, then exactly 1.
    assert_eq!(warm.warmup_factor(0), 1.0 / 32.0);
    assert_eq!(warm.warmup_factor(15), 0.5);
    assert_eq!(warm.warmup_factor(31), 1.0);
    assert_eq!(warm.warmup_factor(32), 1.0);
    assert_eq!(plain.warmup_factor(0), 1.0);
    // Longer than training: refused, naming the key.
    warm.warmup_epochs = 7;
    let e = warm.validate().unwrap_err().to_string();
    assert!(e.contains("warmup_epochs") && e.contains("6 epochs"), "{e}");
    warm.warmup_epochs = 1;
    warm.budget = Budget::Steps(10);
    let e = warm.validate().unwrap_err().to_string();
    assert!(e.contains("16 updates") && e.contains("10 steps"), "{e}");
}

fn without_wall(rows: &[EpochMetrics]) -> Vec<EpochMetrics> {
    rows.iter()
        .map(|m| EpochMetrics {
            wall_s: 0.0,
            ..m.clone()
        })
        .collect()
}

#[test]
fn same_seed_is_bit_identical_and_another_seed_differs() {
    let (a, oa) = collect(&teacher_config(1));
    let (b, _) = collect(&teacher_config(1));
    assert_eq!(without_wall(&a), without_wall(&b));
    assert_eq!(a.len(), 5);
    assert_eq!(oa.state, RunState::Completed);
    // Training learns something: test accuracy well above chance (10 classes).
    assert!(a[4].test_acc > 0.4, "test acc {}", a[4].test_acc);
    assert!(a[4].train_loss < a[0].train_loss);
    let (c, _) = collect(&teacher_config(2));
    assert_ne!(without_wall(&a)[1..], without_wall(&c)[1..]);
    // Epoch bookkeeping: ⌈500/32⌉ = 16 steps per epoch.
    assert_eq!(a[2].step, 32);
    assert_eq!(a[2].samples, 1000);
}

/// The runs of `cfgs`, one after another on one new thread; the last one's epochs and outcome.
fn last_on_one_thread(cfgs: Vec<RunConfig>) -> (Vec<EpochMetrics>, scalelab::train::RunOutcome) {
    std::thread::spawn(move || cfgs.iter().fold(None, |_, c| Some(collect(c))).unwrap())
        .join()
        .unwrap()
}

/// A network leaves its working memory to the next one built on the same thread (a slot's next
/// run): a run after a larger, deeper one, on more data and larger batches, computes bit for bit
/// what it computes on a fresh thread.
#[test]
fn a_run_does_not_depend_on_the_run_before_it_on_its_thread() {
    let cfg = teacher_config(3);
    let mut big = teacher_config(4);
    big.model.hidden = vec![96, 48];
    big.data = DataConfig::new(DatasetKind::Teacher, 700, 900);
    big.batch_size = 100;
    let fresh = last_on_one_thread(vec![cfg.clone()]);
    let after = last_on_one_thread(vec![big.clone(), cfg.clone()]);
    assert_eq!(without_wall(&fresh.0), without_wall(&after.0));
    assert_eq!(fresh.0.len(), 5);
    assert_eq!(fresh.1.state, after.1.state);
    // And the other way round: the smaller run before a larger one leaves it unchanged too.
    let alone = last_on_one_thread(vec![big.clone()]);
    let later = last_on_one_thread(vec![cfg, big]);
    assert_eq!(without_wall(&alone.0), without_wall(&later.0));
}

#[test]
fn a_step_budget_ends_mid_epoch() {
    let mut cfg = teacher_config(1);
    cfg.budget = Budget::Steps(40);
    let (rows, out) = collect(&cfg);
    assert_eq!(out.steps, 40);
    assert_eq!(rows.last().unwrap().step, 40);
    assert_eq!(rows.last().unwrap().epoch, 3); // 16 + 16 + 8
    assert_eq!(rows.last().unwrap().samples, 2 * 500 + 8 * 32);
}

#[test]
fn schedules_record_the_lr_and_batch_in_force() {
    let mut cfg = teacher_config(1);
    cfg.budget = Budget::Epochs(4);
    cfg.schedule = Schedule::IncreaseBatch {
        milestones: vec![0.5],
        factor: 4.0,
    };
    let (rows, out) = collect(&cfg);
    let batches: Vec<u64> = rows.iter().map(|m| m.batch_size).collect();
    assert_eq!(batches, vec![32, 32, 32, 128, 128]);
    assert_eq!(out.steps, cfg.planned_updates());
    assert_eq!(out.steps, 2 * 16 + 2 * 4);
    cfg.schedule = Schedule::DecayLr {
        milestones: vec![0.5],
        factor: 4.0,
    };
    let (rows, _) = collect(&cfg);
    let lrs: Vec<f64> = rows.iter().map(|m| m.lr).collect();
    assert_eq!(lrs, vec![0.1, 0.1, 0.1, 0.025, 0.025]);
}

#[test]
fn a_huge_learning_rate_diverges_and_names_the_epoch() {
    let mut cfg = teacher_config(1);
    cfg.lr = 50.0;
    let (rows, out) = collect(&cfg);
    match out.state {
        RunState::Diverged { epoch, ref reason } => {
            assert_eq!(epoch, 1, "{reason}");
            assert_eq!(rows.last().unwrap().epoch, 1);
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[test]
fn the_stop_flag_stops_before_the_next_step() {
    let cfg = teacher_config(1);
    let data = data::load(&cfg.data).unwrap();
    let mut sink = |_: &EpochMetrics| -> scalelab::Result<()> { Ok(()) };
    let out = train(&cfg, &data, &mut sink, &AtomicBool::new(true)).unwrap();
    assert_eq!(out.state, RunState::Stopped);
    assert_eq!(out.steps, 0);
}

mod readers {
    use super::*;
    use scalelab::train::data::{CIFAR_RECORD_BYTES, encode_idx};
    use std::io::Write;

    fn write(path: &std::path::Path, bytes: &[u8], gz: bool) {
        if gz {
            let f = std::fs::File::create(path).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(path, bytes).unwrap();
        }
    }

    /// Writes a tiny MNIST-layout data set: 12 training and 5 test images of 4×3 pixels.
    pub fn write_idx(dir: &std::path::Path, gz: bool) -> (Vec<u8>, Vec<u8>) {
        let sfx = if gz { ".gz" } else { "" };
        let train_px: Vec<u8> = (0..12 * 12).map(|i| (i * 37 % 256) as u8).collect();
        let train_lb: Vec<u8> = (0..12).map(|i| (i % 10) as u8).collect();
        let test_px: Vec<u8> = (0..5 * 12).map(|i| (i * 11 % 256) as u8).collect();
        let test_lb: Vec<u8> = vec![3, 1, 4, 1, 5];
        write(
            &dir.join(format!("train-images-idx3-ubyte{sfx}")),
            &encode_idx(&[12, 4, 3], &train_px),
            gz,
        );
        write(
            &dir.join(format!("train-labels-idx1-ubyte{sfx}")),
            &encode_idx(&[12], &train_lb),
            gz,
        );
        write(
            &dir.join(format!("t10k-images-idx3-ubyte{sfx}")),
            &encode_idx(&[5, 4, 3], &test_px),
            gz,
        );
        write(
            &dir.join(format!("t10k-labels-idx1-ubyte{sfx}")),
            &encode_idx(&[5], &test_lb),
            gz,
        );
        (train_px, test_px)
    }

    #[test]
    fn idx_reader_reads_generated_files_exactly() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (train_px, test_px) = write_idx(dir.path(), gz);
            let mut cfg = DataConfig::new(DatasetKind::Idx, 12, 5);
            cfg.data_dir = Some(dir.path().to_string_lossy().into_owned());
            let ds = data::load(&cfg).unwrap();
            assert_eq!(ds.input_shape, vec![1, 4, 3]);
            assert_eq!(ds.test_y, vec![3, 1, 4, 1, 5]);
            // Normalisation: (x/255 − μ)/σ with μ, σ over the whole training file.
            let xs: Vec<f64> = train_px.iter().map(|&p| p as f64 / 255.0).collect();
            let mu = xs.iter().sum::<f64>() / xs.len() as f64;
            let sd = (xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
            let test = ds.test_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(test.len(), test_px.len());
            for (got, &p) in test.iter().zip(&test_px) {
                assert!((*got as f64 - (p as f64 / 255.0 - mu) / sd).abs() < 1e-5);
            }
            // All 12 training images are used (in a seeded order), each with its own label.
            let train = ds.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (row, &label) in ds.train_y.iter().enumerate() {
                let first = train[row * 12] as f64 * sd + mu;
                let i = (0..12)
                    .find(|&i| ((train_px[i * 12] as f64 / 255.0) - first).abs() < 1e-5)
                    .unwrap();
                assert_eq!(label as usize, i % 10);
            }
            let mut sorted = ds.train_y.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        }
    }

    #[test]
    fn idx_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), false);
        let mut cfg = DataConfig::new(DatasetKind::Idx, 12, 5);
        cfg.data_dir = Some(dir.path().to_string_lossy().into_owned());
        // Truncated images file.
        let p = dir.path().join("t10k-images-idx3-ubyte");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
        let e = data::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"),
            "{e}"
        );
        // Missing labels file.
        std::fs::write(&p, &bytes).unwrap();
        std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
        let e = data::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("train-labels-idx1-ubyte") && e.contains("missing"),
            "{e}"
        );
        // More examples asked than the files hold.
        write_idx(dir.path(), false);
        cfg.train_size = 13;
        let e = data::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("train_size") && e.contains("13") && e.contains("12"),
            "{e}"
        );
    }

    #[test]
    fn cifar_reader_reads_generated_files_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let record = |label: u8, base: u32| -> Vec<u8> {
            let mut r = vec![label];
            r.extend((0..3072u32).map(|i| ((i * 7 + base) % 256) as u8));
            r
        };
        let mut batch1 = Vec::new();
        for i in 0..6u8 {
            batch1.extend(record(i, i as u32 * 13));
        }
        let mut batch2 = Vec::new();
        for i in 6..10u8 {
            batch2.extend(record(i, i as u32 * 13));
        }
        let test: Vec<u8> = record(9, 99).into_iter().chain(record(2, 5)).collect();
        assert_eq!(test.len(), 2 * CIFAR_RECORD_BYTES);
        std::fs::write(dir.path().join("data_batch_1.bin"), &batch1).unwrap();
        std::fs::write(dir.path().join("data_batch_2.bin"), &batch2).unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), &test).unwrap();
        let (labels, pixels) =
            scalelab::train::data::read_cifar_file(&dir.path().join("test_batch.bin")).unwrap();
        assert_eq!(labels, vec![9, 2]);
        assert_eq!(pixels[..3072], record(9, 99)[1..]);
        let mut cfg = DataConfig::new(DatasetKind::Cifar10, 10, 2);
        cfg.data_dir = Some(dir.path().to_string_lossy().into_owned());
        let ds = data::load(&cfg).unwrap();
        assert_eq!(ds.input_shape, vec![3, 32, 32]);
        assert_eq!(ds.test_y, vec![9, 2]);
        let mut ys = ds.train_y.clone();
        ys.sort();
        assert_eq!(ys, (0..10).collect::<Vec<u32>>());
        // Per-channel standardisation: the training inputs of each channel have mean 0, sd 1.
        let x = ds.train_x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for c in 0..3 {
            let vals: Vec<f64> = x
                .chunks(3072)
                .flat_map(|r| r[c * 1024..(c + 1) * 1024].iter().map(|&v| v as f64))
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "channel {c}: {mean} {var}"
            );
        }
        // A truncated batch is named.
        std::fs::write(dir.path().join("data_batch_2.bin"), &batch2[..100]).unwrap();
        let e = data::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_2.bin") && e.contains("truncated"),
            "{e}"
        );
    }

    #[test]
    fn cnn_trains_on_idx_images() {
        let dir = tempfile::tempdir().unwrap();
        let px =
            |n: usize, k: usize| -> Vec<u8> { (0..n * 64).map(|i| (i * k % 256) as u8).collect() };
        let labels: Vec<u8> = (0..12).map(|i| (i % 3) as u8).collect();
        let p = dir.path();
        std::fs::write(
            p.join("train-images-idx3-ubyte"),
            encode_idx(&[12, 8, 8], &px(12, 37)),
        )
        .unwrap();
        std::fs::write(
            p.join("train-labels-idx1-ubyte"),
            encode_idx(&[12], &labels),
        )
        .unwrap();
        std::fs::write(
            p.join("t10k-images-idx3-ubyte"),
            encode_idx(&[5, 8, 8], &px(5, 11)),
        )
        .unwrap();
        std::fs::write(
            p.join("t10k-labels-idx1-ubyte"),
            encode_idx(&[5], &labels[..5]),
        )
        .unwrap();
        let mut cfg = teacher_config(1);
        cfg.data = DataConfig::new(DatasetKind::Idx, 12, 5);
        cfg.data.data_dir = Some(dir.path().to_string_lossy().into_owned());
        cfg.model = ModelConfig {
            kind: ModelKind::Cnn,
            hidden: vec![2, 4],
        };
        cfg.batch_size = 4;
        cfg.lr = 0.05;
        let (rows, out) = collect(&cfg);
        assert_eq!(out.state, RunState::Completed);
        assert_eq!(rows.len(), 5);
        assert!(rows[4].train_loss < rows[0].train_loss);
    }
}

/// The hand-written forward pass against candle's own convolution and pooling, on a
/// non-square multi-channel image with odd channel counts.
#[test]
fn cnn_logits_match_candle_conv_and_pool() {
    let (c, h, w) = (2, 12, 8);
    let mut rng = stream(9, Stream::Init);
    let net = Cnn::new((c, h, w), (3, 5), 4, &mut rng).unwrap();
    let x = random_input(3, c * h * w, 4);
    let p = net.params();
    let relu_pool = |t: Tensor, b: &Tensor| {
        t.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap()
            .max_pool2d(2)
            .unwrap()
    };
    let img = x.reshape((3, c, h, w)).unwrap();
    let a1 = relu_pool(img.conv2d(&p[0], 2, 1, 1, 1).unwrap(), &p[1]);
    let a2 = relu_pool(a1.conv2d(&p[2], 2, 1, 1, 1).unwrap(), &p[3]);
    let want = a2
        .flatten_from(1)
        .unwrap()
        .matmul(&p[4].t().unwrap())
        .unwrap()
        .broadcast_add(&p[5])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let got = net.logits(&x).unwrap().to_vec2::<f32>().unwrap();
    // Three inputs, four classes each, on both sides (a zip of unequal lengths compares less).
    let shape = |m: &Vec<Vec<f32>>| (m.len(), m.iter().map(Vec::len).collect::<Vec<_>>());
    assert_eq!(shape(&got), (3, vec![4; 3]));
    assert_eq!(shape(&want), shape(&got));
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
    }
}
