//! The command line: argument parsing (clap), the tokio runtime, Ctrl-C, and the one place where
//! errors become one-line messages and exit codes.

/// `println!` that returns the write's error instead of panicking: a full disk
/// (`scalelab fit … > /dev/full`) ends the command with a one-line error, not a stack trace.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| std::io::Error::new(e.kind(), format!("standard output: {e}")))
    }};
}

mod analysis;
mod bench;
mod query;
mod run;
mod train;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};

pub use train::CellArgs;

/// scalelab: sweeps of learning rate and batch size, stored in SQLite, fitted and reported.
#[derive(Debug, Parser)]
#[command(name = "scalelab", version, about, allow_negative_numbers = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (design.md keeps these names).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enqueue a sweep's cells, train what is missing, then fit and report.
    Run(run::RunArgs),
    /// Inspect sweeps without training.
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Train pending runs of any sweep in the database, then exit (status 1 when runs it
    /// trained ended failed).
    Worker(run::WorkerArgs),
    /// Counts per state, running runs, failures.
    Status(run::StatusArgs),
    /// Fit the scaling rules to a sweep's runs and store the result.
    Fit(analysis::FitArgs),
    /// Fit a sweep and render its PNG figures with an index.html and index.md.
    Report(analysis::ReportArgs),
    /// One row per run: configuration, state, final and best metrics.
    Runs(query::RunsArgs),
    /// The per-epoch series of one run.
    Metrics(query::MetricsArgs),
    /// Any read-only SQL query (writes are refused).
    Sql(query::SqlArgs),
    /// The sweeps in the database with their runs per state.
    Sweeps(query::SweepsArgs),
    /// Write a sweep's runs (and optionally every epoch) as CSV or JSON for pandas & co.
    Export(query::ExportArgs),
    /// Training throughput of the reference workload, and the machine's matmul peak.
    Bench(bench::BenchArgs),
    /// Train one run and print one JSON object per epoch, then a summary line.
    #[command(allow_negative_numbers = true)]
    Train(CellArgs),
}

/// `scalelab sweep …`.
#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Dry run: the sweep's axes and cells, and which are done or pending.
    Show(run::ShowArgs),
}

/// The database option shared by the commands.
#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The results database.
    #[arg(long, env = "SCALELAB_DB", default_value = "scalelab.db", value_parser = db_path)]
    pub db: std::path::PathBuf,
}

/// `--db`: a file path. SQLite reads `:memory:` as a database that vanishes at exit (and it
/// left an empty file of that name behind).
fn db_path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Err("an empty path".into());
    }
    if s == ":memory:" || s.starts_with("file:") {
        return Err(format!(
            "{s} is not a file path: the results must outlive the process (give a file such as \
             scalelab.db)"
        ));
    }
    Ok(s.into())
}

/// An aligned text table with a header rule, for terminals: cells of text (an axis's values,
/// an error) wrap to keep it within 120 columns.
pub fn table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    aligned(headers, rows, comfy_table::ContentArrangement::Dynamic)
}

/// [`table`] for stored values (`runs`, `metrics`, `sql`): never wrapped, so that no number is
/// split across lines; a table wider than the terminal runs past its edge (`less -S` scrolls
/// it, `--format csv` gives the values alone).
pub fn data_table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    aligned(headers, rows, comfy_table::ContentArrangement::Disabled)
}

fn aligned<S: AsRef<str>>(
    headers: &[&str],
    rows: &[Vec<S>],
    arrangement: comfy_table::ContentArrangement,
) -> String {
    use comfy_table::{LineStyle, Table, TableStyle};
    const STYLE: TableStyle =
        TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));
    let mut t = Table::new();
    t.load_style(STYLE)
        .set_content_arrangement(arrangement)
        .set_width(120)
        .set_header(headers.iter().map(|h| visible(h)));
    for r in rows {
        t.add_row(r.iter().map(|c| visible(c.as_ref())));
    }
    t.to_string()
}

