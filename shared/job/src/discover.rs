//! Datasets found rather than listed: every Icechunk repository and Zarr store under a prefix
//! (an `s3://` prefix, listed page by page, an `http(s)://` one whose server answers S3
//! listings, or a folder), and NetCDF files there grouped into datasets by a filename pattern.
//!
//! ```toml
//! [[discover]]
//! under = "s3://bucket/models/"      # or https://…/models/, or a folder (relative to this file)
//! files = "{variable}_{table}_{model}_{experiment}_{member}_{grid}_{period}.nc"
//! id = "{model}.{experiment}.{variable}"   # optional; default: every field but the last
//! concat_dim = "time"                # the files of one dataset follow each other along it
//! collection = "cmip6"               # optional
//! serve = false                      # optional: catalogued only (as a dataset's `serve`)
//! ```
//!
//! A store's dataset id is its folder's name without `.zarr` or `.icechunk`; `store_id`
//! (with `{name}` and `{parent}`, the folder above it) overrides it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, anyhow};
use cloudify_core::ReadStore;
use cloudify_core::registry::DISCOVERED_KEY as RECORD_KEY;
use cloudify_core::store::{Precondition, ReadStoreExt, WriteStore};
use serde::{Deserialize, Serialize};

use crate::Job;

/// One `[[discover]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Where to look: `s3://bucket/prefix/` or a folder.
    pub under: String,
    /// A pattern of `{field}`s and literal text that NetCDF files' paths below `under` match;
    /// none: only stores are found.
    pub files: Option<String>,
    /// The id of the dataset a file belongs to, from the pattern's fields.
    pub id: Option<String>,
    /// The id of a store's dataset, from `{name}` and `{parent}`.
    pub store_id: Option<String>,
    /// What the files of one dataset follow each other along (default `time`).
    pub concat_dim: Option<String>,
    /// The collection of the datasets found.
    pub collection: Option<String>,
    /// The codec of their re-encoding routes.
    pub codec: Option<String>,
    /// Their served chunks.
    pub chunks: Option<String>,
    /// `false`: catalogued only (as a dataset's `serve`).
    pub serve: Option<bool>,
}

/// A dataset found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its id.
    pub id: String,
    /// Its sources: one store, or files in path order.
    pub sources: Vec<String>,
    /// Whether it is a store (else files, concatenated).
    pub store: bool,
}

