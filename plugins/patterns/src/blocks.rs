//! The guest's global allocator: free lists of small blocks in front of the system allocator.
//!
//! Every request crosses into the component as a dozen freshly allocated strings that are freed
//! when the batch ends, and the matching loop allocates a few small buffers; with the default
//! allocator (dlmalloc) that bookkeeping was a tenth of the detector's time. Small blocks are now
//! taken from and returned to one singly linked free list per size class, which costs a few
//! instructions.
//!
//! Invariants:
//! - A block of class `c` is `16 << c` bytes, 16-byte aligned, and only ever serves requests of
//!   class `c`: a request's class is a function of its size, which `dealloc` and `realloc` are
//!   given again (the [`GlobalAlloc`] contract).
//! - Requests larger than the largest class, or aligned to more than 16 bytes, go to the system
//!   allocator unchanged, so large buffers (regex caches, batches) are returned to it.
//! - Small blocks are carved from 64 KiB chunks and never given back, only reused: the memory held
//!   is bounded by the peak of small allocations, which the detector's bounded scratch keeps small.
//! - Only compiled for WebAssembly, where the component is single-threaded; the native build (tests,
//!   examples, benches) uses the platform allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Number of size classes: 16, 32, ..., 2048 bytes.
const CLASSES: usize = 8;
/// Largest size served from the free lists.
const MAX_SMALL: usize = 16 << (CLASSES - 1);
/// Alignment of every small block.
const ALIGN: usize = 16;
/// Bytes taken from the system allocator at a time for small blocks.
const CHUNK: usize = 64 << 10;

/// The free lists and the chunk being carved.
struct State {
    /// Head of each class's free list; a free block's first word points to the next one.
    free: [*mut u8; CLASSES],
    /// Next unused byte of the current chunk, and its end.
    bump: *mut u8,
    end: *mut u8,
}

/// The allocator; see the module documentation.
pub struct SmallBlocks {
    state: UnsafeCell<State>,
}

// SAFETY: the WebAssembly component runs on one thread, so the state is never shared.
unsafe impl Sync for SmallBlocks {}

impl SmallBlocks {
    /// An allocator with empty free lists.
    pub const fn new() -> Self {
        SmallBlocks {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

impl Default for SmallBlocks {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of `layout`, or `None` when it goes to the system allocator.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > ALIGN {
        return None;
    }
    let blocks = layout.size().max(1).div_ceil(16);
    Some(blocks.next_power_of_two().trailing_zeros() as usize)
}

unsafe impl GlobalAlloc for SmallBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no allocation happens while the borrow lives.
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[c];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class; its first word is the next link.
            state.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = 16 << c;
        if (state.end as usize) - (state.bump as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align(CHUNK, ALIGN).expect("valid chunk layout")) };
            if chunk.is_null() {
                return chunk;
            }
            // The rest of the previous chunk is abandoned; it is smaller than one block.
            state.bump = chunk;
            // SAFETY: within (one past the end of) the chunk just allocated.
            state.end = unsafe { chunk.add(CHUNK) };
        }
        let block = state.bump;
        // SAFETY: `size` bytes remain in the chunk.
        state.bump = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: a large block came from the system allocator with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: as in `alloc`; `ptr` is a block of class `c` no longer in use.
        let state = unsafe { &mut *self.state.get() };
        unsafe { ptr.cast::<*mut u8>().write(state.free[c]) };
        state.free[c] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // SAFETY: both blocks belong to the system allocator.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            (Some(a), Some(b)) if a == b => ptr,
            _ => {
                // SAFETY: a fresh block, then the old contents moved over and the old block freed.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_sizes() {
        let l = |s| Layout::from_size_align(s, 8).unwrap();
        assert_eq!(class(l(1)), Some(0));
        assert_eq!(class(l(16)), Some(0));
        assert_eq!(class(l(17)), Some(1));
        assert_eq!(class(l(100)), Some(3));
        assert_eq!(class(l(MAX_SMALL)), Some(CLASSES - 1));
        assert_eq!(class(l(MAX_SMALL + 1)), None);
        assert_eq!(class(Layout::from_size_align(8, 64).unwrap()), None);
    }

    #[test]
    fn blocks_are_reused_and_realloc_keeps_contents() {
        let a = SmallBlocks::new();
        let l = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            assert_eq!(p as usize % ALIGN, 0);
            p.write_bytes(7, 24);
            let q = a.realloc(p, l, 3000);
            assert_eq!(*q.add(23), 7);
            let l2 = Layout::from_size_align(3000, 8).unwrap();
            let r = a.realloc(q, l2, 20);
            assert_eq!(*r.add(19), 7);
            a.dealloc(r, l);
            let s = a.alloc(Layout::from_size_align(30, 8).unwrap());
            assert_eq!(s, r, "a freed block of the class is handed out again");
            a.dealloc(s, l);
        }
    }
}
