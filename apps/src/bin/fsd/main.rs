//! `fsd`: the file service. It holds the file system's medium (its part of
//! the NVDIMM, moved into it by init) and is the only writer of its
//! metadata; clients ask for files by name through a channel page each
//! (`fsproto::wire`) and get the files' NVDIMM pages shared into their
//! windows, writable only if the open mode and the permissions allow
//! (`fsproto::service`, host-tested). See `initlib::fsd` for what init
//! links where, and `libfs/DESIGN.md` "File service and sharing".
//!
//! Arguments: `mkfs` or `mount` (mount, or make a file system if there is
//! none); args word 3 = bytes of the region at `CHILD_PMEM_VA`.
//! Exit codes: 0 = stopped cleanly (the file system checked clean after a
//! remount), 1 = file-system error, 2 = missing region, 5 = the final
//! check found problems.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod serve;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    match serve::run() {
        Ok(()) => exo_rt::exit(0),
        Err((code, e)) => {
            exo_rt::println!("fsd: FAILED: {e}");
            exo_rt::exit(code)
        }
    }
}
