//! STAC 1.1 from manifests alone (no data is read): items with the datacube, Zarr and
//! xarray-assets extensions, collections with extents computed from their items, and a
//! self-contained static catalog with relative links, built on the `stac` crate's types.
//!
//! The crate is pinned at 0.14, its last version without a required `cql2` (from 0.15 on,
//! about 190 more crates and four times the compile time, in every function's build); these
//! documents use none of what came later.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use stac::{Asset, Bbox, Catalog, Collection, Link};

use crate::cftime::{Calendar, Units};
use crate::manifest::{ArrayMeta, CoordSummary, IcechunkRepo, Manifest};

const DATACUBE: &str = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json";
const ZARR: &str = "https://stac-extensions.github.io/zarr/v1.1.0/schema.json";
const XARRAY_ASSETS: &str = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json";
const STORAGE: &str = "https://stac-extensions.github.io/storage/v2.0.0/schema.json";
/// The media type of an Icechunk repository, as xpystac opens it.
pub const ICECHUNK: &str = "application/vnd.zarr+icechunk";
/// The region of an `s3://` URL whose store named none.
const DEFAULT_REGION: &str = "us-east-1";

/// Key of the catalog configuration kept in the bucket.
pub const CONFIG_KEY: &str = "stac/config.json";

/// Key of the static catalog's root in the bucket.
pub const CATALOG_KEY: &str = "stac/catalog.json";

/// Key of a collection in the bucket.
pub fn collection_key(collection: &str) -> String {
    format!("stac/{collection}/collection.json")
}

/// Key of an item in the bucket.
pub fn item_key(collection: &str, id: &str) -> String {
    format!("stac/{collection}/{id}/{id}.json")
}

/// Descriptive fields of a catalog and its collections (the catalog configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogInfo {
    /// Catalog title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Catalog description.
    #[serde(default = "default_description")]
    pub description: String,
    /// The function's public URL, used in asset hrefs.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Collections by id.
    #[serde(default)]
    pub collections: Map<String, Value>,
}

fn default_title() -> String {
    "cloudify".into()
}
fn default_description() -> String {
    "NetCDF/HDF5 datasets served as Zarr by cloudify".into()
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}

impl Default for CatalogInfo {
    fn default() -> Self {
        Self {
            title: default_title(),
            description: default_description(),
            public_url: default_public_url(),
            collections: Map::new(),
        }
    }
}

/// What a dimension is, from its coordinate's attributes (CF conventions §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    X,
    Y,
    Z,
    T,
    Other,
}

fn attr<'a>(a: &'a ArrayMeta, name: &str) -> Option<&'a str> {
    a.attrs.get(name).and_then(Value::as_str)
}

fn axis_of(name: &str, a: Option<&ArrayMeta>) -> Axis {
    let Some(a) = a else { return Axis::Other };
    let standard = attr(a, "standard_name").unwrap_or("");
    let units = attr(a, "units").unwrap_or("").to_ascii_lowercase();
    let axis = attr(a, "axis").unwrap_or("").to_ascii_uppercase();
    let lower = name.to_ascii_lowercase();
    if standard == "longitude"
        || units.starts_with("degrees_east")
        || units == "degree_east"
        || axis == "X" && matches!(lower.as_str(), "lon" | "longitude")
        || matches!(lower.as_str(), "lon" | "longitude")
    {
        Axis::X
    } else if standard == "latitude"
        || units.starts_with("degrees_north")
        || units == "degree_north"
        || matches!(lower.as_str(), "lat" | "latitude")
    {
        Axis::Y
    } else if axis == "T" || standard == "time" || Units::parse(&units).is_some() {
        Axis::T
    } else if axis == "Z"
        || a.attrs.contains_key("positive")
        || matches!(
            standard,
            "air_pressure" | "height" | "depth" | "altitude" | "model_level_number"
        )
    {
        Axis::Z
    } else {
        Axis::Other
    }
}

