//! [`Summary`]: how a batch ended, as the engine reports it when its run is over: what a
//! reply's closing line and the batch's span say.

use http::StatusCode;

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The items in the plan.
    pub(crate) requests: usize,
    /// Items reported, by status class: `by_class[0]` counts 1xx, … `by_class[4]` 5xx.
    pub(crate) by_class: [usize; 5],
    /// Why some items were cut short, if any were.
    pub(crate) cut_short: Option<CutShort>,
}

/// Why a batch ended before every item ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutShort {
    /// `batch_timeout` passed: items in flight report `504`, items not started `424`.
    BatchTimeout,
    /// `stop_on_error`: a failure ended the batch, and what had not started is left out.
    StopOnError,
}

impl CutShort {
    /// Its name, as a reply and a span spell it: the option that cut the batch short.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::BatchTimeout => "batch_timeout",
            Self::StopOnError => "stop_on_error",
        }
    }
}

/// The status classes, as `by_class` counts them.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Summary {
    /// A run of `requests` items, none reported yet.
    pub(crate) fn new(requests: usize) -> Self {
        Self {
            requests,
            ..Self::default()
        }
    }

    /// Counts one item reported with `status`.
    #[inline]
    pub(crate) fn count(&mut self, status: StatusCode) {
        // `StatusCode` is 100..=999; classes past 5xx are counted as 5xx.
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class] += 1;
    }

    /// The items reported.
    pub(crate) fn responses(&self) -> usize {
        self.by_class.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class() {
        let mut s = Summary::new(4);
        for status in [200, 201, 424, 599] {
            s.count(StatusCode::from_u16(status).unwrap());
        }
        s.count(StatusCode::from_u16(999).unwrap());
        assert_eq!(s.by_class, [0, 2, 0, 1, 2]);
        assert_eq!(s.responses(), 5);
    }
}
