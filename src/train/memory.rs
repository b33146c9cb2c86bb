//! How much memory this process may have, so that a run too large for it is refused with an
//! error that names the field, instead of the abort an allocation failure is ("memory
//! allocation of N bytes failed"), which would end every run of the process with it.
//!
//! The bound is the least of the machine's memory and swap, the process's address-space limit
//! (`ulimit -v`) and its control group's memory limit (cgroup v2 `memory.max` plus
//! `memory.swap.max`, as containers set them). A reservation is no test: with overcommit (and
//! mimalloc reserving large blocks) a 384 GB reservation succeeded here, and the process was
//! killed later, when the memory was touched.

#[cfg(test)]
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The most bytes this process can hold, where the system says (`None` elsewhere).
///
/// Asked of the system once per process and kept: every run checks its network against it
/// before its clock starts, and asking took about 60 µs a run on the quickstart (a `sysinfo`,
/// a `getrlimit` and two or three files read under `/proc` and `/sys`), 6 ms of the two job
/// slots' time outside training over its 96 runs (docs/performance.md). None of these limits
/// moves while a sweep runs, short of an administrator resizing the control group.
pub fn available() -> Option<u64> {
    static AVAILABLE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(ask_the_system)
}

/// How many times [`ask_the_system`] ran (kept by test builds only).
#[cfg(test)]
static ASKED: AtomicUsize = AtomicUsize::new(0);

/// [`available`], asked of the system now.
fn ask_the_system() -> Option<u64> {
    #[cfg(test)]
    ASKED.fetch_add(1, Ordering::SeqCst);
    #[cfg(target_os = "linux")]
    {
        let machine = machine();
        [machine, address_space_limit(), cgroup_limit(machine)]
            .into_iter()
            .flatten()
            .min()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Whether `bytes` fit in what this process can have ([`available`]); where the system does not
/// say, a reservation is the test.
pub fn fits(bytes: u128) -> bool {
    match available() {
        Some(limit) => bytes <= u128::from(limit),
        None => usize::try_from(bytes).is_ok_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok()),
    }
}

/// Refuses `bytes` (what a run of `field` = the value in `what` needs) when this process cannot
/// hold them ([`fits`]), with one line that names the field, the size and the limit.
pub fn check(field: &str, what: &str, bytes: u128) -> Result<()> {
    if fits(bytes) {
        return Ok(());
    }
    let limit = match available() {
        Some(l) => format!(" ({})", gb(u128::from(l))),
        None => String::new(),
    };
    Err(Error::config(
        field,
        format!(
            "{what} need {}, more than this process can have{limit}",
            gb(bytes)
        ),
    ))
}

/// `bytes` in GB, for messages.
pub fn gb(bytes: u128) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The machine's memory and swap.
#[cfg(target_os = "linux")]
fn machine() -> Option<u64> {
    // SAFETY: `sysinfo` only writes into the struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    let bytes = (info.totalram as u128 + info.totalswap as u128) * info.mem_unit as u128;
    Some(u64::try_from(bytes).unwrap_or(u64::MAX))
}

/// The address-space limit (`ulimit -v`), when there is one.
#[cfg(target_os = "linux")]
fn address_space_limit() -> Option<u64> {
    // SAFETY: `getrlimit` only writes into the struct it is given.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

/// The memory limit of this process's control group (cgroup v2), swap included, when there is
/// one. An unlimited swap counts as the machine's swap (within `machine`).
#[cfg(target_os = "linux")]
fn cgroup_limit(machine: Option<u64>) -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = groups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let memory: u64 = read("memory.max")?.trim().parse().ok()?;
    let swap = match read("memory.swap.max").map(|s| s.trim().parse::<u64>()) {
        Some(Ok(swap)) => swap,
        _ => machine.unwrap_or(u64::MAX),
    };
    Some(memory.saturating_add(swap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_beyond_any_machine_is_refused_naming_the_field() {
        let e = check("hidden", "a network of 1e15 parameters", 1 << 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden") && e.contains("GB"), "{e}");
        assert!(check("hidden", "a small network", 1 << 20).is_ok());
        #[cfg(target_os = "linux")]
        assert!(available().is_some_and(|b| b > 1 << 20));
    }

    #[test]
    fn the_bound_is_the_systems_asked_once() {
        let first = available();
        let asked = ASKED.load(Ordering::SeqCst);
        assert!(asked >= 1);
        for _ in 0..3 {
            assert_eq!(available(), first);
        }
        assert_eq!(
            ASKED.load(Ordering::SeqCst),
            asked,
            "asked the system again"
        );
        // What is kept is what the system says (nothing here resizes the limits).
        assert_eq!(ask_the_system(), first);
    }
}
