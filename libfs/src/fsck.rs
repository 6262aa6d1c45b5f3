//! Checking and repairing an image.
//!
//! What fsck can find: a damaged superblock, checkpoint or log (reported,
//! not repairable: the metadata they held is gone, and guessing would
//! risk wrong data), and inconsistencies of the metadata state (see
//! [`crate::state::State::check`]). What it repairs, because nothing
//! still reachable is lost: directory entries with invalid names or
//! missing targets, extra names of a directory, wrong link counts and
//! parent pointers, pages past the end of a file, data on a directory,
//! and inodes no directory names (linked into `/lost+found`). Not
//! repaired: pages claimed by two inodes, extents outside the data area,
//! directory cycles.

use alloc::string::String;
use alloc::vec::Vec;

use libdb::Storage;

use crate::error::Result;
use crate::fs::Fs;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every inconsistency found, named.
    pub issues: Vec<String>,
    /// How many of them were repaired (0 unless asked to).
    pub repaired: usize,
    /// Issues left after repair.
    pub remaining: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks the image on `st`; with `repair`, fixes what is safe and writes
/// the result as a new checkpoint. An `Err` is damage fsck cannot repair
/// (it names the structure and byte offset).
pub fn fsck<S: Storage>(st: S, repair: bool) -> (Result<Report>, Option<S>) {
    let (mut fs, issues) = match Fs::mount_unchecked(st) {
        Ok(x) => x,
        Err(e) => return (Err(e), None),
    };
    let mut report = Report { issues: issues.iter().map(|i| i.what.clone()).collect(), ..Report::default() };
    if repair && issues.iter().any(|i| i.repair.is_some()) {
        let mut state = fs.state().clone();
        let mut next = fs.next_ino();
        report.repaired = state.repair(&issues, &mut next);
        if let Err(e) = fs.install_state(state, next) {
            return (Err(e), Some(fs.into_storage()));
        }
        report.remaining = fs.check().into_iter().map(|i| i.what).collect();
    } else {
        report.remaining = report.issues.clone();
    }
    (Ok(report), Some(fs.into_storage()))
}
