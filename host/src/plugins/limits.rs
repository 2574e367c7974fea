//! The memory budget of one tool call: the sum of all of its linear
//! memories and tables, not each one alone (a component may hold several),
//! enforced as a trap that names the limit.

use wasmtime::ResourceLimiter;

/// Table elements any one table may hold: far beyond what tools need.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// What one table element is charged: a reference plus the runtime's
/// bookkeeping, rounded up. Without a charge, tables were free memory.
const TABLE_ELEMENT_BYTES: usize = 16;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    /// Bytes held by every linear memory and table of the store.
    used: usize,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, used: 0 }
    }

    /// Moves one memory or table from `current` to `desired` bytes, or
    /// fails naming the limit.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            wasmtime::bail!(
                "it exceeded its memory limit of {} MiB (asked for {} MiB in all, tables included)",
                self.limit >> 20,
                next >> 20
            );
        }
        self.used = next;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!(
                "it exceeded the limit of {MAX_TABLE_ELEMENTS} elements in one table (asked for {desired})"
            );
        }
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    #[test]
    fn the_budget_is_shared_by_every_memory() {
        let mut b = MemoryBudget::new(10 << 20);
        assert!(b.memory_growing(0, 4 << 20, None).unwrap());
        assert!(b.memory_growing(0, 4 << 20, None).unwrap());
        // The first memory grows from 4 to 6 MiB: 10 MiB in all, allowed.
        assert!(b.memory_growing(4 << 20, 6 << 20, None).unwrap());
        let err = b.memory_growing(4 << 20, 5 << 20, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 10 MiB"), "{err}");
    }

    #[test]
    fn tables_count_against_the_same_budget_as_memories() {
        let mut b = MemoryBudget::new(1 << 20);
        assert!(b.memory_growing(0, 512 << 10, None).unwrap());
        // 32768 elements of 16 bytes: the other 512 KiB.
        assert!(b.table_growing(0, 32 << 10, None).unwrap());
        let err = b.table_growing(32 << 10, (32 << 10) + 1, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 1 MiB"), "{err}");
        let err = b
            .memory_growing(512 << 10, (512 << 10) + 1, None)
            .unwrap_err();
        assert!(err.to_string().contains("memory limit of 1 MiB"), "{err}");
    }

    /// A real guest growing a real table with `table.grow`, as a hostile
    /// component could (Rust guests cannot emit it; the core wasm can).
    #[test]
    fn a_guest_growing_a_table_is_stopped_at_the_memory_limit() {
        let engine = Engine::default();
        let wasm = wat::parse_str(
            r#"(module
                 (memory 8)
                 (table $t 0 funcref)
                 (func (export "grow") (param i32) (result i32)
                   (table.grow $t (ref.null func) (local.get 0))))"#,
        )
        .unwrap();
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, MemoryBudget::new(1 << 20));
        store.limiter(|b| b);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        // 512 KiB of memory (8 pages) and 16384 elements (256 KiB): fits.
        assert_eq!(grow.call(&mut store, 16 << 10).unwrap(), 0);
        // Another 32768 elements would be 1.25 MiB in all.
        let err = grow.call(&mut store, 32 << 10).unwrap_err();
        assert!(
            format!("{err:?}").contains("memory limit of 1 MiB"),
            "{err:?}"
        );
    }
}
