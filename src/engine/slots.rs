//! [`Slots`]: each item of a running batch, from its plan item to its outcome, and the
//! handing on of outcomes: in request order or as they become final, each once, its body
//! let go once it is written and no reference will read it.

use super::journal::Prior;
use super::Emit;
use crate::batch::id::ItemId;
use crate::batch::outcome::{reply_limit_reached, Outcome};
use crate::batch::plan::{Order, PlanItem};
use crate::batch::summary::Summary;
use crate::trace::ItemTrace;

/// The items of one batch.
pub(super) struct Slots {
    slots: Vec<Slot>,
    order: Order,
    /// Request order: every item before this one has been handed on.
    next: usize,
    /// Completion order: items whose outcome may have become final since the last hand-on.
    touched: Vec<usize>,
    /// Bytes of the bodies recorded and not yet let go (waiting to be written, or for a
    /// reference to read them), at most `max_held`.
    held: usize,
    max_held: usize,
    summary: Summary,
    /// Whether items have spans (their batch has one).
    traced: bool,
    /// The request-id header, when sub-requests carry one: every outcome of an item that
    /// was sent gives back the id it was sent with (unless the service set its own).
    id_header: Option<http::HeaderName>,
    /// What an earlier run of a keyed batch left of each item, until it is replayed
    /// (empty when the batch has no key).
    priors: Vec<Option<Prior>>,
}

/// One item.
struct Slot {
    /// The item, until it is sent.
    item: Option<PlanItem>,
    /// Its id, set once, when the batch was decoded.
    id: ItemId,
    outcome: Option<Outcome>,
    /// How many items not yet prepared have references that may read this one's body.
    /// Once it is written and this is 0, the body is let go: a batch holds the bodies
    /// still to write or to read, not every body it received.
    readers: usize,
    written: bool,
    /// The request id it was sent with, until an outcome takes it.
    request_id: Option<http::HeaderValue>,
    /// Its span, once it has started (when items have spans).
    trace: Option<Box<ItemTrace>>,
}

impl Slots {
    /// The plan's items, with spans when `traced`.
    pub(super) fn new(
        items: Vec<PlanItem>,
        order: Order,
        max_held: usize,
        traced: bool,
        id_header: Option<http::HeaderName>,
    ) -> Self {
        let summary = Summary::new(items.len());
        let slots = items
            .into_iter()
            .map(|mut item| Slot {
                id: std::mem::take(&mut item.id),
                item: Some(item),
                outcome: None,
                readers: 0,
                written: false,
                request_id: None,
                trace: None,
            })
            .collect();
        Self {
            slots,
            order,
            next: 0,
            touched: Vec::new(),
            held: 0,
            max_held,
            summary,
            traced,
            id_header,
            priors: Vec::new(),
        }
    }

    /// What earlier runs of this keyed batch left, per item.
    pub(super) fn set_priors(&mut self, priors: Vec<Option<Prior>>) {
        self.priors = priors;
    }

    pub(super) fn has_prior(&self, i: usize) -> bool {
        self.priors.get(i).is_some_and(Option::is_some)
    }

