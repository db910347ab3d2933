//! `glowworm-relay`: runs the relay (`serve`, the default), manages requesters' API keys
//! (`keys create | list | revoke`), registers partners (`partners add | list | revoke`) and
//! grants and audits budgets (`budget grant | show | audit`) and closes epochs (`payouts
//! close-epoch | epochs`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use glowworm_relay::accounts::payout_chain::{self, PayoutChain};
use glowworm_relay::accounts::{epochs, ledger, partners, requesters};
use glowworm_relay::config::LogFormat;
use glowworm_relay::http::{ops, page, serve};
use glowworm_relay::work::{demo, leasing};
use glowworm_relay::{AppState, Config, DatabaseArgs, ServeArgs, app};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator (feature `mimalloc`, on by default): see
/// relay/Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage requesters' API keys, in the database the relay serves from.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Register partners, whose widgets earn a share, and their sites, in the database the relay
    /// serves from (a running relay sees changes at once).
    Partners {
        #[command(subcommand)]
        command: PartnersCommand,
    },
    /// Requesters' budgets: grant credits (the operator pays them), show budgets, audit the
    /// ledger.
    Budget {
        #[command(subcommand)]
        command: BudgetCommand,
    },
    /// Deploy a payout contract for a new operator (prints its address).
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// Epochs: close one now, list them.
    Payouts {
        #[command(subcommand)]
        command: PayoutsCommand,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Deploy GlowwormPayout for `token`, owned by the key in `key_file`, taking roots from
    /// `publisher` (default: that key's address). Prints the contract's address on stdout: set it
    /// as payout_contract.
    Deploy {
        /// JSON-RPC URL (http://) of the chain.
        #[arg(long, value_name = "URL")]
        rpc_url: String,
        /// File holding the deploying (owner's) private key, 64 hex characters, mode 0600.
        #[arg(long, value_name = "PATH")]
        key_file: std::path::PathBuf,
        /// The ERC-20 token contributors are paid in.
        #[arg(long, value_name = "0x...")]
        token: String,
        /// The relay's publisher address (its publisher_key_file's); default: the owner.
        #[arg(long, value_name = "0x...")]
        publisher: Option<String>,
    },
}

