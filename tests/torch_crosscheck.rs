//! scalelab's training against PyTorch's, number for number, without PyTorch.
//!
//! `bench/torch_crosscheck.py` trained a few small networks with PyTorch (nn.Linear / nn.Conv2d,
//! F.cross_entropy, torch.optim.SGD, BatchSampler with drop_last=False; float32, one thread)
//! from initial weights, data, per-epoch permutations and per-step learning rates it drew with
//! numpy, and wrote everything it computed to `tests/data/torch_crosscheck.json`. Each test
//! here loads the same initial weights into scalelab's network (`model::build`,
//! `model::load_torch_params`), cuts the same permutations into batches with the trainer's own
//! `epoch_batches`, trains with `MomentumSgd` at the same learning rates, and compares: the
//! batches, the gradient of every parameter at step 0, the loss of every step, the final
//! parameters, and the mean loss and accuracy over the training set before and after.
//!
//! Regenerate the fixture with `.venv-torch/bin/python bench/torch_crosscheck.py`
//! (docs/trainer.md, "Cross-check against PyTorch").
//!
//! Mutations of scalelab that these tests were seen to fail on (each tried, then reverted):
//! dampening (u ← m·u + (1−m)·g; relative loss difference 10⁻³–10⁻² at step 1), Nesterov taken
//! as plain momentum (equivalently g + m·u with the buffer before its update; 6·10⁻³ at step 1),
//! weight decay added after the momentum buffer instead of into the gradient (1–2·10⁻⁴ at step
//! 1), weight decay skipped for biases (1–6·10⁻⁴ at step 1), the partial last batch dropped (a
//! step count that differs), the loss summed instead of averaged (step-0 gradients 5–15× too
//! large), and each learning-rate change applied one step late (10⁻³–4·10⁻² at that step).

use std::path::Path;

use scalelab::config::{ModelConfig, ModelKind};
use scalelab::train::data::Dataset;
use scalelab::train::model::{self, Grads, Network};
use scalelab::train::optim::MomentumSgd;
use scalelab::train::{epoch_batches, evaluate, flush_denormals};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    input_shape: Vec<usize>,
    hidden: Vec<u32>,
    classes: usize,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    /// `(N, D)` row-major.
    train_x: Vec<f32>,
    train_y: Vec<u32>,
    epochs: Vec<Epoch>,
    /// Every step's batch, as PyTorch's BatchSampler cut them.
    batches: Vec<Vec<u32>>,
    /// Every step's learning rate.
    lrs: Vec<f64>,
    /// PyTorch's parameters before training (`named_parameters()` order, PyTorch's layout).
    init: Vec<Param>,
    /// PyTorch's gradient of every parameter at step 0.
    grad0: Vec<Vec<f32>>,
    /// PyTorch's batch loss at every step (before that step's update).
    losses: Vec<f64>,
    /// PyTorch's parameters after the last step.
    #[serde(rename = "final")]
    final_params: Vec<Vec<f32>>,
    eval_init: Eval,
    eval_final: Eval,
}

#[derive(Deserialize)]
struct Epoch {
    batch_size: usize,
    perm: Vec<u32>,
}

