//! Sub-request URLs: parsing, canonicalisation and the checks every format shares (no
//! scheme or host, no fragment, no nested batch). Pure functions over strings.

use super::origin::{strip_origin, Origin};
use super::readings::{canonical, cut, is_plain, percent_decode_lower, resolve};
use super::survey::Survey;
use http::Uri;
use std::borrow::Cow;
use std::sync::Arc;

/// Every batch path of the layer, in [`canonical`] form: no sub-request may reach one.
/// Cheap to clone; built once, with the layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchPaths(Arc<[String]>);

impl BatchPaths {
    /// These paths and one more.
    pub(crate) fn with(&self, path: &str) -> Self {
        let mut paths = self.0.to_vec();
        paths.extend(canonical(path));
        Self(paths.into())
    }
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded to be one path segment or one query value: all but RFC 3986's
/// unreserved characters are escaped.
pub(crate) fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// What URL checks need to know about the endpoint that received the batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlContext<'a> {
    /// Every batch path of the layer: a sub-request may reach none.
    pub(crate) batch_paths: &'a BatchPaths,
    /// The directory relative URLs resolve against (`/` for `/batch`, `/odata/` for
    /// `/odata/$batch`), with its trailing slash.
    pub(crate) base: &'a str,
    /// Graph's service root (`/v1.0`, no trailing slash), when the endpoint lies under
    /// one: every path not already under it is taken relative to it.
    pub(crate) root: Option<&'a str>,
    /// The outer request's origin, when absolute URLs naming it are taken.
    pub(crate) origin: Option<Origin<'a>>,
}

impl<'a> UrlContext<'a> {
    /// Paths as they are, relative ones resolved against `base`; no service root, and no
    /// absolute URL.
    pub(crate) fn paths(batch_paths: &'a BatchPaths, base: &'a str) -> Self {
        Self {
            batch_paths,
            base,
            root: None,
            origin: None,
        }
    }
}

/// Validates a sub-request URL and turns it into the origin-form URI the wrapped service
/// receives.
///
/// Accepted: an absolute path (`/users?x=1`) or a relative one (`users`), resolved against
/// the batch endpoint's directory as RFC 3986 resolves references; dot segments are
/// removed, decoding `%2e` once and nothing else (`%252e` is the text `%2e`, not a dot).
/// Refused: anything with a scheme or an authority (`http://…`, `//host/…`), a fragment,
/// a `\` in the path, bytes outside printable ASCII (percent-encode them), and every
/// spelling of a batch path (a nested batch). The checks run on the final path, after dot
/// segments are removed: `/.//host` is refused as `//host` would be.
pub(crate) fn parse_url(url: &str, ctx: UrlContext<'_>) -> Result<Uri, String> {
    parse_url_in(url, ctx, None)
}

/// [`parse_url`] for a `url` that may be a slice of `source` (the batch body): a URL that
/// needs no change then becomes a `Uri` over the same bytes, without a copy.
pub(crate) fn parse_url_in(
    url: &str,
    ctx: UrlContext<'_>,
    source: Option<&bytes::Bytes>,
) -> Result<Uri, String> {
    if url.is_empty() {
        return Err("must not be empty".into());
    }
    let mut survey = Survey::of(url)?;
    let whole = url;
    let url = strip_origin(url, ctx.origin)?;
    if !std::ptr::eq(url, whole) {
        survey = Survey::of(url)?;
    }
    if survey.fragment {
        return Err("must not contain a fragment (`#`)".into());
    }
    let (path, query) = url.split_at(survey.query_at);
    if survey.backslash {
        // Many servers read `\` as `/`: `/\host` would become `//host`.
        return Err("must not contain `\\` in its path (percent-encode it as %5C)".into());
    }
    let mut joined;
    let absolute = if path.starts_with('/') {
        path
    } else {
        joined = String::with_capacity(ctx.base.len() + path.len());
        joined.push_str(ctx.base);
        joined.push_str(path);
        &joined
    };
    // A dot segment needs a `.`, or a `%` for `%2e` (the survey saw the path, not the base).
    let path = match survey.dot_or_percent || !path.starts_with('/') {
        true => remove_dot_segments(absolute),
        false => Cow::Borrowed(absolute),
    };
    if path.starts_with("//") {
        return Err(
            "must not resolve to a path that starts with `//` (a network address) once its dot segments are removed".into(),
        );
    }
    let path = under_root(path, ctx.root);
    // The path as surveyed: unchanged, and absolute.
    let surveyed =
        url.starts_with('/') && matches!(path, Cow::Borrowed(p) if p.len() == survey.query_at);
    if is_batch_path(&path, surveyed && survey.plain_path, ctx.batch_paths) {
        return Err("must not address the batch endpoint itself, in any spelling (nor be percent-encoded more than four times over): batches do not nest".into());
    }
    let spaced = survey.spaced;
    let invalid = |e: http::uri::InvalidUri| format!("is not a valid URI path: {e}");
    if let (true, Some(source)) = (surveyed && !spaced, source) {
        if within(url, source) {
            return Uri::from_maybe_shared(source.slice_ref(url.as_bytes())).map_err(invalid);
        }
    }
    let mut pq = path.into_owned();
    if spaced {
        pq.push_str(&query.replace(' ', "%20"));
    } else {
        pq.push_str(query);
    }
    Uri::try_from(pq).map_err(invalid)
}

