//! [`Survey`]: what one pass over a sub-request URL finds, for the checks that follow in
//! `url` (one URL per sub-request: most of its bytes pass a table at one look).

#[cfg(doc)]
use super::readings::is_plain;

/// What one pass over a URL finds, for the checks that follow (a URL per sub-request).
pub(super) struct Survey {
    /// Where its query starts (its first `?`), or its length.
    pub(super) query_at: usize,
    /// It has a `#`.
    pub(super) fragment: bool,
    /// Its path has a `\`.
    pub(super) backslash: bool,
    /// Its path has a `.` or a `%`.
    pub(super) dot_or_percent: bool,
    /// Its query has a space.
    pub(super) spaced: bool,
    /// Its path is one every server reads as itself but for letter case (see
    /// [`is_plain`]); valid once the survey is over.
    pub(super) plain_path: bool,
}

/// What a byte of a URL's path is to the survey: most are ordinary, and pass at one look.
static ORDINARY_PATH_BYTE: [bool; 256] = printable_but(b"?#\\.%;:/");

/// What a byte of its query is: anything printable but a `#`.
static ORDINARY_QUERY_BYTE: [bool; 256] = printable_but(b"#");

/// A table of the printable ASCII bytes (0x21 to 0x7e) but those in `but`.
const fn printable_but(but: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = true;
        b += 1;
    }
    let mut i = 0;
    while i < but.len() {
        table[but[i] as usize] = false;
        i += 1;
    }
    table
}

impl Survey {
    /// Surveys `url`; refuses bytes outside printable ASCII. Graph's own examples hold
    /// literal spaces in queries (`$filter=city eq null`): they are percent-encoded later.
    /// Anywhere else a space is refused, as are controls. (The path and the query each
    /// have a loop of their own: each keeps its state in registers.)
    pub(super) fn of(url: &str) -> Result<Self, String> {
        let bytes = url.as_bytes();
        let (mut fragment, mut backslash, mut dot_or_percent) = (false, false, false);
        let (mut plain_path, mut spaced) = (true, false);
        // Just past the path's last `/`: a `/` there makes an empty segment, and a path
        // that ends there ends in `/`.
        let mut after_slash = usize::MAX;
        let mut query_at = 0;
        while let Some(&b) = bytes.get(query_at) {
            if !ORDINARY_PATH_BYTE[usize::from(b)] {
                match b {
                    b'/' => {
                        plain_path &= query_at != after_slash;
                        after_slash = query_at + 1;
                    }
                    b';' | b':' => plain_path = false,
                    b'?' => break,
                    b'#' => fragment = true,
                    b'\\' => backslash = true,
                    b'.' | b'%' => dot_or_percent = true,
                    refused => return Err(refusal(refused)),
                }
            }
            query_at += 1;
        }
        for &b in &bytes[query_at..] {
            if !ORDINARY_QUERY_BYTE[usize::from(b)] {
                match b {
                    b'#' => fragment = true,
                    b' ' => spaced = true,
                    refused => return Err(refusal(refused)),
                }
            }
        }
        plain_path &= !backslash && !dot_or_percent && after_slash != query_at;
        Ok(Self {
            query_at,
            fragment,
            backslash,
            dot_or_percent,
            spaced,
            plain_path,
        })
    }
}

/// Why a URL may not hold byte `b` (a control, a space in its path, or a byte past ASCII).
/// Apart, and cold: the survey's loop keeps its state in registers.
#[cold]
fn refusal(b: u8) -> String {
    match b {
        b'\r' | b'\n' => "must not contain CR or LF".into(),
        b' ' => "must not contain spaces in its path (percent-encode them as %20)".into(),
        b if b < 0x80 => format!("must not contain control character 0x{b:02x}"),
        _ => "must be ASCII (percent-encode other characters)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::readings::is_plain;

    #[test]
    fn the_path_and_the_query_are_surveyed_each_by_its_rules() {
        let s = Survey::of("/a.b/%41?x=a b?c/d.e\\f;g").unwrap();
        assert_eq!(s.query_at, 8);
        assert!(s.spaced && s.dot_or_percent && !s.backslash && !s.fragment);
        let s = Survey::of("/a\\b#f?q").unwrap();
        assert_eq!(s.query_at, 6);
        assert!(s.backslash && s.fragment && !s.spaced);
        assert!(Survey::of("/a?b#c").unwrap().fragment);
        for (url, why) in [
            ("/a b?c", "spaces in its path"),
            ("/a?b\tc", "control character 0x09"),
            ("/a?b\u{7f}", "control character 0x7f"),
            ("/a\r\n?b", "CR or LF"),
            ("/a?b\n", "CR or LF"),
            ("/é?b", "must be ASCII"),
            ("/a?é", "must be ASCII"),
            // The first refused byte is the one reported.
            ("/a\tb c", "0x09"),
        ] {
            let err = Survey::of(url).err().unwrap_or_default();
            assert!(err.contains(why), "{url:?}: {err}");
        }
    }

    #[test]
    fn a_plain_path_is_one_is_plain_takes() {
        let urls = [
            "/items/5",
            "/Items/5?x=1",
            "/a/b/?x",
            "/",
            "/a//b",
            "/a/b//",
            "/a;x/b",
            "/a:b",
            "/a/b?c//d;e:f",
            "/a%62",
            "/a/./b",
            "/a.",
            "/a\\b",
            "relative/path",
        ];
        for url in urls {
            let survey = Survey::of(url).unwrap();
            let path = &url[..survey.query_at];
            // The survey may leave a plain path to `is_plain` (one with a dot), never the
            // other way round.
            assert!(!survey.plain_path || is_plain(path), "{url}");
            if !path.contains(['.', '%']) && path.starts_with('/') {
                assert_eq!(survey.plain_path, is_plain(path), "{url}");
            }
        }
    }
}
