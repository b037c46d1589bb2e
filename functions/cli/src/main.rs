//! `cloudify`: the precompute job (`index`), the function as a local server (`serve`), and a
//! self-contained demo (`demo`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use cloudify::{demo, malloc, serve};
use cloudify_core::codecs::ServedCodec;
use cloudify_core::{Config, Platform};
use cloudify_index::ServeOptions;
use cloudify_job::config::{Progress, RunOptions};
use cloudify_job::say;
use cloudify_job::{Job, sources};
use cloudify_stores::Bucket;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "cloudify",
    version,
    about = "NetCDF/HDF5 in a bucket, served as Zarr"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index NetCDF4/HDF5 or NetCDF-3 sources into a bucket folder as one dataset, or every
    /// dataset a config file lists (--config).
    Index {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Dataset id ([A-Za-z0-9._-]).
        #[arg(long, required_unless_present = "config")]
        dataset: Option<String>,
        /// A TOML file listing datasets (sources, concat_dim, codec, chunks, collection) and
        /// the [catalog]; see the README.
        #[arg(long, conflicts_with_all = ["dataset", "sources", "concat_dim", "reference"])]
        config: Option<PathBuf>,
        /// Codec of the re-encoding routes: auto (the source's chunks as stored where clients
        /// decode them, else zstd:-5), none, zlib[:LEVEL] (gzip in Zarr v3), zstd[:LEVEL].
        #[arg(long, default_value = "auto")]
        codec: String,
        /// Served chunk lengths of the re-encoding routes, e.g. time=12,lat=90.
        #[arg(long, default_value = "")]
        chunks: String,
        /// The STAC collection the dataset belongs to.
        #[arg(long, default_value = cloudify_core::registry::DEFAULT_COLLECTION)]
        collection: String,
        /// With several sources: the dimension they follow each other along (e.g. time);
        /// they are ordered by its coordinate's values.
        #[arg(long)]
        concat_dim: Option<String>,
        /// The platforms the bucket is served from (native, lambda, worker-free, worker-paid,
        /// comma-separated): a served chunk over the smallest of their budgets is refused.
        #[arg(long)]
        target: Option<String>,
        /// With an Icechunk repository as the source: the branch, tag or snapshot id to serve
        /// (default: the main branch).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Catalogue the dataset without serving it: its STAC item names the store or files
        /// themselves, and the function's routes of it answer 404 (a config's `serve = false`).
        #[arg(long, conflicts_with = "config")]
        catalog_only: bool,
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Source files, glob patterns ('data/tas_*.nc'), http(s):// URLs (read by range), and
        /// s3:// objects, prefixes ending in '/' or patterns: the dataset's whole membership.
        /// Or one folder holding a Zarr v2/v3 store or an Icechunk repository.
        #[arg(required_unless_present = "config")]
        sources: Vec<String>,
    },
    /// Regenerate the static STAC catalog from index.json and the manifests (reads no source).
    Stac {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        catalog: CatalogArgs,
    },
    /// Serve a bucket folder over HTTP, as the function does.
    Serve {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Bytes one request may read from sources (and hold decoded); over it: 413 [default:
        /// 64 MiB].
        #[arg(long)]
        read_budget: Option<u64>,
        /// Largest read that merging touching byte ranges may make (0: never merge) [default:
        /// 16 MiB].
        #[arg(long)]
        merge_cap: Option<u64>,
        /// Bytes the server may use: caches, a reserve for the runtime and the requests in
        /// flight, which wait for room (503 with Retry-After after QUEUE_TIMEOUT_SECONDS); one
        /// needing more than there is: 413 [default: 256 MiB].
        #[arg(long)]
        memory: Option<u64>,
        /// The address documents link to (default: the address a request reached).
        #[arg(long)]
        public_url: Option<String>,
        /// The request log on stderr: one line per request, as text or JSON.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
        /// What error bodies say: public (never a bucket key, file path or source URL) or
        /// internal (everything, for operators).
        #[arg(long, value_parser = ["public", "internal"])]
        error_detail: Option<String>,
        /// Seconds index.json is trusted before it is read again [default: 60].
        #[arg(long)]
        index_ttl: Option<u64>,
        /// Name sources outside the bucket by URL in answers (/info, STAC items, kerchunk
        /// references); by default answers name only bucket keys and the function's URLs.
        #[arg(long)]
        publish_sources: bool,
    },
    /// Report sources changed or missing since they were indexed (exit status 1 if any).
    Check {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Datasets to check (default: all).
        ids: Vec<String>,
    },
    /// Remove a dataset: from index.json first, then its objects, its Icechunk repository and
    /// its catalog entry.
    Rm {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// The dataset.
        id: String,
    },
    /// Delete versions no longer current (keeping the last N of each dataset) and objects left
    /// by removed datasets (their Icechunk repositories too) or killed runs. Run it when no
    /// indexer is writing.
    Gc {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Versions kept per dataset, the current one included.
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
    /// Copy the bucket's STAC catalog (with --all, its whole index) to another bucket or a
    /// folder (a static site), writing only objects whose bytes differ and deleting those gone.
    Publish {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Where to: a folder (a GitHub Pages checkout) or s3://BUCKET[/PREFIX] (R2 through
        /// its S3 endpoint).
        #[arg(long)]
        to: String,
        /// The address the destination's root is served at: the root catalog's `self` link.
        #[arg(long)]
        public_url: Option<String>,
        /// Copy the whole index (index.json, the datasets' versions, repositories), not only
        /// the catalog.
        #[arg(long)]
        all: bool,
    },
    /// Check that a store does what cloudify needs of it: whole, ranged and conditional reads,
    /// HEAD, listings and conditional writes. A folder or s3://BUCKET/PREFIX is written (a few
    /// objects below PREFIX/conformance/); an http(s):// prefix is only read, and must serve
    /// the suite's objects (see the README).
    CheckStore {
        /// A local folder, s3://BUCKET[/PREFIX] or http(s)://HOST/PREFIX.
        store: String,
    },
    /// Write a sample NetCDF4 file, index it into a local bucket folder and serve it.
    Demo {
        /// The bucket folder to create.
        #[arg(long, default_value = "cloudify-demo")]
        bucket: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
}

/// `cloudify check-store`: the store conformance suite on `url`.
async fn check_store(url: &str, job_config: &Config) -> anyhow::Result<()> {
    use cloudify_core::store::{Fixture, check_reads, check_writes};
    let http =
        cloudify_job::remote::http_store_for(url, &job_config.http_headers, job_config.timeouts);
    let outcome = match http {
        Some((store, key)) => {
            check_reads(
                store.as_ref(),
                &Fixture::new(key.trim_end_matches('/'), false),
            )
            .await
        }
        None => {
            let bucket = Bucket::open(url, true).await.map_err(|e| anyhow!(e))?;
            match check_writes(bucket.store(), "conformance").await {
                Ok(fixture) => check_reads(bucket.store(), &fixture).await,
                Err(e) => Err(e),
            }
        }
    };
    match outcome {
        Ok(()) => {
            say!("{url}: the store does everything cloudify needs");
            Ok(())
        }
        Err(failures) => Err(anyhow!(
            "{url}: the store fails the conformance suite:\n{failures}"
        )),
    }
}

/// A progress bar of a config file's datasets on a terminal, one line per dataset otherwise.
fn progress() -> impl Fn(Progress<'_>) + Sync {
    let bar = std::io::stderr().is_terminal().then(ProgressBar::hidden);
    move |p| match (p, &bar) {
        (Progress::Started(n), Some(b)) => {
            b.set_length(n as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} datasets {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        (Progress::Done { id, line, failed }, Some(b)) => {
            b.inc(1);
            if failed {
                b.println(line);
            }
            b.set_message(id.to_owned());
        }
        (Progress::Done { line, .. }, None) => say!("{line}"),
        (Progress::Finished, Some(b)) => b.finish_with_message("done"),
        (Progress::Catalog(written), _) => say!("STAC catalog: {written} files written"),
        (Progress::Note(line), _) => say!("{line}"),
        _ => {}
    }
}

/// Options of the static STAC catalog; what is given is kept in the bucket for later runs.
#[derive(clap::Args)]
struct CatalogArgs {
    /// The function's public URL, used in the catalog's asset hrefs.
    #[arg(long)]
    public_url: Option<String>,
    /// A JSON file with the catalog's title, description and collections (title, description,
    /// license, keywords, providers by collection id).
    #[arg(long)]
    catalog_config: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Demo { .. } | Command::Index { .. }
    ) {
        malloc::one_arena();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line, without a backtrace: the message names the fault.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The job's HTTP(S) sources: their headers and timeouts, from `CLOUDIFY_*` variables.
    let job_config = Config::from_lookup(Platform::Native, cloudify_stores::logging::env_var)
        .map_err(|e| anyhow!("CLOUDIFY_{e}"))?;
    // Commands that write an index create a missing bucket folder; the others do not.
    let (arg, create) = match &cli.command {
        Command::Demo { bucket, addr } => return demo::run(bucket, *addr).await,
        Command::CheckStore { store } => return check_store(store, &job_config).await,
        Command::Index { bucket, .. } | Command::Stac { bucket, .. } => (bucket, true),
        Command::Serve { bucket, .. }
        | Command::Check { bucket, .. }
        | Command::Rm { bucket, .. }
        | Command::Publish { bucket, .. }
        | Command::Gc { bucket, .. } => (bucket, false),
    };
    let bucket = Bucket::open(arg, create).await.map_err(|e| anyhow!(e))?;
    let job = Job::new(bucket.clone())
        .with_headers(job_config.http_headers.clone())
        .with_timeouts(job_config.timeouts);
    match cli.command {
        Command::Index {
            dataset,
            codec,
            chunks,
            collection,
            concat_dim,
            config,
            catalog,
            sources,
            target,
            reference,
            catalog_only,
            ..
        } => {
            let targets = target
                .as_deref()
                .map(ServeOptions::parse_targets)
                .transpose()?;
            // Checked before any source is read, as the catalog is written last.
            if let Some(url) = &catalog.public_url {
                cloudify_core::config::check_public_url(url)
                    .map_err(|e| anyhow!("--public-url: {e}"))?;
            }
            if let Some(config) = config {
                let options = RunOptions {
                    only: None,
                    public_url: catalog.public_url,
                    targets,
                };
                let failed = cloudify_job::config::run(&job, &config, options, &progress()).await?;
                if !failed.is_empty() {
                    return Err(anyhow::anyhow!(
                        "{}: {} failed (see above); the other datasets are indexed",
                        config.display(),
                        failed.join(", ")
                    ));
                }
                return Ok(());
            }
            let dataset = dataset.unwrap_or_default();
            let options = ServeOptions {
                codec: ServedCodec::parse(&codec)?,
                chunks: ServeOptions::parse_chunks(&chunks)?,
                targets: targets.unwrap_or_else(|| ServeOptions::default().targets),
                serve: !catalog_only,
            };
            let p = sources::index(
                &job,
                &dataset,
                &sources,
                &options,
                concat_dim.as_deref(),
                &collection,
                reference.as_deref(),
            )
            .await?;
            let written =
                sources::catalog(&bucket, catalog.public_url, catalog.catalog_config).await?;
            say!("dataset {dataset} version {} ({})", p.version, p.summary());
            say!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Stac { catalog, .. } => {
            let written =
                sources::catalog(&bucket, catalog.public_url, catalog.catalog_config).await?;
            say!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Serve {
            addr,
            read_budget,
            merge_cap,
            memory,
            public_url,
            log_format,
            error_detail,
            index_ttl,
            publish_sources,
            ..
        } => {
            let flags: BTreeMap<&str, String> = [
                ("READ_BUDGET_BYTES", read_budget.map(|v| v.to_string())),
                ("MERGE_CAP_BYTES", merge_cap.map(|v| v.to_string())),
                ("MEMORY_BYTES", memory.map(|v| v.to_string())),
                ("PUBLIC_URL", public_url),
                ("LOG_FORMAT", log_format),
                ("ERROR_DETAIL", error_detail),
                ("INDEX_TTL_SECONDS", index_ttl.map(|v| v.to_string())),
                (
                    "PUBLISH_SOURCES",
                    publish_sources.then(|| "true".to_owned()),
                ),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            serve::run(&bucket, addr, serve::config(&flags)?, |_| {}).await
        }
        Command::Check { ids, .. } => {
            let bad = sources::check(&job, &ids).await?;
            if bad > 0 {
                return Err(anyhow::anyhow!(
                    "{bad} sources changed or missing since indexing; reindex their datasets"
                ));
            }
            Ok(())
        }
        Command::Rm { id, .. } => {
            let Some(deleted) = cloudify_index::remove(bucket.store(), &id).await? else {
                return Err(anyhow::anyhow!("{bucket}: no dataset {id:?} in index.json"));
            };
            let written = sources::catalog(&bucket, None, None).await?;
            say!("dataset {id} removed ({deleted} objects deleted)");
            say!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Gc { keep, .. } => {
            let c = cloudify_index::gc(bucket.store(), keep).await?;
            say!(
                "{} versions and {} objects deleted (kept {keep} versions per dataset)",
                c.versions,
                c.objects
            );
            Ok(())
        }
        Command::Publish {
            to,
            public_url,
            all,
            ..
        } => {
            let public_url = (public_url.as_deref())
                .map(cloudify_core::config::check_public_url)
                .transpose()
                .map_err(|e| anyhow!("--public-url: {e}"))?;
            let dest = Bucket::open(&to, true).await.map_err(|e| anyhow!(e))?;
            let p =
                cloudify_job::publish::publish(&bucket, &dest, public_url.as_deref(), all).await?;
            for key in &p.written {
                say!("wrote {key}");
            }
            for key in &p.deleted {
                say!("deleted {key}");
            }
            say!(
                "{dest}: {} objects written, {} deleted, {} unchanged",
                p.written.len(),
                p.deleted.len(),
                p.unchanged
            );
            Ok(())
        }
        // Run above, without a bucket to open.
        Command::Demo { .. } | Command::CheckStore { .. } => Ok(()),
    }
}
