//! The relay's settings: one [`Config`] struct, each setting declared once.
//!
//! Each field of [`Config`] is one setting, and its declaration says all there is to it: the doc
//! comment is its `--help` text, the field's name is its TOML key, and its `#[arg]` attribute
//! gives its flag, its `GLOWWORM_*` environment variable and its default. Nothing else lists the
//! settings: [`Config::default`], the TOML file, the environment and the flags all go through
//! these declarations ([`settings`]).
//!
//! Settings come in layers, each overriding the one before it: the declared defaults, then a TOML
//! file (`--config` or `GLOWWORM_CONFIG`), then `GLOWWORM_*` environment variables, then flags.
//! [`Config::load`] makes each layer's values the defaults of the settings' clap arguments in
//! turn, then lets clap parse them all into a [`Config`], and validates it.
//!
//! The environment is read by [`Config::load`] (through the lookup it is given), not by clap
//! while it parses the command line: values are trimmed, lists are comma-separated, an empty
//! value unsets a setting that has no default, and a bad value is reported with the variable's
//! name ([`ConfigError::BadEnv`]). The flags' help still names each variable.
//!
//! This module is at the bottom of the relay: it imports nothing of it but [`crate::ids`], a
//! leaf of pure checks.

use crate::error::ConfigError;
use crate::ids::{canonical_origin, is_domain};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde::Deserialize;
use std::error::Error as _;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable naming the TOML file, like `--config`.
pub const CONFIG_ENV: &str = "GLOWWORM_CONFIG";

