//! Hostile plugins that Rust cannot express, assembled from WAT at test
//! time. The ones Rust can express are crates in `tests/fixtures/plugins/`;
//! get those with [`crate::plugin_wasm`].

use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

const WIT: &str = include_str!("../../wit/herald-plugin.wit");
const TABLE_BOMB: &str = include_str!("../fixtures/table-bomb.wat");

/// A `filter` component whose `filter` grows a funcref table 1024 entries at
/// a time until growth is refused, then traps with `unreachable`.
pub fn table_bomb_component() -> Vec<u8> {
    component(TABLE_BOMB, "filter")
}

fn component(wat: &str, world: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("herald-plugin.wit", WIT)
        .expect("the WIT parses");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("the world exists");
    let mut module = wat::parse_str(wat).expect("the WAT parses");
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .expect("the world embeds");
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .expect("the module encodes as a component")
}

#[cfg(test)]
mod tests {
    use wasmparser::{Parser, Payload, Validator, WasmFeatures};

    #[test]
    fn table_bomb_is_a_filter_component() {
        let bytes = super::table_bomb_component();
        let features = WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL;
        Validator::new_with_features(features)
            .validate_all(&bytes)
            .expect("valid component");
        let mut exports = Vec::new();
        for payload in Parser::new(0).parse_all(&bytes) {
            if let Payload::ComponentExportSection(section) = payload.expect("parses") {
                for export in section {
                    exports.push(export.expect("export").name.name.to_owned());
                }
            }
        }
        assert_eq!(exports, ["filter"]);
    }
}
