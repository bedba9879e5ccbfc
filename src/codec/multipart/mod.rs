//! The multipart batch format of OData 4.0 (also the style of Google's batch APIs), at the
//! same paths as the JSON batch, chosen by `content-type: multipart/mixed; boundary=…`.
//!
//! Request: one part per sub-request, `Content-Type: application/http`, holding an
//! HTTP/1.1 request (`METHOD url HTTP/1.1`, headers, an empty line, the body); or a
//! changeset, a part that is itself `multipart/mixed` holding such parts, run as one
//! atomicity group. A part's `Content-ID` names it; inside a changeset, a URL that starts
//! with `$<content-id>` starts with the `location` of that earlier request. URLs are as in
//! the JSON batch: relative to the endpoint, absolute paths (under the service root), or
//! absolute URLs of this server.
//!
//! ```text
//! --batch_1
//! Content-Type: multipart/mixed; boundary=changeset_1
//!
//! --changeset_1
//! Content-Type: application/http
//! Content-ID: 1
//!
//! POST users HTTP/1.1
//! Content-Type: application/json
//!
//! {"name": "Alice"}
//! --changeset_1--
//! --batch_1
//! Content-Type: application/http
//!
//! GET users?$top=1 HTTP/1.1
//!
//!
//! --batch_1--
//! ```
//!
//! Reply: `multipart/mixed`, one `application/http` part per response in request order,
//! a changeset's in a nested part, a failed changeset's as one response (see [`reply`]).
//! Its status, and whether the batch stops at a failure, follow the OData version the
//! request names (see [`dialect`]): an OData 4 batch runs one request at a time, since
//! it stops at the first failure.

mod dialect;
mod reply;
mod request;
mod split;

use super::url_refs::{decode_url, UrlSyntax};
use super::{describe, Codec, DecodeContext, DecodeLimits, Decoded, NO_HOOK};
use crate::batch::id::{index_id, IdIndex};
use crate::batch::media::MediaType;
use crate::batch::plan::{Group, Plan, PlanItem};
use crate::batch::reference::Refs;
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use dialect::Dialect;
use http::request::Parts;
use http::{header, Method};
use reply::MultipartReply;
use split::{Broken, Part};
use std::collections::HashMap;

/// The multipart batch codec.
#[derive(Debug)]
pub(crate) struct MultipartCodec {
    /// Whether its endpoint answers as an OData V2 service, whatever the request names
    /// (see [`dialect`]).
    v2: bool,
}

impl MultipartCodec {
    /// OData 4.0 (and Google's style); V2 when the request names V2.
    pub(crate) const ODATA_4: Self = Self { v2: false };
    /// OData V2 always: `202 Accepted` and `DataServiceVersion`.
    pub(crate) const ODATA_V2: Self = Self { v2: true };
}

impl Codec for MultipartCodec {
    fn name(&self) -> &'static str {
        "multipart"
    }

    fn media_types(&self) -> &'static [&'static str] {
        &["multipart/mixed"]
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::POST]
    }

    fn describe(&self, limits: &DecodeLimits) -> Vec<describe::Operation> {
        describe::multipart(limits, self.v2)
    }

    fn decode(
        &self,
        outer: &Parts,
        body: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let content_type = outer.headers.get(header::CONTENT_TYPE);
        let content_type = content_type.map_or(&b""[..], |v| v.as_bytes());
        let boundary = split::boundary(content_type)
            .map_err(|e| Problem::invalid(vec![FieldError::batch("content-type", e)]))?;
        let parts = match split::parts(body, boundary, cx.limits.max_requests) {
            Ok(parts) => parts,
            Err(Broken::TooMany(_)) => return Err(too_many(cx)),
            Err(Broken::Malformed(e)) => {
                return Err(Problem::invalid(vec![FieldError::batch("body", e)]))
            }
        };
        let mut batch = Batch {
            cx,
            dialect: Dialect::of(&outer.headers, self.v2),
            outer: body,
            items: Vec::with_capacity(parts.len()),
            content_ids: Vec::with_capacity(parts.len()),
            groups: Vec::new(),
            errors: Vec::new(),
        };
        for bytes in parts {
            batch.part(bytes)?;
        }
        batch.finish().map_err(Problem::invalid)
    }
}

