//! A streamed reply's bytes on their way to its body: a tokio channel bounded in bytes.
//! The writer's side ([`Feed`]) takes a permit of a semaphore per byte it sends, and the
//! body gives them back as it takes the bytes, so at most [`HIGH_WATER`] bytes wait in
//! the channel; what does not fit stays in the writer until the reader makes room, and
//! the writer's waits for room are bounded by its [`Pace`].
//!
//! Each write to a socket costs a system call and wakes the reader: when chunks come
//! faster than one per [`LINGER`], the body gathers what comes within that time of its
//! last frame (up to [`GATHER`]) into one frame. A chunk that comes after a quiet spell
//! leaves at once. (Tokio's timer ticks in whole milliseconds: the wait can reach 2 ms.)

use super::pace::Pace;
use crate::codec::ReplyWriter;
use crate::config::MinRate;
use bytes::{Bytes, BytesMut};
use futures_util::future::select;
use futures_util::{FutureExt as _, Stream};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The bytes a streamed reply may hold, sent and not yet taken by its body. (The body
/// holds its frame until the connection takes it, and the connection buffers some too:
/// the bound is this plus what those hold.) While more wait to be sent, the batch's run
/// starts nothing new, and the batch keeps its place.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// The most a chunk holds, and what the body gathers into a frame.
const GATHER: usize = 16 * 1024;
const _: () = assert!(GATHER < HIGH_WATER);

/// How long after its last frame the body waits for more before sending what it has.
const LINGER: Duration = Duration::from_millis(1);

/// The writer's side: what is written, and the channel it goes into.
pub(super) struct Feed {
    pub(super) w: ReplyWriter,
    tx: mpsc::UnboundedSender<Bytes>,
    /// Permits for the bytes the channel may still take.
    room: Arc<Semaphore>,
    /// The bytes sent into the channel.
    sent: u64,
    pace: Pace,
    /// Cancelled when the reader proved too slow: the body then ends, and the task that
    /// carries the run stops.
    cut: CancellationToken,
    /// Told when [`GATHER`] bytes wait in the channel, and when the writer is gone.
    full: Arc<Notify>,
    /// The run goes on without its reader (a keyed batch): once the body is gone or cut,
    /// what is written is let go.
    detached: bool,
}

/// The body's side, until it is made a body.
pub(super) struct Receiving {
    rx: mpsc::UnboundedReceiver<Bytes>,
    room: Arc<Semaphore>,
    cut: CancellationToken,
    full: Arc<Notify>,
}

/// A channel for the reply `w` is writing, its waits on the reader bounded by `min_rate`
/// (`None`: unbounded); `detached` when the run goes on without its reader.
pub(super) fn open(w: ReplyWriter, min_rate: Option<MinRate>, detached: bool) -> (Feed, Receiving) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(HIGH_WATER));
    let cut = CancellationToken::new();
    let full = Arc::new(Notify::new());
    let feed = Feed {
        w,
        tx,
        room: room.clone(),
        sent: 0,
        pace: Pace::new(min_rate),
        cut: cut.clone(),
        full: full.clone(),
        detached,
    };
    let receiving = Receiving {
        rx,
        room,
        cut,
        full,
    };
    (feed, receiving)
}

impl Feed {
    /// Whether the reply was cut, as the task that carries the run waits for it.
    pub(super) fn cut(&self) -> CancellationToken {
        self.cut.clone()
    }

    /// Whether everything written is in the channel.
    pub(super) fn has_room(&self) -> bool {
        self.w.pending() == 0
    }

    /// The bytes the body has taken: those sent, less those still in the channel.
    fn taken(&self) -> u64 {
        let in_channel = HIGH_WATER.saturating_sub(self.room.available_permits());
        self.sent - in_channel as u64
    }

    /// Sends what the channel has room for, without waiting. Once everything is sent, a
    /// wait on the reader in progress ends.
    pub(super) fn send_some(&mut self) {
        if self.tx.is_closed() || self.cut.is_cancelled() {
            // No one will read it: a detached run goes on, writing into nothing.
            while self.w.take_up_to(usize::MAX).is_some() {}
            return;
        }
        loop {
            let room = self.room.available_permits().min(GATHER);
            if room == 0 || !self.send(room) {
                break;
            }
        }
        if self.has_room() {
            let taken = self.taken();
            self.pace.resumed(taken);
        }
    }

