//! Talking to the relay with the browser's `fetch`, from a Web Worker or a page.
//!
//! Hand-written over web-sys rather than gloo-net: it needs only JSON and byte bodies, and calling
//! the global `fetch` works the same in a worker and a window without any feature detection.

use glowworm_protocol::protocol::{RelayError, Transport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

pub struct Relay {
    base: String,
}

impl Relay {
    /// `base` is the relay's origin, such as "https://relay.example"; "" means this page's origin.
    pub fn new(base: String) -> Self {
        Relay {
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, RelayError> {
        let url = format!("{}{}", self.base, path);
        let network = |e: JsValue| RelayError::Unreachable {
            url: url.clone(),
            cause: describe(e),
        };
        let init = RequestInit::new();
        init.set_method(method);
        if let Some(body) = &body {
            init.set_body(&JsValue::from_str(body));
        }
        let request = Request::new_with_str_and_init(&url, &init).map_err(network)?;
        if body.is_some() {
            request
                .headers()
                .set("content-type", "application/json")
                .map_err(network)?;
        }
        // The global `fetch` of whichever scope we run in (worker or window).
        let global = js_sys::global();
        let fetch: js_sys::Function = js_sys::Reflect::get(&global, &"fetch".into())
            .map_err(network)?
            .dyn_into()
            .map_err(network)?;
        let promise: js_sys::Promise = fetch.call1(&global, &request).map_err(network)?.into();
        let response: Response = JsFuture::from(promise).await.map_err(network)?.into();
        if response.ok() {
            return Ok(response);
        }
        let status = response.status();
        let text = match response.text() {
            Ok(p) => JsFuture::from(p)
                .await
                .ok()
                .and_then(|t| t.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let context = format!("the relay refused {method} {path}");
        let reason = response.status_text();
        Err(RelayError::refused(&context, status, &text, Some(&reason)))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        response: Response,
    ) -> Result<T, RelayError> {
        let text = JsFuture::from(response.text().map_err(|e| bad(path, e))?)
            .await
            .map_err(|e| bad(path, e))?
            .as_string()
            .unwrap_or_default();
        serde_json::from_str(&text).map_err(|e| RelayError::BadReply {
            context: path.to_string(),
            message: e.to_string(),
        })
    }
}

impl Transport for Relay {
    type Error = RelayError;

    fn refusal_code(error: &RelayError) -> Option<&str> {
        error.code()
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let response = self.send("GET", path, None).await?;
        self.json(path, response).await
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RelayError> {
        let response = self.send("GET", path, None).await?;
        let buffer = JsFuture::from(response.array_buffer().map_err(|e| bad(path, e))?)
            .await
            .map_err(|e| bad(path, e))?;
        Ok(js_sys::Uint8Array::new(&buffer).to_vec())
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RelayError> {
        let response = self
            .send("POST", path, Some(body_text(path, body)?))
            .await?;
        self.json(path, response).await
    }

    /// Like `post_json`, but a 204 No Content reply is `None`.
    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, RelayError> {
        let response = self
            .send("POST", path, Some(body_text(path, body)?))
            .await?;
        if response.status() == 204 {
            return Ok(None);
        }
        self.json(path, response).await.map(Some)
    }
}

fn body_text<B: Serialize>(path: &str, body: &B) -> Result<String, RelayError> {
    serde_json::to_string(body).map_err(|e| RelayError::BadReply {
        context: path.to_string(),
        message: e.to_string(),
    })
}

fn bad(path: &str, e: JsValue) -> RelayError {
    RelayError::BadReply {
        context: path.to_string(),
        message: describe(e),
    }
}

fn describe(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}
