//! A replicated kernel job on one machine: a real relay (its own listener, so every request
//! carries the peer's address) on 127.0.0.1 with the default settings, and two native workers
//! with their own keys, both on this host. Replicas are kept apart by network by default; on a
//! relay that listens on loopback alone, loopback contributors are the operator's own processes,
//! so the job completes. A relay that listens beyond loopback sees its loopback peers as one
//! network (a local reverse proxy without `trust_forwarded_for`), and the job's status says why
//! its units wait.

use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::kernels::custom::{samples, validate};
use glowworm_protocol::kernels::matmul::sample_matrix;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::JobStatus;
use glowworm_relay::work::jobs::{KernelJob, Owner};
use glowworm_relay::{AppState, Config, app};
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::runner::{self, Event, RunOptions, StopSignal};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const N: u32 = 256;
const UNITS: u32 = 2;

/// A relay configured to listen on `listen`, actually serving on 127.0.0.1 (port 0), with a
/// two-unit SAXPY job (2 replicas each) queued; returns its URL, state and job id.
async fn relay_with_a_kernel_job(
    dir: &tempfile::TempDir,
    listen: SocketAddr,
) -> (String, AppState, i64) {
    let config = Config {
        database: dir.path().join("relay.sqlite"),
        demo_jobs: false,
        canary_permille: 0,
        listen,
        ..Config::default()
    };
    assert!(config.distinct_networks, "the default keeps networks apart");
    let state = AppState::open(config.clone()).expect("relay state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(state.clone());
    tokio::spawn(async move {
        glowworm_relay::http::serve::serve(listener, router, &config, std::future::pending()).await
    });

    let spec = samples::saxpy_spec(N, UNITS);
    let validated = validate(&spec).unwrap();
    let x = f32s_to_bytes(&sample_matrix(N * UNITS, 1));
    let y = f32s_to_bytes(&sample_matrix(N * UNITS, 2));
    let store = state.db.blob_store().clone();
    let job = KernelJob::store(&store, &spec, &[x, y], validated.workgroup_size, 3).unwrap();
    let state_config = state.config.clone();
    let job_id = state
        .db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let id = job.insert(&tx, &state_config, Owner::Demo, 0)?;
            tx.commit()?;
            Ok(id)
        })
        .await
        .unwrap();
    (url, state, job_id)
}

async fn status(url: &str, job_id: i64) -> JobStatus {
    reqwest::get(format!("{url}/v1/jobs/{job_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two workers, each with its own key, on one GPU thread, until the job leaves `queued` or
/// `patience` passes; returns the job's last status.
async fn two_workers(url: &str, job_id: i64, patience: Duration) -> JobStatus {
    let gpu = GpuThread::start().expect("a Vulkan driver (apt-get install mesa-vulkan-drivers)");
    let client = RelayClient::new(url).unwrap();
    let keys = [
        ContributorKey::generate().unwrap(),
        ContributorKey::generate().unwrap(),
    ];
    let stop = StopSignal::default();
    let options = RunOptions {
        in_flight: 1,
        idle_wait: Duration::from_millis(200),
        ..Default::default()
    };
    let on_event = |e: Event| {
        if let Event::Error { message, .. } = e {
            panic!("a worker hit an error: {message}");
        }
    };
    let watch = async {
        let started = Instant::now();
        loop {
            let job = status(url, job_id).await;
            if job.state != "queued" || started.elapsed() > patience {
                stop.stop();
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, _, job) = tokio::join!(
        runner::run(&client, &keys[0], &gpu, &options, &stop, &on_event),
        runner::run(&client, &keys[1], &gpu, &options, &stop, &on_event),
        watch
    );
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_kernel_job_completes_on_one_machine_with_the_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _state, job_id) =
        relay_with_a_kernel_job(&dir, "127.0.0.1:8787".parse().unwrap()).await;
    let job = two_workers(&url, job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state, "done", "{job:?}");
    assert!(job.waiting.is_empty());

    let output = reqwest::get(format!("{url}/v1/jobs/{job_id}/result"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let got = bytes_to_f32s(&output).unwrap();
    let want = samples::saxpy_reference(&sample_matrix(N * UNITS, 1), &sample_matrix(N * UNITS, 2));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "element {i}: {g}, want {w}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_local_proxy_loopback_is_one_network_and_the_status_says_why_units_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _state, job_id) =
        relay_with_a_kernel_job(&dir, "0.0.0.0:8787".parse().unwrap()).await;
    let job = two_workers(&url, job_id, Duration::from_secs(10)).await;
    assert_eq!(job.state, "queued");
    assert_eq!(job.units_verified, 0);
    let replicas = job
        .waiting
        .iter()
        .find(|w| w.reason == "replicas")
        .unwrap_or_else(|| panic!("units wait for replicas: {:?}", job.waiting));
    assert_eq!(replicas.units, UNITS as i64);
    assert!(
        replicas.detail.contains("from 1 such network")
            && replicas.detail.contains("trust_forwarded_for"),
        "the status names the cause and the cure: {}",
        replicas.detail
    );
}
