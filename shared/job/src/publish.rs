//! `cloudify publish`: the bucket's static STAC catalog (or, with `--all`, its whole index)
//! copied to another bucket (an `s3://` prefix: S3, or R2 through its S3 endpoint) or a folder
//! (a static site's checkout), object by object, writing only what differs.
//!
//! The copy is a "relative published" catalog: links between its documents stay relative, the
//! root gets an absolute `self` when its public URL is given, and no link is left pointing
//! outside what was copied (a catalog alone names the index's objects by their `s3://` URL, or
//! drops them when the index is a local folder nobody else can read).

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use cloudify_core::stac::{CATALOG_KEY, CONFIG_KEY};
use cloudify_core::store::{Precondition, ReadStoreExt};
use cloudify_stores::Bucket;
use serde_json::Value;

/// What a publish did, key by key.
#[derive(Debug, Default)]
pub struct Published {
    /// Keys written (new or changed), in the order written.
    pub written: Vec<String>,
    /// Keys deleted from the destination: gone from the source.
    pub deleted: Vec<String>,
    /// Keys already the same.
    pub unchanged: usize,
}

/// The prefix of what is copied: the catalog alone, or everything.
fn scope(all: bool) -> &'static str {
    if all { "" } else { "stac/" }
}

/// Whether `key` is one publish copies or deletes: never a hidden file or folder (a static
/// site checkout's `.git`, `.nojekyll`), and the catalog's configuration only with the index.
fn published(key: &str, all: bool) -> bool {
    !key.split('/').any(|part| part.starts_with('.')) && (all || key != CONFIG_KEY)
}

/// The order keys are written in: what others name first, so a reader of the destination never
/// meets a name before its object (versions, then `index.json`, then items, then the root).
fn rank(key: &str) -> u8 {
    match key {
        CATALOG_KEY => 3,
        cloudify_core::registry::INDEX_KEY => 1,
        k if k.starts_with("stac/") => 2,
        _ => 0,
    }
}

/// Copy `from`'s catalog (every object when `all`) to `to`, writing objects whose bytes differ
/// and deleting those `from` no longer has; the root catalog gets `self` at `public_url` (the
/// address `to`'s root is served at) when given.
///
/// # Errors
/// When either side cannot be read or written, or a catalog document is not JSON.
pub async fn publish(
    from: &Bucket,
    to: &Bucket,
    public_url: Option<&str>,
    all: bool,
) -> anyhow::Result<Published> {
    let prefix = scope(all);
    let listed = |b: &Bucket| {
        let store = b.reader();
        let shown = b.to_string();
        async move {
            let keys = (store.list(prefix).await).with_context(|| format!("{shown}: listing"))?;
            anyhow::Ok(
                keys.into_iter()
                    .filter(|k| published(k, all))
                    .collect::<BTreeSet<_>>(),
            )
        }
    };
    let wanted = listed(from).await?;
    if !wanted.contains(CATALOG_KEY) {
        return Err(anyhow!(
            "{from}: no {CATALOG_KEY} to publish; is it a bucket `cloudify index` wrote?"
        ));
    }
    let there = listed(to).await?;
    let mut order: Vec<&String> = wanted.iter().collect();
    order.sort_by_key(|k| rank(k));
    let mut done = Published::default();
    for key in order {
        let Some(object) =
            (from.store().get(key).await).with_context(|| format!("{from}: {key}"))?
        else {
            continue; // deleted while listed: a gc ran
        };
        let bytes = match key.starts_with("stac/") && key.ends_with(".json") {
            true => Bytes::from(document(from, key, &object.bytes, public_url, all)?),
            false => object.bytes,
        };
        let same = match (to.store().head(key).await).with_context(|| format!("{to}: {key}"))? {
            Some(meta) if meta.size == bytes.len() as u64 => (to.store().get(key).await)
                .with_context(|| format!("{to}: {key}"))?
                .is_some_and(|o| o.bytes == bytes),
            _ => false,
        };
        if same {
            done.unchanged += 1;
            continue;
        }
        (to.store().put(key, bytes, Precondition::None).await)
            .with_context(|| format!("{to}: writing {key}"))?;
        done.written.push(key.clone());
    }
    for key in there.difference(&wanted) {
        if (to.store().delete(key).await).with_context(|| format!("{to}: deleting {key}"))? {
            done.deleted.push(key.clone());
        }
    }
    Ok(done)
}

