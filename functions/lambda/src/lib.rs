//! cloudify on AWS Lambda. `cloudify-serve` is the core router behind a Function URL, reading
//! the bucket through the S3 store; `cloudify-reindex` runs the precompute job on S3 events and
//! a schedule. Both are configured by environment variables (see `template.yaml`), read into the
//! core's one [`Config`] from the Lambda preset.

pub mod events;
pub mod respond;

use cloudify_core::{Config, Platform};

/// The functions' configuration: the Lambda preset, then the environment (`READ_BUDGET_BYTES`,
/// ..., and `CLOUDIFY_`-prefixed names, such as `CLOUDIFY_HTTP_HEADERS`).
///
/// # Errors
/// A message naming the variable at fault; a missing `BUCKET`.
pub fn config() -> Result<Config, String> {
    config_from(|name| {
        std::env::var(name)
            .ok()
            .or_else(|| cloudify_stores::logging::env_var(name))
    })
}

/// [`config`] from any lookup.
///
/// # Errors
/// As [`config`].
pub fn config_from(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let config = Config::from_lookup(Platform::Lambda, var)?;
    if config.bucket.is_none() {
        return Err("BUCKET must name the bucket holding the index".into());
    }
    Ok(config)
}

/// `s3://bucket/prefix`: where the index lives.
pub fn index_url(config: &Config) -> String {
    let bucket = config.bucket.as_deref().unwrap_or_default();
    match config.index_prefix.as_str() {
        "" => format!("s3://{bucket}"),
        p => format!("s3://{bucket}/{p}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cloudify_core::config::{BUFFERED_MAX, STREAMED_MAX};

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        config_from(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_lambda_preset_then_the_environment() {
        let c = config(&[("BUCKET", "b"), ("INDEX_PREFIX", "/idx/")]).unwrap();
        assert_eq!(index_url(&c), "s3://b/idx");
        assert_eq!(c.platform, Platform::Lambda);
        assert_eq!(c.max_response, Some(BUFFERED_MAX));
        assert_eq!(c.read_budget, Platform::Lambda.preset().read_budget);
        assert!(!c.stream);
        let streamed = config(&[("BUCKET", "b"), ("RESPONSE_STREAM", "true")]);
        assert_eq!(streamed.map(|s| s.max_response), Ok(Some(STREAMED_MAX)));
        let missing = config(&[]).err().unwrap_or_default();
        assert!(missing.contains("BUCKET"), "{missing}");
        let bad = config(&[("BUCKET", "b"), ("READ_BUDGET_BYTES", "lots")]);
        assert!(bad.err().unwrap_or_default().contains("READ_BUDGET_BYTES"));
        let bad = config(&[("BUCKET", "b"), ("RESPONSE_STREAM", "yes")]);
        assert!(bad.err().unwrap_or_default().contains("RESPONSE_STREAM"));
    }
}
