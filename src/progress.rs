//! The sweep progress bar (indicatif): done / total, running, diverged, failed, runs per
//! minute and ETA. When stderr is not a terminal it prints a status line every 30 seconds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of a set of runs.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    started_with: u64,
    running: AtomicU64,
    diverged: AtomicU64,
    failed: AtomicU64,
    start: Instant,
    last_line: Mutex<Instant>,
    enabled: bool,
}

impl Progress {
    /// A progress display for `total` runs of which `done` are already finished.
    pub fn new(total: u64, done: u64, enabled: bool) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (enabled && tty).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} runs  {msg}  [{elapsed_precise} elapsed, ETA {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(done);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            total,
            done: AtomicU64::new(done),
            started_with: done,
            running: AtomicU64::new(0),
            diverged: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            start: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            enabled,
        }
    }

    fn message(&self) -> String {
        let finished = self.done.load(Ordering::Relaxed) - self.started_with;
        let minutes = self.start.elapsed().as_secs_f64() / 60.0;
        let rate = if minutes > 0.0 {
            finished as f64 / minutes
        } else {
            0.0
        };
        format!(
            "running {} · diverged {} · failed {} · {rate:.1} runs/min",
            self.running.load(Ordering::Relaxed),
            self.diverged.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn refresh(&self) {
        let msg = self.message();
        if let Some(bar) = &self.bar {
            bar.set_position(self.done.load(Ordering::Relaxed));
            bar.set_message(msg);
        } else if self.enabled {
            let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= Duration::from_secs(30) {
                *last = Instant::now();
                eprintln!(
                    "{}/{} runs  {msg}",
                    self.done.load(Ordering::Relaxed),
                    self.total
                );
            }
        }
    }

    /// How many runs are being trained now.
    pub fn set_running(&self, n: u64) {
        self.running.store(n, Ordering::Relaxed);
        self.refresh();
    }

    /// One run ended.
    pub fn finished(&self, diverged: bool, failed: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if diverged {
            self.diverged.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.refresh();
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
