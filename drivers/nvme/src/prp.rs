//! Physical Region Page entries (NVMe base spec 4.1.1).
//!
//! A transfer is described by PRP1 (the first page, possibly at an offset)
//! and PRP2: nothing if the data fits in one page, the second page if it
//! fits in two, otherwise a pointer to a PRP list — pages of 8-byte
//! entries whose last entry, when more follow, points to the next list
//! page.

use crate::DmaMemory;

/// A DMA buffer as the device sees it: its pages (each `page_size`
/// aligned) and the byte offset of the data in the first one.
#[derive(Clone, Copy, Debug)]
pub struct DmaBuffer<'a> {
    pub pages: &'a [u64],
    pub offset: u32,
    pub len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    pub prp1: u64,
    pub prp2: u64,
    /// PRP list pages written (0 for transfers of one or two pages).
    pub list_pages_used: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// A zero-length transfer has no PRP description.
    Empty,
    /// PRP1's offset must be dword aligned.
    OffsetNotDwordAligned {
        offset: u32,
    },
    /// The offset must lie inside the first page.
    OffsetBeyondPage {
        offset: u32,
    },
    PageNotAligned {
        addr: u64,
    },
    NotEnoughPages {
        needed: usize,
        given: usize,
    },
    NotEnoughListPages {
        needed: usize,
        given: usize,
    },
}

/// Pages touched by `len` bytes starting `offset` bytes into a page.
pub const fn pages_spanned(offset: u32, len: u32, page_size: u32) -> usize {
    (offset as u64 + len as u64).div_ceil(page_size as u64) as usize
}

/// PRP list pages needed for a transfer touching `pages` pages.
pub const fn list_pages_needed(pages: usize, page_size: u32) -> usize {
    let per_page = page_size as usize / 8;
    if pages <= 2 {
        0
    } else {
        // Every list page but the last gives up its final entry to the
        // chain pointer: L pages hold L * (per_page - 1) + 1 entries.
        (pages - 2).div_ceil(per_page - 1)
    }
}

/// Largest transfer (bytes) whose PRPs fit in `list_pages` list pages,
/// for a page-aligned buffer.
pub const fn max_transfer_for_list_pages(list_pages: usize, page_size: u32) -> u64 {
    let per_page = page_size as u64 / 8;
    let entries = if list_pages == 0 { 1 } else { list_pages as u64 * (per_page - 1) + 1 };
    (entries + 1) * page_size as u64
}

/// Builds PRP1/PRP2 for `buf`, writing PRP list entries into `list_pages`
/// (device addresses of pages the driver owns, used in order).
pub fn build(mem: &mut impl DmaMemory, buf: &DmaBuffer, page_size: u32, list_pages: &[u64]) -> Result<Prp, PrpError> {
    if buf.len == 0 {
        return Err(PrpError::Empty);
    }
    if !buf.offset.is_multiple_of(4) {
        return Err(PrpError::OffsetNotDwordAligned { offset: buf.offset });
    }
    if buf.offset >= page_size {
        return Err(PrpError::OffsetBeyondPage { offset: buf.offset });
    }
    let needed = pages_spanned(buf.offset, buf.len, page_size);
    if buf.pages.len() < needed {
        return Err(PrpError::NotEnoughPages { needed, given: buf.pages.len() });
    }
    let pages = &buf.pages[..needed];
    if let Some(&addr) = pages.iter().find(|&&p| p % page_size as u64 != 0) {
        return Err(PrpError::PageNotAligned { addr });
    }
    let prp1 = pages[0] + buf.offset as u64;
    match needed {
        1 => return Ok(Prp { prp1, prp2: 0, list_pages_used: 0 }),
        2 => return Ok(Prp { prp1, prp2: pages[1], list_pages_used: 0 }),
        _ => {}
    }
    let lists = list_pages_needed(needed, page_size);
    if list_pages.len() < lists {
        return Err(PrpError::NotEnoughListPages { needed: lists, given: list_pages.len() });
    }
    if let Some(&addr) = list_pages[..lists].iter().find(|&&p| p % page_size as u64 != 0) {
        return Err(PrpError::PageNotAligned { addr });
    }
    let per_page = page_size as usize / 8;
    let mut remaining = &pages[1..];
    for (i, &list) in list_pages[..lists].iter().enumerate() {
        let last = i + 1 == lists;
        let take = if last { remaining.len() } else { per_page - 1 };
        let mut bytes = [0u8; 8];
        for (slot, &page) in remaining[..take].iter().enumerate() {
            bytes.copy_from_slice(&page.to_le_bytes());
            mem.write(list + slot as u64 * 8, &bytes);
        }
        remaining = &remaining[take..];
        if !last {
            mem.write_u64(list + (per_page as u64 - 1) * 8, list_pages[i + 1]);
        }
    }
    Ok(Prp { prp1, prp2: list_pages[0], list_pages_used: lists })
}

/// Reads back the page addresses a PRP pair describes: the controller's
/// side of [`build`], used by the fake controller and by tests. Fails if
/// an entry breaks the rules (non-zero offset in a list entry).
pub fn walk(
    mem: &impl DmaMemory,
    prp1: u64,
    prp2: u64,
    len: u64,
    page_size: u32,
    mut visit: impl FnMut(u64, u32),
) -> Result<(), PrpError> {
    let ps = page_size as u64;
    let offset = prp1 % ps;
    if !offset.is_multiple_of(4) {
        return Err(PrpError::OffsetNotDwordAligned { offset: offset as u32 });
    }
    let first = (ps - offset).min(len);
    visit(prp1, first as u32);
    let mut left = len - first;
    if left == 0 {
        return Ok(());
    }
    if left <= ps {
        if !prp2.is_multiple_of(ps) {
            return Err(PrpError::PageNotAligned { addr: prp2 });
        }
        visit(prp2, left as u32);
        return Ok(());
    }
    let per_page = ps / 8;
    let mut list = prp2;
    if !list.is_multiple_of(8) {
        return Err(PrpError::PageNotAligned { addr: list });
    }
    let mut index = (list % ps) / 8;
    list -= list % ps;
    while left > 0 {
        let entry = mem.read_u64(list + index * 8);
        // The last slot of a list page chains on when more than one page remains.
        if index == per_page - 1 && left > ps {
            if !entry.is_multiple_of(ps) {
                return Err(PrpError::PageNotAligned { addr: entry });
            }
            list = entry;
            index = 0;
            continue;
        }
        if !entry.is_multiple_of(ps) {
            return Err(PrpError::PageNotAligned { addr: entry });
        }
        let n = left.min(ps);
        visit(entry, n as u32);
        left -= n;
        index += 1;
    }
    Ok(())
}
