//! Reading coordinate variables' values at index time, for catalog extents: the only data the
//! indexer reads. Chunks are fetched by range and decoded with the core's codecs, so the same
//! code will serve remote sources.

use cloudify_core::assemble::{self, Region};
use cloudify_core::codecs;
use cloudify_core::dtype::fill_as_f64;
use cloudify_core::manifest::{self, CoordSummary};
use cloudify_core::{ArrayMeta, ChunkRef};

use crate::error::{IndexError, Result};
use crate::netcdf4::Indexed;
use crate::source::SourceSpec;

/// Largest coordinate variable read (elements); bigger ones are not summarised.
const MAX_ELEMENTS: u64 = 16 << 20;

/// Summarise every numeric coordinate variable into the manifest.
///
/// # Errors
/// [`IndexError::Variable`] when a coordinate's chunks cannot be read or decoded.
pub fn summarise(indexed: &mut Indexed, sources: &[SourceSpec]) -> Result<()> {
    let names: Vec<String> = indexed
        .manifest
        .coordinate_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for name in names {
        let Some(position) = indexed.manifest.arrays.get_index_of(&name) else {
            continue;
        };
        let a = &indexed.manifest.arrays[position];
        let numeric = a.dtype.is_numeric();
        if !numeric || manifest::saturating_product(&a.shape) > MAX_ELEMENTS {
            continue;
        }
        let stored = &indexed.tables[position].stored;
        let values = read_values(a, stored, sources).map_err(|fault| IndexError::Variable {
            file: sources.first().map(|s| s.url.clone()).unwrap_or_default(),
            variable: name.clone(),
            fault,
        })?;
        let fill = fill_as_f64(&a.fill_value);
        if let Some(summary) = CoordSummary::of(&values, fill, a.shape.len() == 1) {
            indexed.manifest.coords.insert(name, summary);
        }
    }
    Ok(())
}

/// An array's decoded bytes in C order and little-endian, absent chunks as the fill value.
pub(crate) fn read_le_bytes(
    a: &ArrayMeta,
    stored: &[(u64, ChunkRef)],
    sources: &[SourceSpec],
) -> std::result::Result<Vec<u8>, String> {
    let item = u64::from(a.item_size());
    let total = manifest::saturating_product(&a.shape);
    let fill = a.dtype.fill_bytes(&a.fill_value);
    let mut buf = fill.repeat(total as usize);
    let region = Region {
        start: vec![0; a.shape.len()],
        end: a.shape.clone(),
    };
    let chunk_len = manifest::saturating_product(&a.chunks).saturating_mul(item);
    let grid = a.grid();
    for (linear, c) in stored {
        let source = sources
            .get(c.source as usize)
            .ok_or_else(|| format!("chunk names source #{}", c.source))?;
        let mut raw = vec![0u8; c.length as usize];
        source
            .reader
            .read_at(c.offset, &mut raw)
            .map_err(|e| format!("reading chunk {linear}: {e}"))?;
        let decoded = codecs::decode_source(
            &a.codecs,
            c.filter_mask,
            &raw,
            chunk_len as usize,
            "coordinate",
        )
        .map_err(|e| e.to_string())?;
        let idx = manifest::grid_index(&grid, *linear);
        let origin: Vec<u64> = idx.iter().zip(&a.chunks).map(|(i, c)| i * c).collect();
        for row in assemble::rows(&origin, &a.chunks, &region.start, &a.shape, &region, item) {
            buf[row.dst as usize..(row.dst + row.len) as usize]
                .copy_from_slice(&decoded[row.src as usize..(row.src + row.len) as usize]);
        }
    }
    if a.dtype.is_big_endian() {
        codecs::swap_bytes(&mut buf, item as usize);
    }
    Ok(buf)
}

/// Every value of an array, as f64, absent chunks as the fill value.
pub(crate) fn read_values(
    a: &ArrayMeta,
    stored: &[(u64, ChunkRef)],
    sources: &[SourceSpec],
) -> std::result::Result<Vec<f64>, String> {
    let item = u64::from(a.item_size());
    let buf = read_le_bytes(a, stored, sources)?;
    let number = a.dtype.number();
    Ok(buf
        .chunks_exact(item.max(1) as usize)
        .map(|b| number.map_or(f64::NAN, |n| n.read_le(b)))
        .collect())
}
