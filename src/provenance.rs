//! Where and by what a run was trained: version, git revision, host, and this process's claim
//! token (which also lets a later process on the same host see that the claimer died).

/// scalelab's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision scalelab was built from, if the build saw one (`-dirty` when the tree had
/// uncommitted changes).
pub fn git_revision() -> Option<&'static str> {
    let rev = env!("SCALELAB_GIT_REVISION");
    (!rev.is_empty()).then_some(rev)
}

/// This machine's host name.
pub fn host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".to_string())
}

/// Compute threads per job (candle's kernels read `RAYON_NUM_THREADS`).
pub fn compute_threads() -> i64 {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The token a process writes into `runs.claimed_by`: `host/pid/start`, where `start` is the
/// process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for
/// the claimer.
pub fn claim_token() -> String {
    let pid = std::process::id();
    format!("{}/{}/{}", host(), pid, process_start(pid).unwrap_or(0))
}

/// Whether the process that wrote `token` is certainly gone: it ran on this host and no process
/// with its pid and start time exists. `false` when unsure (another host, no /proc).
pub fn claimer_is_dead(token: &str) -> bool {
    let mut parts = token.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(host_name)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if host_name != host() || !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    match process_start(pid) {
        None => true,
        Some(s) => s != start,
    }
}

/// Field 22 of /proc/PID/stat: the start time of the process, in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_dead() {
        let me = claim_token();
        assert!(!claimer_is_dead(&me));
        if std::path::Path::new("/proc/self/stat").exists() {
            let pid = std::process::id();
            let fake = format!("{}/{}/{}", host(), pid, 1);
            assert!(claimer_is_dead(&fake), "same pid, other start time");
        }
        assert!(!claimer_is_dead("other-host/1/1"));
        assert!(!claimer_is_dead("garbage"));
    }
}
