//! SQLite (bundled) in WAL mode, one `WITHOUT ROWID` table.
//!
//! Durability mapping:
//! - `sqlite` (synchronous=FULL): `sync` = every commit at FULL (the WAL is
//!   fdatasync'd at each commit). `groupN` = N-1 commits at NORMAL, the Nth
//!   at FULL: its WAL sync covers the frames of the whole group, so this is
//!   true group commit, and WAL frame checksums give prefix recovery.
//!   `async` = every commit at NORMAL, durable at the next checkpoint.
//! - `sqlite-normal` (synchronous=NORMAL): commits never sync the WAL; only
//!   `async` is accepted, because that is all it guarantees.
//!
//! `finish` runs `PRAGMA wal_checkpoint(FULL)`, which syncs the WAL and the
//! database file.

use super::{closes_group, Engine, EngineResult};
use crate::workload::Durability;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct Sqlite {
    conn: Connection,
    durability: Durability,
    commits: u64,
    /// The synchronous level currently set on the connection.
    full: bool,
    /// Commits since the last durable point.
    pending: u64,
}

fn err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("sqlite {what}: {e}")
}

impl Sqlite {
    pub fn open(dir: &Path, normal_only: bool, durability: Durability) -> EngineResult<Sqlite> {
        let conn = Connection::open(dir.join("sqlite.db")).map_err(err("open"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(err("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("sqlite refused WAL mode (got {mode})"));
        }
        conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
            .map_err(err("create table"))?;
        let full = !normal_only && durability == Durability::Sync;
        let mut s = Sqlite { conn, durability, commits: 0, full: !full, pending: 0 };
        s.set_full(full)?;
        Ok(s)
    }

    fn set_full(&mut self, full: bool) -> EngineResult<()> {
        if self.full != full {
            let level = if full { "FULL" } else { "NORMAL" };
            self.conn.execute_batch(&format!("PRAGMA synchronous={level}")).map_err(err("synchronous"))?;
            self.full = full;
        }
        Ok(())
    }
}

impl Engine for Sqlite {
    fn commit(&mut self, puts: &[(&[u8], &[u8])]) -> EngineResult<()> {
        self.commits += 1;
        let durable = closes_group(self.durability, self.commits);
        self.set_full(durable)?;
        let tx = self.conn.transaction().map_err(err("begin"))?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)").map_err(err("prepare put"))?;
            for (k, v) in puts {
                stmt.execute(params![k, v]).map_err(err("put"))?;
            }
        }
        tx.commit().map_err(err("commit"))?;
        self.pending = if durable { 0 } else { self.pending + 1 };
        Ok(())
    }

    fn get(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> EngineResult<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT v FROM kv WHERE k = ?1").map_err(err("prepare get"))?;
        let found = stmt
            .query_row(params![key], |row| {
                visit(row.get_ref(0)?.as_blob()?);
                Ok(())
            })
            .optional()
            .map_err(err("get"))?;
        Ok(found.is_some())
    }

    fn scan(&mut self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> EngineResult<usize> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2")
            .map_err(err("prepare scan"))?;
        let mut rows = stmt.query(params![start, n as i64]).map_err(err("scan"))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(err("scan step"))? {
            let k = row.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(err("scan key"))?;
            let v = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(err("scan value"))?;
            visit(k, v);
            count += 1;
        }
        Ok(count)
    }

    fn finish(&mut self) -> EngineResult<()> {
        if self.pending > 0 || self.durability == Durability::Async {
            // A checkpoint syncs the WAL before copying it, then the db file.
            self.conn
                .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| r.get::<_, i64>(0))
                .map_err(err("checkpoint"))?;
            self.pending = 0;
        }
        Ok(())
    }
}