/// The datasets under `rule.under` (a folder relative to `base`).
///
/// # Errors
/// When the prefix cannot be listed, a pattern or id template is malformed, an id is not a
/// valid dataset id, or two datasets get one id.
pub async fn discover(rule: &Rule, base: &Path, job: &Job) -> anyhow::Result<Vec<Found>> {
    let (root, keys) = list(&rule.under, base, job).await?;
    let stores = store_roots(&keys);
    let mut found = Vec::new();
    for dir in &stores {
        let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
        let stem = [".icechunk", ".zarr"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .unwrap_or(name);
        let fields = BTreeMap::from([
            ("name", stem),
            ("parent", parent.rsplit('/').next().unwrap_or("")),
        ]);
        let id = fill(rule.store_id.as_deref().unwrap_or("{name}"), &fields)?;
        // Over HTTP a store is a prefix only by its slash (the name alone is asked for as a file).
        let slash = if root.starts_with("http") { "/" } else { "" };
        found.push(Found {
            id,
            sources: vec![format!("{root}{dir}{slash}")],
            store: true,
        });
    }
    if let Some(pattern) = &rule.files {
        let (matcher, names) = compile(pattern)?;
        let default_id = match names.split_last() {
            Some((_, [])) | None => "{_}".to_owned(),
            Some((_, rest)) => rest
                .iter()
                .map(|n| format!("{{{n}}}"))
                .collect::<Vec<_>>()
                .join("_"),
        };
        let template = rule.id.as_deref().unwrap_or(&default_id);
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &keys {
            if stores.iter().any(|s| key.starts_with(&format!("{s}/"))) {
                continue;
            }
            let Some(caps) = matcher.captures(key) else {
                continue;
            };
            let mut fields: BTreeMap<&str, &str> = (names.iter())
                .filter_map(|n| Some((n.as_str(), caps.name(n)?.as_str())))
                .collect();
            fields.insert("_", key.rsplit('/').next().unwrap_or(key));
            let id = fill(template, &fields)
                .with_context(|| format!("{}: discover id {template:?}", rule.under))?;
            groups.entry(id).or_default().push(format!("{root}{key}"));
        }
        found.extend(groups.into_iter().map(|(id, sources)| Found {
            id,
            sources,
            store: false,
        }));
    }
    let mut seen = BTreeSet::new();
    for f in &found {
        if !cloudify_core::key::is_valid_id(&f.id) {
            return Err(anyhow!(
                "{}: {:?} (of {}) is not a dataset id: 1-128 characters of [A-Za-z0-9._-]",
                rule.under,
                f.id,
                f.sources[0]
            ));
        }
        if !seen.insert(&f.id) {
            return Err(anyhow!(
                "{}: two datasets found are both {:?}; give the rule an id template that \
                 tells them apart",
                rule.under,
                f.id
            ));
        }
    }
    Ok(found)
}

/// Every key below `under` (relative to it), and the prefix that makes a key a source again.
async fn list(under: &str, base: &Path, job: &Job) -> anyhow::Result<(String, Vec<String>)> {
    if let Some(rest) = under.strip_prefix("s3://") {
        let prefix = format!("{}/", rest.trim_end_matches('/'));
        let listed = (cloudify_stores::s3_sources().await.list_meta(&prefix).await)
            .map_err(|e| anyhow!("{under}: {}", e.internal()))?;
        let relative = (listed.iter())
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        job.remember(
            listed
                .into_iter()
                .map(|(k, meta)| (format!("s3://{k}"), meta)),
        );
        return Ok((format!("s3://{prefix}"), relative));
    }
    if under.starts_with("http://") || under.starts_with("https://") {
        let root = format!("{}/", under.trim_end_matches('/'));
        let keys = crate::listing::list(&root, job).await?;
        return Ok((root, keys));
    }
    if under.contains("://") {
        return Err(anyhow!(
            "{under}: discovery lists a folder, an s3:// prefix or an http(s):// one that \
             answers S3 listings"
        ));
    }
    let dir = base.join(under);
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}: cannot open", dir.display()))?;
    let keys = (cloudify_stores::LocalStore::new(&dir).list("").await)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    Ok((format!("{}/", dir.display()), keys))
}

/// The folders (relative keys) that are stores: holding an Icechunk repository's `repo`
/// object or a Zarr root's metadata, and inside no other store.
fn store_roots(keys: &[String]) -> BTreeSet<String> {
    let marks = ["repo", "zarr.json", ".zgroup", ".zmetadata", ".zarray"];
    let mut candidates: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.rsplit_once('/'))
        .filter(|(_, name)| marks.contains(name))
        .map(|(dir, _)| dir)
        .collect();
    // Parents before children: a store's own groups and arrays are not stores.
    candidates.sort_by_key(|d| (d.matches('/').count(), *d));
    let mut roots = BTreeSet::new();
    for dir in candidates {
        let inside = roots
            .iter()
            .any(|r: &String| dir == r || dir.starts_with(&format!("{r}/")));
        if !inside {
            roots.insert(dir.to_owned());
        }
    }
    roots
}

