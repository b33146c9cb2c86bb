//! The `scalelab` command: parse, run, print the error on one line, exit with a status.

/// mimalloc: several training threads allocate and free tensors at every step; glibc's malloc
/// made two concurrent runs in one process 14% slower each than one run alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    scalelab::cli::main()
}
