//! The shell's file commands, run against the system's file service:
//! init connects to `fsd` as a client (uid 0) and reads and writes files
//! through the pages fsd maps into its window, as any client does. The
//! parsing and formatting are `fsproto::shell` (host-tested); the serial
//! shell (`init`) and the test root (`shell_fs`) both drive this.

use crate::fsd;
use crate::sched;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::blockq::SharedWindow;
use exo_rt::mmio::Window;
use fsproto::client::{CallError, Client};
use fsproto::shell::{self, Command};
use fsproto::wire::{self, Reply, Request, OPEN_CREATE, OPEN_TRUNCATE, OPEN_WRITE};

/// `cat` shows at most this many bytes.
const CAT_MAX: usize = 4096;
/// Polls of the channel before init gives up on fsd.
const MAX_POLLS: u64 = 100_000;

pub struct FsShell {
    client: Client<SharedWindow>,
    /// Init's address of its window.
    files: u64,
    conn: usize,
}

fn wait() -> bool {
    sched::sched_yield();
    true
}

impl FsShell {
    /// Connect init to the running fsd as uid 0.
    pub fn connect() -> Result<FsShell, String> {
        let (conn, channel, files) = fsd::connect_init(fsproto::service::ROOT_UID)?;
        let win = Window::new(channel, PAGE_SIZE).ok_or("channel page outside the window range")?;
        let mut polls = 0;
        let client = Client::attach(SharedWindow(win), || {
            polls += 1;
            wait() && polls < MAX_POLLS
        })
        .map_err(|e| format!("{e}"))?;
        Ok(FsShell { client, files, conn })
    }

    /// End the connection (fsd revokes what init still has mapped).
    pub fn disconnect(self) -> Result<(), String> {
        fsd::disconnect(self.conn)
    }

    fn call(&mut self, r: Request) -> Result<Reply, CallError> {
        let mut polls = 0;
        self.client.call(&r, || {
            polls += 1;
            wait() && polls < MAX_POLLS
        })
    }

    /// Run `line`: `None` if it is not a file command, else what to print.
    pub fn run(&mut self, line: &str) -> Option<String> {
        let cmd = match shell::parse(line)? {
            Ok(c) => c,
            Err(usage) => return Some(usage),
        };
        Some(self.execute(&cmd).unwrap_or_else(|e| match e {
            CallError::Refused(status, text) => format!("{status:?}: {text}"),
            other => format!("file service: {other}"),
        }))
    }

    fn execute(&mut self, cmd: &Command) -> Result<String, CallError> {
        match cmd {
            Command::Ls(path) => self.ls(path),
            Command::Cat(path) => {
                let f = self.call(Request::Open { path: path.clone(), flags: 0, mode: 0 })?;
                let n = (f.size as usize).min(CAT_MAX);
                if f.pages < (n as u64).div_ceil(PAGE_SIZE) {
                    // A hole is not mapped: reading it would fault in init.
                    self.call(Request::Close { handle: f.handle })?;
                    return Ok(format!("{path}: has unallocated pages (holes), which are not mapped; not shown"));
                }
                let mut buf = vec![0u8; n];
                if n > 0 {
                    if let Some(w) = Window::new(self.files + f.window, f.pages.max(1) * PAGE_SIZE) {
                        w.read(0, &mut buf);
                    }
                }
                self.call(Request::Close { handle: f.handle })?;
                Ok(shell::cat_text(&buf, f.size, CAT_MAX))
            }
            Command::Write(path, text) => {
                let f = self.call(Request::Open {
                    path: path.clone(),
                    flags: OPEN_WRITE | OPEN_CREATE | OPEN_TRUNCATE,
                    mode: 0o644,
                })?;
                let len = text.len() as u64;
                let g = self.call(Request::Grow { handle: f.handle, size: len })?;
                if len > 0 {
                    if let Some(w) = Window::new(self.files + g.window, g.pages.max(1) * PAGE_SIZE) {
                        // Stores into the NVDIMM pages, written back: no
                        // system call, no copy through fsd.
                        w.write(0, text.as_bytes());
                        w.persist(0, len);
                        pmem::cpu::sfence();
                    }
                }
                self.call(Request::Close { handle: f.handle })?;
                Ok(format!("wrote {len} bytes to {path} (stores into its mapped pages + clwb/sfence)"))
            }
            Command::Mkdir(path) => {
                let r = self.call(Request::Mkdir { path: path.clone(), mode: 0o755 })?;
                Ok(format!("made directory {path} (inode {})", r.ino))
            }
            Command::Rm(path) => {
                let st = self.call(Request::Stat { path: path.clone() })?;
                if st.kind == 2 {
                    self.call(Request::Rmdir { path: path.clone() })?;
                } else {
                    self.call(Request::Unlink { path: path.clone() })?;
                }
                Ok(format!("removed {path}"))
            }
            Command::Mv(from, to) => {
                self.call(Request::Rename { from: from.clone(), to: to.clone() })?;
                Ok(format!("moved {from} to {to}"))
            }
            Command::Stat(path) => {
                let st = self.call(Request::Stat { path: path.clone() })?;
                Ok(shell::stat_text(path, &st))
            }
        }
    }

    fn ls(&mut self, path: &str) -> Result<String, CallError> {
        let mut names: Vec<String> = Vec::new();
        let mut cookie = 0;
        while cookie != u64::MAX {
            let r = self.call(Request::Readdir { path: path.into(), cookie })?;
            names.extend(wire::decode_entries(&r.payload).into_iter().map(|e| e.name));
            cookie = r.cookie;
        }
        let mut out = Vec::new();
        for name in &names {
            let full = if path.ends_with('/') { format!("{path}{name}") } else { format!("{path}/{name}") };
            match self.call(Request::Stat { path: full }) {
                Ok(st) => out.push(shell::ls_line(name, &st)),
                Err(e) => out.push(format!("?????????? {name} ({e})")),
            }
        }
        if out.is_empty() {
            return Ok(format!("{path}: empty"));
        }
        Ok(out.join("\n"))
    }
}
