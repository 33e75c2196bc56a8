//! glibc malloc settings for a long-running server that decodes now and then.
//!
//! A picture allocates a few large buffers (decoded planes, frame pools, encoder output) and frees
//! them a moment later. By default glibc raises its mmap threshold each time such a block is
//! freed, after which the next ones come from the heap, and with one arena per thread freed heap
//! memory stays resident in many places. Measured with 8 streams pictured every 5 s (720p,
//! `--features full`): 47.8 MiB PSS by default, 33.5 MiB with these settings, pictures and CPU
//! unchanged. Setting them by hand (rather than via environment variables) keeps `cargo run`
//! working as measured; a user's own malloc tuning in the environment (`GLIBC_TUNABLES` with a
//! `glibc.malloc.` setting, or one of the `MALLOC_*` variables for these three) wins: then none is
//! set here.

/// Blocks of at least this size are mmapped, and unmapped when freed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory above this size at the top of the heap is returned to the OS.
pub const TRIM_THRESHOLD: i32 = 128 * 1024;
/// At most this many malloc arenas (glibc's default is 8 per core).
pub const ARENA_MAX: i32 = 2;

/// Applies the settings; call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const OURS: [&str; 3] = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_ARENA_MAX",
        ];
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if tunables.contains("glibc.malloc.") || OURS.iter().any(|k| std::env::var_os(k).is_some())
        {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; it is called before any other
        // thread exists, as glibc asks for M_ARENA_MAX.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}
