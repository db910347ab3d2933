//! The relay's base URL as people give it (`--relay`, `GLOWWORM_RELAY`), checked once for every
//! native client (the requesters' CLI and the native worker) with the same hints.

/// Checks `--relay` before anything is sent: the relay's base URL, http or https, without a
/// trailing slash. An address without a scheme gets a hint with one ("did you mean
/// http://127.0.0.1:19101?"), a path or an API URL a hint to give the relay's base URL.
pub fn check_relay_url(relay: &str) -> Result<String, String> {
    const EXAMPLE: &str = "such as http://127.0.0.1:8787";
    let given = relay.trim();
    if given.is_empty() {
        return Err(format!(
            "no relay URL: pass --relay URL or set GLOWWORM_RELAY ({EXAMPLE})"
        ));
    }
    if given.starts_with('/') {
        return Err(format!(
            "the relay URL {relay:?} is a path, not a URL: give the relay's base URL ({EXAMPLE}); \
             the client adds the API's paths itself"
        ));
    }
    if !given.contains("://") {
        return Err(format!(
            "the relay URL {relay:?} has no scheme: did you mean http://{given}?"
        ));
    }
    let url = reqwest::Url::parse(given).map_err(|err| {
        format!("the relay URL {relay:?} is not a valid URL ({err}): give the relay's base URL ({EXAMPLE})")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the relay URL {relay:?} must start with http:// or https://"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the relay URL {relay:?} has a query or a fragment: give the relay's base URL ({EXAMPLE})"
        ));
    }
    let path = url.path().trim_end_matches('/');
    if path == "/v1" || path.ends_with("/v1") || path.contains("/v1/") {
        return Err(format!(
            "the relay URL {relay:?} names an API path: give the relay's base URL, such as {}",
            url.origin().ascii_serialization()
        ));
    }
    Ok(given.trim_end_matches('/').to_string())
}