/// The variable holding a horizontal coordinate: a dimension coordinate on that axis, else a
/// 2-D coordinate named in a `coordinates` attribute.
fn horizontal(m: &Manifest, want: Axis) -> Option<(&str, &CoordSummary)> {
    m.coords
        .iter()
        .filter(|(n, _)| {
            m.arrays
                .get(*n)
                .is_some_and(|a| axis_of(n, Some(a)) == want)
        })
        .min_by_key(|(n, _)| m.arrays.get(*n).map_or(usize::MAX, |a| a.dims.len()))
        .map(|(n, s)| (n.as_str(), s))
}

/// Map a longitude to [-180, 180).
fn wrap(lon: f64) -> f64 {
    (lon + 180.0).rem_euclid(360.0) - 180.0
}

/// `[west, south, east, north]` from the lat/lon coordinates, `None` without them. Longitudes
/// in 0-360 map to -180-180; a grid covering the whole circle is [-180, 180]; latitudes past
/// a pole (a staggered grid's edges) stop at it, as map clients (STAC Browser) require.
pub fn bbox(m: &Manifest) -> Option<[f64; 4]> {
    let (_, lon) = horizontal(m, Axis::X)?;
    let (_, lat) = horizontal(m, Axis::Y)?;
    let (west, east) = west_east(lon);
    let pole = |v: f64| v.clamp(-90.0, 90.0);
    Some([west, pole(lat.min), east, pole(lat.max)])
}

/// West and east bounds of longitudes in -180-180 (west > east when crossing 180).
fn west_east(lon: &CoordSummary) -> (f64, f64) {
    let spacing = lon.steps.map_or(0.0, |(_, hi)| hi.abs());
    if lon.max - lon.min + spacing >= 360.0 - 1e-6 {
        (-180.0, 180.0)
    } else if lon.max > 180.0 || lon.min < -180.0 {
        (wrap(lon.min), wrap(lon.max))
    } else {
        (lon.min, lon.max)
    }
}

/// The footprint of a bbox: a polygon, or two split at 180° when it crosses the antimeridian
/// (west > east), as GeoJSON (RFC 7946 §3.1.9) asks.
fn geometry([w, s, e, n]: [f64; 4]) -> Value {
    let ring = |w: f64, e: f64| json!([[[w, s], [e, s], [e, n], [w, n], [w, s]]]);
    if w > e {
        json!({ "type": "MultiPolygon", "coordinates": [ring(w, 180.0), ring(-180.0, e)] })
    } else {
        json!({ "type": "Polygon", "coordinates": ring(w, e) })
    }
}

/// The time coordinate: its summary, units and calendar.
fn time(m: &Manifest) -> Option<(&str, &CoordSummary, Units, Calendar)> {
    m.coords.iter().find_map(|(n, s)| {
        let a = m.arrays.get(n)?;
        let units = Units::parse(attr(a, "units")?)?;
        let calendar = Calendar::parse(attr(a, "calendar"))?;
        Some((n.as_str(), s, units, calendar))
    })
}

/// `(start, end)` of the time coordinate as RFC 3339, in its own calendar.
pub fn interval(m: &Manifest) -> Option<(String, String)> {
    let (_, s, units, cal) = time(m)?;
    Some((
        units.decode(s.min, cal)?.rfc3339(),
        units.decode(s.max, cal)?.rfc3339(),
    ))
}

/// An ISO 8601 duration for a regular step, `None` when irregular.
fn duration(steps: (f64, f64), seconds_per_unit: f64) -> Option<String> {
    let (lo, hi) = (steps.0 * seconds_per_unit, steps.1 * seconds_per_unit);
    let day = 86_400.0;
    if lo >= 28.0 * day && hi <= 31.0 * day {
        return Some("P1M".into());
    }
    if lo >= 365.0 * day && hi <= 366.0 * day {
        return Some("P1Y".into());
    }
    if (hi - lo).abs() > 1e-6 || lo <= 0.0 {
        return None;
    }
    Some(if lo % day == 0.0 {
        format!("P{}D", lo / day)
    } else if lo % 3600.0 == 0.0 {
        format!("PT{}H", lo / 3600.0)
    } else {
        format!("PT{lo}S")
    })
}

