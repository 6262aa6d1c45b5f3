//! The channel page: one 4 KiB page of RAM that init shares between a
//! client and the file service (`fsd`). A client has one request in
//! flight at a time (every file operation is synchronous), so the "ring"
//! is one slot with sequence numbers: the client writes the request and
//! then releases `REQ_SEQ`; the server answers and releases `REPLY_SEQ`
//! equal to it.
//!
//! ```text
//! 0x000 magic "EXFS", version        (server, at format)
//! 0x040 request sequence  u32        (client)
//! 0x080 reply sequence    u32        (server)
//! 0x100 request: op u8, flags u8, _, handle u32, arg u64, len_a u16, len_b u16, _ ; bytes at 0x120
//! 0x800 reply:   status u32, handle u32, window u64, pages u64, size u64, ino u64,
//!                kind u8, writable u8, mode u16, nlink u32, owner u32, payload len u16, _, cookie u64 ; payload at 0x840
//! ```
//!
//! The client can write any byte of the page at any time, so the server
//! copies the request out once ([`read_request`]) and decodes the copy:
//! what it validated is what it executes.

use alloc::string::String;
use alloc::vec::Vec;
use blockq::SharedRegion;

pub const MAGIC: u32 = u32::from_le_bytes(*b"EXFS");
pub const VERSION: u32 = 1;
pub const CHANNEL_BYTES: u64 = 4096;
const MAGIC_AT: u64 = 0x000;
const VERSION_AT: u64 = 0x004;
pub const REQ_SEQ: u64 = 0x040;
pub const REPLY_SEQ: u64 = 0x080;
const REQ_AT: u64 = 0x100;
const REQ_HEADER: usize = 0x20;
/// Bytes of request payload (the path, or two paths for `Rename`).
pub const REQ_PAYLOAD: usize = 0x700 - REQ_HEADER;
const REPLY_AT: u64 = 0x800;
const REPLY_HEADER: usize = 0x40;
/// Bytes of reply payload (an error's text, directory entries).
pub const REPLY_PAYLOAD: usize = 0x800 - REPLY_HEADER;
/// The longest path a request may carry.
pub const MAX_PATH: usize = 1024;

/// Open flags (`Request::flags` of `Open`).
pub const OPEN_WRITE: u8 = 1;
pub const OPEN_CREATE: u8 = 2;
pub const OPEN_TRUNCATE: u8 = 4;
const OPEN_FLAGS: u8 = OPEN_WRITE | OPEN_CREATE | OPEN_TRUNCATE;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Open (maybe create, with permission bits `mode`) and map the file.
    Open {
        path: String,
        flags: u8,
        mode: u16,
    },
    /// Unmap and forget a handle.
    Close {
        handle: u32,
    },
    /// Grow the file to `size`, allocate every page below it, commit, and
    /// map the new pages (the window may move: the reply says where).
    Grow {
        handle: u32,
        size: u64,
    },
    Stat {
        path: String,
    },
    /// Directory entries from index `cookie` on, as many as fit.
    Readdir {
        path: String,
        cookie: u64,
    },
    Mkdir {
        path: String,
        mode: u16,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    /// Commit every metadata change (each mutating request already does).
    Sync,
}

impl Request {
    fn op(&self) -> u8 {
        match self {
            Request::Open { .. } => 1,
            Request::Close { .. } => 2,
            Request::Grow { .. } => 3,
            Request::Stat { .. } => 4,
            Request::Readdir { .. } => 5,
            Request::Mkdir { .. } => 6,
            Request::Unlink { .. } => 7,
            Request::Rmdir { .. } => 8,
            Request::Rename { .. } => 9,
            Request::Sync => 10,
        }
    }

