//! Single requests coalesced into batches, as DataLoader and Apollo's `BatchHttpLink` do:
//! requests sent through [`Coalesce`] within a short window (and up to a size) go out as
//! one batch per identity, and each caller gets its own response. Off unless used.
//!
//! The identity is what the batch layer takes from the outer request alone: its built-in
//! identity headers (`Authorization`, `Cookie`, `Proxy-Authorization`, the authenticating
//! proxies' user headers) and any given to [`Coalesce::with_identity_headers`]. They
//! leave each request and become its batch request's own. A caller that drops its future
//! does not unsend its request: once handed over, it goes with its batch.

use super::{Batch, ClientError, Item, Responses};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;
use tower::{Service, ServiceExt};

type Answer = Result<Response<Bytes>, crate::BoxError>;

/// One caller's request, and where its answer goes.
struct Waiting {
    request: Request<Bytes>,
    answer: oneshot::Sender<Answer>,
}

/// A `Service<Request<Bytes>>` that gathers the requests sent through it into batches.
///
/// ```no_run
/// # async fn example() -> Result<(), tower_http_batch::BoxError> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use std::time::Duration;
/// use tower::ServiceExt;
/// use tower_http_batch::client::{BatchClient, Coalesce};
///
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = BatchClient::new(http, "http://127.0.0.1:3000/batch".parse()?);
/// // Requests within 2 ms of the first, up to 50, share one batch.
/// let loader = Coalesce::new(client, Duration::from_millis(2), 50);
/// let get = |id: u32| http::Request::get(format!("/users/{id}")).body(Bytes::new()).unwrap();
/// let (a, b) = tokio::join!(loader.clone().oneshot(get(1)), loader.clone().oneshot(get(2)));
/// println!("{} {}", a?.status(), b?.status());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Coalesce {
    sender: PollSender<Waiting>,
}

impl Clone for Coalesce {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("uri", self.request.uri())
            .finish()
    }
}

impl Coalesce {
    /// Gathers requests for `client` (a [`BatchClient`](super::BatchClient), or one with
    /// layers around it): a batch leaves `window` after its first request, or once it
    /// holds `max` (then split at the client's limit as any batch). Spawns the task that
    /// gathers them, which ends when every clone of this is dropped: call it within a
    /// tokio runtime.
    pub fn new<C>(client: C, window: Duration, max: usize) -> Self
    where
        C: Service<Batch, Response = Responses, Error = ClientError> + Clone + Send + 'static,
        C::Future: Send,
    {
        Self::with_identity_headers(client, window, max, Vec::new())
    }

    /// [`new`](Self::new), with more identity headers (those given to the server's
    /// `BatchLayer::identity_header`).
    pub fn with_identity_headers<C>(
        client: C,
        window: Duration,
        max: usize,
        identity: Vec<HeaderName>,
    ) -> Self
    where
        C: Service<Batch, Response = Responses, Error = ClientError> + Clone + Send + 'static,
        C::Future: Send,
    {
        let max = max.max(1);
        let (tx, rx) = mpsc::channel(max.saturating_mul(4));
        let gathering = Gathering {
            window,
            max,
            identity: Arc::new(identity),
        };
        tokio::spawn(gathering.run(client, rx));
        Self {
            sender: PollSender::new(tx),
        }
    }
}

/// The task that gathers requests.
struct Gathering {
    window: Duration,
    max: usize,
    identity: Arc<Vec<HeaderName>>,
}

impl Gathering {
    /// Takes requests as they come; sends each window's, one batch per identity.
    async fn run<C>(self, client: C, mut rx: mpsc::Receiver<Waiting>)
    where
        C: Service<Batch, Response = Responses, Error = ClientError> + Clone + Send + 'static,
        C::Future: Send,
    {
        while let Some(first) = rx.recv().await {
            let until = tokio::time::Instant::now() + self.window;
            let mut taken = vec![first];
            while taken.len() < self.max {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(next)) => taken.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            let mut by_identity: HashMap<Vec<(HeaderName, Bytes)>, Vec<Waiting>> = HashMap::new();
            for mut waiting in taken {
                let identity = self.take_identity(waiting.request.headers_mut());
                by_identity.entry(identity).or_default().push(waiting);
            }
            for (identity, group) in by_identity {
                tokio::spawn(send(client.clone(), identity, group));
            }
        }
    }

    /// The identity headers of a request, taken out of it (they become the batch's).
    fn take_identity(&self, headers: &mut HeaderMap) -> Vec<(HeaderName, Bytes)> {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|n| {
                crate::subrequest::is_builtin_identity(n.as_str()) || self.identity.contains(n)
            })
            .cloned()
            .collect();
        let mut identity = Vec::new();
        for name in names {
            for value in headers.get_all(&name) {
                identity.push((name.clone(), Bytes::copy_from_slice(value.as_bytes())));
            }
            headers.remove(&name);
        }
        identity.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        identity
    }
}

async fn send<C>(client: C, identity: Vec<(HeaderName, Bytes)>, group: Vec<Waiting>)
where
    C: Service<Batch, Response = Responses, Error = ClientError>,
{
    let mut batch = Batch::new();
    for (name, value) in identity {
        if let Ok(value) = http::HeaderValue::from_maybe_shared(value) {
            batch = batch.header(name, value);
        }
    }
    let mut answers = Vec::with_capacity(group.len());
    for waiting in group {
        batch = batch.push(Item::new(waiting.request));
        answers.push(waiting.answer);
    }
    match client.oneshot(batch).await {
        Ok(responses) => {
            for (answer, response) in answers.into_iter().zip(responses) {
                let _ = answer.send(Ok(response));
            }
        }
        Err(e) => {
            // Every caller gets the error, still downcastable to `ClientError`.
            let shared = Arc::new(e);
            for answer in answers {
                let _ = answer.send(Err(Box::new(SharedError(shared.clone()))));
            }
        }
    }
}

/// A [`ClientError`] shared by the callers of one batch.
#[derive(Debug)]
pub struct SharedError(pub Arc<ClientError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Service<Request<Bytes>> for Coalesce {
    type Response = Response<Bytes>;
    type Error = crate::BoxError;
    type Future = CoalesceFuture;

    /// Ready once the gathering task has room for one more request.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender
            .poll_reserve(cx)
            .map_err(|_| "the coalescing task has stopped".into())
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (answer, receiver) = oneshot::channel();
        let sent = self.sender.send_item(Waiting { request, answer });
        CoalesceFuture {
            receiver: sent.ok().map(|()| receiver),
        }
    }
}

/// The response to one coalesced request.
#[derive(Debug)]
pub struct CoalesceFuture {
    /// `None` when the request could not be handed over.
    receiver: Option<oneshot::Receiver<Answer>>,
}

impl Future for CoalesceFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Poll::Ready(Err(
                "called without poll_ready, or the coalescing task stopped".into(),
            ));
        };
        Pin::new(receiver)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err("the coalescing task stopped".into())))
    }
}
