//! Bindings for the three worlds of `wit/herald-plugin.wit`.
//!
//! Only `filter` generates the `types` and `host` interfaces; the other two
//! worlds reuse them through `with`, so a `Message` is one Rust type whatever
//! world the plugin exports.

// The canonical ABI flattens a message into 15 core arguments.
#[allow(clippy::too_many_arguments)]
pub mod filter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "filter",
        // `outgoing-request` is unused by this world, but the other two
        // worlds borrow this module's types.
        generate_unused_types: true,
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        default_bindings_module: "::herald_sdk::__private::filter",
        export_macro_name: "export",
    });
}

// The canonical ABI flattens a message into 15 core arguments.
#[allow(clippy::too_many_arguments)]
pub mod transform {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform",
        with: {
            "herald:plugin/types@0.1.0": crate::bindings::filter::herald::plugin::types,
            "herald:plugin/host@0.1.0": crate::bindings::filter::herald::plugin::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::herald_sdk::__private::transform",
        export_macro_name: "export",
    });
}

// The canonical ABI flattens a message into 15 core arguments.
#[allow(clippy::too_many_arguments)]
pub mod delivery {
    wit_bindgen::generate!({
        path: "../wit",
        world: "delivery",
        with: {
            "herald:plugin/types@0.1.0": crate::bindings::filter::herald::plugin::types,
            "herald:plugin/host@0.1.0": crate::bindings::filter::herald::plugin::host,
        },
        pub_export_macro: true,
        default_bindings_module: "::herald_sdk::__private::delivery",
        export_macro_name: "export",
    });
}
