//! `#[derive(Collection)]`: a synced collection declared once, on the struct its rows
//! are read as. Use it through the core crate, `sync::Collection`:
//!
//! ```ignore
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sync::Collection)]
//! #[collection(name = "notes", index = "board_id, created_at, id")]
//! pub struct Note {
//!     pub id: String,
//!     pub board_id: String,
//!     #[collection(max_bytes = 2000)]
//!     pub text: String,
//!     pub done: bool,
//!     pub created_at: i64,
//! }
//!
//! // Note::COLLECTION == "notes"; Note::collection() is the `sync::Collection`
//! // (columns in field order, the primary key `id`, the index, the byte limit).
//! ```
//!
//! Field types map to column types: `String` text; `i8`..`i64`, `u8`..`u32`,
//! `isize` integer; `f32`, `f64` real; `bool` boolean; `serde_json::Value` (or any
//! field marked `#[collection(json)]`) JSON. Every column is NOT NULL, so an
//! `Option` is refused: an absent value is an absent row. Struct attributes: `name`
//! (required), `id` (the primary key's field, default `id`), `index` (columns, comma
//! separated; repeat it for more indexes). Field attributes: `max_bytes = N`, `json`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, Type, parse_macro_input};

#[proc_macro_derive(Collection, attributes(collection))]
pub fn derive_collection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

struct Column {
    name: String,
    kind: proc_macro2::TokenStream,
    max_bytes: Option<usize>,
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let mut name: Option<LitStr> = None;
    let mut id = "id".to_string();
    let mut indexes: Vec<Vec<String>> = Vec::new();
    for attr in input.attrs.iter().filter(|attr| attr.path().is_ident("collection")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("id") {
                id = meta.value()?.parse::<LitStr>()?.value();
            } else if meta.path.is_ident("index") {
                let list: LitStr = meta.value()?.parse()?;
                let columns: Vec<String> =
                    list.value().split(',').map(|column| column.trim().to_string()).collect();
                if columns.iter().any(String::is_empty) {
                    return Err(syn::Error::new(list.span(), "index = \"column, column, ...\""));
                }
                indexes.push(columns);
            } else {
                return Err(meta.error("expected `name = \"...\"`, `id = \"...\"` or `index = \"...\"`"));
            }
            Ok(())
        })?;
    }
    let Some(name) = name else {
        return Err(syn::Error::new(Span::call_site(), "#[collection(name = \"...\")] names the collection"));
    };
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Collection)] is for structs with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Collection)] is for structs with named fields",
        ));
    };
    let mut columns = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else { continue };
        let mut json = false;
        let mut max_bytes = None;
        for attr in field.attrs.iter().filter(|attr| attr.path().is_ident("collection")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("json") {
                    json = true;
                } else if meta.path.is_ident("max_bytes") {
                    max_bytes = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
                } else {
                    return Err(meta.error("expected `json` or `max_bytes = N`"));
                }
                Ok(())
            })?;
        }
        let kind = if json { quote!(Json) } else { column_type(&field.ty)? };
        columns.push(Column {
            name: ident.to_string().trim_start_matches("r#").to_string(),
            kind,
            max_bytes,
        });
    }
    let known = |column: &str| columns.iter().any(|c| c.name == column);
    if !known(&id) {
        return Err(syn::Error::new(Span::call_site(), format!("the primary key `{id}` is not a field")));
    }
    for column in indexes.iter().flatten() {
        if !known(column) {
            return Err(syn::Error::new(
                name.span(),
                format!("the index names `{column}`, which is not a field"),
            ));
        }
    }
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let column_calls =
        columns.iter().map(|Column { name, kind, .. }| quote!(.column(#name, ::sync::ColumnType::#kind)));
    let limits = columns.iter().filter_map(|Column { name, max_bytes, .. }| {
        max_bytes.map(|bytes| quote!(.max_bytes(#name, #bytes)))
    });
    let index_calls = indexes.iter().map(|columns| quote!(.index(&[#(#columns),*])));
    let doc = format!("The `{}` collection, as declared on [`{ty}`].", name.value());
    Ok(quote! {
        impl #impl_generics #ty #ty_generics #where_clause {
            /// The collection's name.
            pub const COLLECTION: &'static str = #name;

            #[doc = #doc]
            pub fn collection() -> ::sync::Collection {
                ::sync::Collection::new(#name, #id)
                    #(#column_calls)*
                    #(#limits)*
                    #(#index_calls)*
            }
        }
    })
}

/// The column type of a field's Rust type.
fn column_type(ty: &Type) -> syn::Result<proc_macro2::TokenStream> {
    let refused = |why: &str| Err(syn::Error::new_spanned(ty, why));
    let Type::Path(path) = ty else {
        return refused(
            "a column is String, an integer, a float, bool or serde_json::Value (or #[collection(json)])",
        );
    };
    let Some(last) = path.path.segments.last() else { return refused("an unnamed type") };
    Ok(match last.ident.to_string().as_str() {
        "String" => quote!(Text),
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "isize" => quote!(Integer),
        "f32" | "f64" => quote!(Real),
        "bool" => quote!(Boolean),
        "Value" => quote!(Json),
        "Option" => return refused("columns are NOT NULL: an absent value is an absent row, not an Option"),
        "u64" | "usize" | "u128" | "i128" => {
            return refused("integers are stored as i64: use i64 (or a smaller type)");
        }
        _ => {
            return refused(
                "a column is String, an integer, a float, bool or serde_json::Value; mark other serde types #[collection(json)]",
            );
        }
    })
}
