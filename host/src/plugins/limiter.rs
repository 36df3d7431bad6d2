//! Per-call resource limits. Hitting one is recorded, so a trap that follows
//! (an allocation failure, say) is reported as the limit it really was.

use wasmtime::ResourceLimiter;

/// Most table elements a plugin may hold; Rust plugins need a few hundred.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory, in bytes, across the call's instance.
    pub memory_bytes: usize,
    /// Wall-clock CPU budget, enforced by epoch deadline.
    pub timeout_ms: u64,
    /// Largest body (or request body) a plugin may return.
    pub output_bytes: usize,
}

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory,
    Table,
}

#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    pub hit: Option<LimitHit>,
}

impl CallLimiter {
    pub fn new(limits: &CallLimits) -> Self {
        CallLimiter {
            memory_bytes: limits.memory_bytes,
            hit: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::Table);
            return Ok(false);
        }
        Ok(true)
    }
}
