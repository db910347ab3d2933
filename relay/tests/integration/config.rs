//! Settings come in layers: defaults < TOML file < GLOWWORM_* environment < flags.

use clap::Parser;
use glowworm_relay::{Config, ConfigError, ServeArgs};
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn each_layer_overrides_the_one_before() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        r#"
        listen = "127.0.0.1:9000"
        lease_seconds = 10
        max_attempts = 7
        unit_size = 32
        database = "from-file.sqlite"
        cors_origins = ["https://file.example"]
        "#,
    )
    .unwrap();
    let env = env_of(&[
        ("GLOWWORM_LEASE_SECONDS", "20"),
        ("GLOWWORM_MAX_ATTEMPTS", "8"),
        ("GLOWWORM_DEMO_JOBS", "false"),
        (
            "GLOWWORM_CORS_ORIGINS",
            "https://a.example, https://b.example",
        ),
        ("GLOWWORM_DATABASE", "from-env.sqlite"),
    ]);
    let args = ServeArgs::try_parse_from([
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--lease-seconds",
        "30",
        "--database",
        "from-flag.sqlite",
    ])
    .unwrap();

    let config = Config::load(&args, env).unwrap();
    let defaults = Config::default();
    assert_eq!(config.lease_seconds, 30, "flag beats env and file");
    assert_eq!(config.database.to_str(), Some("from-flag.sqlite"));
    assert_eq!(config.max_attempts, 8, "env beats file");
    assert!(!config.demo_jobs, "env beats default");
    assert_eq!(
        config.cors_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(config.unit_size, 32, "file beats default");
    assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(
        config.demo_m, defaults.demo_m,
        "untouched keys keep the default"
    );
    assert_eq!(config.www_dir, defaults.www_dir);
}

#[test]
fn the_file_can_come_from_the_environment_and_no_demo_is_a_flag() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "demo_k = 512\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let args =
        ServeArgs::try_parse_from(["serve", "--no-demo", "--listen", "127.0.0.1:0"]).unwrap();
    let config = Config::load(&args, env_of(&[("GLOWWORM_CONFIG", &path)])).unwrap();
    assert_eq!(config.demo_k, 512);
    assert!(!config.demo_jobs);
    assert_eq!(config.listen.port(), 0);
}

