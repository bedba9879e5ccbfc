//! Sub-request URLs with references: `{{id#/pointer}}` templates (JSON batch) and a
//! leading `$id` for the `location` of an earlier request (JSON batch, and multipart's
//! `$<content-id>`). The URL around them is checked at once; the resolved URL again when
//! the item runs.

use crate::batch::origin::strip_origin;
use crate::batch::reference::{Template, UrlTemplate};
use crate::batch::url::{parse_url, parse_url_in, UrlContext};
use bytes::Bytes;
use http::Uri;

/// Which references a format's URLs may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlSyntax {
    /// `{{id#/pointer}}` anywhere.
    pub(crate) templates: bool,
    /// A leading `$id`.
    pub(crate) location: bool,
}

/// A URL, and its template when it holds references (`{{id#/pointer}}`) or starts with an
/// OData `$id` prefix. The URL around the references is checked now, with a placeholder
/// for each; the resolved URL is checked again when the item runs.
pub(crate) fn decode_url(
    url: &str,
    ctx: UrlContext<'_>,
    outer: Option<&Bytes>,
    syntax: UrlSyntax,
) -> Result<(Uri, Option<UrlTemplate>), String> {
    let location = syntax.location && url.starts_with('$');
    // (Pairs of bytes, not `str::contains`: its searcher costs more than a short URL.)
    let templated = syntax.templates && url.as_bytes().windows(2).any(|w| w == b"{{");
    if !(location || templated) {
        return Ok((parse_url_in(url, ctx, outer)?, None));
    }
    // A template is kept as a path: an absolute URL of this server loses its origin now.
    let url = strip_origin(url, ctx.origin)?;
    let (location_of, rest) = match url.strip_prefix('$').filter(|_| location) {
        Some(tail) => {
            let end = tail.find(['/', '?']).unwrap_or(tail.len());
            if end == 0 {
                return Err(
                    "`$` must be followed by the id of an earlier request (`$id/path`)".into(),
                );
            }
            (Some(tail[..end].to_string()), &tail[end..])
        }
        None => (None, url),
    };
    let template = if syntax.templates {
        Template::parse(rest)?
    } else {
        None
    };
    if location_of.is_none() && template.is_none() {
        return Ok((parse_url_in(url, ctx, outer)?, None));
    }
    let mut template = template.unwrap_or_else(|| Template::literal(rest));
    let mut probe = String::from(if location_of.is_some() { "/x" } else { "" });
    probe.push_str(&template.with_placeholder("x"));
    let uri = parse_url(&probe, ctx)?;
    if location_of.is_none() && !rest.starts_with('/') {
        template.prepend(ctx.base);
    }
    Ok((
        uri,
        Some(UrlTemplate {
            location_of,
            rest: template,
            root: ctx.root.map(Box::from),
        }),
    ))
}
