//! One malloc arena for the server and the indexer.
//!
//! glibc gives threads arenas of their own (up to eight per core) and keeps what is freed in
//! an arena for that arena's reuse, so a server whose threads take turns with large chunk
//! buffers holds about the sum of every arena's peak: under the load benchmark 314 MiB with
//! the default arenas, 238 MiB with one, at the same throughput; indexing a million chunks,
//! 490 MiB against 335 MiB (bench/RESULTS.md). glibc reads the arena count from the
//! environment at start, and setting it from Rust (`mallopt`) needs `unsafe`, so the process
//! starts itself again with it set.

/// Replace this process with itself under `GLIBC_TUNABLES=glibc.malloc.arena_max=1`, unless
/// the environment already tunes malloc (an operator's choice wins) or this is not glibc. On
/// failure the process goes on as it is, with a warning.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if ["GLIBC_TUNABLES", "MALLOC_ARENA_MAX"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            return;
        }
        let error = match std::env::current_exe() {
            Ok(exe) => std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")
                .exec(),
            Err(e) => e,
        };
        eprintln!("warning: running with glibc's default malloc arenas ({error})");
    }
}
