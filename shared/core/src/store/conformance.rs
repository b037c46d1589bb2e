//! The store conformance suite: what cloudify needs of every store, checked the same way on
//! each (memory, a local folder, S3, HTTP(S) sources, R2 under wrangler). Writable stores are
//! filled by [`check_writes`]; read-only ones hold the same [`Fixture`] put there by a test
//! harness, then [`check_reads`] checks whole, ranged and conditional reads, HEAD and LIST.

use bytes::Bytes;

use super::{Fetched, GetOptions, Precondition, ReadStore, ReadStoreExt, WriteStore};
use crate::error::Error;

/// The objects a conformance run reads, below one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// Their folder, ending in `/`.
    pub prefix: String,
    /// Whether the store can list (HTTP sources cannot).
    pub listable: bool,
}

/// `small.bin`: a line of text.
pub const SMALL: &[u8] = b"cloudify store conformance\n";
/// Length of `dir/big.bin`, whose byte `i` is `i % 251`.
pub const BIG_LEN: usize = 70_000;

impl Fixture {
    /// The standard objects below `prefix`.
    pub fn new(prefix: &str, listable: bool) -> Self {
        Self {
            prefix: format!("{}/", prefix.trim_end_matches('/')),
            listable,
        }
    }

    /// Key and content of every object.
    pub fn objects(&self) -> Vec<(String, Bytes)> {
        let big: Vec<u8> = (0..BIG_LEN).map(|i| (i % 251) as u8).collect();
        vec![
            (format!("{}dir/big.bin", self.prefix), Bytes::from(big)),
            (
                format!("{}small.bin", self.prefix),
                Bytes::from_static(SMALL),
            ),
        ]
    }
}

/// Failures found, one line each.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn done(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join("\n"))
        }
    }
}

/// A tag of the same form as `tag` (quotes, digits, hex) that is not `tag`: what a store
/// must refuse to match.
fn other_tag(tag: &str) -> String {
    let mut chars: Vec<char> = tag.chars().collect();
    if let Some(c) = chars.iter_mut().rev().find(|c| c.is_ascii_alphanumeric()) {
        *c = match *c {
            '0' => '1',
            '0'..='9' => '0',
            'a' => 'b',
            'A' => 'B',
            c if c.is_ascii_lowercase() => 'a',
            _ => 'A',
        };
    }
    chars.into_iter().collect()
}

/// Check the reads cloudify makes of `store`, which holds `fixture`'s objects.
///
/// # Errors
/// Every failed expectation, one per line.
pub async fn check_reads(store: &dyn ReadStore, fixture: &Fixture) -> Result<(), String> {
    let mut f = Findings::default();
    for (key, want) in fixture.objects() {
        let size = want.len() as u64;
        match store.get(&key).await {
            Ok(Some(o)) => {
                f.check(o.bytes == want, || format!("GET {key}: other bytes"));
                f.check(o.meta.size == size, || {
                    format!("GET {key}: size {}, not {size}", o.meta.size)
                });
                f.check(o.meta.etag.is_some(), || format!("GET {key}: no tag"));
            }
            other => f.check(false, || format!("GET {key}: {other:?}")),
        }
        let head = store.head(&key).await;
        let tag = match &head {
            Ok(Some(m)) => {
                f.check(m.size == size, || format!("HEAD {key}: size {}", m.size));
                m.etag.clone()
            }
            other => {
                f.check(false, || format!("HEAD {key}: {other:?}"));
                None
            }
        };
        let r = size / 3..size - 1;
        match store.get_range(&key, r.clone()).await {
            Ok(Some(o)) => {
                let part = want.slice(r.start as usize..r.end as usize);
                f.check(o.bytes == part, || format!("GET {key} {r:?}: other bytes"));
                f.check(o.meta.size == size, || {
                    format!(
                        "GET {key} {r:?}: size {}, not the object's {size}",
                        o.meta.size
                    )
                });
                f.check(o.meta.etag == tag, || {
                    format!("GET {key} {r:?}: tag {:?}, HEAD said {tag:?}", o.meta.etag)
                });
            }
            other => f.check(false, || format!("GET {key} {r:?}: {other:?}")),
        }
        match store.get_range(&key, 0..0).await {
            Ok(Some(o)) => f.check(o.bytes.is_empty() && o.meta.size == size, || {
                format!(
                    "GET {key} 0..0: {} bytes, size {}",
                    o.bytes.len(),
                    o.meta.size
                )
            }),
            other => f.check(false, || format!("GET {key} 0..0: {other:?}")),
        }
        let past = store.get_range(&key, size - 2..size + 5).await;
        f.check(matches!(past, Err(Error::RangeNotSatisfiable(_))), || {
            format!("GET {key} past the end: {past:?}, not 416")
        });
        let Some(tag) = tag else { continue };
        let matching = GetOptions {
            range: Some(0..4),
            if_match: Some(tag.clone()),
            ..GetOptions::default()
        };
        let got = store.get_with(&key, &matching).await;
        f.check(
            matches!(&got, Ok(Fetched::Object(o)) if o.bytes == want.slice(..4)),
            || format!("GET {key} If-Match its own tag: {got:?}"),
        );
        let stale = GetOptions {
            if_match: Some(other_tag(&tag)),
            ..matching
        };
        let got = store.get_with(&key, &stale).await;
        f.check(matches!(got, Err(Error::Conflict(_))), || {
            format!(
                "GET {key} If-Match {}: {got:?}, not a conflict",
                other_tag(&tag)
            )
        });
        let fresh = GetOptions {
            if_none_match: Some(tag.clone()),
            ..GetOptions::default()
        };
        let got = store.get_with(&key, &fresh).await;
        f.check(matches!(got, Ok(Fetched::NotModified)), || {
            format!("GET {key} If-None-Match its own tag: {got:?}, not 'not modified'")
        });
        let old = GetOptions {
            if_none_match: Some(other_tag(&tag)),
            ..GetOptions::default()
        };
        let got = store.get_with(&key, &old).await;
        f.check(
            matches!(&got, Ok(Fetched::Object(o)) if o.bytes == want),
            || format!("GET {key} If-None-Match another tag: {got:?}"),
        );
    }
    let missing = format!("{}no/such/object", fixture.prefix);
    let got = store.get(&missing).await;
    f.check(matches!(got, Ok(None)), || {
        format!("GET {missing}: {got:?}")
    });
    let got = store.get_range(&missing, 0..4).await;
    f.check(matches!(got, Ok(None)), || {
        format!("GET {missing} 0..4: {got:?}")
    });
    let got = store.head(&missing).await;
    f.check(matches!(got, Ok(None)), || {
        format!("HEAD {missing}: {got:?}")
    });
    if fixture.listable {
        let want: Vec<String> = fixture.objects().into_iter().map(|(k, _)| k).collect();
        let got = store.list(&fixture.prefix).await;
        f.check(got.as_ref().is_ok_and(|k| *k == want), || {
            format!("LIST {}: {got:?}, not {want:?}", fixture.prefix)
        });
        let dir = format!("{}dir/", fixture.prefix);
        let got = store.list(&dir).await;
        f.check(got.as_ref().is_ok_and(|k| k.len() == 1), || {
            format!("LIST {dir}: {got:?}")
        });
    }
    f.done()
}

