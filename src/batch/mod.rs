//! The batch's data model, the same for every wire format and knowing nothing of codecs or
//! of the engine: the validated [`plan::Plan`] and its [`id`]s, what each sub-request produced
//! ([`outcome::Outcome`]), URL canonicalisation ([`url`]) and how servers behind may read
//! a path ([`readings`]), what an item reports when the layer answers for it
//! ([`failures`]), how a run ended ([`summary`]), absolute URLs of the outer request's origin ([`origin`]), what sub-requests may reach ([`reach`]), result references
//! ([`reference`](mod@reference)) and what they read ([`results`]), media types ([`media`]), and the preferences of a `Prefer` header ([`prefer`]).

pub(crate) mod failures;
pub(crate) mod id;
pub(crate) mod media;
pub(crate) mod origin;
pub(crate) mod outcome;
pub(crate) mod plan;
pub(crate) mod prefer;
pub(crate) mod reach;
pub(crate) mod readings;
pub(crate) mod reference;
pub(crate) mod results;
pub(crate) mod strict;
pub(crate) mod summary;
mod survey;
pub(crate) mod url;
