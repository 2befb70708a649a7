//! The process's memory allocator: jemalloc, for libtorch's C++ allocations as well as ours.
//!
//! Its `malloc`/`free` symbols are unprefixed, so the dynamic linker binds libtorch's calls to
//! them too. Measured on MiniLM under 8 then 64 clients (2 cores): glibc malloc peaked at
//! 1.0-1.5 GiB RSS for 372 MiB of live heap (freed batch temporaries stranded in per-thread
//! arenas), jemalloc at 0.84 GiB, and 5% more pairs/s.

/// jemalloc for every allocation of the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string that jemalloc reads at its first allocation.
#[repr(transparent)]
pub struct ConfString(*const std::ffi::c_char);

// SAFETY: it points at a static, immutable C string literal.
unsafe impl Sync for ConfString {}

/// jemalloc's options (the `MALLOC_CONF` environment variable still overrides them): freed pages
/// stay mapped instead of decaying back to the system over 10 s. With decay, every batch's
/// large temporaries faulted in fresh zeroed pages and MiniLM lost 25% of its pairs/s; memory
/// goes back instead every `--malloc-trim-secs` ([`release_free_memory`]).
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: ConfString = ConfString(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

/// Returns every arena's free pages to the system (jemalloc `arena.<all>.purge`).
pub fn release_free_memory() {
    /// `MALLCTL_ARENAS_ALL`: the arena index that means all of them.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a void mallctl takes no input or output buffers.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}
