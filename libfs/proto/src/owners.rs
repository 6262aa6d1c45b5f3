//! Owners. libfs's inodes carry permission bits but no owner, and the
//! on-media format is shared with other work, so the file service keeps
//! owners itself, in a file of the file system it serves: `/.owners`, a
//! list of 16-byte records `(inode u64, uid u64)`, appended when a client
//! creates a file or directory and committed in the same `sync` as the
//! creation (one commit: both or neither survive a crash). Inode numbers
//! are never reused, so a record of a deleted inode can never name a new
//! one. An inode without a record (the root, anything made by a program
//! that links libfs directly) belongs to uid 0.
//!
//! No client may name `.owners` anywhere in a path (any component of that
//! name is refused, so `/a/../.owners` is too), and `readdir /` hides it.

use alloc::collections::BTreeMap;
use libfs::{Fs, OpenMode, Storage};

pub const PATH: &str = "/.owners";
const NAME: &str = ".owners";
const RECORD: usize = 16;

pub struct Owners {
    map: BTreeMap<u64, u32>,
}

impl Owners {
    /// Reads `/.owners` (absent: nobody owns anything yet).
    pub fn load<S: Storage>(fs: &mut Fs<S>) -> libfs::Result<Owners> {
        let mut map = BTreeMap::new();
        let h = match fs.open(PATH, OpenMode::READ) {
            Ok(h) => h,
            Err(libfs::Error::NotFound(_)) => return Ok(Owners { map }),
            Err(e) => return Err(e),
        };
        let size = fs.stat_ino(h.ino)?.size as usize;
        let mut buf = alloc::vec![0u8; size - size % RECORD];
        fs.pread(&h, 0, &mut buf)?;
        for r in buf.chunks_exact(RECORD) {
            let mut w = [0u8; 8];
            w.copy_from_slice(&r[..8]);
            let ino = u64::from_le_bytes(w);
            w.copy_from_slice(&r[8..]);
            map.insert(ino, u64::from_le_bytes(w) as u32);
        }
        Ok(Owners { map })
    }

    /// The owner of `ino`.
    pub fn of(&self, ino: u64) -> u32 {
        self.map.get(&ino).copied().unwrap_or(0)
    }

    /// Records that `uid` owns `ino` (appended to `/.owners`; durable at
    /// the caller's next `sync`).
    pub fn set<S: Storage>(&mut self, fs: &mut Fs<S>, ino: u64, uid: u32) -> libfs::Result<()> {
        let mut h = match fs.open(PATH, OpenMode::WRITE) {
            Ok(h) => h,
            Err(libfs::Error::NotFound(_)) => {
                fs.create(PATH, 0o600)?;
                fs.open(PATH, OpenMode::WRITE)?
            }
            Err(e) => return Err(e),
        };
        let mut rec = [0u8; RECORD];
        rec[..8].copy_from_slice(&ino.to_le_bytes());
        rec[8..].copy_from_slice(&(uid as u64).to_le_bytes());
        fs.append(&mut h, &rec)?;
        self.map.insert(ino, uid);
        Ok(())
    }

    /// Does a client path name the owners file (any `.owners` component)?
    pub fn is_reserved(path: &str) -> bool {
        path.split('/').any(Owners::is_reserved_name)
    }

    pub fn is_reserved_name(name: &str) -> bool {
        name == NAME
    }
}