/// `path` under the service root: kept when it is the root or below it, else the root
/// comes first (`/users/1` → `/v1.0/users/1`). The root is canonical, so the result is
/// too.
fn under_root<'p>(path: Cow<'p, str>, root: Option<&str>) -> Cow<'p, str> {
    let Some(root) = root else { return path };
    let under = path
        .strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if under {
        return path;
    }
    let mut joined = String::with_capacity(root.len() + path.len());
    joined.push_str(root);
    joined.push_str(&path);
    joined.into()
}

/// Whether `s` lies inside `source`'s bytes.
fn within(s: &str, source: &bytes::Bytes) -> bool {
    let (start, base) = (s.as_ptr() as usize, source.as_ptr() as usize);
    start >= base && start + s.len() <= base + source.len()
}

/// RFC 3986 §5.2.4 on an absolute path; borrows when there is nothing to remove.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    // A dot segment needs a `.`, or a `%` for `%2e`.
    if !path.contains(['.', '%']) {
        return path.into();
    }
    if !path.split('/').any(is_dot_segment) {
        return path.into();
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        let single = is_dot(seg);
        let double = is_dot_dot(seg);
        if single || double {
            if double {
                out.pop();
            }
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s.into()
}

/// Whether a path segment is `.` or `..` (RFC 3986 §3.3), each dot literal or `%2e`.
pub(crate) fn is_dot_segment(seg: &str) -> bool {
    is_dot(seg) || is_dot_dot(seg)
}

/// `.`, or `%2e` decoded once: the only percent-encoded dot (RFC 3986 §2.3, §6.2.2.2).
fn is_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

/// `..`: two dots, each literal or `%2e` (`.%2E`, `%2e%2e`). Nothing is decoded twice:
/// `%252e%252e` is the text `%2e%2e`.
fn is_dot_dot(seg: &str) -> bool {
    let dots = |a: usize| match (seg.get(..a), seg.get(a..)) {
        (Some(first), Some(second)) => is_dot(first) && is_dot(second),
        _ => false,
    };
    match seg.len() {
        2 => seg == "..",
        4 => dots(1) || dots(3),
        6 => dots(3),
        _ => false,
    }
}

/// Whether `path` reaches a batch endpoint in any spelling: percent-encoding, repeated
/// or trailing slashes, and letter case (the service behind may be case-insensitive) are
/// all folded before comparing. `plain`: the survey found it [`is_plain`].
fn is_batch_path(path: &str, plain: bool, batch_paths: &BatchPaths) -> bool {
    if plain || is_plain(path) {
        return batch_paths.0.iter().any(|c| c.eq_ignore_ascii_case(path));
    }
    spells_batch_path(path, batch_paths)
}

/// [`is_batch_path`] for a path that is not plain.
fn spells_batch_path(path: &str, batch_paths: &BatchPaths) -> bool {
    // A path still encoded after four decodings is refused: it may spell anything. One
    // whose decoded form holds `?`, `#` or NUL is compared whole and cut there too.
    let Some(decoded) = percent_decode_lower(path) else {
        return true;
    };
    let is_batch = |d: &str| batch_paths.0.contains(&resolve(d));
    is_batch(&decoded) || cut(&decoded).is_some_and(is_batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> UrlContext<'static> {
        static PATHS: std::sync::OnceLock<BatchPaths> = std::sync::OnceLock::new();
        UrlContext::paths(
            PATHS.get_or_init(|| BatchPaths::default().with("/batch")),
            "/",
        )
    }

    #[test]
    fn accepts_paths_and_queries() {
        assert_eq!(
            parse_url("/users?status=active", ctx()).unwrap(),
            "/users?status=active"
        );
        assert_eq!(parse_url("users/1", ctx()).unwrap(), "/users/1");
        assert_eq!(parse_url("/a/./b/../c", ctx()).unwrap(), "/a/c");
        assert_eq!(parse_url("/batches", ctx()).unwrap(), "/batches");
        assert_eq!(parse_url("/x/batch", ctx()).unwrap(), "/x/batch");
    }

    #[test]
    fn refuses_every_spelling_of_the_batch_path() {
        for url in [
            "/batch",
            "/batch?x=1",
            "//batch",
            "/./batch",
            "/%62atch",
            "/x/../batch",
            "/BATCH",
            "/batch/",
            "batch",
            "/%2562atch",
            "/x/%2e%2e/batch",
            "///batch",
            "/\\batch",
        ] {
            assert!(parse_url(url, ctx()).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn refuses_other_hosts_and_junk() {
        for url in [
            "http://evil.example/x",
            "https://x",
            "//evil.example/x",
            "mailto:a",
            "/a b",
            "/a\r\nb",
            "/a#frag",
            "/é",
            "",
            "javascript:alert(1)",
            "/\u{0}",
        ] {
            assert!(parse_url(url, ctx()).is_err(), "{url:?} was accepted");
        }
    }

    #[test]
    fn dots_are_decoded_once() {
        for (url, path) in [
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2E/b", "/b"),
            ("/a/%2E./b", "/b"),
            ("/a/%2e/b", "/a/b"),
            // `%252e` is the text `%2e`: a segment like any other.
            ("/org/5/members/%252e%252e", "/org/5/members/%252e%252e"),
            ("/a/%252e/b", "/a/%252e/b"),
            ("/a/...", "/a/..."),
            ("/a/.%2e%2e", "/a/.%2e%2e"),
        ] {
            assert_eq!(parse_url(url, ctx()).unwrap(), path, "{url}");
        }
        assert!(is_dot_segment("%2E%2e") && is_dot_segment(".") && !is_dot_segment("%252e"));
    }

    #[test]
    fn the_final_path_is_checked() {
        for url in [
            "/.//evil/x",
            "/..//evil/x",
            "/x/..//evil/x",
            "/%2e//evil/x",
            "/./\\evil",
            "/a\\b",
            "x/..//evil",
        ] {
            assert!(parse_url(url, ctx()).is_err(), "{url:?} was accepted");
        }
        // A doubly encoded dot is text for the request, and still refused as a nested
        // batch, since a server behind might decode it twice.
        assert!(parse_url("/x/%252e%252e/batch", ctx()).is_err());
    }

    #[test]
    fn every_spelling_of_a_batch_path_is_refused() {
        for url in [
            "/BATCH",
            "/batch.",
            "/batch..",
            "/batch::$DATA",
            "/api./../batch",
            "/batch%20",
            "/batch;x",
            "/batch%3fx",
            "/x%3f/..%2fbatch",
            "/%62atch",
        ] {
            assert!(parse_url(url, ctx()).is_err(), "{url:?} was accepted");
        }
        for url in ["/batches", "/x/batch", "/files/a.txt", "/a:b", "/users/1"] {
            assert!(parse_url(url, ctx()).is_ok(), "{url:?} was refused");
        }
    }
}
