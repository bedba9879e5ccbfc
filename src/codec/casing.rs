//! Header names in replies, written as Microsoft Graph and HTTP/1.1 servers write them:
//! each word capitalised (`content-type` → `Content-Type`), with the usual exceptions
//! (`ETag`, `WWW-Authenticate`, `OData-Version`). `http` keeps names in lower case; JSON
//! clients that look a header up by its exact name (the Graph JavaScript SDK reads
//! `Content-Type` to parse a body) find it as they expect. Case-insensitive readers see no
//! difference.

/// Names whose usual spelling is not one capital per word.
const EXCEPTIONS: [&str; 13] = [
    "ETag",
    "WWW-Authenticate",
    "OData-Version",
    "OData-MaxVersion",
    "OData-EntityId",
    "OData-Isolation",
    "Content-MD5",
    "Content-ID",
    "DNT",
    "TE",
    "X-XSS-Protection",
    "X-UA-Compatible",
    "X-Request-ID",
];

/// Appends `name` (lower case, as `http` keeps it) in its usual spelling to `out`.
pub(crate) fn write_name(name: &str, out: &mut impl Extend<u8>) {
    if let Some(spelled) = EXCEPTIONS
        .iter()
        .find(|e| e.len() == name.len() && e.eq_ignore_ascii_case(name))
    {
        out.extend(spelled.bytes());
        return;
    }
    let mut word_start = true;
    out.extend(name.bytes().map(|b| {
        let c = if word_start {
            b.to_ascii_uppercase()
        } else {
            b
        };
        word_start = b == b'-';
        c
    }));
}

/// `name` in its usual spelling.
#[cfg(test)]
pub(crate) fn spelled(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    write_name(name, &mut out);
    // Only ASCII letters changed case.
    String::from_utf8(out).unwrap_or_else(|_| name.to_string())
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
        ] {
            assert_eq!(spelled(name), want);
        }
    }
}
