//! HTTP to the relay with reqwest: the native [`Transport`] of `glowworm::protocol`.

use glowworm::protocol::Transport;
use glowworm::wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the relay at {url}: {source}")]
    Network { url: String, source: reqwest::Error },
    #[error("relay answered {status} ({code}) for {path}: {message}")]
    Refused {
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected reply from the relay for {path}: {message}")]
    BadReply { path: String, message: String },
}

/// A relay at a base URL such as "http://127.0.0.1:8787".
#[derive(Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
}

impl RelayClient {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("glowworm-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Network {
                url: base.to_string(),
                source,
            })?;
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
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Network {
                url: url.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let (code, message) = ErrorBody::code_and_message(&text);
        Err(ClientError::Refused {
            path: path.to_string(),
            status,
            code,
            message,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn json<T: DeserializeOwned>(
        response: reqwest::Response,
        path: &str,
    ) -> Result<T, ClientError> {
        let bytes = response.bytes().await.map_err(|e| ClientError::BadReply {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadReply {
            path: path.to_string(),
            message: e.to_string(),
        })
    }
}

impl Transport for RelayClient {
    fn refusal_code(error: &ClientError) -> Option<&str> {
        match error {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    type Error = ClientError;

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.http.get(self.url(path)), path).await?;
        Self::json(response, path).await
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let response = self.send(self.http.get(self.url(path)), path).await?;
        let bytes = response.bytes().await.map_err(|e| ClientError::BadReply {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(bytes.to_vec())
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let response = self
            .send(self.http.post(self.url(path)).json(body), path)
            .await?;
        Self::json(response, path).await
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, ClientError> {
        let response = self
            .send(self.http.post(self.url(path)).json(body), path)
            .await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json(response, path).await.map(Some)
    }
}