/// A piece of a pattern or template: literal text, or a `{field}`.
enum Piece<'t> {
    Text(&'t str),
    Field(&'t str),
}

/// The pieces of `template`, in order.
fn pieces(template: &str) -> anyhow::Result<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push(Piece::Text(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| anyhow!("{template:?}: a `{{` is never closed"))?;
        out.push(Piece::Field(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// A filename pattern as a regular expression, and its fields in order.
fn compile(pattern: &str) -> anyhow::Result<(regex::Regex, Vec<String>)> {
    let fail = |why: String| anyhow!("discover files {pattern:?}: {why}");
    let mut re = String::from("^");
    let mut names: Vec<String> = Vec::new();
    for piece in pieces(pattern).map_err(|e| anyhow!("discover files {e}"))? {
        match piece {
            Piece::Text(text) => re.push_str(&regex::escape(text)),
            Piece::Field(name) => {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(fail(format!(
                        "{{{name}}} is not a field name (letters, digits, _)"
                    )));
                }
                if names.iter().any(|n| n == name) {
                    return Err(fail(format!("{{{name}}} twice")));
                }
                // A field is one or more characters of a path segment, as few as the rest
                // allows.
                re.push_str(&format!("(?P<{name}>[^/]+?)"));
                names.push(name.to_owned());
            }
        }
    }
    re.push('$');
    let matcher = regex::Regex::new(&re).map_err(|e| fail(e.to_string()))?;
    Ok((matcher, names))
}

/// `template` with each `{field}` replaced by its value.
fn fill(template: &str, fields: &BTreeMap<&str, &str>) -> anyhow::Result<String> {
    let mut out = String::new();
    for piece in pieces(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field(name) => out.push_str(fields.get(name).ok_or_else(|| {
                let known: Vec<&str> = fields.keys().copied().filter(|k| *k != "_").collect();
                anyhow!(
                    "{template:?}: no field {{{name}}} (there are {})",
                    known.join(", ")
                )
            })?),
        }
    }
    Ok(out)
}

/// The datasets found under each prefix, as the last run recorded them (at
/// [`RECORD_KEY`]): the ones a prefix no longer gives are taken out of `index.json`, their
/// objects left for `cloudify gc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Dataset ids by the `under` that found them.
    pub found: BTreeMap<String, BTreeSet<String>>,
}

impl Record {
    /// The record in `bucket`, empty when there is none.
    ///
    /// # Errors
    /// When the bucket cannot be read or the record is not one.
    pub async fn load(bucket: &dyn ReadStore) -> anyhow::Result<Self> {
        match bucket.get(RECORD_KEY).await? {
            None => Ok(Self::default()),
            Some(o) => serde_json::from_slice(&o.bytes)
                .with_context(|| format!("{RECORD_KEY}: not a discovery record")),
        }
    }

    /// Write the record into `bucket`.
    ///
    /// # Errors
    /// When the bucket cannot be written.
    pub async fn save(&self, bucket: &dyn WriteStore) -> anyhow::Result<()> {
        let mut body = serde_json::to_vec_pretty(self)?;
        body.push(b'\n');
        bucket
            .put(RECORD_KEY, body.into(), Precondition::None)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn stores_are_found_among_other_objects_and_not_inside_each_other() {
        let roots = store_roots(&keys(&[
            "a/gfs.icechunk/repo",
            "a/gfs.icechunk/chunks/X1",
            "a/gfs.icechunk/snapshots/Y",
            "b/v3.zarr/zarr.json",
            "b/v3.zarr/tas/zarr.json",
            "b/v3.zarr/tas/c/0/0",
            "c/v2.zarr/.zgroup",
            "c/v2.zarr/.zmetadata",
            "c/v2.zarr/tas/.zarray",
            "d/tas_Amon_X_y.nc",
            "e/readme.txt",
        ]));
        let want = ["a/gfs.icechunk", "b/v3.zarr", "c/v2.zarr"];
        assert_eq!(roots, want.iter().map(|s| (*s).to_owned()).collect());
    }

    #[test]
    fn cmip6_names_group_by_all_but_the_period() {
        let (m, names) = compile("{variable}_{table}_{model}_{period}.nc").unwrap();
        assert_eq!(names, ["variable", "table", "model", "period"]);
        let caps = m
            .captures("tas_Amon_MPI-ESM1-2-LR_185001-186912.nc")
            .unwrap();
        assert_eq!(&caps["model"], "MPI-ESM1-2-LR");
        assert_eq!(&caps["period"], "185001-186912");
        assert!(m.captures("sub/tas_Amon_M_1850.nc").is_none());
        assert!(m.captures("tas_Amon_M_1850.nc4").is_none());
        let fields = BTreeMap::from([("variable", "tas"), ("model", "M")]);
        assert_eq!(
            fill("{model}.{variable}", &fields).ok().as_deref(),
            Some("M.tas")
        );
        let err = fill("{member}", &fields).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("no field {member}")));
        assert!(compile("{a}{a}").is_err() && compile("{a").is_err() && compile("{}").is_err());
    }
}
