//! A reply written while its batch runs: [`Writing`], shared by the run (its [`Sink`]
//! writes outcomes) and the body ([`ReplyStream`] takes what is written), each waking the
//! other; and what the task that carries the run does after it (`finish`): wait for the
//! reader to take the rest, within its [`Pace`], or cut the reply.

use super::pace::Pace;
use crate::batch::outcome::Outcome;
use crate::codec::{Reply, ReplyWriter};
use crate::engine::Emit;
use bytes::Bytes;
use futures_util::Stream;
use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

/// The bytes a streamed reply may hold, written and not yet taken by its body, before its
/// run starts nothing new. (The body holds what it took until the connection takes it, and
/// the connection buffers some too: the bound is this plus what those hold.) A batch keeps
/// its place while more than this waits.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// How long after the body's last bytes it waits for more before taking what is there.
const LINGER: Duration = Duration::from_millis(1);

/// What the body takes at once, however recently it last did. Below [`HIGH_WATER`], so a
/// run waiting for room always has a reader that is awake or about to be.
const GATHER: usize = 16 * 1024;
const _: () = assert!(GATHER < HIGH_WATER);

/// A reply being written.
pub(super) struct Writing {
    /// Until the run ends.
    pub(super) reply: Option<Box<dyn Reply>>,
    pub(super) w: ReplyWriter,
    /// The run is over: what the writer holds is the end of the reply.
    done: bool,
    /// The body, waiting for bytes.
    reader: Option<Waker>,
    /// The body waits for [`LINGER`] to pass: wake it only once [`GATHER`] bytes wait.
    lingering: bool,
    /// The run (or, after it, the wait for the reader), waiting for the body to take
    /// what was written.
    writer: Option<Waker>,
    /// The bytes the body has taken.
    taken: u64,
    /// The waits on the reader.
    pace: Pace,
}

/// What the run and its task tell each other and the body without the lock.
#[derive(Default)]
pub(super) struct Signals {
    /// The run yielded with nothing pending (see `engine::run`).
    pub(super) yielded: AtomicBool,
    /// The reader was too slow: the reply is cut.
    pub(super) cut: AtomicBool,
}

/// A [`Writing`] and its [`Signals`].
#[derive(Clone)]
pub(super) struct Shared(Arc<(Mutex<Writing>, Signals)>);

