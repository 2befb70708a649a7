//! Download progress: a bar on a terminal, log lines on a server.

use std::time::{Duration, Instant};

/// How a download reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar on stderr (use when stderr is a terminal).
    Bar,
    /// `info` log lines: one per file, and the bytes so far every few seconds.
    Log,
}

impl Progress {
    /// A bar when stderr is a terminal, else log lines.
    pub fn for_stderr() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Log
        }
    }
}

const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts one model's downloaded bytes and reports them.
pub struct Tracker {
    repo: String,
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    logged: Instant,
}

impl Tracker {
    pub fn new(mode: Progress, repo: String) -> Self {
        let bar = (mode == Progress::Bar).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(repo.clone());
            bar
        });
        let now = Instant::now();
        Self {
            repo,
            bar,
            total: 0,
            done: 0,
            started: now,
            logged: now,
        }
    }

    /// A file of `size` bytes is about to be downloaded.
    pub fn file(&mut self, file: &str, size: u64) {
        self.total += size;
        match &self.bar {
            Some(bar) => bar.set_length(self.total),
            None => tracing::info!(repo = %self.repo, file, bytes = size, "downloading"),
        }
    }

    /// `bytes` already counted must be fetched again (a server that ignored Range).
    pub fn rewind(&mut self, bytes: u64) {
        self.total += bytes;
        if let Some(bar) = &self.bar {
            bar.set_length(self.total);
        }
    }

    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None if self.logged.elapsed() >= LOG_EVERY => {
                self.logged = Instant::now();
                tracing::info!(repo = %self.repo, done = self.done, total = self.total, "download progress");
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.total > 0 {
            let secs = self.started.elapsed().as_secs_f64();
            tracing::info!(repo = %self.repo, bytes = self.done, secs = format!("{secs:.1}"), "downloaded");
        }
    }
}
