//! Reading one NetCDF4/HDF5 source into a manifest: variables, dimensions, codecs and the
//! location of every stored chunk.

use std::collections::{BTreeMap, HashMap};

use cloudify_core::codecs::ServedCodec;
use cloudify_core::config::Platform;
use cloudify_core::manifest::{encode_table, table_len};
use cloudify_core::{ArrayMeta, ChunkRef, Codec, DataType, Manifest};
use hdf5_pure::{AttrValue, Dataset, Datatype, DatatypeByteOrder, File, Layout};
use serde_json::{Value, json};

use crate::attrs;
use crate::concat::Concat;
use crate::error::{IndexError, Result};
use crate::kept::Kept;
use crate::source::{HdfSource, SourceSpec};

/// HDF5 filter ids this reader maps onto numcodecs.
const FILTER_DEFLATE: u16 = 1;
const FILTER_SHUFFLE: u16 = 2;
const FILTER_FLETCHER32: u16 = 3;

/// What netCDF-C writes as the `NAME` of a dimension that has no coordinate variable.
const PURE_DIMENSION: &str = "This is a netCDF dimension but not a netCDF variable";

/// A dataset read from its sources, ready to publish.
#[derive(Debug, Clone)]
pub struct Indexed {
    /// The manifest (without a version: that is its hash).
    pub manifest: Manifest,
    /// Per array, in manifest order: its chunk table.
    pub tables: Vec<ArrayTable>,
    /// Absolute source URLs, for interchange formats.
    pub absolute_urls: Vec<String>,
    /// Warnings for the operator (skipped variables), each naming file and variable.
    pub warnings: Vec<String>,
    /// Objects the indexer computed (converted time values), by bucket key: written with the
    /// tables, named as sources by the manifest.
    pub inline: Vec<(String, Vec<u8>)>,
    /// What a rerun may take instead of reading the sources again (several sources only).
    pub kept: Option<Kept>,
    /// Sources whose metadata this run read (the others were kept from the last run).
    pub sources_read: usize,
}

impl Indexed {
    /// The stored chunks of array `name` (linear index, reference), as its table lists them.
    pub fn stored(&self, name: &str) -> &[(u64, ChunkRef)] {
        self.manifest
            .arrays
            .get_index_of(name)
            .and_then(|i| self.tables.get(i))
            .map_or(&[][..], |t| t.stored.as_slice())
    }
}

/// One array's chunk table, encoded and as a list.
#[derive(Debug, Clone)]
pub struct ArrayTable {
    /// The encoded table, as published.
    pub bytes: Vec<u8>,
    /// Stored chunks by linear index, ascending.
    pub stored: Vec<(u64, ChunkRef)>,
}

/// An array's metadata and stored chunks, or why it is skipped.
type ArrayOutcome = std::result::Result<(ArrayMeta, Vec<(u64, ChunkRef)>), String>;

/// One dimension of the netCDF data model.
#[derive(Debug, Clone)]
struct Dimension {
    name: String,
    len: u64,
}

/// A dataset of the file with the attributes the dimension logic needs.
struct Member {
    name: String,
    ds: Dataset,
    raw_attrs: HashMap<String, AttrValue>,
    shape: Vec<u64>,
}

impl Member {
    fn is_scale(&self) -> bool {
        self.raw_attrs
            .get("CLASS")
            .and_then(attrs::string)
            .is_some_and(|c| c == "DIMENSION_SCALE")
    }

    fn is_pure_dimension(&self) -> bool {
        self.is_scale()
            && self
                .raw_attrs
                .get("NAME")
                .and_then(attrs::string)
                .is_some_and(|n| n.starts_with(PURE_DIMENSION))
    }
}

/// How the re-encoding routes serve a dataset, and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The codec chunks are re-encoded with.
    pub codec: ServedCodec,
    /// Served chunk length per dimension name; other dimensions keep the source's chunking.
    pub chunks: BTreeMap<String, u64>,
    /// The platforms the bucket is served from: a served chunk over the smallest of their
    /// budgets is refused at index time.
    pub targets: Vec<Platform>,
    /// Whether the function serves it; `false` catalogues it only, its STAC item naming the
    /// original store or files.
    pub serve: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            codec: ServedCodec::default(),
            chunks: BTreeMap::new(),
            targets: vec![Platform::Native],
            serve: true,
        }
    }
}

