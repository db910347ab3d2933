//! Running kernels with wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively (lavapipe on a
//! machine without a GPU). Catalogue matmuls ([`Gpu::run_matmul`], [`Gpu::time_matmul`]) and
//! requesters' custom kernels ([`Gpu::run_dispatch`]) share one path that uploads, binds,
//! dispatches and reads back ([`Gpu::run_work`] runs a leased unit of either kind).
//!
//! [`Gpu`] owns one device and queue and caches compiled pipelines by kernel hash, so each kernel
//! is compiled once per device however many units use it (up to [`MAX_PIPELINES`] kernels: every
//! custom-kernel job brings a new one).
//!
//! A device can be lost (a driver reset, a GPU watchdog, the browser reclaiming the GPU, or
//! [`Gpu::destroy`]). wgpu's device-lost callback records it ([`Gpu::lost`]), and work that fails
//! on a lost device fails with [`GpuError::DeviceLost`], whatever step it failed at. A lost device
//! never comes back: its owner gives back the unit (release reason `gpu_failed`) and opens a new
//! [`Gpu`], as the page's module (`web/`) and the native worker do.

use glowworm_protocol::encoding::f32s_to_bytes;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::protocol::Work;
use glowworm_protocol::wire::{KernelSource, MatmulShape};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use wgpu::util::DeviceExt;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    #[error("kernel {id} did not compile: {message}")]
    Shader { id: String, message: String },
    #[error("GPU rejected the work: {0}")]
    Validation(String),
    #[error("reading the output back failed: {0}")]
    Readback(String),
    #[error("bad unit shape: {0}")]
    Shape(String),
    #[error("bad dispatch: {0}")]
    Dispatch(String),
    /// The device is gone; nothing will run on it again. Open a new [`Gpu`].
    #[error("the GPU device was lost ({}): {}", .0.reason, .0.message)]
    DeviceLost(DeviceLoss),
}

/// Why a device was lost, as wgpu's device-lost callback told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLoss {
    /// `"destroyed"` (the device's `destroy()` was called: by the browser, or by
    /// [`Gpu::destroy`]) or `"unknown"` (anything else: a driver reset, a GPU watchdog...), as
    /// WebGPU's `GPUDeviceLostInfo.reason` says it.
    pub reason: &'static str,
    /// What the driver or browser said, maybe empty.
    pub message: String,
}

/// What the page shows about the adapter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdapterSummary {
    pub vendor: String,
    pub architecture: String,
    pub device: String,
    pub description: String,
    pub backend: String,
}

impl AdapterSummary {
    /// What the relay is told about the adapter with each lease request.
    pub fn class(&self) -> glowworm_protocol::wire::AdapterClass {
        glowworm_protocol::wire::AdapterClass {
            vendor: self.vendor.clone(),
            architecture: self.architecture.clone(),
        }
    }
}

/// One GPU device with its queue and compiled pipelines.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    pipelines: RefCell<HashMap<ContentHash, wgpu::ComputePipeline>>,
    /// Set by the device-lost callback (wgpu may call it from another thread).
    lost: Arc<Mutex<Option<DeviceLoss>>>,
}