/// Everything the relay can be told. Each field is one setting: its TOML key is the field's name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[group(skip)]
pub struct Config {
    /// Address to listen on, such as 127.0.0.1:8787; port 0 picks a free port.
    #[arg(
        long,
        env = "GLOWWORM_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8787"
    )]
    pub listen: SocketAddr,
    /// SQLite database file; its parent directories are created.
    #[arg(
        long,
        env = "GLOWWORM_DATABASE",
        value_name = "PATH",
        default_value = "data/glowworm.sqlite"
    )]
    pub database: PathBuf,
    /// The relay's own ed25519 key, which signs every credit's receipt: a file of 64 hex
    /// characters, made (mode 0600) on first start; refused when others may read it. Default:
    /// beside the database, DATABASE.relay-key.
    #[arg(long, env = "GLOWWORM_RELAY_KEY_FILE", value_name = "PATH")]
    pub relay_key_file: Option<PathBuf>,
    /// Serve the static page at / from this directory, read at each request (for developing
    /// the page). Unset (the default) serves the copy of www/ built into the binary, its
    /// contributor module (www/pkg, made by cargo xtask build) included.
    #[arg(long, env = "GLOWWORM_WWW_DIR", value_name = "DIR")]
    pub www_dir: Option<PathBuf>,
    /// Whether the demo job generator keeps contributors busy while no other work is queued;
    /// --no-demo turns it off (as do GLOWWORM_DEMO_JOBS=false and demo_jobs = false in the file).
    #[arg(
        long = "no-demo",
        env = "GLOWWORM_DEMO_JOBS",
        action = ArgAction::SetFalse,
        default_value_t = true
    )]
    pub demo_jobs: bool,
    /// Seconds a contributor has to return a leased unit.
    #[arg(
        long,
        env = "GLOWWORM_LEASE_SECONDS",
        value_name = "N",
        default_value_t = 60
    )]
    pub lease_seconds: u64,
    /// Results of proven (trusted) keys that may fail verification on one unit before it fails
    /// for good, failing its job; expiries and unproven keys' results never count.
    #[arg(
        long,
        env = "GLOWWORM_MAX_ATTEMPTS",
        value_name = "N",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// Rows and columns of C per unit (each unit takes the full K).
    #[arg(
        long,
        env = "GLOWWORM_UNIT_SIZE",
        value_name = "N",
        default_value_t = 64
    )]
    pub unit_size: u32,
    /// Rows of A and C in demo jobs.
    #[arg(long, env = "GLOWWORM_DEMO_M", value_name = "N", default_value_t = 256)]
    pub demo_m: u32,
    /// Columns of B and C in demo jobs.
    #[arg(long, env = "GLOWWORM_DEMO_N", value_name = "N", default_value_t = 256)]
    pub demo_n: u32,
    /// Columns of A and rows of B in demo jobs.
    #[arg(long, env = "GLOWWORM_DEMO_K", value_name = "N", default_value_t = 256)]
    pub demo_k: u32,
    /// Largest request body accepted, in bytes (8 MiB).
    #[arg(long, env = "GLOWWORM_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Largest job upload (POST /v1/jobs, all parts together), in bytes (256 MiB).
    #[arg(
        long,
        env = "GLOWWORM_MAX_UPLOAD_BYTES",
        value_name = "BYTES",
        default_value_t = 256 << 20
    )]
    pub max_upload_bytes: usize,
    /// The quota of a new API key: most units of its requester's queued jobs at once.
    #[arg(
        long,
        env = "GLOWWORM_DEFAULT_QUOTA_UNITS",
        value_name = "UNITS",
        default_value_t = 100_000
    )]
    pub default_quota_units: u64,
    /// An origin allowed to call the contributor API from a browser (repeat for more; the
    /// environment variable is comma-separated); none means any origin. Requester endpoints
    /// (/v1/jobs...) are never open to other origins.
    #[arg(
        long = "cors-origin",
        env = "GLOWWORM_CORS_ORIGINS",
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,

    // Limits against abuse (relay/src/limits.rs, relay/src/serve.rs).
    /// Requests per second from one IPv4 address or IPv6 /64; 0 means no limit.
    #[arg(
        long,
        env = "GLOWWORM_RATE_PER_ADDRESS",
        value_name = "N",
        default_value_t = 200
    )]
    pub rate_per_address: u32,
    /// Requests one address may make at once before its rate applies.
    #[arg(
        long,
        env = "GLOWWORM_BURST_PER_ADDRESS",
        value_name = "N",
        default_value_t = 400
    )]
    pub burst_per_address: u32,
    /// Requests per second with one contributor key or requester API key; 0 means no limit.
    #[arg(
        long,
        env = "GLOWWORM_RATE_PER_KEY",
        value_name = "N",
        default_value_t = 100
    )]
    pub rate_per_key: u32,
    /// Requests one key may make at once before its rate applies.
    #[arg(
        long,
        env = "GLOWWORM_BURST_PER_KEY",
        value_name = "N",
        default_value_t = 200
    )]
    pub burst_per_key: u32,
    /// Seconds a request, body included, may take before it is answered 408.
    #[arg(
        long,
        env = "GLOWWORM_REQUEST_TIMEOUT_SECONDS",
        value_name = "N",
        default_value_t = 30
    )]
    pub request_timeout_seconds: u64,
    /// The same for job uploads (POST /v1/jobs).
    #[arg(
        long,
        env = "GLOWWORM_UPLOAD_TIMEOUT_SECONDS",
        value_name = "N",
        default_value_t = 600
    )]
    pub upload_timeout_seconds: u64,
    /// Seconds a client has to send a request's headers before its connection is closed.
    #[arg(
        long,
        env = "GLOWWORM_HEADER_TIMEOUT_SECONDS",
        value_name = "N",
        default_value_t = 10
    )]
    pub header_timeout_seconds: u64,
    /// Most connections open at once; more wait to be accepted.
    #[arg(
        long,
        env = "GLOWWORM_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_connections: u32,
    /// Most connections open at once from one IPv4 address or IPv6 /64; more are closed as they
    /// are accepted. 0 means no cap; off with trust_forwarded_for (every connection then comes
    /// from the proxy, which should cap them itself).
    #[arg(
        long,
        env = "GLOWWORM_MAX_CONNECTIONS_PER_ADDRESS",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_connections_per_address: u32,
    /// Seconds a connection with no request in progress stays open after its last request
    /// (HTTP/2; HTTP/1 keep-alive waits at most header_timeout_seconds for its next request).
    #[arg(
        long,
        env = "GLOWWORM_IDLE_TIMEOUT_SECONDS",
        value_name = "N",
        default_value_t = 30
    )]
    pub idle_timeout_seconds: u64,

    // Linking a wallet (relay/src/sign_in.rs, relay/src/nonces.rs, relay/src/links.rs).
    /// The origin people reach the relay at, such as https://glowworm.example: Sign-In with
    /// Ethereum messages must name its host as their domain and a URI on it. Unset means the
    /// listen address (http://127.0.0.1:8787); never a request header.
    #[arg(long, env = "GLOWWORM_PUBLIC_ORIGIN", value_name = "ORIGIN")]
    pub public_origin: Option<String>,
    /// The domain (host, or host:port) Sign-In with Ethereum messages must name to link a
    /// wallet; unset means the host of public_origin (kept for older configurations).
    #[arg(long, env = "GLOWWORM_SIWE_DOMAIN", value_name = "HOST[:PORT]")]
    pub siwe_domain: Option<String>,
    /// A chain id Sign-In with Ethereum messages may name (repeat for more; the environment
    /// variable is comma-separated); none means any.
    #[arg(
        long = "siwe-chain-id",
        env = "GLOWWORM_SIWE_CHAIN_IDS",
        value_name = "ID"
    )]
    pub siwe_chain_ids: Vec<u64>,
    /// JSON-RPC endpoint of an Ethereum node, to check contract wallets' signatures (ERC-1271);
    /// unset means only ordinary (EOA) wallets can link.
    #[arg(long, env = "GLOWWORM_ETH_RPC_URL", value_name = "URL")]
    pub eth_rpc_url: Option<String>,
    /// Seconds a sign-in nonce stays usable.
    #[arg(
        long,
        env = "GLOWWORM_NONCE_SECONDS",
        value_name = "N",
        default_value_t = 600
    )]
    pub nonce_seconds: u64,
    /// Most unexpired nonces kept at once; more nonce requests are refused until some expire.
    #[arg(
        long,
        env = "GLOWWORM_MAX_PENDING_NONCES",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub max_pending_nonces: u32,
    /// Most unexpired, unused nonces one IPv4 address or IPv6 /64 may hold at once.
    #[arg(
        long,
        env = "GLOWWORM_MAX_NONCES_PER_ADDRESS",
        value_name = "N",
        default_value_t = 16
    )]
    pub max_nonces_per_address: u32,

    // Verification of results that no cheap check covers (relay/src/replication.rs).
    /// Agreeing results from distinct contributors a replicated unit needs.
    #[arg(long, env = "GLOWWORM_REPLICAS", value_name = "N", default_value_t = 2)]
    pub replicas: u32,
    /// Results of proven keys that may disagree on a replicated unit before it fails (strangers'
    /// lone results do not count).
    #[arg(
        long,
        env = "GLOWWORM_MAX_REPLICAS",
        value_name = "N",
        default_value_t = 5
    )]
    pub max_replicas: u32,
    /// Never send two replicas of a unit to the same /24 (IPv4) or /64 (IPv6) network.
    #[arg(
        long,
        env = "GLOWWORM_DISTINCT_NETWORKS",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = true
    )]
    pub distinct_networks: bool,
    /// Take the client address from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(
        long,
        env = "GLOWWORM_TRUST_FORWARDED_FOR",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false
    )]
    pub trust_forwarded_for: bool,
    /// Compare replicas only between adapters of the same vendor and architecture.
    #[arg(
        long,
        env = "GLOWWORM_HOMOGENEOUS_REDUNDANCY",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false
    )]
    pub homogeneous_redundancy: bool,
    /// Share of leases, in thousandths, that are known-answer (canary) units, where one can be
    /// made.
    #[arg(
        long,
        env = "GLOWWORM_CANARY_PERMILLE",
        value_name = "N",
        default_value_t = 20
    )]
    pub canary_permille: u32,
    /// Consecutive valid results after which a contributor is trusted.
    #[arg(
        long,
        env = "GLOWWORM_TRUST_AFTER",
        value_name = "N",
        default_value_t = 10
    )]
    pub trust_after: u32,
    /// Share of a trusted contributor's replicated units, in thousandths, still replicated.
    #[arg(
        long,
        env = "GLOWWORM_TRUSTED_REPLICATION_PERMILLE",
        value_name = "N",
        default_value_t = 50
    )]
    pub trusted_replication_permille: u32,
    /// Invalid results (not outweighed by trust_after valid ones in a row) that quarantine a
    /// contributor.
    #[arg(
        long,
        env = "GLOWWORM_QUARANTINE_STRIKES",
        value_name = "N",
        default_value_t = 3
    )]
    pub quarantine_strikes: u32,
    /// Seconds a trusted contributor's unreplicated result may wait for a later check of that
    /// contributor before the unit is replicated after all.
    #[arg(
        long,
        env = "GLOWWORM_SETTLE_SECONDS",
        value_name = "N",
        default_value_t = 600
    )]
    pub settle_seconds: u64,
    // leasing::charge_gpu_time counts it.
    /// GPU seconds a kernel unit may use in all, from each lease to its result or to a release
    /// that reported the GPU failing; a unit over it fails its job.
    #[arg(
        long,
        env = "GLOWWORM_UNIT_GPU_SECONDS",
        value_name = "N",
        default_value_t = 300
    )]
    pub unit_gpu_seconds: u64,
    /// Contributors whose GPU may fail on one kernel unit (a release saying so, such as a lost
    /// device) before the unit fails its job.
    #[arg(
        long,
        env = "GLOWWORM_MAX_GPU_FAILURES",
        value_name = "N",
        default_value_t = 3
    )]
    pub max_gpu_failures: u32,
    /// Verify demo jobs by replication instead of Freivalds' check (to exercise replication).
    #[arg(
        long,
        env = "GLOWWORM_DEMO_REPLICATE",
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = false
    )]
    pub demo_replicate: bool,

    // Leases in flight (relay/src/lease_caps.rs).
    /// Leases a key with no verified record may hold at once; each valid result in a row adds
    /// one (an expired lease or an invalid result starts it over).
    #[arg(
        long,
        env = "GLOWWORM_LEASES_PER_NEW_KEY",
        value_name = "N",
        default_value_t = 2
    )]
    pub leases_per_new_key: u32,
    /// Most leases one key may hold at once, however long its record.
    #[arg(
        long,
        env = "GLOWWORM_MAX_LEASES_PER_KEY",
        value_name = "N",
        default_value_t = 32
    )]
    pub max_leases_per_key: u32,
    /// Most leases the keys linked to one wallet address may hold at once (their record, in a
    /// row, adds one each to a starting leases_per_new_key).
    #[arg(
        long,
        env = "GLOWWORM_MAX_LEASES_PER_ADDRESS",
        value_name = "N",
        default_value_t = 128
    )]
    pub max_leases_per_address: u32,
    /// Leases the keys without a record (not trusted) may hold at once from one network; each
    /// of their leases from it that expired or was rejected in the last ten minutes takes one
    /// away (down to one). 0 turns the cap off.
    #[arg(
        long,
        env = "GLOWWORM_NEW_LEASES_PER_NETWORK",
        value_name = "N",
        default_value_t = 16
    )]
    pub new_leases_per_network: u32,
    /// Most leases all keys may hold at once from one network. 0 turns the cap off.
    #[arg(
        long,
        env = "GLOWWORM_MAX_LEASES_PER_NETWORK",
        value_name = "N",
        default_value_t = 512
    )]
    pub max_leases_per_network: u32,

    // Prices (relay/src/work/pricing.rs) and the operator's fee.
    /// What a verified matmul result pays, in credits (the payout token's smallest unit) per
    /// GFLOP (2·m·n·k / 10^9), rounded down per unit. The default, 10^9, pays one credit per
    /// floating-point operation. Kernel jobs name their own price per unit, or pay at this rate
    /// per invocation.
    #[arg(
        long,
        env = "GLOWWORM_PRICE_PER_GFLOP",
        value_name = "CREDITS",
        default_value_t = 1_000_000_000
    )]
    pub price_per_gflop: u64,
    /// The operator's fee: basis points of each verified result's price, kept in the
    /// `operator` account. 100 = 1%.
    #[arg(
        long,
        env = "GLOWWORM_OPERATOR_FEE_BPS",
        value_name = "BPS",
        default_value_t = 0
    )]
    pub operator_fee_bps: u32,
    /// How often the relay closes an epoch: a Merkle tree of every address's lifetime
    /// earnings, published as a file (and, with a chain, as the payout contract's root).
    /// 0: only on `glowworm-relay payouts close-epoch`.
    #[arg(
        long,
        env = "GLOWWORM_EPOCH_SECONDS",
        value_name = "SECONDS",
        default_value_t = 3600
    )]
    pub epoch_seconds: u64,

    // The payout contract (relay/src/accounts/payout_chain.rs): chain_rpc_url, payout_contract
    // and publisher_key_file together, or none of them (no chain: earnings accrue, epochs are
    // closed and served, claims are off).
    /// JSON-RPC URL (http://) of the chain the payout contract is on.
    #[arg(long, env = "GLOWWORM_CHAIN_RPC_URL", value_name = "URL")]
    pub chain_rpc_url: Option<String>,
    /// The chain id the RPC must answer with; checked when the relay starts.
    #[arg(long, env = "GLOWWORM_CHAIN_ID", value_name = "ID")]
    pub chain_id: Option<u64>,
    /// The payout contract's address (glowworm-relay chain deploy makes one).
    #[arg(long, env = "GLOWWORM_PAYOUT_CONTRACT", value_name = "0x...")]
    pub payout_contract: Option<String>,
    /// File holding the publisher's private key (64 hex characters, mode 0600): the key the
    /// contract lets publish epochs' roots.
    #[arg(long, env = "GLOWWORM_PUBLISHER_KEY_FILE", value_name = "PATH")]
    pub publisher_key_file: Option<PathBuf>,
    /// Blocks that must hold a deposit (its own included) before the relay credits it.
    #[arg(
        long,
        env = "GLOWWORM_CONFIRMATIONS",
        value_name = "BLOCKS",
        default_value_t = 3
    )]
    pub confirmations: u64,
    /// The payout token's smallest units per credit: a deposit of N units funds N / this
    /// credits (rounded down), and an address's credits are worth this many units in a root.
    #[arg(
        long,
        env = "GLOWWORM_TOKEN_UNITS_PER_CREDIT",
        value_name = "UNITS",
        default_value_t = 1
    )]
    pub token_units_per_credit: u64,
    /// How often the relay looks for new deposits and publishes closed epochs' roots.
    #[arg(
        long,
        env = "GLOWWORM_CHAIN_POLL_SECONDS",
        value_name = "SECONDS",
        default_value_t = 5
    )]
    pub chain_poll_seconds: u64,

    // Partner widgets (relay/src/partners.rs, relay/src/embedding.rs); partners::validate_config
    // checks these when the relay opens.
    /// A partner's share of each unit computed through its widget, in basis points of the
    /// unit's price, taken from it (the contributor is credited the rest, less the operator's
    /// fee): floor(price * bps / 10000). 1000 = 10%.
    #[arg(
        long,
        env = "GLOWWORM_PARTNER_SHARE_BPS",
        value_name = "BPS",
        default_value_t = 1000
    )]
    pub partner_share_bps: u32,
    /// A partner registered by the settings (repeat for more; the environment variable is
    /// comma-separated), in addition to those registered in the database (glowworm-relay
    /// partners add): each is paid on the sites of embed_origins.
    #[arg(
        long = "partner-address",
        env = "GLOWWORM_PARTNER_ADDRESSES",
        value_name = "0x..."
    )]
    pub partner_addresses: Vec<String>,
    /// An origin of a site that may embed the widget, such as https://blog.example (repeat for
    /// more; the environment variable is comma-separated): the frame-ancestors of /widget.html,
    /// with every registered partner's sites; none means any site. Also the sites of the
    /// partners of partner_addresses.
    #[arg(
        long = "embed-origin",
        env = "GLOWWORM_EMBED_ORIGINS",
        value_name = "ORIGIN"
    )]
    pub embed_origins: Vec<String>,

    // What operators watch (relay/src/telemetry.rs, relay/src/http/ops.rs; the log format is
    // applied by main.rs).
    /// How log lines on stderr are written: text (for people; coloured only on a terminal) or
    /// json (one JSON object per line, for log collectors).
    #[arg(
        long,
        env = "GLOWWORM_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// Address of a second listener serving GET /metrics (Prometheus' text format), /healthz and
    /// /readyz, such as 127.0.0.1:9187; port 0 picks a free port. Unset: no /metrics at all
    /// (the public listener never serves it).
    #[arg(long, env = "GLOWWORM_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// How the relay writes its log lines ([`Config::log_format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    /// The declared defaults.
    fn default() -> Self {
        Config::from_settings(settings()).expect("the declared defaults are valid")
    }
}

