//! The wasmtime host: one shared `Engine`, components compiled once and
//! cached by sha256, and a fresh, pre-instantiated instance per call.
//!
//! A fresh instance per call costs tens of microseconds and means a plugin
//! can never see state left by an earlier call or another message, and a
//! trap can never leave a poisoned instance behind.
//!
//! CPU is counted in fuel (wasm instructions), not wall time: a loaded host
//! must not fail a plugin that would finish in time on an idle one, and a
//! publish must not start failing because the machine is busy. An epoch
//! deadline, advanced by a background thread every millisecond, backs it up
//! with a generous wall-clock bound.
//!
//! Calls run on tokio's blocking pool, so a guest that spins holds one
//! blocking thread until its budget runs out and never a runtime worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level};
use super::limiter::{CallLimiter, CallLimits, LimitHit};
use super::{PluginError, PluginKind};

/// How often the epoch advances; the unit of the wall-clock backstop.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Fuel per millisecond of CPU limit: roughly what this machine class runs
/// in a millisecond of straight-line wasm, measured with `herald plugin run`.
pub const FUEL_PER_MS: u64 = 2_000_000;
/// Wall-clock backstop, as a multiple of the CPU limit (plus one second).
const WALL_CLOCK_FACTOR: u64 = 20;
/// Bytes of stdout/stderr kept per call for the plugin log.
const STDIO_CAPTURE: usize = 16 * 1024;

/// What a running call can reach: an empty WASI context, its config, and
/// its limits.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    config: String,
    label: Arc<str>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.label;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config.clone()
    }
}

/// A component compiled and linked, ready to instantiate.
pub enum Compiled {
    Filter(bindings::FilterPre<PluginState>),
    Transform(bindings::TransformPre<PluginState>),
    Delivery(bindings::DeliveryPre<PluginState>),
}

impl Compiled {
    pub fn kind(&self) -> PluginKind {
        match self {
            Compiled::Filter(_) => PluginKind::Filter,
            Compiled::Transform(_) => PluginKind::Transform,
            Compiled::Delivery(_) => PluginKind::Delivery,
        }
    }
}

/// One call's inputs besides the message.
pub struct Invocation {
    /// `name@version`, for logs and error reasons.
    pub label: Arc<str>,
    /// The attachment's JSON config.
    pub config: String,
    pub limits: CallLimits,
}

/// The engine, linker and epoch ticker, shared by every call.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    ticking: Arc<AtomicBool>,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new() -> Result<PluginEngine, PluginError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(true);
        // A deep recursion traps well before it could exhaust the thread.
        config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config).map_err(|err| PluginError::Engine(err.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| PluginError::Engine(err.to_string()))?;
        forbid_sleep(&mut linker).map_err(|err| PluginError::Engine(err.to_string()))?;
        bindings::host::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|err| PluginError::Engine(err.to_string()))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (weak_engine, flag) = (engine.weak(), ticking.clone());
        std::thread::Builder::new()
            .name("herald-plugin-epoch".into())
            .spawn(move || {
                while flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|err| PluginError::Engine(err.to_string()))?;
        Ok(PluginEngine {
            engine,
            linker,
            ticking,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and links a validated component of `kind`.
    pub fn prepare(
        &self,
        component: &Component,
        kind: PluginKind,
    ) -> Result<Compiled, PluginError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|err| PluginError::Invalid(format!("cannot be linked: {err:#}")))?;
        let wrap =
            |err: wasmtime::Error| PluginError::Invalid(format!("does not fit its world: {err:#}"));
        Ok(match kind {
            PluginKind::Filter => Compiled::Filter(bindings::FilterPre::new(pre).map_err(wrap)?),
            PluginKind::Transform => {
                Compiled::Transform(bindings::TransformPre::new(pre).map_err(wrap)?)
            }
            PluginKind::Delivery => {
                Compiled::Delivery(bindings::DeliveryPre::new(pre).map_err(wrap)?)
            }
        })
    }

    fn store(
        &self,
        invocation: &Invocation,
    ) -> (Store<PluginState>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE);
        // Nothing is granted: no preopens, no environment, no arguments, no
        // sockets, no name lookup. stdout and stderr are captured for the log.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(&invocation.limits),
            config: invocation.config.clone(),
            label: invocation.label.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let timeout_ms = invocation.limits.timeout_ms;
        store
            .set_fuel(timeout_ms.saturating_mul(FUEL_PER_MS))
            .expect("fuel is enabled on the engine");
        let wall_ms = timeout_ms.saturating_mul(WALL_CLOCK_FACTOR) + 1000;
        store.set_epoch_deadline(wall_ms.div_ceil(EPOCH_TICK.as_millis() as u64));
        store.epoch_deadline_trap();
        (store, stdout, stderr)
    }

    /// Runs `call` in a fresh instance on the blocking pool, mapping traps
    /// and limits to typed errors.
    pub async fn run<T, F>(
        self: &Arc<Self>,
        invocation: Invocation,
        call: F,
    ) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store<PluginState>) -> wasmtime::Result<Result<T, String>> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (mut store, stdout, stderr) = this.store(&invocation);
            let result = call(&mut store);
            log_stdio(&invocation.label, &stdout, &stderr);
            let hit = store.data().limiter.hit;
            match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(reason)) => Err(PluginError::Returned(reason)),
                Err(err) => Err(classify(err, hit, &invocation.limits)),
            }
        })
        .await
        .map_err(|err| PluginError::Engine(format!("plugin call panicked: {err}")))?
    }
}

