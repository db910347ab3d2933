//! The `glowworm-worker` binary as a Unix tool: bad input is one line and exit status 2, and
//! under a supervisor (stderr not a terminal: systemd, nohup, a log file) it logs plain lines
//! about what it does, against a real relay on 127.0.0.1 (port 0, SQLite in a temp dir).

mod common;

use common::start_relay;
use std::process::{Command, Output, Stdio};

fn worker(args: &[&str], dir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glowworm-worker"));
    command
        .args(args)
        .arg("--key")
        .arg(dir.path().join("worker.key"))
        .env("RUST_BACKTRACE", "1")
        .env_remove("GLOWWORM_RELAY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn a_bad_relay_url_is_one_line_with_a_hint_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    for (relay, hint) in [
        ("127.0.0.1:19101", "did you mean http://127.0.0.1:19101?"),
        (
            "http://127.0.0.1:19101/v1",
            "give the relay's base URL, such as http://127.0.0.1:19101",
        ),
        ("ftp://relay.example", "must start with http:// or https://"),
    ] {
        let out = worker(&["--relay", relay, "--max-units", "1"], &dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{relay}: {stderr}");
        assert!(
            stderr.starts_with("glowworm-worker: error: ") && stderr.contains(hint),
            "{relay}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line, no backtrace: {stderr}"
        );
        assert!(!stderr.contains("Backtrace") && !stderr.contains("Error:"));
    }
    // `link` checks it too; `key` does not talk to the relay.
    let out = worker(
        &["--relay", "localhost:8787", "link", "--address", "0x1"],
        &dir,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = worker(&["--relay", "localhost:8787", "key"], &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_supervisor_it_logs_plain_lines_started_progress_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_relay(&dir).await;
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job"); // 6 units

    let command = worker(
        &[
            "--relay",
            &format!("{url}/"),
            "--max-units",
            "2",
            "--in-flight",
            "1",
        ],
        &dir,
    );
    let out = tokio::task::spawn_blocking(move || { command }.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "no ANSI escapes in a log: {stderr:?}"
    );
    let line = |what: &str| {
        stderr
            .lines()
            .find(|l| l.contains(&format!("glowworm-worker: {what}")))
            .unwrap_or_else(|| panic!("no {what:?} line in:\n{stderr}"))
            .to_string()
    };
    let started = line("started:");
    assert!(started.contains(&format!("relay {url},")), "{started}");
    assert!(started.contains("adapter ") && started.contains("contributor "));
    let progress = line("progress:");
    let credits = 2 * 32 * 32 * 48; // a unit's FLOP
    assert!(
        progress.contains("1 units verified")
            && progress.contains(&format!("{credits} credits earned")),
        "{progress}"
    );
    let stopped = line("stopped:");
    assert!(
        stopped.contains(&format!("2 units verified, {} FLOP", 2 * credits)),
        "{stopped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_is_logged_once_not_per_retry() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port: each lease fails at once, retried after 1, 2, 4 s.
    let mut child = worker(&["--relay", "http://127.0.0.1:9"], &dir)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    child.kill().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = text(&out);
    assert!(stderr.contains("glowworm-worker: started:"), "{stderr}");
    assert_eq!(
        stderr.matches("relay unreachable").count(),
        1,
        "once per outage:\n{stderr}"
    );
}