fn description(a: &ArrayMeta) -> Option<&str> {
    attr(a, "long_name").or_else(|| attr(a, "standard_name"))
}

/// The datacube extension's `cube:dimensions`.
fn dimensions(m: &Manifest) -> Map<String, Value> {
    let mut out = Map::new();
    for dim in m.arrays.values().flat_map(|a| a.dims.iter()) {
        if out.contains_key(dim) {
            continue;
        }
        let coord = m.arrays.get(dim).filter(|a| a.dims.len() == 1);
        let summary = coord.and_then(|_| m.coords.get(dim));
        let mut d = Map::new();
        match (axis_of(dim, coord), summary) {
            (Axis::T, Some(s)) => {
                d.insert("type".into(), json!("temporal"));
                if let Some((_, _, units, cal)) = time(m).filter(|(n, ..)| n == dim) {
                    let when = |v| units.decode(v, cal).map(|t| t.rfc3339());
                    d.insert("extent".into(), json!([when(s.min), when(s.max)]));
                    if let Some(steps) = s.steps {
                        d.insert(
                            "step".into(),
                            json!(duration(steps, units.seconds_per_unit)),
                        );
                    }
                    let mut text = format!("time, {} calendar", cal.name());
                    if !cal.is_gregorian() {
                        text.push_str(
                            "; dates are written as Gregorian dates with the same year, month, \
                             day and time, clamped to the month's last valid day",
                        );
                    }
                    d.insert("description".into(), json!(text));
                } else {
                    d.insert("extent".into(), json!([null, null]));
                }
            }
            (axis @ (Axis::X | Axis::Y | Axis::Z), Some(s)) => {
                d.insert("type".into(), json!("spatial"));
                let name = match axis {
                    Axis::X => "x",
                    Axis::Y => "y",
                    _ => "z",
                };
                d.insert("axis".into(), json!(name));
                let (lo, hi) = match axis {
                    Axis::X => west_east(s),
                    _ => (s.min, s.max),
                };
                d.insert("extent".into(), json!([lo, hi]));
                if let Some((a, b)) = s.steps.filter(|(a, b)| (a - b).abs() < 1e-9) {
                    d.insert("step".into(), json!((a + b) / 2.0));
                }
                if axis == Axis::Z
                    && let Some(u) = coord.and_then(|a| attr(a, "units"))
                {
                    d.insert("unit".into(), json!(u));
                }
            }
            (_, Some(s)) => {
                d.insert("type".into(), json!(dim));
                match &s.values {
                    Some(v) => d.insert("values".into(), json!(v)),
                    None => d.insert("extent".into(), json!([s.min, s.max])),
                };
            }
            (_, None) => {
                let len = m
                    .arrays
                    .values()
                    .find_map(|a| a.dims.iter().position(|x| x == dim).map(|i| a.shape[i]))
                    .unwrap_or(0);
                d.insert("type".into(), json!("index"));
                d.insert("extent".into(), json!([0, len.saturating_sub(1)]));
                d.insert(
                    "description".into(),
                    json!(format!("{dim}: a dimension without coordinate values")),
                );
            }
        }
        if let Some(text) = coord.and_then(description)
            && !d.contains_key("description")
        {
            d.insert("description".into(), json!(text));
        }
        out.insert(dim.clone(), Value::Object(d));
    }
    out
}