/// `text` with its control characters written as escapes (`\n`, `\t`, `\x1b`): a stored
/// string that held a terminal's escape sequences recoloured or cleared the screen when
/// printed in a table, and a newline broke its row. CSV and JSON keep the text as stored.
fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Opens (creating if needed) the database at `path`, runs `body` on it, then closes it
/// whatever `body` returned: its log is folded into the file and removed, on an error as on
/// success (the process ends right after, without dropping anything).
async fn with_store<T>(
    path: &std::path::Path,
    body: impl AsyncFnOnce(&crate::db::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::db::Store::open(path).await?;
    let result = body(&store).await;
    store.close().await;
    result
}

/// [`with_store`] for `fit` and `report`, which store their fit: a database that cannot be
/// opened for writing (a shared results file in a directory its readers may not write) is
/// opened read-only instead; the fit is then not stored ([`warn_not_stored`]).
async fn with_store_or_read_only<T>(
    path: &std::path::Path,
    body: impl AsyncFnOnce(&crate::db::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = match crate::db::Store::open(path).await {
        Ok(store) => store,
        Err(e) if crate::db::is_read_only_at(&e, path) => {
            crate::db::Store::open_read_only(path).await?
        }
        Err(e) => return Err(e.into()),
    };
    let result = body(&store).await;
    store.close().await;
    result
}

/// The one line `fit` and `report` print on a database they may only read.
fn warn_not_stored(path: &std::path::Path) {
    eprintln!(
        "warning: {}: the fit is computed but not stored in its `fits` table",
        crate::db::read_only_message(path)
    );
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Parses the command line, runs the command, and ends the process with its exit status (see
/// [`exit_now`]).
pub fn main() -> ! {
    exit_now(status())
}

/// Ends the process with `code` once standard output and error are flushed.
///
/// Without the C library's exit handlers (`_exit`): the commands have written and closed their
/// files and closed their database by then (on an error too: see `with_store`), and the handlers'
/// only work was mimalloc returning the heap's pages to the kernel (`mi_collect` at exit, a
/// `madvise` per segment) and each runtime thread freeing its own heap, a few milliseconds at
/// the end of every command. A database left open (a process killed, or a read-only command)
/// keeps its committed rows in its write-ahead log: nothing is lost, the next writer folds it
/// in. Under a coverage build (`LLVM_PROFILE_FILE` set, as `cargo llvm-cov` does), whose
/// counters are written by an exit handler, the process exits normally.
pub fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(unix)]
    if std::env::var_os("LLVM_PROFILE_FILE").is_none() {
        // SAFETY: `_exit` only ends the process; nothing of this process is used after it.
        unsafe { libc::_exit(code.into()) }
    }
    std::process::exit(code.into())
}

/// Turns transparent huge pages off for this process (the default feature `no-huge-pages`);
/// returns whether the kernel took it (Linux only; elsewhere nothing is done).
///
/// With huge pages, the first touch of any 2 MiB of the allocator's memory faults in and zeroes
/// the whole 2 MiB. On a virtual machine that hands freed memory back to its host (free page
/// reporting, as on this project's machines), such a fault costs 4–5 ms a few seconds after the
/// memory was last used, against 0.3 ms when it is reused at once: a quickstart sweep touched
/// about 40 of them across its threads (database, data set, runs), and every command paid two
/// before `main`. mimalloc is built without huge pages (`no_thp`), which is all it takes where
/// the system's setting is `madvise` (as on this project's machines); where it is `always`, this
/// call opts the process out from here on (what was mapped before `main` may still be huge).
/// Huge pages are worth 5–11% of a long run's step at best (fewer TLB misses); PyTorch's
/// allocator does not ask for them either.
#[cfg(feature = "no-huge-pages")]
fn no_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map; the kernel
        // reads its arguments as unsigned longs (the flag, then three zeros it requires).
        let (on, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, zero, zero, zero) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The first negative number on the command line that follows a `--flag` (not `--flag=…`),
/// with that flag: what clap took for an unknown option.
fn negative_after_flag(args: impl IntoIterator<Item = String>) -> Option<(String, String)> {
    let args: Vec<String> = args.into_iter().collect();
    args.windows(2).find_map(|w| {
        let (flag, value) = (&w[0], &w[1]);
        let negative = value.starts_with('-') && value[1..].parse::<f64>().is_ok();
        (negative && flag.starts_with("--") && !flag.contains('='))
            .then(|| (flag.clone(), value.clone()))
    })
}

/// clap's error in one line: its first line, with the indented list that follows it when that
/// line ends in a colon ("the following required arguments were not provided: --out <OUT>").
fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let mut first = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .to_string();
    if first.ends_with(':') {
        let listed: Vec<&str> = lines
            .take_while(|l| l.starts_with(' '))
            .map(str::trim)
            .collect();
        if !listed.is_empty() {
            first = format!("{first} {}", listed.join(", "));
        }
    }
    first
}

/// Parses the command line and runs the command; returns its exit status.
fn status() -> u8 {
    #[cfg(feature = "no-huge-pages")]
    no_huge_pages();
    // Die quietly on a closed pipe (`scalelab runs | head`), as Unix tools do.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                let _ = e.print();
                return if e.use_stderr() { 2 } else { 0 };
            }
            // One line, as every other error: clap's first line names the flag and the value.
            let text = e.render().to_string();
            let first = first_line(&text);
            let first = first.as_str();
            // An empty SCALELAB_DB reads to clap as a `--db` given without a value.
            if first.contains("'--db")
                && std::env::var_os("SCALELAB_DB").is_some_and(|v| v.is_empty())
            {
                eprintln!(
                    "error: SCALELAB_DB is set but empty: give it a database path, or unset it"
                );
                return 2;
            }
            // A negative number after a flag that takes a count reads to clap as an unknown
            // option ("unexpected argument '-1' found"), without the flag's name.
            if e.kind() == ErrorKind::UnknownArgument
                && let Some((flag, value)) = negative_after_flag(std::env::args())
                && first.contains(&format!("'{value}'"))
            {
                eprintln!("error: invalid value '{value}' for '{flag}': must not be negative");
                return 2;
            }
            eprintln!("{first} (see --help)");
            return 2;
        }
    };
    // One compute thread per job: candle's kernels read this before every matmul. Set here,
    // before the runtime or any other thread exists.
    if let Command::Bench(b) = &cli.command {
        crate::train::set_compute_threads(b.threads);
    } else if let Some(given) = std::env::var_os("RAYON_NUM_THREADS") {
        // Honoured as given, and recorded with each run (`runs.threads`): a value the kernels
        // would not use as such (not a number, 0 for "all cores") or one that only queues for
        // the cores would be recorded wrongly, or start thousands of threads. Checked where
        // runs train; the other commands compute nothing with it.
        let trains = match &cli.command {
            Command::Run(r) => !r.enqueue_only,
            Command::Worker(_) | Command::Train(_) => true,
            _ => false,
        };
        let cores = crate::scheduler::default_jobs();
        let n = given.to_str().and_then(|s| s.parse::<usize>().ok());
        if trains && !n.is_some_and(|n| (1..=4 * cores).contains(&n)) {
            eprintln!(
                "error: RAYON_NUM_THREADS={}: compute threads per job must be a whole number \
                 from 1 to 4 × the {cores} cores ({}); unset it for one",
                given.to_string_lossy(),
                4 * cores
            );
            return 2;
        }
    } else {
        crate::train::set_compute_threads(1);
    }
    // The async side (the scheduler, the writer, heartbeats, sqlx's futures) is small and runs on
    // this thread; training runs on the blocking pool's threads. With two runtime workers besides,
    // every hand-over between tasks woke another thread, and with as many jobs as cores that CPU
    // came out of training (docs/performance.md, "One thread for the async side").
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(run(cli));
    // Not dropped: the process ends as soon as this returns (`exit_now`), and dropping the
    // runtime would only wait for its idle threads to free their heaps and exit.
    std::mem::forget(runtime);
    match result {
        Ok(code) if code == ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(e) => {
            if matches!(
                e.downcast_ref::<crate::Error>(),
                Some(crate::Error::Interrupted)
            ) {
                eprintln!("interrupted");
                return EXIT_INTERRUPTED;
            }
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

/// The error chain on one line, without repeating a cause its context already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Sweep(SweepCommand::Show(args)) => run::show(args).await,
        Command::Worker(args) => run::worker(args).await,
        Command::Status(args) => run::status(args).await,
        Command::Fit(args) => analysis::fit(args).await,
        Command::Report(args) => analysis::report(args).await,
        Command::Runs(args) => query::runs(args).await,
        Command::Metrics(args) => query::metrics(args).await,
        Command::Sql(args) => query::sql(args).await,
        Command::Sweeps(args) => query::sweeps(args).await,
        Command::Export(args) => query::export(args).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::Train(args) => train::run(args).await,
    }
}

