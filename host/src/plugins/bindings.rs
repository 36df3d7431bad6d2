//! Host bindings generated from `wit/`, the one source of truth. The
//! transform and delivery worlds reuse the filter world's `types` and `host`
//! modules, so all three share one `Host` trait and one set of types.

mod filter_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
    });
}

mod transform_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        with: {
            "herald:plugin/types": super::filter_world::herald::plugin::types,
            "herald:plugin/host": super::filter_world::herald::plugin::host,
        },
    });
}

mod delivery_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "delivery",
        with: {
            "herald:plugin/types": super::filter_world::herald::plugin::types,
            "herald:plugin/host": super::filter_world::herald::plugin::host,
        },
    });
}

pub use delivery_world::{Delivery, DeliveryPre};
pub use filter_world::herald::plugin::host::{self, Level};
pub use filter_world::herald::plugin::types::{Message, OutgoingRequest, Verdict};
pub use filter_world::{Filter, FilterPre};
pub use transform_world::{Transform, TransformPre};
