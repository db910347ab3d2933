//! The relay's requester API over HTTP: one method per endpoint, and errors that say what went
//! wrong in the requester's terms (the file, the relay's URL, the relay's error code).

use crate::bad_input;
use anyhow::{Context, Result, anyhow, bail};
use glowworm_protocol::protocol::RelayError;
pub use glowworm_protocol::relay_url::check_relay_url;
use glowworm_protocol::wire::{JobList, JobStatus};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{RequestBuilder, Response, StatusCode, multipart::Form};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a plain request (not an upload or a download) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A refusal from the relay: `status` with the `ErrorBody` in `body`, for what `context` says
/// was refused ("the relay refused the job"). An empty message becomes the status's reason.
pub fn refusal(context: &str, status: StatusCode, body: &str) -> RelayError {
    RelayError::refused(context, status.as_u16(), body, status.canonical_reason())
}

/// A connection to one relay with one API key.
pub struct Client {
    http: reqwest::Client,
    /// The relay's base URL, without a trailing slash.
    base: String,
    api_key: String,
}

impl Client {
    /// Checks the relay URL and the key (which must be given, by flag or environment).
    /// Both are the user's to fix: their errors are [`BadInput`] (exit status 2).
    pub fn new(relay: &str, api_key: Option<&str>) -> Result<Self> {
        let base = check_relay_url(relay).map_err(|message| bad_input(anyhow!(message)))?;
        let api_key = require_api_key(api_key).map_err(bad_input)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("glowworm/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Client {
            http,
            base,
            api_key,
        })
    }

    /// The relay's base URL, as given.
    pub fn relay(&self) -> &str {
        &self.base
    }

    /// `POST /v1/jobs` with a multipart form; the new job's status.
    pub async fn submit(&self, form: Form) -> Result<JobStatus> {
        let request = self.http.post(self.url("/v1/jobs")).multipart(form);
        let response = self.send(request, "the relay refused the job").await?;
        json(response).await
    }

    /// `GET /v1/jobs`: the key's jobs, newest first.
    pub async fn jobs(&self) -> Result<JobList> {
        let value = self.jobs_json().await?;
        serde_json::from_value(value).context("the relay's job list is not a JobList")
    }

    /// `GET /v1/jobs` as the relay sent it.
    pub async fn jobs_json(&self) -> Result<serde_json::Value> {
        let request = self.http.get(self.url("/v1/jobs")).timeout(REQUEST_TIMEOUT);
        let response = self.send(request, "could not list the jobs").await?;
        json(response).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn status(&self, id: i64) -> Result<JobStatus> {
        let value = self.status_json(id).await?;
        serde_json::from_value(value).context("the relay's job status is not a JobStatus")
    }

    /// `GET /v1/jobs/{id}` as the relay sent it.
    pub async fn status_json(&self, id: i64) -> Result<serde_json::Value> {
        let request = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}")))
            .timeout(REQUEST_TIMEOUT);
        let context = format!("could not get job {id}");
        let response = self.send(request, &context).await?;
        json(response).await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn cancel(&self, id: i64) -> Result<JobStatus> {
        let request = self
            .http
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .timeout(REQUEST_TIMEOUT);
        let context = format!("could not cancel job {id}");
        let response = self.send(request, &context).await?;
        json(response).await
    }

    /// `GET /v1/jobs/{id}/result` into `out`: a .npy file when `out` ends in .npy, else the raw
    /// bytes (f32 for a matmul, the kernel's words for a kernel). Written to `out.part` first
    /// and renamed, so `out` is never half written. Returns the bytes written.
    pub async fn download_result(&self, id: i64, out: &Path) -> Result<u64> {
        let accept = if is_npy_path(out) {
            "application/x-npy"
        } else {
            "application/octet-stream"
        };
        let request = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}/result")))
            .header(ACCEPT, accept);
        let context = format!("could not get the result of job {id}");
        let mut response = self.send(request, &context).await?;

        let partial = partial_path(out);
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut written = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(self.transport_error(err));
                }
            };
            file.write_all(&chunk)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            written += chunk.len() as u64;
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        drop(file);
        std::fs::rename(&partial, out)
            .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
        Ok(written)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` with the key; an error status becomes a [`RelayError`] with `context`.
    async fn send(&self, request: RequestBuilder, context: &str) -> Result<Response> {
        let response = request
            .header(AUTHORIZATION, format!("Bearer {}", self.api_key))
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(refusal(context, status, &body).into())
    }

    /// An error that happened below HTTP (connecting, a timeout, a dropped connection), naming
    /// the relay's URL and the innermost cause.
    fn transport_error(&self, err: reqwest::Error) -> anyhow::Error {
        RelayError::from_reqwest(&self.base, &err).into()
    }
}

/// The key, trimmed; a clear error naming both ways to give it when there is none.
pub fn require_api_key(api_key: Option<&str>) -> Result<String> {
    match api_key.map(str::trim) {
        Some(key) if !key.is_empty() => Ok(key.to_string()),
        _ => bail!(
            "no API key: pass --api-key KEY or set GLOWWORM_API_KEY \
             (the relay's operator creates keys with `glowworm-relay keys create --name NAME`)"
        ),
    }
}

/// Whether a path names a .npy file (by its extension, in any case).
pub fn is_npy_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("npy"))
}

/// `out` with ".part" added to its file name.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    out.with_file_name(name)
}

async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T> {
    let url = response.url().clone();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the reply from {url}"))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the reply from {url} is not the JSON expected"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BadInput;

    #[test]
    fn relay_errors_show_status_code_and_message() {
        let body = r#"{"error":{"code":"bad_npy","message":"a.npy: not a .npy file"}}"#;
        let err = refusal("the relay refused the job", StatusCode::BAD_REQUEST, body);
        assert_eq!(
            err.to_string(),
            "the relay refused the job (400 bad_npy): a.npy: not a .npy file"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_as_is() {
        let err = refusal(
            "could not get job 3",
            StatusCode::BAD_GATEWAY,
            "upstream down",
        );
        assert_eq!(
            err.to_string(),
            "could not get job 3 (502 http_error): upstream down"
        );
        let empty = refusal("could not get job 3", StatusCode::BAD_GATEWAY, "");
        assert!(
            matches!(&empty, RelayError::Refused { message, .. } if message == "Bad Gateway"),
            "{empty}"
        );
    }

    #[test]
    fn a_missing_key_names_the_flag_and_the_variable() {
        for missing in [None, Some(""), Some("  \n")] {
            let message = require_api_key(missing).unwrap_err().to_string();
            assert!(message.contains("--api-key"), "{message}");
            assert!(message.contains("GLOWWORM_API_KEY"), "{message}");
        }
        assert_eq!(require_api_key(Some(" gw_x\n")).unwrap(), "gw_x");
    }

    #[test]
    fn the_relay_url_must_be_http() {
        assert!(Client::new("ftp://relay", Some("gw_x")).is_err());
        assert!(Client::new("not a url", Some("gw_x")).is_err());
        let client = Client::new("http://127.0.0.1:8080/", Some("gw_x")).unwrap();
        assert_eq!(client.relay(), "http://127.0.0.1:8080");
        let behind_a_proxy = Client::new("https://r.example/glowworm/", Some("gw_x")).unwrap();
        assert_eq!(behind_a_proxy.relay(), "https://r.example/glowworm");
    }

    #[test]
    fn a_bad_relay_url_gets_a_hint_and_is_bad_input() {
        let hint = |relay: &str| check_relay_url(relay).unwrap_err();
        assert!(
            hint("127.0.0.1:19101").contains("did you mean http://127.0.0.1:19101?"),
            "{}",
            hint("127.0.0.1:19101")
        );
        assert!(hint("localhost:8787").contains("did you mean http://localhost:8787?"));
        assert!(hint("/v1").contains("base URL"), "{}", hint("/v1"));
        let api = hint("http://127.0.0.1:8787/v1/jobs");
        assert!(api.contains("such as http://127.0.0.1:8787"), "{api}");
        assert!(
            hint("http://").contains("not a valid URL"),
            "{}",
            hint("http://")
        );
        assert!(hint("").contains("--relay"));
        for (relay, key) in [("127.0.0.1:1", Some("gw_x")), ("http://r", None)] {
            let Err(err) = Client::new(relay, key) else {
                panic!("{relay} {key:?} accepted");
            };
            assert!(err.chain().any(|cause| cause.is::<BadInput>()), "{err:#}");
        }
    }

    #[test]
    fn npy_outputs_are_recognized_by_extension() {
        assert!(is_npy_path(Path::new("c.npy")));
        assert!(is_npy_path(Path::new("dir/C.NPY")));
        assert!(!is_npy_path(Path::new("c.bin")));
        assert!(!is_npy_path(Path::new("npy")));
        assert_eq!(
            partial_path(Path::new("d/c.npy")),
            Path::new("d/c.npy.part")
        );
    }

    #[tokio::test]
    async fn an_unreachable_relay_is_named() {
        // A port that was free a moment ago: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let relay = format!("http://{address}");
        let client = Client::new(&relay, Some("gw_x")).unwrap();
        let message = format!("{:#}", client.status(1).await.unwrap_err());
        assert!(
            message.starts_with(&format!("could not reach the relay at {relay}")),
            "{message}"
        );
    }
}
