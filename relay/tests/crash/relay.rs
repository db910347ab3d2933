//! The relay binary as a child process: started on 127.0.0.1:0 with one database, killed with
//! SIGKILL, started again.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The relay's base URL while one is serving (`http://127.0.0.1:PORT`), `None` while it is down.
/// Contributors read it before every request.
pub type Base = Arc<RwLock<Option<String>>>;

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the relay's log kept to show when something goes wrong.
const LOG_TAIL: usize = 60;

/// The relay's settings for the crash test, as `glowworm-relay serve` flags.
pub struct Settings {
    pub database: PathBuf,
    pub www_dir: PathBuf,
    pub lease_seconds: u64,
    pub max_attempts: u32,
    pub unit_size: u32,
}

/// One relay at a time, on the same database across restarts.
pub struct Relay {
    settings: Settings,
    /// The process now running, if any.
    child: Option<Running>,
    pub base: Base,
    /// Every line the relay writes to stderr (its log), across restarts.
    log_lines: UnboundedReceiver<String>,
    log_sender: UnboundedSender<String>,
    /// The last lines of the log, for error messages.
    log_tail: Arc<Mutex<VecDeque<String>>>,
    /// Every ERROR line of the log (there should be none).
    log_errors: Arc<Mutex<Vec<String>>>,
    /// Processes started, and started far enough to serve.
    pub spawned: u32,
    pub served: u32,
}

struct Running {
    child: Child,
    /// The address the process printed, or why it printed none.
    address: Receiver<Result<String, String>>,
}

impl Relay {
    pub fn new(settings: Settings) -> Relay {
        let (log_sender, log_lines) = unbounded_channel();
        Relay {
            settings,
            child: None,
            base: Arc::new(RwLock::new(None)),
            log_lines,
            log_sender,
            log_tail: Arc::new(Mutex::new(VecDeque::new())),
            log_errors: Arc::new(Mutex::new(Vec::new())),
            spawned: 0,
            served: 0,
        }
    }

    /// A command for the relay binary, without the test's own GLOWWORM_* variables.
    fn command() -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_glowworm-relay"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("GLOWWORM_")) {
            command.env_remove(name);
        }
        command
    }

    /// Creates a requester's API key in the database (`glowworm-relay keys create`).
    pub fn create_key(&self, name: &str) -> String {
        let output = Self::command()
            .args(["keys", "create", "--name", name, "--database"])
            .arg(&self.settings.database)
            .env("RUST_LOG", "warn")
            .output()
            .expect("glowworm-relay keys create runs");
        assert!(
            output.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let key = String::from_utf8(output.stdout).unwrap().trim().to_string();
        self.grant(name, 1_000_000_000_000_000);
        key
    }

    /// Grants `credits` to the budget of requester `name` (or `demo`), as an operator does
    /// (`glowworm-relay budget grant`).
    pub fn grant(&self, name: &str, credits: i64) {
        let output = Self::command()
            .args(["budget", "grant", name, &credits.to_string(), "--database"])
            .arg(&self.settings.database)
            .env("RUST_LOG", "warn")
            .output()
            .expect("glowworm-relay budget grant runs");
        assert!(
            output.status.success(),
            "budget grant failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts a relay process; it is serving once [`Relay::wait_serving`] says so.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "one relay at a time");
        let s = &self.settings;
        let mut child = Self::command()
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo"])
            .arg("--database")
            .arg(&s.database)
            .arg("--www-dir")
            .arg(&s.www_dir)
            .args(["--lease-seconds", &s.lease_seconds.to_string()])
            .args(["--max-attempts", &s.max_attempts.to_string()])
            .args(["--unit-size", &s.unit_size.to_string()])
            // Every simulated client is on 127.0.0.1: per-client rate limits would only slow
            // the load down (relay/tests/integration/abuse.rs tests them).
            .args(["--rate-per-address", "0", "--rate-per-key", "0"])
            .args(["--max-connections-per-address", "0"])
            // The widget contributors' partner, registered on their site.
            .args(["--partner-address", crate::load::PARTNER])
            .args(["--embed-origin", "https://blog.example"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the relay binary starts");
        self.spawned += 1;

        // stdout has one line, "Glowworm relay listening on http://ADDRESS".
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (address_sender, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = false;
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if let Some((_, url)) = line.split_once("listening on ") {
                    found = true;
                    let _ = address_sender.send(Ok(url.trim().to_string()));
                }
            }
            if !found {
                let _ = address_sender.send(Err("it exited before it was listening".into()));
            }
        });
        // stderr is the log: read all of it (a full pipe would block the relay).
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (lines, tail) = (self.log_sender.clone(), self.log_tail.clone());
        let errors = self.log_errors.clone();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if line.contains(" ERROR ") {
                    errors.lock().unwrap().push(line.clone());
                }
                {
                    let mut tail = tail.lock().unwrap();
                    if tail.len() == LOG_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                }
                let _ = lines.send(line);
            }
        });
        self.child = Some(Running { child, address });
    }

    /// Waits until the process started last is listening and publishes its address; an error
    /// says why it is not (it exited, or took too long), with the end of its log.
    pub async fn wait_serving(&mut self) -> Result<(), String> {
        let running = self.child.as_mut().expect("a relay was spawned");
        let started = Instant::now();
        let address = loop {
            match running.address.try_recv() {
                Ok(Ok(address)) => break address,
                Ok(Err(why)) => return Err(format!("the relay did not start: {why}")),
                Err(TryRecvError::Disconnected) => {
                    return Err("the relay did not start: its stdout closed".into());
                }
                Err(TryRecvError::Empty) if started.elapsed() > START_TIMEOUT => {
                    return Err(format!("the relay did not start within {START_TIMEOUT:?}"));
                }
                Err(TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        self.served += 1;
        *self.base.write().unwrap() = Some(address);
        Ok(())
    }

    /// Kills the running process with SIGKILL (what `Child::kill` sends on Unix) and reaps it.
    pub fn kill(&mut self) {
        let mut running = self.child.take().expect("a relay is running");
        // The process may have exited on its own already; then there is nothing to kill.
        let _ = running.child.kill();
        running.child.wait().expect("the relay process is reaped");
        *self.base.write().unwrap() = None;
    }

    /// Whether the running process has exited by itself (it never should), with its status.
    pub fn exited(&mut self) -> Option<String> {
        let running = self.child.as_mut()?;
        match running.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Forgets the log lines received so far.
    pub fn skip_log(&mut self) {
        while self.log_lines.try_recv().is_ok() {}
    }

    /// Waits (at most `timeout`) for a log line containing `text`; returns whether one came.
    pub async fn wait_for_log(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.log_lines.recv()).await {
                Ok(Some(line)) if line.contains(text) => return true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// The last lines of the relay's log.
    pub fn log_tail(&self) -> String {
        let tail = self.log_tail.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The ERROR lines the relay has logged.
    pub fn log_errors(&self) -> Vec<String> {
        self.log_errors.lock().unwrap().clone()
    }

    pub fn database(&self) -> &Path {
        &self.settings.database
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut running) = self.child.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}
