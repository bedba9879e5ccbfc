//! Which OData a multipart batch speaks, read from its outer request: the version it names
//! and what it prefers. It decides the reply's status and version header, and whether the
//! batch stops at its first failure.
//!
//! - **OData V2 (and V3)**: the endpoint says so (`BatchLayer::odata_v2`), or the request
//!   names `DataServiceVersion` or `MaxDataServiceVersion` below 4 and no OData 4 version.
//!   Answered `202 Accepted` with `DataServiceVersion`, as SAP Gateway and WCF Data Services
//!   answer (V2 clients such as pyodata take nothing else). Every request runs: V2 has no
//!   rule to stop.
//! - **OData 4.0**: the request names `OData-Version` or `OData-MaxVersion`. The batch stops
//!   at its first failure (a request, or a changeset, that failed), leaving out what follows,
//!   unless it prefers `odata.continue-on-error` (4.01: `continue-on-error`).
//! - **Neither** (Google's batch clients and any other): every request runs, as the layer
//!   has always run them.
//!
//! A stated `continue-on-error` (either spelling; `=false` asks to stop) is applied in each,
//! and the reply names it in `Preference-Applied`.

use crate::batch::prefer;
use http::{HeaderMap, HeaderValue};

/// What the outer request asks of the batch and its reply.
#[derive(Debug, Clone, Default)]
pub(super) struct Dialect {
    /// The `DataServiceVersion` a V2 reply carries; `None` for OData 4 and the others.
    pub(super) v2: Option<HeaderValue>,
    /// Whether the first failure ends the batch.
    pub(super) stop_on_error: bool,
    /// The `Preference-Applied` value, when a preference was applied.
    pub(super) applied: Option<HeaderValue>,
}

const CONTINUE: [&str; 2] = ["odata.continue-on-error", "continue-on-error"];

impl Dialect {
    /// The dialect of a request with `headers` at an endpoint that is V2 when `v2`.
    pub(super) fn of(headers: &HeaderMap, v2: bool) -> Self {
        let odata4 = ["odata-version", "odata-maxversion"]
            .iter()
            .filter_map(|name| major(headers.get(*name)?))
            .any(|major| major >= 4);
        let names_v2 = ["dataserviceversion", "maxdataserviceversion"]
            .iter()
            .filter_map(|name| major(headers.get(*name)?))
            .any(|major| major < 4);
        let v2 = v2 || (names_v2 && !odata4);
        let preference = CONTINUE.iter().find_map(|n| prefer::find(headers, n));
        let stated = preference.and_then(|p| match p.value {
            None => Some(true),
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(_) => None,
        });
        let applied = preference.zip(stated).map(|(p, go_on)| {
            let name = p.name.to_ascii_lowercase();
            let text = if go_on { name } else { format!("{name}=false") };
            HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(CONTINUE[0]))
        });
        Self {
            v2: v2.then(|| version_for(headers)),
            stop_on_error: stated.map_or(odata4 && !v2, |go_on| !go_on),
            applied,
        }
    }
}

/// The major version of `2.0` or `2.0;NetFx`.
fn major(value: &HeaderValue) -> Option<u32> {
    let text = value.to_str().ok()?;
    let number = text.split([';', '.']).next()?.trim();
    number.parse().ok()
}

/// The `DataServiceVersion` of a V2 reply: `2.0`, or `1.0` for a client that takes no more.
fn version_for(headers: &HeaderMap) -> HeaderValue {
    let max = headers.get("maxdataserviceversion").and_then(major);
    HeaderValue::from_static(if max == Some(1) { "1.0" } else { "2.0" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&'static str, &'static str)], v2: bool) -> Dialect {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        Dialect::of(&h, v2)
    }

    #[test]
    fn versions_choose_the_status_and_the_stop_rule() {
        let none = of(&[], false);
        assert!(none.v2.is_none() && !none.stop_on_error && none.applied.is_none());
        let four = of(&[("odata-version", "4.0")], false);
        assert!(four.v2.is_none() && four.stop_on_error);
        let two = of(&[("maxdataserviceversion", "2.0;NetFx")], false);
        assert_eq!(two.v2.unwrap(), "2.0");
        assert!(!two.stop_on_error);
        let one = of(&[("MaxDataServiceVersion", "1.0")], false);
        assert_eq!(one.v2.unwrap(), "1.0");
        let configured = of(&[], true);
        assert_eq!(configured.v2.unwrap(), "2.0");
        // A request naming both is an OData 4 request.
        let both = of(
            &[("dataserviceversion", "2.0"), ("odata-maxversion", "4.0")],
            false,
        );
        assert!(both.v2.is_none() && both.stop_on_error);
        assert!(of(&[("dataserviceversion", "x")], false).v2.is_none());
        // Only a version of 4 or more is OData 4.
        let two = of(&[("odata-version", "2.0")], false);
        assert!(two.v2.is_none() && !two.stop_on_error);
    }

    #[test]
    fn continue_on_error_is_applied_and_named() {
        let four = of(
            &[
                ("odata-version", "4.0"),
                ("prefer", "odata.continue-on-error"),
            ],
            false,
        );
        assert!(!four.stop_on_error);
        assert_eq!(four.applied.unwrap(), "odata.continue-on-error");
        let new = of(
            &[
                ("odata-version", "4.01"),
                ("prefer", "Continue-On-Error=TRUE"),
            ],
            false,
        );
        assert!(!new.stop_on_error);
        assert_eq!(new.applied.unwrap(), "continue-on-error");
        let stop = of(&[("prefer", "continue-on-error=false")], false);
        assert!(stop.stop_on_error);
        assert_eq!(stop.applied.unwrap(), "continue-on-error=false");
        let junk = of(
            &[
                ("odata-version", "4.0"),
                ("prefer", "continue-on-error=maybe"),
            ],
            false,
        );
        assert!(junk.stop_on_error && junk.applied.is_none());
    }
}
