//! A file mapped into memory as persistent memory (Linux).
//!
//! On a DAX file system the mapping is tried with `MAP_SYNC`, so CPU cache
//! flushes + `sfence` make stores durable with no system call. Elsewhere the
//! page cache sits between the mapping and the medium, so `flush` only
//! records the dirty range and `fence` calls `msync(MS_SYNC)` on it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cpu::{self, FlushMethod};
use crate::Persist;

/// An mmapped file used as a persistent region.
pub struct FileMapping {
    ptr: *mut u8,
    len: usize,
    _file: File,
    dax: bool,
    method: FlushMethod,
    /// Byte range flushed since the last fence (non-DAX only).
    dirty: Option<(usize, usize)>,
    msyncs: u64,
    last_error: Option<io::Error>,
}

// SAFETY: the mapping is owned exclusively by this value (no aliasing
// references escape except through `&self`/`&mut self` borrows), so moving
// it to another thread is sound.
unsafe impl Send for FileMapping {}

impl FileMapping {
    /// Opens (creating if needed) `path`, makes it at least `len` bytes long
    /// and maps its first `len` bytes shared and writable.
    pub fn open(path: impl AsRef<Path>, len: usize) -> io::Result<FileMapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() < len as u64 {
            file.set_len(len as u64)?;
        }
        let fd = file.as_raw_fd();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: mmap with a null hint, a valid fd and a length the file
        // covers; the result is checked against MAP_FAILED before use.
        let (ptr, dax) = unsafe {
            let p = libc::mmap(core::ptr::null_mut(), len, prot, libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC, fd, 0);
            if p != libc::MAP_FAILED {
                (p, true)
            } else {
                (libc::mmap(core::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0), false)
            }
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(FileMapping {
            ptr: ptr as *mut u8,
            len,
            _file: file,
            dax,
            method: FlushMethod::detect(),
            dirty: None,
            msyncs: 0,
            last_error: None,
        })
    }

    /// Maps the first `len` bytes of a device-DAX character device
    /// (`/dev/daxX.Y`: a persistent-memory namespace in `devdax` mode, no
    /// file system, no page cache) shared, writable and `MAP_SYNC`, so CPU
    /// cache flushes + `sfence` make stores durable with no system call.
    /// Unlike [`FileMapping::open`] nothing is created or resized, and a
    /// mapping without `MAP_SYNC` is an error, not a fallback: a device
    /// that refuses it is not device-DAX. `len` must be a multiple of the
    /// device's alignment (`align` in sysfs, 2 MiB by default), or the
    /// kernel refuses the mapping (EINVAL).
    pub fn open_dax_device(path: impl AsRef<Path>, len: usize) -> io::Result<FileMapping> {
        let path = path.as_ref();
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        {
            use std::os::unix::fs::FileTypeExt;
            if !file.metadata()?.file_type().is_char_device() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a character device (device-DAX is /dev/daxX.Y)", path.display()),
                ));
            }
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: mmap with a null hint and a valid fd; the result is
        // checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{}: MAP_SYNC mapping of {len} bytes: {e} (device-DAX? length a multiple of its align?)",
                    path.display()
                ),
            ));
        }
        Ok(FileMapping {
            ptr: ptr as *mut u8,
            len,
            _file: file,
            dax: true,
            method: FlushMethod::detect(),
            dirty: None,
            msyncs: 0,
            last_error: None,
        })
    }

    /// Whether the mapping is DAX (`MAP_SYNC`): durability without syscalls.
    pub fn is_dax(&self) -> bool {
        self.dax
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `msync` calls made so far.
    pub fn msyncs(&self) -> u64 {
        self.msyncs
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live mapping owned by `self`, and the
        // shared borrow of `self` prevents concurrent mutation through it.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, with an exclusive borrow of `self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Copies `data` to `offset` with non-temporal stores (durable after the
    /// next fence on DAX; still needs `flush` + `fence` elsewhere).
    pub fn write_nt(&mut self, offset: usize, data: &[u8]) {
        assert!(offset.checked_add(data.len()).is_some_and(|e| e <= self.len), "write_nt out of range");
        // SAFETY: range checked above; the exclusive borrow of `self` means
        // no reference aliases the destination; `data` cannot overlap the
        // mapping mutably because we hold `&mut self`.
        unsafe { cpu::nt_copy(self.method, self.ptr.add(offset), data) };
    }

    /// `fence`, reporting an `msync` failure instead of keeping it.
    pub fn try_fence(&mut self) -> io::Result<()> {
        self.fence();
        match self.last_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Persist for FileMapping {
    fn flush(&mut self, offset: usize, len: usize) {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return;
        }
        if self.dax {
            // SAFETY: the range was clamped to the mapping.
            unsafe { cpu::flush_range(self.method, self.ptr.add(offset), end - offset) };
        } else {
            self.dirty = Some(match self.dirty {
                Some((s, e)) => (s.min(offset), e.max(end)),
                None => (offset, end),
            });
        }
    }

    fn fence(&mut self) {
        if self.dax {
            cpu::sfence();
            return;
        }
        if let Some((s, e)) = self.dirty.take() {
            let page = 4096;
            let start = s & !(page - 1);
            // SAFETY: `start..e` lies inside the mapping (page-aligned start
            // of an in-range offset), which msync requires.
            let rc = unsafe { libc::msync(self.ptr.add(start) as *mut libc::c_void, e - start, libc::MS_SYNC) };
            self.msyncs += 1;
            if rc != 0 {
                self.last_error = Some(io::Error::last_os_error());
                // Keep the range dirty so a retry covers it.
                self.dirty = Some((s, e));
            }
        }
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping we created; no borrow of it can
        // outlive `self`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_flush_fence_reopen() {
        let dir = std::env::temp_dir().join(format!("pmem-test-{}", std::process::id()));
        let mut m = FileMapping::open(&dir, 8192).unwrap();
        m.as_mut_slice()[100..105].copy_from_slice(b"hello");
        m.write_nt(5000, b"non-temporal bytes");
        m.flush(100, 5);
        m.flush(5000, 18);
        m.try_fence().unwrap();
        drop(m);
        let bytes = std::fs::read(&dir).unwrap();
        assert_eq!(&bytes[100..105], b"hello");
        assert_eq!(&bytes[5000..5018], b"non-temporal bytes");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn dax_device_mapping_refuses_what_is_not_device_dax() {
        let path = std::env::temp_dir().join(format!("pmem-devdax-test-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let e = FileMapping::open_dax_device(&path, 4096).err().unwrap();
        assert!(e.to_string().contains("not a character device"), "{e}");
        // A character device that is not device-DAX refuses MAP_SYNC.
        let e = FileMapping::open_dax_device("/dev/zero", 4096).err().unwrap();
        assert!(e.to_string().contains("MAP_SYNC"), "{e}");
        assert!(FileMapping::open_dax_device("/dev/zero", 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