    /// The request's bytes as they sit at offset 0x100 of the page;
    /// `None` if a path is too long to send.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let (mut flags, mut handle, mut arg, mut a, mut b) = (0u8, 0u32, 0u64, "", "");
        match self {
            Request::Open { path, flags: f, mode } => (a, flags, arg) = (path, *f, *mode as u64),
            Request::Close { handle: h } => handle = *h,
            Request::Grow { handle: h, size } => (handle, arg) = (*h, *size),
            Request::Stat { path } | Request::Unlink { path } | Request::Rmdir { path } => a = path,
            Request::Readdir { path, cookie } => (a, arg) = (path, *cookie),
            Request::Mkdir { path, mode } => (a, arg) = (path, *mode as u64),
            Request::Rename { from, to } => (a, b) = (from, to),
            Request::Sync => {}
        }
        if a.len() > MAX_PATH || b.len() > MAX_PATH || a.len() + b.len() > REQ_PAYLOAD {
            return None;
        }
        let mut out = alloc::vec![0u8; REQ_HEADER + a.len() + b.len()];
        out[0] = self.op();
        out[1] = flags;
        out[4..8].copy_from_slice(&handle.to_le_bytes());
        out[8..16].copy_from_slice(&arg.to_le_bytes());
        out[16..18].copy_from_slice(&(a.len() as u16).to_le_bytes());
        out[18..20].copy_from_slice(&(b.len() as u16).to_le_bytes());
        out[REQ_HEADER..REQ_HEADER + a.len()].copy_from_slice(a.as_bytes());
        out[REQ_HEADER + a.len()..].copy_from_slice(b.as_bytes());
        Some(out)
    }

    /// Decodes and validates request bytes a client wrote (the whole
    /// request area). Every field is checked; nothing here can panic.
    pub fn decode(raw: &[u8]) -> Result<Request, BadRequest> {
        if raw.len() < REQ_HEADER {
            return Err(BadRequest::Truncated { len: raw.len() });
        }
        let op = raw[0];
        let flags = raw[1];
        let handle = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let mut a8 = [0u8; 8];
        a8.copy_from_slice(&raw[8..16]);
        let arg = u64::from_le_bytes(a8);
        let len_a = u16::from_le_bytes([raw[16], raw[17]]) as usize;
        let len_b = u16::from_le_bytes([raw[18], raw[19]]) as usize;
        // Which fields each op uses; anything else must be zero, so a
        // confused client is told instead of half-understood.
        let (wants_path, wants_second, wants_handle, flag_mask) = match op {
            1 => (true, false, false, OPEN_FLAGS),
            2 | 3 => (false, false, true, 0),
            4..=8 => (true, false, false, 0),
            9 => (true, true, false, 0),
            10 => (false, false, false, 0),
            _ => return Err(BadRequest::UnknownOp(op)),
        };
        let room = raw.len() - REQ_HEADER;
        if len_a > room || len_b > room - len_a {
            return Err(BadRequest::Length { len_a, len_b, room });
        }
        let bytes_a = &raw[REQ_HEADER..REQ_HEADER + len_a];
        let bytes_b = &raw[REQ_HEADER + len_a..REQ_HEADER + len_a + len_b];
        if flags & !flag_mask != 0 {
            return Err(BadRequest::Flags { op, flags });
        }
        if !wants_handle && handle != 0 {
            return Err(BadRequest::Unexpected { op, field: "handle" });
        }
        let path = |bytes: &[u8], field: &'static str, wanted: bool| -> Result<String, BadRequest> {
            if !wanted {
                return if bytes.is_empty() { Ok(String::new()) } else { Err(BadRequest::Unexpected { op, field }) };
            }
            check_path(bytes, field).map(String::from)
        };
        let a = path(bytes_a, "path", wants_path)?;
        let b = path(bytes_b, "second path", wants_second)?;
        let mode = |arg: u64| -> Result<u16, BadRequest> {
            if arg > 0o777 {
                return Err(BadRequest::Mode(arg));
            }
            Ok(arg as u16)
        };
        Ok(match op {
            1 => {
                if flags & OPEN_CREATE == 0 && arg != 0 {
                    return Err(BadRequest::Unexpected { op, field: "mode" });
                }
                if flags & (OPEN_CREATE | OPEN_TRUNCATE) != 0 && flags & OPEN_WRITE == 0 {
                    return Err(BadRequest::Flags { op, flags });
                }
                Request::Open { path: a, flags, mode: mode(arg)? }
            }
            2 if arg != 0 => return Err(BadRequest::Unexpected { op, field: "arg" }),
            2 => Request::Close { handle },
            3 => Request::Grow { handle, size: arg },
            4 | 7 | 8 | 9 | 10 if arg != 0 => return Err(BadRequest::Unexpected { op, field: "arg" }),
            4 => Request::Stat { path: a },
            5 => Request::Readdir { path: a, cookie: arg },
            6 => Request::Mkdir { path: a, mode: mode(arg)? },
            7 => Request::Unlink { path: a },
            8 => Request::Rmdir { path: a },
            9 => Request::Rename { from: a, to: b },
            _ => Request::Sync,
        })
    }
}

