//! The core router as a local HTTP server: the same function the Lambda and the Worker run,
//! configured by the same [`Config`] (flags and `CLOUDIFY_*` variables over the native
//! preset).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cloudify_core::{Config, Platform};
use cloudify_stores::{Bucket, decode_pool, logging, native_app};
use tokio::net::{TcpListener, TcpSocket};

use crate::connections::{AcceptErrors, Connections};

/// Open files kept back from client connections: the listener, source files, connections to
/// stores and sources, the log.
const RESERVED_FILES: u64 = 64;

/// The configuration of `cloudify serve`: `flags` (variable name → value) over the
/// `CLOUDIFY_*` environment over the native preset.
///
/// # Errors
/// A message naming the variable at fault.
pub fn config(flags: &BTreeMap<&str, String>) -> anyhow::Result<Config> {
    Config::from_lookup(Platform::Native, |name| {
        flags.get(name).cloned().or_else(|| logging::env_var(name))
    })
    .map_err(|e| anyhow!(e))
}

/// How many client connections to hold at once: `max`, or fewer where the process may not
/// open that many files. Its soft limit of open files is first raised to the hard one (often
/// 1 024 against 500 000 or more): past the limit accept fails.
fn connection_cap(max: usize) -> usize {
    let files = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft));
    match files {
        Ok(files) => usize::try_from(files.saturating_sub(RESERVED_FILES))
            .unwrap_or(usize::MAX)
            .clamp(1, max.max(1)),
        Err(_) => max,
    }
}

/// Connections the kernel completes and queues while the server is at its cap (the
/// default of tokio and the standard library, 128, fills as soon as slow clients outnumber the
/// cap by that much).
const BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As the standard library does: a restarted server binds at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serve the bucket on `addr`; `ready` is called with the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(
    bucket: &Bucket,
    addr: SocketAddr,
    config: Config,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    logging::init(config.log_format);
    let connections = Connections::new(connection_cap(config.max_connections), config.timeouts);
    let app = native_app(config, bucket.reader(), true).await;
    let app = Arc::new(app.with_offload(decode_pool()));
    let listener = listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("cloudify serving {bucket} on http://{bound}");
    ready(bound);
    let mut errors = AcceptErrors::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tokio::time::sleep(errors.failed(&e)).await;
                continue;
            }
        };
        errors.accepted();
        let slot = connections.slot().await;
        let app = app.clone();
        tokio::spawn(slot.serve(stream, move |req| {
            let app = app.clone();
            async move { app.handle(&req).await }
        }));
    }
}
