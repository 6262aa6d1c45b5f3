//! A bounds-checked, read-only view of physical memory: physical address
//! `pa` is the byte at `base + pa`, for `pa < len`. The kernel builds one
//! over its physical window; host tests build one over a `Vec` that plays
//! physical memory. Every read, and every mapping handed to the `acpi`
//! crate, is checked against the view first.

use core::marker::PhantomData;
use core::ptr::NonNull;

/// `[pa, pa + len)` is not inside the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfView;

#[derive(Clone, Copy, Debug)]
pub struct PhysView<'v> {
    base: NonNull<u8>,
    len: usize,
    /// If set, only these `[start, end)` spans (sorted, disjoint and
    /// non-adjacent, as `window::Spans` keeps them) are readable.
    spans: Option<&'v [(u64, u64)]>,
    _memory: PhantomData<&'v [u8]>,
}

impl<'v> PhysView<'v> {
    /// A view whose physical address 0 is `memory[0]`.
    pub fn from_slice(memory: &'v [u8]) -> Self {
        PhysView { base: NonNull::from(memory).cast(), len: memory.len(), spans: None, _memory: PhantomData }
    }

    /// A view over `len` bytes at `base` (the kernel's physical window).
    /// `None` if `base` is null.
    ///
    /// # Safety
    ///
    /// For all of `'v`: every byte of `[base, base + len)` must be mapped
    /// and readable, and `base + len` must not wrap. Ranges this view hands
    /// out as references (the ACPI tables, and for the moment the `acpi`
    /// crate looks at them, any header an XSDT/RSDT entry points at) must
    /// not be written while those references are in use — firmware tables
    /// are never written after boot, and discovery runs single-threaded
    /// before any DMA is allowed.
    pub unsafe fn from_raw(base: *const u8, len: usize) -> Option<Self> {
        let base = NonNull::new(base.cast_mut())?;
        Some(PhysView { base, len, spans: None, _memory: PhantomData })
    }

    /// The same view, readable only inside `spans` (sorted, disjoint and
    /// non-adjacent `[start, end)` ranges, e.g. `window::Spans`): the
    /// kernel's physical window maps only the memory the memory map lists,
    /// with holes between.
    pub fn within(self, spans: &'v [(u64, u64)]) -> Self {
        PhysView { spans: Some(spans), ..self }
    }

    /// Bytes the view covers (physical addresses `0..len`).
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset of `pa` if all of `[pa, pa + len)` is inside the view.
    pub(crate) fn offset(&self, pa: u64, len: u64) -> Result<usize, OutOfView> {
        let end = pa.checked_add(len).ok_or(OutOfView)?;
        if end > self.len as u64 {
            return Err(OutOfView);
        }
        if let Some(spans) = self.spans {
            // Adjacent spans are merged, so a readable range lies in one.
            if !spans.iter().any(|&(s, e)| s <= pa && end.max(pa + 1) <= e) {
                return Err(OutOfView);
            }
        }
        Ok(pa as usize)
    }

    /// A pointer to `pa`, after checking `[pa, pa + len)` is in the view.
    pub(crate) fn pointer(&self, pa: u64, len: u64) -> Result<NonNull<u8>, OutOfView> {
        let offset = self.offset(pa, len)?;
        // SAFETY: `offset + len <= self.len` (checked by `offset`), so the
        // result stays inside the range the constructor vouched for and is
        // therefore non-null and does not wrap.
        Ok(unsafe { self.base.add(offset) })
    }

    /// The bytes at `[pa, pa + len)`.
    pub fn bytes(&self, pa: u64, len: u64) -> Result<&'v [u8], OutOfView> {
        let start = self.pointer(pa, len)?;
        // SAFETY: the range is inside the view (checked by `pointer`), which
        // is readable and not written for `'v` (the constructor's
        // contract); `u8` has no alignment or validity requirement.
        Ok(unsafe { core::slice::from_raw_parts(start.as_ptr(), len as usize) })
    }

    /// Copies `out.len()` bytes from `pa`.
    pub fn read(&self, pa: u64, out: &mut [u8]) -> Result<(), OutOfView> {
        out.copy_from_slice(self.bytes(pa, out.len() as u64)?);
        Ok(())
    }

    pub fn read_u8(&self, pa: u64) -> Result<u8, OutOfView> {
        let mut b = [0u8; 1];
        self.read(pa, &mut b)?;
        Ok(b[0])
    }

    pub fn read_u32(&self, pa: u64) -> Result<u32, OutOfView> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, pa: u64) -> Result<u64, OutOfView> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
