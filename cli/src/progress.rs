//! Waiting for a job: polls its status about every 500 ms and shows the progress, as a bar when
//! stderr is a terminal and as a plain line every few seconds otherwise (logs, CI, tests).

use crate::client::Client;
use crate::show;
use anyhow::{Result, bail};
use glowworm_protocol::wire::JobStatus;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the job's status is asked for.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// How a wait ended.
pub enum Waited {
    /// The job is no longer queued: done, failed or cancelled.
    Finished(Box<JobStatus>),
    /// Ctrl-C: the job keeps running on the relay.
    Interrupted,
}

/// Waits until job `id` has finished (done, failed or cancelled; see [`check_finished`]),
/// showing its progress on stderr. Ctrl-C returns [`Waited::Interrupted`] and leaves the job
/// running.
pub async fn wait(client: &Client, id: i64) -> Result<Waited> {
    let mut display = Display::new(id);
    let result = tokio::select! {
        status = poll_until_finished(client, id, &mut display) => status.map(|s| Waited::Finished(Box::new(s))),
        _ = tokio::signal::ctrl_c() => Ok(Waited::Interrupted),
    };
    display.finish();
    result
}

/// Polls until the job's state is no longer "queued"; returns its last status.
async fn poll_until_finished(client: &Client, id: i64, display: &mut Display) -> Result<JobStatus> {
    loop {
        let status = client.status(id).await?;
        display.update(&status);
        if status.state != "queued" {
            return Ok(status);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A finished job that did not succeed is an error saying how it ended.
pub fn check_finished(status: &JobStatus) -> Result<()> {
    match status.state.as_str() {
        "done" => Ok(()),
        "failed" => bail!(
            "job {} failed ({} of {} units failed): {}",
            status.id,
            status.units_failed,
            status.units_total,
            status
                .failure
                .as_deref()
                .unwrap_or("the relay gave no reason")
        ),
        "cancelled" => bail!("job {} was cancelled", status.id),
        other => bail!("job {} is {other:?}, not done", status.id),
    }
}

/// The progress shown while waiting.
enum Display {
    Bar(ProgressBar),
    Plain { id: i64, last: Option<Instant> },
}

impl Display {
    fn new(id: i64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} job {prefix} [{wide_bar}] {pos}/{len} verified, {msg} {elapsed}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(id.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Plain { id, last: None }
        }
    }

    fn update(&mut self, status: &JobStatus) {
        match self {
            Display::Bar(bar) => {
                bar.set_length(status.units_total.max(0) as u64);
                bar.set_position(status.units_verified.max(0) as u64);
                bar.set_message(show::unit_counts(status));
            }
            Display::Plain { id, last } => {
                let finished = status.state != "queued";
                if finished || last.is_none_or(|at| at.elapsed() >= PLAIN_INTERVAL) {
                    eprintln!("job {id}: {}", show::progress_line(status));
                    *last = Some(Instant::now());
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.abandon();
        }
    }
}
