//! The series the relay exports to Prometheus (`GET /metrics` on the `metrics_listen` address,
//! served by `http::ops`).
//!
//! One registry for the process, made on first use, with the `prometheus` crate: its counters,
//! gauges and fixed-bucket histograms are atomics, so recording costs a few relaxed atomic
//! operations and memory stays fixed however long nobody scrapes. The label values of a hot
//! series are resolved once ([`Telemetry::results_valid`], ...), so the hot path does not even
//! hash them.
//!
//! No label value ever comes from a client: routes are the router's templates
//! (`/v1/jobs/{id}`, never the path asked for), methods and status classes are from fixed
//! lists, and refusal reasons are the relay's own error codes (compile-time constants).
//!
//! Gauges of the database's state (leases in flight, queue depth) are read from the database
//! when scraped ([`Telemetry::set_database_figures`]), not kept up to date on every change.
//!
//! This module is at the bottom of the relay: it imports nothing of it.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The job kinds of the queue-depth gauge.
pub const JOB_KINDS: [&str; 2] = ["matmul", "kernel"];

/// Every series the relay exports, in one registry.
pub struct Telemetry {
    registry: Registry,
    /// Results answered, by verdict: valid, invalid, pending.
    results: IntCounterVec,
    pub results_valid: IntCounter,
    pub results_invalid: IntCounter,
    pub results_pending: IntCounter,
    /// Results refused, by the refusal's error code.
    result_refusals: IntCounterVec,
    pub leases_issued: IntCounter,
    leases_in_flight: IntGauge,
    queue_depth: IntGaugeVec,
    requests: HistogramVec,
    commits: Histogram,
}

/// The process's series.
pub fn telemetry() -> &'static Telemetry {
    static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);
    &TELEMETRY
}

impl Telemetry {
    fn new() -> Telemetry {
        let registry = Registry::new();
        let results = IntCounterVec::new(
            Opts::new(
                "glowworm_results_total",
                "Results answered by the relay, by verdict: valid (verified and credited), \
                 invalid (failed verification), pending (waiting for replicas or a later check). \
                 rate() of it is results per second.",
            ),
            &["verdict"],
        )
        .expect("a valid series");
        let result_refusals = IntCounterVec::new(
            Opts::new(
                "glowworm_result_refusals_total",
                "Results refused, by reason: the error code of the reply (verification_failed, \
                 bad_signature, lease_expired, ...).",
            ),
            &["reason"],
        )
        .expect("a valid series");
        let leases_issued = IntCounter::new(
            "glowworm_leases_issued_total",
            "Leases issued to contributors.",
        )
        .expect("a valid series");
        let leases_in_flight = IntGauge::new(
            "glowworm_leases_in_flight",
            "Leases active now (issued, not yet returned, released or expired), read from the \
             database when scraped.",
        )
        .expect("a valid series");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "glowworm_queue_depth_units",
                "Units waiting to be leased, by job kind, read from the database when scraped.",
            ),
            &["kind"],
        )
        .expect("a valid series");
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "glowworm_http_request_duration_seconds",
                "Time to answer an HTTP request (until its reply's headers), by route template, \
                 method and status class.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method", "status"],
        )
        .expect("a valid series");
        let commits = Histogram::with_opts(
            HistogramOpts::new(
                "glowworm_db_commit_duration_seconds",
                "Time of each COMMIT of the database writer's grouped transactions (its sync of \
                 the WAL included).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
        )
        .expect("a valid series");
        for collector in [
            Box::new(results.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(result_refusals.clone()),
            Box::new(leases_issued.clone()),
            Box::new(leases_in_flight.clone()),
            Box::new(queue_depth.clone()),
            Box::new(requests.clone()),
            Box::new(commits.clone()),
        ] {
            registry.register(collector).expect("each series once");
        }
        // Every verdict and kind is shown from the start, at 0, so rate() sees the first one.
        for kind in JOB_KINDS {
            queue_depth.with_label_values(&[kind]).set(0);
        }
        Telemetry {
            results_valid: results.with_label_values(&["valid"]),
            results_invalid: results.with_label_values(&["invalid"]),
            results_pending: results.with_label_values(&["pending"]),
            registry,
            results,
            result_refusals,
            leases_issued,
            leases_in_flight,
            queue_depth,
            requests,
            commits,
        }
    }

    /// Counts a refused result; `reason` is the refusal's error code.
    pub fn result_refused(&self, reason: &'static str) {
        self.result_refusals.with_label_values(&[reason]).inc();
    }

    /// Records an answered request: `route` is the route's template (or a fixed name),
    /// `method` and `status` the request's.
    pub fn request_served(&self, route: &str, method: &str, status: u16, took: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[route, method, class])
            .observe(took.as_secs_f64());
    }

    /// Records one commit of the database writer.
    pub fn commit_took(&self, took: Duration) {
        self.commits.observe(took.as_secs_f64());
    }

    /// Sets the gauges read from the database: active leases, and pending units per job kind
    /// (kinds not in `queued` are 0).
    pub fn set_database_figures(&self, leases_in_flight: i64, queued: &[(String, i64)]) {
        self.leases_in_flight.set(leases_in_flight);
        for kind in JOB_KINDS {
            let units = queued
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, units)| *units);
            self.queue_depth.with_label_values(&[kind]).set(units);
        }
    }

    /// Every series in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text format encodes any series");
        String::from_utf8(text).expect("the text format is UTF-8")
    }

    /// How many results were answered with `verdict` (for tests).
    pub fn results_of(&self, verdict: &str) -> u64 {
        self.results.with_label_values(&[verdict]).get()
    }
}

/// The content type of [`Telemetry::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_renders_with_bounded_labels() {
        let t = telemetry();
        t.results_valid.inc();
        t.result_refused("bad_signature");
        t.request_served("/v1/results", "POST", 200, Duration::from_millis(3));
        t.commit_took(Duration::from_micros(300));
        t.set_database_figures(3, &[("matmul".into(), 7)]);
        let text = t.render();
        for line in [
            "glowworm_results_total{verdict=\"invalid\"}",
            "glowworm_result_refusals_total{reason=\"bad_signature\"}",
            "glowworm_leases_in_flight 3",
            "glowworm_queue_depth_units{kind=\"matmul\"} 7",
            "glowworm_queue_depth_units{kind=\"kernel\"} 0",
            "glowworm_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/results\",status=\"2xx\",le=\"0.005\"}",
            "glowworm_db_commit_duration_seconds_count",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
