//! What an uploaded plugin must be: a WebAssembly component that compiles,
//! exports exactly one Herald world, and imports nothing beyond the host
//! interface and the WASI interfaces Rust's standard library links (which
//! the sandbox satisfies with nothing granted).

use wasmtime::component::Component;

use super::{PluginEngine, PluginError, PluginKind};

/// Import prefixes a plugin may have. WASI 0.2 as linked by Rust's std; the
/// sandbox grants none of its capabilities.
const ALLOWED_IMPORTS: &[&str] = &[
    "herald:plugin/host@0.1.",
    "herald:plugin/types@0.1.",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

fn invalid(detail: impl Into<String>) -> PluginError {
    PluginError::Invalid(detail.into())
}

/// Compiles `bytes` and says which world it is.
pub fn inspect(
    engine: &PluginEngine,
    bytes: &[u8],
) -> Result<(Component, PluginKind), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(invalid("not a WebAssembly binary"));
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(invalid(
            "a core WebAssembly module, not a component; build it for wasm32-wasip2 with the Herald SDK",
        ));
    }
    let component = Component::new(engine.engine(), bytes)
        .map_err(|err| invalid(format!("does not compile: {err:#}")))?;
    let ty = component.component_type();
    for (name, _) in ty.imports(engine.engine()) {
        if !ALLOWED_IMPORTS
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            return Err(invalid(format!(
                "imports `{name}`, which Herald does not provide to plugins"
            )));
        }
    }
    let mut kinds = Vec::new();
    for (name, _) in ty.exports(engine.engine()) {
        match name {
            "filter" => kinds.push(PluginKind::Filter),
            "transform" => kinds.push(PluginKind::Transform),
            "shape" => kinds.push(PluginKind::Delivery),
            _ => {}
        }
    }
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => {
            return Err(invalid(
                "exports no Herald world: expected a `filter`, `transform` or `shape` export of herald:plugin@0.1.0",
            ));
        }
        _ => return Err(invalid("exports more than one Herald world")),
    };
    Ok((component, kind))
}
