//! The native worker against a real relay on 127.0.0.1 (port 0, SQLite in a temp dir), computing
//! on wgpu's native backend (lavapipe on a machine without a GPU).

mod common;

use common::{start_relay, start_relay_with};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{ContributorInfo, Stats};
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::runner::{self, Event, RunOptions, StopSignal};
use std::cell::Cell;
use std::time::Duration;

fn gpu() -> GpuThread {
    GpuThread::start().unwrap_or_else(|e| {
        panic!(
            "{e}\nThese tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_completes_a_job_and_is_credited_for_each_unit() {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_relay(&dir).await;
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job"); // 3 x 2 = 6 units
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = gpu();

    // One unit in flight, so the cache's effect is exact (parallel lanes may fetch a panel twice).
    let options = RunOptions {
        in_flight: 1,
        max_units: Some(6),
        ..Default::default()
    };
    let events = Cell::new(0u32);
    let totals = runner::run(
        &client,
        &key,
        &gpu,
        &options,
        &StopSignal::default(),
        &|e: Event| {
            if let Event::Error { message, .. } = e {
                panic!("the worker hit an error: {message}");
            }
            events.set(events.get() + 1);
        },
    )
    .await;

    let flop_per_unit = 2 * 32 * 32 * 48;
    assert_eq!(totals.units, 6);
    assert_eq!(totals.flop, 6 * flop_per_unit);
    let info: ContributorInfo = reqwest::get(format!("{url}/v1/contributors/{}", key.public_hex()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.units_verified, 6);
    assert_eq!(info.credits, 6 * flop_per_unit as i64);
    assert_eq!(totals.balance, info.credits);
    // The job's output is assembled just after its last unit's transaction, off the writer.
    let assembling = "SELECT COUNT(*) FROM jobs WHERE assembling = 1";
    while state
        .db
        .read(move |conn| Ok(conn.query_row(assembling, [], |row| row.get::<_, i64>(0))?))
        .await
        .unwrap()
        > 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats: Stats = reqwest::get(format!("{url}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats.units_completed, stats.jobs_done, stats.units_leased),
        (6, 1, 0)
    );
    // Panels shared by units were downloaded once: 3 A panels and 2 B panels of 32 x 48 f32.
    assert_eq!(totals.bytes_downloaded, 5 * 32 * 48 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_units_in_flight_all_verify_and_stop_leaves_nothing_leased() {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_relay(&dir).await;
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job");
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = gpu();
    let stop = StopSignal::default();

    let options = RunOptions {
        in_flight: 3,
        ..Default::default()
    };
    let totals = runner::run(&client, &key, &gpu, &options, &stop, &|e: Event| {
        if let Event::Verified { totals, .. } = e {
            if totals.units == 2 {
                stop.stop();
            }
        }
    })
    .await;

    // Stop came with the second unit; the other two lanes finish the unit each had in flight.
    assert!(
        (2..=4).contains(&totals.units),
        "stopped after {} units",
        totals.units
    );
    let stats: Stats = reqwest::get(format!("{url}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats.units_leased, 0,
        "no unit is left waiting on a deadline"
    );
    assert_eq!(stats.units_completed as u64, totals.units);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_refused_for_the_rate_limit_are_submitted_again_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Two requests a second for the key, leases and results together: most submissions of three
    // lanes are first refused with 429.
    let (url, state) = start_relay_with(&dir, |c| {
        c.rate_per_key = 2;
        c.burst_per_key = 2;
    })
    .await;
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job");
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = gpu();
    let options = RunOptions {
        in_flight: 3,
        max_units: Some(6),
        idle_wait: Duration::from_millis(100),
    };
    let totals = runner::run(
        &client,
        &key,
        &gpu,
        &options,
        &StopSignal::default(),
        &|_| {},
    )
    .await;
    assert_eq!(totals.units, 6, "every unit computed was verified");
    let expired = "SELECT COUNT(*) FROM leases WHERE state != 'submitted'";
    let unsubmitted = state
        .db
        .read(move |conn| Ok(conn.query_row(expired, [], |row| row.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(unsubmitted, 0, "no computed result was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_is_reported_and_retried_not_fatal() {
    let client = RelayClient::new("http://127.0.0.1:9").unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = gpu();
    let stop = StopSignal::default();
    let errors = Cell::new(Vec::new());
    let options = RunOptions {
        in_flight: 1,
        idle_wait: Duration::from_millis(50),
        ..Default::default()
    };
    let totals = runner::run(&client, &key, &gpu, &options, &stop, &|e: Event| {
        if let Event::Error {
            message, retry_in, ..
        } = e
        {
            let mut seen = errors.take();
            seen.push((message, retry_in));
            errors.set(seen);
            stop.stop();
        }
    })
    .await;
    let seen = errors.take();
    assert_eq!(totals.errors, 1);
    assert!(
        seen[0].0.contains("could not reach the relay"),
        "{}",
        seen[0].0
    );
    assert_eq!(seen[0].1, Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_is_replaced_and_work_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_relay(&dir).await;
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job"); // 6 units
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = gpu();

    let options = RunOptions {
        in_flight: 1,
        max_units: Some(6),
        ..Default::default()
    };
    let totals = runner::run(
        &client,
        &key,
        &gpu,
        &options,
        &StopSignal::default(),
        &|e: Event| match e {
            // Lose the device as a driver reset does, between the second unit and the third.
            Event::Verified { totals, .. } if totals.units == 2 => gpu.destroy_device().unwrap(),
            Event::Error { message, .. } => panic!("the worker hit an error: {message}"),
            _ => {}
        },
    )
    .await;

    // The loss was noticed before the next unit ran: a new device ran it and the rest.
    assert_eq!(gpu.recoveries(), 1);
    assert_eq!(totals.units, 6);
    let stats: Stats = reqwest::get(format!("{url}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((stats.units_completed, stats.units_leased), (6, 0));
}
