//! How servers behind may read a path, for the checks that compare paths (nested batches,
//! `refuse_path`, `reachable`, a bulk URL under its base): the loose canonical form, and the
//! two readings of a router that splits before decoding and of a server that decodes, then
//! normalises. Only refusals are decided here; no path that is sent is changed.

/// The two ways a server behind may read `path`, for the checks that compare paths
/// (`refuse_path`, `reachable`, a bulk URL under its base): `strict` as a router that
/// splits on `/` before decoding (axum, Express): each segment decoded once, an encoded
/// `/` kept as `%2f`; `loose` as a server that decodes, then normalises: [`canonical`]
/// (`None` when four decodings do not settle it). Both in lower case, without `;x`
/// parameters, without a trailing slash.
#[derive(Debug)]
pub(crate) struct Readings {
    pub(crate) strict: String,
    pub(crate) loose: Option<String>,
    /// Encodings some servers decode in ways of their own (IIS's `%u0061`, overlong UTF-8
    /// such as `%c0%ae`, anything that is not UTF-8 once decoded), or an encoded character
    /// that ends the path for some servers only: no reading is certain. `None` when the
    /// readings above are the only ones.
    pub(crate) ambiguous: Option<Ambiguity>,
}

/// Why a path has no certain reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ambiguity {
    /// `%u0061`: IIS decodes it, others do not.
    PercentU,
    /// Not UTF-8 once decoded (overlong forms such as `%c0%ae` included).
    NotUtf8,
    /// A decoded `?`, `#` or NUL: some servers end the path there, others do not.
    EncodedEnd,
    /// Still percent-encoded after four decodings.
    TooDeep,
}

impl std::fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PercentU => "it holds a `%u` escape, which some servers decode and others do not",
            Self::NotUtf8 => "it is not UTF-8 once decoded, which servers read in different ways",
            Self::EncodedEnd => {
                "it holds an encoded `?`, `#` or NUL (`%3F`, `%23`, `%00`), where some servers end the path and others do not"
            }
            Self::TooDeep => "it is still percent-encoded after four decodings",
        })
    }
}

impl Readings {
    pub(crate) fn of(path: &str) -> Self {
        let mut strict = String::with_capacity(path.len());
        for seg in path.split('/').skip(1) {
            let seg = seg.split(';').next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            strict.push('/');
            strict.push_str(&decoded.to_lowercase().replace('/', "%2f"));
        }
        while strict.ends_with('/') {
            strict.pop();
        }
        let decoded = percent_decode_lower(path);
        // A decoded `?`, `#` or NUL ends the path for some servers and not for others.
        let ambiguous = if path.contains("%u") || path.contains("%U") {
            Some(Ambiguity::PercentU)
        } else if percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .is_err()
        {
            Some(Ambiguity::NotUtf8)
        } else if decoded.as_deref().and_then(cut).is_some() {
            Some(Ambiguity::EncodedEnd)
        } else if decoded.is_none() {
            Some(Ambiguity::TooDeep)
        } else {
            None
        };
        Self {
            strict,
            loose: decoded.as_deref().map(resolve),
            ambiguous,
        }
    }

    /// Whether either reading is `prefix` (in [`canonical`] form) or under it; a path
    /// with no loose reading counts as under everything.
    pub(crate) fn either_under(&self, prefix: &str) -> bool {
        let loose = self.loose.as_deref().is_none_or(|l| is_under(l, prefix));
        loose || is_under(&self.strict, prefix)
    }

    /// Whether both readings are `prefix` or under it.
    pub(crate) fn both_under(&self, prefix: &str) -> bool {
        let loose = self.loose.as_deref().is_some_and(|l| is_under(l, prefix));
        loose && is_under(&self.strict, prefix)
    }
}

/// `path` is `prefix` or under it, segment by segment.
fn is_under(path: &str, prefix: &str) -> bool {
    let rest = path.strip_prefix(prefix);
    rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether every server behind reads `path` as itself but for ASCII letter case: no
/// escapes, backslashes, parameters, streams, empty segments or segments that end in a
/// dot. Its [`canonical`] form is then the path in lower case, and the checks that compare
/// paths need not build it.
/// (One pass over the bytes: it runs for every sub-request URL.)
pub(crate) fn is_plain(path: &str) -> bool {
    let mut prev = 0;
    for &b in path.as_bytes() {
        match b {
            b'%' | b'\\' | b';' | b':' => return false,
            // An empty segment (`//`), or one that ends in a dot (`./`).
            b'/' if matches!(prev, b'/' | b'.') => return false,
            _ => prev = b,
        }
    }
    !matches!(prev, b'/' | b'.')
}

/// The form batch paths (and refused paths) are compared in: percent-encoding decoded
/// (up to four times), letters lowercased, `\` taken as `/`, path parameters (`;x`, which
/// Java servers drop), NTFS streams (`::$DATA`) and trailing dots and spaces (which
/// Windows drops) removed from each segment, dot segments resolved, and empty segments and
/// trailing slashes removed. It only decides what to refuse, and never changes a path that
/// is sent. `None` when the path is still percent-encoded after four decodings.
pub(crate) fn canonical(path: &str) -> Option<String> {
    percent_decode_lower(path).as_deref().map(resolve)
}

/// The part of a decoded path before a decoded `?`, `#` or NUL, if it holds one: where a
/// server that decodes before it splits off the query ends the path.
pub(super) fn cut(decoded: &str) -> Option<&str> {
    decoded.find(['?', '#', '\0']).map(|end| &decoded[..end])
}

/// A decoded path with its segments folded and its dot segments resolved (see
/// [`canonical`]).
pub(super) fn resolve(decoded: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']).map(fold_segment) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            seg => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in segments {
        out.push('/');
        out.push_str(seg);
    }
    out
}

/// A segment as servers that drop its decorations read it: without `;x` parameters, an
/// NTFS stream (`::$DATA`), or trailing dots and spaces (`.` and `..` stay themselves).
fn fold_segment(seg: &str) -> &str {
    let seg = seg.split(';').next().unwrap_or_default();
    let seg = seg.split("::").next().unwrap_or_default();
    match seg {
        "." | ".." => seg,
        _ => seg.trim_end_matches(['.', ' ']),
    }
}

/// Percent-decodes (repeatedly, so `%2562` is caught too) and lowercases; `None` when
/// four decodings leave something still to decode.
pub(super) fn percent_decode_lower(s: &str) -> Option<String> {
    let mut current = s.to_lowercase();
    for _ in 0..=4 {
        if !current.contains('%') {
            return Some(current);
        }
        let next = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .to_lowercase();
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}
