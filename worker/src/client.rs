//! HTTP to the relay with reqwest: the native [`Transport`] of `glowworm_protocol::protocol`.
//! Its failures are the protocol's [`RelayError`], as the page's and the CLI's are.

use glowworm_protocol::protocol::{RelayError, Transport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A relay at a base URL such as "http://127.0.0.1:8787".
#[derive(Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
}

impl RelayClient {
    pub fn new(base: &str) -> Result<Self, RelayError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("glowworm-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RelayError::from_reqwest(base, &e))?;
        Ok(RelayClient {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, RelayError> {
        let transport = |e: reqwest::Error| RelayError::from_reqwest(&self.base, &e);
        let request = request.build().map_err(transport)?;
        let method = request.method().clone();
        let response = self.http.execute(request).await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let context = format!("the relay refused {method} {path}");
        let text = response.text().await.unwrap_or_default();
        Err(RelayError::refused(
            &context,
            status.as_u16(),
            &text,
            status.canonical_reason(),
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn json<T: DeserializeOwned>(
        response: reqwest::Response,
        path: &str,
    ) -> Result<T, RelayError> {
        let bytes = response.bytes().await.map_err(|e| RelayError::BadReply {
            context: path.to_string(),
            message: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RelayError::BadReply {
            context: path.to_string(),
            message: e.to_string(),
        })
    }
}

impl Transport for RelayClient {
    fn refusal_code(error: &RelayError) -> Option<&str> {
        error.code()
    }

    type Error = RelayError;

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let response = self.send(self.http.get(self.url(path)), path).await?;
        Self::json(response, path).await
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RelayError> {
        let response = self.send(self.http.get(self.url(path)), path).await?;
        let bytes = response.bytes().await.map_err(|e| RelayError::BadReply {
            context: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(bytes.to_vec())
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RelayError> {
        let response = self
            .send(self.http.post(self.url(path)).json(body), path)
            .await?;
        Self::json(response, path).await
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, RelayError> {
        let response = self
            .send(self.http.post(self.url(path)).json(body), path)
            .await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json(response, path).await.map(Some)
    }
}
