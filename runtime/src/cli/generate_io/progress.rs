//! Progress of a `warpforge generate` run on stderr: a bar on a terminal, a plain line every
//! few seconds otherwise (logs, CI), nothing with `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the plain reporter prints a line.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// Counts finished requests and generated tokens and shows them.
pub struct Progress {
    view: View,
    total: usize,
    finished: usize,
    tokens: usize,
    started: Instant,
}

enum View {
    Hidden,
    Bar(ProgressBar),
    Lines {
        sink: Box<dyn Write + Send>,
        every: Duration,
        last: Instant,
    },
}

impl Progress {
    /// The reporter `generate` uses for `total` requests: hidden when `quiet`, a bar when
    /// stderr is a terminal, plain lines on stderr every [`PLAIN_INTERVAL`] otherwise.
    pub fn new(total: usize, quiet: bool) -> Self {
        if quiet {
            Progress::with_view(total, View::Hidden)
        } else if std::io::stderr().is_terminal() {
            Progress::with_view(total, View::Bar(bar(total)))
        } else {
            Progress::lines(total, PLAIN_INTERVAL, Box::new(std::io::stderr()))
        }
    }

    /// Plain lines to `sink`, at most one per `every` (plus one at the end).
    pub fn lines(total: usize, every: Duration, sink: Box<dyn Write + Send>) -> Self {
        let last = Instant::now();
        Progress::with_view(total, View::Lines { sink, every, last })
    }

    fn with_view(total: usize, view: View) -> Self {
        Progress {
            view,
            total,
            finished: 0,
            tokens: 0,
            started: Instant::now(),
        }
    }

    /// Sets the counts so far (totals, not increments): requests finished, tokens generated.
    pub fn update(&mut self, finished_requests: usize, generated_tokens: usize) {
        self.finished = finished_requests;
        self.tokens = generated_tokens;
        let message = self.rate_message();
        match &mut self.view {
            View::Hidden => {}
            View::Bar(bar) => {
                bar.set_position(finished_requests as u64);
                bar.set_message(message);
            }
            View::Lines { every, last, .. } => {
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    self.print_line();
                }
            }
        }
    }

    /// Final state: clears the bar, or prints the last plain line.
    pub fn finish(&mut self) {
        match &self.view {
            View::Hidden => {}
            View::Bar(bar) => bar.finish_and_clear(),
            View::Lines { .. } => self.print_line(),
        }
    }

    fn rate_message(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.tokens as f64 / secs
        } else {
            0.0
        };
        format!("{} tokens, {rate:.1} tok/s", self.tokens)
    }

    fn print_line(&mut self) {
        let line = format!(
            "generate: {}/{} requests, {}, {:.1} s",
            self.finished,
            self.total,
            self.rate_message(),
            self.started.elapsed().as_secs_f64()
        );
        if let View::Lines { sink, .. } = &mut self.view {
            // Progress is best effort: a closed stderr must not stop generation.
            let _ = writeln!(sink, "{line}");
        }
    }
}

fn bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} requests, {msg}, ETA {eta}",
    );
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