/// The datacube extension's `cube:variables`: every array but the dimension coordinates.
fn variables(m: &Manifest) -> Map<String, Value> {
    let auxiliary: Vec<&str> = m
        .arrays
        .values()
        .flat_map(|a| {
            attr(a, "coordinates")
                .into_iter()
                .flat_map(str::split_whitespace)
                .chain(attr(a, "bounds"))
        })
        .collect();
    m.arrays
        .iter()
        .filter(|(n, a)| !(a.dims.len() == 1 && a.dims[0] == **n))
        .map(|(n, a)| {
            let mut v = Map::new();
            v.insert("dimensions".into(), json!(a.dims));
            let kind = if auxiliary.contains(&n.as_str()) {
                "auxiliary"
            } else {
                "data"
            };
            v.insert("type".into(), json!(kind));
            if let Some(u) = attr(a, "units") {
                v.insert("unit".into(), json!(u));
            }
            if let Some(d) = description(a) {
                v.insert("description".into(), json!(d));
            }
            (n.clone(), Value::Object(v))
        })
        .collect()
}

/// Where an item's hrefs point: the function's base URL, and how to reach bucket objects (a
/// relative prefix from the item's folder in the static catalog, or an absolute base).
#[derive(Debug, Clone)]
pub struct Hrefs {
    /// The function's base URL, no trailing slash.
    pub function: String,
    /// Prefix that turns a bucket key into an href.
    pub bucket: String,
    /// Whether sources outside the bucket may be named by URL ([`crate::Config::publish_sources`]).
    pub publish_sources: bool,
}

/// A STAC item.
pub type Item = stac::Item;

/// Where a collection's `root` and `parent` links point, and its own address.
#[derive(Debug, Clone)]
pub struct CollectionLinks {
    /// The root catalog.
    pub root: String,
    /// The parent catalog.
    pub parent: String,
    /// The collection's own address, when it has an absolute one.
    pub this: Option<String>,
}

/// A link of `rel` to `href` of media type `media`.
fn link(rel: &str, href: impl ToString, media: &str) -> Link {
    Link::new(href, rel).r#type(media.to_owned())
}

/// An RFC 3339 date as STAC's type.
fn datetime(text: &str) -> Option<DateTime<Utc>> {
    text.parse().ok()
}

/// An asset of `media` type with `roles` and a title.
fn asset(href: String, media: &str, title: Option<&str>, roles: &[&str]) -> Asset {
    let mut a = Asset::new(href);
    a.r#type = Some(media.to_owned());
    a.title = title.map(str::to_owned);
    a.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    a
}