/// Check conditional writes and deletes on `store`, then leave the standard fixture below
/// `prefix` for [`check_reads`].
///
/// # Errors
/// Every failed expectation, one per line.
pub async fn check_writes(store: &dyn WriteStore, prefix: &str) -> Result<Fixture, String> {
    let mut f = Findings::default();
    let fixture = Fixture::new(prefix, true);
    let key = format!("{}scratch.bin", fixture.prefix);
    let put = |b: &'static [u8], p: Precondition| {
        let key = key.clone();
        async move { store.put(&key, Bytes::from_static(b), p).await }
    };
    let _ = store.delete(&key).await;
    let got = put(b"first", Precondition::Absent).await;
    f.check(matches!(got, Ok(true)), || {
        format!("PUT if absent: {got:?}")
    });
    let got = put(b"again", Precondition::Absent).await;
    f.check(matches!(got, Ok(false)), || {
        format!("PUT if absent, present: {got:?}")
    });
    let tag = store.head(&key).await.ok().flatten().and_then(|m| m.etag);
    f.check(tag.is_some(), || {
        format!("HEAD {key}: no tag after a write")
    });
    if let Some(tag) = tag {
        let got = put(b"second", Precondition::Matches(tag.clone())).await;
        f.check(matches!(got, Ok(true)), || {
            format!("PUT if-match current: {got:?}")
        });
        let got = put(b"third", Precondition::Matches(tag)).await;
        f.check(matches!(got, Ok(false)), || {
            format!("PUT if-match stale: {got:?}")
        });
    }
    let got = store.get(&key).await;
    f.check(
        matches!(&got, Ok(Some(o)) if o.bytes == "second" || o.bytes == "first"),
        || format!("GET after conditional writes: {got:?}"),
    );
    let got = store.delete(&key).await;
    f.check(matches!(got, Ok(true)), || format!("DELETE: {got:?}"));
    let got = store.delete(&key).await;
    f.check(matches!(got, Ok(false)), || {
        format!("DELETE again: {got:?}")
    });
    let got = store.get(&key).await;
    f.check(matches!(got, Ok(None)), || {
        format!("GET after DELETE: {got:?}")
    });
    for (k, b) in fixture.objects() {
        let got = store.put(&k, b, Precondition::None).await;
        f.check(matches!(got, Ok(true)), || format!("PUT {k}: {got:?}"));
    }
    f.done().map(|()| fixture)
}
