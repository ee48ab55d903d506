//! Logs (tracing, text or JSON) and Prometheus metrics (names prefixed `portcullis_`).
//!
//! Metrics live in a [`Metrics`] value owned by the server, not in a process-global registry,
//! so two servers in one test process never share counters.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `portcullis=debug`.
    #[arg(long, global = true, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log_level: String,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid --log-level {0:?}: {1}; use e.g. `info` or `portcullis=debug`")]
    Filter(String, String),
}

/// Install the global tracing subscriber (logs go to stderr).
pub fn init(args: &LogArgs) -> Result<(), TelemetryError> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = subscriber(args, std::io::stderr, ansi)?;
    // A second init (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// The subscriber `init` installs, writing to `writer`.
///
/// JSON: one object per line, the event's fields at the top level; an event inside a span
/// (e.g. a registry retry during a review) also has `span` with that span's fields (`name` is
/// the span's name). Span lists are left out: they repeated `span`.
pub fn subscriber<W>(
    args: &LogArgs,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let LogArgs { log_format, log_level } = args;
    let filter = EnvFilter::try_new(log_level).map_err(|e| TelemetryError::Filter(log_level.clone(), e.to_string()))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    Ok(match log_format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => {
            Box::new(builder.json().flatten_event(true).with_current_span(true).with_span_list(false).finish())
        }
    })
}

mod exposition;
mod metrics;

pub use exposition::{Format, negotiate};
pub use metrics::{Metrics, ReviewMetric};
