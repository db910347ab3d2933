//! Requesters' inputs as a new requester gives them: the `glowworm` CLI against a relay on a
//! real socket (127.0.0.1, a real SQLite file). A matrix with NaN or an infinity, or a product
//! that could overflow f32, is refused at upload naming the matrix and the place, and stores
//! nothing; a product near the limit is computed and verified; nobody is struck for any of it.
//! Kernel inputs given as .npy are read as arrays (the header is never data), float64 and
//! Fortran order are refused with what to do; honest NaN and infinite kernel outputs agree.

// The relay's own test helpers: a relay in this process, contributors that work its units.
#[path = "../../relay/tests/common/mod.rs"]
mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Contributor, TestRelay};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::kernels::custom::samples;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::npy;
use glowworm_protocol::wire::{JobSpec, Lease, MatmulShape};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test relay also served over TCP on 127.0.0.1, for the CLI.
struct Served {
    relay: TestRelay,
    base: String,
    key: String,
    files: tempfile::TempDir,
}

impl Served {
    async fn start() -> Self {
        // No canaries: each test counts the leases its units need.
        let relay = TestRelay::with_config(|config| config.canary_permille = 0);
        let key = relay.create_api_key("lab", 100_000).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = relay.app.clone();
        let config = relay.state.config.clone();
        tokio::spawn(async move {
            glowworm_relay::http::serve::serve(listener, router, &config, std::future::pending())
                .await;
        });
        Served {
            relay,
            base,
            key,
            files: tempfile::TempDir::new().unwrap(),
        }
    }

    /// Writes `bytes` to a file named `name` in the test's directory.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Runs the `glowworm` CLI with this relay and key: its exit status, stdout and stderr.
    async fn cli(&self, args: &[&str]) -> Cli {
        self.cli_at(&self.base, args).await
    }

    /// Runs the `glowworm` CLI with this key and the relay at `base`.
    async fn cli_at(&self, base: &str, args: &[&str]) -> Cli {
        let mut command = glowworm();
        command
            .args(["--relay", base, "--api-key", &self.key])
            .args(args)
            .current_dir(self.files.path());
        finish(command).await
    }

    /// What a refused upload must leave as it was: jobs, units, blobs (rows and files), and
    /// everything the verifier knows of contributors.
    async fn footprint(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for sql in [
            "SELECT COUNT(*) FROM jobs",
            "SELECT COUNT(*) FROM units",
            "SELECT COUNT(*) FROM blobs",
            "SELECT COUNT(*) FROM kernels",
            "SELECT COUNT(*) FROM reputation",
            "SELECT COALESCE(SUM(strikes), 0) FROM reputation",
            "SELECT COALESCE(SUM(results_invalid), 0) FROM reputation",
            "SELECT COUNT(*) FROM reputation WHERE quarantined_at_ms IS NOT NULL",
        ] {
            counts.push(self.relay.count(sql).await);
        }
        let blob_dir = self.relay.state.db.blob_store().dir().to_path_buf();
        counts.push(common::files_under(&blob_dir) as i64);
        counts
    }

    /// A job's state, from the database (its status needs the requester's key over HTTP).
    async fn job_state(&self, id: i64) -> String {
        self.relay.assembled(id).await;
        self.relay
            .state
            .db
            .read(move |conn| {
                Ok(
                    conn.query_row("SELECT state FROM jobs WHERE id = ?1", [id], |row| {
                        row.get(0)
                    })?,
                )
            })
            .await
            .unwrap()
    }

    /// No contributor has a strike, an invalid result or a quarantine.
    async fn assert_nobody_struck(&self) {
        for sql in [
            "SELECT COALESCE(SUM(strikes), 0) FROM reputation",
            "SELECT COALESCE(SUM(results_invalid), 0) FROM reputation",
            "SELECT COUNT(*) FROM reputation WHERE quarantined_at_ms IS NOT NULL",
            "SELECT COUNT(*) FROM results WHERE state = 'invalid'",
        ] {
            assert_eq!(self.relay.count(sql).await, 0, "{sql}");
        }
    }
}

/// The `glowworm` binary, without the caller's GLOWWORM_ variables; stdout and stderr are pipes,
/// never a terminal.
fn glowworm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glowworm"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("GLOWWORM_")) {
        command.env_remove(name);
    }
    command
}

struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Cli {
    fn from(output: std::process::Output) -> Cli {
        Cli {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Cli {
    /// Asserts the CLI failed (status 1: the relay refused) with every one of `needles` in its
    /// error.
    fn assert_refused(&self, what: &str, needles: &[&str]) {
        self.assert_failed(1, what, needles);
    }

    /// Asserts the CLI failed with exit status `code` and every one of `needles` in its error,
    /// which is one line `glowworm: error: ...` (a resume hint may follow it), no backtrace.
    fn assert_failed(&self, code: i32, what: &str, needles: &[&str]) {
        assert_eq!(self.code, Some(code), "{what}: {}", self.stderr);
        assert!(
            self.stderr
                .lines()
                .any(|line| line.starts_with("glowworm: error: ")),
            "{what}: no `glowworm: error:` line: {}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("backtrace") && !self.stderr.contains("Stack backtrace"),
            "{what}: {}",
            self.stderr
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{what}: {needle:?} not in the error: {}",
                self.stderr
            );
        }
    }

    /// The id of the job `submit --no-wait` queued ("job 7 submitted: ...").
    fn job_id(&self) -> i64 {
        assert_eq!(self.code, Some(0), "{}\n{}", self.stdout, self.stderr);
        self.stdout
            .strip_prefix("job ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no job id in {:?}", self.stdout))
    }
}

fn npy_matrix(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    npy::write_f32(&[rows, cols], &f32s_to_bytes(values))
}

/// A .npy file of `data` with `descr`, `fortran_order` and `shape` as NumPy writes them.
fn npy_file(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut file = npy::MAGIC.to_vec();
    file.extend_from_slice(&[1, 0]);
    file.extend_from_slice(&(header.len() as u16).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(data);
    file
}

/// Every pending unit computed by honest contributors (matmul on the CPU) until none is left.
async fn compute_matmul_units(relay: &TestRelay) -> u32 {
    let contributor = Contributor::new();
    let mut units = 0;
    while let Some(lease) = contributor.lease(relay).await {
        contributor.complete(relay, &lease).await;
        units += 1;
    }
    units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_matrices_and_overflowing_products_are_refused_naming_the_place() {
    let served = Served::start().await;
    // An honest contributor with a record, which no refused upload may touch.
    let (job, _, _) = served
        .relay
        .queue_job(MatmulShape { m: 64, n: 64, k: 8 }, None, 1)
        .await;
    assert_eq!(compute_matmul_units(&served.relay).await, 1);
    assert_eq!(served.relay.job(job).await.state, "done");
    let before = served.footprint().await;

    let ones = |n: usize| vec![1.0f32; n];
    let mut nan_a = ones(3 * 4);
    nan_a[4 + 2] = f32::NAN;
    let mut inf_b = ones(4 * 2);
    inf_b[1] = f32::INFINITY;
    let mut neg_inf_b = ones(4 * 2);
    neg_inf_b[3 * 2 + 1] = f32::NEG_INFINITY;
    // Row 2 of A: 4 * 1e19 * 5e18 = 2e38, over f32::MAX / 2 (1.7e38), under f32::MAX.
    let mut big_a = ones(3 * 4);
    big_a[2 * 4..3 * 4].fill(1e19);
    let big_b = [5e18f32; 8];
    let a = served.file("a.npy", &npy_matrix(3, 4, &ones(12)));
    let b = served.file("b.npy", &npy_matrix(4, 2, &ones(8)));
    let nan_a = served.file("nan_a.npy", &npy_matrix(3, 4, &nan_a));
    let inf_b = served.file("inf_b.npy", &npy_matrix(4, 2, &inf_b));
    let neg_inf_b = served.file("neg_inf_b.f32", &f32s_to_bytes(&neg_inf_b));
    let raw_a = served.file("a.f32", &f32s_to_bytes(&ones(12)));
    let big_a = served.file("big_a.npy", &npy_matrix(3, 4, &big_a));
    // 1e20 * 1e20 is past f32::MAX itself: every element of C would be inf.
    let huge_a = served.file("huge_a.npy", &npy_matrix(3, 4, &[1e20; 12]));
    let huge_b = served.file("huge_b.npy", &npy_matrix(4, 2, &[1e20; 8]));
    let big_b = served.file("big_b.npy", &npy_matrix(4, 2, &big_b));
    let p = |path: &PathBuf| path.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "NaN in A",
            vec![p(&nan_a), p(&b)],
            vec!["400 non_finite_input", "A has NaN at row 1, column 2"],
        ),
        (
            "+inf in B",
            vec![p(&a), p(&inf_b)],
            vec!["400 non_finite_input", "B has inf at row 0, column 1"],
        ),
        (
            "-inf in raw B",
            vec![p(&raw_a), p(&neg_inf_b)],
            vec!["400 non_finite_input", "B has -inf at row 3, column 1"],
        ),
        (
            "a product past f32::MAX / 2",
            vec![p(&big_a), p(&big_b)],
            vec![
                "400 product_overflows",
                "row 2 of A",
                "2.000e38",
                "Scale A or B",
            ],
        ),
        (
            "a product past f32::MAX",
            vec![p(&huge_a), p(&huge_b)],
            vec!["400 product_overflows", "row 0 of A", "4.000e40"],
        ),
    ];
    for (what, files, needles) in cases {
        let mut args = vec!["submit", "matmul", "--a", &files[0], "--b", &files[1]];
        if files[0].ends_with(".f32") {
            args.extend(["--m", "3", "--k", "4", "--n", "2"]);
        }
        args.push("--no-wait");
        served.cli(&args).await.assert_refused(what, &needles);
    }
    assert_eq!(
        served.footprint().await,
        before,
        "nothing refused was stored"
    );
    served.assert_nobody_struck().await;
    assert!(
        Contributor::new().lease(&served.relay).await.is_none(),
        "no unit of a refused job can be leased"
    );

    // The network is not poisoned: the next job leases and verifies as ever.
    let id = served
        .cli(&[
            "submit",
            "matmul",
            "--a",
            &p(&a),
            "--b",
            &p(&b),
            "--no-wait",
        ])
        .await
        .job_id();
    assert_eq!(compute_matmul_units(&served.relay).await, 1);
    assert_eq!(served.job_state(id).await, "done");
    served.assert_nobody_struck().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_just_under_the_bound_is_computed_verified_and_downloaded() {
    let served = Served::start().await;
    // Every row's bound: 2 * 1e19 * 8e18 = 1.6e38, just under f32::MAX / 2 (1.7014e38).
    let (m, k, n) = (70usize, 2usize, 3usize);
    let a: Vec<f32> = (0..m * k)
        .map(|i| if i % 3 == 0 { -1e19 } else { 1e19 })
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| if i % 2 == 0 { 8e18 } else { -4e18 })
        .collect();
    let a_path = served.file("a.npy", &npy_matrix(m, k, &a));
    let b_path = served.file("b.npy", &npy_matrix(k, n, &b));
    let submitted = served
        .cli(&[
            "submit",
            "matmul",
            "--a",
            a_path.to_str().unwrap(),
            "--b",
            b_path.to_str().unwrap(),
            "--no-wait",
        ])
        .await;
    let id = submitted.job_id();
    assert!(
        submitted.stderr.contains("float32 ('<f4') (70, 2)"),
        "the progress names each input's shape: {}",
        submitted.stderr
    );
    assert_eq!(compute_matmul_units(&served.relay).await, 2);
    served.assert_nobody_struck().await;
    let fetched = served
        .cli(&["result", &id.to_string(), "--out", "c.npy"])
        .await;
    assert_eq!(fetched.code, Some(0), "{}", fetched.stderr);
    assert!(
        fetched.stdout.contains("sha256 verified"),
        "{}",
        fetched.stdout
    );
    let file = std::fs::read(served.files.path().join("c.npy")).unwrap();
    let c = npy::parse_f32(&file).unwrap();
    assert_eq!(c.shape, vec![m, n]);
    let c = bytes_to_f32s(c.data).unwrap();
    assert!(c.iter().all(|v| v.is_finite() && v.abs() > 1e37));
    let shape = MatmulShape {
        m: m as u32,
        n: n as u32,
        k: k as u32,
    };
    assert_eq!(c, matmul::reference(&a, &b, shape));
}

/// Leases, computes (SAXPY on the CPU) and submits every kernel unit with two contributors on
/// distinct networks; returns the inputs each unit was given, in lease order.
async fn compute_saxpy_units(relay: &TestRelay) -> Vec<Vec<Vec<u8>>> {
    let mut given = Vec::new();
    for contributor in [Contributor::at("10.0.1.1"), Contributor::at("10.0.2.1")] {
        while let Some(lease) = contributor.lease(relay).await {
            let inputs = lease_inputs(relay, &lease).await;
            let floats: Vec<Vec<f32>> = inputs.iter().map(|b| bytes_to_f32s(b).unwrap()).collect();
            let output = f32s_to_bytes(&samples::saxpy_reference(&floats[0], &floats[1]));
            common::accepted(&contributor.submit(relay, &lease, &output).await);
            given.push(inputs);
        }
    }
    given
}

async fn lease_inputs(relay: &TestRelay, lease: &Lease) -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    for blob in &lease.inputs {
        let reply = relay.get(&format!("/v1/blobs/{}", blob.hash)).await;
        assert_eq!(reply.status, StatusCode::OK);
        inputs.push(reply.body);
    }
    inputs
}

