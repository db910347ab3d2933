//! The GPU on a thread of its own. wgpu's native readback blocks while the device works, so the
//! device lives on this thread and units reach it through a channel; the async side keeps leasing,
//! fetching and submitting meanwhile.

use glowworm_contributor::gpu::{AdapterSummary, Gpu, GpuError};
use glowworm_protocol::protocol::Work;
use glowworm_protocol::wire::KernelSource;
use std::sync::{Arc, mpsc};

struct Job {
    kernel: Arc<KernelSource>,
    work: Work,
    inputs: Vec<Arc<Vec<u8>>>,
    reply: futures_channel::oneshot::Sender<Result<Vec<u8>, GpuError>>,
}

/// A handle to the GPU thread. Dropping it ends the thread and waits for it, so the device is
/// destroyed before the drop returns (never while the process exits: a Vulkan driver tearing a
/// device down then has been seen to corrupt the heap).
pub struct GpuThread {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    adapter: AdapterSummary,
}

impl Drop for GpuThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it then drops the device.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl GpuThread {
    /// Opens the default adapter on a new thread; fails if no adapter can be opened.
    pub fn start() -> Result<GpuThread, GpuError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
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
                for job in inbox {
                    let inputs: Vec<&[u8]> = job.inputs.iter().map(|i| i.as_slice()).collect();
                    let out = pollster::block_on(gpu.run_work(&job.kernel, &job.work, &inputs));
                    let _ = job.reply.send(out);
                }
            })
            .map_err(|e| GpuError::NoAdapter(format!("could not start the GPU thread: {e}")))?;
        let adapter = ready_rx
            .recv()
            .map_err(|_| GpuError::NoAdapter("the GPU thread ended while starting".into()))??;
        Ok(GpuThread {
            jobs: Some(jobs),
            thread: Some(thread),
            adapter,
        })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
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
        let gone = || GpuError::Readback("the GPU thread has stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Job {
                kernel,
                work,
                inputs,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
