//! [`Survey`]: what one pass over a sub-request URL finds, for the checks that follow in
//! `url` (one URL per sub-request: most of its bytes pass a table at one look).

#[cfg(doc)]
use super::spelling::is_plain;

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

/// What a URL byte is to the survey: most bytes are ordinary, and pass at one look.
static ORDINARY_URL_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(
            b as u8,
            b'?' | b'#' | b'\\' | b'.' | b'%' | b';' | b':' | b'/'
        );
        b += 1;
    }
    table
};

impl Survey {
    /// Surveys `url`; refuses bytes outside printable ASCII. Graph's own examples hold
    /// literal spaces in queries (`$filter=city eq null`): they are percent-encoded later.
    /// Anywhere else a space is refused, as are controls.
    pub(super) fn of(url: &str) -> Result<Self, String> {
        let mut survey = Self {
            query_at: url.len(),
            fragment: false,
            backslash: false,
            dot_or_percent: false,
            spaced: false,
            plain_path: true,
        };
        let mut in_query = false;
        // Just past the path's last `/`: a `/` there makes an empty segment, and a path
        // that ends there ends in `/`.
        let mut after_slash = usize::MAX;
        for (i, b) in url.bytes().enumerate() {
            if ORDINARY_URL_BYTE[usize::from(b)] {
                continue;
            }
            match b {
                b'/' if !in_query => {
                    survey.plain_path &= i != after_slash;
                    after_slash = i + 1;
                }
                b';' | b':' if !in_query => survey.plain_path = false,
                b'?' if !in_query => {
                    in_query = true;
                    survey.query_at = i;
                }
                b' ' if in_query => survey.spaced = true,
                b'#' => survey.fragment = true,
                b'\\' if !in_query => survey.backslash = true,
                b'.' | b'%' if !in_query => survey.dot_or_percent = true,
                0x21..0x7f => {}
                b'\r' | b'\n' => return Err("must not contain CR or LF".into()),
                b' ' => {
                    return Err(
                        "must not contain spaces in its path (percent-encode them as %20)".into(),
                    )
                }
                b if b < 0x80 => {
                    return Err(format!("must not contain control character 0x{b:02x}"))
                }
                _ => return Err("must be ASCII (percent-encode other characters)".into()),
            }
        }
        survey.plain_path &=
            !survey.backslash && !survey.dot_or_percent && after_slash != survey.query_at;
        Ok(survey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::spelling::is_plain;

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
