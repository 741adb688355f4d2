//! The builder setters every `Config` of enchufe's crates offers: one
//! `#[must_use]` method a field, so a config reads as its list of fields.

/// Writes one builder setter a field: `field: Type;` sets the field to the
/// value, `field: Type => f;` to `f(value)` (`Some`, or
/// [`at_least_one`](crate::at_least_one) for a count that must not be 0).
/// Each setter's doc links its field, whose doc says what it does; doc
/// lines written above an entry are added to it.
///
/// For enchufe's own crates: hidden, and not covered by semver.
#[doc(hidden)]
#[macro_export]
macro_rules! setters {
    ($( $(#[$attr:meta])* $field:ident: $ty:ty $(=> $map:path)? ;)*) => {$(
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        $(#[$attr])*
        #[must_use]
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = $crate::__setter_value!(value $(, $map)?);
            self
        }
    )*};
}

/// The value a setter of [`setters!`] stores.
#[doc(hidden)]
#[macro_export]
macro_rules! __setter_value {
    ($value:ident) => {
        $value
    };
    ($value:ident, $map:path) => {
        $map($value)
    };
}

/// A count that must be at least 1 (a queue of 0 would never move): 0
/// becomes 1. For [`setters!`]; hidden, not covered by semver.
#[doc(hidden)]
#[must_use]
pub const fn at_least_one(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        n
    }
}
