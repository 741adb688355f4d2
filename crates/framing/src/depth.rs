//! A serde `Deserializer` wrapper that bounds how deep values nest.
//!
//! A recursive type (a tree of `Box`es, a `Vec<Self>`) nests as deep as the
//! bytes say, one stack frame set per level: a 20 KiB postcard payload of a
//! two-field tree overflowed a 2 MiB thread stack (a Tokio worker's), which
//! aborts the whole process. serde_json and rmp-serde count nesting
//! themselves; postcard does not, so [`Postcard`](crate::Postcard) decodes
//! through this wrapper. It forwards every call unchanged and counts one
//! level each time serde descends into a sequence (a struct, in postcard),
//! a map, an enum's content or an `Option`'s value: recursion in a serde
//! type that can end always passes through one of those.

use std::cell::Cell;
use std::fmt;

use crate::BoxError;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Deserializes a `T` from `de`, failing with [`TooDeep`] once values nest
/// deeper than `max` (the format's own error, which for postcard has no
/// text of ours, is replaced by it), or with the format's error.
pub(crate) fn deserialize<'de, T, D>(de: D, max: usize) -> Result<T, BoxError>
where
    T: serde::Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: Send + Sync + 'static,
{
    let depth = Depth {
        left: Cell::new(max),
        max,
        exceeded: Cell::new(false),
    };
    T::deserialize(Limited { de, left: &depth }).map_err(|e| {
        if depth.exceeded.get() {
            Box::new(TooDeep { max }) as BoxError
        } else {
            Box::new(e)
        }
    })
}

/// A message whose values nest deeper than the limit.
#[derive(Debug, thiserror::Error)]
#[error("values nest deeper than {max} levels")]
pub(crate) struct TooDeep {
    max: usize,
}

/// Levels left, shared by every level of one value.
struct Depth {
    left: Cell<usize>,
    max: usize,
    /// Set when the limit was hit, so the error can say so.
    exceeded: Cell<bool>,
}

/// Runs `f` one level deeper, or fails if there is no level left.
fn descend<T, E: serde::de::Error>(
    depth: &Depth,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let left = depth.left.get();
    if left == 0 {
        depth.exceeded.set(true);
        return Err(E::custom(TooDeep { max: depth.max }));
    }
    depth.left.set(left - 1);
    let out = f();
    depth.left.set(left);
    out
}

/// The wrapped deserializer; `left` is shared by every level.
struct Limited<'a, D> {
    de: D,
    left: &'a Depth,
}

/// The wrapped visitor: where serde descends.
struct Visit<'a, V> {
    visitor: V,
    left: &'a Depth,
}

/// A wrapped seed, sequence, map, enum or variant: its values are read
/// through [`Limited`] again.
struct Nested<'a, A> {
    inner: A,
    left: &'a Depth,
}

/// Forwards `deserialize_*` methods, wrapping their visitor.
macro_rules! forward_de {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method<V: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* Visit { visitor, left: self.left })
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_de! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_seq();
        deserialize_map();
        deserialize_identifier();
        deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {
        $(fn $method<E: serde::de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        let Visit { visitor, left } = self;
        descend(left, || visitor.visit_some(Limited { de, left }))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        // Not a level: a newtype alone cannot recurse (its recursion goes
        // through an Option, a sequence, a map or an enum, which count),
        // and JSON and MessagePack do not count it either.
        let left = self.left;
        self.visitor.visit_newtype_struct(Limited { de, left })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let Visit { visitor, left } = self;
        descend(left, || visitor.visit_seq(Nested { inner: seq, left }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let Visit { visitor, left } = self;
        descend(left, || visitor.visit_map(Nested { inner: map, left }))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let Visit { visitor, left } = self;
        descend(left, || visitor.visit_enum(Nested { inner: data, left }))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nested<'_, S> {
    type Value = S::Value;

    fn deserialize<D2: Deserializer<'de>>(self, de: D2) -> Result<S::Value, D2::Error> {
        let left = self.left;
        self.inner.deserialize(Limited { de, left })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let left = self.left;
        self.inner.next_element_seed(Nested { inner: seed, left })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let left = self.left;
        self.inner.next_key_seed(Nested { inner: seed, left })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let left = self.left;
        self.inner.next_value_seed(Nested { inner: seed, left })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Nested<'a, A> {
    type Error = A::Error;
    type Variant = Nested<'a, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let left = self.left;
        let (value, variant) = self.inner.variant_seed(Nested { inner: seed, left })?;
        Ok((
            value,
            Nested {
                inner: variant,
                left,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let left = self.left;
        self.inner
            .newtype_variant_seed(Nested { inner: seed, left })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let left = self.left;
        self.inner.tuple_variant(len, Visit { visitor, left })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let left = self.left;
        self.inner.struct_variant(fields, Visit { visitor, left })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    enum Expr {
        Lit(i32),
        Neg(Box<Expr>),
        Add { a: Box<Expr>, b: Box<Expr> },
    }

    fn json<T: for<'de> Deserialize<'de>>(text: &str, max: usize) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        super::deserialize(&mut de, max).map_err(|e| {
            assert_eq!(
                e.is::<super::TooDeep>(),
                e.to_string().contains("nest deeper")
            );
            e.to_string()
        })
    }

    #[test]
    fn values_within_the_limit_are_unchanged() {
        let text = r#"{"Add":{"a":{"Neg":{"Lit":1}},"b":{"Lit":2}}}"#;
        let expected = Expr::Add {
            a: Box::new(Expr::Neg(Box::new(Expr::Lit(1)))),
            b: Box::new(Expr::Lit(2)),
        };
        assert_eq!(json::<Expr>(text, 8), Ok(expected));
        let nested: Vec<Option<(u8, String)>> = json(r#"[null,[1,"x"]]"#, 8).unwrap();
        assert_eq!(nested, vec![None, Some((1, "x".into()))]);
    }

    #[test]
    fn each_way_of_nesting_counts() {
        // Enum content, struct-variant fields, Option, sequences.
        let deep = r#"{"Neg":{"Neg":{"Neg":{"Lit":1}}}}"#;
        assert!(json::<Expr>(deep, 8).is_ok());
        let err = json::<Expr>(deep, 3).unwrap_err();
        assert!(err.contains("nest deeper than"), "{err}");
        assert!(json::<Option<Option<Option<u8>>>>("1", 2).is_err());
        assert!(json::<Vec<Vec<Vec<u8>>>>("[[[1]]]", 2).is_err());
        assert!(json::<Vec<Vec<Vec<u8>>>>("[[[1]]]", 3).is_ok());
    }
}