impl Shared {
    pub(super) fn new(reply: Option<Box<dyn Reply>>, w: ReplyWriter, pace: Pace) -> Self {
        let writing = Writing {
            reply,
            done: false,
            w,
            reader: None,
            lingering: false,
            writer: None,
            taken: 0,
            pace,
        };
        Self(Arc::new((Mutex::new(writing), Signals::default())))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Writing> {
        // A panic while writing leaves a reply cut short, which the client sees as
        // malformed; it does not make the body panic too.
        self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn signals(&self) -> &Signals {
        &self.0 .1
    }

    /// The run's side, for the engine.
    pub(super) fn sink(&self) -> Sink {
        Sink {
            shared: self.clone(),
            room: false,
        }
    }

    /// The reply's head leaves, and with it the body: waits on the reader count from now
    /// on. Wakes whoever waits for room, so that it arms its timer.
    pub(super) fn reading(&self) {
        let mut writing = self.lock();
        writing.pace.start();
        let writer = writing.writer.take();
        drop(writing);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// The body's side.
    pub(super) fn stream(&self, task: AbortHandle) -> ReplyStream {
        ReplyStream {
            shared: self.clone(),
            out: VecDeque::new(),
            task,
            took_at: None,
            // Made here, on the runtime: the body may be polled anywhere.
            linger: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// Marks the run over (what the writer holds ends the reply), and wakes the body.
    pub(super) fn end(&self) {
        let mut writing = self.lock();
        writing.done = true;
        let reader = writing.reader.take();
        drop(writing);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// After the run: `Ready(true)` once the body has taken every byte, `Ready(false)` if
    /// the reader proved too slow first.
    pub(super) fn poll_taken(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut writing = self.lock();
        if writing.w.pending() == 0 {
            let taken = writing.taken;
            writing.pace.resumed(taken);
            return Poll::Ready(true);
        }
        writing.writer = Some(cx.waker().clone());
        let taken = writing.taken;
        writing.pace.poll_waiting(taken, cx).map(|()| false)
    }

    /// Cuts the reply: what was not taken is dropped, and the body ends at once. (Its
    /// error type is the wrapped service's, so the layer cannot fail it: the reply simply
    /// stops, short of its end, which every client reads as malformed.)
    pub(super) fn cut(&self) {
        self.signals().cut.store(true, Ordering::Release);
        let mut writing = self.lock();
        writing.done = true;
        writing.w.take(&mut VecDeque::new());
        let reader = writing.reader.take();
        drop(writing);
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// The run's side of a reply: whether the reply had room when the run last wrote to it.
/// Only the run's writes take room (the body's reads make more), so while it had, it
/// still has, and asking takes no lock.
pub(super) struct Sink {
    shared: Shared,
    room: bool,
}

impl Emit for Sink {
    fn emit(&mut self, index: usize, outcome: &Outcome) {
        let mut writing = self.shared.lock();
        let Writing {
            reply,
            w,
            reader,
            lingering,
            ..
        } = &mut *writing;
        if let Some(reply) = reply {
            reply.item(index, outcome, w);
        }
        let reader = match *lingering && w.pending() < GATHER {
            true => None,
            false => reader.take(),
        };
        self.room = w.pending() < HIGH_WATER;
        // Woken once the lock is let go, so the body does not wait for it.
        drop(writing);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.room {
            return Poll::Ready(());
        }
        let mut writing = self.shared.lock();
        if writing.w.pending() < HIGH_WATER {
            let taken = writing.taken;
            writing.pace.resumed(taken);
            self.room = true;
            return Poll::Ready(());
        }
        writing.writer = Some(cx.waker().clone());
        let taken = writing.taken;
        if writing.pace.poll_waiting(taken, cx).is_ready() {
            // The task that carries the run sees this and cuts the reply.
            self.shared.signals().cut.store(true, Ordering::Release);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn yielding(&mut self) {
        self.shared.signals().yielded.store(true, Ordering::Relaxed);
    }
}

/// The body of a streamed reply: the chunks the run has written, as they come.
pub(super) struct ReplyStream {
    shared: Shared,
    /// Taken from the writer, not yet sent.
    out: VecDeque<Bytes>,
    /// The task that carries the run: cancelled when the body is dropped (the client went
    /// away).
    task: AbortHandle,
    /// When the body last took bytes.
    took_at: Option<Instant>,
    /// Until [`LINGER`] after `took_at`, while little is written.
    linger: Pin<Box<Sleep>>,
}

/// Whether a body that last took bytes at `took_at` should wait before taking what is
/// written: it is little, more may come, and [`LINGER`] has not passed. Arms `linger`.
fn lingers(
    took_at: Option<Instant>,
    linger: &mut Pin<Box<Sleep>>,
    writing: &Writing,
    cx: &mut Context<'_>,
) -> bool {
    let pending = writing.w.pending();
    let Some(took_at) = took_at else {
        return false;
    };
    if pending == 0 || pending >= GATHER || writing.done {
        return false;
    }
    let due = took_at + LINGER;
    if linger.deadline() != due {
        linger.as_mut().reset(due);
    }
    linger.as_mut().poll(cx).is_pending()
}

impl Stream for ReplyStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if this.shared.signals().cut.load(Ordering::Acquire) {
            this.out.clear();
            return Poll::Ready(None);
        }
        if let Some(chunk) = this.out.pop_front() {
            return Poll::Ready(Some(chunk));
        }
        let mut writing = this.shared.lock();
        let lingering = lingers(this.took_at, &mut this.linger, &writing, cx);
        writing.lingering = lingering;
        if lingering {
            writing.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // A little at a time: what is not taken yet still counts as unread (for room, and
        // for the batch's place), and the body holds no more than this and one chunk.
        let before = writing.w.pending();
        writing.w.take_some(&mut this.out, GATHER);
        writing.taken += (before - writing.w.pending()) as u64;
        if let Some(chunk) = this.out.pop_front() {
            this.took_at = Some(Instant::now());
            // Room again: a run (or a wait for the reader) waiting for it goes on.
            let writer = writing.writer.take();
            drop(writing);
            if let Some(writer) = writer {
                writer.wake();
            }
            return Poll::Ready(Some(chunk));
        }
        if writing.done {
            return Poll::Ready(None);
        }
        writing.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