impl Gpu {
    /// Opens the default high-performance adapter of every backend this build has.
    pub async fn new() -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let summary = AdapterSummary {
            vendor: if info.vendor == 0 {
                info.driver.clone()
            } else {
                format!("{:#06x}", info.vendor)
            },
            architecture: info.driver_info.clone(),
            device: info.name.clone(),
            description: [
                info.name.as_str(),
                info.driver.as_str(),
                &format!("{:?}", info.backend),
            ]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
            backend: format!("{:?}", info.backend),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("glowworm"),
                required_limits: required_limits(&adapter),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let lost = Arc::new(Mutex::new(None));
        let record = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let reason = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed",
                wgpu::DeviceLostReason::Unknown => "unknown",
            };
            let loss = DeviceLoss { reason, message };
            *record.lock().unwrap_or_else(PoisonError::into_inner) = Some(loss);
        });
        Ok(Gpu {
            device,
            queue,
            summary,
            pipelines: RefCell::new(HashMap::new()),
            lost,
        })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Whether (and why) the device was lost. Once it is, every run fails with
    /// [`GpuError::DeviceLost`].
    pub fn lost(&self) -> Option<DeviceLoss> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Destroys the device, as a browser reclaiming the GPU does, for tests of what happens
    /// after a loss. The device-lost callback fires, and [`Gpu::lost`] says `"destroyed"`: in a
    /// browser soon after, natively at once (wgpu calls it when the device is next polled,
    /// which this does; until then the device would fail work with panics, not errors).
    pub fn destroy(&self) {
        self.device.destroy();
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Compiles `kernel` unless a pipeline for its hash exists already.
    pub async fn prepare(&self, kernel: &KernelSource) -> Result<wgpu::ComputePipeline, GpuError> {
        if let Some(p) = self.pipelines.borrow().get(&kernel.hash) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&kernel.id),
                source: wgpu::ShaderSource::Wgsl(kernel.wgsl.as_str().into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&kernel.id),
                layout: None,
                module: &module,
                entry_point: Some(&kernel.entry_point),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader {
                id: kernel.id.clone(),
                message: err.to_string(),
            });
        }
        let mut pipelines = self.pipelines.borrow_mut();
        if pipelines.len() >= MAX_PIPELINES {
            pipelines.clear();
        }
        pipelines.insert(kernel.hash, pipeline.clone());
        Ok(pipeline)
    }

    /// Runs a matmul kernel: C (m x n) = A (m x k) * B (k x n).
    pub async fn run_matmul(
        &self,
        kernel: &KernelSource,
        a: &[f32],
        b: &[f32],
        shape: MatmulShape,
    ) -> Result<Vec<f32>, GpuError> {
        let (a, b) = (f32s_to_bytes(a), f32s_to_bytes(b));
        let timing = self.matmul(kernel, &a, &b, shape, 0, 0.0).await?;
        f32s(&timing.output)
    }

    /// Times a matmul kernel's dispatches alone, for benchmarks: the inputs are uploaded once, a
    /// first run (compiling the pipeline and warming caches) is read back and returned so the
    /// caller can check it, and then `samples` batches of dispatches are timed, each batch waited
    /// for in full. A batch holds as many dispatches as make it last about `min_sample_ms`
    /// (judged from one untimed dispatch, at most 256), so short dispatches are not drowned by
    /// the cost of submitting and waiting. Transfers are not timed.
    pub async fn time_matmul(
        &self,
        kernel: &KernelSource,
        a: &[f32],
        b: &[f32],
        shape: MatmulShape,
        samples: u32,
        min_sample_ms: f64,
    ) -> Result<MatmulTiming, GpuError> {
        let (a, b) = (f32s_to_bytes(a), f32s_to_bytes(b));
        let timing = self
            .matmul(kernel, &a, &b, shape, samples, min_sample_ms)
            .await?;
        Ok(MatmulTiming {
            output: f32s(&timing.output)?,
            dispatch_ms: timing.dispatch_ms,
            batch: timing.batch,
        })
    }

    /// Runs a leased unit's [`Work`] on `inputs` (the blobs [`glowworm_protocol::protocol::work`] listed,
    /// in its order) and returns the output's bytes, as they are signed and submitted.
    pub async fn run_work(
        &self,
        kernel: &KernelSource,
        work: &Work,
        inputs: &[&[u8]],
    ) -> Result<Vec<u8>, GpuError> {
        match work {
            Work::Matmul(shape) => {
                let [a, b] = inputs else {
                    return Err(GpuError::Shape(format!(
                        "a matmul takes 2 inputs, got {}",
                        inputs.len()
                    )));
                };
                Ok(self.matmul(kernel, a, b, *shape, 0, 0.0).await?.output)
            }
            Work::Dispatch {
                bindings,
                output_binding,
                output_bytes,
                workgroups,
            } => {
                if bindings.len() != inputs.len() {
                    return Err(GpuError::Dispatch(format!(
                        "{} bindings for {} inputs",
                        bindings.len(),
                        inputs.len()
                    )));
                }
                let bound: Vec<(u32, &[u8])> = bindings
                    .iter()
                    .copied()
                    .zip(inputs.iter().copied())
                    .collect();
                self.run_dispatch(kernel, &bound, *output_binding, *output_bytes, *workgroups)
                    .await
            }
        }
    }

    /// Runs a custom kernel once: each input is bound at its binding (group 0) as a read-only
    /// storage buffer, the output as a zeroed read_write storage buffer of `output_bytes` at
    /// `output_binding`, and the kernel is dispatched with `workgroups`. Returns the output's
    /// bytes. WebGPU has no empty buffers: an empty input, or no output, is an error. Inputs are
    /// padded with zeros to whole 4-byte words.
    pub async fn run_dispatch(
        &self,
        kernel: &KernelSource,
        inputs: &[(u32, &[u8])],
        output_binding: u32,
        output_bytes: u64,
        workgroups: [u32; 3],
    ) -> Result<Vec<u8>, GpuError> {
        let buffers: Vec<Input> = inputs
            .iter()
            .map(|&(binding, contents)| Input {
                binding,
                contents,
                uniform: false,
            })
            .collect();
        let output = Output {
            binding: output_binding,
            bytes: output_bytes,
        };
        let timing = self
            .dispatch(kernel, &buffers, output, workgroups, 0, 0.0)
            .await?;
        Ok(timing.output)
    }

    /// [`Gpu::run_matmul`] when `samples` is 0, else [`Gpu::time_matmul`]: one code path, so
    /// the benchmark measures what contributors run and the module carries it once. A, B and C
    /// are at bindings 0, 1 and 2, and the uniform (m, n, k, 0) at binding 3.
    async fn matmul(
        &self,
        kernel: &KernelSource,
        a: &[u8],
        b: &[u8],
        shape: MatmulShape,
        samples: u32,
        min_sample_ms: f64,
    ) -> Result<Timing, GpuError> {
        let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
        if m == 0 || n == 0 || k == 0 || a.len() != 4 * m * k || b.len() != 4 * k * n {
            return Err(GpuError::Shape(format!(
                "A has {} and B {} elements, expected {}x{} and {}x{}",
                a.len() / 4,
                b.len() / 4,
                m,
                k,
                k,
                n
            )));
        }
        let params: Vec<u8> = [shape.m, shape.n, shape.k, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let storage = |binding, contents| Input {
            binding,
            contents,
            uniform: false,
        };
        let inputs = [
            storage(0, a),
            storage(1, b),
            Input {
                binding: 3,
                contents: &params,
                uniform: true,
            },
        ];
        let output = Output {
            binding: 2,
            bytes: shape.output_bytes(),
        };
        let workgroups = [
            shape.n.div_ceil(kernel.tile[0]),
            shape.m.div_ceil(kernel.tile[1]),
            1,
        ];
        self.dispatch(kernel, &inputs, output, workgroups, samples, min_sample_ms)
            .await
    }

    /// Every kernel's one path to the device: uploads `inputs`, binds them and a zeroed output
    /// buffer in group 0, dispatches `workgroups` once and reads the output back. Then, for
    /// benchmarks, times `samples` batches of dispatches (see [`Gpu::time_matmul`]).
    ///
    /// On a lost device it fails with [`GpuError::DeviceLost`]: at once if the loss is known,
    /// and in place of whatever error the work met if the device was lost meanwhile.
    async fn dispatch(
        &self,
        kernel: &KernelSource,
        inputs: &[Input<'_>],
        output: Output,
        workgroups: [u32; 3],
        samples: u32,
        min_sample_ms: f64,
    ) -> Result<Timing, GpuError> {
        if let Some(loss) = self.lost() {
            return Err(GpuError::DeviceLost(loss));
        }
        let result = self
            .dispatch_on_device(kernel, inputs, output, workgroups, samples, min_sample_ms)
            .await;
        match (result, self.lost()) {
            (Err(_), Some(loss)) => Err(GpuError::DeviceLost(loss)),
            (result, _) => result,
        }
    }

    /// [`Gpu::dispatch`] on a device not known to be lost.
    async fn dispatch_on_device(
        &self,
        kernel: &KernelSource,
        inputs: &[Input<'_>],
        output: Output,
        workgroups: [u32; 3],
        samples: u32,
        min_sample_ms: f64,
    ) -> Result<Timing, GpuError> {
        if let Some(empty) = inputs.iter().find(|i| i.contents.is_empty()) {
            return Err(GpuError::Dispatch(format!(
                "the input at binding {} is empty; WebGPU buffers hold at least one 4-byte word",
                empty.binding
            )));
        }
        if output.bytes == 0 {
            return Err(GpuError::Dispatch("the output is empty".into()));
        }
        let pipeline = self.prepare(kernel).await?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);

        let buffers: Vec<wgpu::Buffer> = inputs
            .iter()
            .map(|input| {
                let usage = if input.uniform {
                    wgpu::BufferUsages::UNIFORM
                } else {
                    wgpu::BufferUsages::STORAGE
                };
                // Padded with zeros to whole 4-byte words by wgpu.
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: input.contents,
                        usage,
                    })
            })
            .collect();
        // Buffers and copies come in whole 4-byte words; new buffers are zeroed.
        let out_size = output.bytes.next_multiple_of(4);
        let out_buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output"),
            size: out_size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let entries: Vec<wgpu::BindGroupEntry> = inputs
            .iter()
            .zip(&buffers)
            .map(|(input, buffer)| entry(input.binding, buffer))
            .chain([entry(output.binding, &out_buf)])
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.id),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        // `count` dispatches, then a copy of the first `copy_bytes` of the output to the
        // readback buffer.
        let submit = |count: u32, copy_bytes: u64| {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(&kernel.id),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&kernel.id),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                for _ in 0..count {
                    let [x, y, z] = workgroups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            encoder.copy_buffer_to_buffer(&out_buf, 0, &readback, 0, copy_bytes);
            self.queue.submit([encoder.finish()]);
        };

        submit(1, out_size);
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Validation(err.to_string()));
        }
        self.map(&readback, out_size).await?;
        let bytes = readback
            .get_mapped_range(..output.bytes)
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .to_vec();
        readback.unmap();

        // Timing: each batch ends by copying one word of the output out and mapping it, which
        // completes only once the device has finished the batch. The first, single dispatch
        // sizes the batches.
        let mut dispatch_ms = Vec::with_capacity(samples as usize);
        let mut batch = 1;
        let sizing = if samples > 0 { 1 } else { 0 };
        for sample in 0..sizing + samples {
            let started = now_ms();
            submit(batch, FENCE_BYTES);
            self.map(&readback, FENCE_BYTES).await?;
            readback.unmap();
            let elapsed = now_ms() - started;
            if sample == 0 {
                batch = ((min_sample_ms / elapsed.max(0.001)).ceil() as u32).clamp(1, 256);
            } else {
                dispatch_ms.push(elapsed / batch as f64);
            }
        }
        Ok(Timing {
            output: bytes,
            dispatch_ms,
            batch,
        })
    }

    /// Maps the first `bytes` of `buffer` for reading, which also waits until the device has
    /// finished the copy into it and everything submitted before.
    async fn map(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<(), GpuError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        buffer.map_async(wgpu::MapMode::Read, ..bytes, move |result| {
            let _ = tx.send(result);
        });
        // Natively this drives the callback; on the web it does nothing and the browser does.
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.await
            .map_err(|_| GpuError::Readback("the device dropped the map request".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))
    }
}