/// A stop flag raised by Ctrl-C (SIGINT) or SIGTERM. Work checks it between steps.
///
/// The handlers are in place when this returns and set the flag from the signal handler
/// itself, so a signal is seen even while the async thread is busy (validating or enqueueing a
/// large sweep) and even where the process started with SIGINT ignored (a background job of a
/// shell script), which a handler installed later would have missed.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Fails only for signals that cannot be caught; were it to fail here, the default
        // action would end the process, as it did before any handler.
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    #[cfg(not(unix))]
    {
        let flag = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    stop
}

/// Linux only, and only with the default feature: nothing else is tested here.
#[cfg(all(test, target_os = "linux", feature = "no-huge-pages"))]
mod tests {
    use super::*;

    /// The kernel's view of this process: `THP_enabled` in `/proc/self/status` (Linux ≥ 5.0).
    fn thp_enabled() -> Option<bool> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        Some(line.split_whitespace().nth(1)? == "1")
    }

    #[test]
    fn huge_pages_go_off_for_the_process() {
        // SAFETY: as in `no_huge_pages`: only a flag of this process, unsigned long arguments.
        let zero: libc::c_ulong = 0;
        let reset = || unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, zero, zero, zero, zero) };
        assert_eq!(reset(), 0);
        if thp_enabled() != Some(true) {
            return; // a kernel built without transparent huge pages: nothing to turn off
        }
        assert!(no_huge_pages());
        assert_eq!(thp_enabled(), Some(false));
        assert_eq!(reset(), 0);
        assert_eq!(thp_enabled(), Some(true));
    }
}
