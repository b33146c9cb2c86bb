//! Which of scalelab's own vector kernels run on this CPU: AVX-512, AVX2, or none (the gemm crate
//! and portable loops).
//!
//! Detected at run time, once per process (`std` caches the CPU's answers). The AVX-512 kernels
//! also need the `avx512` feature (on by default; it also turns on the gemm crate's AVX-512
//! kernels). A build without it runs exactly what a CPU with AVX2 and FMA but no AVX-512 runs, so
//! that machine's speed can be measured on this one (docs/performance.md, "Machines without
//! AVX-512"):
//!
//! ```text
//! cargo build --release --no-default-features --features no-huge-pages --target-dir target/avx2
//! ```
//!
//! Each kernel gives the same bits at every level it serves (tests compare them), so the level
//! changes speed, not results.

use std::fmt;

/// A level of vector instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with FMA: 16 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2,
    /// Neither: the gemm crate's own choice, and loops the compiler vectorises for the baseline.
    Portable,
}

impl Isa {
    /// The widest level this build runs on this CPU (AVX-512 only with the `avx512` feature).
    pub fn detected() -> Isa {
        if cfg!(feature = "avx512") && Isa::Avx512.runs_here() {
            Isa::Avx512
        } else if Isa::Avx2.runs_here() {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// Whether this CPU runs this level's instructions, whatever the build's features: tests run
    /// every kernel the machine can.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && fma,
                Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && fma,
                Isa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Portable
        }
    }

    /// The level's name, as `scalelab bench` prints it and `runs.kernels` stores it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
            Isa::Portable => "portable",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detected_level_runs_here_and_names_itself() {
        let isa = Isa::detected();
        assert!(isa.runs_here(), "{isa}");
        assert!(Isa::Portable.runs_here());
        // A CPU with AVX-512 and FMA has AVX2 too, and this build picks AVX-512 only with the
        // feature on.
        if Isa::Avx512.runs_here() {
            assert!(Isa::Avx2.runs_here());
            assert_eq!(isa == Isa::Avx512, cfg!(feature = "avx512"));
        }
        assert_eq!(
            [Isa::Avx512, Isa::Avx2, Isa::Portable].map(|i| i.to_string()),
            ["AVX-512", "AVX2", "portable"]
        );
    }
}
