//! Origins and domains as browsers and wallets write them: pure checks of text, shared by the
//! settings (`public_origin`, `siwe_domain`, `embed_origins`), partner sites and sign-in. A leaf:
//! it imports nothing of the relay.

use axum::http::uri::Authority;

/// The longest origin accepted.
pub const MAX_ORIGIN_LEN: usize = 256;

/// The origin of a web page, as browsers serialize it: `http` or `https`, the host in lowercase
/// (IDNA as punycode), and the port unless it is the scheme's default; nothing else (no path,
/// query, fragment or user). Errors say what is wrong.
pub fn canonical_origin(text: &str) -> Result<String, String> {
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!("an origin is at most {MAX_ORIGIN_LEN} characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: an origin is http:// or https://"));
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !text.trim_end_matches('/').ends_with(['?', '#'])
        && !text.ends_with("//");
    if !bare || url.host().is_none() {
        return Err(format!(
            "{text:?}: an origin is scheme://host[:port], without path, query or user"
        ));
    }
    // IDNA can make the host longer (punycode): the canonical form must fit too, or the relay
    // would refuse the very origin it stored.
    let canonical = url.origin().ascii_serialization();
    if canonical.len() > MAX_ORIGIN_LEN {
        return Err(format!(
            "{text:?}: its canonical form is {} characters, more than the {MAX_ORIGIN_LEN} accepted",
            canonical.len()
        ));
    }
    Ok(canonical)
}

/// Whether `text` is a domain a message can name: a host or host:port, without user info.
pub fn is_domain(text: &str) -> bool {
    !text.contains('@')
        && text
            .parse::<Authority>()
            .is_ok_and(|authority| !authority.host().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_canonical_or_refused() {
        let ok = |text: &str| canonical_origin(text).unwrap();
        assert_eq!(ok("https://Blog.Example"), "https://blog.example");
        assert_eq!(ok("https://blog.example:443"), "https://blog.example");
        assert_eq!(ok("http://127.0.0.2:8080"), "http://127.0.0.2:8080");
        assert_eq!(ok("https://blog.example/"), "https://blog.example");
        for bad in [
            "",
            "blog.example",
            "ftp://blog.example",
            "https://blog.example/page",
            "https://blog.example?x=1",
            "https://blog.example#top",
            "https://user@blog.example",
            "javascript:alert(1)",
            "null",
            "data:text/html,hi",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad:?} is refused");
        }
        assert!(canonical_origin(&format!("https://{}.example", "a".repeat(300))).is_err());
    }

    #[test]
    fn a_canonical_origin_is_itself_accepted() {
        // Found by the `protocol` fuzz target: 255 characters, but 260 once the host is punycode
        // ("https://xn--aaa…-…"); the relay stored an origin it would refuse.
        let long = format!("https://{}\u{e9}\u{e9}", "a".repeat(243));
        assert!(long.len() <= MAX_ORIGIN_LEN);
        assert!(canonical_origin(&long).is_err());
        let idna = canonical_origin("https://b\u{fc}cher.example").unwrap();
        assert_eq!(idna, "https://xn--bcher-kva.example");
        assert_eq!(canonical_origin(&idna), Ok(idna.clone()));
    }

    #[test]
    fn domains_are_hosts_with_an_optional_port() {
        for ok in [
            "relay.example",
            "localhost:8787",
            "127.0.0.1:80",
            "[::1]:8787",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "https://relay.example",
            "user@relay.example",
            "relay.example/x",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
