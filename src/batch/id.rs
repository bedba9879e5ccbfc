//! Request ids: they compare ignoring ASCII letter case, as Microsoft Graph compares them.

/// A request id (or atomicity group name) as a key: ids compare ignoring ASCII letter
/// case, as Microsoft Graph compares them (`"A"` and `"a"` are the same id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdKey<'a>(pub(crate) &'a str);

impl PartialEq for IdKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for IdKey<'_> {}

impl std::hash::Hash for IdKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

/// Whether two ids are the same id (see [`IdKey`]).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