/// A dataset's STAC item with `links`.
pub fn item(
    m: &Manifest,
    version: &str,
    collection: &str,
    hrefs: &Hrefs,
    links: Vec<Link>,
) -> Item {
    let id = &m.id;
    let base = format!("{}/datasets/{id}", hrefs.function);
    let zarr_asset = |format: u32, path: &str| {
        let mut a = asset(
            format!("{base}/{path}"),
            "application/vnd+zarr",
            Some(&format!("Zarr v{format}, re-encoded by the function")),
            &["data"],
        );
        let f = &mut a.additional_fields;
        f.insert("zarr:zarr_format".into(), json!(format));
        f.insert("zarr:consolidated".into(), json!(true));
        f.insert(
            "xarray:open_kwargs".into(),
            json!({ "engine": "zarr", "consolidated": true, "zarr_format": format }),
        );
        a
    };
    let mut item = Item::new(id.clone());
    item.extensions = [DATACUBE, ZARR, XARRAY_ASSETS].map(str::to_owned).to_vec();
    // A catalogued-only dataset is read where it lies: its item names the store or files,
    // which its owner published by cataloguing it, and nothing of the function's.
    let served = !m.catalog_only;
    let publish_sources = hrefs.publish_sources || !served;
    if served {
        item.assets.insert("zarr".into(), zarr_asset(2, "zarr"));
        item.assets.insert("zarr3".into(), zarr_asset(3, "zarr3"));
    }
    let dir = format!("{}datasets/{id}/{version}", hrefs.bucket);
    // Parquet references name the sources as stored, so they are published only with them.
    let references = match crate::zarr_v2::kerchunk_as_parquet(m) {
        _ if !served => None,
        true if !hrefs.publish_sources => None,
        true => Some(asset(
            format!("{dir}/refs.parq"),
            "application/vnd.apache.parquet",
            Some("kerchunk references (Parquet, for fsspec's reference filesystem)"),
            &["references"],
        )),
        false => Some(asset(
            format!("{dir}/refs.json"),
            "application/json",
            Some("kerchunk references (version 1)"),
            &["references"],
        )),
    };
    if let Some(r) = references {
        item.assets.insert("references".into(), r);
    }
    let sources = match &m.store {
        // A store's chunk objects are no one's sources: the store is.
        Some(store) if store.kind == "zarr" => {
            let roles: &[&str] = if served {
                &["source"]
            } else {
                &["data", "source"]
            };
            let mut a = asset(String::new(), "application/vnd+zarr", None, roles);
            let f = &mut a.additional_fields;
            f.insert("zarr:zarr_format".into(), json!(store.zarr_format));
            if !served {
                a.title = Some(format!("Zarr v{} store", store.zarr_format));
                f.insert(
                    "xarray:open_kwargs".into(),
                    json!({ "engine": "zarr", "zarr_format": store.zarr_format }),
                );
            }
            vec![(store.info(), a)]
        }
        Some(_) => Vec::new(),
        None => (m.sources.iter())
            .map(|s| {
                let netcdf = asset(String::new(), "application/x-netcdf", None, &["source"]);
                (s.clone(), netcdf)
            })
            .collect(),
    };
    let only = sources.len() == 1;
    let region = (m.store.as_ref())
        .and_then(|s| s.region.as_deref())
        .unwrap_or(DEFAULT_REGION);
    for (i, (s, mut a)) in sources.into_iter().enumerate() {
        let Some(url) = s.published_url(publish_sources) else {
            continue;
        };
        let href = match s.in_bucket() {
            true => format!("{}{url}", hrefs.bucket),
            false => url.to_owned(),
        };
        let key = if only {
            "source".to_owned()
        } else {
            format!("source-{i}")
        };
        if !served && let Some((name, scheme)) = s3_scheme(&href, region) {
            a.additional_fields
                .insert("storage:refs".into(), json!([name.clone()]));
            add_schemes(&mut item, [(name, scheme)].into_iter().collect());
        }
        a.href = href;
        item.assets.insert(key, a);
    }
    if let Some(repo) = (m.icechunk.as_ref()).filter(|r| r.in_bucket || publish_sources) {
        icechunk_assets(&mut item, repo, version, !served);
    }
    let p = &mut item.properties;
    let dates = interval(m).and_then(|(a, b)| Some((datetime(&a)?, datetime(&b)?)));
    match dates {
        Some((start, end)) => {
            p.datetime = None;
            p.start_datetime = Some(start);
            p.end_datetime = Some(end);
        }
        // STAC requires a datetime; without a time coordinate the dataset names none, so the
        // item says so with the Unix epoch and a flag rather than inventing a range.
        None => {
            p.datetime = Some(DateTime::<Utc>::UNIX_EPOCH);
            p.additional_fields
                .insert("cloudify:no_time_coordinate".into(), json!(true));
        }
    }
    let text = |name: &str| m.attrs.get(name).and_then(Value::as_str).map(str::to_owned);
    p.title = text("title");
    p.description = text("summary");
    let f = &mut p.additional_fields;
    f.insert("cloudify:version".into(), json!(version));
    f.insert("cube:dimensions".into(), Value::Object(dimensions(m)));
    f.insert("cube:variables".into(), Value::Object(variables(m)));
    if let Some([w, s, e, n]) = bbox(m) {
        item.bbox = Some(Bbox::new(w, s, e, n));
        item.geometry = serde_json::from_value(geometry([w, s, e, n])).ok();
    }
    item.links = links;
    item.collection = Some(collection.to_owned());
    item
}

