//! The relay's settings: one [`Config`] struct, built in layers.
//!
//! Each layer overrides the one before it: the defaults, then a TOML file (`--config` or
//! `GLOWWORM_CONFIG`), then `GLOWWORM_*` environment variables, then command-line flags
//! ([`ServeArgs`]). [`Config::load`] applies all four.

use serde::Deserialize;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Everything the relay can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// SQLite database file; its parent directories are created.
    pub database: PathBuf,
    /// Directory of the static page, served at `/`.
    pub www_dir: PathBuf,
    /// Whether the demo job generator keeps contributors busy.
    pub demo_jobs: bool,
    /// How long a contributor has to return a leased unit.
    pub lease_seconds: u64,
    /// Results of proven (trusted) keys that may fail verification on one unit before it is
    /// failed for good, failing its job; expiries and unproven keys' results never count.
    pub max_attempts: u32,
    /// Rows and columns of C per unit (each unit takes the full K).
    pub unit_size: u32,
    /// Shape of the demo jobs: A is demo_m x demo_k, B is demo_k x demo_n.
    pub demo_m: u32,
    pub demo_n: u32,
    pub demo_k: u32,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest job upload (`POST /v1/jobs`, all parts together).
    pub max_upload_bytes: usize,
    /// The quota of a new API key: most units of its queued jobs at once.
    pub default_quota_units: u64,
    /// Origins allowed to call the contributor API from a browser; empty means any origin.
    /// Requester endpoints (`/v1/jobs...`) are never open to other origins.
    pub cors_origins: Vec<String>,
    // --- Abuse (crate::limits, crate::serve) ---
    /// Requests per second from one IPv4 address or IPv6 /64; 0 means no limit.
    pub rate_per_address: u32,
    /// Requests one address may make at once before its rate applies.
    pub burst_per_address: u32,
    /// Requests per second with one contributor key or requester API key; 0 means no limit.
    pub rate_per_key: u32,
    /// Requests one key may make at once before its rate applies.
    pub burst_per_key: u32,
    /// Seconds a request, body included, may take before it is answered 408.
    pub request_timeout_seconds: u64,
    /// The same for job uploads (`POST /v1/jobs`).
    pub upload_timeout_seconds: u64,
    /// Seconds a client has to send a request's headers before its connection is closed.
    pub header_timeout_seconds: u64,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: u32,
    /// Most connections open at once from one IPv4 address or IPv6 /64; more are closed as
    /// they are accepted. 0 means no cap; off with `trust_forwarded_for` (every connection then
    /// comes from the proxy, which should cap them itself).
    pub max_connections_per_address: u32,
    /// Seconds a connection with no request in progress stays open after its last request
    /// (HTTP/2; HTTP/1 keep-alive waits at most `header_timeout_seconds` for its next request).
    pub idle_timeout_seconds: u64,
    /// The origin people reach the relay at, such as "https://glowworm.example": Sign-In with
    /// Ethereum messages must name its host as their domain and a URI on it. Unset means the
    /// listen address ("http://127.0.0.1:8787"); never a request header.
    pub public_origin: Option<String>,
    /// The domain (host, or host:port) Sign-In with Ethereum messages must name to link a
    /// wallet; unset means the host of `public_origin` (kept for older configurations).
    pub siwe_domain: Option<String>,
    /// Chain ids a Sign-In with Ethereum message may name; empty means any.
    pub siwe_chain_ids: Vec<u64>,
    /// JSON-RPC endpoint of an Ethereum node, to check contract wallets' signatures (ERC-1271);
    /// unset means only ordinary (EOA) wallets can link.
    pub eth_rpc_url: Option<String>,
    /// How long a sign-in nonce stays usable.
    pub nonce_seconds: u64,
    /// Most unexpired nonces kept at once; more nonce requests are refused until some expire.
    pub max_pending_nonces: u32,
    /// Most unexpired, unused nonces one IPv4 address or IPv6 /64 may hold at once.
    pub max_nonces_per_address: u32,

    // Verification of results that no cheap check covers (see relay/src/replication.rs).
    /// Agreeing results from distinct contributors a replicated unit needs.
    pub replicas: u32,
    /// Results of proven keys that may disagree on a replicated unit before it fails (strangers'
    /// lone results do not count).
    pub max_replicas: u32,
    /// Never send two replicas of a unit to the same /24 (IPv4) or /64 (IPv6) network.
    pub distinct_networks: bool,
    /// Take the client address from X-Forwarded-For (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Compare replicas only between adapters of the same vendor and architecture.
    pub homogeneous_redundancy: bool,
    /// Share of leases, in thousandths, that are known-answer (canary) units, where one can be made.
    pub canary_permille: u32,
    /// Consecutive valid results after which a contributor is trusted.
    pub trust_after: u32,
    /// Share of a trusted contributor's replicated units, in thousandths, still replicated.
    pub trusted_replication_permille: u32,
    /// Invalid results (not outweighed by `trust_after` valid ones in a row) that quarantine a
    /// contributor.
    pub quarantine_strikes: u32,
    /// How long a trusted contributor's unreplicated result may wait for a later check of that
    /// contributor before the unit is replicated after all.
    pub settle_seconds: u64,
    /// GPU seconds a kernel unit may use in all, from each lease to its result or to a release
    /// that reported the GPU failing; a unit over it fails its job (leasing::charge_gpu_time).
    pub unit_gpu_seconds: u64,
    /// Contributors whose GPU may fail on one kernel unit (a release saying so, such as a lost
    /// device) before the unit fails its job.
    pub max_gpu_failures: u32,
    /// Verify demo jobs by replication instead of Freivalds' check (to exercise replication).
    pub demo_replicate: bool,
    // --- Leases in flight (crate::lease_caps) ---
    /// Leases a key with no verified record may hold at once; each valid result in a row adds
    /// one (an expired lease or an invalid result starts it over).
    pub leases_per_new_key: u32,
    /// Most leases one key may hold at once, however long its record.
    pub max_leases_per_key: u32,
    /// Most leases the keys linked to one wallet address may hold at once (their record, in a
    /// row, adds one each to a starting `leases_per_new_key`).
    pub max_leases_per_address: u32,
    /// Leases the keys without a record (not trusted) may hold at once from one network; each
    /// of their leases from it that expired or was rejected in the last ten minutes takes one
    /// away (down to one). 0 turns the cap off.
    pub new_leases_per_network: u32,
    /// Most leases all keys may hold at once from one network. 0 turns the cap off.
    pub max_leases_per_network: u32,
    // --- Partner widgets (crate::partners, crate::embedding) ---
    /// A partner's share of each unit computed through its widget, in basis points of the
    /// contributor's credit, paid on top of it: floor(credited * bps / 10000). 1000 = 10%.
    pub partner_share_bps: u32,
    /// Partners registered by the settings, in addition to those registered in the database
    /// (`glowworm-relay partners add`): each is paid on the sites of `embed_origins`.
    pub partner_addresses: Vec<String>,
    /// Origins of the sites that may embed the widget (frame-ancestors of /widget.html, with
    /// every registered partner's sites); empty means any site. Also the sites of the partners
    /// of `partner_addresses`.
    pub embed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            database: PathBuf::from("data/glowworm.sqlite"),
            www_dir: PathBuf::from("www"),
            demo_jobs: true,
            lease_seconds: 60,
            max_attempts: 5,
            unit_size: 64,
            demo_m: 256,
            demo_n: 256,
            demo_k: 256,
            max_body_bytes: 8 << 20,
            max_upload_bytes: 256 << 20,
            default_quota_units: 100_000,
            cors_origins: Vec::new(),
            rate_per_address: 200,
            burst_per_address: 400,
            rate_per_key: 100,
            burst_per_key: 200,
            request_timeout_seconds: 30,
            upload_timeout_seconds: 600,
            header_timeout_seconds: 10,
            max_connections: 10_000,
            max_connections_per_address: 64,
            idle_timeout_seconds: 30,
            public_origin: None,
            siwe_domain: None,
            siwe_chain_ids: Vec::new(),
            eth_rpc_url: None,
            nonce_seconds: 600,
            max_pending_nonces: 100_000,
            max_nonces_per_address: 16,
            replicas: 2,
            max_replicas: 5,
            distinct_networks: true,
            trust_forwarded_for: false,
            homogeneous_redundancy: false,
            canary_permille: 20,
            trust_after: 10,
            trusted_replication_permille: 50,
            quarantine_strikes: 3,
            settle_seconds: 600,
            unit_gpu_seconds: 300,
            max_gpu_failures: 3,
            demo_replicate: false,
            leases_per_new_key: 2,
            max_leases_per_key: 32,
            max_leases_per_address: 128,
            new_leases_per_network: 16,
            max_leases_per_network: 512,
            partner_share_bps: 1000,
            partner_addresses: Vec::new(),
            embed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    BadEnv {
        name: String,
        value: String,
        message: String,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Flags of `glowworm-relay serve`. Every flag left out keeps the value from the layers below.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "serve")]