/// A path as the service accepts it: UTF-8, absolute, no NUL, at most
/// [`MAX_PATH`] bytes, each component at most 255 bytes.
fn check_path<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, BadRequest> {
    if bytes.is_empty() {
        return Err(BadRequest::MissingPath { field });
    }
    if bytes.len() > MAX_PATH {
        return Err(BadRequest::PathTooLong { field, len: bytes.len() });
    }
    let s = core::str::from_utf8(bytes).map_err(|e| BadRequest::NotUtf8 { field, at: e.valid_up_to() })?;
    if !s.starts_with('/') {
        return Err(BadRequest::NotAbsolute { field });
    }
    if let Some(at) = s.find('\0') {
        return Err(BadRequest::Nul { field, at });
    }
    if let Some(c) = s.split('/').find(|c| c.len() > 255) {
        return Err(BadRequest::NameTooLong { field, len: c.len() });
    }
    Ok(s)
}

/// Why the server refused to decode a request (answered as
/// [`Status::BadRequest`] with this text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadRequest {
    Truncated {
        len: usize,
    },
    UnknownOp(u8),
    Flags {
        op: u8,
        flags: u8,
    },
    /// A field this op does not use is not zero.
    Unexpected {
        op: u8,
        field: &'static str,
    },
    Length {
        len_a: usize,
        len_b: usize,
        room: usize,
    },
    MissingPath {
        field: &'static str,
    },
    PathTooLong {
        field: &'static str,
        len: usize,
    },
    NotUtf8 {
        field: &'static str,
        at: usize,
    },
    NotAbsolute {
        field: &'static str,
    },
    Nul {
        field: &'static str,
        at: usize,
    },
    NameTooLong {
        field: &'static str,
        len: usize,
    },
    Mode(u64),
}

impl core::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BadRequest::Truncated { len } => write!(f, "request of {len} bytes is shorter than its header"),
            BadRequest::UnknownOp(op) => write!(f, "unknown operation {op}"),
            BadRequest::Flags { op, flags } => write!(f, "operation {op}: flags {flags:#x} undefined or inconsistent"),
            BadRequest::Unexpected { op, field } => write!(f, "operation {op} takes no {field}, but it is set"),
            BadRequest::Length { len_a, len_b, room } => {
                write!(f, "path lengths {len_a} + {len_b} exceed the {room} bytes of the request")
            }
            BadRequest::MissingPath { field } => write!(f, "{field}: missing"),
            BadRequest::PathTooLong { field, len } => write!(f, "{field}: {len} bytes, longer than {MAX_PATH}"),
            BadRequest::NotUtf8 { field, at } => write!(f, "{field}: not UTF-8 at byte {at}"),
            BadRequest::NotAbsolute { field } => write!(f, "{field}: not absolute (must start with /)"),
            BadRequest::Nul { field, at } => write!(f, "{field}: NUL byte at {at}"),
            BadRequest::NameTooLong { field, len } => write!(f, "{field}: a name of {len} bytes (at most 255)"),
            BadRequest::Mode(m) => write!(f, "mode {m:#o} has bits beyond 0o777"),
        }
    }
}

/// How a request ended: libfs's error kinds, and the service's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    NotFound,
    Exists,
    NotEmpty,
    IsDir,
    NotDir,
    NameTooLong,
    Invalid,
    Permission,
    NoSpace,
    Corrupt,
    Io,
    Poisoned,
    /// The file is open (mapped) by a client: it cannot be removed,
    /// replaced or truncated until every opener closed it.
    Busy,
    /// The request could not be decoded (the text says why).
    BadRequest,
    /// The handle is not one of this client's open files.
    BadHandle,
    /// The client holds the most open files allowed.
    TooManyOpen,
    /// The client's window has no room for the file's pages.
    WindowFull,
    /// The kernel refused a mapping change (the text names the call).
    MapFailed,
    /// A status code this side does not know (from a newer or hostile peer).
    Unknown(u32),
}