    pub(super) fn take_prior(&mut self, i: usize) -> Option<Prior> {
        self.priors.get_mut(i)?.take()
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Item `i` has references, which may read item `d`.
    pub(super) fn add_reader(&mut self, d: usize) {
        self.slots[d].readers += 1;
    }

    pub(super) fn has_refs(&self, i: usize) -> bool {
        let item = self.slots[i].item.as_ref();
        item.is_some_and(|item| item.refs.is_some())
    }

    /// Item `i`'s id.
    pub(super) fn id(&self, i: usize) -> &str {
        &self.slots[i].id
    }

    pub(super) fn outcome(&self, i: usize) -> Option<&Outcome> {
        self.slots[i].outcome.as_ref()
    }

    /// Item `i`, to send: taken out of its slot.
    pub(super) fn take_item(&mut self, i: usize) -> Option<PlanItem> {
        self.slots[i].item.take()
    }

    /// Item `i` starts (it may yet turn out not to be sent): its span opens.
    pub(super) fn start_trace(&mut self, i: usize, item: &PlanItem) {
        if self.traced {
            let slot = &mut self.slots[i];
            slot.trace = Some(ItemTrace::start(i, &slot.id, item));
        }
    }

    /// Item `i` is sent with `request_id`: its outcomes will give it back.
    pub(super) fn sent_with(&mut self, i: usize, request_id: http::HeaderValue) {
        self.slots[i].request_id = Some(request_id);
    }

    /// The span item `i`'s call runs in, if items have spans.
    pub(super) fn span(&self, i: usize) -> Option<tracing::Span> {
        self.slots[i].trace.as_ref().map(|t| t.span())
    }

    /// Item `i`'s call returned.
    pub(super) fn call_finished(&mut self, i: usize) {
        if let Some(trace) = &mut self.slots[i].trace {
            trace.finished();
        }
    }

    /// Item `i`, which has references, no longer needs item `d`'s body: once written and
    /// needed by no one else, it is let go.
    pub(super) fn read(&mut self, d: usize) {
        let slot = &mut self.slots[d];
        slot.readers = slot.readers.saturating_sub(1);
        if slot.written && slot.readers == 0 {
            self.held -= release_body(slot);
        }
    }

    /// Stores an item's outcome, and, for an item that was sent, its request id (the one
    /// the outcome it replaces gave, else the one it was sent with), unless the outcome
    /// has one.
    ///
    /// Its body is held until it is written (and read, when a reference may read it): one
    /// that would take the bodies held past `max_response_bytes` is left out at once, as the
    /// reply would leave it out (it counts every body, and more), so that a slow early
    /// item cannot make the batch hold every later body.
    pub(super) fn record(&mut self, i: usize, mut outcome: Outcome) {
        let slot = &mut self.slots[i];
        // Once an outcome has the request id, the outcomes that replace it take it from
        // there.
        if let Some(name) = &self.id_header {
            if !outcome.headers.contains_key(name) {
                let given = slot.outcome.as_ref().and_then(|old| old.headers.get(name));
                if let Some(id) = given.cloned().or_else(|| slot.request_id.take()) {
                    outcome.headers.insert(name.clone(), id);
                }
            }
        }
        if let Some(old) = &slot.outcome {
            self.held -= old.body.len();
        }
        let max = self.max_held;
        if outcome.body.len() > max - self.held.min(max) {
            outcome.body = bytes::Bytes::new();
            outcome.body_omitted = Some(reply_limit_reached(max));
        }
        self.held += outcome.body.len();
        slot.outcome = Some(outcome);
        if self.order == Order::Completion {
            self.touched.push(i);
        }
    }

    /// Items `members` (a group that ended) may be final now.
    pub(super) fn touch(&mut self, members: std::ops::Range<usize>) {
        if self.order == Order::Completion {
            self.touched.extend(members);
        }
    }

    /// Hands on every outcome that is final, in the plan's order: in request order, up to
    /// the first that is not. An outcome is final unless `open(i)` (its group has not ended).
    pub(super) fn emit_final(&mut self, open: impl Fn(usize) -> bool, emit: &mut impl Emit) {
        match self.order {
            Order::Request => {
                while self.next < self.slots.len()
                    && self.slots[self.next].outcome.is_some()
                    && !open(self.next)
                {
                    self.write(self.next, emit);
                    self.next += 1;
                }
            }
            Order::Completion => {
                let mut touched = std::mem::take(&mut self.touched);
                for i in touched.drain(..) {
                    let slot = &self.slots[i];
                    if slot.outcome.is_some() && !slot.written && !open(i) {
                        self.write(i, emit);
                    }
                }
                // Keep the allocation.
                self.touched = touched;
            }
        }
    }

    /// The run is over: hands on the rest in request order, leaving out items that never
    /// ran; what was handed on, counted.
    pub(super) fn emit_rest(mut self, emit: &mut impl Emit) -> Summary {
        for i in 0..self.slots.len() {
            if self.slots[i].outcome.is_some() && !self.slots[i].written {
                self.write(i, emit);
            }
        }
        self.summary
    }

    /// Whether an item has no outcome (it never ran).
    pub(super) fn any_left_out(&self) -> bool {
        self.slots.iter().any(|s| s.outcome.is_none())
    }

    fn write(&mut self, i: usize, emit: &mut impl Emit) {
        let slot = &mut self.slots[i];
        let Some(outcome) = &slot.outcome else {
            return;
        };
        if self.traced {
            ItemTrace::close(slot.trace.take(), i, &slot.id, slot.item.as_ref(), outcome);
        }
        self.summary.count(outcome.status);
        emit.emit(i, &slot.id, outcome);
        slot.written = true;
        if slot.readers == 0 {
            self.held -= release_body(slot);
        }
    }
}

/// Lets go of the body and headers of a written outcome no reference will read (the reply
/// may still share the body); returns the body's size. What stays (id, status) is what
/// later items' `424`s quote.
fn release_body(slot: &mut Slot) -> usize {
    let Some(outcome) = slot.outcome.as_mut() else {
        return 0;
    };
    outcome.headers = http::HeaderMap::new();
    std::mem::take(&mut outcome.body).len()
}
