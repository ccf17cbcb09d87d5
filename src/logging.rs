//! Log setup: `tracing` to stderr and into an in-memory ring buffer that the GUI's log pane and
//! the support bundle read.
//!
//! Policy (see STYLE.md): ERROR an operation failed, WARN recovered, INFO rare and
//! operator-relevant, DEBUG per operation. Events carry names and outcomes (account, endpoint,
//! step, result, duration), never token, code or secret values. Dependencies that could log
//! request details (HTTP client, TLS) are held at WARN whatever the filter says.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How many lines the in-memory log keeps.
pub const LOG_BUFFER_LINES: usize = 2000;

/// Dependencies kept at WARN: they know about request bodies and headers.
const QUIET_DEPENDENCIES: &str = "ureq=warn,ureq_proto=warn,rustls=warn,tiny_http=warn,\
                                  lettre=warn,imap=warn";

/// One captured log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub at: OffsetDateTime,
    pub level: Level,
    pub target: String,
    pub text: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = self.at.time();
        write!(
            f,
            "{:02}:{:02}:{:02} {:5} {}",
            time.hour(),
            time.minute(),
            time.second(),
            self.level,
            self.text
        )
    }
}

/// A bounded, shared buffer of recent log lines.
#[derive(Clone, Debug, Default)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
}

impl LogBuffer {
    /// The process-wide buffer that [`init`] feeds.
    pub fn global() -> LogBuffer {
        static GLOBAL: OnceLock<LogBuffer> = OnceLock::new();
        GLOBAL.get_or_init(LogBuffer::default).clone()
    }

    /// Adds one line, dropping the oldest when full.
    pub fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() == LOG_BUFFER_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// A copy of the lines currently kept, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.iter().cloned().collect()
    }

    /// Number of lines currently kept (cheap; lets the GUI redraw only on change).
    pub fn len(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or_default()
    }

    /// True when nothing has been logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where log lines go besides the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Human-readable lines on stderr.
    Stderr,
    /// Only the in-memory buffer (headless JSON output keeps stderr clean).
    Quiet,
}

/// Installs the global subscriber once; later calls do nothing. `RUST_LOG` overrides the
/// default `info` level for mailgrant's own targets.
pub fn init(console: Console) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "mailgrant=info".to_owned());
        let filter = EnvFilter::new(format!("{wanted},{QUIET_DEPENDENCIES}"));
        let buffer_layer = BufferLayer { buffer: LogBuffer::global() };
        let stderr_layer = (console == Console::Stderr).then(|| {
            // Colour only on a terminal: a file or the journal gets plain text.
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(colour)
        });
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(buffer_layer)
            .with(stderr_layer)
            .try_init();
        if installed.is_err() {
            // A test harness or embedding program installed its own subscriber first; the
            // buffer then stays empty, which only affects the log pane.
            LogBuffer::global().push(LogLine {
                at: OffsetDateTime::now_utc(),
                level: Level::WARN,
                target: "mailgrant::logging".to_owned(),
                text: "another log subscriber was already installed".to_owned(),
            });
        }
    });
}

/// Feeds formatted events into a [`LogBuffer`].
struct BufferLayer {
    buffer: LogBuffer,
}

impl<S: Subscriber> Layer<S> for BufferLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        self.buffer.push(LogLine {
            at: OffsetDateTime::now_utc(),
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            text: visitor.text,
        });
    }
}

/// Formats an event as `message key=value ...`.
#[derive(Default)]
struct LineVisitor {
    text: String,
}

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let mut message = format!("{value:?}");
            if !self.text.is_empty() {
                message.push(' ');
                message.push_str(&self.text);
            }
            self.text = message;
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={:?}", field.name(), value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={}", field.name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_keeps_the_newest_lines_only() {
        let buffer = LogBuffer::default();
        for n in 0..LOG_BUFFER_LINES + 5 {
            buffer.push(LogLine {
                at: OffsetDateTime::UNIX_EPOCH,
                level: Level::INFO,
                target: "t".to_owned(),
                text: n.to_string(),
            });
        }
        let lines = buffer.snapshot();
        assert_eq!(lines.len(), LOG_BUFFER_LINES);
        assert_eq!(lines[0].text, "5");
        assert_eq!(lines[0].to_string(), "00:00:00 INFO  5");
    }

    #[test]
    fn events_are_formatted_with_their_fields() {
        let buffer = LogBuffer::default();
        let subscriber =
            tracing_subscriber::registry().with(BufferLayer { buffer: buffer.clone() });
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(step = "smtp", duration_ms = 12, "check passed");
        });
        let lines = buffer.snapshot();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "check passed step=smtp duration_ms=12");
    }
}
