//! `glowworm-relay`: runs the relay. `serve` is the only subcommand, and the default.

use anyhow::Context;
use clap::{Parser, Subcommand};
use glowworm_relay::{AppState, Config, ServeArgs, app, demo};
use std::io::{IsTerminal, Write};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "glowworm-relay",
    version,
    about = "Glowworm relay: leases work units, verifies results, keeps the credit ledger",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand, these are the flags of `serve`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the page (the default). Settings: defaults < --config file <
    /// GLOWWORM_* environment < flags.
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let config = Config::load(&args, |name| std::env::var(name).ok())?;
    serve(config).await
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let state = AppState::open(config.clone()).context("opening the relay's state")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        "database {}, page from {}, demo jobs {}",
        config.database.display(),
        config.www_dir.display(),
        if config.demo_jobs { "on" } else { "off" }
    );
    if config.demo_jobs {
        demo::spawn(state.clone());
    }

    let mut stdout = std::io::stdout();
    writeln!(stdout, "Glowworm relay listening on http://{address}")?;
    stdout.flush()?;

    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    tracing::info!("relay stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
