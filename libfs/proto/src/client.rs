//! The client's end of a channel page: post a request, wait for the reply
//! (the caller says how to wait: `fsd`'s clients yield the CPU, as the
//! block service's clients do).

use crate::wire::{self, Reply, Request, Status};
use alloc::format;
use alloc::string::String;
use blockq::SharedRegion;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The server never formatted the page.
    NotFormatted,
    /// The request does not fit the page (a path over `wire::MAX_PATH`).
    TooLong,
    /// The wait gave up (the server is gone or stuck) after this many polls.
    NoAnswer { polls: u64 },
    /// The service answered with an error: its kind and its text.
    Refused(Status, String),
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::NotFormatted => write!(f, "the file service has not set up the channel"),
            CallError::TooLong => write!(f, "request too long for the channel"),
            CallError::NoAnswer { polls } => write!(f, "no answer from the file service after {polls} polls"),
            CallError::Refused(s, text) => write!(f, "{s:?}: {text}"),
        }
    }
}

pub struct Client<R: SharedRegion> {
    page: R,
    seq: u32,
    /// Requests made and polls spent waiting (for the measurements).
    pub calls: u64,
    pub polls: u64,
}

impl<R: SharedRegion> Client<R> {
    /// Attach to a page the server formatted, calling `wait` between looks
    /// (it returns `false` to give up).
    pub fn attach(page: R, mut wait: impl FnMut() -> bool) -> Result<Client<R>, CallError> {
        while !wire::is_formatted(&page) {
            if !wait() {
                return Err(CallError::NotFormatted);
            }
        }
        // Continue after whatever the page's last exchange was.
        let seq = page.load_acquire(wire::REQ_SEQ);
        Ok(Client { page, seq, calls: 0, polls: 0 })
    }

    /// Send `req` and wait for its reply; an error status becomes
    /// `CallError::Refused`.
    pub fn call(&mut self, req: &Request, mut wait: impl FnMut() -> bool) -> Result<Reply, CallError> {
        let seq = self.seq.wrapping_add(1);
        if !wire::write_request(&self.page, seq, req) {
            return Err(CallError::TooLong);
        }
        self.seq = seq;
        self.calls += 1;
        let mut polls = 0;
        loop {
            if let Some(r) = wire::take_reply(&self.page, seq) {
                return match r.status() {
                    Status::Ok => Ok(r),
                    s => Err(CallError::Refused(s, r.text())),
                };
            }
            polls += 1;
            self.polls += 1;
            if !wait() {
                return Err(CallError::NoAnswer { polls });
            }
        }
    }

    /// Send raw request bytes (tests of the server's validation).
    pub fn call_raw(&mut self, raw: &[u8], mut wait: impl FnMut() -> bool) -> Result<Reply, CallError> {
        let seq = self.seq.wrapping_add(1);
        self.page.write(0x100, &raw[..raw.len().min(wire::REQ_PAYLOAD + 0x20)]);
        self.page.store_release(wire::REQ_SEQ, seq);
        self.seq = seq;
        loop {
            if let Some(r) = wire::take_reply(&self.page, seq) {
                return Ok(r);
            }
            if !wait() {
                return Err(CallError::NoAnswer { polls: 0 });
            }
        }
    }

    pub fn page(&self) -> &R {
        &self.page
    }
}

/// `format!` of a refusal for messages.
pub fn describe(e: &CallError) -> String {
    format!("{e}")
}
