//! The request log of native runtimes (`cloudify serve`, the Lambda functions): the core's one
//! line per request on stderr.

use cloudify_core::config::LogFormat;

/// Write the core's request lines to stderr in `format`.
pub fn init(format: LogFormat) {
    cloudify_core::log::init(format, std::io::stderr, true);
}

/// A variable of the environment as native runtimes name it: `CLOUDIFY_{name}`.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(format!("CLOUDIFY_{name}")).ok()
}
