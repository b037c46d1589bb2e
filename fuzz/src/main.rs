//! `cloudify-fuzz`: runs fuzz targets for a time each, as CI does, several at once.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use cloudify_fuzz::{Budget, Outcome, Target, run, target, targets};

/// Replay each target's corpus, then try new inputs for a time; a failing input is saved,
/// minimised, to the target's corpus.
#[derive(Parser)]
struct Args {
    /// Seconds each target tries new inputs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Targets run at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// List the targets and what each checks.
    #[arg(long)]
    list: bool,
    /// Targets to run (all when none is named).
    targets: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in targets::ALL {
            println!("{:<12} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let mut chosen: Vec<&Target> = Vec::new();
    for name in &args.targets {
        match target(name) {
            Some(t) => chosen.push(t),
            None => {
                eprintln!("error: no fuzz target {name:?} (--list names them)");
                return ExitCode::from(2);
            }
        }
    }
    if chosen.is_empty() {
        chosen = targets::ALL.iter().collect();
    }
    let budget = Budget::Time(Duration::from_secs(args.seconds));
    let queue = Mutex::new(chosen.into_iter());
    let failed = Mutex::new(false);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.max(1) {
            s.spawn(|| {
                while let Some(t) = queue.lock().map(|mut q| q.next()).unwrap_or(None) {
                    match run(t, budget) {
                        Outcome::Passed { replayed, cases } => println!(
                            "{}: {replayed} corpus inputs and {cases} new ones in {} s, no failure",
                            t.name, args.seconds
                        ),
                        Outcome::Failed { why, input } => {
                            let input = input.map_or("none".into(), |p| p.display().to_string());
                            eprintln!("{}: FAILED: {why}\n  input: {input}", t.name);
                            if let Ok(mut f) = failed.lock() {
                                *f = true;
                            }
                        }
                    }
                }
            });
        }
    });
    if failed.into_inner().unwrap_or(true) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
