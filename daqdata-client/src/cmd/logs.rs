//! Logging: to stderr, or, under a live terminal view, into the last lines
//! shown at the view's foot (stderr would tear the picture apart).

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;

/// Log lines kept for a live view; the newest last.
#[derive(Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<String>>>);

/// Lines kept for the view's foot.
const KEEP: usize = 200;

impl LogLines {
    /// The newest `n` lines.
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    fn push(&self, text: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
        let excess = lines.len().saturating_sub(KEEP);
        lines.drain(..excess);
    }
}

impl io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts logging at `level` (RUST_LOG overrides); `capture` keeps lines
/// for a live view instead of writing stderr.
pub fn init(level: &str, capture: bool) -> LogLines {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,tower=warn,hyper=warn")));
    let lines = LogLines::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if capture {
        let sink = lines.clone();
        builder
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .init();
    } else {
        // Colours for a person at a terminal, never escape codes in a file.
        use std::io::IsTerminal as _;
        builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .init();
    }
    lines
}
