//! Request headers for HTTP(S) sources that need them (a bearer token, an API key), configured
//! per URL prefix so a credential is only ever sent to the server it belongs to.
//!
//! The configuration is JSON, `{"https://data.example.org/models/": {"Authorization": "Bearer
//! …"}}`, read by the indexer and `cloudify serve` from `CLOUDIFY_HTTP_HEADERS`, by the Lambda
//! function from the same variable and by the Worker from its `HTTP_HEADERS` secret. Errors
//! name prefixes and header names, never values.

use serde_json::Value;

/// Headers to send, by URL prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpHeaders(Vec<(String, Vec<(String, String)>)>);

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl HttpHeaders {
    /// Parse the JSON configuration.
    ///
    /// # Errors
    /// A message naming the prefix or header at fault (not its value): a prefix must be
    /// `http(s)://host/...` with the slash after the host, so it cannot match another host
    /// whose name merely starts the same; names must be header names, values one line.
    pub fn parse(json: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(json)
            .map_err(|e| format!("HTTP headers are not JSON ({}:{})", e.line(), e.column()))?;
        let Value::Object(prefixes) = doc else {
            return Err("HTTP headers must be an object of URL prefixes".into());
        };
        let mut out = Vec::new();
        for (prefix, headers) in prefixes {
            let host_end = prefix
                .strip_prefix("https://")
                .or_else(|| prefix.strip_prefix("http://"))
                .and_then(|rest| rest.find('/'));
            if host_end.is_none_or(|i| i == 0) {
                return Err(format!(
                    "HTTP headers prefix {prefix:?} must be http(s)://HOST/ followed by an optional path"
                ));
            }
            let Value::Object(headers) = headers else {
                return Err(format!("HTTP headers of {prefix:?} must be an object"));
            };
            let mut list = Vec::new();
            for (name, value) in headers {
                let value = value.as_str().filter(|v| !v.contains(['\r', '\n']));
                match value {
                    Some(v) if is_token(&name) => list.push((name, v.to_owned())),
                    _ => {
                        return Err(format!(
                            "HTTP header {name:?} of {prefix:?} must be a header name with a one-line string value"
                        ));
                    }
                }
            }
            out.push((prefix, list));
        }
        // Longest prefix first, so the most specific value of a header wins.
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Self(out))
    }

    /// The headers to send with a request to `url`: those of every prefix it starts with, the
    /// longest prefix's value where two set the same header.
    pub fn for_url(&self, url: &str) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (prefix, headers) in &self.0 {
            if url.starts_with(prefix.as_str()) {
                for (k, v) in headers {
                    if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
                        out.push((k, v));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_go_only_where_their_prefix_matches() {
        let h = HttpHeaders::parse(
            r#"{"https://data.example.org/": {"Authorization": "Bearer a", "X-Key": "k"},
                "https://data.example.org/private/": {"Authorization": "Bearer b"}}"#,
        )
        .unwrap();
        assert_eq!(
            h.for_url("https://data.example.org/private/x.nc"),
            vec![("Authorization", "Bearer b"), ("X-Key", "k")]
        );
        assert_eq!(
            h.for_url("https://data.example.org/x.nc"),
            vec![("Authorization", "Bearer a"), ("X-Key", "k")]
        );
        assert!(
            h.for_url("https://data.example.org.evil.net/x.nc")
                .is_empty()
        );
        assert!(h.for_url("http://data.example.org/x.nc").is_empty());
    }

    #[test]
    fn bad_configurations_name_the_fault_but_no_value() {
        for (json, part) in [
            (r#"{"https://host": {"A": "secret1"}}"#, "https://host"),
            (r#"{"s3://b/": {"A": "secret1"}}"#, "s3://b/"),
            (r#"{"https://host/": {"Bad Name": "secret1"}}"#, "Bad Name"),
            (r#"{"https://host/": {"A": "secret1\r\nX: y"}}"#, "\"A\""),
            (r#"{"https://host/": {"A": 1}}"#, "\"A\""),
            (r#"["secret1"]"#, "object"),
            ("{secret1", "not JSON"),
        ] {
            let e = HttpHeaders::parse(json).unwrap_err();
            assert!(e.contains(part), "{json}: {e}");
            assert!(!e.contains("secret1"), "{json}: {e}");
        }
    }
}
