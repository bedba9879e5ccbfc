//! How far a job has gone, as its status monitor answers while it runs: counted by its
//! run as it goes ([`Tally`]: a poll of a job this instance runs reads no store), or read
//! from its record's entries (a job another instance runs), without decoding its request
//! or its outcomes' bodies.

use crate::idempotency::Progressing;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use std::sync::Mutex;

/// Where a job is, as its monitor tells it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobState {
    /// Its run goes on.
    Running,
    /// A `DELETE` came, and its run knows it: nothing new starts.
    Cancelling,
    /// Its run has ended (cancelled or not: its reply says).
    Finished,
    /// The instance that ran it stopped, and its lease has passed.
    Failed,
}

impl JobState {
    /// Whether its run goes on (its monitor gives its progress, not its reply).
    pub(crate) fn runs(self) -> bool {
        matches!(self, Self::Running | Self::Cancelling)
    }
}

/// A job's progress document (`application/json`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Progress {
    /// The job's id.
    pub(crate) id: String,
    /// `running`, or `cancelling` (a `DELETE` came; nothing new starts). Once a job has
    /// ended, its monitor gives its reply instead; a job sent again under its
    /// `Idempotency-Key` is `finished` then.
    pub(crate) state: JobState,
    /// The sub-requests of its current phase (`null` until the first is sent).
    pub(crate) requests: Option<usize>,
    /// Those of them that have a final outcome.
    pub(crate) responses: usize,
    /// Their statuses by class.
    pub(crate) status_classes: Classes,
}

/// Counts by status class, as the NDJSON reply's last line gives them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Classes {
    #[serde(rename = "1xx")]
    informational: usize,
    #[serde(rename = "2xx")]
    success: usize,
    #[serde(rename = "3xx")]
    redirection: usize,
    #[serde(rename = "4xx")]
    client_error: usize,
    #[serde(rename = "5xx")]
    server_error: usize,
}

/// The last phase a run's entries speak of (`{phase}.…`).
fn last_phase(entries: &[(String, Bytes)]) -> usize {
    let phase_of = |name: &str| name.split('.').next()?.parse::<usize>().ok();
    entries
        .iter()
        .filter_map(|(n, _)| phase_of(n))
        .max()
        .unwrap_or(0)
}

impl Classes {
    fn add(&mut self, status: u16) {
        match status / 100 {
            1 => self.informational += 1,
            2 => self.success += 1,
            3 => self.redirection += 1,
            4 => self.client_error += 1,
            _ => self.server_error += 1,
        }
    }
}

/// A running job's progress, as its run counts it.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counted: Mutex<Counted>,
}

#[derive(Debug, Default)]
struct Counted {
    phase: usize,
    requests: Option<usize>,
    responses: usize,
    classes: Classes,
}

impl Tally {
    /// Starts from what a run that stopped left (a job taken over).
    pub(crate) fn resume(&self, entries: &[(String, Bytes)]) {
        let left = Progress::of("", JobState::Running, entries);
        *self.lock() = Counted {
            phase: last_phase(entries),
            requests: left.requests,
            responses: left.responses,
            classes: left.status_classes,
        };
    }

