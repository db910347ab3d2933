//! `glowworm`: the requester's command-line client. Submits matrix products and custom WGSL
//! kernels to a Glowworm relay, follows their progress while browsers compute them, and fetches
//! the verified results.
//!
//! ```text
//! export GLOWWORM_RELAY=https://relay.example GLOWWORM_API_KEY=gw_...
//! glowworm submit matmul --a a.npy --b b.npy --out c.npy
//! glowworm submit kernel --spec saxpy.json --input x=x.npy --input y=y.bin --out out.npy
//! glowworm jobs
//! ```

mod client;
mod jobs;
mod npy;
mod progress;
mod show;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use client::Client;
use glowworm_protocol::wire::MatmulShape;
use progress::{Outage, Waited};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "glowworm",
    version,
    about = "Submit jobs to a Glowworm relay and fetch their verified results",
    after_help = EXIT_STATUSES
)]
struct Cli {
    /// The relay's base URL, such as https://relay.example.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GLOWWORM_RELAY",
        default_value = "http://127.0.0.1:8787"
    )]
    relay: String,
    /// Your API key (gw_...), from the relay's operator.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GLOWWORM_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Submit a job; by default wait for it and download its result.
    #[command(subcommand)]
    Submit(Submit),
    /// List your jobs, newest first.
    Jobs {
        /// Print the relay's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one job's state and progress.
    Status {
        /// The job's id.
        id: i64,
        /// Print the relay's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Wait for a job to finish, showing its progress; download its result with --out.
    Wait {
        /// The job's id (as `submit` and `jobs` print it).
        id: i64,
        /// Where to write the result: a name ending in .npy gets a NumPy file (float32; shape
        /// (m, n) for a matmul, flat for a kernel), any other name the raw bytes.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// Download a finished job's result.
    Result {
        /// The job's id.
        id: i64,
        /// Where to write the result: a name ending in .npy gets a NumPy file (float32; shape
        /// (m, n) for a matmul, flat for a kernel), any other name the raw bytes.
        #[arg(long)]
        out: PathBuf,
    },
    /// Cancel a job: its remaining units are no longer handed out.
    Cancel {
        /// The job's id.
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
enum Submit {
    /// C = A * B, verified with Freivalds' check.
    Matmul(MatmulArgs),
    /// A custom WGSL compute kernel, verified by replication.
    Kernel(KernelArgs),
}

#[derive(Args, Debug)]
struct MatmulArgs {
    /// A (m x k): a .npy file (f32, C order, 2-D) or raw little-endian f32 with --m/--k/--n.
    /// Every value must be finite, and no row of the product may come near f32's range: the
    /// relay refuses NaN and infinities (non_finite_input) and products that could overflow
    /// (product_overflows; scale the inputs down).
    #[arg(long)]
    a: PathBuf,
    /// B (k x n): a .npy file or raw little-endian f32, finite.
    #[arg(long)]
    b: PathBuf,
    /// Rows of A and C; with --k and --n, required for raw f32 inputs.
    #[arg(long, requires_all = ["k", "n"])]
    m: Option<u32>,
    /// Columns of A, rows of B.
    #[arg(long, requires_all = ["m", "n"])]
    k: Option<u32>,
    /// Columns of B and C.
    #[arg(long, requires_all = ["m", "k"])]
    n: Option<u32>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct KernelArgs {
    /// The kernel spec: JSON with wgsl, inputs, output, workgroups, units, replicas...
    #[arg(long)]
    spec: PathBuf,
    /// An input's file, as NAME=PATH (NAME as in the spec's inputs); one per input. A .npy file
    /// (float32, int32 or uint32, little-endian, C order) is checked and only its data sent;
    /// any file not named .npy (and not starting with NumPy's magic string) is sent as raw
    /// bytes, as is: the 4-byte little-endian words the shader reads.
    #[arg(long = "input", value_name = "NAME=PATH", value_parser = jobs::parse_input_arg)]
    inputs: Vec<(String, PathBuf)>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Where to write the result (default job-ID.npy): a name ending in .npy gets a NumPy file
    /// (float32; shape (m, n) for a matmul, flat for a kernel), any other name the raw bytes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the job's id and return at once instead of waiting.
    #[arg(long, conflicts_with = "out")]
    no_wait: bool,
    #[command(flatten)]
    retry: RetryArgs,
}

#[derive(Args, Debug)]
struct RetryArgs {
    /// While waiting, how long to keep asking a relay that cannot be reached (restarting, say)
    /// before giving up, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "GLOWWORM_RETRY_FOR",
        default_value_t = 60
    )]
    retry_for: u64,
}

impl RetryArgs {
    fn limit(&self) -> Duration {
        Duration::from_secs(self.retry_for)
    }
}

/// Exit status after Ctrl-C (128 + SIGINT), as shells report it.
const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when the relay refused or failed, or the result could not be written.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error or bad input ([`BadInput`]), as clap's own for usage errors.
const EXIT_USAGE: u8 = 2;

/// What the command line says about exit statuses (`glowworm --help`).
const EXIT_STATUSES: &str = "\
Exit status: 0 done; 1 the relay refused or failed (or the result could not be written);
2 usage error or bad input (flags, --relay, the API key, input files); 130 interrupted (Ctrl-C).
Errors are one line on stderr: `glowworm: error: ...`.";

/// An error in what the user gave (flags, the relay's URL, the key, input files), as opposed to
/// one of the relay or the network: exit status 2. Found anywhere in an error's chain.
#[derive(Debug)]
pub struct BadInput(anyhow::Error);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for BadInput {}

/// Marks `err` as the user's to fix (exit status 2).
pub fn bad_input(err: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(BadInput(err))
}

/// The exit status for `err`: 2 for [`BadInput`], 1 otherwise.
fn exit_status(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<BadInput>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            // `{:#}`: the causes joined by ": ", never a backtrace (whatever RUST_BACKTRACE says).
            eprintln!("glowworm: error: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let client = Client::new(&cli.relay, cli.api_key.as_deref())?;
    match cli.command {
        Command::Submit(Submit::Matmul(args)) => {
            let shape = match (args.m, args.k, args.n) {
                (Some(m), Some(k), Some(n)) => Some(MatmulShape { m, n, k }),
                _ => None,
            };
            let upload = jobs::matmul(&args.a, &args.b, shape).map_err(bad_input)?;
            submit(&client, upload, &args.wait).await
        }
        Command::Submit(Submit::Kernel(args)) => {
            let upload = jobs::kernel(&args.spec, &args.inputs).map_err(bad_input)?;
            submit(&client, upload, &args.wait).await
        }
        Command::Jobs { json } => {
            if json {
                print_json(&client.jobs_json().await?)?;
            } else {
                let list = client.jobs().await?;
                if list.jobs.is_empty() {
                    println!("no jobs yet");
                } else {
                    print!("{}", show::jobs_table(&list.jobs, show::now_unix_ms()));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { id, json } => {
            if json {
                print_json(&client.status_json(id).await?)?;
            } else {
                let status = client.status(id).await?;
                print!("{}", show::status_block(&status, show::now_unix_ms()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait { id, out, retry } => {
            if let Some(out) = &out {
                check_out_dir(out)?;
            }
            wait_and_fetch(&client, id, out.as_deref(), retry.limit()).await
        }
        Command::Result { id, out } => {
            let written = client.download_result(id, &out).await?;
            let status = client.status(id).await?;
            let checked = check_hash(&status, &out)?;
            println!(
                "job {id}: result written to {} ({}{checked})",
                out.display(),
                show::bytes(written)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } => {
            let status = client.cancel(id).await?;
            println!(
                "job {id} {}: {}",
                status.state,
                show::progress_line(&status)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Uploads a job, then (unless --no-wait) waits for it and downloads its result.
async fn submit(client: &Client, upload: jobs::Upload, wait: &WaitArgs) -> Result<ExitCode> {
    if let Some(out) = &wait.out {
        check_out_dir(out)?;
    }
    for input in &upload.inputs {
        eprintln!("input {}: {}", input.name, input.describe());
    }
    if let Some(warning) = upload.size_warning() {
        eprintln!("{warning}");
    }
    eprintln!(
        "uploading {} of input to {}",
        show::bytes(upload.input_bytes()),
        client.relay()
    );
    let status = client.submit(upload.into_form()?).await?;
    let id = status.id;
    let what = format!(
        "{}, {} units",
        show::kind_and_shape(&status),
        status.units_total
    );
    if wait.no_wait {
        println!("job {id} submitted: {what}");
        eprintln!("follow it with: glowworm wait {id} --out PATH");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("job {id} submitted: {what}");
    let out = wait
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("job-{id}.npy")));
    wait_and_fetch(client, id, Some(&out), wait.retry.limit()).await
}

/// Waits for job `id` and, with `out`, downloads its result there and prints a summary. After
/// Ctrl-C, or when the relay cannot be asked, says how to resume.
async fn wait_and_fetch(
    client: &Client,
    id: i64,
    out: Option<&Path>,
    retry_for: Duration,
) -> Result<ExitCode> {
    let resume = match out {
        Some(out) => format!("glowworm wait {id} --out {}", out.display()),
        None => format!("glowworm wait {id}"),
    };
    let with_resume_hint = |err: anyhow::Error| {
        anyhow!("{err:#}\njob {id} is still on the relay; resume with: {resume}")
    };
    let started = Instant::now();
    let status = match progress::wait(client, id, retry_for)
        .await
        .map_err(with_resume_hint)?
    {
        Waited::Finished(status) => *status,
        Waited::Interrupted => {
            eprintln!("\ninterrupted: job {id} keeps running on the relay; resume with: {resume}");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    progress::check_finished(&status)?;
    let summary = format!(
        "job {id} done: {}, {}/{} units verified in {:.1} s",
        show::kind_and_shape(&status),
        status.units_verified,
        status.units_total,
        started.elapsed().as_secs_f64()
    );
    let Some(out) = out else {
        println!("{summary}; fetch the result with: glowworm result {id} --out PATH");
        return Ok(ExitCode::SUCCESS);
    };
    let fetch_again = format!("glowworm result {id} --out {}", out.display());
    // Ctrl-C is still caught (tokio keeps its handler once installed): it stops the download.
    let written = tokio::select! {
        written = download_retrying(client, id, out, retry_for) => written
            .map_err(|err| anyhow!("{err:#}\nfetch the result again with: {fetch_again}"))?,
        _ = tokio::signal::ctrl_c() => {
            let _ = std::fs::remove_file(client::partial_path(out));
            eprintln!("\ninterrupted: job {id} is done; fetch its result with: {fetch_again}");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    let checked = check_hash(&status, out)?;
    println!(
        "{summary}; result written to {} ({}{checked})",
        out.display(),
        show::bytes(written)
    );
    Ok(ExitCode::SUCCESS)
}

/// Downloads job `id`'s result to `out`, asking again through an outage of the relay as
/// [`progress::wait`] does (each try writes the file afresh).
async fn download_retrying(
    client: &Client,
    id: i64,
    out: &Path,
    retry_for: Duration,
) -> Result<u64> {
    let mut outage = Outage::new(retry_for);
    let mut say = |line: &str| eprintln!("job {id}: {line}");
    loop {
        match client.download_result(id, out).await {
            Ok(written) => {
                outage.succeeded(&mut say);
                return Ok(written);
            }
            Err(err) => tokio::time::sleep(outage.failed(err, &mut say)?).await,
        }
    }
}

/// Fails before a job is submitted when its result could not be written: `out`'s directory
/// does not exist.
fn check_out_dir(out: &Path) -> Result<()> {
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(bad_input(anyhow!(
            "cannot write the result to {}: {} is not a directory",
            out.display(),
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Compares the downloaded result's data with the job's `output_hash`: ", sha256 verified" when
/// they agree, "" when the relay gave no hash, an error when they differ.
fn check_hash(status: &glowworm_protocol::wire::JobStatus, out: &Path) -> Result<&'static str> {
    let Some(expected) = status.output_hash else {
        return Ok("");
    };
    let actual = npy::result_hash(out, client::is_npy_path(out))
        .map_err(|err| anyhow!("cannot check {}: {err:#}", out.display()))?;
    if actual != expected {
        bail!(
            "the result written to {} does not match job {}'s output hash (expected {expected}, got {actual})",
            out.display(),
            status.id
        );
    }
    Ok(", sha256 verified")
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("glowworm").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_matmul_takes_files_and_an_optional_shape() {
        let cli = parse(&[
            "submit", "matmul", "--a", "a.npy", "--b", "b.npy", "--out", "c.npy",
        ])
        .unwrap();
        let Command::Submit(Submit::Matmul(args)) = cli.command else {
            panic!("not submit matmul: {cli:?}");
        };
        assert_eq!(args.a, Path::new("a.npy"));
        assert_eq!(args.wait.out.as_deref(), Some(Path::new("c.npy")));
        assert!(!args.wait.no_wait);
        assert_eq!((args.m, args.k, args.n), (None, None, None));

        let raw = parse(&[
            "submit", "matmul", "--a", "a.bin", "--b", "b.bin", "--m", "2", "--k", "3", "--n", "4",
        ])
        .unwrap();
        let Command::Submit(Submit::Matmul(args)) = raw.command else {
            panic!("not submit matmul");
        };
        assert_eq!((args.m, args.k, args.n), (Some(2), Some(3), Some(4)));

        // A partial shape, or --no-wait with --out, is a usage error.
        assert!(parse(&["submit", "matmul", "--a", "a", "--b", "b", "--m", "2"]).is_err());
        assert!(
            parse(&[
                "submit",
                "matmul",
                "--a",
                "a",
                "--b",
                "b",
                "--no-wait",
                "--out",
                "c"
            ])
            .is_err()
        );
        assert!(parse(&["submit", "matmul", "--a", "a.npy"]).is_err());
    }

    #[test]
    fn submit_kernel_takes_named_inputs() {
        let cli = parse(&[
            "submit",
            "kernel",
            "--spec",
            "s.json",
            "--input",
            "x=x.bin",
            "--input",
            "y=y.bin",
            "--no-wait",
        ])
        .unwrap();
        let Command::Submit(Submit::Kernel(args)) = cli.command else {
            panic!("not submit kernel");
        };
        assert_eq!(args.inputs.len(), 2);
        assert_eq!(args.inputs[1], ("y".to_string(), PathBuf::from("y.bin")));
        assert!(args.wait.no_wait);
        let err = parse(&["submit", "kernel", "--spec", "s.json", "--input", "x.bin"]).unwrap_err();
        assert!(err.to_string().contains("NAME=PATH"), "{err}");
    }

    #[test]
    fn the_result_needs_an_existing_directory() {
        assert!(check_out_dir(Path::new("c.npy")).is_ok());
        let dir = tempfile::tempdir().unwrap();
        assert!(check_out_dir(&dir.path().join("c.npy")).is_ok());
        let message = check_out_dir(&dir.path().join("nope/c.npy"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("nope"), "{message}");
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&[
            "status",
            "5",
            "--json",
            "--relay",
            "http://r:1",
            "--api-key",
            "gw_k",
        ])
        .unwrap();
        assert_eq!(cli.relay, "http://r:1");
        assert_eq!(cli.api_key.as_deref(), Some("gw_k"));
        assert!(matches!(cli.command, Command::Status { id: 5, json: true }));
        assert!(parse(&["status", "five"]).is_err());
    }
}
