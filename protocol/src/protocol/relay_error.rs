//! [`RelayError`]: what went wrong talking to the relay, the same for every client of it.

use crate::wire::ErrorBody;

/// A failed exchange with the relay, whichever HTTP client met it (the page's `fetch`, reqwest
/// in the native worker and the requester CLI, hyper in the benches): no reply, a refusal with the
/// relay's [`ErrorBody`], or a reply that is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Connecting failed, or the connection broke before a reply. `cause` is the innermost error
    /// ("Connection refused (os error 111)").
    #[error("could not reach the relay at {url} ({cause})")]
    Unreachable { url: String, cause: String },
    /// The relay did not answer in time.
    #[error("the relay at {url} did not answer in time")]
    Timeout { url: String },
    /// The exchange failed below HTTP once under way (a reply cut short, say).
    #[error("talking to the relay at {url} failed ({cause})")]
    Broken { url: String, cause: String },
    /// An HTTP error status with the relay's error code and message. `context` says what was
    /// refused, such as "the relay refused the job" or "POST /v1/results".
    #[error("{context} ({status} {code}): {message}")]
    Refused {
        context: String,
        status: u16,
        /// The relay's stable code, such as "bad_npy" or "lease_expired" ("http_error" when the
        /// body was not an [`ErrorBody`]).
        code: String,
        message: String,
    },
    /// A reply that is not the JSON expected, or a request that could not be built.
    #[error("unexpected reply from the relay for {context}: {message}")]
    BadReply { context: String, message: String },
}

impl RelayError {
    /// The error for a reply with HTTP status `status` and body `body`: the code and message of
    /// its [`ErrorBody`], or the body itself when it is not one; an empty message becomes `reason`
    /// (the status's reason phrase, such as "Bad Gateway") when there is one.
    pub fn refused(context: &str, status: u16, body: &str, reason: Option<&str>) -> Self {
        let (code, mut message) = ErrorBody::code_and_message(body);
        if message.trim().is_empty() {
            message = reason.unwrap_or("no message").to_string();
        }
        RelayError::Refused {
            context: context.to_string(),
            status,
            code,
            message,
        }
    }

    /// The relay's error code when this is a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            RelayError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status when this is a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            RelayError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether no reply came at all (unreachable, timed out or broken): the connection may be
    /// worth opening again.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            RelayError::Unreachable { .. } | RelayError::Timeout { .. } | RelayError::Broken { .. }
        )
    }

    /// A failure below HTTP while talking to the relay at `url`, by what `cause` says happened.
    /// `connecting` is true when no connection could be made (even if that timed out),
    /// `timed_out` when the reply did not come in time.
    pub fn transport(url: &str, connecting: bool, timed_out: bool, cause: &str) -> Self {
        let url = url.to_string();
        let cause = cause.to_string();
        if connecting {
            RelayError::Unreachable { url, cause }
        } else if timed_out {
            RelayError::Timeout { url }
        } else {
            RelayError::Broken { url, cause }
        }
    }

    /// A reqwest error met while talking to the relay at `url` (the native worker's and the
    /// requester CLI's client), named by its innermost cause.
    #[cfg(feature = "reqwest")]
    pub fn from_reqwest(url: &str, error: &reqwest::Error) -> Self {
        RelayError::transport(
            url,
            error.is_connect(),
            error.is_timeout(),
            &root_cause(error),
        )
    }
}

/// The innermost error of a chain: the one that says what really happened ("Connection
/// refused (os error 111)") rather than "error sending request".
#[cfg(feature = "reqwest")]
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_show_status_code_and_message() {
        let body = r#"{"error":{"code":"bad_npy","message":"a.npy: not a .npy file"}}"#;
        let err = RelayError::refused("the relay refused the job", 400, body, Some("Bad Request"));
        assert_eq!(
            err.to_string(),
            "the relay refused the job (400 bad_npy): a.npy: not a .npy file"
        );
        assert_eq!((err.code(), err.status()), (Some("bad_npy"), Some(400)));
        assert!(!err.is_transport());
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_as_is() {
        let err = RelayError::refused("could not get job 3", 502, "upstream down", None);
        assert_eq!(
            err.to_string(),
            "could not get job 3 (502 http_error): upstream down"
        );
        let empty = RelayError::refused("could not get job 3", 502, "", Some("Bad Gateway"));
        assert_eq!(
            empty.to_string(),
            "could not get job 3 (502 http_error): Bad Gateway"
        );
    }

    #[test]
    fn transport_failures_name_the_relay() {
        let url = "http://127.0.0.1:9";
        let refused = RelayError::transport(url, true, false, "Connection refused");
        assert_eq!(
            refused.to_string(),
            "could not reach the relay at http://127.0.0.1:9 (Connection refused)"
        );
        assert!(refused.is_transport() && refused.code().is_none());
        let late = RelayError::transport(url, false, true, "timed out");
        assert_eq!(
            late.to_string(),
            "the relay at http://127.0.0.1:9 did not answer in time"
        );
        let broken = RelayError::transport(url, false, false, "connection reset");
        assert!(broken.to_string().starts_with("talking to the relay at"));
    }
}
