//! Header names in replies, written as Microsoft Graph and HTTP/1.1 servers write them:
//! each word capitalised (`content-type` → `Content-Type`), with the usual exceptions
//! (`ETag`, `WWW-Authenticate`, `OData-Version`). `http` keeps names in lower case; JSON
//! clients that look a header up by its exact name (the Graph JavaScript SDK reads
//! `Content-Type` to parse a body) find it as they expect. Case-insensitive readers see no
//! difference.

use bytes::BytesMut;

/// The usual spelling of `name` (lower case) when it is not one capital per word, and of
/// the names most responses carry, spelled at once.
fn spelled_at_once(name: &str) -> Option<&'static str> {
    Some(match name {
        "content-type" => "Content-Type",
        "location" => "Location",
        "cache-control" => "Cache-Control",
        "etag" => "ETag",
        "www-authenticate" => "WWW-Authenticate",
        "odata-version" => "OData-Version",
        "odata-maxversion" => "OData-MaxVersion",
        "odata-entityid" => "OData-EntityId",
        "odata-isolation" => "OData-Isolation",
        "content-md5" => "Content-MD5",
        "content-id" => "Content-ID",
        "dnt" => "DNT",
        "te" => "TE",
        "x-xss-protection" => "X-XSS-Protection",
        "x-ua-compatible" => "X-UA-Compatible",
        "x-request-id" => "X-Request-ID",
        _ => return None,
    })
}

/// Appends `name` (lower case, as `http` keeps it) in its usual spelling to `out`: copied
/// whole, then capitalised where it stands (every reply item writes its headers' names).
pub(crate) fn write_name(name: &str, out: &mut BytesMut) {
    if let Some(spelled) = spelled_at_once(name) {
        out.extend_from_slice(spelled.as_bytes());
        return;
    }
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    let mut word_start = true;
    for b in &mut out[start..] {
        if word_start {
            b.make_ascii_uppercase();
        }
        word_start = *b == b'-';
    }
}

/// `name` in its usual spelling.
#[cfg(test)]
pub(crate) fn capitalised(name: &str) -> String {
    let mut out = BytesMut::with_capacity(name.len());
    write_name(name, &mut out);
    // Only ASCII letters changed case.
    String::from_utf8(out.to_vec()).unwrap_or_else(|_| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_servers_write_them() {
        for (name, want) in [
            ("content-type", "Content-Type"),
            ("location", "Location"),
            ("x-custom-thing", "X-Custom-Thing"),
            ("etag", "ETag"),
            ("www-authenticate", "WWW-Authenticate"),
            ("odata-version", "OData-Version"),
            ("set-cookie", "Set-Cookie"),
            ("x-request-id", "X-Request-ID"),
            ("a--b", "A--B"),
            ("-x", "-X"),
            ("cache-control", "Cache-Control"),
        ] {
            assert_eq!(capitalised(name), want);
        }
    }
}
