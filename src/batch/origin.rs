//! The outer request's own origin, and absolute sub-request URLs that name it.
//!
//! Graph SDKs (Python `msgraph-core`) write each sub-request's URL in full:
//! `http://host:port/v1.0/users/1`. Such a URL is taken as its path and query when its
//! scheme and authority are the outer request's own (the `Host` it was sent to); any other
//! scheme, host, port or user information is refused, since a batch only reaches the
//! wrapped service.

use http::request::Parts;
use http::{header, uri::Scheme};

/// Where the outer request was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    /// The scheme, when the request names it (HTTP/2, or an absolute-form request line).
    /// An HTTP/1.1 server behind TLS termination cannot tell, so then `http` and `https`
    /// are both taken.
    scheme: Option<&'a str>,
    /// The authority: `host` or `host:port`.
    authority: &'a str,
}

impl<'a> Origin<'a> {
    /// The origin of the outer request: the authority of its URI (HTTP/2's
    /// `:authority`), or else its `Host` header. `None` when it names neither.
    pub(crate) fn of(parts: &'a Parts) -> Option<Self> {
        let authority = match parts.uri.authority() {
            Some(a) => a.as_str(),
            None => parts.headers.get(header::HOST)?.to_str().ok()?,
        };
        (!authority.is_empty()).then_some(Self {
            scheme: parts.uri.scheme_str(),
            authority,
        })
    }

    /// An origin, for tests and the fuzz targets.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn new(scheme: Option<&'a str>, authority: &'a str) -> Self {
        Self { scheme, authority }
    }

    /// Whether `scheme` and `authority` are this origin's, host letters in any case and
    /// the scheme's default port written or not.
    fn is(&self, scheme: &str, authority: &str) -> bool {
        let scheme_ok = match self.scheme {
            Some(own) => own.eq_ignore_ascii_case(scheme),
            None => {
                scheme.eq_ignore_ascii_case(Scheme::HTTP.as_str())
                    || scheme.eq_ignore_ascii_case(Scheme::HTTPS.as_str())
            }
        };
        if !scheme_ok || authority.contains('@') {
            return false;
        }
        let default = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        let bare = |a: &'a str| a.strip_suffix(default).unwrap_or(a);
        bare(self.authority)
            .eq_ignore_ascii_case(authority.strip_suffix(default).unwrap_or(authority))
    }
}

/// `url`'s path and query when it is an absolute URL of `origin` (`/` when it has no
/// path); `url` itself when it has no scheme and no authority. The reason it is refused
/// otherwise.
pub(crate) fn strip_origin<'u>(
    url: &'u str,
    origin: Option<Origin<'_>>,
) -> Result<&'u str, String> {
    let refused = || {
        "must be a path and query, or an absolute URL of this server (the outer request's scheme and host): a batch only reaches this service"
            .to_string()
    };
    if url.starts_with("//") {
        return Err("must be a path, not a network address (`//host/…`)".into());
    }
    let Some(colon) = scheme_end(url) else {
        return Ok(url);
    };
    let (scheme, rest) = (&url[..colon], &url[colon + 1..]);
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(refused());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match origin {
        Some(origin) if origin.is(scheme, authority) => {
            // `http://host?x` is `/?x` (RFC 3986 §6.2.3); a borrowed slice cannot say that,
            // so a query without a path is refused rather than resolved elsewhere.
            match path.as_bytes().first() {
                None => Ok("/"),
                Some(b'/') => Ok(path),
                _ => Err(
                    "must have a path after its host (`http://host/?x`, not `http://host?x`)"
                        .into(),
                ),
            }
        }
        _ => Err(refused()),
    }
}

/// Where the scheme of `url` ends (its `:`), as RFC 3986 defines a scheme: a letter, then
/// letters, digits, `+`, `-` or `.` (so `a:b` is not a path).
pub(crate) fn scheme_end(url: &str) -> Option<usize> {
    let mut chars = url.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() => {}
        _ => return None,
    }
    for (i, c) in chars {
        match c {
            ':' => return Some(i),
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Option<Origin<'static>> {
        Some(Origin::new(None, "127.0.0.1:3000"))
    }

    #[test]
    fn absolute_urls_of_this_server_become_paths() {
        for (url, path) in [
            ("http://127.0.0.1:3000/v1.0/users/1", "/v1.0/users/1"),
            ("HTTPS://127.0.0.1:3000/users?x=1", "/users?x=1"),
            ("http://127.0.0.1:3000", "/"),
            ("/users/1", "/users/1"),
            ("users/1", "users/1"),
        ] {
            assert_eq!(strip_origin(url, origin()).unwrap(), path, "{url}");
        }
        let plain = Some(Origin::new(None, "Example.com"));
        assert_eq!(
            strip_origin("http://example.COM:80/a", plain).unwrap(),
            "/a"
        );
        assert_eq!(
            strip_origin("https://example.com:443/a", plain).unwrap(),
            "/a"
        );
        let tls = Some(Origin::new(Some("https"), "example.com:443"));
        assert_eq!(strip_origin("https://example.com/a", tls).unwrap(), "/a");
    }

    #[test]
    fn other_origins_are_refused() {
        for url in [
            "http://127.0.0.1:3001/x",
            "http://127.0.0.1/x",
            "http://evil.example/x",
            "http://127.0.0.1:3000@evil.example/x",
            "http://user@127.0.0.1:3000/x",
            "ftp://127.0.0.1:3000/x",
            "http:/x",
            "mailto:a",
            "//127.0.0.1:3000/x",
            "javascript:alert(1)",
            "http://127.0.0.1:3000?a",
        ] {
            assert!(strip_origin(url, origin()).is_err(), "{url} was accepted");
        }
        assert!(strip_origin("http://127.0.0.1:3000/x", None).is_err());
        let tls = Some(Origin::new(Some("https"), "127.0.0.1:3000"));
        assert!(strip_origin("http://127.0.0.1:3000/x", tls).is_err());
        let plain = Some(Origin::new(None, "example.com"));
        assert!(strip_origin("http://example.com:443/a", plain).is_err());
    }
}