impl ServeOptions {
    /// Parse `DIM=N[,DIM=N...]`.
    ///
    /// # Errors
    /// [`IndexError::Invalid`] for a malformed list or a zero length.
    pub fn parse_chunks(spec: &str) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for p in spec.split(',').filter(|p| !p.is_empty()) {
            let (dim, n) = p
                .split_once('=')
                .ok_or_else(|| IndexError::Invalid(format!("--chunks {p:?}: expected DIM=N")))?;
            let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                IndexError::Invalid(format!("--chunks {p:?}: N must be a positive integer"))
            })?;
            if out.insert(dim.to_owned(), n).is_some() {
                return Err(IndexError::Invalid(format!("--chunks names {dim:?} twice")));
            }
        }
        Ok(out)
    }

    /// Parse `PLATFORM[,PLATFORM...]` (`native`, `lambda`, `worker-free`, `worker-paid`).
    ///
    /// # Errors
    /// [`IndexError::Invalid`] naming an unknown platform.
    pub fn parse_targets(spec: &str) -> Result<Vec<Platform>> {
        let targets: Vec<Platform> = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Platform::parse(p).map_err(|e| IndexError::Invalid(format!("--target: {e}"))))
            .collect::<Result<_>>()?;
        if targets.is_empty() {
            return Err(IndexError::Invalid("--target names no platform".into()));
        }
        Ok(targets)
    }
}

/// Set whether the dataset is served and the served codec and grid of every array
/// (`--chunks`, else the reader's choice); refuse a served chunk that one of the platforms
/// served from would refuse on every request.
pub(crate) fn apply(indexed: &mut Indexed, options: &ServeOptions) -> Result<()> {
    indexed.manifest.catalog_only = !options.serve;
    let presets: Vec<_> = options.targets.iter().map(|p| p.preset()).collect();

    // Variables no request could name are left out, with the reason.
    let unservable: Vec<(usize, String, &str)> = indexed
        .manifest
        .arrays
        .keys()
        .enumerate()
        .filter_map(|(i, n)| cloudify_core::key::unservable_name(n).map(|why| (i, n.clone(), why)))
        .collect();
    for (i, name, why) in unservable.into_iter().rev() {
        indexed.manifest.arrays.shift_remove_index(i);
        indexed.tables.remove(i);
        indexed
            .warnings
            .push(format!("skipping variable {name:?}: {why}"));
        indexed.manifest.skipped.insert(name, json!(why));
    }
    let m = &mut indexed.manifest;
    m.codec = options.codec;
    for dim in options.chunks.keys() {
        if !m.arrays.values().any(|a| a.dims.contains(dim)) {
            return Err(IndexError::Invalid(format!(
                "--chunks names dimension {dim:?}, which no variable of {} has",
                m.id
            )));
        }
    }
    for (name, a) in m.arrays.iter_mut() {
        a.served_chunks = a
            .dims
            .iter()
            .zip(&a.served_chunks)
            .map(|(d, c)| options.chunks.get(d).copied().unwrap_or(*c))
            .collect();
        let served = cloudify_core::unpack::served(a);
        if let Some(why) = presets.iter().find_map(|p| p.refusal(&served)) {
            let file = match m.sources.as_slice() {
                [one] => one.url.clone(),
                all => format!("the {} sources of {}", all.len(), m.id),
            };
            return Err(IndexError::Variable {
                file,
                variable: name.clone(),
                fault: format!("{why}; choose smaller --chunks"),
            });
        }
    }
    Ok(())
}

