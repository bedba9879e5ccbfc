//! What a caller gives the client: requests, each with an id and the ids it waits for, and
//! the headers of the batch request itself (its identity).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use std::collections::HashMap;

/// One request of a [`Batch`]: its id (by default its position from 1), the ids of the
/// requests it waits for (`dependsOn`), and the request (its URI's path and query are
/// sent; the batch endpoint resolves them).
#[derive(Debug, Clone)]
pub struct Item {
    pub(crate) id: String,
    pub(crate) depends_on: Vec<String>,
    pub(crate) request: Request<Bytes>,
    /// Whether the id was given (else the batch numbers it).
    named: bool,
}

impl Item {
    /// An item sending `request`.
    pub fn new(request: Request<Bytes>) -> Self {
        Self {
            id: String::new(),
            depends_on: Vec::new(),
            request,
            named: false,
        }
    }

    /// Its id: unique in the batch, ignoring letter case.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self.named = true;
        self
    }

    /// Waits for the item `id` (and is not sent when it fails: `424`). Items that wait
    /// for each other always go in the same batch request.
    pub fn depends_on(mut self, id: impl Into<String>) -> Self {
        self.depends_on.push(id.into());
        self
    }
}

impl From<Request<Bytes>> for Item {
    fn from(request: Request<Bytes>) -> Self {
        Self::new(request)
    }
}

/// Requests to send as JSON batches, split as the server's limit requires, and the
/// headers of every batch request sent for them (`Authorization`: the server gives each
/// sub-request the batch's identity).
///
/// ```
/// use bytes::Bytes;
/// use http::Request;
/// use tower_http_batch::client::{Batch, Item};
///
/// let create = Request::post("/users")
///     .header("content-type", "application/json")
///     .body(Bytes::from(r#"{"name": "Ada", "email": "ada@example.com"}"#))
///     .unwrap();
/// let read = Request::get("/users/1").body(Bytes::new()).unwrap();
/// let batch = Batch::new()
///     .push(Item::new(create).id("new"))
///     .push(Item::new(read).depends_on("new"))
///     .header(http::header::AUTHORIZATION, "Bearer alice-token".parse().unwrap());
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) items: Vec<Item>,
    pub(crate) headers: HeaderMap,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request (an [`Item`], or a bare `Request<Bytes>`).
    pub fn push(mut self, item: impl Into<Item>) -> Self {
        let mut item = item.into();
        if !item.named {
            item.id = (self.items.len() + 1).to_string();
        }
        self.items.push(item);
        self
    }

    /// A header of every batch request sent (not of the sub-requests).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// How many requests it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each item's dependencies as indices; `Err` names a repeated id, or a dependency that
    /// is no earlier item (the server would refuse the batch whole).
    pub(crate) fn dependencies(&self) -> Result<Vec<Vec<usize>>, String> {
        let mut index = HashMap::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            if index.insert(item.id.to_ascii_lowercase(), i).is_some() {
                return Err(format!(
                    "the id {:?} is given twice (ignoring case; an item without an id is numbered by its position from 1)",
                    item.id
                ));
            }
        }
        let deps = self.items.iter().enumerate().map(|(i, item)| {
            let of = |d: &String| match index.get(&d.to_ascii_lowercase()) {
                Some(&at) if at < i => Ok(at),
                Some(_) => Err(format!(
                    "{:?} depends on {d:?}, which does not come before it",
                    item.id
                )),
                None => Err(format!("{:?} depends on {d:?}, which is no item", item.id)),
            };
            item.depends_on.iter().map(of).collect()
        });
        deps.collect()
    }
}
