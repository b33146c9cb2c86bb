//! Build script: ship new migrations, record the git revision for run provenance, and compute
//! the default teacher data set's first examples, which the binary carries.

// The teacher's own code and the random streams, as the crate compiles them.
#[allow(dead_code)]
#[path = "src/train/rng.rs"]
mod rng;
#[allow(dead_code)]
#[path = "src/train/data/teacher_net.rs"]
mod teacher_net;

/// Writes the default teacher's first `EMBEDDED_ROWS` training and test examples to
/// `OUT_DIR/teacher_default.bin`, in the layout `src/train/data/teacher.rs` reads: per set, the
/// inputs as little-endian f32, then the clean labels, one byte each.
fn embed_default_teacher() {
    use teacher_net::{DEFAULT_TEACHER, EMBEDDED_ROWS, Teacher, draw_inputs};
    println!("cargo:rerun-if-changed=src/train/rng.rs");
    println!("cargo:rerun-if-changed=src/train/data/teacher_net.rs");
    let (d, h, k, seed) = DEFAULT_TEACHER;
    let teacher = Teacher::new(
        d,
        h,
        k,
        seed,
        &mut rng::stream(seed, rng::Stream::DataModel),
    );
    let mut bytes = Vec::new();
    for (rows, purpose) in [
        (EMBEDDED_ROWS.0, rng::Stream::TrainSamples),
        (EMBEDDED_ROWS.1, rng::Stream::TestSamples),
    ] {
        let (xs, _) = draw_inputs(d, k, rows, &mut rng::stream(seed, purpose));
        bytes.extend(xs.iter().flat_map(|&x| (x as f32).to_le_bytes()));
        let labels = teacher.labels(&xs);
        bytes.extend(
            labels
                .iter()
                .map(|&y| u8::try_from(y).expect("fewer than 256 classes")),
        );
    }
    let out = std::path::Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("teacher_default.bin");
    std::fs::write(&out, bytes).expect("OUT_DIR is writable");
}

fn main() {
    embed_default_teacher();
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    // Edited sources change the "-dirty" mark: without these a binary built from modified
    // sources after a clean build kept claiming the clean revision (the build script ran again
    // only when the teacher's code, the migrations or git's refs changed).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let rev = if rev.is_empty() {
        rev
    } else if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    };
    println!("cargo:rustc-env=SCALELAB_GIT_REVISION={rev}");
}