impl Status {
    pub fn code(self) -> u32 {
        match self {
            Status::Ok => 0,
            Status::NotFound => 1,
            Status::Exists => 2,
            Status::NotEmpty => 3,
            Status::IsDir => 4,
            Status::NotDir => 5,
            Status::NameTooLong => 6,
            Status::Invalid => 7,
            Status::Permission => 8,
            Status::NoSpace => 9,
            Status::Corrupt => 10,
            Status::Io => 11,
            Status::Poisoned => 12,
            Status::Busy => 13,
            Status::BadRequest => 14,
            Status::BadHandle => 15,
            Status::TooManyOpen => 16,
            Status::WindowFull => 17,
            Status::MapFailed => 18,
            Status::Unknown(c) => c,
        }
    }

    pub fn from_code(c: u32) -> Status {
        match c {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Exists,
            3 => Status::NotEmpty,
            4 => Status::IsDir,
            5 => Status::NotDir,
            6 => Status::NameTooLong,
            7 => Status::Invalid,
            8 => Status::Permission,
            9 => Status::NoSpace,
            10 => Status::Corrupt,
            11 => Status::Io,
            12 => Status::Poisoned,
            13 => Status::Busy,
            14 => Status::BadRequest,
            15 => Status::BadHandle,
            16 => Status::TooManyOpen,
            17 => Status::WindowFull,
            18 => Status::MapFailed,
            c => Status::Unknown(c),
        }
    }
}

impl From<&libfs::Error> for Status {
    fn from(e: &libfs::Error) -> Status {
        use libfs::Error as E;
        match e {
            E::NotFound(_) => Status::NotFound,
            E::Exists(_) => Status::Exists,
            E::NotEmpty(_) => Status::NotEmpty,
            E::IsDir(_) => Status::IsDir,
            E::NotDir(_) => Status::NotDir,
            E::NameTooLong(_) => Status::NameTooLong,
            E::Invalid(_) => Status::Invalid,
            E::Permission(_) => Status::Permission,
            E::NoSpace(_) => Status::NoSpace,
            E::Corrupt { .. } => Status::Corrupt,
            E::Io { .. } => Status::Io,
            E::Poisoned => Status::Poisoned,
        }
    }
}

/// An answer. Fields a request does not produce are zero; `payload` is an
/// error's text, or a `Readdir`'s entries ([`encode_entries`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub handle: u32,
    /// Byte offset of the file's first page in the client's window.
    pub window: u64,
    /// Pages of the file mapped there (fewer than the size needs: the
    /// file has holes, left unmapped).
    pub pages: u64,
    pub size: u64,
    pub ino: u64,
    /// 1 = file, 2 = directory.
    pub kind: u8,
    pub writable: bool,
    pub mode: u16,
    pub nlink: u32,
    pub owner: u32,
    /// `Readdir`: the index to continue from, `u64::MAX` at the end.
    pub cookie: u64,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn status(&self) -> Status {
        Status::from_code(self.status)
    }

    pub fn error(status: Status, text: &str) -> Reply {
        let mut r = Reply { status: status.code(), ..Reply::default() };
        let n = floor_char_boundary(text, REPLY_PAYLOAD);
        r.payload = text.as_bytes()[..n].to_vec();
        r
    }

    /// The error text (lossy: a hostile server may send anything).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = self.payload.len().min(REPLY_PAYLOAD);
        let mut b = alloc::vec![0u8; REPLY_HEADER + n];
        b[0..4].copy_from_slice(&self.status.to_le_bytes());
        b[4..8].copy_from_slice(&self.handle.to_le_bytes());
        b[8..16].copy_from_slice(&self.window.to_le_bytes());
        b[16..24].copy_from_slice(&self.pages.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.ino.to_le_bytes());
        b[40] = self.kind;
        b[41] = self.writable as u8;
        b[42..44].copy_from_slice(&self.mode.to_le_bytes());
        b[44..48].copy_from_slice(&self.nlink.to_le_bytes());
        b[48..52].copy_from_slice(&self.owner.to_le_bytes());
        b[52..54].copy_from_slice(&(n as u16).to_le_bytes());
        b[56..64].copy_from_slice(&self.cookie.to_le_bytes());
        b[REPLY_HEADER..].copy_from_slice(&self.payload[..n]);
        b
    }

    /// Decodes a reply (the whole reply area); a payload length past the
    /// area is clipped, never trusted.
    pub fn decode(raw: &[u8]) -> Reply {
        let mut b = [0u8; REPLY_HEADER];
        let h = raw.len().min(REPLY_HEADER);
        b[..h].copy_from_slice(&raw[..h]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let n = (u16::from_le_bytes([b[52], b[53]]) as usize).min(raw.len().saturating_sub(REPLY_HEADER));
        Reply {
            status: u32_at(0),
            handle: u32_at(4),
            window: u64_at(8),
            pages: u64_at(16),
            size: u64_at(24),
            ino: u64_at(32),
            kind: b[40],
            writable: b[41] != 0,
            mode: u16::from_le_bytes([b[42], b[43]]),
            nlink: u32_at(44),
            owner: u32_at(48),
            cookie: u64_at(56),
            payload: raw.get(REPLY_HEADER..REPLY_HEADER + n).unwrap_or(&[]).to_vec(),
        }
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// One directory entry of a `Readdir` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1 = file, 2 = directory.
    pub kind: u8,
    pub name: String,
}

/// Encodes entries as `kind u8, len u8, name` records while they fit in a
/// reply; returns the payload and how many were taken.
pub fn encode_entries<'a>(entries: impl Iterator<Item = (u8, &'a str)>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    for (kind, name) in entries {
        if name.len() > 255 || out.len() + 2 + name.len() > REPLY_PAYLOAD {
            break;
        }
        out.push(kind);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        n += 1;
    }
    (out, n)
}