pub struct ServeArgs {
    /// TOML config file (same keys as the flags, with underscores) [env: GLOWWORM_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, such as 127.0.0.1:8787 (port 0 picks one) [env: GLOWWORM_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// SQLite database file [env: GLOWWORM_DATABASE]
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,
    /// Directory of the static page served at / [env: GLOWWORM_WWW_DIR]
    #[arg(long, value_name = "DIR")]
    pub www_dir: Option<PathBuf>,
    /// Do not generate demo jobs [env: GLOWWORM_DEMO_JOBS=false]
    #[arg(long)]
    pub no_demo: bool,
    /// Seconds a contributor has to return a leased unit [env: GLOWWORM_LEASE_SECONDS]
    #[arg(long, value_name = "N")]
    pub lease_seconds: Option<u64>,
    /// Trusted contributors' failed results a unit takes before it fails [env: GLOWWORM_MAX_ATTEMPTS]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Rows and columns of C per unit [env: GLOWWORM_UNIT_SIZE]
    #[arg(long, value_name = "N")]
    pub unit_size: Option<u32>,
    /// Rows of A and C in demo jobs [env: GLOWWORM_DEMO_M]
    #[arg(long, value_name = "N")]
    pub demo_m: Option<u32>,
    /// Columns of B and C in demo jobs [env: GLOWWORM_DEMO_N]
    #[arg(long, value_name = "N")]
    pub demo_n: Option<u32>,
    /// Columns of A and rows of B in demo jobs [env: GLOWWORM_DEMO_K]
    #[arg(long, value_name = "N")]
    pub demo_k: Option<u32>,
    /// Largest request body accepted, in bytes [env: GLOWWORM_MAX_BODY_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest job upload (POST /v1/jobs), in bytes [env: GLOWWORM_MAX_UPLOAD_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Quota of new API keys: most units of a requester's queued jobs at once
    /// [env: GLOWWORM_DEFAULT_QUOTA_UNITS]
    #[arg(long, value_name = "UNITS")]
    pub default_quota_units: Option<u64>,
    /// An origin allowed to call the API (repeat for more; none means any)
    /// [env: GLOWWORM_CORS_ORIGINS, comma-separated]
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Requests per second from one IPv4 address or IPv6 /64, 0 for no limit
    /// [env: GLOWWORM_RATE_PER_ADDRESS]
    #[arg(long, value_name = "N")]
    pub rate_per_address: Option<u32>,
    /// Burst of requests one address may make [env: GLOWWORM_BURST_PER_ADDRESS]
    #[arg(long, value_name = "N")]
    pub burst_per_address: Option<u32>,
    /// Requests per second with one contributor or API key, 0 for no limit
    /// [env: GLOWWORM_RATE_PER_KEY]
    #[arg(long, value_name = "N")]
    pub rate_per_key: Option<u32>,
    /// Burst of requests one key may make [env: GLOWWORM_BURST_PER_KEY]
    #[arg(long, value_name = "N")]
    pub burst_per_key: Option<u32>,
    /// Seconds to receive and serve a request before answering 408
    /// [env: GLOWWORM_REQUEST_TIMEOUT_SECONDS]
    #[arg(long, value_name = "N")]
    pub request_timeout_seconds: Option<u64>,
    /// The same for job uploads [env: GLOWWORM_UPLOAD_TIMEOUT_SECONDS]
    #[arg(long, value_name = "N")]
    pub upload_timeout_seconds: Option<u64>,
    /// Seconds a client has to send its request headers [env: GLOWWORM_HEADER_TIMEOUT_SECONDS]
    #[arg(long, value_name = "N")]
    pub header_timeout_seconds: Option<u64>,
    /// Most connections open at once [env: GLOWWORM_MAX_CONNECTIONS]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
    /// Most connections open at once from one IPv4 address or IPv6 /64, 0 for no cap
    /// [env: GLOWWORM_MAX_CONNECTIONS_PER_ADDRESS]
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<u32>,
    /// Seconds a connection with no request in progress stays open
    /// [env: GLOWWORM_IDLE_TIMEOUT_SECONDS]
    #[arg(long, value_name = "N")]
    pub idle_timeout_seconds: Option<u64>,
    /// The origin people reach the relay at, such as https://glowworm.example (default: the
    /// listen address) [env: GLOWWORM_PUBLIC_ORIGIN]
    #[arg(long, value_name = "ORIGIN")]
    pub public_origin: Option<String>,
    /// Domain that wallet sign-in messages must name (default: the host of public_origin)
    /// [env: GLOWWORM_SIWE_DOMAIN]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub siwe_domain: Option<String>,
    /// A chain id wallet sign-in messages may name (repeat for more; none means any)
    /// [env: GLOWWORM_SIWE_CHAIN_IDS, comma-separated]
    #[arg(long = "siwe-chain-id", value_name = "ID")]
    pub siwe_chain_ids: Vec<u64>,
    /// Ethereum JSON-RPC endpoint, to accept contract wallets (ERC-1271) [env: GLOWWORM_ETH_RPC_URL]
    #[arg(long, value_name = "URL")]
    pub eth_rpc_url: Option<String>,
    /// Seconds a sign-in nonce stays usable [env: GLOWWORM_NONCE_SECONDS]
    #[arg(long, value_name = "N")]
    pub nonce_seconds: Option<u64>,
    /// Most unexpired sign-in nonces kept at once [env: GLOWWORM_MAX_PENDING_NONCES]
    #[arg(long, value_name = "N")]
    pub max_pending_nonces: Option<u32>,
    /// Most unexpired, unused sign-in nonces one address may hold
    /// [env: GLOWWORM_MAX_NONCES_PER_ADDRESS]
    #[arg(long, value_name = "N")]
    pub max_nonces_per_address: Option<u32>,
    /// Agreeing results a replicated unit needs [env: GLOWWORM_REPLICAS]
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// Most results a replicated unit gathers before it fails [env: GLOWWORM_MAX_REPLICAS]
    #[arg(long, value_name = "N")]
    pub max_replicas: Option<u32>,
    /// Whether replicas must come from distinct /24 or /64 networks [env: GLOWWORM_DISTINCT_NETWORKS]
    #[arg(long, value_name = "BOOL")]
    pub distinct_networks: Option<bool>,
    /// Take client addresses from X-Forwarded-For [env: GLOWWORM_TRUST_FORWARDED_FOR]
    #[arg(long, value_name = "BOOL")]
    pub trust_forwarded_for: Option<bool>,
    /// Compare replicas only between adapters of one kind [env: GLOWWORM_HOMOGENEOUS_REDUNDANCY]
    #[arg(long, value_name = "BOOL")]
    pub homogeneous_redundancy: Option<bool>,
    /// Known-answer units per thousand leases [env: GLOWWORM_CANARY_PERMILLE]
    #[arg(long, value_name = "N")]
    pub canary_permille: Option<u32>,
    /// Consecutive valid results that make a contributor trusted [env: GLOWWORM_TRUST_AFTER]
    #[arg(long, value_name = "N")]
    pub trust_after: Option<u32>,
    /// Trusted contributors' units still replicated, per thousand
    /// [env: GLOWWORM_TRUSTED_REPLICATION_PERMILLE]
    #[arg(long, value_name = "N")]
    pub trusted_replication_permille: Option<u32>,
    /// Invalid results that quarantine a contributor [env: GLOWWORM_QUARANTINE_STRIKES]
    #[arg(long, value_name = "N")]
    pub quarantine_strikes: Option<u32>,
    /// Seconds an unreplicated trusted result waits for a later check [env: GLOWWORM_SETTLE_SECONDS]
    #[arg(long, value_name = "N")]
    pub settle_seconds: Option<u64>,
    /// GPU seconds a kernel unit may use in all before it fails its job [env: GLOWWORM_UNIT_GPU_SECONDS]
    #[arg(long, value_name = "N")]
    pub unit_gpu_seconds: Option<u64>,
    /// GPU failures reported on one kernel unit before it fails its job [env: GLOWWORM_MAX_GPU_FAILURES]
    #[arg(long, value_name = "N")]
    pub max_gpu_failures: Option<u32>,
    /// Verify demo jobs by replication [env: GLOWWORM_DEMO_REPLICATE]
    #[arg(long, value_name = "BOOL")]
    pub demo_replicate: Option<bool>,
    /// Leases a key without a record may hold at once [env: GLOWWORM_LEASES_PER_NEW_KEY]
    #[arg(long, value_name = "N")]
    pub leases_per_new_key: Option<u32>,
    /// Most leases one key may hold at once [env: GLOWWORM_MAX_LEASES_PER_KEY]
    #[arg(long, value_name = "N")]
    pub max_leases_per_key: Option<u32>,
    /// Most leases the keys of one wallet address may hold at once
    /// [env: GLOWWORM_MAX_LEASES_PER_ADDRESS]
    #[arg(long, value_name = "N")]
    pub max_leases_per_address: Option<u32>,
    /// Leases keys without a record may hold at once from one network, 0 = no cap
    /// [env: GLOWWORM_NEW_LEASES_PER_NETWORK]
    #[arg(long, value_name = "N")]
    pub new_leases_per_network: Option<u32>,
    /// Most leases all keys may hold at once from one network, 0 = no cap
    /// [env: GLOWWORM_MAX_LEASES_PER_NETWORK]
    #[arg(long, value_name = "N")]
    pub max_leases_per_network: Option<u32>,
    /// Partner share in basis points of the contributor's credit, on top of it (1000 = 10%)
    /// [env: GLOWWORM_PARTNER_SHARE_BPS]
    #[arg(long, value_name = "BPS")]
    pub partner_share_bps: Option<u32>,
    /// A partner registered by the settings, paid on the sites of --embed-origin (repeat for
    /// more; see also `glowworm-relay partners add`) [env: GLOWWORM_PARTNER_ADDRESSES,
    /// comma-separated]
    #[arg(long = "partner-address", value_name = "0x...")]
    pub partner_addresses: Vec<String>,
    /// An origin that may embed the widget, such as https://blog.example (repeat for more; none
    /// means any site) [env: GLOWWORM_EMBED_ORIGINS, comma-separated]
    #[arg(long = "embed-origin", value_name = "ORIGIN")]
    pub embed_origins: Vec<String>,
}