/// Every setting as clap declares it on [`Config`]: its id (the TOML key and the field's name),
/// flag, `GLOWWORM_*` variable, default and help.
pub fn settings() -> Vec<Arg> {
    Config::augment_args(Command::new("glowworm-relay"))
        .get_arguments()
        .cloned()
        .collect()
}

/// `arg` as a flag only: clap does not read its environment variable ([`Config::load`] does),
/// and its help names the variable instead.
fn flag_only(arg: Arg) -> Arg {
    let Some(name) = arg
        .get_env()
        .map(|name| name.to_string_lossy().into_owned())
    else {
        return arg;
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.env(None).help(format!("{help} [env: {name}]"))
}

/// `--config FILE`, which is no setting of its own: it says where the file layer comes from.
fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(format!(
            "TOML config file: each setting's key is its flag's name with underscores (lists are \
             arrays, named in the plural; demo_jobs = false for --no-demo) [env: {CONFIG_ENV}]"
        ))
}

/// The command line's part in the settings: the file `--config` names and the settings given as
/// flags. Every setting left out keeps its value from the layers below (file, environment,
/// default). Its flags are every setting's: those of `glowworm-relay serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// The settings given as flags: each one's id and its values as typed.
    flags: Vec<(String, Vec<OsString>)>,
}