/// Decodes a `Readdir` payload; a malformed tail ends the list.
pub fn decode_entries(payload: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= payload.len() {
        let (kind, len) = (payload[at], payload[at + 1] as usize);
        let Some(name) = payload.get(at + 2..at + 2 + len) else { break };
        out.push(Entry { kind, name: String::from_utf8_lossy(name).into_owned() });
        at += 2 + len;
    }
    out
}

// ---------------------------------------------------------------------
// The page, as each end sees it.

/// Server: format a fresh channel page (sequences zero, magic last).
pub fn format(page: &impl SharedRegion) {
    // Nothing of an earlier client's exchanges may show through.
    page.store_release(MAGIC_AT, 0);
    page.write(VERSION_AT, &[0u8; CHANNEL_BYTES as usize - VERSION_AT as usize]);
    page.store_release(REQ_SEQ, 0);
    page.store_release(REPLY_SEQ, 0);
    page.write(VERSION_AT, &VERSION.to_le_bytes());
    page.store_release(MAGIC_AT, MAGIC);
}

/// Client: has the server formatted the page?
pub fn is_formatted(page: &impl SharedRegion) -> bool {
    let mut v = [0u8; 4];
    page.read(VERSION_AT, &mut v);
    page.len() >= CHANNEL_BYTES && page.load_acquire(MAGIC_AT) == MAGIC && u32::from_le_bytes(v) == VERSION
}

/// Server: a new request's sequence number, if the client posted one
/// since `answered`.
pub fn pending(page: &impl SharedRegion, answered: u32) -> Option<u32> {
    let seq = page.load_acquire(REQ_SEQ);
    (seq != answered).then_some(seq)
}

/// Server: copy the request area out of the page (once: the client may
/// change it while the server works).
pub fn read_request(page: &impl SharedRegion) -> Vec<u8> {
    let mut raw = alloc::vec![0u8; REQ_HEADER + REQ_PAYLOAD];
    page.read(REQ_AT, &mut raw);
    raw
}

/// Server: post the reply for request `seq`.
pub fn write_reply(page: &impl SharedRegion, seq: u32, reply: &Reply) {
    page.write(REPLY_AT, &reply.encode());
    page.store_release(REPLY_SEQ, seq);
}

/// Client: post `req` as request `seq`; `false` if it cannot be encoded.
pub fn write_request(page: &impl SharedRegion, seq: u32, req: &Request) -> bool {
    let Some(bytes) = req.encode() else { return false };
    page.write(REQ_AT, &bytes);
    page.store_release(REQ_SEQ, seq);
    true
}

/// Client: the reply to request `seq`, once the server posted it.
pub fn take_reply(page: &impl SharedRegion, seq: u32) -> Option<Reply> {
    if page.load_acquire(REPLY_SEQ) != seq {
        return None;
    }
    let mut raw = alloc::vec![0u8; REPLY_HEADER + REPLY_PAYLOAD];
    page.read(REPLY_AT, &mut raw);
    Some(Reply::decode(&raw))
}
