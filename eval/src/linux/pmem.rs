//! Counting pmem pages written, from the host side.
//!
//! The NVDIMM is backed by a file QEMU maps `share=on`, so guest stores
//! (DAX) land in the host page cache of that file at once. Reading the file
//! before and after a run and comparing it 4 KiB page by page gives the
//! number of distinct pages whose contents changed. That is a lower bound
//! on pages written: a page rewritten with identical bytes, or written
//! twice, counts once or not at all.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const PAGE: usize = 4096;

/// Distinct `PAGE`-sized pages that differ between two images.
pub fn changed_pages(before: &[u8], after: &[u8]) -> Result<u64> {
    if before.len() != after.len() {
        bail!("pmem image changed size ({} -> {} bytes)", before.len(), after.len());
    }
    Ok(before.chunks(PAGE).zip(after.chunks(PAGE)).filter(|(a, b)| a != b).count() as u64)
}

/// Holds the last image read, to compare the next one against.
pub struct PmemWatch {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl PmemWatch {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), last: None }
    }

    /// Remember the current contents.
    pub fn mark(&mut self) -> Result<()> {
        self.last = Some(std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?);
        Ok(())
    }

    /// Pages changed since `mark`.
    pub fn changed_since_mark(&mut self) -> Result<u64> {
        let before = self.last.take().context("pmem pages: no earlier snapshot")?;
        let now = std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        changed_pages(&before, &now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_changed_pages() {
        let a = vec![0u8; 4 * PAGE];
        let mut b = a.clone();
        b[0] = 1; // page 0
        b[PAGE - 1] = 1; // page 0 again: still one page
        b[2 * PAGE + 100] = 7; // page 2
        assert_eq!(changed_pages(&a, &b).unwrap(), 2);
        assert_eq!(changed_pages(&a, &a).unwrap(), 0);
        assert!(changed_pages(&a, &b[..PAGE]).is_err());
    }

    #[test]
    fn watch_compares_against_the_mark() {
        let dir = std::env::temp_dir().join(format!("pmem-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("nvdimm.img");
        std::fs::write(&p, vec![0u8; 3 * PAGE]).unwrap();
        let mut w = PmemWatch::new(&p);
        assert!(w.changed_since_mark().is_err(), "no mark yet");
        w.mark().unwrap();
        let mut img = vec![0u8; 3 * PAGE];
        img[PAGE + 5] = 9;
        std::fs::write(&p, &img).unwrap();
        assert_eq!(w.changed_since_mark().unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