    /// Sends the rest, waiting for room within the reader's pace: `false` when the reader
    /// proved too slow, and the reply is cut: the body ends at once, without what it has
    /// not taken. (Its error type is the wrapped service's, so the layer cannot fail it:
    /// the reply simply stops, short of its end, which every client reads as malformed.)
    pub(super) async fn send_all(&mut self) -> bool {
        self.send_some();
        while !self.has_room() {
            let want = self.w.pending().min(GATHER);
            let due = self.pace.waiting(self.taken());
            // The semaphore is never closed. Once there is room, `send` takes it.
            let acquired = {
                let acquire = pin!(self.room.acquire_many(want as u32));
                let closed = pin!(self.tx.closed());
                // A body dropped ends the wait too (it ends a run not detached, too).
                let wait = select(acquire, closed).map(|_| true);
                match due {
                    Some(due) => tokio::time::timeout_at(due, wait).await.unwrap_or(false),
                    None => wait.await,
                }
            };
            if !acquired {
                self.cut.cancel();
                if !self.detached {
                    return false;
                }
            }
            self.send_some();
        }
        true
    }

    /// Sends at most `max` bytes, taking their permits: whether any were left to send.
    fn send(&mut self, max: usize) -> bool {
        let Some(chunk) = self.w.take_up_to(max) else {
            return false;
        };
        // At most the permits available, which only the body adds to: given back by the
        // body as it takes the bytes.
        let permit = self.room.try_acquire_many(chunk.len() as u32);
        debug_assert!(permit.is_ok(), "a chunk is at most the room there is");
        permit.map(tokio::sync::SemaphorePermit::forget).ok();
        self.sent += chunk.len() as u64;
        // A body dropped has aborted the task that writes: this never fails for long.
        let _ = self.tx.send(chunk);
        if HIGH_WATER - self.room.available_permits() >= GATHER {
            self.full.notify_one();
        }
        true
    }
}

impl Drop for Feed {
    /// The reply is over (or cut): a body that lingers sends what it has at once.
    fn drop(&mut self) {
        self.full.notify_one();
    }
}

impl Receiving {
    /// What is in the channel now (at most [`HIGH_WATER`]), as one chunk, for a reply
    /// sent whole: one write for the connection, not one per item.
    pub(super) fn drain(&mut self) -> Bytes {
        let mut whole = BytesMut::new();
        while let Ok(chunk) = self.rx.try_recv() {
            whole.extend_from_slice(&chunk);
        }
        whole.freeze()
    }

    /// The body: the chunks as they come, gathered into frames. `task`, which writes them,
    /// is aborted when the body is dropped (the client went away).
    pub(super) fn into_body(self, task: JoinSet<()>) -> impl Stream<Item = Bytes> + Send {
        let body = Body {
            receiving: self,
            last_frame: None,
            // Made here, on the runtime: the body may be polled anywhere.
            linger: Box::pin(tokio::time::sleep_until(Instant::now())),
            _task: task,
        };
        futures_util::stream::unfold(body, |mut body| async move {
            let frame = body.next_frame().await?;
            Some((frame, body))
        })
    }
}

/// A body being read.
struct Body {
    receiving: Receiving,
    /// When it last gave a frame.
    last_frame: Option<Instant>,
    /// Until [`LINGER`] after `last_frame`.
    linger: Pin<Box<Sleep>>,
    _task: JoinSet<()>,
}

impl Body {
    /// The next frame: the next chunk, and those that come within [`LINGER`] of the last
    /// frame, until it holds [`GATHER`] bytes. While it lingers, chunks do not wake it
    /// (one wake-up of the connection per frame, not per item): the writer does, once
    /// [`GATHER`] bytes wait, or when it is gone. `None` once the reply is over, or cut.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let Receiving {
            rx,
            room,
            cut,
            full,
        } = &mut self.receiving;
        let first = rx.recv().await?;
        // Made only when a second chunk comes.
        let mut gathered = BytesMut::new();
        let mut len = first.len();
        if let Some(at) = self.last_frame.filter(|_| len < GATHER) {
            self.linger.as_mut().reset(at + LINGER);
            select(pin!(full.notified()), self.linger.as_mut()).await;
            while len < GATHER {
                let Ok(more) = rx.try_recv() else {
                    break;
                };
                if gathered.is_empty() {
                    gathered.extend_from_slice(&first);
                }
                gathered.extend_from_slice(&more);
                len += more.len();
            }
        }
        if cut.is_cancelled() {
            return None;
        }
        room.add_permits(len);
        self.last_frame = Some(Instant::now());
        Some(match gathered.is_empty() {
            true => first,
            false => gathered.freeze(),
        })
    }
}
