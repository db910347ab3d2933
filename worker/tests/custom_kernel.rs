//! The native worker on a custom-kernel lease (the SAXPY sample), against a stand-in relay that
//! serves one lease, its kernel and inputs, and keeps what is submitted: the output is SAXPY's,
//! as bytes, signed over exactly those bytes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes, from_base64};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::custom::samples;
use glowworm_protocol::kernels::matmul::sample_matrix;
use glowworm_protocol::signing::{ContributorKey, verify_result};
use glowworm_protocol::wire::{
    BlobRef, Dispatch, KernelRef, KernelSource, Lease, LeaseWork, ResultReceipt, ResultSubmission,
};
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::runner::{self, Event, RunOptions, StopSignal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Relay {
    leases: Mutex<Vec<Lease>>,
    kernels: HashMap<String, KernelSource>,
    blobs: HashMap<String, Vec<u8>>,
    results: Mutex<Vec<ResultSubmission>>,
}

async fn take_lease(State(relay): State<Arc<Relay>>) -> Response {
    match relay.leases.lock().unwrap().pop() {
        Some(lease) => Json(lease).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn get_kernel(State(relay): State<Arc<Relay>>, Path(hash): Path<String>) -> Response {
    match relay.kernels.get(&hash) {
        Some(k) => Json(k.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn blob(State(relay): State<Arc<Relay>>, Path(hash): Path<String>) -> Response {
    match relay.blobs.get(&hash) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn result(
    State(relay): State<Arc<Relay>>,
    Json(submission): Json<ResultSubmission>,
) -> Json<ResultReceipt> {
    let unit_id = submission.unit_id;
    relay.results.lock().unwrap().push(submission);
    Json(ResultReceipt {
        unit_id,
        status: "pending".into(),
        credited: 0,
        pending: 0,
        balance: 0,
        flop: 0,
        receipt: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_custom_kernel_and_signs_its_output_bytes() {
    let n = 200;
    let spec = samples::saxpy_spec(n, 1);
    let kernel = KernelSource {
        id: "saxpy".into(),
        hash: ContentHash::of(spec.wgsl.as_bytes()),
        entry_point: spec.entry_point.clone(),
        wgsl: spec.wgsl.clone(),
        tile: [0, 0],
    };
    let (x, y) = (sample_matrix(n, 1), sample_matrix(n, 2));
    let (xb, yb) = (f32s_to_bytes(&x), f32s_to_bytes(&y));
    let blob_ref = |name: &str, bytes: &[u8], binding| BlobRef {
        name: name.into(),
        hash: ContentHash::of(bytes),
        bytes: bytes.len() as u64,
        binding: Some(binding),
    };
    let lease = Lease {
        lease_id: "lease-1".into(),
        unit_id: 7,
        job_id: 3,
        kernel: KernelRef {
            id: kernel.id.clone(),
            hash: kernel.hash,
        },
        work: LeaseWork::Dispatch(Dispatch {
            workgroups: spec.workgroups,
            output_binding: spec.output.binding,
        }),
        inputs: vec![blob_ref("x", &xb, 0), blob_ref("y", &yb, 1)],
        output_bytes: spec.output.bytes,
        flop: 0,
        deadline_unix_ms: i64::MAX,
    };
    let relay = Arc::new(Relay {
        leases: Mutex::new(vec![lease.clone()]),
        kernels: HashMap::from([(kernel.hash.to_string(), kernel.clone())]),
        blobs: HashMap::from([
            (ContentHash::of(&xb).to_string(), xb.clone()),
            (ContentHash::of(&yb).to_string(), yb.clone()),
        ]),
        results: Mutex::default(),
    });
    let router = Router::new()
        .route("/v1/leases", post(take_lease))
        .route("/v1/kernels/{hash}", get(get_kernel))
        .route("/v1/blobs/{hash}", get(blob))
        .route("/v1/results", post(result))
        .with_state(relay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let gpu = GpuThread::start().expect("a Vulkan driver (apt-get install mesa-vulkan-drivers)");
    let options = RunOptions {
        in_flight: 1,
        max_units: Some(1),
        ..Default::default()
    };
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
        },
    )
    .await;
    assert_eq!(totals.units, 1);
    assert_eq!(totals.bytes_downloaded, 2 * 4 * n as u64);

    let results = relay.results.lock().unwrap();
    let [submitted] = &results[..] else {
        panic!("expected one result, got {}", results.len());
    };
    let output = from_base64(&submitted.output).unwrap();
    verify_result(
        &key.public_hex(),
        &submitted.signature,
        lease.unit_id,
        &lease.lease_id,
        &kernel.hash,
        &output,
    )
    .expect("the signature covers the output bytes");
    let got = bytes_to_f32s(&output).unwrap();
    let want = samples::saxpy_reference(&x, &y);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "element {i}: {g}, want {w}"
        );
    }
    assert_eq!(got.len(), want.len());
}
