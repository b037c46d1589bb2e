//! The core's answers as Function URL answers.

use bytes::Bytes;
use cloudify_core::Error;
use cloudify_core::router::error_response;
use http::{Response, header};
use lambda_http::Body;

/// `resp`, or when its body is over `max` bytes a 413 saying why: the platform would otherwise
/// drop the answer with a bare 502.
pub fn limited(resp: Response<Bytes>, max: u64) -> Response<Bytes> {
    match resp.body().len() as u64 {
        n if n > max => error_response(&Error::TooLarge(format!(
            "the answer is {n} bytes and this function answers at most {max} (MAX_RESPONSE_BYTES; \
             a buffered Function URL carries about 4.4 MB of binary): use the function with \
             InvokeMode RESPONSE_STREAM, or index with smaller served chunks (--chunks)"
        ))),
        _ => resp,
    }
}

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

    #[test]
    fn an_answer_over_the_limit_is_a_413_that_says_why() {
        let big = limited(answer("application/octet-stream", &[7; 64]), 63);
        assert_eq!(big.status(), 413);
        let v: serde_json::Value = serde_json::from_slice(big.body()).unwrap();
        assert!(v["detail"].as_str().unwrap().contains("64 bytes"), "{v}");
        assert_eq!(limited(answer("image/png", &[7; 63]), 63).status(), 200);
    }
}
