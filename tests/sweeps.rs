//! The shipped sweep files parse, validate and say what they claim to.

use std::collections::BTreeSet;

use scalelab::sweep::{load_sweep, parse_sweep};

fn distinct<T: Ord>(it: impl Iterator<Item = T>) -> usize {
    it.collect::<BTreeSet<T>>().len()
}

#[test]
fn quickstart_has_a_batch_grid_per_learning_rate_and_stays_small() {
    let s = load_sweep("sweeps/quickstart.toml".as_ref()).unwrap();
    assert_eq!(s.name, "quickstart");
    assert_eq!(s.cells.len(), 96);
    assert_eq!(distinct(s.cells.iter().map(|c| c.lr.to_bits())), 4);
    assert_eq!(distinct(s.cells.iter().map(|c| c.batch_size)), 8);
    assert_eq!(distinct(s.cells.iter().map(|c| c.seed)), 3);
    // The whole sweep is ~120,000 small-MLP updates: about a minute on 2 cores.
    let updates: u64 = s.cells.iter().map(|c| c.planned_updates()).sum();
    assert_eq!(updates, 120_000);
}

#[test]
fn smith_le_varies_lr_n_and_momentum() {
    let s = load_sweep("sweeps/smith-le.toml".as_ref()).unwrap();
    assert!(distinct(s.cells.iter().map(|c| c.lr.to_bits())) >= 3);
    assert!(distinct(s.cells.iter().map(|c| c.data.train_size)) >= 3);
    assert!(distinct(s.cells.iter().map(|c| c.momentum.to_bits())) >= 2);
    assert!(s.cells.iter().all(|c| c.batch_size <= c.data.train_size));
}

#[test]
fn dont_decay_compares_the_three_schedules_at_matched_factors() {
    let s = load_sweep("sweeps/dont-decay.toml".as_ref()).unwrap();
    let modes: BTreeSet<&str> = s.cells.iter().map(|c| c.schedule.mode()).collect();
    assert!(modes.is_superset(&["decay-lr", "increase-batch", "hybrid"].into()));
    // Same total decay of the noise scale: factor 4 twice in every step schedule; B stays ≪ N.
    for c in &s.cells {
        let last = c.epoch_hyper(c.budget.amount(), 0);
        assert!(
            last.1 <= c.data.train_size / 10,
            "B {} vs N {}",
            last.1,
            c.data.train_size
        );
        let g0 = c.lr / c.batch_size as f64;
        let g1 = last.0 / last.1 as f64;
        if c.schedule.mode() != "constant" {
            assert!(
                (g0 / g1 - 16.0).abs() < 1e-9,
                "{}: ε/B falls {}×",
                c.schedule.label(),
                g0 / g1
            );
        }
    }
    let updates = |mode: &str| {
        s.cells
            .iter()
            .find(|c| c.schedule.mode() == mode)
            .unwrap()
            .planned_updates()
    };
    assert!(updates("increase-batch") < updates("hybrid"));
    assert!(updates("hybrid") < updates("decay-lr"));
}

#[test]
fn smith_le_mnist_needs_its_data_and_parses_with_it() {
    let text = std::fs::read_to_string("sweeps/smith-le-mnist.toml").unwrap();
    let e = parse_sweep("sweeps/smith-le-mnist.toml", &text)
        .unwrap_err()
        .to_string();
    if !std::path::Path::new("data/mnist").is_dir() {
        assert!(e.contains("data_dir") && e.contains("data/mnist"), "{e}");
    }
    // With a (tiny) data set in the MNIST layout in its place, it expands.
    let dir = tempfile::tempdir().unwrap();
    let enc = scalelab::train::data::encode_idx;
    let n = 2000;
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        enc(&[n, 2, 2], &vec![3; n * 4]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        enc(&[n], &vec![1; n]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        enc(&[10_000, 2, 2], &vec![3; 40_000]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        enc(&[10_000], &vec![1; 10_000]),
    )
    .unwrap();
    let text = text.replace(
        "\"data/mnist\"",
        &format!("{:?}", dir.path().to_str().unwrap()),
    );
    let s = parse_sweep("mnist.toml", &text).unwrap();
    assert!(
        s.cells
            .iter()
            .all(|c| c.model.hidden == vec![800] && c.momentum == 0.9)
    );
    assert!(s.cells.iter().all(|c| c.data.fingerprint.is_some()));
}
