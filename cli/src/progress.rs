//! Waiting for a job: polls its status about every 500 ms and shows the progress, as a bar when
//! stderr is a terminal and as a plain line every few seconds otherwise (logs, CI, tests; no
//! escape codes). A relay that cannot be reached (refused, reset, timed out, or a 502/503/504
//! from a proxy in front of it) is asked again with backoff for a bounded time ([`Outage`]); a
//! refusal by the relay (any other error status) ends the wait at once.

use crate::client::Client;
use crate::show;
use anyhow::{Result, anyhow, bail};
use glowworm_protocol::protocol::RelayError;
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
pub async fn wait(client: &Client, id: i64, retry_for: Duration) -> Result<Waited> {
    let mut display = Display::new(id);
    let result = tokio::select! {
        status = poll_until_finished(client, id, &mut display, retry_for) => status.map(|s| Waited::Finished(Box::new(s))),
        _ = tokio::signal::ctrl_c() => Ok(Waited::Interrupted),
    };
    display.finish();
    result
}

/// Polls until the job's state is no longer "queued"; returns its last status.
async fn poll_until_finished(
    client: &Client,
    id: i64,
    display: &mut Display,
    retry_for: Duration,
) -> Result<JobStatus> {
    let mut outage = Outage::new(retry_for);
    loop {
        let status = match client.status(id).await {
            Ok(status) => status,
            Err(err) => {
                let delay = outage.failed(err, &mut |line| display.println(line))?;
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        outage.succeeded(&mut |line| display.println(line));
        display.update(&status);
        if status.state != "queued" {
            return Ok(status);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The first wait before asking an unreachable relay again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether `err` may pass by itself: the relay could not be reached or did not answer, or a
/// proxy in front of it said it is away (502, 503, 504).
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<RelayError>())
        .is_some_and(|relay| relay.is_transport() || matches!(relay.status(), Some(502..=504)))
}

/// Requests to a relay that may be away for a while (restarting): each failure that
/// [`is_transient`] is retried after a growing delay until `limit` has passed without a
/// successful reply. Says one line when an outage starts and one when it ends.
pub struct Outage {
    limit: Duration,
    since: Option<Instant>,
    backoff: Duration,
}

impl Outage {
    pub fn new(limit: Duration) -> Self {
        Outage {
            limit,
            since: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// After a failed request: how long to wait before the next try, or the error when it is
    /// not transient or the relay has been away for `limit`.
    pub fn failed(&mut self, err: anyhow::Error, say: &mut dyn FnMut(&str)) -> Result<Duration> {
        if !is_transient(&err) {
            return Err(err);
        }
        let since = *self.since.get_or_insert_with(|| {
            say(&format!(
                "relay unreachable ({err:#}), retrying for up to {} s…",
                self.limit.as_secs()
            ));
            Instant::now()
        });
        let away = since.elapsed();
        if away >= self.limit {
            return Err(anyhow!(
                "gave up after {} s without a reply from the relay: {err:#}",
                away.as_secs()
            ));
        }
        let delay = self.backoff.min(self.limit - away);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(delay)
    }

    /// After a successful reply: ends an outage, saying so.
    pub fn succeeded(&mut self, say: &mut dyn FnMut(&str)) {
        if let Some(since) = self.since.take() {
            say(&format!(
                "relay back after {:.1} s",
                since.elapsed().as_secs_f64()
            ));
        }
        self.backoff = FIRST_BACKOFF;
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

    /// A line of its own on stderr (above the bar on a terminal).
    fn println(&self, line: &str) {
        match self {
            Display::Bar(bar) => bar.println(line),
            Display::Plain { id, .. } => eprintln!("job {id}: {line}"),
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.abandon();
        }
    }
}
