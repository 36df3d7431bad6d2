//! The attributes of `herald-sdk`. Each keeps the fn as written, so unit
//! tests call it as plain Rust, and adds the glue that exports it as the
//! world's function: it lends the fn the message (and request), parses a
//! typed config parameter from the host's config, and hands back the result.

use proc_macro::TokenStream;

mod glue;

use glue::World;

/// `fn(&Message[, Config]) -> Result<Verdict, String>`, exported as the
/// `filter` world.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    glue::expand(World::Filter, attr.into(), item.into()).into()
}

/// `fn(Message[, Config]) -> Result<Message, String>`, exported as the
/// `transform` world.
#[proc_macro_attribute]
pub fn transform(attr: TokenStream, item: TokenStream) -> TokenStream {
    glue::expand(World::Transform, attr.into(), item.into()).into()
}

/// `fn(&Message, OutgoingRequest[, Config]) -> Result<Option<OutgoingRequest>,
/// String>`, exported as the `delivery` world; `None` skips the delivery.
#[proc_macro_attribute]
pub fn delivery(attr: TokenStream, item: TokenStream) -> TokenStream {
    glue::expand(World::Delivery, attr.into(), item.into()).into()
}
