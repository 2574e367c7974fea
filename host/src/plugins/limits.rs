//! The memory budget of one tool call: the sum of all of its linear
//! memories, not each one alone (a component may hold several), enforced as
//! a trap that names the limit.

use wasmtime::ResourceLimiter;

/// Table elements any one table may hold: far beyond what tools need.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    /// Bytes held by every linear memory of the store.
    used: usize,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, used: 0 }
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            wasmtime::bail!(
                "it exceeded its memory limit of {} MiB (asked for {} MiB in all)",
                self.limit >> 20,
                next >> 20
            );
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