impl ServeArgs {
    /// The `--config` file and the settings given as flags in `matches`, a parse of arguments
    /// that include `--config` and some settings' flags.
    fn from_matches(matches: &ArgMatches) -> ServeArgs {
        let setting_ids: Vec<String> = settings().iter().map(|a| a.get_id().to_string()).collect();
        let flags = matches
            .ids()
            .map(|id| id.as_str())
            .filter(|id| setting_ids.iter().any(|s| s == id))
            .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
            .map(|id| {
                let values = matches.get_raw(id).into_iter().flatten();
                (id.to_string(), values.map(|v| v.to_os_string()).collect())
            })
            .collect();
        ServeArgs {
            config: matches.get_one::<PathBuf>("config").cloned(),
            flags,
        }
    }
}

impl Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(config_arg())
            .args(settings().into_iter().map(flag_only))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs::from_matches(matches))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = ServeArgs::from_matches(matches);
        Ok(())
    }
}

impl clap::CommandFactory for ServeArgs {
    fn command() -> Command {
        Self::augment_args(Command::new("serve"))
    }

    fn command_for_update() -> Command {
        Self::command()
    }
}

impl clap::Parser for ServeArgs {}

/// `--config FILE` and `--database PATH` only: the flags of the commands that open the database
/// without serving it (`glowworm-relay keys ...`, `partners ...`). The other settings still come
/// from the file, the environment and the defaults.
#[derive(Debug, Clone, Default)]
pub struct DatabaseArgs(ServeArgs);

