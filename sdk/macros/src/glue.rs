use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, FnArg, ItemFn, ReturnType, Signature, Type};

#[derive(Clone, Copy)]
pub enum World {
    Filter,
    Transform,
    Delivery,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Transform => "transform",
            World::Delivery => "delivery",
        }
    }

    fn signature(self) -> &'static str {
        match self {
            World::Filter => "fn(&Message[, Config]) -> Result<Verdict, String>",
            World::Transform => "fn(Message[, Config]) -> Result<Message, String>",
            World::Delivery => {
                "fn(&Message, OutgoingRequest[, Config]) -> Result<Option<OutgoingRequest>, String>"
            }
        }
    }

    /// Parameters before the optional config.
    fn fixed(self) -> usize {
        match self {
            World::Delivery => 2,
            _ => 1,
        }
    }
}

pub fn expand(world: World, attr: TokenStream, item: TokenStream) -> TokenStream {
    let result = syn::parse2::<ItemFn>(item.clone())
        .and_then(|func| check(world, &attr, &func.sig).map(|()| glue(world, &func)));
    match result {
        Ok(glue) => quote! { #item #glue },
        // Keeping the fn stops a signature error from cascading into
        // "cannot find function" errors at its callers.
        Err(error) => {
            let error = error.into_compile_error();
            quote! { #item #error }
        }
    }
}

fn check(world: World, attr: &TokenStream, sig: &Signature) -> syn::Result<()> {
    let name = world.name();
    let expected = world.signature();
    if !attr.is_empty() {
        return Err(Error::new_spanned(
            attr,
            format!("#[{name}] takes no arguments"),
        ));
    }
    if let Some(token) = sig.asyncness {
        let why = "plugin calls are synchronous";
        return Err(Error::new(
            token.span,
            format!("a #[{name}] fn cannot be async: {why}"),
        ));
    }
    if let Some(token) = sig.unsafety {
        return Err(Error::new(
            token.span,
            format!("a #[{name}] fn cannot be unsafe"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let message = format!("a #[{name}] fn cannot be generic; expected `{expected}`");
        return Err(Error::new_spanned(&sig.generics, message));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(Error::new_spanned(
            variadic,
            format!("expected `{expected}`"),
        ));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        let message = format!("a #[{name}] fn is a free fn, not a method");
        return Err(Error::new_spanned(receiver, message));
    }
    if let ReturnType::Default = sig.output {
        let message = format!("a #[{name}] fn needs a return type: expected `{expected}`");
        return Err(Error::new(sig.paren_token.span.close(), message));
    }
    let count = sig.inputs.len();
    if count != world.fixed() && count != world.fixed() + 1 {
        let span = if count == 0 {
            sig.paren_token.span.join()
        } else {
            sig.inputs.span()
        };
        let message = format!("expected `{expected}`, found {count} parameter(s)");
        return Err(Error::new(span, message));
    }
    Ok(())
}

fn glue(world: World, func: &ItemFn) -> TokenStream {
    let ident = &func.sig.ident;
    let types: Vec<&Type> = func.sig.inputs.iter().map(arg_type).collect();
    let span = |index: usize| types.get(index).map_or(Span::call_site(), |ty| ty.span());
    let sdk = quote!(::herald_sdk);
    // Each argument carries its parameter's span, so a type mismatch points
    // at the parameter the author wrote.
    let mut args = match world {
        World::Filter => vec![quote_spanned!(span(0)=> &message)],
        World::Transform => vec![quote_spanned!(span(0)=> message)],
        World::Delivery => vec![
            quote_spanned!(span(0)=> &message),
            quote_spanned!(span(1)=> request),
        ],
    };
    if let Some(config) = types.get(world.fixed()) {
        args.push(quote_spanned!(config.span()=> #sdk::config::<#config>()?));
    }
    let output = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let call = quote_spanned!(output=> #ident(#(#args),*));
    let (module, export) = match world {
        World::Filter => (
            quote!(filter),
            quote! {
                fn filter(message: #sdk::Message) -> Result<#sdk::Verdict, String> { #call }
            },
        ),
        World::Transform => (
            quote!(transform),
            quote! {
                fn transform(message: #sdk::Message) -> Result<#sdk::Message, String> { #call }
            },
        ),
        World::Delivery => (
            quote!(delivery),
            quote! {
                fn shape(
                    message: #sdk::Message,
                    request: #sdk::OutgoingRequest,
                ) -> Result<Option<#sdk::OutgoingRequest>, String> { #call }
            },
        ),
    };
    let bindings = quote!(#sdk::__private::#module);
    quote! {
        const _: () = {
            enum HeraldPlugin {}
            impl #bindings::Guest for HeraldPlugin { #export }
            #bindings::export!(HeraldPlugin with_types_in #bindings);
        };
    }
}

fn arg_type(arg: &FnArg) -> &Type {
    match arg {
        FnArg::Typed(typed) => &typed.ty,
        // `check` refuses receivers before glue is built.
        FnArg::Receiver(receiver) => &receiver.ty,
    }
}
