//! The process itself: settings made once, first thing in `main`, before any thread starts.

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing), unless
/// `OSB_GATEWAY_HUGE_PAGES=on` keeps them.
///
/// The allocator asks for huge pages where the kernel allows them on request (`madvise`, the
/// usual default): each 2 MiB page touched by a few small objects then counts in full, and RSS
/// under load grew by some 30 MB for nothing the gateway uses. Small pages keep RSS what the
/// gateway holds, for fewer page faults' worth of CPU: `loadtests` measures both. A failure (an old
/// kernel, a seccomp filter) only leaves the default.
pub fn small_pages() {
    if std::env::var("OSB_GATEWAY_HUGE_PAGES").is_ok_and(|v| matches!(v.as_str(), "on" | "1" | "true")) {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("osb-gateway: transparent huge pages stay on: {e}");
    }
}
