//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps memory that was freed in each thread's arena for reuse, so
//! after a burst (SQLite page caches, a batch of 10,000 decoded events) the process
//! stays as big as it was at its peak. [`trim`] asks it to return what is free; the
//! store calls it when it has been idle for a few seconds (`store/idle.rs`), so an idle
//! server after a 1M-event load is back near its size at start.

/// Bytes of heap the process has allocated and not freed (glibc's `mallinfo2`: in-use
/// chunks of every arena plus mmapped ones), or `None` without glibc. Unlike RSS it
/// leaves out what the allocator keeps after a peak for reuse, so it is the figure a
/// leak makes grow. Walks the arenas' free lists under their locks: call it at a
/// scrape, not per request.
pub(crate) fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: `mallinfo2` takes no pointers and returns a struct by value; it
        // reads the allocator's own statistics under its locks, from any thread.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns free heap memory to the operating system (`malloc_trim(0)` with glibc;
/// nothing elsewhere). Costs a few milliseconds: call it when idle, not per request.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes no pointers and touches only the allocator's own
    // free lists, under the allocator's locks; it is safe to call from any thread at
    // any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Set in the child process that runs the measurement alone.
    const ALONE: &str = "EYE_MEMORY_TEST_ALONE";

    #[test]
    fn heap_in_use_counts_a_held_allocation_and_not_a_freed_one() {
        // Other tests of this binary allocate in parallel: 64 MiB stands out of them.
        const BIG: usize = 64 << 20;
        let before = super::heap_in_use().unwrap();
        let held = vec![1u8; BIG];
        let during = super::heap_in_use().unwrap();
        drop(std::hint::black_box(held));
        let after = super::heap_in_use().unwrap();
        assert!(during >= before + BIG as u64 / 2, "{before} -> {during}");
        assert!(after + (BIG as u64) / 2 <= during, "{during} -> {after}");
    }

    #[test]
    fn trim_gives_freed_small_blocks_back() {
        // RSS is the whole process's: other tests of this binary allocate and free in
        // parallel, so the measurement runs in a child process of this test binary
        // that runs this one test and nothing else.
        if std::env::var_os(ALONE).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "memory::tests::trim_gives_freed_small_blocks_back",
                ])
                .args(["--test-threads", "1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{log}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(log.contains("1 passed"), "the child ran the test: {log}");
            return;
        }
        // 128 MiB in 4 KiB blocks in a thread of its own (its own arena, as the
        // journal reader and SQLite's thread have), all freed but every 64th: the
        // survivors pin the arena, so glibc keeps the freed blocks resident.
        let survivors = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..32 * 1024).map(|i| vec![i as u8; 4096]).collect();
            blocks.into_iter().step_by(64).collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        let before = rss_kib();

        super::trim();

        let after = rss_kib();
        drop(survivors);
        // About 126 MiB were freed; nothing else runs in this process.
        assert!(
            after + 32 * 1024 < before,
            "RSS {before} KiB before, {after} KiB after the trim"
        );
    }
}
