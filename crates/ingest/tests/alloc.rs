//! The ingest path allocates nothing per frame in steady state: a realistic publish (720p H.264
//! in 4096-byte chunks, many GOPs, socket-sized reads) goes through the session and the video
//! feed into a writer that keeps each GOP's frames until the next keyframe, as the hub does, and
//! the heap allocations made on the way are counted with a wrapper around the system allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{record, GopKeeper, Receiver};

/// Counts the allocations (and growing reallocations) made on a thread while it asks to.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread may be tearing down its locals.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            note();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn steady_state_ingest_allocates_far_less_than_once_per_frame() {
    const WARM_UP_GOPS: usize = 2;
    const GOPS: usize = 20;
    let rec = record(GOPS);
    let mut rx = Receiver::new(GopKeeper::default());
    rx.receive(&rec.setup);
    // Buffers grow to their working size here.
    for gop in &rec.gops[..WARM_UP_GOPS] {
        rx.receive(gop);
    }
    let before = rx.writer.frames;
    let allocations = allocations_in(|| {
        for gop in &rec.gops[WARM_UP_GOPS..] {
            rx.receive(gop);
        }
    });
    let frames = rx.writer.frames - before;
    assert_eq!(frames, (GOPS - WARM_UP_GOPS) * rec.frames_per_gop);
    assert_eq!(rx.writer.gop.len(), rec.frames_per_gop, "whole GOPs kept");
    println!(
        "{allocations} allocations for {frames} frames ({:.3} per frame, {} MB)",
        allocations as f64 / frames as f64,
        rx.writer.bytes / 1_000_000
    );
    assert!(
        allocations < frames as u64 / 10,
        "{allocations} allocations for {frames} frames: the ingest path allocates per frame"
    );
}
