//! Partial types: what a streamed value looks like before it is complete.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;

/// A type with a partial form, every field optional, for snapshots of a value still being
/// generated. Derive it for structs with `#[derive(sift::Partial)]` (crate `sift-derive`);
/// scalars, strings, `Vec`, `Option`, `Box`, maps and `serde_json::Value` implement it here.
///
/// Scalars and strings are partial as `Option<Self>`. For a struct `S` the derive generates
/// `PartialS`, whose field of type `F` has type `<F as Partial>::Partial` (so `String` becomes
/// `Option<String>`, a nested struct `Option<PartialInner>`, a `Vec<Inner>`
/// `Vec<Option<PartialInner>>`), and `S`'s own partial form is `Option<PartialS>`.
pub trait Partial {
    /// The partial form.
    type Partial: DeserializeOwned + Default + Clone + PartialEq + std::fmt::Debug + Send + 'static;
}

macro_rules! complete_is_partial {
    ($($t:ty),* $(,)?) => {
        $(impl Partial for $t {
            type Partial = Option<$t>;
        })*
    };
}

complete_is_partial!(
    String, bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

impl Partial for serde_json::Value {
    type Partial = serde_json::Value;
}

impl<T: Partial> Partial for Vec<T> {
    type Partial = Vec<T::Partial>;
}

impl<T: Partial> Partial for Option<T> {
    type Partial = T::Partial;
}

impl<T: Partial> Partial for Box<T> {
    type Partial = T::Partial;
}

impl<V: Partial> Partial for HashMap<String, V> {
    type Partial = HashMap<String, V::Partial>;
}

impl<V: Partial> Partial for BTreeMap<String, V> {
    type Partial = BTreeMap<String, V::Partial>;
}

/// A struct with a derived partial form: what [`ExtractBuilder::partials`](crate::ExtractBuilder::partials)
/// yields snapshots of. Implemented by `#[derive(Partial)]`.
pub trait PartialObject: Partial {
    /// The struct of optional fields (`PartialS` for `S`).
    type Fields: DeserializeOwned
        + serde::Serialize
        + Default
        + Clone
        + PartialEq
        + std::fmt::Debug
        + Send
        + 'static;
}

/// A value given by a schema known only at run time: its snapshots are JSON values too.
impl PartialObject for serde_json::Value {
    type Fields = serde_json::Value;
}