#[derive(Deserialize)]
struct Param {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Mean cross-entropy and accuracy over the whole training set.
#[derive(Deserialize)]
struct Eval {
    loss: f64,
    acc: f64,
}

// Tolerances. Both engines compute in f32 (ε = 2⁻²⁴ ≈ 6·10⁻⁸ per rounding) the same
// operations in different orders: the matmul kernels' summation order and blocking, FMA or
// not (PyTorch's `add_(x, alpha=…)` fuses, scalelab's update does not), the CNN's im2col order,
// the log-sum-exp, scalelab's own exp in the evaluation. A sum of n terms then differs by about
// √n·ε·Σ|terms| between two orders; here n ≤ 300 (a weight gradient sums a batch's rows of a
// conv-2 patch's 75–100 taps), so a few 10⁻⁷ of a gradient's scale. Tensors are compared
// relative to their largest magnitude (‖a − b‖∞ / ‖b‖∞): element-wise relative differences
// mean nothing for entries that cancel to near zero. Measured on this fixture (x86-64,
// AVX-512): at most 8·10⁻⁷ for step-0 gradients, 2·10⁻⁷ for step losses, 4·10⁻⁷ for final
// parameters, 1·10⁻⁷ for the evaluation loss. The smallest defect tried (weight decay outside
// the momentum buffer, see the module docs) moves the loss by 10⁻⁴ at step 1, so the
// tolerances below leave 10–50× headroom for other CPUs' kernels and stay below a defect.
/// Step-0 gradients: one forward and backward pass from identical weights.
const GRAD0_TOL: f64 = 1e-5;
/// A step's loss: each update carries the previous differences forward, through the network's
/// Jacobian and the momentum buffer, so the allowance grows with the step (1·10⁻⁵ at step 0,
/// 2.5·10⁻⁵ at step 15).
fn loss_tol(step: usize) -> f64 {
    1e-5 + 1e-6 * step as f64
}
/// Final parameters, after 9–15 steps of accumulated drift.
const FINAL_TOL: f64 = 2e-5;
/// The mean loss over the training set, before and after training.
const EVAL_TOL: f64 = 2e-5;

/// The largest [`rel_diff`] of scalelab's tensors `got` from PyTorch's `want` (one per
/// parameter, named as in `params`), each asserted within `tol`.
fn worst_tensor(
    got: &[Vec<f32>],
    want: &[Vec<f32>],
    params: &[Param],
    tol: f64,
    case: &str,
    what: &str,
) -> f64 {
    // One tensor per parameter on each side: a zip of unequal lengths would compare fewer.
    assert_eq!(
        got.len(),
        params.len(),
        "{case}: {what}: tensors of scalelab"
    );
    assert_eq!(
        want.len(),
        params.len(),
        "{case}: {what}: tensors of PyTorch"
    );
    let mut worst = 0f64;
    for ((g, w), p) in got.iter().zip(want).zip(params) {
        let d = rel_diff(g, w);
        assert!(
            d <= tol,
            "{case}: {what} {} differs by {d:.2e} of its largest entry",
            p.name
        );
        worst = worst.max(d);
    }
    worst
}

/// ‖a − b‖∞ / ‖b‖∞.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    diff / scale.max(f64::MIN_POSITIVE)
}

fn load(name: &str) -> Case {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_crosscheck.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    fixture
        .cases
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name} in {}", path.display()))
}

/// The largest differences of one case: step-0 gradient, step loss, final parameter, final
/// evaluation loss.
#[derive(Debug, Default)]
struct Agreement {
    grad0: f64,
    loss: f64,
    final_params: f64,
    eval_loss: f64,
}