/// The storage scheme of an `s3://` URL's bucket (storage extension v2), and its key.
fn s3_scheme(url: &str, region: &str) -> Option<(String, Value)> {
    let bucket = url.strip_prefix("s3://")?.split('/').next()?;
    let scheme = json!({
        "type": "aws-s3",
        "platform": format!("https://{bucket}.s3.{region}.amazonaws.com"),
        "bucket": bucket,
        "region": region,
    });
    Some((format!("aws-s3-{bucket}"), scheme))
}

/// The Icechunk asset of `repo` as xpystac opens it (an `s3://` repository): `storage:refs`
/// into the item's `storage:schemes` (written at the top level, where xpystac 0.5 reads them,
/// and in the properties, where the extension puts them), the snapshot as `version` (for the
/// indexer's own repository, the tag named after the dataset `version`), and for a virtual
/// repository the `virtual` role with `vrt:hrefs` naming an asset per source prefix.
///
/// Another repository (a folder, `https://`) is named only where the item is all there is
/// (`anywhere`, a catalogued-only dataset), without a storage scheme.
fn icechunk_assets(item: &mut stac::Item, repo: &IcechunkRepo, version: &str, anywhere: bool) {
    let region = repo.region.as_deref().unwrap_or(DEFAULT_REGION);
    let scheme = s3_scheme(&repo.href, region);
    if scheme.is_none() && !anywhere {
        return;
    }
    let mut schemes = Map::new();
    let key = scheme.map(|(key, scheme)| {
        schemes.insert(key.clone(), scheme);
        key
    });
    let mut roles = vec!["data", "references", "latest-version"];
    let mut virtual_hrefs = Vec::new();
    for (i, prefix) in repo.virtual_prefixes.iter().enumerate() {
        let mut a = asset(prefix.clone(), "application/octet-stream", None, &["data"]);
        if let Some((k, scheme)) = s3_scheme(prefix, region) {
            a.additional_fields
                .insert("storage:refs".into(), json!([k]));
            schemes.insert(k, scheme);
        }
        let name = format!("virtual-{i}");
        virtual_hrefs.push(json!({ "key": name, "href": format!("#/assets/{name}") }));
        item.assets.insert(name, a);
    }
    if !virtual_hrefs.is_empty() {
        roles.push("virtual");
    }
    let mut a = asset(
        repo.href.clone(),
        ICECHUNK,
        Some("Icechunk repository"),
        &roles,
    );
    let f = &mut a.additional_fields;
    if let Some(key) = key {
        f.insert("storage:refs".into(), json!([key]));
    }
    f.insert(
        "version".into(),
        json!(repo.snapshot.as_deref().unwrap_or(version)),
    );
    if let Some(snapshot) = &repo.snapshot {
        f.insert("icechunk:snapshot_id".into(), json!(snapshot));
    }
    if !virtual_hrefs.is_empty() {
        f.insert("vrt:hrefs".into(), Value::Array(virtual_hrefs));
    }
    item.assets.insert("icechunk".into(), a);
    if !schemes.is_empty() {
        add_schemes(item, schemes);
    }
}

/// Storage schemes (storage extension v2) assets of `item` refer to: at the top level, where
/// xpystac 0.5 reads them, and in the properties, where the extension puts them.
fn add_schemes(item: &mut stac::Item, schemes: Map<String, Value>) {
    if !item.extensions.iter().any(|e| e == STORAGE) {
        item.extensions.push(STORAGE.to_owned());
    }
    let places = [
        &mut item.additional_fields,
        &mut item.properties.additional_fields,
    ];
    for fields in places {
        let entry = fields
            .entry("storage:schemes")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(all) = entry {
            all.extend(schemes.clone());
        }
    }
}

