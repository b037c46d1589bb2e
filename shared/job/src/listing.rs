//! Listing an `http(s)://` prefix where the server allows it: S3's ListObjectsV2, which S3,
//! MinIO, Ceph and other S3-compatible servers answer over plain HTTP(S) for a bucket that
//! grants anonymous listing. quick-xml reads the answers; the protocol around them (the bucket
//! in the host or the path, continuation tokens) is a few lines, written here.

use anyhow::anyhow;
use cloudify_core::ReadStore;
use cloudify_core::store::{ObjectMeta, ReadStoreExt};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::Job;
use crate::remote::http_store_for;

/// Pages a listing may take (1000 keys each): a bound on a server that never stops.
const MAX_PAGES: usize = 10_000;

/// One page of ListObjectsV2 (`ListBucketResult`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    #[serde(default)]
    contents: Vec<Entry>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    key: String,
    #[serde(default)]
    size: u64,
    e_tag: Option<String>,
}

/// Every key below `url` (ending in `/`), relative to it; what the listing says of each object
/// is remembered by the job. The bucket is either the host
/// (virtual-hosted style) or the first path segment (path style): the first of the two whose
/// answer is a listing is the one.
///
/// # Errors
/// When neither answers a listing, naming `url`, or a later page fails.
pub async fn list(url: &str, job: &Job) -> anyhow::Result<Vec<String>> {
    let (store, rest) = http_store_for(url, &job.headers, job.timeouts)
        .ok_or_else(|| anyhow!("{url}: not an http(s):// URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut styles = vec![(host.to_owned(), path)];
    if let Some((bucket, prefix)) = path.split_once('/') {
        styles.push((format!("{host}/{bucket}"), prefix));
    }
    let mut refused = Vec::new();
    for (root, prefix) in styles {
        let first = match page(store.as_ref(), &root, prefix, None).await {
            Ok(p) => p,
            Err(why) => {
                refused.push(format!("{root}: {why}"));
                continue;
            }
        };
        let mut keys = Vec::new();
        let mut next = Some(first);
        for _ in 0..MAX_PAGES {
            let Some(p) = next.take() else { break };
            let mut listed = Vec::with_capacity(p.contents.len());
            for e in p.contents {
                let Some(relative) = e.key.strip_prefix(prefix) else {
                    continue;
                };
                let meta = ObjectMeta {
                    size: e.size,
                    etag: e.e_tag,
                    last_modified: None,
                };
                listed.push((format!("{url}{relative}"), meta));
                keys.push(relative.to_owned());
            }
            job.remember(listed);
            next = match (p.is_truncated, p.next_continuation_token) {
                (true, Some(token)) => Some(
                    page(store.as_ref(), &root, prefix, Some(&token))
                        .await
                        .map_err(|why| anyhow!("{url}: listing {root}: {why}"))?,
                ),
                _ => None,
            };
        }
        if next.is_some() {
            return Err(anyhow!("{url}: the listing went on past {MAX_PAGES} pages"));
        }
        return Ok(keys);
    }
    Err(anyhow!(
        "{url}: cannot be listed: no S3 listing (ListObjectsV2) answers for it ({})",
        refused.join("; ")
    ))
}

/// One page of the listing of `prefix` in the bucket at `root` (host and path, no scheme).
async fn page(
    store: &dyn ReadStore,
    root: &str,
    prefix: &str,
    token: Option<&str>,
) -> Result<Page, String> {
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut key = format!("{root}/?list-type=2&prefix={}", enc(prefix));
    if let Some(t) = token {
        key.push_str(&format!("&continuation-token={}", enc(t)));
    }
    let object = store
        .get(&key)
        .await
        .map_err(|e| e.internal())?
        .ok_or("404")?;
    let text = std::str::from_utf8(&object.bytes).map_err(|_| "not text".to_owned())?;
    if !text.contains("<ListBucketResult") {
        return Err("not a ListBucketResult".into());
    }
    quick_xml::de::from_str(text).map_err(|e| format!("a malformed listing: {e}"))
}
