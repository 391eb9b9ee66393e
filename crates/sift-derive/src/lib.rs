//! `#[derive(Partial)]`: the partial form of a struct, for streamed extraction.
//!
//! For `struct S { a: A, b: B }` it generates
//!
//! ```text
//! #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
//! #[serde(default)]
//! pub struct PartialS { pub a: <A as Partial>::Partial, pub b: <B as Partial>::Partial }
//! impl Partial for S { type Partial = Option<PartialS>; }
//! impl PartialObject for S { type Fields = PartialS; }
//! ```
//!
//! so a `String` field becomes `Option<String>`, a nested struct `Option<PartialInner>` (the
//! nested struct derives `Partial` too), a `Vec<Inner>` `Vec<Option<PartialInner>>`. The
//! struct's `#[serde(rename_all)]` and each field's `#[serde(rename, alias)]` carry over, so
//! snapshots read the same JSON.
//!
//! ```
//! use sift_core::PartialObject;
//! use sift_derive::Partial;
//!
//! #[derive(serde::Deserialize, Partial)]
//! struct Address { city: String }
//!
//! #[derive(serde::Deserialize, Partial)]
//! struct User { name: String, age: u32, address: Address, tags: Vec<String> }
//!
//! let snapshot: <User as PartialObject>::Fields =
//!     serde_json::from_str(r#"{"name": "Al", "address": {}}"#).unwrap();
//! assert_eq!(snapshot.name.as_deref(), Some("Al"));
//! assert_eq!(snapshot.age, None);
//! assert_eq!(snapshot.address.unwrap().city, None);
//! assert!(snapshot.tags.is_empty());
//! ```

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{Attribute, Data, DeriveInput, Fields, parse_macro_input};

/// Derives `sift_core::Partial` and `sift_core::PartialObject` for a struct with named fields.
#[proc_macro_derive(Partial)]
pub fn derive_partial(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `#[serde(...)]` attributes worth copying: only naming (`rename`, `rename_all`, `alias`),
/// since others (`with`, `default = ...`, `flatten`) would not fit the partial types.
fn naming_attrs(
    attrs: &[Attribute],
    allowed: &[&str],
) -> syn::Result<Vec<proc_macro2::TokenStream>> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let mut keep = Vec::new();
        attr.parse_nested_meta(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            if meta.input.peek(syn::Token![=]) {
                let value: syn::Expr = meta.value()?.parse()?;
                if allowed.contains(&name.as_str()) {
                    let path = &meta.path;
                    keep.push(quote!(#path = #value));
                }
            } else if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: proc_macro2::TokenStream = content.parse()?;
            }
            Ok(())
        })?;
        if !keep.is_empty() {
            out.push(quote!(#[serde(#(#keep),*)]));
        }
    }
    Ok(out)
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Partial can be derived for structs with named fields only",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Partial can be derived for structs with named fields only",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "Partial cannot be derived for generic structs yet",
        ));
    }
    let name = &input.ident;
    let vis = &input.vis;
    let partial = format_ident!("Partial{}", name);
    let container_attrs = naming_attrs(&input.attrs, &["rename_all"])?;
    let mut field_tokens = Vec::new();
    for field in &fields.named {
        let ident = field.ident.as_ref();
        let ty = &field.ty;
        let attrs = naming_attrs(&field.attrs, &["rename", "alias"])?;
        field_tokens.push(quote! {
            #(#attrs)*
            pub #ident: <#ty as ::sift_core::Partial>::Partial
        });
    }
    let doc = format!(
        "The partial form of [`{name}`]: every field optional, filled in as a stream arrives."
    );
    Ok(quote! {
        #[doc = #doc]
        #[allow(missing_docs)]
        #[derive(Debug, Clone, Default, PartialEq, ::sift_core::__private::serde::Serialize, ::sift_core::__private::serde::Deserialize)]
        #[serde(crate = "::sift_core::__private::serde", default)]
        #(#container_attrs)*
        #vis struct #partial {
            #(#field_tokens,)*
        }

        impl ::sift_core::Partial for #name {
            type Partial = ::core::option::Option<#partial>;
        }

        impl ::sift_core::PartialObject for #name {
            type Fields = #partial;
        }
    })
}