#[test]
fn mistakes_in_any_layer_are_reported() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "lease_secs = 5\n").unwrap();
    let args = ServeArgs::try_parse_from(["serve", "--config", file.to_str().unwrap()]).unwrap();
    assert!(matches!(
        Config::load(&args, env_of(&[])),
        Err(ConfigError::ParseFile { .. })
    ));

    let missing =
        ServeArgs::try_parse_from(["serve", "--config", "/nonexistent/relay.toml"]).unwrap();
    assert!(matches!(
        Config::load(&missing, env_of(&[])),
        Err(ConfigError::ReadFile { .. })
    ));

    let bad_env = Config::load(
        &ServeArgs::default(),
        env_of(&[("GLOWWORM_LISTEN", "not an address")]),
    );
    assert!(matches!(bad_env, Err(ConfigError::BadEnv { .. })));

    assert!(ServeArgs::try_parse_from(["serve", "--lease-seconds", "soon"]).is_err());
    let zero = ServeArgs::try_parse_from(["serve", "--max-attempts", "0"]).unwrap();
    assert!(matches!(
        Config::load(&zero, env_of(&[])),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn wallet_link_settings_come_in_layers_and_are_checked() {
    let defaults = Config::default();
    assert_eq!(
        defaults.siwe_domain, None,
        "the host of public_origin by default"
    );
    assert!(defaults.siwe_chain_ids.is_empty(), "any chain by default");
    assert_eq!(defaults.eth_rpc_url, None, "no contract wallets by default");
    assert_eq!(defaults.nonce_seconds, 600);

    let args = ServeArgs::try_parse_from([
        "serve",
        "--siwe-chain-id",
        "1",
        "--siwe-chain-id",
        "8453",
        "--nonce-seconds",
        "120",
    ])
    .unwrap();
    let env = env_of(&[
        ("GLOWWORM_SIWE_DOMAIN", "glowworm.example"),
        ("GLOWWORM_SIWE_CHAIN_IDS", "10"),
        ("GLOWWORM_ETH_RPC_URL", "https://node.example/v3/key"),
        ("GLOWWORM_MAX_PENDING_NONCES", "7"),
    ]);
    let config = Config::load(&args, env).unwrap();
    assert_eq!(config.siwe_domain.as_deref(), Some("glowworm.example"));
    assert_eq!(config.siwe_chain_ids, [1, 8453], "flags beat env");
    assert_eq!(
        config.eth_rpc_url.as_deref(),
        Some("https://node.example/v3/key")
    );
    assert_eq!((config.nonce_seconds, config.max_pending_nonces), (120, 7));

    let bad_list = Config::load(
        &ServeArgs::default(),
        env_of(&[("GLOWWORM_SIWE_CHAIN_IDS", "1, mainnet")]),
    );
    assert!(matches!(bad_list, Err(ConfigError::BadEnv { .. })));
    for flags in [
        ["serve", "--siwe-domain", "https://glowworm.example"],
        ["serve", "--siwe-domain", "me@glowworm.example"],
        ["serve", "--eth-rpc-url", "ftp://node.example"],
        ["serve", "--eth-rpc-url", "not a url"],
        ["serve", "--nonce-seconds", "0"],
    ] {
        let args = ServeArgs::try_parse_from(flags).unwrap();
        assert!(
            matches!(
                Config::load(&args, env_of(&[])),
                Err(ConfigError::Invalid(_))
            ),
            "{flags:?}"
        );
    }
}

#[test]
fn every_kind_of_setting_takes_each_layer() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        r#"
        demo_jobs = false
        distinct_networks = false
        siwe_chain_ids = [1, 10]
        public_origin = "https://glowworm.example"
        eth_rpc_url = "https://node.example"
        embed_origins = []
        "#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let config = Config::load(&args(&["--config", path]), env_of(&[])).unwrap();
    assert!(!config.demo_jobs && !config.distinct_networks);
    assert_eq!(config.siwe_chain_ids, [1, 10]);
    assert_eq!(
        config.public_origin.as_deref(),
        Some("https://glowworm.example")
    );

    // Values are trimmed; an empty value unsets a setting without a default; lists drop empty
    // items; an empty list clears the file's.
    let env = env_of(&[
        ("GLOWWORM_DEMO_JOBS", " true "),
        ("GLOWWORM_LEASE_SECONDS", " 30 "),
        ("GLOWWORM_PUBLIC_ORIGIN", ""),
        ("GLOWWORM_SIWE_CHAIN_IDS", ""),
        ("GLOWWORM_CORS_ORIGINS", " https://a.example ,, "),
    ]);
    let config = Config::load(&args(&["--config", path]), env).unwrap();
    assert!(config.demo_jobs, "env beats file");
    assert_eq!(config.lease_seconds, 30);
    assert_eq!(config.public_origin, None);
    assert!(config.siwe_chain_ids.is_empty());
    assert_eq!(config.cors_origins, ["https://a.example"]);
    assert_eq!(
        config.eth_rpc_url.as_deref(),
        Some("https://node.example"),
        "the file's, as no variable names it"
    );

    let flags = args(&[
        "--config",
        path,
        "--distinct-networks",
        "true",
        "--public-origin",
        "https://flag.example",
    ]);
    let env = env_of(&[
        ("GLOWWORM_DISTINCT_NETWORKS", "false"),
        ("GLOWWORM_PUBLIC_ORIGIN", "https://env.example"),
    ]);
    let config = Config::load(&flags, env).unwrap();
    assert!(config.distinct_networks, "flag beats env");
    assert_eq!(
        config.public_origin.as_deref(),
        Some("https://flag.example")
    );

    let bad_bool = Config::load(
        &ServeArgs::default(),
        env_of(&[("GLOWWORM_DISTINCT_NETWORKS", "maybe")]),
    );
    assert!(matches!(bad_bool, Err(ConfigError::BadEnv { .. })));
    std::fs::write(&file, "lease_seconds = \"60\"\n").unwrap();
    assert!(matches!(
        Config::load(&args(&["--config", path]), env_of(&[])),
        Err(ConfigError::ParseFile { .. })
    ));
}

fn args(flags: &[&str]) -> ServeArgs {
    ServeArgs::try_parse_from(std::iter::once("serve").chain(flags.iter().copied())).unwrap()
}

/// The README's settings tables (rows "| `key` / `GLOWWORM_KEY` / `--flag` | default | ...")
/// name each setting once, with the environment variable, flag and default it is declared with.
#[test]
fn the_readme_tables_match_the_declared_settings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let settings = glowworm_relay::config::settings();
    let mut listed = Vec::new();
    for row in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
        let Some(setting) = settings.iter().find(|a| a.get_id() == names[0]) else {
            continue; // another table (endpoints, say)
        };
        let key = names[0];
        assert!(!listed.contains(&key), "{key} is listed twice");
        listed.push(key);
        let env = setting.get_env().unwrap().to_str().unwrap();
        let flag = format!("--{}", setting.get_long().unwrap());
        assert_eq!(names.get(1..3), Some(&[env, flag.as_str()][..]), "{row}");
        let default: Vec<&str> = setting
            .get_default_values()
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        if !default.is_empty() {
            assert!(cells[1].starts_with(&default.join(",")), "{row}");
        }
        if matches!(setting.get_action(), clap::ArgAction::Append) {
            assert!(cells[0].contains("(repeat)"), "{row}: a list");
        }
    }
    for setting in &settings {
        let id = setting.get_id().as_str();
        assert!(listed.contains(&id), "README.md lists no setting {id}");
    }
}
