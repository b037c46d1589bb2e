//! kerchunk's Parquet references, for datasets too large for a JSON reference set.
//!
//! The layout fsspec's `LazyReferenceMapper` reads: a folder holding `.zmetadata` (every
//! metadata document, and the number of references per file) and, per array, files
//! `{name}/refs.{i}.parq` of [`RECORD_SIZE`] rows each, one row per chunk of the grid in C
//! order, with the columns `path`, `offset`, `size` and `raw` (null `path` for a chunk never
//! written). Paths are dictionary-encoded and pages zstd-compressed, as kerchunk writes them;
//! column statistics are kept, as fastparquet reads a column without a null count as floats.

use std::sync::Arc;

use cloudify_core::zarr_v2::{self, kerchunk_arrays};
use cloudify_core::{ChunkRef, Manifest};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde_json::json;

use crate::error::{IndexError, Result};

/// References per Parquet file.
pub const RECORD_SIZE: u64 = 100_000;

const SCHEMA: &str = "message schema {
    OPTIONAL BYTE_ARRAY path (UTF8);
    REQUIRED INT64 offset;
    REQUIRED INT64 size;
    OPTIONAL BYTE_ARRAY raw;
}";

/// The objects of a Parquet reference set, by key relative to its folder. `chunks(name)`
/// lists an array's stored chunks by linear index; `urls` are the sources' absolute URLs.
///
/// # Errors
/// [`IndexError::Invalid`] when a file cannot be encoded.
pub fn kerchunk_parquet<'a>(
    m: &'a Manifest,
    urls: &[String],
    mut chunks: impl FnMut(&'a str) -> &'a [(u64, ChunkRef)],
) -> Result<Vec<(String, Vec<u8>)>> {
    let metadata = zarr_v2::documents(m, None);
    let zmetadata = json!({ "metadata": metadata, "record_size": RECORD_SIZE });
    let mut out = vec![(".zmetadata".to_owned(), zmetadata.to_string().into_bytes())];
    for (name, a) in kerchunk_arrays(m) {
        let stored = chunks(name);
        let files = a.records.div_ceil(RECORD_SIZE).max(1);
        for i in 0..files {
            let rows = i * RECORD_SIZE..((i + 1) * RECORD_SIZE).min(a.records.max(1));
            let bytes = file(stored, urls, rows)
                .map_err(|e| IndexError::Invalid(format!("Parquet references of {name}: {e}")))?;
            out.push((format!("{name}/refs.{i}.parq"), bytes));
        }
    }
    Ok(out)
}

/// One Parquet file: the references of chunks `rows` (linear indices) of an array.
fn file(
    stored: &[(u64, ChunkRef)],
    urls: &[String],
    rows: std::ops::Range<u64>,
) -> parquet::errors::Result<Vec<u8>> {
    let n = (rows.end - rows.start) as usize;
    let (mut paths, mut path_levels) = (Vec::new(), vec![0i16; n]);
    let (mut offsets, mut sizes) = (vec![0i64; n], vec![0i64; n]);
    let first = stored.partition_point(|(i, _)| *i < rows.start);
    for (linear, c) in stored[first..].iter().take_while(|(i, _)| *i < rows.end) {
        let j = (linear - rows.start) as usize;
        let url = urls.get(c.source as usize).map_or("", String::as_str);
        paths.push(ByteArray::from(url));
        path_levels[j] = 1;
        offsets[j] = i64::try_from(c.offset).unwrap_or(i64::MAX);
        sizes[j] = i64::try_from(c.length).unwrap_or(i64::MAX);
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(ColumnPath::from("path"), true)
        .build();
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let mut buf = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buf, schema, Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let mut column = 0;
    while let Some(mut col) = group.next_column()? {
        match column {
            0 => {
                col.typed::<ByteArrayType>()
                    .write_batch(&paths, Some(&path_levels), None)?;
            }
            1 => {
                col.typed::<Int64Type>().write_batch(&offsets, None, None)?;
            }
            2 => {
                col.typed::<Int64Type>().write_batch(&sizes, None, None)?;
            }
            _ => {
                // No chunk is inlined: every `raw` is null.
                col.typed::<ByteArrayType>()
                    .write_batch(&[], Some(&vec![0i16; n]), None)?;
            }
        }
        col.close()?;
        column += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(buf)
}