/// A catalog document as published: links that leave the copy made absolute (or dropped), and
/// the root's `self` set.
fn document(
    from: &Bucket,
    key: &str,
    bytes: &[u8],
    public_url: Option<&str>,
    all: bool,
) -> anyhow::Result<Vec<u8>> {
    let mut doc: Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("{from}: {key}: not JSON: {e}"))?;
    let folder = key.rsplit_once('/').map_or("", |(f, _)| f);
    // An object outside the copy is named by its S3 URL; a local folder's paths mean nothing
    // to the public, so links to them are dropped.
    let fate = |href: &str| -> Href {
        if all || href.contains("://") || href.starts_with('/') {
            return Href::Keep;
        }
        match resolve(folder, href) {
            Some(target) if !target.starts_with(scope(all)) => match from.root() {
                None => Href::Absolute(format!("{}/{target}", from.url())),
                Some(_) => Href::Drop,
            },
            _ => Href::Keep,
        }
    };
    let href_of = |v: &Value| {
        v.get("href")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    if let Some(Value::Object(assets)) = doc.get_mut("assets") {
        let mut gone = Vec::new();
        for (name, asset) in assets.iter_mut() {
            match fate(&href_of(asset)) {
                Href::Keep => {}
                Href::Absolute(url) => asset["href"] = Value::String(url),
                Href::Drop => gone.push(name.clone()),
            }
        }
        for name in gone {
            assets.remove(&name);
        }
    }
    if let Some(Value::Array(links)) = doc.get_mut("links") {
        links.retain_mut(|link| match fate(&href_of(link)) {
            Href::Keep => true,
            Href::Absolute(url) => {
                link["href"] = Value::String(url);
                true
            }
            Href::Drop => false,
        });
        if key == CATALOG_KEY
            && let Some(url) = public_url
        {
            links.retain(|l| l.get("rel").and_then(Value::as_str) != Some("self"));
            links.push(serde_json::json!({
                "rel": "self",
                "href": format!("{}/{CATALOG_KEY}", url.trim_end_matches('/')),
                "type": "application/json",
            }));
        }
    }
    let mut out = serde_json::to_vec_pretty(&doc)?;
    out.push(b'\n');
    Ok(out)
}

/// What becomes of a link in a published document.
enum Href {
    /// Inside the copy, or absolute already.
    Keep,
    /// Outside it: this URL instead.
    Absolute(String),
    /// Outside it, and nowhere the public can read.
    Drop,
}

/// The bucket key `href` (relative, `./` and `../` allowed) names from `folder`; `None` when
/// it climbs out of the bucket.
fn resolve(folder: &str, href: &str) -> Option<String> {
    let href = href.split(['#', '?']).next().unwrap_or("");
    let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_hrefs_resolve_to_bucket_keys() {
        assert_eq!(
            resolve("stac/c/x", "../../../datasets/x/v1/refs.json").as_deref(),
            Some("datasets/x/v1/refs.json")
        );
        assert_eq!(
            resolve("stac/c", "./x/x.json").as_deref(),
            Some("stac/c/x/x.json")
        );
        assert_eq!(resolve("stac", "../../up"), None);
    }

    #[test]
    fn hidden_files_are_never_published() {
        assert!(published("stac/catalog.json", false));
        assert!(!published(".git/config", true));
        assert!(!published("stac/.nojekyll", false));
        assert!(!published(CONFIG_KEY, false) && published(CONFIG_KEY, true));
    }
}
