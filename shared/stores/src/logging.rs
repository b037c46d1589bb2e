//! The request log of native runtimes (`cloudify serve`, the Lambda functions): the core's one
//! line per request, as JSON lines or text, on stderr.

use cloudify_core::config::LogFormat;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Write the core's request lines (info and above; other crates' events are not the request
/// log) to stderr in `format`. Only the first call of a process installs anything.
pub fn init(format: LogFormat) {
    let only_requests =
        Targets::new().with_target(cloudify_core::log::TARGET, tracing::Level::INFO);
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let layer = match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(only_requests)
            .boxed(),
        LogFormat::Text => layer.with_filter(only_requests).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// A variable of the environment as native runtimes name it: `CLOUDIFY_{name}`.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(format!("CLOUDIFY_{name}")).ok()
}