async fn chain_command(command: ChainCommand) -> anyhow::Result<()> {
    match command {
        ChainCommand::Deploy {
            rpc_url,
            key_file,
            token,
            publisher,
        } => {
            let signer = glowworm_chain::read_key_file(&key_file)?;
            let parse = |what: &str, text: &str| -> anyhow::Result<glowworm_chain::Address> {
                text.parse()
                    .with_context(|| format!("{what} {text:?} is not an address"))
            };
            let token = parse("--token", &token)?;
            let publisher = match publisher {
                Some(text) => parse("--publisher", &text)?,
                None => signer.address(),
            };
            let owner = signer.address();
            let contract = glowworm_chain::deploy(&rpc_url, signer, token, publisher).await?;
            println!("{}", contract.to_checksum(None));
            eprintln!(
                "Deployed GlowwormPayout at {contract} (owner {owner}, publisher {publisher}, \
                 token {token}). Set payout_contract to it, chain_rpc_url to {rpc_url} and \
                 publisher_key_file to the publisher's key file."
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum PayoutsCommand {
    /// Close an epoch now (as the relay does every epoch_seconds): a Merkle tree of every
    /// address's lifetime earnings. Nothing is closed when nothing was earned since the last.
    CloseEpoch {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// List the latest epochs.
    Epochs {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

impl PayoutsCommand {
    fn settings(&self) -> &ServeArgs {
        let settings = match self {
            PayoutsCommand::CloseEpoch { settings } | PayoutsCommand::Epochs { settings } => {
                settings
            }
        };
        settings.serve_args()
    }
}

#[derive(Subcommand)]
enum BudgetCommand {
    /// Grant credits to a requester's budget (by id or name), or to `demo`, the budget that
    /// pays for the demo generator's jobs (unpaid while it cannot cover one). The operator
    /// stands behind a grant: a published payout root can never exceed what the payout
    /// contract holds.
    Grant {
        #[arg(value_name = "ID_NAME_OR_DEMO")]
        requester: String,
        /// Credits, the payout token's smallest unit: a positive whole number.
        #[arg(value_name = "CREDITS")]
        amount: i64,
        /// Why (kept with the entry).
        #[arg(long, default_value = "operator grant")]
        memo: String,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Show a requester's budget (or `demo`'s), or every budget.
    Show {
        #[arg(value_name = "ID_NAME_OR_DEMO")]
        requester: Option<String>,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Check the books: every entry sums to zero, no account but a source is below zero, the
    /// balances agree with the ledger. Exits 1 when they do not.
    Audit {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

impl BudgetCommand {
    fn settings(&self) -> &ServeArgs {
        let settings = match self {
            BudgetCommand::Grant { settings, .. }
            | BudgetCommand::Show { settings, .. }
            | BudgetCommand::Audit { settings } => settings,
        };
        settings.serve_args()
    }
}

#[derive(Subcommand)]
enum PartnersCommand {
    /// Register a partner: its address(es) and the sites (origins) its widget is paid on. With an
    /// address already registered, adds the other addresses and sites to that partner.
    Add {
        /// An Ethereum address of the partner (repeat for more): leases may name it, and the
        /// partner earns no share of work credited to any of them.
        #[arg(long = "address", value_name = "0x...", required = true)]
        addresses: Vec<String>,
        /// A site the partner embeds the widget on, such as https://blog.example (repeat for
        /// more).
        #[arg(long = "origin", value_name = "ORIGIN", required = true)]
        origins: Vec<String>,
        /// A name to recognize the partner by.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// List every partner, revoked ones included.
    List {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Revoke a partner, by id, name or address: leases can no longer name it.
    #[command(alias = "remove")]
    Revoke {
        #[arg(value_name = "ID_NAME_OR_ADDRESS")]
        partner: String,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

impl PartnersCommand {
    fn settings(&self) -> &ServeArgs {
        let settings = match self {
            PartnersCommand::Add { settings, .. }
            | PartnersCommand::List { settings }
            | PartnersCommand::Revoke { settings, .. } => settings,
        };
        settings.serve_args()
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a requester and its API key; the key is printed once, on stdout.
    Create {
        /// The requester's name: letters, digits, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// Most units of its queued jobs at once (default: the relay's default_quota_units).
        #[arg(long, value_name = "UNITS")]
        quota_units: Option<u64>,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// List every key (never the keys themselves: only their hashes are stored).
    List {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Revoke a key, by requester id or name; its jobs keep running.
    Revoke {
        #[arg(value_name = "ID_OR_NAME")]
        requester: String,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

impl KeysCommand {
    /// The relay's settings the command was given: --config FILE and --database PATH (the other
    /// settings come from the file, the GLOWWORM_* variables and the defaults).
    fn settings(&self) -> &ServeArgs {
        let settings = match self {
            KeysCommand::Create { settings, .. }
            | KeysCommand::List { settings }
            | KeysCommand::Revoke { settings, .. } => settings,
        };
        settings.serve_args()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    let load = |args: &ServeArgs| -> anyhow::Result<Config> {
        let config = Config::load(args, env)?;
        start_logging(config.log_format);
        Ok(config)
    };
    match cli.command {
        Some(Command::Serve(args)) => serve(load(&args)?).await,
        None => serve(load(&cli.serve)?).await,
        Some(Command::Keys { command }) => {
            let config = load(command.settings())?;
            keys(command, config)
        }
        Some(Command::Partners { command }) => {
            let config = load(command.settings())?;
            partners_command(command, config)
        }
        Some(Command::Budget { command }) => {
            let config = load(command.settings())?;
            budget_command(command, config)
        }
        Some(Command::Chain { command }) => chain_command(command).await,
        Some(Command::Payouts { command }) => {
            let config = load(command.settings())?;
            payouts_command(command, config).await
        }
    }
}

/// Log lines go to stderr, filtered by RUST_LOG (default info): as text, coloured only on a
/// terminal, or as one JSON object per line.
fn start_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => lines.json().with_ansi(false).init(),
    }
}

fn partners_command(command: PartnersCommand, config: Config) -> anyhow::Result<()> {
    let state = AppState::open(config.clone()).context("opening the relay's database")?;
    let now = state.now_ms();
    let mut conn = rusqlite::Connection::open(&config.database)
        .with_context(|| format!("opening {}", config.database.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let show = |p: &partners::Partner| {
        let status = match p.revoked_at_ms {
            Some(_) => "revoked",
            None => "active",
        };
        format!(
            "{:>4}  {:<20}  {status:<7}  {}  {}",
            p.id,
            p.name.as_deref().unwrap_or("-"),
            p.addresses.join(","),
            p.origins.join(" ")
        )
    };
    match command {
        PartnersCommand::Add {
            addresses,
            origins,
            name,
            ..
        } => {
            let partner =
                partners::register(&mut conn, name.as_deref(), &addresses, &origins, now)?;
            println!("{}", show(&partner));
            eprintln!(
                "Partner {} is registered: leases naming {} from {} earn it {} bps of each \
                 verified unit, except work credited to its own addresses.",
                partner.id,
                partner.addresses.join(" or "),
                partner.origins.join(", "),
                config.partner_share_bps
            );
        }
        PartnersCommand::List { .. } => {
            let all = partners::list(&conn)?;
            if all.is_empty() {
                eprintln!(
                    "No partners registered; register one with 'glowworm-relay partners add \
                     --address 0x... --origin https://site.example'."
                );
            }
            for partner in &all {
                println!("{}", show(partner));
            }
        }
        PartnersCommand::Revoke { partner, .. } => {
            let revoked = partners::revoke(&conn, &partner, now)?;
            eprintln!(
                "Revoked partner {} ({}): leases can no longer name it.",
                revoked.id,
                revoked.addresses.join(", ")
            );
        }
    }
    Ok(())
}

fn keys(command: KeysCommand, config: Config) -> anyhow::Result<()> {
    let state = AppState::open(config.clone()).context("opening the relay's database")?;
    let now = state.now_ms();
    let conn = rusqlite::Connection::open(&config.database)
        .with_context(|| format!("opening {}", config.database.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    match command {
        KeysCommand::Create {
            name, quota_units, ..
        } => {
            let quota = quota_units.unwrap_or(config.default_quota_units);
            let (key, info) = requesters::create(&conn, &name, quota, now)?;
            println!("{key}");
            eprintln!(
                "Created API key {} for requester '{}' (quota {} units). It is shown only \
                 now; give it to the requester (GLOWWORM_API_KEY).",
                info.id, info.name, info.quota_units
            );
        }
        KeysCommand::List { .. } => {
            let keys = requesters::list(&conn)?;
            if keys.is_empty() {
                eprintln!(
                    "No API keys yet; create one with 'glowworm-relay keys create --name NAME'."
                );
            }
            for key in keys {
                let status = match key.revoked_at_ms {
                    Some(_) => "revoked",
                    None => "active",
                };
                println!(
                    "{:>4}  {:<24}  quota {:>8} units  {status}",
                    key.id, key.name, key.quota_units
                );
            }
        }
        KeysCommand::Revoke { requester, .. } => {
            let info = requesters::revoke(&conn, &requester, now)?;
            eprintln!(
                "Revoked the API key of requester '{}' (id {}).",
                info.name, info.id
            );
        }
    }
    Ok(())
}

async fn payouts_command(command: PayoutsCommand, config: Config) -> anyhow::Result<()> {
    let units_per_credit = config.token_units_per_credit;
    let state = AppState::open(config).context("opening the relay's database")?;
    let print = |epoch: &epochs::Epoch| {
        println!(
            "{:>6}  ledger {:>10}  {:>8} addresses  total {:>24}  root {}  {}",
            epoch.epoch,
            epoch.ledger_position,
            epoch.leaves,
            epoch.total,
            epoch.root,
            epoch.publish_tx.as_deref().unwrap_or("not published")
        )
    };
    match command {
        PayoutsCommand::CloseEpoch { .. } => {
            match epochs::close(&state.db, units_per_credit, state.now_ms()).await? {
                Some(epoch) => print(&epoch),
                None => eprintln!("Nothing was earned since the last epoch: none closed."),
            }
        }
        PayoutsCommand::Epochs { .. } => {
            let list = state.db.read(|conn| epochs::list(conn, 100)).await?;
            if list.is_empty() {
                eprintln!("No epoch closed yet.");
            }
            list.iter().for_each(print);
        }
    }
    Ok(())
}

/// The budget account named on the command line: `demo`, or a requester's id or name.
fn budget_account(conn: &rusqlite::Connection, requester: &str) -> anyhow::Result<String> {
    if requester == "demo" {
        return Ok(ledger::DEMO_BUDGET.to_string());
    }
    Ok(ledger::requester_account(requesters::find(
        conn, requester,
    )?))
}

fn budget_command(command: BudgetCommand, config: Config) -> anyhow::Result<()> {
    let state = AppState::open(config.clone()).context("opening the relay's database")?;
    let now = state.now_ms();
    let conn = rusqlite::Connection::open(&config.database)
        .with_context(|| format!("opening {}", config.database.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    match command {
        BudgetCommand::Grant {
            requester,
            amount,
            memo,
            ..
        } => {
            let account = budget_account(&conn, &requester)?;
            let tx = conn.unchecked_transaction()?;
            let balance = ledger::grant(&tx, &account, amount, &memo, now)?;
            tx.commit()?;
            eprintln!("Granted {amount} credits to {account}; its budget is now {balance}.");
        }
        BudgetCommand::Show { requester, .. } => {
            let accounts = match requester {
                Some(requester) => vec![budget_account(&conn, &requester)?],
                None => {
                    let mut accounts = vec![ledger::DEMO_BUDGET.to_string()];
                    accounts.extend(
                        requesters::list(&conn)?
                            .into_iter()
                            .map(|key| ledger::requester_account(key.id)),
                    );
                    accounts
                }
            };
            for account in accounts {
                println!(
                    "{account:<24}  {:>20} credits",
                    ledger::balance(&conn, &account)?
                );
            }
        }
        BudgetCommand::Audit { .. } => {
            let audit = ledger::audit(&conn)?;
            println!("{}", serde_json::to_string_pretty(&audit)?);
            if !audit.holds() {
                anyhow::bail!("the books do not balance (see above)");
            }
            eprintln!("The books balance.");
        }
    }
    Ok(())
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    // Before the database is opened: its assembler thread starts writing job outputs at once
    // (those a crash left unwritten), and this would delete them.
    let store = glowworm_relay::store::blobs::BlobStore::beside(&config.database);
    let partial = store.remove_partial_writes().with_context(|| {
        format!(
            "removing unfinished blob files from {}",
            store.dir().display()
        )
    })?;
    if partial > 0 {
        tracing::info!("removed {partial} unfinished blob files the last run left");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    if config.public_origin.is_none() {
        // People reach the relay at the address it listens on (with the port chosen for port 0),
        // unless the operator said otherwise; wallet sign-in messages must name it.
        let bound = Config {
            listen: address,
            ..Config::default()
        };
        if !address.ip().is_loopback() || config.trust_forwarded_for {
            tracing::warn!(
                "public_origin is not set, so wallets can link only with messages for {}, the \
                 address the relay listens on; behind a proxy or on a public address, set \
                 public_origin (GLOWWORM_PUBLIC_ORIGIN, --public-origin) to the origin people \
                 open, such as https://glowworm.example",
                bound.public_origin()
            );
        }
        config.public_origin = Some(bound.public_origin());
    }
    tracing::info!(
        "wallet sign-in for {} (domain {})",
        config.public_origin(),
        config.siwe_domain()
    );
    let mut state = AppState::open(config.clone()).context("opening the relay's state")?;
    match PayoutChain::connect(&config)
        .await
        .context("connecting to the payout contract's chain")?
    {
        Some(chain) => {
            let chain = Arc::new(chain);
            payout_chain::spawn(
                chain.clone(),
                state.db.clone(),
                std::time::Duration::from_secs(config.chain_poll_seconds),
                state.clock.clone(),
            );
            state.payout_chain = Some(chain);
        }
        None => tracing::info!(
            "no chain (chain_rpc_url): earnings accrue and epochs close, claims are off"
        ),
    }
    let interrupted = state
        .db
        .call(|conn| leasing::mark_interrupted(conn))
        .await
        .context("marking the leases the last run left active")?;
    if interrupted > 0 {
        tracing::info!(
            "{interrupted} leases were active when the relay last stopped; their contributors \
             may still return them until their deadlines"
        );
    }
    tracing::info!(
        "database {}, page from {}, demo jobs {}",
        config.database.display(),
        match &config.www_dir {
            Some(dir) => dir.display().to_string(),
            None => "the copy built into the relay".to_string(),
        },
        if config.demo_jobs { "on" } else { "off" }
    );
    page::warn_if_incomplete(config.www_dir.as_deref());
    if config.demo_jobs {
        demo::spawn(state.db.clone(), state.config.clone(), state.clock.clone());
    }
    if config.epoch_seconds > 0 {
        epochs::spawn(
            state.db.clone(),
            std::time::Duration::from_secs(config.epoch_seconds),
            config.token_units_per_credit,
            state.clock.clone(),
        );
    }

    let metrics = match config.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at} (metrics_listen)"))?;
            Some((listener.local_addr()?, listener))
        }
        None => None,
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "Glowworm relay listening on http://{address}")?;
    if let Some((at, listener)) = metrics {
        // A private listener: no limits of the public one, and it stops with the process.
        writeln!(stdout, "Metrics on http://{at}/metrics")?;
        let router = ops::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("the metrics listener stopped: {e}");
            }
        });
    }
    stdout.flush()?;

    serve::serve(listener, app(state), &config, shutdown_signal()).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn each_subcommand_shows_only_its_own_flags() {
        Cli::command().debug_assert();
        let longs = |path: &[&str]| -> Vec<String> {
            let mut command = Cli::command();
            for name in path {
                command = command.find_subcommand(name).unwrap().clone();
            }
            let args = command.get_arguments();
            args.filter_map(|a| a.get_long().map(String::from))
                .collect()
        };
        assert!(longs(&["serve"]).contains(&"lease-seconds".to_string()));
        assert!(
            longs(&[]).contains(&"lease-seconds".to_string()),
            "serve is the default"
        );
        for path in [
            &["keys", "create"][..],
            &["keys", "list"],
            &["partners", "add"],
        ] {
            let flags = longs(path);
            assert!(flags.contains(&"config".to_string()), "{path:?}");
            assert!(flags.contains(&"database".to_string()), "{path:?}");
            assert!(
                !flags.contains(&"lease-seconds".to_string()),
                "{path:?}: {flags:?}"
            );
        }
    }
}
