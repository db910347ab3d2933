//! `glowworm-worker`: contribute a GPU server's time to a Glowworm relay.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use glowworm_protocol::relay_url::check_relay_url;
use glowworm_worker::claim;
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::key_file;
use glowworm_worker::link;
use glowworm_worker::runner::{self, Event, RunOptions, StopSignal, Totals};
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    version,
    about = "Glowworm native contributor: runs the relay's kernels on this machine's GPU",
    after_help = EXIT_STATUSES
)]
struct Cli {
    /// The relay's base URL, such as http://127.0.0.1:8787.
    #[arg(
        long,
        env = "GLOWWORM_RELAY",
        default_value = "http://127.0.0.1:8787",
        global = true
    )]
    relay: String,
    /// The worker's key file (created with mode 0600 on first use).
    #[arg(long, env = "GLOWWORM_WORKER_KEY", global = true)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Work for the relay until Ctrl-C (the default).
    Run(RunArgs),
    /// Print this worker's public key (its contributor id).
    Key,
    /// Credit this worker's results to an Ethereum address: prints a Sign-In with Ethereum message
    /// to sign with any wallet, then reads the signature (0x...) from standard input.
    Link {
        /// The address to credit.
        #[arg(long)]
        address: String,
        /// The chain id to name in the message.
        #[arg(long, default_value_t = 1)]
        chain_id: u64,
        /// The wallet's signature, if already made for a message printed earlier.
        #[arg(long, requires = "message")]
        signature: Option<String>,
        /// A message printed by an earlier `link`, to finish with --signature.
        #[arg(long)]
        message: Option<String>,
    },
    /// Claim an address's earnings from the payout contract, with the proof the relay gives:
    /// prints the transaction for a wallet to sign (JSON on stdout), or sends it itself with
    /// --eth-key-file and --rpc-url (the tokens go to the address, whoever sends).
    Claim {
        /// The address whose earnings to claim (the one this worker is linked to).
        #[arg(long)]
        address: String,
        /// A file with the private key (64 hex characters, mode 0600) that sends and pays the gas.
        #[arg(long, requires = "rpc_url")]
        eth_key_file: Option<PathBuf>,
        /// The chain's JSON-RPC URL (http://), to send the claim through.
        #[arg(long, requires = "eth_key_file")]
        rpc_url: Option<String>,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Units worked on at once.
    #[arg(long, default_value_t = 2)]
    in_flight: usize,
    /// Stop after this many verified units.
    #[arg(long)]
    max_units: Option<u64>,
}

const NAME: &str = "glowworm-worker";
/// Exit status for a usage error or bad input ([`BadInput`]), as clap's own for usage errors.
const EXIT_USAGE: u8 = 2;
/// How often a worker whose stderr is not a terminal logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// What the command line says about exit statuses (`glowworm-worker --help`).
const EXIT_STATUSES: &str = "\
Exit status: 0 stopped (Ctrl-C, SIGTERM or --max-units); 1 failed (no GPU, the key file);
2 usage error or bad input (flags, --relay); 130 interrupted (Ctrl-C twice).
Errors are one line on stderr: `glowworm-worker: error: ...`. When stderr is not a terminal
(systemd, nohup, a log file) the worker logs plain lines there instead of a progress bar.";