    /// Job `id`'s progress now.
    pub(crate) fn progress(&self, id: &str, state: JobState) -> Progress {
        let counted = self.lock();
        Progress {
            id: id.to_owned(),
            state,
            requests: counted.requests,
            responses: counted.responses,
            status_classes: counted.classes.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progressing for Tally {
    fn phase(&self, phase: usize, items: usize) {
        let mut counted = self.lock();
        // Phases only go on; a resumed run goes through those it resumes from, whose
        // replayed outcomes it does not report again.
        if phase > counted.phase || (phase == counted.phase && counted.requests.is_none()) {
            *counted = Counted {
                phase,
                requests: Some(items),
                ..Counted::default()
            };
        }
    }

    fn finished(&self, phase: usize, status: StatusCode) {
        let mut counted = self.lock();
        if phase == counted.phase {
            counted.responses += 1;
            counted.classes.add(status.as_u16());
        }
    }
}

impl Progress {
    /// Job `id`'s progress from its record's `entries` (a run writes `{phase}.n`, the size
    /// of each phase, and `{phase}.o.{index}`, each final outcome; the last phase counts).
    pub(crate) fn of(id: &str, state: JobState, entries: &[(String, Bytes)]) -> Self {
        let last = last_phase(entries);
        let mut progress = Progress {
            id: id.to_owned(),
            state,
            requests: None,
            responses: 0,
            status_classes: Classes::default(),
        };
        let prefix = format!("{last}.");
        // An outcome written twice (its write's answer was lost, and it went again) counts
        // once.
        let mut counted = std::collections::HashSet::new();
        for (name, value) in entries {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if rest == "n" {
                progress.requests = std::str::from_utf8(value).ok().and_then(|n| n.parse().ok());
            } else if let Some(index) = rest.strip_prefix("o.") {
                if counted.insert(index) {
                    progress.responses += 1;
                    // A stored outcome starts with its status (`idempotency::record`).
                    let status = value
                        .get(..2)
                        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
                    progress.status_classes.add(status);
                }
            }
        }
        progress
    }

    /// As JSON.
    pub(crate) fn to_bytes(&self) -> Bytes {
        serde_json::to_vec(self).map_or_else(|_| Bytes::new(), Bytes::from)
    }
}

/// The progress document's JSON Schema (for `BatchLayer::openapi`).
pub(crate) fn schema() -> serde_json::Value {
    let count = serde_json::json!({"type": "integer", "minimum": 0});
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| (c.to_owned(), count.clone()));
    serde_json::json!({
        "type": "object",
        "required": ["id", "state", "requests", "responses", "statusClasses"],
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["running", "cancelling", "finished"]},
            "requests": {"type": ["integer", "null"], "minimum": 0},
            "responses": count,
            "statusClasses": {
                "type": "object",
                "properties": serde_json::Map::from_iter(classes)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::outcome::Outcome;
    use crate::idempotency::record;
    use http::StatusCode;

    #[test]
    fn progress_counts_the_last_phase_by_status_class() {
        let outcome = |s: u16| {
            record::encode(&Outcome::problem(
                StatusCode::from_u16(s).unwrap(),
                "t",
                "d".into(),
            ))
        };
        let entries = vec![
            ("job.request".to_owned(), Bytes::from_static(b"x")),
            ("0.n".to_owned(), Bytes::from_static(b"1")),
            ("0.s.0".to_owned(), Bytes::new()),
            ("0.o.0".to_owned(), outcome(200)),
            ("1.n".to_owned(), Bytes::from_static(b"3")),
            ("1.s.0".to_owned(), Bytes::new()),
            ("1.o.0".to_owned(), outcome(204)),
            ("1.o.1".to_owned(), outcome(404)),
            ("1.o.1".to_owned(), outcome(404)),
        ];
        let p = Progress::of("abc", JobState::Running, &entries);
        assert_eq!((p.requests, p.responses), (Some(3), 2));
        let json: serde_json::Value = serde_json::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(json["statusClasses"]["2xx"], 1);
        assert_eq!(json["statusClasses"]["4xx"], 1);
        assert_eq!(json["state"], "running");
        let empty = Progress::of("abc", JobState::Running, &[]);
        assert_eq!((empty.requests, empty.responses), (None, 0));
        // A run resumed in phase 1 goes through phase 0 again without counting it.
        let tally = Tally::default();
        tally.resume(&entries);
        tally.phase(0, 1);
        tally.finished(0, StatusCode::OK);
        tally.phase(1, 3);
        tally.finished(1, StatusCode::CREATED);
        let p = tally.progress("abc", JobState::Running);
        assert_eq!((p.requests, p.responses), (Some(3), 3));
    }
}