/// Replays a case with scalelab and asserts it agrees with PyTorch; returns the largest
/// differences.
fn crosscheck(name: &str) -> Agreement {
    let case = load(name);
    // As the trainer's thread (docs/trainer.md, "Floating point"); the script sets PyTorch's
    // flush too.
    flush_denormals();
    let kind = match case.kind.as_str() {
        "mlp" => ModelKind::Mlp,
        "cnn" => ModelKind::Cnn,
        other => panic!("unknown model kind {other}"),
    };
    let cfg = ModelConfig {
        kind,
        hidden: case.hidden.clone(),
    };
    let mut net = model::build(&cfg, &case.input_shape, case.classes, 0).unwrap();
    let params = net.params();
    assert_eq!(params.len(), case.init.len(), "{name}: parameter count");
    for (p, want) in params.iter().zip(&case.init) {
        let mut shape = p.dims().to_vec();
        let stored: usize = shape.iter().product();
        assert_eq!(stored, want.values.len(), "{name}: size of {}", want.name);
        // The mlp stores its weights transposed; every parameter has PyTorch's size.
        shape.sort_unstable();
        let mut torch = want.shape.clone();
        torch.sort_unstable();
        assert_eq!(shape, torch, "{name}: shape of {}", want.name);
    }
    let init: Vec<&[f32]> = case.init.iter().map(|p| &p.values[..]).collect();
    model::load_torch_params(&*net, &init).unwrap();
    let loaded = model::torch_params(&*net).unwrap();
    assert_eq!(
        loaded.len(),
        case.init.len(),
        "{name}: parameters read back"
    );
    for (got, want) in loaded.iter().zip(&case.init) {
        assert!(
            got == &want.values,
            "{name}: {} not loaded as given",
            want.name
        );
    }

    let data = Dataset::from_vecs(
        case.input_shape.clone(),
        case.classes,
        case.train_x.clone(),
        case.train_y.clone(),
        case.train_x.clone(),
        case.train_y.clone(),
    )
    .unwrap();
    let mut agree = Agreement::default();
    let check_eval = |net: &mut dyn Network, want: &Eval, when: &str| -> f64 {
        // As the trainer evaluates: from the transposed inputs where the network reads them.
        let (loss, acc) = evaluate(net, &data.train_x, data.train_x_t(), &data.train_y).unwrap();
        let d = (loss - want.loss).abs() / want.loss;
        assert!(
            d <= EVAL_TOL,
            "{name}: training loss {when} {loss} vs PyTorch's {} (relative {d:.2e})",
            want.loss
        );
        // No prediction sits within the drift of a tie here, so the accuracies are equal.
        assert_eq!(acc, want.acc, "{name}: accuracy {when}");
        d
    };
    check_eval(&mut *net, &case.eval_init, "before training");

    // The trainer's own cut of each epoch's permutation gives PyTorch's batches.
    let batches: Vec<&[u32]> = case
        .epochs
        .iter()
        .flat_map(|e| epoch_batches(&e.perm, e.batch_size))
        .collect();
    assert_eq!(batches.len(), case.batches.len(), "{name}: number of steps");
    for (step, (got, want)) in batches.iter().zip(&case.batches).enumerate() {
        assert_eq!(got, want, "{name}: batch of step {step}");
    }
    assert_eq!(case.lrs.len(), batches.len());
    assert_eq!(case.losses.len(), batches.len());

    let mut opt = MomentumSgd::new(&params, case.momentum, case.nesterov, case.weight_decay);
    let mut grads = Grads::for_params(&params);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (step, (batch, &lr)) in batches.iter().zip(&case.lrs).enumerate() {
        data.gather_train(batch, &mut x, &mut y).unwrap();
        let sum = net.loss_and_grads(&x, &y, &mut grads).unwrap();
        let loss = sum.loss / sum.count as f64;
        let want = case.losses[step];
        let d = (loss - want).abs() / want;
        assert!(
            d <= loss_tol(step),
            "{name}: loss at step {step} {loss} vs PyTorch's {want} (relative {d:.2e}, \
             tolerance {:.1e})",
            loss_tol(step)
        );
        agree.loss = agree.loss.max(d);
        if step == 0 {
            let got = model::to_torch_layout(&*net, grads.bufs()).unwrap();
            let d = worst_tensor(
                &got,
                &case.grad0,
                &case.init,
                GRAD0_TOL,
                name,
                "step-0 gradient of",
            );
            agree.grad0 = agree.grad0.max(d);
        }
        opt.step(lr, &params, &grads).unwrap();
    }

    let got = model::torch_params(&*net).unwrap();
    let d = worst_tensor(
        &got,
        &case.final_params,
        &case.init,
        FINAL_TOL,
        name,
        "final",
    );
    agree.final_params = agree.final_params.max(d);
    agree.eval_loss = check_eval(&mut *net, &case.eval_final, "after training");
    eprintln!(
        "{name}: step-0 gradient {:.1e}, step loss {:.1e}, final parameters {:.1e}, \
         final training loss {:.1e}",
        agree.grad0, agree.loss, agree.final_params, agree.eval_loss
    );
    agree
}

#[test]
fn mlp_with_momentum_matches_pytorch() {
    crosscheck("mlp_momentum");
}

#[test]
fn mlp_with_nesterov_and_weight_decay_matches_pytorch() {
    crosscheck("mlp_nesterov_weight_decay");
}

/// Momentum 0 takes the update's own branch (no buffer); the batch size doubles mid-run.
#[test]
fn mlp_with_plain_sgd_and_a_growing_batch_matches_pytorch() {
    crosscheck("mlp_plain_sgd");
}

#[test]
fn cnn_with_momentum_matches_pytorch() {
    crosscheck("cnn_momentum");
}

/// Two input channels, 10×10 images (the second pool floors 5×5 to 2×2), Nesterov and weight
/// decay.
#[test]
fn cnn_with_odd_sizes_nesterov_and_weight_decay_matches_pytorch() {
    crosscheck("cnn_nesterov_weight_decay_odd");
}

/// Sizes that do not fit are refused with the parameter named, and nothing is written.
#[test]
fn loading_parameters_of_the_wrong_sizes_is_refused() {
    let cfg = ModelConfig {
        kind: ModelKind::Mlp,
        hidden: vec![4],
    };
    let net = model::build(&cfg, &[3], 2, 0).unwrap();
    let before = model::torch_params(&*net).unwrap();
    let w1 = [0.5f32; 12];
    let (b1, w2, b2) = ([0.5f32; 4], [0.5f32; 8], [0.5f32; 2]);
    let e = model::load_torch_params(&*net, &[&w1, &b1, &w2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "3 parameter tensors given, the network has 4"
    );
    let e = model::load_torch_params(&*net, &[&w1, &b1, &w2[..7], &b2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "parameter 2: 7 values given, the network's holds 8"
    );
    assert_eq!(model::torch_params(&*net).unwrap(), before);
}
