//! Which paths and methods a sub-request may reach at all: paths refused by prefix, and an
//! application's own predicate. Checked last, on the path as it will be sent (after dot
//! segments, `$id` and references); an item refused is answered `403` and not sent.

use super::readings::{canonical, is_plain, Readings};
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

    /// Why `method path` may not be sent, if it may not: it leaves `root` (the service
    /// root of the batch's endpoint, when it has one), or a refused prefix or the predicate
    /// keeps it. Every check sees both [`Readings`] of the path, made once: a path leaves
    /// the root when either reading is outside it, a prefix refuses a path when either
    /// reading is under it, and the predicate must accept both.
    #[inline]
    pub(crate) fn refusal(
        &self,
        method: &Method,
        path: &str,
        root: Option<&str>,
    ) -> Option<String> {
        if root.is_none() && self.is_open() {
            return None;
        }
        self.check(method, path, root)
    }

    fn check(&self, method: &Method, path: &str, root: Option<&str>) -> Option<String> {
        // `path` starts with the root as written: a plain one is read as itself.
        let root = root.filter(|_| !is_plain(path));
        if root.is_none() && self.is_open() {
            return None;
        }
        let readings = Readings::of(path);
        if let Some(why) = root.and_then(|root| outside_root(root, path, &readings)) {
            return Some(why);
        }
        if self.is_open() {
            return None;
        }
        if let Some(p) = self.refused.iter().find(|p| readings.either_under(p)) {
            let p = if p.is_empty() { "/" } else { p.as_str() };
            return Some(format!("{path} is under {p}, which batches may not reach"));
        }
        if let Some(why) = readings.ambiguous {
            return Some(format!("{path} cannot be read one way only: {why}"));
        }
        // Without a loose reading the path is ambiguous (`TooDeep`), refused above.
        let Some(loose) = readings.loose.as_ref() else {
            return Some(format!("{path} cannot be read one way only"));
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

/// Why `path`, which starts with the service root `root` as written and has `readings`,
/// may not be sent: a server behind that decodes before it resolves dot segments reads it
/// outside the root (`/v1.0/..%2f..%2fx` is `/x`), or no one reading of it is certain.
fn outside_root(root: &str, path: &str, readings: &Readings) -> Option<String> {
    let root_lower = root.to_ascii_lowercase();
    if let Some(why) = readings.ambiguous {
        return Some(format!(
            "{path} cannot be read one way only, so it may be outside the service root {root}: {why}"
        ));
    }
    match readings.both_under(&root_lower) {
        true => None,
        false => Some(format!(
            "{path} is outside the service root {root} when decoded before its dot segments are resolved, and batches under {root} stay under it"
        )),
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
            assert!(reach.refusal(&Method::GET, path, None).is_some(), "{path}");
        }
        for path in ["/administrator", "/users/admin", "/", "/adm"] {
            assert_eq!(reach.refusal(&Method::GET, path, None), None, "{path}");
        }
    }

    #[test]
    fn a_path_stays_under_the_service_root_in_both_readings() {
        let open = Reach::default();
        let leaves_root = |root, path| open.refusal(&Method::GET, path, Some(root));
        for path in [
            "/v1.0/..%2f..%2fx",
            "/v1.0/users/..%2F..%2F..%2Fadmin",
            "/v1.0/%2e%2e%2fadmin",
            "/v1.0/%252e%252e%252fadmin",
            "/v1.0/x%3f/..%2f..%2fadmin",
            "/v1.0/%u002e%u002e/x",
        ] {
            assert!(leaves_root("/v1.0", path).is_some(), "{path}");
        }
        for path in [
            "/v1.0",
            "/v1.0/users/1",
            "/V1.0/users",
            "/v1.0/users/a%2fb",
            "/v1.0/users/..%2fgroups",
            "/v1.0/a;x/b",
        ] {
            assert_eq!(leaves_root("/v1.0", path), None, "{path}");
        }
    }

    #[test]
    fn an_ambiguous_path_is_refused_with_its_own_reason() {
        let reach = refusing("/admin");
        let why = |path| reach.refusal(&Method::GET, path, None).unwrap();
        assert!(why("/users/1%3fx").contains("encoded `?`, `#` or NUL"));
        assert!(why("/users/%u0031").contains("`%u` escape"));
        assert!(why("/users/%c0%ae").contains("not UTF-8"));
    }

    #[test]
    fn the_root_refuses_everything() {
        assert!(refusing("/").refusal(&Method::GET, "/", None).is_some());
        assert!(refusing("/").refusal(&Method::GET, "/x", None).is_some());
    }

    #[test]
    fn a_predicate_sees_the_method_and_final_path() {
        let mut reach = Reach::default();
        reach.only(Arc::new(|m: &Method, p: &str| {
            m == Method::GET || p.starts_with("/users/")
        }));
        assert!(!reach.is_open());
        assert_eq!(reach.refusal(&Method::GET, "/x", None), None);
        assert_eq!(reach.refusal(&Method::POST, "/users/1", None), None);
        assert_eq!(reach.refusal(&Method::POST, "/Users/%31", None), None);
        let why = reach.refusal(&Method::DELETE, "/orders/1", None).unwrap();
        assert!(why.contains("DELETE /orders/1"), "{why}");
        // What a server might read as another path is checked as that path.
        assert!(reach
            .refusal(&Method::POST, "/users/..%2fadmin", None)
            .is_some());
        assert!(reach
            .refusal(&Method::POST, "/users%2f..%2fadmin", None)
            .is_some());
        // And a path a router reads elsewhere than a decoding server does, too.
        assert!(reach
            .refusal(&Method::POST, "/orgs/..%2fusers%2f1", None)
            .is_some());
    }
}
