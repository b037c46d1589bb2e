//! Byte-range access to a source file, and its adapter to `hdf5_pure::Source`.

use std::sync::Arc;

use cloudify_core::{ObjectMeta, SourceInfo};
use hdf5_pure::FormatError;

/// Random access to a source's bytes: all the metadata reader ever does to a file.
pub trait RangeRead: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`.
    ///
    /// # Errors
    /// Any I/O failure, or a read past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

/// A local file read with positioned reads (no shared cursor, so it is `Sync`).
#[derive(Debug)]
pub struct LocalFile {
    file: std::fs::File,
    len: u64,
}

impl LocalFile {
    /// Open `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or its size read.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl RangeRead for LocalFile {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

/// One source of a dataset: how the index names it, how to read it, and what it was.
#[derive(Clone)]
pub struct SourceSpec {
    /// Bucket-relative key or absolute URL, as recorded in the manifest.
    pub url: String,
    /// Absolute URL for interchange formats (kerchunk references).
    pub absolute_url: String,
    /// Size and tag when indexed.
    pub meta: ObjectMeta,
    /// The bytes.
    pub reader: Arc<dyn RangeRead>,
}

impl SourceSpec {
    /// `bytes` held in memory as the source `url` (`absolute_url` for interchange formats),
    /// with no tag.
    pub fn in_memory(url: String, absolute_url: String, bytes: Vec<u8>) -> Self {
        Self {
            url,
            absolute_url,
            meta: ObjectMeta {
                size: bytes.len() as u64,
                ..ObjectMeta::default()
            },
            reader: Arc::new(MemoryFile(bytes)),
        }
    }

    /// What the manifest records of this source.
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            url: self.url.clone(),
            size: self.meta.size,
            etag: self.meta.etag.clone(),
        }
    }

    /// `bytes` the indexer stores in the bucket at `bucket_url` for dataset `id`, under a
    /// content-addressed key in the dataset's folder (so [`SourceInfo::stored_by_index`]).
    ///
    /// [`SourceInfo::stored_by_index`]: cloudify_core::SourceInfo::stored_by_index
    pub fn stored_values(id: &str, bucket_url: &str, bytes: Vec<u8>) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let key = format!("datasets/{id}/values/{hex}.bin");
        Self::in_memory(key.clone(), format!("{bucket_url}/{key}"), bytes)
    }
}

/// `hdf5_pure`'s view of a [`RangeRead`].
pub(crate) struct HdfSource(pub(crate) Arc<dyn RangeRead>);

impl hdf5_pure::Source for HdfSource {
    fn len(&self) -> u64 {
        self.0.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        self.0
            .read_at(offset, buf)
            .map_err(|e| FormatError::Source(e.to_string()))
    }
}

/// Bytes held in memory, as a source: coordinate values the indexer stores itself, and tests.
#[derive(Debug, Clone)]
pub struct MemoryFile(pub Vec<u8>);

impl RangeRead for MemoryFile {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.0.get(start..start.checked_add(buf.len())?))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}
