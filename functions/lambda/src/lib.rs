//! cloudify on AWS Lambda. `cloudify-serve` is the core router behind a Function URL, reading
//! the bucket through the S3 store; `cloudify-reindex` runs the precompute job on S3 events and
//! a schedule. Both are configured by environment variables (see `template.yaml`).

pub mod events;
pub mod respond;
pub mod settings;

pub use settings::Settings;
