//! `glowworm-worker`: contribute a GPU server's time to a Glowworm relay.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::key_file;
use glowworm_worker::link;
use glowworm_worker::runner::{self, Event, RunOptions, StopSignal};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Glowworm native contributor: runs the relay's kernels on this machine's GPU"
)]
struct Cli {
    /// The relay's base URL.
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

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Some(Command::Run(args)) => work(&cli.relay, key, args),
        Some(Command::Link {
            address,
            chain_id,
            signature,
            message,
        }) => link(&cli.relay, &key, &address, chain_id, message.zip(signature)),
        None => work(&cli.relay, key, cli.run),
    }
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

fn work(relay: &str, key: glowworm_protocol::signing::ContributorKey, args: RunArgs) -> Result<()> {
    let client = RelayClient::new(relay)?;
    let gpu = GpuThread::start().context(
        "could not open a GPU (on Linux without one: apt-get install mesa-vulkan-drivers)",
    )?;
    eprintln!("GPU: {}", gpu.adapter().description);
    eprintln!(
        "Contributor {} working for {}",
        key.public_hex(),
        client.base()
    );

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
        let on_ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nStopping: finishing the units in flight (Ctrl-C again to quit at once)"
                );
                on_ctrl_c.stop();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
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
            Event::Error { message, retry_in } => {
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
    println!(
        "{} units verified, {} FLOP, {} credits earned this run; balance {}; inputs: {} bytes \
         downloaded, {} bytes read by the units",
        totals.units,
        totals.flop,
        totals.credited,
        totals.balance,
        totals.bytes_downloaded,
        totals.bytes_used
    );
    Ok(())
}
