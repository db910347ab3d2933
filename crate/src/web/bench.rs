//! Benchmark exports for `www/bench.html`, driven by `tests/bench/browser.mjs`: run a matmul
//! kernel on this browser's WebGPU adapter, with no relay, and time its dispatches
//! ([`Gpu::time_matmul`]: inputs resident, warm-up excluded). The page checks the product.
//!
//! Only in the module built with the `bench` feature (`www/pkg-bench/`, by `cargo xtask build`),
//! not in the one contributors download.

use crate::gpu::Gpu;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::MatmulShape;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Each timed batch of dispatches lasts at least about this long.
const MIN_SAMPLE_MS: f64 = 50.0;

thread_local! {
    /// One device for every benchmark call of this page.
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
}

/// Times `kernelId` ('tiled' or 'naive') on C (m x n) = A (m x k) * B (k x n), in `reps` timed
/// batches of dispatches. Resolves to `{kernel, ms, batch, c}`: the kernel's id, milliseconds
/// per dispatch for each batch (a Float64Array), dispatches per batch, and C from the untimed
/// first run (a Float32Array) for the caller to check.
#[wasm_bindgen(js_name = benchMatmul)]
pub async fn bench_matmul(
    kernel_id: String,
    a: Vec<f32>,
    b: Vec<f32>,
    m: u32,
    n: u32,
    k: u32,
    reps: u32,
) -> Result<JsValue, JsError> {
    let kernel = match kernel_id.as_str() {
        "tiled" => matmul::TILED,
        "naive" => matmul::NAIVE,
        _ => return Err(JsError::new("unknown kernel: use 'tiled' or 'naive'")),
    };
    let gpu = match GPU.with(|g| g.borrow().clone()) {
        Some(gpu) => gpu,
        None => {
            let gpu = Rc::new(Gpu::new().await?);
            GPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
            gpu
        }
    };
    let timing = gpu
        .time_matmul(
            &kernel.source(),
            &a,
            &b,
            MatmulShape { m, n, k },
            reps.max(1),
            MIN_SAMPLE_MS,
        )
        .await?;

    // A plain object built by hand: serde here would cost the module more bytes.
    let report = js_sys::Object::new();
    // Setting a property of a fresh plain object cannot fail.
    let set = |key: &str, value: JsValue| {
        let _ = js_sys::Reflect::set(&report, &key.into(), &value);
    };
    set("kernel", kernel.id.into());
    set(
        "ms",
        js_sys::Float64Array::from(&timing.dispatch_ms[..]).into(),
    );
    set("batch", timing.batch.into());
    set("c", js_sys::Float32Array::from(&timing.output[..]).into());
    Ok(report.into())
}