/// A batch being read.
struct Batch<'a> {
    cx: &'a DecodeContext<'a>,
    /// What the outer request asks of the run and the reply.
    dialect: Dialect,
    /// The batch body: request bodies are slices of it.
    outer: &'a Bytes,
    items: Vec<PlanItem>,
    /// Each request's `Content-ID`, valid or not: its index is the request's.
    content_ids: Vec<Option<String>>,
    groups: Vec<Group>,
    errors: Vec<FieldError>,
}

impl Batch<'_> {
    /// The index the next request gets.
    fn next(&self) -> usize {
        self.content_ids.len()
    }

    fn err(&mut self, index: usize, field: &str, detail: impl Into<String>) {
        self.errors.push(FieldError::item(index, field, detail));
    }

    /// One top-level part: a request or a changeset. `Err` when the batch holds more
    /// requests than the layer takes.
    fn part(&mut self, bytes: &[u8]) -> Result<(), Problem> {
        let index = self.next();
        // Changesets count their requests: the limit holds for the sum, in any order.
        if index >= self.cx.limits.max_requests {
            return Err(too_many(self.cx));
        }
        match typed(bytes) {
            Ok((p, Some(m), ct)) if m.is("multipart/mixed") => self.changeset(index, ct, &p)?,
            Ok((p, Some(m), _)) if m.is("application/http") => self.request(&p, None),
            Ok((_, _, ct)) => self.refuse(index, "part", not_http(ct)),
            Err(e) => self.refuse(index, "part", e),
        }
        Ok(())
    }

    /// A part that is no request still takes a request's place, so that later indices
    /// are the requests' positions.
    fn refuse(&mut self, index: usize, field: &str, detail: String) {
        self.err(index, field, detail);
        self.content_ids.push(None);
    }

    /// A changeset: its requests, one atomicity group.
    fn changeset(
        &mut self,
        index: usize,
        content_type: &[u8],
        part: &Part<'_>,
    ) -> Result<(), Problem> {
        let room = self.cx.limits.max_requests.saturating_sub(index);
        let boundary = match split::boundary(content_type) {
            Ok(boundary) => boundary,
            Err(e) => {
                self.refuse(index, "changeset", e);
                return Ok(());
            }
        };
        let inner = match split::parts(part.content, boundary, room) {
            Ok(inner) => inner,
            Err(Broken::TooMany(_)) => return Err(too_many(self.cx)),
            Err(Broken::Malformed(e)) => {
                self.refuse(index, "changeset", e);
                return Ok(());
            }
        };
        let mut ids = HashMap::new();
        for bytes in inner {
            let index = self.next();
            match typed(bytes) {
                Ok((p, Some(m), _)) if m.is("application/http") => self.request(&p, Some(&mut ids)),
                Ok((_, Some(m), _)) if m.is("multipart/mixed") => self.refuse(
                    index,
                    "part",
                    "is a changeset inside a changeset: changesets do not nest".into(),
                ),
                Ok((_, _, ct)) => self.refuse(index, "part", not_http(ct)),
                Err(e) => self.refuse(index, "part", e),
            }
        }
        let members = index..self.next();
        // A changeset of one request needs no hook: one request is atomic on its own.
        if !self.cx.limits.atomic && members.len() > 1 {
            self.err(index, "changeset", NO_HOOK);
        }
        self.groups.push(Group {
            name: boundary.to_string(),
            members,
        });
        Ok(())
    }
}