impl Config {
    /// The blob store on disk beside the database (job inputs and outputs).
    pub fn blob_store(&self) -> crate::blobs::BlobStore {
        crate::blobs::BlobStore::beside(&self.database)
    }

    /// Defaults, then the config file, then the environment (`env` looks a variable up; pass
    /// `|name| std::env::var(name).ok()`), then the flags. The result is validated.
    pub fn load(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = args
            .config
            .clone()
            .or_else(|| env("GLOWWORM_CONFIG").map(PathBuf::from));
        let mut config = match file {
            Some(path) => Config::from_file(&path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_flags(args);
        config.validate()?;
        Ok(config)
    }

    /// The defaults overridden by the keys present in a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Overrides each setting whose `GLOWWORM_<NAME>` variable is set.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env = &env;
        set_from_env(env, "GLOWWORM_LISTEN", &mut self.listen)?;
        set_from_env(env, "GLOWWORM_DATABASE", &mut self.database)?;
        set_from_env(env, "GLOWWORM_WWW_DIR", &mut self.www_dir)?;
        set_from_env(env, "GLOWWORM_DEMO_JOBS", &mut self.demo_jobs)?;
        set_from_env(env, "GLOWWORM_LEASE_SECONDS", &mut self.lease_seconds)?;
        set_from_env(env, "GLOWWORM_MAX_ATTEMPTS", &mut self.max_attempts)?;
        set_from_env(env, "GLOWWORM_UNIT_SIZE", &mut self.unit_size)?;
        set_from_env(env, "GLOWWORM_DEMO_M", &mut self.demo_m)?;
        set_from_env(env, "GLOWWORM_DEMO_N", &mut self.demo_n)?;
        set_from_env(env, "GLOWWORM_DEMO_K", &mut self.demo_k)?;
        set_from_env(env, "GLOWWORM_MAX_BODY_BYTES", &mut self.max_body_bytes)?;
        set_from_env(env, "GLOWWORM_MAX_UPLOAD_BYTES", &mut self.max_upload_bytes)?;
        set_from_env(
            env,
            "GLOWWORM_DEFAULT_QUOTA_UNITS",
            &mut self.default_quota_units,
        )?;
        if let Some(list) = env("GLOWWORM_CORS_ORIGINS") {
            self.cors_origins = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        set_from_env(env, "GLOWWORM_RATE_PER_ADDRESS", &mut self.rate_per_address)?;
        set_from_env(
            env,
            "GLOWWORM_BURST_PER_ADDRESS",
            &mut self.burst_per_address,
        )?;
        set_from_env(env, "GLOWWORM_RATE_PER_KEY", &mut self.rate_per_key)?;
        set_from_env(env, "GLOWWORM_BURST_PER_KEY", &mut self.burst_per_key)?;
        set_from_env(
            env,
            "GLOWWORM_REQUEST_TIMEOUT_SECONDS",
            &mut self.request_timeout_seconds,
        )?;
        set_from_env(
            env,
            "GLOWWORM_UPLOAD_TIMEOUT_SECONDS",
            &mut self.upload_timeout_seconds,
        )?;
        set_from_env(
            env,
            "GLOWWORM_HEADER_TIMEOUT_SECONDS",
            &mut self.header_timeout_seconds,
        )?;
        set_from_env(env, "GLOWWORM_MAX_CONNECTIONS", &mut self.max_connections)?;
        set_from_env(
            env,
            "GLOWWORM_MAX_CONNECTIONS_PER_ADDRESS",
            &mut self.max_connections_per_address,
        )?;
        set_from_env(
            env,
            "GLOWWORM_IDLE_TIMEOUT_SECONDS",
            &mut self.idle_timeout_seconds,
        )?;
        if let Some(origin) = env("GLOWWORM_PUBLIC_ORIGIN") {
            self.public_origin = Some(origin.trim().to_string()).filter(|s| !s.is_empty());
        }
        if let Some(domain) = env("GLOWWORM_SIWE_DOMAIN") {
            self.siwe_domain = Some(domain.trim().to_string()).filter(|s| !s.is_empty());
        }
        if let Some(list) = env("GLOWWORM_SIWE_CHAIN_IDS") {
            self.siwe_chain_ids = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|id| {
                    id.parse().map_err(|e| ConfigError::BadEnv {
                        name: "GLOWWORM_SIWE_CHAIN_IDS".to_string(),
                        value: list.clone(),
                        message: format!("{id:?}: {e}"),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(url) = env("GLOWWORM_ETH_RPC_URL") {
            self.eth_rpc_url = Some(url.trim().to_string()).filter(|s| !s.is_empty());
        }
        set_from_env(env, "GLOWWORM_NONCE_SECONDS", &mut self.nonce_seconds)?;
        set_from_env(
            env,
            "GLOWWORM_MAX_PENDING_NONCES",
            &mut self.max_pending_nonces,
        )?;
        set_from_env(
            env,
            "GLOWWORM_MAX_NONCES_PER_ADDRESS",
            &mut self.max_nonces_per_address,
        )?;
        set_from_env(env, "GLOWWORM_REPLICAS", &mut self.replicas)?;
        set_from_env(env, "GLOWWORM_MAX_REPLICAS", &mut self.max_replicas)?;
        set_from_env(
            env,
            "GLOWWORM_DISTINCT_NETWORKS",
            &mut self.distinct_networks,
        )?;
        set_from_env(
            env,
            "GLOWWORM_TRUST_FORWARDED_FOR",
            &mut self.trust_forwarded_for,
        )?;
        set_from_env(
            env,
            "GLOWWORM_HOMOGENEOUS_REDUNDANCY",
            &mut self.homogeneous_redundancy,
        )?;
        set_from_env(env, "GLOWWORM_CANARY_PERMILLE", &mut self.canary_permille)?;
        set_from_env(env, "GLOWWORM_TRUST_AFTER", &mut self.trust_after)?;
        set_from_env(
            env,
            "GLOWWORM_TRUSTED_REPLICATION_PERMILLE",
            &mut self.trusted_replication_permille,
        )?;
        set_from_env(
            env,
            "GLOWWORM_QUARANTINE_STRIKES",
            &mut self.quarantine_strikes,
        )?;
        set_from_env(env, "GLOWWORM_SETTLE_SECONDS", &mut self.settle_seconds)?;
        set_from_env(env, "GLOWWORM_UNIT_GPU_SECONDS", &mut self.unit_gpu_seconds)?;
        set_from_env(env, "GLOWWORM_MAX_GPU_FAILURES", &mut self.max_gpu_failures)?;
        set_from_env(env, "GLOWWORM_DEMO_REPLICATE", &mut self.demo_replicate)?;
        set_from_env(
            env,
            "GLOWWORM_LEASES_PER_NEW_KEY",
            &mut self.leases_per_new_key,
        )?;
        set_from_env(
            env,
            "GLOWWORM_MAX_LEASES_PER_KEY",
            &mut self.max_leases_per_key,
        )?;
        set_from_env(
            env,
            "GLOWWORM_MAX_LEASES_PER_ADDRESS",
            &mut self.max_leases_per_address,
        )?;
        set_from_env(
            env,
            "GLOWWORM_NEW_LEASES_PER_NETWORK",
            &mut self.new_leases_per_network,
        )?;
        set_from_env(
            env,
            "GLOWWORM_MAX_LEASES_PER_NETWORK",
            &mut self.max_leases_per_network,
        )?;
        set_from_env(
            env,
            "GLOWWORM_PARTNER_SHARE_BPS",
            &mut self.partner_share_bps,
        )?;
        if let Some(list) = env("GLOWWORM_PARTNER_ADDRESSES") {
            self.partner_addresses = comma_list(&list);
        }
        if let Some(list) = env("GLOWWORM_EMBED_ORIGINS") {
            self.embed_origins = comma_list(&list);
        }
        Ok(())
    }

    /// Overrides each setting given as a flag.
    pub fn apply_flags(&mut self, args: &ServeArgs) {
        fn set<T: Clone>(flag: &Option<T>, field: &mut T) {
            if let Some(value) = flag {
                *field = value.clone();
            }
        }
        set(&args.listen, &mut self.listen);
        set(&args.database, &mut self.database);
        set(&args.www_dir, &mut self.www_dir);
        if args.no_demo {
            self.demo_jobs = false;
        }
        set(&args.lease_seconds, &mut self.lease_seconds);
        set(&args.max_attempts, &mut self.max_attempts);
        set(&args.unit_size, &mut self.unit_size);
        set(&args.demo_m, &mut self.demo_m);
        set(&args.demo_n, &mut self.demo_n);
        set(&args.demo_k, &mut self.demo_k);
        set(&args.max_body_bytes, &mut self.max_body_bytes);
        set(&args.max_upload_bytes, &mut self.max_upload_bytes);
        set(&args.default_quota_units, &mut self.default_quota_units);
        if !args.cors_origins.is_empty() {
            self.cors_origins = args.cors_origins.clone();
        }
        set(&args.rate_per_address, &mut self.rate_per_address);
        set(&args.burst_per_address, &mut self.burst_per_address);
        set(&args.rate_per_key, &mut self.rate_per_key);
        set(&args.burst_per_key, &mut self.burst_per_key);
        set(
            &args.request_timeout_seconds,
            &mut self.request_timeout_seconds,
        );
        set(
            &args.upload_timeout_seconds,
            &mut self.upload_timeout_seconds,
        );
        set(
            &args.header_timeout_seconds,
            &mut self.header_timeout_seconds,
        );
        set(&args.max_connections, &mut self.max_connections);
        set(
            &args.max_connections_per_address,
            &mut self.max_connections_per_address,
        );
        set(&args.idle_timeout_seconds, &mut self.idle_timeout_seconds);
        if args.public_origin.is_some() {
            self.public_origin = args.public_origin.clone();
        }
        if args.siwe_domain.is_some() {
            self.siwe_domain = args.siwe_domain.clone();
        }
        if !args.siwe_chain_ids.is_empty() {
            self.siwe_chain_ids = args.siwe_chain_ids.clone();
        }
        if args.eth_rpc_url.is_some() {
            self.eth_rpc_url = args.eth_rpc_url.clone();
        }
        set(&args.nonce_seconds, &mut self.nonce_seconds);
        set(&args.max_pending_nonces, &mut self.max_pending_nonces);
        set(
            &args.max_nonces_per_address,
            &mut self.max_nonces_per_address,
        );
        set(&args.replicas, &mut self.replicas);
        set(&args.max_replicas, &mut self.max_replicas);
        set(&args.distinct_networks, &mut self.distinct_networks);
        set(&args.trust_forwarded_for, &mut self.trust_forwarded_for);
        set(
            &args.homogeneous_redundancy,
            &mut self.homogeneous_redundancy,
        );
        set(&args.canary_permille, &mut self.canary_permille);
        set(&args.trust_after, &mut self.trust_after);
        set(
            &args.trusted_replication_permille,
            &mut self.trusted_replication_permille,
        );
        set(&args.quarantine_strikes, &mut self.quarantine_strikes);
        set(&args.settle_seconds, &mut self.settle_seconds);
        set(&args.unit_gpu_seconds, &mut self.unit_gpu_seconds);
        set(&args.max_gpu_failures, &mut self.max_gpu_failures);
        set(&args.demo_replicate, &mut self.demo_replicate);
        set(&args.leases_per_new_key, &mut self.leases_per_new_key);
        set(&args.max_leases_per_key, &mut self.max_leases_per_key);
        set(
            &args.max_leases_per_address,
            &mut self.max_leases_per_address,
        );
        set(
            &args.new_leases_per_network,
            &mut self.new_leases_per_network,
        );
        set(
            &args.max_leases_per_network,
            &mut self.max_leases_per_network,
        );
        set(&args.partner_share_bps, &mut self.partner_share_bps);
        if !args.partner_addresses.is_empty() {
            self.partner_addresses = args.partner_addresses.clone();
        }
        if !args.embed_origins.is_empty() {
            self.embed_origins = args.embed_origins.clone();
        }
    }

    /// Refuses settings the relay cannot work with.
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
            let canonical = crate::partners::canonical_origin(origin)
                .map_err(|e| ConfigError::Invalid(format!("public_origin {e}")))?;
            if &canonical != origin {
                return Err(ConfigError::Invalid(format!(
                    "public_origin {origin:?} must be written as browsers send it: {canonical:?}"
                )));
            }
        }
        if let Some(domain) = &self.siwe_domain
            && !crate::sign_in::is_domain(domain)
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
        crate::partners::validate_config(self).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The origin people reach the relay at: `public_origin`, or else the listen address as an
    /// origin ("http://127.0.0.1:8787"). The binary sets `public_origin` from the address it
    /// actually bound when none is configured, so port 0 gets the port chosen.
    pub fn public_origin(&self) -> String {
        match &self.public_origin {
            Some(origin) => origin.clone(),
            None => crate::partners::canonical_origin(&format!("http://{}", self.listen))
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

    /// How long a lease lasts, in milliseconds.
    pub fn unit_gpu_ms(&self) -> i64 {
        self.unit_gpu_seconds.min(i64::MAX as u64 / 1000) as i64 * 1000
    }

    pub fn lease_ms(&self) -> i64 {
        self.lease_seconds as i64 * 1000
    }
}

/// The non-empty, trimmed items of a comma-separated list.
fn comma_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Replaces `field` with the parsed value of the variable `name`, when it is set.
fn set_from_env<T>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    field: &mut T,
) -> Result<(), ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    if let Some(value) = env(name) {
        *field = value
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::BadEnv {
                name: name.to_string(),
                value: value.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(())
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
