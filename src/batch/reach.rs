//! Which paths and methods a sub-request may reach at all: paths refused by prefix, and an
//! application's own predicate. Checked last, on the path as it will be sent (after dot
//! segments, `$id` and references); an item refused is answered `403` and not sent.

use super::spelling::{canonical, Readings};
use http::Method;
use std::fmt;
use std::sync::Arc;

/// A predicate over a sub-request's method and final path: `true` lets it through.
pub(crate) type Reachable = Arc<dyn Fn(&Method, &str) -> bool + Send + Sync>;

/// What sub-requests may reach. Empty (everything the URL rules allow) by default.
#[derive(Clone, Default)]
pub(crate) struct Reach {
    /// Refused prefixes, in [`canonical`] form, matched segment by segment.
    refused: Vec<String>,
    reachable: Option<Reachable>,
}

impl fmt::Debug for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reach")
            .field("refused", &self.refused)
            .field("reachable", &self.reachable.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Reach {
    /// Refuses `prefix` and everything under it, in either reading of a path.
    pub(crate) fn refuse(&mut self, prefix: &str) {
        // A prefix that does not settle in four decodings refuses every path (`""`).
        self.refused.push(canonical(prefix).unwrap_or_default());
    }

    /// Lets through only what `predicate` accepts (and what no prefix refuses).
    pub(crate) fn only(&mut self, predicate: Reachable) {
        self.reachable = Some(predicate);
    }

    /// Whether nothing is refused: the hot path then checks nothing.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.refused.is_empty() && self.reachable.is_none()
    }

    /// Why `method path` may not be sent, if it may not. Both checks see both
    /// [`Readings`] of the path: a prefix refuses a path when either reading is under it,
    /// and the predicate must accept both.
    pub(crate) fn refusal(&self, method: &Method, path: &str) -> Option<String> {
        let readings = Readings::of(path);
        if let Some(p) = self.refused.iter().find(|p| readings.either_under(p)) {
            let p = if p.is_empty() { "/" } else { p.as_str() };
            return Some(format!("{path} is under {p}, which batches may not reach"));
        }
        let Some(loose) = readings.loose.as_ref().filter(|_| !readings.ambiguous) else {
            return Some(format!(
                "{path} cannot be read one way only (percent-encoded more than four times over, `%u`, or not UTF-8 once decoded)"
            ));
        };
        let accepts =
            |reachable: &Reachable| reachable(method, loose) && reachable(method, &readings.strict);
        match &self.reachable {
            Some(reachable) if !accepts(reachable) => Some(format!(
                "{method} {path} is not reachable from a batch (the layer's `reachable` rule)"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusing(prefix: &str) -> Reach {
        let mut reach = Reach::default();
        reach.refuse(prefix);
        reach
    }

    #[test]
    fn a_prefix_is_refused_in_every_spelling_a_server_may_fold() {
        let reach = refusing("/admin");
        for path in [
            "/admin",
            "/admin/",
            "/admin/users",
            "/ADMIN/users",
            "/%61dmin",
            "/%2561dmin/x",
            "/admin;jsessionid=1/x",
            "/x/../admin",
            "/admin%2fusers",
            "/admin/users/..%2f..%2fx",
            "/admin./x",
            "/admin%20/x",
            "/admin::$INDEX_ALLOCATION/x",
            "/admin%00/x",
            "/admin%3fx",
            "/%u0061dmin/x",
            "/x/%c0%ae%c0%ae/admin",
            // Read whole, `/admin`; cut at the `?`, `/x`: ambiguous, so refused.
            "/x%3f/..%2fadmin",
            "/users/1%3f/..%2f..%2fadmin",
            "/%252525252561dmin",
        ] {
            assert!(reach.refusal(&Method::GET, path).is_some(), "{path}");
        }
        for path in ["/administrator", "/users/admin", "/", "/adm"] {
            assert_eq!(reach.refusal(&Method::GET, path), None, "{path}");
        }
    }

    #[test]
    fn the_root_refuses_everything() {
        assert!(refusing("/").refusal(&Method::GET, "/").is_some());
        assert!(refusing("/").refusal(&Method::GET, "/x").is_some());
    }

    #[test]
    fn a_predicate_sees_the_method_and_final_path() {
        let mut reach = Reach::default();
        reach.only(Arc::new(|m: &Method, p: &str| {
            m == Method::GET || p.starts_with("/users/")
        }));
        assert!(!reach.is_open());
        assert_eq!(reach.refusal(&Method::GET, "/x"), None);
        assert_eq!(reach.refusal(&Method::POST, "/users/1"), None);
        assert_eq!(reach.refusal(&Method::POST, "/Users/%31"), None);
        let why = reach.refusal(&Method::DELETE, "/orders/1").unwrap();
        assert!(why.contains("DELETE /orders/1"), "{why}");
        // What a server might read as another path is checked as that path.
        assert!(reach.refusal(&Method::POST, "/users/..%2fadmin").is_some());
        assert!(reach
            .refusal(&Method::POST, "/users%2f..%2fadmin")
            .is_some());
        // And a path a router reads elsewhere than a decoding server does, too.
        assert!(reach
            .refusal(&Method::POST, "/orgs/..%2fusers%2f1")
            .is_some());
    }
}