impl DatabaseArgs {
    /// The same, as the command line's part for [`Config::load`].
    pub fn serve_args(&self) -> &ServeArgs {
        &self.0
    }
}

impl Args for DatabaseArgs {
    fn augment_args(cmd: Command) -> Command {
        let database = settings().into_iter().find(|a| a.get_id() == "database");
        cmd.arg(config_arg()).args(database.map(flag_only))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for DatabaseArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(DatabaseArgs(ServeArgs::from_matches(matches)))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = ServeArgs::from_matches(matches);
        Ok(())
    }
}

impl Config {
    /// Defaults, then the config file, then the environment (`env` looks a variable up; pass
    /// `|name| std::env::var(name).ok()`), then the flags. The result is validated.
    pub fn load(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // Each layer's values become the settings' defaults in turn, so each overrides the last.
        let mut declared = settings();
        let file = args
            .config
            .clone()
            .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
        if let Some(path) = file {
            for (key, values) in file_values(&path)? {
                let values = values.into_iter().map(OsString::from).collect();
                set_default(&mut declared, &key, Some(values));
            }
        }
        for (key, values) in env_values(&env)? {
            let values = values.map(|v| v.into_iter().map(OsString::from).collect());
            set_default(&mut declared, &key, values);
        }
        for (key, values) in &args.flags {
            set_default(&mut declared, key, Some(values.clone()));
        }
        let config =
            Config::from_settings(declared).map_err(|e| ConfigError::Invalid(clap_message(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The config that clap makes of `settings` with no flags given: each setting's default.
    fn from_settings(settings: Vec<Arg>) -> Result<Config, clap::Error> {
        let matches = Command::new("glowworm-relay")
            .no_binary_name(true)
            .args(settings.into_iter().map(|arg| arg.env(None)))
            .try_get_matches_from(Vec::<OsString>::new())?;
        Config::from_arg_matches(&matches)
    }

    /// Refuses settings the relay cannot work with. (The partner settings are checked by
    /// `partners::validate_config` when the relay opens.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_string()));
        if self.lease_seconds == 0 {
            return invalid("lease_seconds must be at least 1");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if self.unit_size == 0 || self.demo_m == 0 || self.demo_n == 0 || self.demo_k == 0 {
            return invalid("unit_size, demo_m, demo_n and demo_k must be at least 1");
        }
        let unit_output = 4 * self.unit_size as u64 * self.unit_size as u64;
        if unit_output > glowworm_protocol::wire::MAX_OUTPUT_BYTES {
            return invalid(
                "unit_size is too large: a unit's output would exceed MAX_OUTPUT_BYTES",
            );
        }
        // A result carries the output in base64 (4/3 larger) plus a little JSON around it.
        if (unit_output * 4 / 3 + 4096) > self.max_body_bytes as u64 {
            return invalid("max_body_bytes is too small for a result of one unit");
        }
        for origin in &self.cors_origins {
            if axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "cors origin {origin:?} is not a valid header value"
                )));
            }
        }
        if self.request_timeout_seconds == 0
            || self.upload_timeout_seconds == 0
            || self.header_timeout_seconds == 0
            || self.idle_timeout_seconds == 0
            || self.max_connections == 0
        {
            return invalid(
                "request_timeout_seconds, upload_timeout_seconds, header_timeout_seconds, \
                 idle_timeout_seconds and max_connections must be at least 1",
            );
        }
        if self.nonce_seconds == 0
            || self.max_pending_nonces == 0
            || self.max_nonces_per_address == 0
        {
            return invalid(
                "nonce_seconds, max_pending_nonces and max_nonces_per_address must be at least 1",
            );
        }
        if let Some(origin) = &self.public_origin {
            let canonical = canonical_origin(origin)
                .map_err(|e| ConfigError::Invalid(format!("public_origin {e}")))?;
            if &canonical != origin {
                return Err(ConfigError::Invalid(format!(
                    "public_origin {origin:?} must be written as browsers send it: {canonical:?}"
                )));
            }
        }
        if let Some(domain) = &self.siwe_domain
            && !is_domain(domain)
        {
            return Err(ConfigError::Invalid(format!(
                "siwe_domain {domain:?} is not a host or host:port"
            )));
        }
        if let Some(chain) = self.siwe_chain_ids.iter().find(|&&id| id > i64::MAX as u64) {
            return Err(ConfigError::Invalid(format!(
                "siwe chain id {chain} is too large"
            )));
        }
        let chain = [
            self.chain_rpc_url.is_some(),
            self.payout_contract.is_some(),
            self.publisher_key_file.is_some(),
        ];
        if chain.contains(&true) && chain.contains(&false) {
            return invalid(
                "chain_rpc_url, payout_contract and publisher_key_file go together: set all \
                 three for payouts on chain, or none",
            );
        }
        if self.token_units_per_credit == 0 || self.chain_poll_seconds == 0 {
            return invalid("token_units_per_credit and chain_poll_seconds must be at least 1");
        }
        if self.replicas < 2 || self.max_replicas < self.replicas {
            return invalid("replicas must be at least 2 and max_replicas at least replicas");
        }
        if self.canary_permille > 1000 || self.trusted_replication_permille > 1000 {
            return invalid("canary_permille and trusted_replication_permille are at most 1000");
        }
        if self.unit_gpu_seconds == 0 || self.max_gpu_failures == 0 {
            return invalid("unit_gpu_seconds and max_gpu_failures must be at least 1");
        }
        if self.leases_per_new_key == 0
            || self.max_leases_per_key < self.leases_per_new_key
            || self.max_leases_per_address < self.leases_per_new_key
        {
            return invalid(
                "leases_per_new_key must be at least 1, and max_leases_per_key and \
                 max_leases_per_address at least leases_per_new_key",
            );
        }
        if self.trust_after == 0 || self.quarantine_strikes == 0 || self.settle_seconds == 0 {
            return invalid(
                "trust_after, quarantine_strikes and settle_seconds must be at least 1",
            );
        }
        if let Some(url) = &self.eth_rpc_url {
            let parsed = reqwest::Url::parse(url);
            if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::Invalid(format!(
                    "eth_rpc_url {url:?} is not an http or https URL"
                )));
            }
        }
        Ok(())
    }

    /// The origin people reach the relay at: `public_origin`, or else the listen address as an
    /// origin ("http://127.0.0.1:8787"). The binary sets `public_origin` from the address it
    /// actually bound when none is configured, so port 0 gets the port chosen.
    pub fn public_origin(&self) -> String {
        match &self.public_origin {
            Some(origin) => origin.clone(),
            None => canonical_origin(&format!("http://{}", self.listen))
                .unwrap_or_else(|_| format!("http://{}", self.listen)),
        }
    }

    /// The domain Sign-In with Ethereum messages must name: `siwe_domain`, or the host (and
    /// port, unless the scheme's default) of [`Config::public_origin`]. Never a request header.
    pub fn siwe_domain(&self) -> String {
        if let Some(domain) = &self.siwe_domain {
            return domain.clone();
        }
        let origin = self.public_origin();
        origin
            .split_once("://")
            .map_or(origin.as_str(), |(_, authority)| authority)
            .to_string()
    }

    /// How long a sign-in nonce lasts, in milliseconds.
    pub fn nonce_ms(&self) -> i64 {
        self.nonce_seconds.min(i64::MAX as u64 / 1000) as i64 * 1000
    }

    /// How long a trusted result waits for a later check, in milliseconds.
    pub fn settle_ms(&self) -> i64 {
        self.settle_seconds.min(i64::MAX as u64 / 1000) as i64 * 1000
    }

    /// How much GPU time a kernel unit may use in all, in milliseconds.
    pub fn unit_gpu_ms(&self) -> i64 {
        self.unit_gpu_seconds.min(i64::MAX as u64 / 1000) as i64 * 1000
    }

    /// How long a lease lasts, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        self.lease_seconds as i64 * 1000
    }
}

