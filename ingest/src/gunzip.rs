//! The fast path for gzip bodies: libdeflate decompresses a whole member
//! into a buffer sized from the member's own trailer, about three times
//! faster than streaming through flate2 (`cargo bench -p sluice-benches`,
//! `gunzip_body`). It answers only when the body is exactly one member
//! whose trailer told the truth; anything else — several members, a size
//! that does not fit, bad data — goes to the streaming decoder in
//! [`crate::body`], which enforces every limit and words the errors.

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys as sys;

/// A libdeflate decompressor (a few KiB of tables), one per thread.
struct Decompressor(NonNull<sys::libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: allocation has no preconditions; null means out of memory.
        NonNull::new(unsafe { sys::libdeflate_alloc_decompressor() }).map(Decompressor)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from libdeflate_alloc_decompressor and
        // is freed once, here.
        unsafe { sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// The size the body's (last) member says it decompresses to: the
/// little-endian `ISIZE` in its last four bytes.
pub fn stated_size(gz: &[u8]) -> Option<usize> {
    let tail: [u8; 4] = gz.get(gz.len().checked_sub(4)?..)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(tail)).ok()
}

/// Decompresses `gz` into `out` (sized beforehand, at most what the
/// caller allows) when `gz` is a single gzip member that decompresses to
/// exactly `out.len()` bytes; `None` otherwise, `out` then being garbage.
pub fn one_member(gz: &[u8], out: &mut [u8]) -> Option<()> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Decompressor::new();
        }
        let d = slot.as_ref()?;
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: the decompressor is live and used by this thread only;
        // the input and output pointers and lengths come from live slices
        // that outlive the call; libdeflate writes at most `out.len()`
        // bytes and the two counts.
        let result = unsafe {
            sys::libdeflate_gzip_decompress_ex(
                d.0.as_ptr(),
                gz.as_ptr().cast(),
                gz.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut used_in,
                &mut used_out,
            )
        };
        (result == sys::libdeflate_result_LIBDEFLATE_SUCCESS
            && used_in == gz.len()
            && used_out == out.len())
        .then_some(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn one_member_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = gzip(&data);
        let size = stated_size(&gz).unwrap();
        assert_eq!(size, data.len());
        let mut out = vec![0u8; size];
        assert!(one_member(&gz, &mut out).is_some());
        assert_eq!(out, data);
    }

    #[test]
    fn anything_else_is_left_to_the_streaming_decoder() {
        let a = gzip(b"first member");
        let b = gzip(b"second one");
        // two members: the trailer states only the last one's size
        let two = [a.clone(), b.clone()].concat();
        let mut out = vec![0u8; stated_size(&two).unwrap()];
        assert!(one_member(&two, &mut out).is_none());
        // the same member twice: the sizes agree, yet input is left over
        let twice = [a.clone(), a.clone()].concat();
        let mut out = vec![0u8; stated_size(&twice).unwrap()];
        assert!(one_member(&twice, &mut out).is_none());
        // a trailer that lies about the size
        let mut lying = a.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&3u32.to_le_bytes());
        let mut out = vec![0u8; 3];
        assert!(one_member(&lying, &mut out).is_none());
        // not gzip at all
        let mut out = vec![0u8; 8];
        assert!(one_member(b"not gzip data", &mut out).is_none());
        assert_eq!(stated_size(b"abc"), None);
    }
}