/// An error in what the user gave (flags, the relay's URL), as opposed to one of the relay, the
/// GPU or the system: exit status 2. Found anywhere in an error's chain.
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn main() -> ExitCode {
    let terminal = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(
            // wgpu's GL backend, probed beside Vulkan, reports EGL failures (no DRI driver on a
            // headless server) at error level: noise in a log, the worker computes on Vulkan.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,wgpu_hal::gles=off".into()),
        )
        .with_ansi(terminal)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli, terminal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}`: the causes joined by ": ", never a backtrace (whatever RUST_BACKTRACE says).
            eprintln!("{NAME}: error: {err:#}");
            let bad_input = err.chain().any(|cause| cause.is::<BadInput>());
            ExitCode::from(if bad_input { EXIT_USAGE } else { 1 })
        }
    }
}

fn run(cli: Cli, terminal: bool) -> Result<()> {
    let relay = match cli.command {
        Some(Command::Key) => String::new(),
        _ => check_relay_url(&cli.relay).map_err(BadInput)?,
    };
    let key_path = cli.key.clone().unwrap_or_else(key_file::default_path);
    let (key, created) = key_file::load_or_create(&key_path)?;
    if created {
        eprintln!("Created a new worker key at {}", key_path.display());
    }
    match cli.command {
        Some(Command::Key) => {
            println!("{}", key.public_hex());
            Ok(())
        }
        Some(Command::Run(args)) => work(&relay, key, args, terminal),
        Some(Command::Link {
            address,
            chain_id,
            signature,
            message,
        }) => link(&relay, &key, &address, chain_id, message.zip(signature)),
        Some(Command::Claim {
            address,
            eth_key_file,
            rpc_url,
        }) => claim(&relay, &address, rpc_url.zip(eth_key_file)),
        None => work(&relay, key, cli.run, terminal),
    }
}

/// One line on stderr for a log (systemd's journal, nohup.out): UTC time, no colour.
fn log(message: &str) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    eprintln!("{now} {NAME}: {message}");
}

/// What a worker whose stderr is not a terminal says: each problem once (until work goes on
/// again), progress every [`PROGRESS_EVERY`].
#[derive(Default)]
struct Log {
    /// The problem last logged ("unreachable", the relay's code or an error's message), until
    /// the relay answers again.
    problem: RefCell<Option<String>>,
    last_progress: Cell<Option<Instant>>,
}

impl Log {
    fn event(&self, event: &Event) {
        match event {
            Event::Verified { totals, .. } => {
                self.recovered();
                let due = self
                    .last_progress
                    .get()
                    .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                if due {
                    self.last_progress.set(Some(Instant::now()));
                    log(&progress(totals));
                }
            }
            Event::Idle => {
                self.recovered();
            }
            Event::Error {
                message,
                relay,
                retry_in,
            } => {
                let (problem, line) = match relay {
                    Some(e) if e.is_transport() => (
                        "unreachable".to_string(),
                        format!("relay unreachable: {message}; retrying until it is back"),
                    ),
                    Some(e) if e.code() == Some("quarantined") => (
                        "quarantined".to_string(),
                        format!("quarantined by the relay: {message}; retrying"),
                    ),
                    Some(e) if e.code().is_some() => (
                        e.code().unwrap_or_default().to_string(),
                        format!(
                            "refused by the relay: {message} (retrying in {} s)",
                            retry_in.as_secs()
                        ),
                    ),
                    _ => (
                        message.clone(),
                        format!("error: {message} (retrying in {} s)", retry_in.as_secs()),
                    ),
                };
                let mut last = self.problem.borrow_mut();
                if last.as_deref() != Some(problem.as_str()) {
                    log(&line);
                    *last = Some(problem);
                }
            }
        }
    }

    /// The relay answered: say so once after a problem.
    fn recovered(&self) {
        if let Some(problem) = self.problem.borrow_mut().take() {
            log(if problem == "unreachable" {
                "relay reachable again; working"
            } else {
                "working again"
            });
        }
    }
}

fn progress(totals: &Totals) -> String {
    format!(
        "progress: {} units verified, {} credits earned this run, balance {}, {:.3} GFLOP",
        totals.units,
        totals.credited,
        totals.balance,
        totals.flop as f64 / 1e9
    )
}

fn claim(relay: &str, address: &str, send: Option<(String, PathBuf)>) -> Result<()> {
    let client = RelayClient::new(relay)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let payout = claim::payout(&client, address).await?;
        let plan = claim::plan(&payout)?;
        match send {
            None => {
                eprintln!(
                    "{} can claim {} token units (epoch {}): sign and send this transaction \
                     on chain {} with any wallet:",
                    plan.account, plan.claimable, plan.epoch, plan.chain_id
                );
                println!("{}", serde_json::to_string_pretty(&plan.transaction())?);
            }
            Some((rpc, key_file)) => {
                let tx = claim::send(&plan, &rpc, &key_file).await?;
                println!("{tx}");
                eprintln!(
                    "Claimed {} token units for {} (epoch {}) in {tx}.",
                    plan.claimable, plan.account, plan.epoch
                );
            }
        }
        Ok(())
    })
}

fn link(
    relay: &str,
    key: &glowworm_protocol::signing::ContributorKey,
    address: &str,
    chain_id: u64,
    signed: Option<(String, String)>,
) -> Result<()> {
    let client = RelayClient::new(relay)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (message, signature) = match signed {
            Some(pair) => pair,
            None => {
                let message = link::prepare(&client, key, address, chain_id).await?;
                eprintln!("Sign this message with the wallet of {address} (personal_sign / \"sign message\"),");
                eprintln!("then paste the signature (0x...) here and press Enter. It is valid for 10 minutes.\n");
                println!("{message}");
                eprintln!();
                let mut signature = String::new();
                std::io::stdin().read_line(&mut signature).context("could not read the signature")?;
                (message, signature)
            }
        };
        let reply = link::finish(&client, key, &message, &signature).await?;
        println!(
            "Linked {} to {}: {} credits moved, balance {}",
            reply.public_key, reply.address, reply.credits_moved, reply.balance
        );
        Ok(())
    })
}

fn work(
    relay: &str,
    key: glowworm_protocol::signing::ContributorKey,
    args: RunArgs,
    terminal: bool,
) -> Result<()> {
    let client = RelayClient::new(relay)?;
    let gpu = GpuThread::start().context(
        "could not open a GPU (on Linux without one: apt-get install mesa-vulkan-drivers)",
    )?;
    if terminal {
        eprintln!("GPU: {}", gpu.adapter().description);
        eprintln!(
            "Contributor {} working for {}",
            key.public_hex(),
            client.base()
        );
    } else {
        log(&format!(
            "started: relay {}, adapter {}, contributor {}",
            client.base(),
            gpu.adapter().description,
            key.public_hex()
        ));
    }

    let options = RunOptions {
        in_flight: args.in_flight,
        max_units: args.max_units,
        ..Default::default()
    };
    let stop = StopSignal::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let totals = runtime.block_on(async {
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if stop_requested().await {
                if terminal {
                    eprintln!(
                        "\nStopping: finishing the units in flight (Ctrl-C again to quit at once)"
                    );
                } else {
                    log("stopping: finishing the units in flight");
                }
                on_signal.stop();
                if stop_requested().await {
                    std::process::exit(130);
                }
            }
        });
        if !terminal {
            let log_lines = Log::default();
            return runner::run(&client, &key, &gpu, &options, &stop, &|event| {
                log_lines.event(&event)
            })
            .await;
        }
        let bar = match options.max_units {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} units {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let on_event = |event: Event| match event {
            Event::Verified { totals, .. } => {
                bar.set_position(totals.units);
                bar.set_message(format!(
                    "· {:.3} GFLOP verified · {} credits earned · balance {}",
                    totals.flop as f64 / 1e9,
                    totals.credited,
                    totals.balance
                ));
            }
            Event::Idle => bar.set_message("· waiting for work"),
            Event::Error {
                message, retry_in, ..
            } => {
                bar.println(format!(
                    "error: {message} (retrying in {} s)",
                    retry_in.as_secs()
                ));
            }
        };
        let totals = runner::run(&client, &key, &gpu, &options, &stop, &on_event).await;
        bar.finish();
        totals
    });
    let summary = format!(
        "{} units verified, {} FLOP, {} credits earned this run; balance {}; inputs: {} bytes \
         downloaded, {} bytes read by the units",
        totals.units,
        totals.flop,
        totals.credited,
        totals.balance,
        totals.bytes_downloaded,
        totals.bytes_used
    );
    if !terminal {
        log(&format!("stopped: {summary}"));
    }
    println!("{summary}");
    Ok(())
}

/// Ctrl-C, or SIGTERM (systemd's stop) on Unix.
async fn stop_requested() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            r = term.recv() => r.is_some(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