/// Makes `values` the default of the setting `id` in `settings`; `None` leaves it without one
/// (unset, for a setting that may be unset).
fn set_default(settings: &mut [Arg], id: &str, values: Option<Vec<OsString>>) {
    for arg in settings.iter_mut().filter(|arg| arg.get_id() == id) {
        *arg = match values.clone() {
            Some(values) => arg.clone().default_values(values),
            None => arg.clone().default_value(None),
        };
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The config a TOML file's text makes: the defaults overridden by its keys. An unknown key or a
/// value of the wrong type is refused.
fn parse_file(path: &Path, text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The settings a TOML file gives, each with its values as text for clap to parse. The file is
/// first checked against [`Config`] itself ([`parse_file`]), so what clap gets is well-formed.
fn file_values(path: &Path) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let text = read_file(path)?;
    parse_file(path, &text)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(table
        .into_iter()
        .map(|(key, value)| (key, toml_texts(value)))
        .collect())
}

/// A TOML value as the text of each of its values: a string as itself, an array item by item.
fn toml_texts(value: toml::Value) -> Vec<String> {
    match value {
        toml::Value::String(text) => vec![text],
        toml::Value::Array(items) => items.into_iter().flat_map(toml_texts).collect(),
        other => vec![other.to_string()],
    }
}

/// A setting's id and the values its variable gives as text; `None` unsets it.
type EnvValue = (String, Option<Vec<String>>);

/// The settings whose `GLOWWORM_*` variable `env` finds, with their values: trimmed; a list's
/// comma-separated (empty items dropped); `None` (unset) for an empty value of a setting without
/// a default. A value the setting cannot take is refused with the variable's name.
fn env_values(env: &impl Fn(&str) -> Option<String>) -> Result<Vec<EnvValue>, ConfigError> {
    let mut found = Vec::new();
    for arg in &settings() {
        let Some(name) = arg.get_env().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(value) = env(&name) else {
            continue;
        };
        let bad = |message: String| ConfigError::BadEnv {
            name: name.clone(),
            value: value.clone(),
            message,
        };
        let is_list = matches!(arg.get_action(), ArgAction::Append);
        let values = if is_list {
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect();
            for item in &items {
                if let Some(why) = refusal(arg, std::slice::from_ref(item)) {
                    return Err(bad(format!("{item:?}: {why}")));
                }
            }
            Some(items)
        } else if value.trim().is_empty() && arg.get_default_values().is_empty() {
            None
        } else {
            let values = vec![value.trim().to_string()];
            if let Some(why) = refusal(arg, &values) {
                return Err(bad(why));
            }
            Some(values)
        };
        found.push((arg.get_id().to_string(), values));
    }
    Ok(found)
}

/// Why clap would refuse `values` for the setting `arg`, if it would: they are parsed as its
/// default, in a command of its own.
fn refusal(arg: &Arg, values: &[String]) -> Option<String> {
    let arg = arg.clone().env(None).default_values(values);
    Command::new("check")
        .no_binary_name(true)
        .arg(arg)
        .try_get_matches_from(Vec::<OsString>::new())
        .err()
        .map(|e| clap_message(&e))
}

/// What a clap error says, without its styling and advice: the value parser's own error where
/// there is one, or else the error's first line.
fn clap_message(error: &clap::Error) -> String {
    if let Some(source) = error.source() {
        return source.to_string();
    }
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let config = Config::load(&ServeArgs::default(), |_| None).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(config.max_body_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = Config::load(&ServeArgs::default(), |name| {
            (name == "GLOWWORM_LEASE_SECONDS").then(|| "soon".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("GLOWWORM_LEASE_SECONDS"), "{err}");
        let args = ServeArgs::try_parse_from(["serve", "--unit-size", "0"]).unwrap();
        assert!(matches!(
            Config::load(&args, |_| None),
            Err(ConfigError::Invalid(_))
        ));
    }
}