impl PluginEngine {
    pub async fn call_filter(
        self: &Arc<Self>,
        pre: &bindings::FilterPre<PluginState>,
        invocation: Invocation,
        message: &bindings::Message,
    ) -> Result<bindings::Verdict, PluginError> {
        let (pre, message) = (pre.clone(), message.clone());
        self.run(invocation, move |store| {
            pre.instantiate(&mut *store)?.call_filter(store, &message)
        })
        .await
    }

    pub async fn call_transform(
        self: &Arc<Self>,
        pre: &bindings::TransformPre<PluginState>,
        invocation: Invocation,
        message: &bindings::Message,
    ) -> Result<bindings::Message, PluginError> {
        let (pre, message) = (pre.clone(), message.clone());
        self.run(invocation, move |store| {
            pre.instantiate(&mut *store)?
                .call_transform(store, &message)
        })
        .await
    }

    pub async fn call_shape(
        self: &Arc<Self>,
        pre: &bindings::DeliveryPre<PluginState>,
        invocation: Invocation,
        message: &bindings::Message,
        request: bindings::OutgoingRequest,
    ) -> Result<Option<bindings::OutgoingRequest>, PluginError> {
        let (pre, message) = (pre.clone(), message.clone());
        self.run(invocation, move |store| {
            pre.instantiate(&mut *store)?
                .call_shape(store, &message, &request)
        })
        .await
    }
}

/// WASI interface whose timers are replaced; the linker matches any 0.2.x
/// import of it to this version.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Makes the clock's timers trap. A sleep (`std::thread::sleep` is a timer
/// plus a blocking poll) waits inside the host, where neither fuel nor the
/// epoch deadline reaches, so one sleeping plugin could hold a thread, and
/// the publish or delivery waiting on it, for as long as it liked.
fn forbid_sleep(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    const REFUSAL: &str = "plugins may not sleep or wait on timers";
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(REFUSAL))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(REFUSAL))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn log_stdio(label: &str, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
    for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let bytes = pipe.contents();
        if !bytes.is_empty() {
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(plugin = label, stream, "{line}");
            }
        }
    }
}

fn classify(err: wasmtime::Error, hit: Option<LimitHit>, limits: &CallLimits) -> PluginError {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if matches!(trap, Trap::OutOfFuel | Trap::Interrupt) {
            return PluginError::Timeout(limits.timeout_ms);
        }
        match hit {
            Some(LimitHit::Memory) => return PluginError::MemoryExceeded(limits.memory_bytes),
            Some(LimitHit::Table) => return PluginError::TableExceeded,
            None => {}
        }
        return PluginError::Trap(format!("{trap}"));
    }
    match hit {
        Some(LimitHit::Memory) => PluginError::MemoryExceeded(limits.memory_bytes),
        Some(LimitHit::Table) => PluginError::TableExceeded,
        None => PluginError::Trap(format!("{err:#}")),
    }
}