/// A collection over `items` (each with the href the collection links it by), extents
/// computed from them; titled `title`, else as the configuration says.
pub fn collection(
    id: &str,
    title: Option<&str>,
    info: &CatalogInfo,
    items: &[(String, Item)],
    nav: CollectionLinks,
) -> Collection {
    let config = info.collections.get(id).and_then(Value::as_object);
    let field = |k: &str| config.and_then(|c| c.get(k)).cloned();
    let text = |k: &str| field(k).and_then(|v| v.as_str().map(str::to_owned));
    let description = text("description")
        .unwrap_or_else(|| format!("Datasets of collection {id}, served as Zarr by cloudify"));
    let mut c = Collection::new(id, description);
    c.title = title
        .map(str::to_owned)
        .or_else(|| text("title"))
        .or(Some(id.to_owned()));
    c.license = text("license").unwrap_or_else(|| "other".into());
    c.keywords = Some(
        field("keywords")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    );
    c.providers = Some(
        field("providers")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    );
    let boxes: Vec<[f64; 4]> = items
        .iter()
        .filter_map(|(_, i)| match i.bbox {
            Some(Bbox::TwoDimensional(b)) => Some(b),
            _ => None,
        })
        .collect();
    // Boxes that cross the antimeridian do not union by min/max: then the whole longitude range.
    let crosses = boxes.iter().any(|b| b[0] > b[2]);
    let union = boxes.iter().copied().reduce(|a, b| {
        [
            if crosses { -180.0 } else { a[0].min(b[0]) },
            a[1].min(b[1]),
            if crosses { 180.0 } else { a[2].max(b[2]) },
            a[3].max(b[3]),
        ]
    });
    // STAC requires a spatial extent; where no item has one the collection covers the globe.
    let [w, s, e, n] = union.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
    c.extent.spatial.bbox = vec![Bbox::new(w, s, e, n)];
    let start = items
        .iter()
        .filter_map(|(_, i)| i.properties.start_datetime)
        .min();
    let end = items
        .iter()
        .filter_map(|(_, i)| i.properties.end_datetime)
        .max();
    c.extent.temporal.interval = vec![[start, end]];
    c.links = vec![
        link("root", nav.root, "application/json"),
        link("parent", nav.parent, "application/json"),
    ];
    c.links.extend(
        items
            .iter()
            .map(|(href, i)| link("item", href, "application/geo+json").title(i.id.clone())),
    );
    if let Some(this) = nav.this {
        c.links.push(link("self", this, "application/json"));
    }
    c
}

/// The root catalog linking `collections` (ids).
pub fn catalog(info: &CatalogInfo, collections: &[String]) -> Catalog {
    let mut c = Catalog::new("cloudify", info.description.clone());
    c.title = Some(info.title.clone());
    c.links = vec![link("root", "./catalog.json", "application/json")];
    c.links.extend(collections.iter().map(|id| {
        link(
            "child",
            format!("./{id}/collection.json"),
            "application/json",
        )
        .title(id.clone())
    }));
    c
}

/// An item as stored in the static catalog: relative links to its collection and the root.
pub fn static_item(m: &Manifest, version: &str, collection: &str, info: &CatalogInfo) -> Item {
    // A static catalog is public: it names bucket objects only.
    let hrefs = Hrefs {
        function: info.public_url.trim_end_matches('/').to_owned(),
        bucket: "../../../".into(),
        publish_sources: false,
    };
    let links = vec![
        link("root", "../../catalog.json", "application/json"),
        link("parent", "../collection.json", "application/json"),
        link("collection", "../collection.json", "application/json"),
    ];
    item(m, version, collection, &hrefs, links)
}

