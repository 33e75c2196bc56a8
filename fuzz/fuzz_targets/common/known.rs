//! Known crashes: found by these targets, reported, not yet fixed in the product or its
//! dependencies. By default they crash the target like any other bug (so a fix shows as the
//! crash going away and a regression as it coming back). With `FUZZ_SKIP_KNOWN=1` a panic at one
//! of the listed places is swallowed and the input treated as refused, so fuzzing can go on past
//! it to find other bugs.
//!
//! libfuzzer-sys installs a panic hook that aborts; this wraps that hook and lets only the listed
//! panics unwind to `tolerate`.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A panic site: a path suffix of the source file and the line.
pub type Site = (&'static str, u32);

thread_local! {
    static TOLERATED: Cell<&'static [Site]> = const { Cell::new(&[]) };
    static HIT: Cell<bool> = const { Cell::new(false) };
}

/// True when `FUZZ_SKIP_KNOWN=1`.
pub fn skip_known() -> bool {
    std::env::var_os("FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1")
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let known = info.location().is_some_and(|l| {
                TOLERATED.with(|t| {
                    t.get()
                        .iter()
                        .any(|(file, line)| l.file().ends_with(file) && l.line() == *line)
                })
            });
            if known {
                HIT.with(|h| h.set(true));
                return;
            }
            previous(info);
        }));
    });
}

/// Runs `f`. Without `FUZZ_SKIP_KNOWN=1` this is just `Some(f())`. With it, a panic at one of
/// `sites` returns `None` instead of crashing; any other panic still crashes.
pub fn tolerate<R>(sites: &'static [Site], f: impl FnOnce() -> R) -> Option<R> {
    if !skip_known() {
        return Some(f());
    }
    install_hook();
    TOLERATED.with(|t| t.set(sites));
    HIT.with(|h| h.set(false));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    TOLERATED.with(|t| t.set(&[]));
    match result {
        Ok(r) => Some(r),
        Err(payload) if HIT.with(|h| h.get()) => {
            drop(payload);
            None
        }
        Err(payload) => panic::resume_unwind(payload),
    }
}
