//! The functions' settings, from environment variables (`template.yaml` sets them).

use cloudify_core::router::DEFAULT_READ_BUDGET;

/// What a function is configured to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The bucket holding `index.json` (`BUCKET`).
    pub bucket: String,
    /// Its folder holding the index (`INDEX_PREFIX`, empty: the root).
    pub index_prefix: String,
    /// Public address documents link to (`PUBLIC_URL`), else the address a request reached.
    pub public_url: Option<String>,
    /// Bytes one request may read from sources (`READ_BUDGET_BYTES`).
    pub read_budget: u64,
    /// Bytes of parsed manifests kept between invocations (`MANIFEST_CACHE_BYTES`).
    pub manifest_cache_bytes: u64,
    /// Largest body answered (`MAX_RESPONSE_BYTES`): a buffered Function URL carries 6 MB of
    /// base64, so about 4.4 MB of binary; a streaming one (`RESPONSE_STREAM=true`) 200 MB.
    pub max_response: u64,
    /// Whether the Function URL streams (`InvokeMode: RESPONSE_STREAM`).
    pub stream: bool,
    /// The reindex function's config file, a key below the index prefix (`CONFIG_KEY`).
    pub config_key: String,
}

/// A buffered Function URL's 6 MB payload holds this much binary once base64-encoded, with
/// room for the headers.
pub const BUFFERED_MAX: u64 = 4_400_000;
/// A streamed Function URL answer may be 200 MB.
pub const STREAMED_MAX: u64 = 200_000_000;

impl Settings {
    /// Read the environment through `var`; a missing bucket or a malformed number is an error
    /// naming the variable.
    ///
    /// # Errors
    /// A message naming the variable and what it must be.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
            })
        };
        let stream = match var("RESPONSE_STREAM").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(format!("RESPONSE_STREAM must be true or false, not {v:?}")),
        };
        Ok(Self {
            bucket: var("BUCKET").ok_or("BUCKET must name the bucket holding the index")?,
            index_prefix: var("INDEX_PREFIX")
                .unwrap_or_default()
                .trim_matches('/')
                .to_owned(),
            public_url: var("PUBLIC_URL"),
            read_budget: number("READ_BUDGET_BYTES", DEFAULT_READ_BUDGET)?,
            manifest_cache_bytes: number("MANIFEST_CACHE_BYTES", 32 << 20)?,
            max_response: number(
                "MAX_RESPONSE_BYTES",
                if stream { STREAMED_MAX } else { BUFFERED_MAX },
            )?,
            stream,
            config_key: var("CONFIG_KEY").unwrap_or_else(|| "cloudify.toml".to_owned()),
        })
    }

    /// Read the process environment.
    ///
    /// # Errors
    /// As [`Settings::from_vars`].
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// `s3://bucket/prefix`: where the index lives.
    pub fn index_url(&self) -> String {
        match self.index_prefix.as_str() {
            "" => format!("s3://{}", self.bucket),
            p => format!("s3://{}/{p}", self.bucket),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = settings(&[("BUCKET", "b"), ("INDEX_PREFIX", "/idx/")]).unwrap();
        assert_eq!(s.index_url(), "s3://b/idx");
        assert_eq!(s.max_response, BUFFERED_MAX);
        assert!(!s.stream);
        let streamed = settings(&[("BUCKET", "b"), ("RESPONSE_STREAM", "true")]);
        assert_eq!(streamed.map(|s| s.max_response), Ok(STREAMED_MAX));
        let missing = settings(&[]).err().unwrap_or_default();
        assert!(missing.contains("BUCKET"), "{missing}");
        let bad = settings(&[("BUCKET", "b"), ("READ_BUDGET_BYTES", "lots")]);
        assert!(bad.err().unwrap_or_default().contains("READ_BUDGET_BYTES"));
        let bad = settings(&[("BUCKET", "b"), ("RESPONSE_STREAM", "yes")]);
        assert!(bad.err().unwrap_or_default().contains("RESPONSE_STREAM"));
    }
}