/// Compiled pipelines kept; beyond this many kernels the cache starts again.
pub const MAX_PIPELINES: usize = 16;

/// What [`Gpu::time_matmul`] copies out after each timed batch, to learn that it has finished.
const FENCE_BYTES: u64 = 4;

/// A buffer a dispatch reads: read-only storage, or (the matmul kernels' parameters) uniform.
struct Input<'a> {
    binding: u32,
    contents: &'a [u8],
    uniform: bool,
}

/// The read_write storage buffer a dispatch writes and that is read back.
#[derive(Clone, Copy)]
struct Output {
    binding: u32,
    bytes: u64,
}

/// What [`Gpu::dispatch`] read back and measured.
struct Timing {
    output: Vec<u8>,
    dispatch_ms: Vec<f64>,
    batch: u32,
}

/// An f32 output read back.
fn f32s(bytes: &[u8]) -> Result<Vec<f32>, GpuError> {
    glowworm_protocol::encoding::bytes_to_f32s(bytes).map_err(|e| GpuError::Readback(e.to_string()))
}

/// What [`Gpu::time_matmul`] measured.
#[derive(Debug, Clone)]
pub struct MatmulTiming {
    /// C from the untimed first run, for checking against a reference.
    pub output: Vec<f32>,
    /// Wall-clock milliseconds per dispatch, one entry per timed batch.
    pub dispatch_ms: Vec<f64>,
    /// Dispatches per timed batch.
    pub batch: u32,
}

/// Milliseconds on a monotonic clock.
#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    performance_now()
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `performance.now()`, in a window and in a worker alike.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// wgpu's downlevel defaults, raised to WebGPU's defaults (what a browser's device always has,
/// and what [`glowworm_protocol::kernels::custom`] holds kernels to) where the adapter allows: 8 storage
/// buffers per stage and 16 KiB of workgroup memory.
#[cfg(not(target_arch = "wasm32"))]
fn required_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
    let (adapter, webgpu) = (adapter.limits(), wgpu::Limits::default());
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffers_per_shader_stage = adapter
        .max_storage_buffers_per_shader_stage
        .min(webgpu.max_storage_buffers_per_shader_stage);
    limits.max_compute_workgroup_storage_size = adapter
        .max_compute_workgroup_storage_size
        .min(webgpu.max_compute_workgroup_storage_size);
    limits
}

/// In the browser, limits asked for below WebGPU's defaults get the defaults anyway; asking for
/// wgpu's downlevel defaults keeps the adapter's limits out of the module.
#[cfg(target_arch = "wasm32")]
fn required_limits(_adapter: &wgpu::Adapter) -> wgpu::Limits {
    wgpu::Limits::downlevel_defaults()
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}
