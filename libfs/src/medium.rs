//! Byte-granular access to a [`Storage`]: persistent memory takes stores
//! of any size; a block device only whole blocks, so an unaligned write is
//! a read-modify-write of the blocks it covers.

use alloc::vec;

use libdb::Storage;

use crate::error::Result;

pub fn write<S: Storage>(st: &mut S, off: u64, data: &[u8]) -> Result<()> {
    let a = st.write_align() as u64;
    // PmemStorage reports 8 (the atomic store) but takes any store.
    if a <= 8 || (off.is_multiple_of(a) && (data.len() as u64).is_multiple_of(a)) {
        return Ok(st.write(off, data)?);
    }
    let first = off / a * a;
    let end = (off + data.len() as u64).div_ceil(a) * a;
    let mut buf = vec![0u8; (end - first) as usize];
    st.read(first, &mut buf)?;
    let skip = (off - first) as usize;
    buf[skip..skip + data.len()].copy_from_slice(data);
    Ok(st.write(first, &buf)?)
}

pub fn read<S: Storage>(st: &mut S, off: u64, buf: &mut [u8]) -> Result<()> {
    Ok(st.read(off, buf)?)
}