fn saxpy_spec_file(served: &Served, n: u32, units: u32, tolerance_ulps: u32) -> PathBuf {
    let mut spec = samples::saxpy_spec(n, units);
    spec.tolerance_ulps = tolerance_ulps;
    let json = serde_json::to_vec(&JobSpec::Kernel(spec)).unwrap();
    served.file("saxpy.json", &json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_inputs_given_as_npy_are_sent_as_their_data_and_computed_right() {
    let served = Served::start().await;
    let (n, units) = (256u32, 2u32);
    let x = matmul::sample_matrix(n * units, 3);
    let y = matmul::sample_matrix(n * units, 4);
    let spec = saxpy_spec_file(&served, n, units, 0);
    // x as a 2-D .npy (its shape is only a view of the elements), y as raw bytes.
    served.file("x.npy", &npy_matrix(units as usize, n as usize, &x));
    served.file("y.bin", &f32s_to_bytes(&y));
    let submitted = served
        .cli(&[
            "submit",
            "kernel",
            "--spec",
            spec.to_str().unwrap(),
            "--input",
            "x=x.npy",
            "--input",
            "y=y.bin",
            "--no-wait",
        ])
        .await;
    let id = submitted.job_id();
    for line in [
        "input x: x.npy: float32 ('<f4') (2, 256), 2.0 kB",
        "input y: y.bin: raw bytes, 2.0 kB",
    ] {
        assert!(submitted.stderr.contains(line), "{}", submitted.stderr);
    }

    let given = compute_saxpy_units(&served.relay).await;
    assert_eq!(given.len(), 4, "2 units, 2 replicas each");
    for inputs in &given {
        let chunk = bytes_to_f32s(&inputs[0]).unwrap();
        assert!(
            x.chunks(n as usize).any(|c| c == chunk),
            "each unit is given a chunk of x's data, never its header"
        );
    }
    served.assert_nobody_struck().await;

    let expected = samples::saxpy_reference(&x, &y);
    let npy_out = served
        .cli(&["result", &id.to_string(), "--out", "out.npy"])
        .await;
    assert_eq!(npy_out.code, Some(0), "{}", npy_out.stderr);
    assert!(
        npy_out.stdout.contains("sha256 verified"),
        "{}",
        npy_out.stdout
    );
    let file = std::fs::read(served.files.path().join("out.npy")).unwrap();
    let array = npy::parse_f32(&file).unwrap();
    assert_eq!(array.shape, vec![(n * units) as usize]);
    assert_eq!(bytes_to_f32s(array.data).unwrap(), expected);
    let raw_out = served
        .cli(&["result", &id.to_string(), "--out", "out.bin"])
        .await;
    assert_eq!(raw_out.code, Some(0), "{}", raw_out.stderr);
    let raw = std::fs::read(served.files.path().join("out.bin")).unwrap();
    assert_eq!(raw, f32s_to_bytes(&expected), "raw bytes, no header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_npy_inputs_the_kernel_cannot_take_are_refused_by_the_cli() {
    let served = Served::start().await;
    let spec = saxpy_spec_file(&served, 64, 2, 0);
    served.file("y.bin", &[0; 512]);
    let f64_data: Vec<u8> = (0..64).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    served.file("x64.npy", &npy_file("<f8", false, "(64,)", &f64_data));
    served.file("xf.npy", &npy_file("<f4", true, "(8, 8)", &[0; 256]));
    served.file("broken.npy", b"x,y\n1,2\n");
    served.file("short.npy", &npy_file("<f4", false, "(3,)", &[0; 12]));
    let before = served.footprint().await;
    let cases = [
        (
            "float64",
            "x=x64.npy",
            vec![
                "x64.npy has dtype float64 ('<f8')",
                "x64.astype(np.float32)",
            ],
        ),
        (
            "Fortran order",
            "x=xf.npy",
            vec!["xf.npy is in Fortran", "np.ascontiguousarray(xf)"],
        ),
        (
            "not a .npy file",
            "x=broken.npy",
            vec![
                "broken.npy is named .npy but is not a .npy file",
                "raw bytes",
            ],
        ),
        (
            "a size that does not split into the units",
            "x=short.npy",
            vec!["short.npy: float32 ('<f4') (3,)", "multiple of 8 bytes"],
        ),
    ];
    for (what, input, needles) in cases {
        served
            .cli(&[
                "submit",
                "kernel",
                "--spec",
                spec.to_str().unwrap(),
                "--input",
                input,
                "--input",
                "y=y.bin",
                "--no-wait",
            ])
            .await
            .assert_failed(2, what, &needles);
    }
    assert_eq!(served.footprint().await, before, "nothing was uploaded");
}

/// A multipart upload of `parts` (name, bytes) straight to the relay.
async fn upload(served: &Served, parts: &[(&str, Vec<u8>)]) -> common::Reply {
    const BOUNDARY: &str = "glowworm-inputs-boundary";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}.npy\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/jobs")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header(header::AUTHORIZATION, format!("Bearer {}", served.key))
        .body(Body::from(body))
        .unwrap();
    served.relay.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reads_kernel_parts_sent_as_npy_and_refuses_the_ones_it_cannot_use() {
    let served = Served::start().await;
    let spec = serde_json::to_vec(&JobSpec::Kernel(samples::saxpy_spec(64, 1))).unwrap();
    let x = matmul::sample_matrix(64, 5);
    let y = matmul::sample_matrix(64, 6);
    let before = served.footprint().await;
    let f64_data: Vec<u8> = (0..64).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    let cases = [
        (
            npy_file("<f8", false, "(64,)", &f64_data),
            "unsupported_dtype",
            "float64 ('<f8')",
        ),
        (
            npy_file("<f4", true, "(8, 8)", &f32s_to_bytes(&x)),
            "bad_npy",
            "Fortran order",
        ),
        (
            npy_file("<f4", false, "(65,)", &f32s_to_bytes(&x)),
            "bad_npy",
            "needs 260",
        ),
    ];
    for (x_part, code, needle) in cases {
        let reply = upload(
            &served,
            &[
                ("job", spec.clone()),
                ("x", x_part),
                ("y", f32s_to_bytes(&y)),
            ],
        )
        .await;
        reply.assert_error(400, code);
        let message = String::from_utf8_lossy(&reply.body);
        assert!(
            message.contains("input 'x'") && message.contains(needle),
            "{message}"
        );
    }
    assert_eq!(
        served.footprint().await,
        before,
        "nothing refused was stored"
    );

    // A float32 .npy part (as curl -F x=@x.npy sends it): its data is the input.
    let reply = upload(
        &served,
        &[
            ("job", spec),
            ("x", npy_file("<f4", false, "(64,)", &f32s_to_bytes(&x))),
            ("y", npy_file("<f4", false, "(64,)", &f32s_to_bytes(&y))),
        ],
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let given = compute_saxpy_units(&served.relay).await;
    assert_eq!(given[0], [f32s_to_bytes(&x), f32s_to_bytes(&y)]);
    served.assert_nobody_struck().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_nan_and_infinite_kernel_outputs_agree_and_nobody_is_struck() {
    let served = Served::start().await;
    let n = 64u32;
    let mut x = matmul::sample_matrix(n, 7);
    x[0] = f32::NAN;
    x[1] = f32::INFINITY;
    x[2] = f32::NEG_INFINITY;
    x[3] = f32::MAX; // 2 * MAX overflows to inf in the kernel
    let y = matmul::sample_matrix(n, 8);
    served.file("x.npy", &npy::write_f32(&[n as usize], &f32s_to_bytes(&x)));
    served.file("y.npy", &npy::write_f32(&[n as usize], &f32s_to_bytes(&y)));
    for tolerance_ulps in [0, 4] {
        let spec = saxpy_spec_file(&served, n, 1, tolerance_ulps);
        let id = served
            .cli(&[
                "submit",
                "kernel",
                "--spec",
                spec.to_str().unwrap(),
                "--input",
                "x=x.npy",
                "--input",
                "y=y.npy",
                "--no-wait",
            ])
            .await
            .job_id();
        compute_saxpy_units(&served.relay).await;
        assert_eq!(served.job_state(id).await, "done", "ulps {tolerance_ulps}");
        served.assert_nobody_struck().await;
        let fetched = served
            .cli(&["result", &id.to_string(), "--out", "out.npy"])
            .await;
        assert_eq!(fetched.code, Some(0), "{}", fetched.stderr);
        let file = std::fs::read(served.files.path().join("out.npy")).unwrap();
        let out = bytes_to_f32s(npy::parse_f32(&file).unwrap().data).unwrap();
        assert!(out[0].is_nan());
        assert_eq!(out[1..4], [f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]);
        assert_eq!(
            f32s_to_bytes(&out),
            f32s_to_bytes(&samples::saxpy_reference(&x, &y)),
            "bit for bit, NaN included"
        );
    }
}

/// Runs `command` to its end off the async threads: exit status, stdout and stderr.
async fn finish(mut command: Command) -> Cli {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Cli::from(output)
}

#[tokio::test]
async fn a_bad_relay_url_is_bad_input_with_a_hint_and_no_backtrace() {
    let cases = [
        ("127.0.0.1:19101", "did you mean http://127.0.0.1:19101?"),
        ("/v1", "give the relay's base URL"),
        (
            "http://127.0.0.1:19101/v1/jobs",
            "such as http://127.0.0.1:19101",
        ),
        ("ftp://relay.example", "must start with http:// or https://"),
    ];
    for (relay, hint) in cases {
        let mut command = glowworm();
        command.env("RUST_BACKTRACE", "1").args([
            "--relay",
            relay,
            "--api-key",
            "gw_x",
            "wait",
            "1",
        ]);
        let cli = finish(command).await;
        cli.assert_failed(2, relay, &[hint]);
        assert_eq!(cli.stderr.lines().count(), 1, "one line: {}", cli.stderr);
        assert!(!cli.stderr.contains("relative URL"), "{}", cli.stderr);
    }
    // A missing key is the user's to fix too; a usage error is clap's 2.
    let mut command = glowworm();
    command.args(["--relay", "http://127.0.0.1:19101", "jobs"]);
    finish(command)
        .await
        .assert_failed(2, "no key", &["--api-key"]);
    let mut command = glowworm();
    command.args(["wait", "seven"]);
    assert_eq!(finish(command).await.code, Some(2));
}

#[tokio::test]
async fn every_subcommand_has_a_description_and_the_exit_statuses_are_in_the_help() {
    let mut command = glowworm();
    command.arg("--help");
    let help = finish(command).await;
    assert_eq!(help.code, Some(0));
    for sub in ["submit", "jobs", "status", "wait", "result", "cancel"] {
        let line = help
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{sub} ")))
            .unwrap_or_else(|| panic!("{sub} not in {}", help.stdout));
        assert!(
            line.len() > sub.len() + 8,
            "{sub} has no description: {line:?}"
        );
    }
    assert!(help.stdout.contains("Exit status"), "{}", help.stdout);
    assert!(!help.stdout.contains('\x1b'), "no colour on a pipe");
}

/// A port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_rides_out_a_relay_that_is_down_for_a_while_and_says_so_in_plain_lines() {
    let served = Served::start().await;
    let a = served.file("a.npy", &npy_matrix(2, 2, &[1.0, 2.0, 3.0, 4.0]));
    let b = served.file("b.npy", &npy_matrix(2, 2, &[1.0, 0.0, 0.0, 1.0]));
    let id = served
        .cli(&[
            "submit",
            "matmul",
            "--a",
            a.to_str().unwrap(),
            "--b",
            b.to_str().unwrap(),
            "--no-wait",
        ])
        .await
        .job_id();

    // The same relay (same database) will come up on a port that refuses connections for now.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = glowworm();
    command
        .args(["--relay", &base, "--api-key", &served.key])
        .args([
            "wait",
            &id.to_string(),
            "--out",
            "c.npy",
            "--retry-for",
            "30",
        ])
        .current_dir(served.files.path());
    let waiting = tokio::spawn(finish(command));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        !waiting.is_finished(),
        "wait gave up on a refused connection"
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let router = served.relay.app.clone();
    let config = served.relay.state.config.clone();
    tokio::spawn(async move {
        glowworm_relay::http::serve::serve(listener, router, &config, std::future::pending()).await;
    });
    assert_eq!(compute_matmul_units(&served.relay).await, 1);
    let cli = waiting.await.unwrap();
    assert_eq!(cli.code, Some(0), "{}\n{}", cli.stdout, cli.stderr);
    assert_eq!(
        cli.stderr.matches("relay unreachable").count(),
        1,
        "one line per outage: {}",
        cli.stderr
    );
    assert!(cli.stderr.contains("relay back"), "{}", cli.stderr);
    assert!(cli.stdout.contains("sha256 verified"), "{}", cli.stdout);
    assert!(served.files.path().join("c.npy").is_file());
    for (name, text) in [("stdout", &cli.stdout), ("stderr", &cli.stderr)] {
        assert!(
            !text.contains('\x1b'),
            "ANSI escapes on a pipe ({name}): {text:?}"
        );
    }

    // A relay that stays away ends the wait after the limit, with how to resume; a refusal by
    // the relay ends it at once.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    served
        .cli_at(&gone, &["wait", &id.to_string(), "--retry-for", "1"])
        .await
        .assert_refused(
            "a relay that stays away",
            &["gave up after 1 s", "resume with"],
        );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let missing = served.cli(&["wait", "999999", "--retry-for", "30"]).await;
    missing.assert_refused("an unknown job", &["404"]);
    assert!(!missing.stderr.contains("retrying"), "{}", missing.stderr);
}

/// Runs the CLI in `dir` against a relay address where nothing listens.
fn cli_offline(dir: &Path, args: &[&str]) -> Cli {
    let base = format!("http://127.0.0.1:{}", free_port());
    let mut command = glowworm();
    command
        .args(["--relay", &base, "--api-key", "gw_test"])
        .args(args)
        .current_dir(dir);
    Cli::from(command.output().unwrap())
}

#[test]
fn matmul_npy_problems_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        name.to_string()
    };
    let a34 = write("a34.npy", &npy_matrix(3, 4, &[1.0; 12]));
    let b52 = write("b52.npy", &npy_matrix(5, 2, &[1.0; 10]));
    let b42 = write("b42.npy", &npy_matrix(4, 2, &[1.0; 8]));
    let f64_data: Vec<u8> = (0..12).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    let a64 = write("a64.npy", &npy_file("<f8", false, "(3, 4)", &f64_data));
    let af = write("af.npy", &npy_file("<f4", true, "(3, 4)", &[0; 48]));
    let flat = write("flat.npy", &npy_file("<f4", false, "(12,)", &[0; 48]));
    let fake = write("fake.npy", b"not numpy at all");
    let raw = write("a.f32", &[0; 40]);
    let matmul = |a: &str, b: &str, extra: &[&str]| {
        let mut args = vec!["submit", "matmul", "--a", a, "--b", b, "--no-wait"];
        args.extend_from_slice(extra);
        cli_offline(dir.path(), &args)
    };
    let cases = [
        (
            matmul(&a34, &b52, &[]),
            "shapes disagree",
            vec!["a34.npy is (3, 4) and b52.npy is (5, 2)", "A's columns"],
        ),
        (
            matmul(&a64, &b42, &[]),
            "float64",
            vec!["a64.npy has dtype float64", "astype(np.float32)"],
        ),
        (
            matmul(&af, &b42, &[]),
            "Fortran order",
            vec!["af.npy is in Fortran", "np.ascontiguousarray(af)"],
        ),
        (
            matmul(&flat, &b42, &[]),
            "one dimension",
            vec!["flat.npy has shape (12,)", "two dimensions"],
        ),
        (
            matmul(&fake, &b42, &[]),
            "not .npy",
            vec!["fake.npy is named .npy but is not a .npy file"],
        ),
        (
            matmul(&raw, &b42, &["--m", "3", "--k", "4", "--n", "2"]),
            "raw size",
            vec!["a.f32 is 40 bytes of raw f32, but (3, 4) needs 48"],
        ),
        (
            matmul(&a34, &b42, &["--m", "3", "--k", "4", "--n", "3"]),
            "declared shape",
            vec!["b42.npy is (4, 2), but --m, --k and --n make it (4, 3)"],
        ),
    ];
    for (cli, what, needles) in cases {
        // Bad input the CLI finds itself: exit status 2.
        cli.assert_failed(2, what, &needles);
        let lines: Vec<_> = cli.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {}", cli.stderr);
        assert!(!cli.stderr.contains("uploading"), "{what}: {}", cli.stderr);
    }
    // The same relay address with good inputs: the request is made, and fails to connect.
    let good = matmul(&a34, &b42, &[]);
    assert_eq!(good.code, Some(1), "{}", good.stderr);
    assert!(good.stderr.contains("uploading"), "{}", good.stderr);
    assert!(
        !good.stderr.contains("a34.npy is") && !good.stderr.contains("b42.npy is"),
        "{}",
        good.stderr
    );
}

/// The SAXPY example (examples/saxpy/: the kernel as a .wgsl file, its spec naming it with
/// `wgsl_file`, raw f32 inputs) runs as examples/README.md says, and its result is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saxpy_example_runs_as_its_readme_says() {
    let served = Served::start().await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/saxpy");
    let arg = |name: &str| example.join(name).to_str().unwrap().to_string();
    let (spec, x_arg, y_arg) = (
        arg("saxpy.json"),
        format!("x={}", arg("x.f32")),
        format!("y={}", arg("y.f32")),
    );
    let submitted = served
        .cli(&[
            "submit",
            "kernel",
            "--spec",
            &spec,
            "--input",
            &x_arg,
            "--input",
            &y_arg,
            "--no-wait",
        ])
        .await;
    let id = submitted.job_id();
    let given = compute_saxpy_units(&served.relay).await;
    assert_eq!(given.len(), 8, "4 units, 2 replicas each");
    served.assert_nobody_struck().await;

    let out = served
        .cli(&["result", &id.to_string(), "--out", "out.npy"])
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let x = bytes_to_f32s(&std::fs::read(example.join("x.f32")).unwrap()).unwrap();
    let y = bytes_to_f32s(&std::fs::read(example.join("y.f32")).unwrap()).unwrap();
    let file = std::fs::read(served.files.path().join("out.npy")).unwrap();
    let array = npy::parse_f32(&file).unwrap();
    assert_eq!(
        bytes_to_f32s(array.data).unwrap(),
        samples::saxpy_reference(&x, &y)
    );
}

#[test]
fn a_spec_names_its_wgsl_inline_or_in_a_file_not_both() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |fields: &str| {
        format!(
            r#"{{{fields} "entry_point": "main", "inputs": [{{"name": "x", "binding": 0}}],
               "output": {{"binding": 1, "bytes": 4}}, "workgroups": [1, 1, 1], "units": 1,
               "replicas": 2}}"#
        )
    };
    std::fs::write(
        dir.path().join("both.json"),
        spec(r#""wgsl": "x", "wgsl_file": "k.wgsl","#),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("missing.json"),
        spec(r#""wgsl_file": "nowhere.wgsl","#),
    )
    .unwrap();
    for (file, needle) in [("both.json", "not both"), ("missing.json", "cannot read")] {
        let cli = cli_offline(
            dir.path(),
            &["submit", "kernel", "--spec", file, "--no-wait"],
        );
        cli.assert_failed(2, file, &[needle]);
    }
}