/// A dataset's item as the function serves it: hrefs and links on the function at `base`.
pub fn function_item(
    m: &Manifest,
    version: &str,
    collection: &str,
    base: &str,
    publish_sources: bool,
) -> Item {
    let hrefs = Hrefs {
        function: base.to_owned(),
        bucket: format!("{base}/"),
        publish_sources,
    };
    let links = vec![
        link(
            "self",
            format!("{base}/datasets/{}/stac", m.id),
            "application/geo+json",
        ),
        link(
            "root",
            format!("{base}/stac/catalog.json"),
            "application/json",
        ),
        link(
            "collection",
            format!("{base}/stac/{collection}/collection.json"),
            "application/json",
        ),
    ];
    item(m, version, collection, &hrefs, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lon(min: f64, max: f64, step: Option<f64>) -> CoordSummary {
        CoordSummary {
            min,
            max,
            count: 2,
            first: min,
            last: max,
            steps: step.map(|s| (s, s)),
            values: None,
        }
    }

    #[test]
    fn longitudes_map_to_minus_180_180() {
        assert_eq!(west_east(&lon(0.0, 357.5, Some(2.5))), (-180.0, 180.0));
        assert_eq!(west_east(&lon(100.0, 290.0, Some(10.0))), (100.0, -70.0));
        assert_eq!(west_east(&lon(-20.0, 7.0, None)), (-20.0, 7.0));
    }

    #[test]
    fn an_icechunk_repository_is_an_asset_xpystac_opens() {
        let mut m = Manifest::new("d", Map::new());
        let repo = |href: &str, in_bucket| IcechunkRepo {
            href: href.into(),
            in_bucket,
            snapshot: None,
            virtual_prefixes: vec!["s3://src/files/".into()],
            region: Some("eu-west-1".into()),
        };
        m.icechunk = Some(repo("s3://b/idx/icechunk/d/", true));
        let item = function_item(&m, "v1", "c", "https://f", false);
        let a = &item.assets["icechunk"];
        assert_eq!(a.r#type.as_deref(), Some(ICECHUNK));
        assert!(a.roles.contains(&"virtual".to_owned()));
        let f = &a.additional_fields;
        assert_eq!(f["storage:refs"], json!(["aws-s3-b"]));
        assert_eq!(f["version"], json!("v1"), "the version's tag");
        assert_eq!(f["vrt:hrefs"][0]["key"], json!("virtual-0"));
        let v = &item.assets["virtual-0"];
        assert_eq!(v.href, "s3://src/files/");
        assert_eq!(v.additional_fields["storage:refs"], json!(["aws-s3-src"]));
        let schemes = &item.additional_fields["storage:schemes"];
        assert_eq!(schemes["aws-s3-b"]["region"], json!("eu-west-1"));
        assert_eq!(
            item.properties.additional_fields["storage:schemes"],
            *schemes
        );
        assert!(item.extensions.contains(&STORAGE.to_owned()));
        assert!(item.assets.contains_key("zarr") && item.assets.contains_key("zarr3"));
        // A repository outside the bucket is named only where sources are; a local one never.
        m.icechunk = Some(repo("s3://other/repo/", false));
        assert!(
            !function_item(&m, "v1", "c", "https://f", false)
                .assets
                .contains_key("icechunk")
        );
        assert!(
            function_item(&m, "v1", "c", "https://f", true)
                .assets
                .contains_key("icechunk")
        );
        m.icechunk = Some(repo("file:///data/repo/", true));
        assert!(
            !function_item(&m, "v1", "c", "https://f", true)
                .assets
                .contains_key("icechunk")
        );
    }

    #[test]
    fn regular_steps_are_durations() {
        assert_eq!(duration((1.0, 1.0), 86_400.0).as_deref(), Some("P1D"));
        assert_eq!(duration((6.0, 6.0), 3_600.0).as_deref(), Some("PT6H"));
        assert_eq!(duration((28.0, 31.0), 86_400.0).as_deref(), Some("P1M"));
        assert_eq!(duration((365.0, 366.0), 86_400.0).as_deref(), Some("P1Y"));
        assert_eq!(duration((1.0, 3.0), 86_400.0), None);
    }
}