/// Read the dataset `id` from its sources: NetCDF-3, else NetCDF4/HDF5; several sources only
/// with `concat`, the dimension they follow each other along. Sources `kept` from the last run
/// are taken from there instead of being read again.
///
/// # Errors
/// [`IndexError::Source`] for a missing, unreadable or non-NetCDF file, [`IndexError::Variable`]
/// for a variable with a filter no Zarr codec matches or that differs between sources,
/// [`IndexError::Invalid`] for options that do not fit; nothing is returned then.
pub fn read_dataset(
    id: &str,
    sources: &[SourceSpec],
    options: &ServeOptions,
    concat: Option<&Concat>,
    kept: &Kept,
) -> Result<Indexed> {
    if !cloudify_core::key::is_valid_id(id) {
        return Err(IndexError::Invalid(format!(
            "dataset id {id:?} must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    let (mut indexed, specs) = match (sources, concat) {
        ([], _) => {
            return Err(IndexError::Invalid(format!(
                "dataset {id}: no source given"
            )));
        }
        ([one], _) => {
            let mut indexed = read_one(one, id, 0)?;
            indexed.manifest.sources = vec![one.info()];
            indexed.absolute_urls = vec![one.absolute_url.clone()];
            (indexed, sources.to_vec())
        }
        (many, Some(how)) => crate::concat::concat(id, many, how, kept, |s, i| read_one(s, id, i))?,
        (many, None) => {
            return Err(IndexError::Invalid(format!(
                "dataset {id}: {} sources given; name the dimension they follow each other \
                 along with --concat-dim",
                many.len()
            )));
        }
    };
    apply(&mut indexed, options)?;
    crate::coords::summarise(&mut indexed, &specs)?;
    indexed.manifest.inputs = Some(crate::publish::inputs(sources, options, concat));
    Ok(indexed)
}

/// One source as a dataset of its own, its chunks naming it as source `index`.
fn read_one(source: &SourceSpec, id: &str, index: u32) -> Result<Indexed> {
    let mut head = [0u8; 4];
    if source.reader.size() >= 4 {
        source
            .reader
            .read_at(0, &mut head)
            .map_err(|e| IndexError::Source {
                file: source.url.clone(),
                fault: format!("cannot read: {e}"),
            })?;
    }
    if crate::netcdf3::is_netcdf3(&head) {
        crate::netcdf3::read(source, id, index)
    } else {
        SourceReader::open(source)?.read(id, index)
    }
}

struct SourceReader {
    file_name: String,
    file: File,
    /// The file's size, which every stored extent must lie within.
    size: u64,
}

impl SourceReader {
    fn open(source: &SourceSpec) -> Result<Self> {
        let fault = |fault: String| IndexError::Source {
            file: source.url.clone(),
            fault,
        };
        if source.reader.size() < 8 {
            return Err(fault(
                "not a NetCDF-3 or HDF5/NetCDF4 file (too short)".into(),
            ));
        }
        let file = File::from_source(HdfSource(source.reader.clone())).map_err(|e| {
            fault(format!(
                "neither NetCDF-3 nor a readable HDF5/NetCDF4 file: {e}"
            ))
        })?;
        Ok(Self {
            file_name: source.url.clone(),
            file,
            size: source.reader.size(),
        })
    }

    fn source_err(&self, fault: impl std::fmt::Display) -> IndexError {
        IndexError::Source {
            file: self.file_name.clone(),
            fault: fault.to_string(),
        }
    }

    fn var_err(&self, variable: &str, fault: impl std::fmt::Display) -> IndexError {
        IndexError::Variable {
            file: self.file_name.clone(),
            variable: variable.to_owned(),
            fault: fault.to_string(),
        }
    }

    fn read(&self, id: &str, source_index: u32) -> Result<Indexed> {
        let root = self.file.root();
        let group_attrs = root.attrs().map_err(|e| self.source_err(e))?;
        let mut members = Vec::new();
        for (name, ds) in root.iter_datasets().map_err(|e| self.source_err(e))? {
            let raw_attrs = ds.attrs().map_err(|e| self.var_err(&name, e))?;
            let shape = ds.shape().map_err(|e| self.var_err(&name, e))?;
            members.push(Member {
                name,
                ds,
                raw_attrs,
                shape,
            });
        }
        let dims = dimensions(&members);
        let mut manifest = Manifest::new(id, attrs::visible(&group_attrs, &[]));
        let mut tables = Vec::new();
        let mut warnings = Vec::new();
        for m in members.iter().filter(|m| !m.is_pure_dimension()) {
            let axes = axes_of(m, &dims);
            match self.array(m, &axes, source_index, tables.len())? {
                Ok((meta, stored)) => {
                    let bytes = encode_table(&stored);
                    manifest.arrays.insert(m.name.clone(), meta);
                    tables.push(ArrayTable { bytes, stored });
                }
                Err(reason) => {
                    warnings.push(format!(
                        "{}: skipping variable {:?}: {reason}",
                        self.file_name, m.name
                    ));
                    manifest.skipped.insert(m.name.clone(), json!(reason));
                }
            }
        }
        Ok(Indexed {
            manifest,
            tables,
            absolute_urls: Vec::new(),
            warnings,
            inline: Vec::new(),
            kept: None,
            sources_read: 1,
        })
    }

    /// One variable: `Ok(Ok(..))` indexed, `Ok(Err(reason))` skipped, `Err` fatal.
    fn array(
        &self,
        m: &Member,
        axes: &[Dimension],
        source_index: u32,
        position: usize,
    ) -> Result<ArrayOutcome> {
        let ds = &m.ds;
        let datatype = ds.datatype().map_err(|e| self.var_err(&m.name, e))?;
        let Some(dtype) = typestr(&datatype) else {
            return Ok(Err(format!("{} has no Zarr v2 dtype", describe(&datatype))));
        };
        // A variable shorter than its (unlimited) dimension has the dimension's length.
        let shape: Vec<u64> = m
            .shape
            .iter()
            .zip(axes)
            .map(|(s, d)| (*s).max(d.len))
            .collect();
        let layout = ds.layout().map_err(|e| self.var_err(&m.name, e))?;
        let (chunks, located) = match layout {
            Layout::Chunked { chunk_shape, .. } => {
                let list = match ds.chunks() {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(format!("its chunk index cannot be read: {e}"))),
                };
                let located: Vec<(Vec<u64>, ChunkRef)> = list
                    .into_iter()
                    .map(|c| {
                        let idx = c
                            .offset
                            .iter()
                            .zip(&chunk_shape)
                            .map(|(o, cs)| o / cs.max(&1))
                            .collect();
                        let r = ChunkRef {
                            source: source_index,
                            filter_mask: c.filter_mask,
                            offset: c.address,
                            length: c.storage_size,
                        };
                        (idx, r)
                    })
                    .collect();
                (chunk_shape, located)
            }
            Layout::Contiguous { address, size } => {
                let located = address
                    .map(|a| {
                        let r = ChunkRef {
                            source: source_index,
                            filter_mask: 0,
                            offset: a,
                            length: size,
                        };
                        (vec![0; shape.len()], r)
                    })
                    .into_iter()
                    .collect();
                (m.shape.clone(), located)
            }
            Layout::Compact { .. } => return Ok(Err("compact storage is not served yet".into())),
            _ => return Ok(Err("virtual datasets are not served".into())),
        };
        let chunks: Vec<u64> = chunks.into_iter().map(|c| c.max(1)).collect();
        let codecs = self.codecs(m, dtype)?;
        let unpacked_dtype = attrs::unpacked_dtype(dtype, &m.raw_attrs);
        let mut meta = ArrayMeta {
            shape,
            dims: axes.iter().map(|d| d.name.clone()).collect(),
            dtype,
            served_chunks: chunks.clone(),
            chunks,
            fill_value: Value::Null,
            attrs: attrs::visible(
                &m.raw_attrs,
                if m.is_scale() {
                    &["CLASS", "NAME"]
                } else {
                    &[]
                },
            ),
            codecs,
            table: format!("tables/{position}.bin"),
            records: 0,
            table_records: 0,
            stored_chunks: 0,
            kerchunk_excluded: None,
            unpacked_dtype,
            unpack: None,
            irregular: None,
        };
        meta.records = meta.grid_records().ok_or_else(|| {
            self.var_err(
                &m.name,
                format!("its shape {:?} has more than 2^64 chunks", meta.shape),
            )
        })?;
        let size = self.size;
        let mut stored = Vec::with_capacity(located.len());
        for (idx, r) in located {
            // What the header says is stored must be in the file: a truncated file is an error
            // here, not a 502 on every read.
            if r.offset.checked_add(r.length).is_none_or(|end| end > size) {
                return Err(self.var_err(
                    &m.name,
                    format!(
                        "its data at bytes {}+{} lies past the end of the file ({size} bytes): \
                         truncated?",
                        r.offset, r.length
                    ),
                ));
            }
            let linear = meta.linear_index(&idx).ok_or_else(|| {
                self.var_err(&m.name, format!("chunk at {idx:?} lies outside the shape"))
            })?;
            stored.push((linear, r));
        }
        stored.sort_by_key(|(i, _)| *i);
        meta.stored_chunks = stored.len() as u64;
        meta.table_records = table_len(&stored);
        if let Some(why) = crate::bounds::too_sparse(meta.table_records, size) {
            return Ok(Err(why));
        }
        meta.fill_value = fill_value(m, &meta, &datatype, stored.len() as u64 != meta.records);
        // kerchunk's Parquet references hold a row per chunk of the grid, written or not.
        meta.kerchunk_excluded = kerchunk_exclusion(&meta, &stored)
            .or_else(|| crate::bounds::too_sparse(meta.records, size));
        Ok(Ok((meta, stored)))
    }

    fn codecs(&self, m: &Member, dtype: DataType) -> Result<Vec<Codec>> {
        let item = dtype.item_size();
        m.ds.filter_pipeline()
            .into_iter()
            .map(|f| match f.id {
                FILTER_DEFLATE => Ok(Codec::Zlib {
                    level: f.client_data.first().copied().unwrap_or(6),
                }),
                FILTER_SHUFFLE => Ok(Codec::Shuffle { elementsize: item }),
                FILTER_FLETCHER32 => Ok(Codec::Fletcher32),
                other => Err(self.var_err(
                    &m.name,
                    format!(
                        "HDF5 filter {other} ({}) has no supported Zarr codec",
                        f.name.as_deref().unwrap_or("unnamed")
                    ),
                )),
            })
            .collect()
    }
}

/// NumPy type string of an HDF5 datatype, or `None` for kinds Zarr v2 cannot describe here.
fn typestr(dt: &Datatype) -> Option<DataType> {
    let order = |b: &DatatypeByteOrder, size: u32| match (b, size) {
        (_, 1) => Some('|'),
        (DatatypeByteOrder::LittleEndian, _) => Some('<'),
        (DatatypeByteOrder::BigEndian, _) => Some('>'),
        _ => None,
    };
    match dt {
        Datatype::FixedPoint {
            size,
            byte_order,
            layout,
        } if matches!(size, 1 | 2 | 4 | 8) => Some(format!(
            "{}{}{size}",
            order(byte_order, *size)?,
            if layout.signed { 'i' } else { 'u' }
        )),
        Datatype::FloatingPoint {
            size, byte_order, ..
        } if matches!(size, 2 | 4 | 8) => Some(format!("{}f{size}", order(byte_order, *size)?)),
        Datatype::String { size, .. } => Some(format!("|S{size}")),
        _ => None,
    }
    .and_then(|s| DataType::parse(&s).ok())
}

/// A datatype's kind in words, for warnings.
fn describe(dt: &Datatype) -> &'static str {
    match dt {
        Datatype::VariableLength {
            is_string: true, ..
        } => "a variable-length string type",
        Datatype::VariableLength { .. } => "a variable-length sequence type",
        Datatype::Compound { .. } => "a compound type",
        Datatype::Reference { .. } => "a reference type",
        Datatype::Enumeration { .. } => "an enumeration type",
        Datatype::Opaque { .. } => "an opaque type",
        Datatype::Array { .. } => "an array type",
        _ => "this datatype",
    }
}

/// The dimensions of the file in netCDF-4 dimension-id order: from `_Netcdf4Dimid` on the
/// dimension scales, each as long as the longest variable along it.
fn dimensions(members: &[Member]) -> BTreeMap<i64, Dimension> {
    let mut dims = BTreeMap::new();
    let mut next_id = members
        .iter()
        .filter_map(|m| m.raw_attrs.get("_Netcdf4Dimid").and_then(attrs::integers))
        .flatten()
        .max()
        .map_or(0, |m| m + 1);
    for m in members
        .iter()
        .filter(|m| m.is_scale() && m.shape.len() == 1)
    {
        let id = match m
            .raw_attrs
            .get("_Netcdf4Dimid")
            .and_then(attrs::integers)
            .and_then(|v| v.first().copied())
        {
            Some(id) => id,
            None => {
                next_id += 1;
                next_id - 1
            }
        };
        dims.insert(
            id,
            Dimension {
                name: m.name.clone(),
                len: m.shape[0],
            },
        );
    }
    // Unlimited dimensions are as long as their longest variable.
    for m in members {
        if let Some(ids) = m
            .raw_attrs
            .get("_Netcdf4Coordinates")
            .and_then(attrs::integers)
        {
            for (id, len) in ids.iter().zip(&m.shape) {
                if let Some(d) = dims.get_mut(id) {
                    d.len = d.len.max(*len);
                }
            }
        }
    }
    dims
}

/// The dimensions of one variable: `_Netcdf4Coordinates` when netCDF-C wrote it, the scale
/// itself for a coordinate variable, else the scale of the same length when exactly one has it,
/// else a phony dimension named like h5netcdf's.
fn axes_of(m: &Member, dims: &BTreeMap<i64, Dimension>) -> Vec<Dimension> {
    if let Some(ids) = m
        .raw_attrs
        .get("_Netcdf4Coordinates")
        .and_then(attrs::integers)
        && ids.len() == m.shape.len()
        && let Some(found) = ids
            .iter()
            .map(|i| dims.get(i).cloned())
            .collect::<Option<Vec<_>>>()
    {
        return found;
    }
    if m.is_scale() && m.shape.len() == 1 {
        return vec![Dimension {
            name: m.name.clone(),
            len: dims
                .values()
                .find(|d| d.name == m.name)
                .map_or(m.shape[0], |d| d.len),
        }];
    }
    m.shape
        .iter()
        .map(|len| {
            let same: Vec<&Dimension> = dims.values().filter(|d| d.len == *len).collect();
            match same.as_slice() {
                [one] => (*one).clone(),
                _ => Dimension {
                    name: format!("phony_dim_{len}"),
                    len: *len,
                },
            }
        })
        .collect()
}

/// Zarr v2 `fill_value`: `_FillValue` when the variable declares one; else, where chunks are
/// absent, the HDF5 fill those chunks read as (when it is not HDF5's implicit zero); else none,
/// so that no legitimate value is masked by xarray.
fn fill_value(m: &Member, a: &ArrayMeta, dt: &Datatype, has_absent: bool) -> Value {
    let is_float = a.dtype.is_float();
    let as_json = |v: &AttrValue| -> Option<Value> {
        let j = attrs::to_json(v)?;
        match j {
            Value::Array(mut a) if a.len() == 1 => a.pop(),
            Value::Number(_) => Some(j),
            Value::String(ref s)
                if is_float && ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) =>
            {
                Some(j)
            }
            _ => None,
        }
    };
    if !a.dtype.is_numeric() {
        return m
            .raw_attrs
            .get("_FillValue")
            .and_then(attrs::string)
            .map_or(Value::Null, |text| a.dtype.text_fill(&text));
    }
    if let Some(v) = m.raw_attrs.get("_FillValue").and_then(as_json) {
        return v;
    }
    if !has_absent {
        return Value::Null;
    }
    let hdf5_fill = if is_float {
        m.ds.fill_value::<f64>().ok().flatten().map(attrs::float)
    } else if matches!(dt, Datatype::FixedPoint { layout, .. } if !layout.signed) {
        m.ds.fill_value::<u64>().ok().flatten().map(|v| json!(v))
    } else {
        m.ds.fill_value::<i64>().ok().flatten().map(|v| json!(v))
    };
    match hdf5_fill {
        Some(v) if v != json!(0) && v != json!(0.0) => v,
        _ => Value::Null,
    }
}

/// Why stock zarr-python cannot decode this array's stored chunks as they are, if it cannot.
fn kerchunk_exclusion(a: &ArrayMeta, stored: &[(u64, ChunkRef)]) -> Option<String> {
    if let Some((i, c)) = stored.iter().find(|(_, c)| c.filter_mask != 0) {
        return Some(format!(
            "chunk #{i} skips filters (mask {:#x}), so its codecs differ from the array's",
            c.filter_mask
        ));
    }
    let checksum_at = a.codecs.iter().position(|c| *c == Codec::Fletcher32)?;
    a.codecs[checksum_at..].iter().find_map(|c| match c {
        Codec::Shuffle { elementsize } if !matches!(elementsize, 1 | 2 | 4) => Some(format!(
            "fletcher32 precedes shuffle on {elementsize}-byte elements: the shuffled stream is \
             not a whole number of elements, which numcodecs' Shuffle rejects"
        )),
        _ => None,
    })
}
