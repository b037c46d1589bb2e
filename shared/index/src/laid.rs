//! Datasets another store already lays out in chunks (a Zarr store, an Icechunk snapshot): their
//! arrays and chunk references become a manifest like any indexed file's, so every runtime
//! serves them with no Zarr or Icechunk code of its own.

use cloudify_core::manifest::{
    self, ArrayMeta, ChunkRef, IcechunkRepo, Manifest, StoreSource, encode_table,
};
use serde_json::{Map, Value, json};

use crate::error::{IndexError, Result};
use crate::netcdf4::{ArrayTable, Indexed, ServeOptions};
use crate::source::SourceSpec;

/// One array of a [`Laid`] dataset.
#[derive(Debug, Clone)]
pub struct LaidArray {
    /// Its name: a variable of the dataset.
    pub name: String,
    /// Its metadata (the table fields are the builder's).
    pub meta: ArrayMeta,
    /// Its stored chunks: linear index in the grid, and where the bytes are.
    pub stored: Vec<(u64, ChunkRef)>,
}

/// A dataset as a store lays it out.
#[derive(Clone, Default)]
pub struct Laid {
    /// Where it comes from, as errors name it.
    pub name: String,
    /// Global attributes.
    pub attrs: Map<String, Value>,
    /// Its arrays, in the store's order.
    pub arrays: Vec<LaidArray>,
    /// Arrays left out, each with the reason.
    pub skipped: Vec<(String, String)>,
    /// The objects the chunk references point into, in reference order.
    pub sources: Vec<SourceSpec>,
    /// Chunks the store holds in its own metadata (Icechunk's inline chunks), stored in the
    /// bucket under these keys and named by `sources` like any other.
    pub inline: Vec<(String, Vec<u8>)>,
    /// What names this state of the store (an Icechunk snapshot id, a listing's hash): equal
    /// states index to equal datasets.
    pub state: String,
    /// The store as a catalog names the dataset's source.
    pub store: Option<StoreSource>,
    /// The Icechunk repository it is, for catalogs.
    pub icechunk: Option<IcechunkRepo>,
}

/// The manifest and tables of `laid`, served as `options` say.
///
/// # Errors
/// [`IndexError::Invalid`] for a bad id or a store with no array to serve;
/// [`IndexError::Variable`] for a chunk reference past the end of its object, or a grid out of
/// all proportion to the bytes stored.
pub fn read_laid(id: &str, laid: Laid, options: &ServeOptions) -> Result<Indexed> {
    if !cloudify_core::key::is_valid_id(id) {
        return Err(IndexError::Invalid(format!(
            "dataset id {id:?} must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    let Laid {
        name,
        attrs,
        arrays,
        skipped,
        sources,
        inline,
        state,
        store,
        icechunk,
    } = laid;
    let mut m = Manifest::new(id, attrs);
    m.store = store;
    m.icechunk = icechunk;
    m.sources = sources.iter().map(SourceSpec::info).collect();
    let total: u64 = m.sources.iter().map(|s| s.size).sum();
    let mut warnings = Vec::new();
    for (array, why) in skipped {
        warnings.push(format!("{name}: skipping variable {array:?}: {why}"));
        m.skipped.insert(array, json!(why));
    }
    let mut tables = Vec::new();
    for LaidArray {
        name: array,
        mut meta,
        mut stored,
    } in arrays
    {
        let fault = |fault: String| IndexError::Variable {
            file: name.clone(),
            variable: array.clone(),
            fault,
        };
        for (i, c) in &stored {
            let size = m.sources.get(c.source as usize).map(|s| s.size);
            if size.is_none_or(|size| c.offset.saturating_add(c.length) > size) {
                return Err(fault(format!(
                    "chunk #{i} at bytes {}+{} lies past the end of its object",
                    c.offset, c.length
                )));
            }
        }
        stored.sort_by_key(|(i, _)| *i);
        meta.table = format!("tables/{}.bin", tables.len());
        meta.stored_chunks = stored.len() as u64;
        meta.table_records = manifest::table_len(&stored);
        if let Some(why) = crate::bounds::too_sparse(meta.table_records, total) {
            return Err(fault(why));
        }
        meta.kerchunk_excluded = crate::bounds::too_sparse(meta.records, total);
        tables.push(ArrayTable {
            bytes: encode_table(&stored),
            stored,
        });
        m.arrays.insert(array, meta);
    }
    if m.arrays.is_empty() {
        let why: Vec<String> = (m.skipped.iter())
            .map(|(a, why)| format!("{a}: {}", why.as_str().unwrap_or_default()))
            .collect();
        return Err(IndexError::Invalid(format!(
            "{name}: no array to serve ({})",
            if why.is_empty() {
                "it holds none".to_owned()
            } else {
                why.join("; ")
            }
        )));
    }
    let inline_count = inline.len();
    let mut indexed = Indexed {
        absolute_urls: sources.iter().map(|s| s.absolute_url.clone()).collect(),
        manifest: m,
        tables,
        warnings,
        inline,
        kept: None,
        sources_read: sources.len() - inline_count,
    };
    crate::netcdf4::apply(&mut indexed, options)?;
    crate::coords::summarise(&mut indexed, &sources)?;
    indexed.manifest.inputs = Some(crate::publish::laid_inputs(&state, options));
    Ok(indexed)
}
