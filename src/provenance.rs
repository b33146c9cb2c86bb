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

/// The processor this process runs on, read once: on x86-64 the brand string the processor
/// reports with its family, model and stepping (`Intel(R) Xeon(R) Processor (family 6, model
/// 207, stepping 2)`: a virtual machine often hides the brand, the numbers still name the
/// microarchitecture); elsewhere the model line of `/proc/cpuinfo`, or the codes that name the
/// core where it has no such line (64-bit ARM servers). `None` when neither says.
///
/// Stored with each claim (`runs.cpu`): the same configuration and seed give the same numbers on
/// one machine and build, and this says which processor a stored number came from
/// (docs/trainer.md, "Determinism").
pub fn cpu_model() -> Option<&'static str> {
    static MODEL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if let Some(model) = x86_model() {
                return Some(model);
            }
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| model_from_cpuinfo(&text))
        })
        .as_deref()
}

/// The brand string (CPUID leaves 0x8000_0002 to 0x8000_0004) and the family, model and
/// stepping (leaf 1, with the extended fields as the vendors define them).
#[cfg(target_arch = "x86_64")]
fn x86_model() -> Option<String> {
    // A safe function in recent Rust, an unsafe one before (this crate's rust-version).
    // SAFETY: every x86-64 processor has CPUID; leaves it does not know return zeros or the
    // highest basic leaf's values, which the checks below read as no brand.
    #[allow(unused_unsafe)]
    let cpuid = |leaf: u32| unsafe { std::arch::x86_64::__cpuid(leaf) };
    if cpuid(0x8000_0000).eax < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        let r = cpuid(leaf);
        for word in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    let brand = one_line(&String::from_utf8_lossy(&bytes))?;
    let sig = cpuid(1).eax;
    let base_family = (sig >> 8) & 0xf;
    let family = if base_family == 0xf {
        base_family + ((sig >> 20) & 0xff)
    } else {
        base_family
    };
    let model = if base_family == 0x6 || base_family == 0xf {
        ((sig >> 12) & 0xf0) | ((sig >> 4) & 0xf)
    } else {
        (sig >> 4) & 0xf
    };
    let stepping = sig & 0xf;
    Some(format!(
        "{brand} (family {family}, model {model}, stepping {stepping})"
    ))
}

/// The processor's name in `/proc/cpuinfo` text: the first `model name` line (x86, most
/// others), else `Hardware`, `Processor` or `cpu model` (some ARM and MIPS kernels), else, as
/// 64-bit ARM servers' kernels write nothing else, the first core's identification codes
/// (`ARM implementer 0x41 part 0xd0c variant 0x3 revision 1`: implementer 0x41 is Arm, part
/// 0xd0c the Neoverse N1).
fn model_from_cpuinfo(text: &str) -> Option<String> {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| one_line(v)).flatten()
        })
    };
    ["model name", "Hardware", "Processor", "cpu model"]
        .iter()
        .find_map(|key| field(key))
        .or_else(|| {
            let implementer = field("CPU implementer")?;
            let part = field("CPU part")?;
            let mut name = format!("ARM implementer {implementer} part {part}");
            for (key, label) in [("CPU variant", "variant"), ("CPU revision", "revision")] {
                if let Some(value) = field(key) {
                    name.push_str(&format!(" {label} {value}"));
                }
            }
            Some(name)
        })
}

/// `text` without NULs, on one line with single spaces; `None` when nothing is left.
fn one_line(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c == '\0' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
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
    fn the_processor_is_named_from_cpuid_or_cpuinfo() {
        // x86 processors name themselves; the numbers are CPUID's, as /proc/cpuinfo shows them.
        #[cfg(target_arch = "x86_64")]
        {
            let model = cpu_model().expect("x86-64 has a brand string");
            assert!(model.contains(", stepping "), "{model}");
            assert!(!model.contains("  ") && !model.contains('\0'), "{model:?}");
            if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
                let field = |key: &str| {
                    info.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == key).then(|| v.trim().to_string())
                    })
                };
                let (family, number) = (field("cpu family").unwrap(), field("model").unwrap());
                assert!(
                    model.contains(&format!("(family {family}, model {number},")),
                    "{model}"
                );
                assert!(
                    model.starts_with(&model_from_cpuinfo(&info).unwrap()),
                    "{model}"
                );
            }
            // Read once: the same text every time.
            assert!(std::ptr::eq(model, cpu_model().unwrap()));
        }
        // Other systems' /proc/cpuinfo, as their kernels write it.
        let arm =
            "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\n\nHardware\t: BCM2835\n";
        assert_eq!(model_from_cpuinfo(arm).as_deref(), Some("BCM2835"));
        // A 64-bit ARM server (here a Neoverse N1): no name, only the codes, read from the
        // first core's block.
        let n1 = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n\
                  CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n\
                  CPU part\t: 0xd0c\nCPU revision\t: 1\n\nprocessor\t: 1\n\
                  CPU implementer\t: 0x51\nCPU part\t: 0x800\n";
        assert_eq!(
            model_from_cpuinfo(n1).as_deref(),
            Some("ARM implementer 0x41 part 0xd0c variant 0x3 revision 1")
        );
        // Without a part number the codes name nothing.
        assert_eq!(model_from_cpuinfo("CPU implementer\t: 0x41\n"), None);
        let x86 = "processor\t: 0\nmodel\t\t: 207\nmodel name\t:  AMD   EPYC 7B13  \n";
        assert_eq!(model_from_cpuinfo(x86).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(
            model_from_cpuinfo("processor\t: 0\nmodel name\t:   \n"),
            None
        );
        assert_eq!(model_from_cpuinfo(""), None);
    }

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
