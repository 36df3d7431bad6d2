//! The host's structured log: each line is tagged with the plugin's name and
//! version. Off wasm (in unit tests) lines go to stderr instead.

use crate::host::Level;

pub fn trace(message: &str) {
    write(Level::Trace, message);
}

pub fn debug(message: &str) {
    write(Level::Debug, message);
}

pub fn info(message: &str) {
    write(Level::Info, message);
}

pub fn warn(message: &str) {
    write(Level::Warn, message);
}

pub fn error(message: &str) {
    write(Level::Error, message);
}

fn write(level: Level, message: &str) {
    if cfg!(target_arch = "wasm32") {
        crate::host::log(level, message);
    } else {
        eprintln!("{level:?}: {message}");
    }
}
