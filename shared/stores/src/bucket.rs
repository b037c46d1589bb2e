//! The bucket an index lives in: a local folder, or `s3://bucket[/prefix]` on S3 or any
//! S3-compatible server (`AWS_ENDPOINT_URL`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudify_core::store::PrefixStore;
use cloudify_core::{ReadStore, WriteStore};

use crate::{LocalStore, S3Store};

/// An opened bucket.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn WriteStore>,
    /// `file:///abs/folder` or `s3://bucket/prefix`, without a trailing slash.
    url: String,
    /// The folder, for a local bucket.
    root: Option<PathBuf>,
}

impl Bucket {
    /// Open `arg`: `s3://bucket[/prefix]` or a folder, created when absent if `create`.
    ///
    /// # Errors
    /// A message naming the bucket: the folder cannot be created, or the S3 URL names no
    /// bucket.
    pub async fn open(arg: &str, create: bool) -> Result<Self, String> {
        if let Some(rest) = arg.strip_prefix("s3://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(format!("{arg}: an S3 bucket is s3://BUCKET[/PREFIX]"));
            }
            let prefix = prefix.trim_matches('/');
            return Ok(Self::s3(Arc::new(S3Store::new(name).await), name, prefix));
        }
        if arg.contains("://") {
            return Err(format!(
                "{arg}: a bucket is a local folder or s3://BUCKET[/PREFIX]"
            ));
        }
        let path = Path::new(arg);
        if create {
            std::fs::create_dir_all(path)
                .map_err(|e| format!("cannot create bucket folder {}: {e}", path.display()))?;
        }
        let root = match path.canonicalize() {
            Ok(root) => root,
            Err(_) if !create => path.to_owned(), // read as empty: no dataset answers
            Err(e) => return Err(format!("bucket folder {}: {e}", path.display())),
        };
        Ok(Self {
            store: Arc::new(LocalStore::new(&root)),
            url: format!("file://{}", root.display()),
            root: Some(root),
        })
    }

    /// The bucket `name` of an S3 store, seen below `prefix` (which may be empty).
    pub fn s3(store: Arc<S3Store>, name: &str, prefix: &str) -> Self {
        let (store, url): (Arc<dyn WriteStore>, _) = if prefix.is_empty() {
            (store, format!("s3://{name}"))
        } else {
            (
                Arc::new(PrefixStore::new(store, prefix)),
                format!("s3://{name}/{prefix}"),
            )
        };
        Self {
            store,
            url,
            root: None,
        }
    }

    /// The store, keyed below the bucket's prefix.
    pub fn store(&self) -> &dyn WriteStore {
        self.store.as_ref()
    }

    /// The store, shared.
    pub fn shared(&self) -> Arc<dyn WriteStore> {
        self.store.clone()
    }

    /// The store as the serving function holds it: read-only.
    pub fn reader(&self) -> Arc<dyn ReadStore> {
        self.store.clone()
    }

    /// `file:///folder` or `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder of a local bucket.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The key of `url` (an `s3://` or `file://` URL) when it lies inside this bucket: sources
    /// there are recorded by key, so the index moves with the bucket.
    pub fn key_of<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(self.url.as_str())?
            .strip_prefix('/')
            .filter(|k| !k.is_empty())
    }

    /// Whether `url` is an object the indexer writes here (`index.json`, `discovered.json`,
    /// `datasets/`, `stac/`): a change to it is never a change of a source.
    pub fn is_index_object(&self, url: &str) -> bool {
        self.key_of(url).is_some_and(|k| {
            k == cloudify_core::registry::INDEX_KEY
                || k == cloudify_core::registry::DISCOVERED_KEY
                || k.starts_with("datasets/")
                || k.starts_with("stac/")
        })
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.root {
            Some(root) => write!(f, "{}", root.display()),
            None => f.write_str(&self.url),
        }
    }
}
