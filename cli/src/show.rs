//! Text for people: job statuses, the job table, sizes and ages.

use glowworm_protocol::wire::JobStatus;
use std::fmt::Write;

/// "matmul (512, 384) @ (384, 640)": A (m, k) times B (k, n), in NumPy's order; or the kind alone.
pub fn kind_and_shape(status: &JobStatus) -> String {
    match (status.kind.as_str(), status.shape) {
        (kind, Some(shape)) => format!(
            "{kind} ({m}, {k}) @ ({k}, {n})",
            m = shape.m,
            k = shape.k,
            n = shape.n
        ),
        ("", None) => "job".to_string(),
        (kind, None) => kind.to_string(),
    }
}

/// "30/80 units verified (37%), 4 leased, 46 waiting" (and ", 2 failed" when any did).
pub fn progress_line(status: &JobStatus) -> String {
    format!(
        "{}/{} units verified ({}%), {}",
        status.units_verified,
        status.units_total,
        percent(status),
        unit_counts(status)
    )
}

/// "4 leased, 46 waiting" (and ", 2 failed" when any did).
pub fn unit_counts(status: &JobStatus) -> String {
    let mut text = format!(
        "{} leased, {} waiting",
        status.units_leased, status.units_pending
    );
    if status.units_failed > 0 {
        let _ = write!(text, ", {} failed", status.units_failed);
    }
    text
}

/// Verified units in whole percent, from the counts (the relay's `progress` as a fallback).
fn percent(status: &JobStatus) -> i64 {
    if status.units_total > 0 {
        status.units_verified * 100 / status.units_total
    } else {
        (status.progress * 100.0).round() as i64
    }
}

/// The multi-line view of `glowworm status`.
pub fn status_block(status: &JobStatus, now_unix_ms: i64) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "job {} ({})", status.id, kind_and_shape(status));
    let _ = writeln!(text, "  state:    {}", status.state);
    let _ = writeln!(text, "  units:    {}", progress_line(status));
    if status.output_bytes > 0 {
        let _ = writeln!(text, "  output:   {}", bytes(status.output_bytes));
    }
    if status.created_at_unix_ms > 0 {
        let _ = writeln!(
            text,
            "  created:  {}",
            age(now_unix_ms - status.created_at_unix_ms)
        );
    }
    if let Some(hash) = &status.output_hash {
        let _ = writeln!(text, "  sha256:   {hash}");
    }
    if let Some(failure) = &status.failure {
        let _ = writeln!(text, "  failure:  {failure}");
    }
    for waiting in &status.waiting {
        let _ = writeln!(
            text,
            "  waiting:  {} unit(s) {}: {}",
            waiting.units, waiting.reason, waiting.detail
        );
    }
    text
}

/// The table of `glowworm jobs`, one line per job, newest first as the relay lists them.
pub fn jobs_table(jobs: &[JobStatus], now_unix_ms: i64) -> String {
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|job| {
            [
                job.id.to_string(),
                kind_and_shape(job),
                job.state.clone(),
                format!(
                    "{}/{} ({}%)",
                    job.units_verified,
                    job.units_total,
                    percent(job)
                ),
                age(now_unix_ms - job.created_at_unix_ms),
            ]
        })
        .collect();
    let header = ["ID", "JOB", "STATE", "VERIFIED", "CREATED"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == 0 {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    text
}

/// "1.3 MB", "512 B" (decimal units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
pub fn age(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glowworm_protocol::wire::MatmulShape;

    fn job(id: i64, state: &str, verified: i64, total: i64) -> JobStatus {
        JobStatus {
            id,
            kind: "matmul".into(),
            state: state.into(),
            shape: Some(MatmulShape {
                m: 512,
                n: 640,
                k: 384,
            }),
            output_bytes: 512 * 640 * 4,
            created_at_unix_ms: 1_000_000,
            progress: verified as f64 / total as f64,
            units_total: total,
            units_verified: verified,
            units_pending: total - verified - 4,
            units_leased: 4,
            units_failed: 0,
            output_hash: None,
            failure: None,
            waiting: Vec::new(),
            credits_reserved: 0,
            credits_paid: 0,
            credits_returned: 0,
        }
    }

    #[test]
    fn progress_lines_count_units() {
        let mut status = job(7, "queued", 30, 80);
        assert_eq!(
            progress_line(&status),
            "30/80 units verified (37%), 4 leased, 46 waiting"
        );
        status.units_failed = 2;
        assert!(progress_line(&status).ends_with(", 2 failed"));
    }

    #[test]
    fn the_job_table_lines_up() {
        let now = 1_000_000 + 125_000;
        let mut kernel = job(12, "done", 4, 4);
        kernel.kind = "kernel".into();
        kernel.shape = None;
        let table = jobs_table(&[kernel, job(7, "queued", 30, 80)], now);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(
            lines[0],
            "ID  JOB                             STATE   VERIFIED     CREATED"
        );
        assert_eq!(
            lines[1],
            "12  kernel                          done    4/4 (100%)   2m ago"
        );
        assert_eq!(
            lines[2],
            " 7  matmul (512, 384) @ (384, 640)  queued  30/80 (37%)  2m ago"
        );
    }

    #[test]
    fn the_status_block_names_everything_known() {
        let block = status_block(&job(7, "queued", 30, 80), 1_000_000 + 5_000);
        assert!(
            block.starts_with("job 7 (matmul (512, 384) @ (384, 640))\n"),
            "{block}"
        );
        assert!(block.contains("state:    queued"), "{block}");
        assert!(block.contains("output:   1.3 MB"), "{block}");
        assert!(block.contains("created:  5s ago"), "{block}");
    }

    #[test]
    fn sizes_and_ages_are_short() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_310_720), "1.3 MB");
        assert_eq!(bytes(5_000_000_000), "5.0 GB");
        assert_eq!(age(-5), "0s ago");
        assert_eq!(age(59_999), "59s ago");
        assert_eq!(age(3_600_000), "1h ago");
        assert_eq!(age(3 * 86_400_000), "3d ago");
    }
}
