//! The core's answers as Function URL answers.

use bytes::Bytes;
use http::{Response, header};
use lambda_http::Body;

/// `resp` as a buffered Function URL answer: text types as text, anything else as binary
/// (which the runtime base64-encodes once, as Function URLs require).
pub fn buffered(resp: Response<Bytes>) -> Response<Body> {
    let text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("text/")
                || t.starts_with("application/json")
                || t.contains("+json")
                || t.contains("yaml")
        });
    resp.map(|body| match (text, body.is_empty()) {
        (_, true) => Body::Empty,
        (true, false) => match String::from_utf8(body.to_vec()) {
            Ok(s) => Body::Text(s),
            Err(e) => Body::Binary(e.into_bytes()),
        },
        (false, false) => Body::Binary(body.to_vec()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answer(content_type: &str, body: &'static [u8]) -> Response<Bytes> {
        Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Bytes::from_static(body))
            .unwrap()
    }

    #[test]
    fn binary_stays_binary_and_text_stays_text() {
        let chunk = buffered(answer("application/octet-stream", b"\x00\xff"));
        assert!(matches!(chunk.body(), Body::Binary(b) if b == b"\x00\xff"));
        let json = buffered(answer("application/json", b"{}"));
        assert!(matches!(json.body(), Body::Text(t) if t == "{}"));
        let yaml = buffered(answer("application/yaml", b"a: 1"));
        assert!(matches!(yaml.body(), Body::Text(_)));
    }
}