impl Batch<'_> {
    /// One `application/http` part. `changeset`: the `Content-ID`s (lower case) of the
    /// earlier requests of its changeset, which `$<content-id>` may name.
    fn request(&mut self, part: &Part<'_>, changeset: Option<&mut HashMap<String, usize>>) {
        let index = self.next();
        let before = self.errors.len();
        let content_id = match part.header("content-id") {
            Ok(v) => v
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string),
            Err(e) => {
                self.err(index, "Content-ID", e);
                None
            }
        };
        let cte = part
            .header("content-transfer-encoding")
            .unwrap_or_else(|e| {
                self.err(index, "Content-Transfer-Encoding", e);
                None
            });
        if let Some(cte) = cte {
            if !["binary", "7bit", "8bit"]
                .iter()
                .any(|t| cte.eq_ignore_ascii_case(t.as_bytes()))
            {
                let cte = String::from_utf8_lossy(cte);
                self.err(
                    index,
                    "Content-Transfer-Encoding",
                    format!("must be binary, not {cte:?}"),
                );
            }
        }
        self.content_ids.push(content_id.clone());
        let inner = match request::read(part.content, self.outer, self.cx.header_caps()) {
            Ok(inner) => inner,
            Err((field, e)) => return self.err(index, field, e),
        };
        // `$<content-id>` names an earlier request of the same changeset; any other `$…`
        // is a path like another (`$metadata`).
        let named = inner
            .url
            .strip_prefix('$')
            .map(|t| &t[..t.find(['/', '?']).unwrap_or(t.len())]);
        let dependency = named
            .zip(changeset.as_deref())
            .and_then(|(name, ids)| ids.get(&name.to_ascii_lowercase()).copied());
        let syntax = UrlSyntax {
            templates: false,
            location: dependency.is_some(),
        };
        let url = decode_url(inner.url, self.cx.urls(), Some(self.outer), syntax);
        let (uri, template) = match url {
            Ok(found) => found,
            Err(e) => return self.err(index, "url", e),
        };
        if let (Some(ids), Some(id)) = (changeset, &content_id) {
            ids.insert(id.to_ascii_lowercase(), index);
        }
        if self.errors.len() > before {
            return;
        }
        let id = content_id.map_or_else(|| index_id(index), Into::into);
        let mut item = PlanItem::new(id, inner.method, uri, inner.headers, inner.body);
        item.depends_on.extend(dependency);
        item.refs = template.map(|url| {
            Box::new(Refs {
                url: Some(url),
                ..Refs::default()
            })
        });
        self.items.push(item);
    }

    /// The plan and its reply, when nothing was refused. `Content-ID`s are unique in the
    /// batch, ignoring letter case.
    fn finish(mut self) -> Result<Decoded, Vec<FieldError>> {
        let with_ids = self.content_ids.iter().enumerate();
        let with_ids = with_ids.filter_map(|(index, id)| Some((index, id.as_deref()?)));
        let (_, repeated) = IdIndex::new(with_ids);
        for (index, first) in repeated {
            let id = self.content_ids[index].as_deref().unwrap_or_default();
            self.errors.push(FieldError::item(
                index,
                "Content-ID",
                format!(
                    "{id:?} is already the Content-ID of request {first} (they ignore letter case)"
                ),
            ));
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let changesets = self.groups.iter().map(|g| g.members.clone()).collect();
        let mut plan = Plan::new(self.items, self.dialect.stop_on_error);
        let reply = MultipartReply::new(self.content_ids, changesets, self.dialect);
        plan.groups = self.groups;
        Ok(Decoded::Run(plan, Box::new(reply)))
    }
}

/// A part's header section, the media type its `Content-Type` declares, and that value as
/// sent (for messages).
fn typed(bytes: &[u8]) -> Result<(Part<'_>, Option<MediaType<'_>>, &[u8]), String> {
    let part = split::part(bytes)?;
    let content_type = part.header("content-type")?.unwrap_or_default();
    Ok((part, MediaType::parse(content_type), content_type))
}

/// Why a part is refused when it is not `application/http`.
fn not_http(content_type: &[u8]) -> String {
    format!(
        "must be application/http (or, at the top level, a multipart/mixed changeset), not {:?}",
        String::from_utf8_lossy(content_type)
    )
}

/// `400`: more requests than `max_requests`.
fn too_many(cx: &DecodeContext<'_>) -> Problem {
    let max = cx.limits.max_requests;
    Problem::invalid(vec![FieldError::batch(
        "body",
        format!("holds more than {max} sub-requests; the limit is {max}"),
    )])
}
