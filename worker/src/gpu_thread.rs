//! The GPU on a thread of its own. wgpu's native readback blocks while the device works, so the
//! device lives on this thread and units reach it through a channel; the async side keeps leasing,
//! fetching and submitting meanwhile.
//!
//! A lost device (a driver reset, a GPU watchdog; wgpu's device-lost callback, `Gpu::lost`) is
//! replaced: the unit it was running fails with `GpuError::DeviceLost` (the runner gives it back
//! as `gpu_failed`, as for any GPU failure), and the thread opens a new adapter and device before
//! it runs the next unit, saying so in the log. When no new device opens, each unit fails (and is
//! given back) until one does.

use glowworm_contributor::gpu::{AdapterSummary, DeviceLoss, Gpu, GpuError};
use glowworm_protocol::protocol::Work;
use glowworm_protocol::wire::KernelSource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

struct Job {
    kernel: Arc<KernelSource>,
    work: Work,
    inputs: Vec<Arc<Vec<u8>>>,
    reply: futures_channel::oneshot::Sender<Result<Vec<u8>, GpuError>>,
}

/// What the GPU thread is asked to do, in order.
enum Message {
    Run(Job),
    /// Destroy the device, as a driver reset would (for tests).
    Destroy,
}

/// A handle to the GPU thread. Dropping it ends the thread and waits for it, so the device is
/// destroyed before the drop returns (never while the process exits: a Vulkan driver tearing a
/// device down then has been seen to corrupt the heap).
pub struct GpuThread {
    /// `None` only while dropping.
    messages: Option<mpsc::Sender<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
    adapter: AdapterSummary,
    /// Devices opened after a loss.
    recoveries: Arc<AtomicU64>,
}

impl Drop for GpuThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it then drops the device.
        drop(self.messages.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl GpuThread {
    /// Opens the default adapter on a new thread; fails if no adapter can be opened.
    pub fn start() -> Result<GpuThread, GpuError> {
        let (messages, inbox) = mpsc::channel::<Message>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let recoveries = Arc::new(AtomicU64::new(0));
        let recovered = recoveries.clone();
        let thread = std::thread::Builder::new()
            .name("glowworm-gpu".into())
            .spawn(move || {
                let gpu = match pollster::block_on(Gpu::new()) {
                    Ok(gpu) => {
                        let _ = ready_tx.send(Ok(gpu.adapter().clone()));
                        gpu
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                serve(gpu, inbox, &recovered);
            })
            .map_err(|e| GpuError::NoAdapter(format!("could not start the GPU thread: {e}")))?;
        let adapter = ready_rx
            .recv()
            .map_err(|_| GpuError::NoAdapter("the GPU thread ended while starting".into()))??;
        Ok(GpuThread {
            messages: Some(messages),
            thread: Some(thread),
            adapter,
            recoveries,
        })
    }

    /// The adapter opened first (a device opened after a loss is normally on the same one).
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// How many times a lost device was replaced by a new one.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::SeqCst)
    }

    /// Runs a unit's work (a matmul or a custom dispatch) on the GPU thread; `inputs` are in the
    /// order [`glowworm_protocol::protocol::work`] lists them. Resolves to the output's bytes.
    pub async fn run_work(
        &self,
        kernel: Arc<KernelSource>,
        work: Work,
        inputs: Vec<Arc<Vec<u8>>>,
    ) -> Result<Vec<u8>, GpuError> {
        let (reply, answer) = futures_channel::oneshot::channel();
        let job = Job {
            kernel,
            work,
            inputs,
            reply,
        };
        self.send(Message::Run(job))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Destroys the device after the units sent before, as a driver reset would; the next unit
    /// runs on a new device. For tests of what happens after a loss.
    pub fn destroy_device(&self) -> Result<(), GpuError> {
        self.send(Message::Destroy)
    }

    fn send(&self, message: Message) -> Result<(), GpuError> {
        self.messages
            .as_ref()
            .ok_or_else(stopped)?
            .send(message)
            .map_err(|_| stopped())
    }
}

fn stopped() -> GpuError {
    GpuError::Readback("the GPU thread has stopped".into())
}

/// The GPU thread's loop: runs each unit on `gpu`, first replacing it if it was lost.
fn serve(mut gpu: Gpu, inbox: mpsc::Receiver<Message>, recoveries: &AtomicU64) {
    for message in inbox {
        let job = match message {
            Message::Run(job) => job,
            Message::Destroy => {
                gpu.destroy();
                continue;
            }
        };
        if let Some(loss) = gpu.lost() {
            match reopen(&loss) {
                Ok(new) => {
                    gpu = new;
                    recoveries.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            }
        }
        let inputs: Vec<&[u8]> = job.inputs.iter().map(|i| i.as_slice()).collect();
        let out = pollster::block_on(gpu.run_work(&job.kernel, &job.work, &inputs));
        let _ = job.reply.send(out);
    }
}

/// A new adapter and device in place of a lost one.
fn reopen(loss: &DeviceLoss) -> Result<Gpu, GpuError> {
    tracing::warn!(
        "the GPU device was lost ({}): {}; opening a new one",
        loss.reason,
        loss.message
    );
    match pollster::block_on(Gpu::new()) {
        Ok(gpu) => {
            tracing::warn!("opened a new GPU device: {}", gpu.adapter().description);
            Ok(gpu)
        }
        Err(e) => {
            tracing::error!("could not open a new GPU device: {e}");
            Err(e)
        }
    }
}
