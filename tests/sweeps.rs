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

/// Regression: a growing batch that passed N was capped at N without a word. The sweep is
/// refused, naming the file, the cell and the schedule.
#[test]
fn a_sweep_whose_batch_grows_beyond_n_is_refused_naming_the_cell() {
    let text = |factor: u32| {
        format!(
            r#"
name = "grow"
[data]
train_size = 1000
test_size = 100
[model]
hidden = [8]
[train]
lr = 0.05
batch_size = [8, 300]
momentum = 0.9
epochs = 8
schedule = {{ kind = "increase-batch", milestones = [0.25, 0.5, 0.75], factor = {factor} }}
"#
        )
    };
    // B = 300 at factor 4: 300 → 1200 at the first milestone (B = 8 reaches 512: fine).
    let e = parse_sweep("grow.toml", &text(4)).unwrap_err().to_string();
    assert!(e.starts_with("grow.toml: cell "), "{e}");
    assert!(e.contains("batch_size=300"), "{e}");
    assert!(
        e.contains("invalid schedule: increase-batch(x4 @ 0.25,0.5,0.75) grows batch_size 300"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // Factor 2: 300 → 600 → 1200, past N at the second milestone.
    let e = parse_sweep("grow.toml", &text(2)).unwrap_err().to_string();
    assert!(
        e.contains("grows batch_size 300 to 1200 at milestone 0.5"),
        "{e}"
    );
}

/// Every shipped sweep that needs no data files still validates under the batch-growth check.
#[test]
fn every_shipped_sweep_without_data_files_validates() {
    for entry in std::fs::read_dir("sweeps").unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("mnist")
        {
            continue; // needs its data directory (its own test above)
        }
        load_sweep(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
