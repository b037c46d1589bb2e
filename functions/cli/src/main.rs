//! `cloudify`: the precompute job (`index`), the function as a local server (`serve`), and a
//! self-contained demo (`demo`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cloudify::{Bucket, config, demo, serve, sources};
use cloudify_core::codecs::ServedCodec;
use cloudify_index::ServeOptions;

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
        #[arg(long, conflicts_with_all = ["dataset", "sources", "concat_dim"])]
        config: Option<PathBuf>,
        /// Codec of the re-encoding routes: none, zlib[:LEVEL] (gzip in Zarr v3), zstd[:LEVEL].
        #[arg(long, default_value = "zlib:1")]
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
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Source files, glob patterns ('data/tas_*.nc'), http(s):// URLs (read by range), and
        /// s3:// objects, prefixes ending in '/' or patterns: the dataset's whole membership.
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
        /// Bytes one request may read from sources (and hold decoded); over it: 413.
        #[arg(long, default_value_t = cloudify_core::router::DEFAULT_READ_BUDGET)]
        read_budget: u64,
        /// Largest read that merging touching byte ranges may make (0: never merge).
        #[arg(long, default_value_t = cloudify_core::read::DEFAULT_MERGE_CAP)]
        merge_cap: u64,
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
    /// Remove a dataset: from index.json first, then its objects and its catalog entry.
    Rm {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// The dataset.
        id: String,
    },
    /// Delete versions no longer current (keeping the last N of each dataset) and objects left
    /// by removed datasets or killed runs. Run it when no indexer is writing.
    Gc {
        /// The bucket: a local folder, or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL for
        /// S3-compatible servers).
        #[arg(long)]
        bucket: String,
        /// Versions kept per dataset, the current one included.
        #[arg(long, default_value_t = 2)]
        keep: usize,
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line, without a backtrace: the message names the fault.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cloudify::remote::init_http_headers()?;
    // Commands that write an index create a missing bucket folder; the others do not.
    let (arg, create) = match &cli.command {
        Command::Demo { bucket, addr } => return demo::run(bucket, *addr).await,
        Command::Index { bucket, .. } | Command::Stac { bucket, .. } => (bucket, true),
        Command::Serve { bucket, .. }
        | Command::Check { bucket, .. }
        | Command::Rm { bucket, .. }
        | Command::Gc { bucket, .. } => (bucket, false),
    };
    let bucket = Bucket::open(arg, create).await?;
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
            ..
        } => {
            if let Some(config) = config {
                let failed = config::run(&bucket, &config, catalog.public_url).await?;
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
            };
            let p = sources::index(
                &bucket,
                &dataset,
                &sources,
                &options,
                concat_dim.as_deref(),
                &collection,
            )
            .await?;
            let written =
                sources::catalog(&bucket, catalog.public_url, catalog.catalog_config).await?;
            println!("dataset {dataset} version {} ({})", p.version, p.summary());
            println!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Stac { catalog, .. } => {
            let written =
                sources::catalog(&bucket, catalog.public_url, catalog.catalog_config).await?;
            println!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Serve {
            addr,
            read_budget,
            merge_cap,
            ..
        } => {
            let limits = serve::Limits {
                read_budget,
                merge_cap,
            };
            serve::run(&bucket, addr, limits, |_| {}).await
        }
        Command::Check { ids, .. } => {
            let bad = sources::check(&bucket, &ids).await?;
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
            println!("dataset {id} removed ({deleted} objects deleted)");
            println!("STAC catalog: {written} files written");
            Ok(())
        }
        Command::Gc { keep, .. } => {
            let c = cloudify_index::gc(bucket.store(), keep).await?;
            println!(
                "{} versions and {} objects deleted (kept {keep} versions per dataset)",
                c.versions, c.objects
            );
            Ok(())
        }
        Command::Demo { .. } => Ok(()), // run above, without a bucket to open
    }
}
