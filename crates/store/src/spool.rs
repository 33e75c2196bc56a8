//! The spool: pictures that could not be written to their storage location wait here, on
//! local disk, and are retried in order with exponential backoff until stored.
//!
//! Each entry is one file `<seq:020>.spool` holding a JSON header line (location, key, caller's
//! metadata, data length) followed by the picture bytes. It is written to `<seq>.tmp` and
//! renamed, so after a crash an entry is either whole or absent; leftover `.tmp` files were
//! never acknowledged and are removed. Files that cannot be read back are moved to `bad/`
//! for an operator to look at, never deleted and never fatal.
//!
//! Delivery is strictly in order (the oldest entry first, the next only once it is stored),
//! so an older overwrite picture can never land after a newer one. The spool is bounded by
//! bytes: when full, new pictures are refused, counted and logged; nothing already accepted
//! is ever dropped.
//!
//! One process owns a spool folder; run one [`Spool::run`] loop per spool.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Default bound on the bytes held in the spool (header and data of every entry).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// First wait after a failed delivery.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two delivery attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest header line read back from an entry file; anything longer is not ours.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Folder (inside the spool folder) where unreadable entries are moved.
pub const BAD_DIR: &str = "bad";

const ENTRY_EXT: &str = "spool";
const TEMP_EXT: &str = "tmp";
const HEADER_VERSION: u32 = 1;

/// A picture waiting for its storage location.
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolEntry {
    /// Storage location name.
    pub location: String,
    /// Object key inside the location.
    pub key: String,
    /// The picture.
    pub data: Bytes,
    /// Whatever the caller needs once the picture is stored (e.g. the index row to insert).
    pub meta: serde_json::Value,
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Entries waiting now.
    pub queued: u64,
    /// Bytes waiting now (headers included).
    pub bytes: u64,
    /// Entries delivered since open.
    pub stored: u64,
    /// Pictures refused since open (spool full or not writable).
    pub dropped: u64,
    /// Failed delivery attempts since open.
    pub retries: u64,
    /// Entry files moved to `bad/` since open.
    pub bad: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    location: String,
    key: String,
    meta: serde_json::Value,
    len: u64,
}

#[derive(Clone, Debug)]
struct Queued {
    seq: u64,
    /// File size: header line and data.
    size: u64,
    location: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    bytes: u64,
    next_seq: u64,
    pending_by_location: HashMap<String, u64>,
}

/// A bounded, crash-safe, ordered queue of pictures on local disk.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Serializes pushes so that queue order is file order.
    push_lock: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    running: AtomicBool,
    stored: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    bad: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::SpoolIo {
        path: path.to_path_buf(),
        source,
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}.{ENTRY_EXT}")
}

/// The sequence number of an entry file name, `None` for anything else.
fn parse_entry_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(ENTRY_EXT)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads and checks an entry's header without reading its data.
fn read_header(path: &Path) -> std::result::Result<(Header, u64), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut line = Vec::new();
    BufReader::new(file)
        .take(MAX_HEADER_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if line.last() != Some(&b'\n') {
        return Err("no header line".into());
    }
    let header: Header = serde_json::from_slice(&line).map_err(|e| format!("bad header: {e}"))?;
    if header.v != HEADER_VERSION {
        return Err(format!("unknown header version {}", header.v));
    }
    let header_len = line.len() as u64;
    if file_len.checked_sub(header_len) != Some(header.len) {
        return Err(format!(
            "length mismatch: header says {} data bytes, file has {}",
            header.len,
            file_len.saturating_sub(header_len)
        ));
    }
    Ok((header, file_len))
}

/// Reads a whole entry back.
fn read_entry(path: &Path) -> std::result::Result<SpoolEntry, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let nl = bytes
        .iter()
        .take(MAX_HEADER_BYTES + 1)
        .position(|&b| b == b'\n')
        .ok_or_else(|| "no header line".to_string())?;
    let header: Header =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("bad header: {e}"))?;
    let data = Bytes::from(bytes).slice(nl + 1..);
    if header.v != HEADER_VERSION || data.len() as u64 != header.len {
        return Err("header does not match the data".into());
    }
    Ok(SpoolEntry {
        location: header.location,
        key: header.key,
        data,
        meta: header.meta,
    })
}

/// Writes `contents` to `dir/<seq>.tmp`, flushes it, and renames it to its entry name.
fn write_entry(dir: &Path, seq: u64, header: &[u8], data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{seq:020}.{TEMP_EXT}"));
    let path = dir.join(entry_name(seq));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(header)?;
        f.write_all(b"\n")?;
        f.write_all(data)?;
        // The entry must be whole on disk before its name says it is.
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(&path))
}

impl Spool {
    /// Opens (creating if missing) the spool folder `dir`, bounded by `max_bytes`, and
    /// recovers the entries a previous run left, in their order.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Arc<Spool>> {
        let dir = dir.into();
        fs::create_dir_all(dir.join(BAD_DIR)).map_err(io_err(&dir))?;
        let spool = Spool {
            dir,
            max_bytes,
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            push_lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            running: AtomicBool::new(false),
            stored: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bad: AtomicU64::new(0),
        };
        spool.recover()?;
        Ok(Arc::new(spool))
    }

    fn recover(&self) -> Result<()> {
        let mut found: Vec<Queued> = Vec::new();
        for dirent in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let dirent = dirent.map_err(io_err(&self.dir))?;
            let path = dirent.path();
            if dirent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue; // bad/ and anything an operator put there
            }
            let name = dirent.file_name().to_string_lossy().into_owned();
            if name.ends_with(&format!(".{TEMP_EXT}")) {
                // A write that never completed; its push never returned Ok.
                tracing::info!(file = %path.display(), "spool: removing an unfinished entry");
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = parse_entry_name(&name) else {
                self.move_aside(&path, "not a spool entry");
                continue;
            };
            match read_header(&path) {
                Ok((header, size)) => found.push(Queued {
                    seq,
                    size,
                    location: header.location,
                }),
                Err(reason) => self.move_aside(&path, &reason),
            }
        }
        found.sort_by_key(|q| q.seq);
        let mut st = self.lock();
        for q in found {
            st.bytes += q.size;
            st.next_seq = q.seq + 1;
            *st.pending_by_location
                .entry(q.location.clone())
                .or_default() += 1;
            st.queue.push_back(q);
        }
        if !st.queue.is_empty() {
            tracing::info!(
                dir = %self.dir.display(),
                entries = st.queue.len(),
                bytes = st.bytes,
                "spool: recovered entries from a previous run"
            );
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere (every update is a few plain
        // assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves an unreadable file to `bad/`, never overwriting an earlier one there.
    fn move_aside(&self, path: &Path, reason: &str) {
        self.bad.fetch_add(1, Ordering::Relaxed);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad_dir = self.dir.join(BAD_DIR);
        let mut target = bad_dir.join(&name);
        let mut n = 1;
        while target.exists() {
            target = bad_dir.join(format!("{name}.{n}"));
            n += 1;
        }
        match fs::rename(path, &target) {
            Ok(()) => tracing::warn!(
                file = %path.display(), moved_to = %target.display(), reason,
                "spool: unreadable entry moved aside"
            ),
            Err(e) => tracing::warn!(
                file = %path.display(), reason, error = %e,
                "spool: unreadable entry could not be moved aside"
            ),
        }
    }

    /// Queues a picture. Refused (and counted as dropped) when the spool is full or its
    /// folder cannot be written.
    pub async fn push(&self, entry: SpoolEntry) -> Result<()> {
        let header = Header {
            v: HEADER_VERSION,
            location: entry.location.clone(),
            key: entry.key.clone(),
            meta: entry.meta,
            len: entry.data.len() as u64,
        };
        let header = serde_json::to_vec(&header).map_err(|e| Error::SpoolIo {
            path: self.dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        if header.len() > MAX_HEADER_BYTES {
            self.drop_one(&entry.location, &entry.key, "metadata too large");
            return Err(Error::SpoolIo {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "entry header of {} bytes exceeds MAX_HEADER_BYTES",
                        header.len()
                    ),
                ),
            });
        }
        let size = header.len() as u64 + 1 + entry.data.len() as u64;

        let _order = self.push_lock.lock().await;
        let seq = {
            let mut st = self.lock();
            if st.bytes + size > self.max_bytes {
                let used = st.bytes;
                drop(st);
                self.drop_one(&entry.location, &entry.key, "spool full");
                return Err(Error::SpoolFull {
                    needed: size,
                    used,
                    max: self.max_bytes,
                });
            }
            // Reserve the room now so the bound holds while the file is written.
            st.bytes += size;
            st.next_seq += 1;
            st.next_seq - 1
        };
        let dir = self.dir.clone();
        let data = entry.data;
        let written = tokio::task::spawn_blocking(move || write_entry(&dir, seq, &header, &data))
            .await
            .unwrap_or_else(|join| {
                Err(Error::SpoolIo {
                    path: self.dir.clone(),
                    source: std::io::Error::other(join),
                })
            });
        let mut st = self.lock();
        if let Err(e) = written {
            st.bytes -= size;
            drop(st);
            self.drop_one(&entry.location, &entry.key, &e.to_string());
            return Err(e);
        }
        *st.pending_by_location
            .entry(entry.location.clone())
            .or_default() += 1;
        st.queue.push_back(Queued {
            seq,
            size,
            location: entry.location,
        });
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Counts a refused picture. The caller holds the picture and the error [`Spool::push`]
    /// returns, and says once what became of it (lost, with both reasons); a warning here too
    /// would tell the same loss twice.
    fn drop_one(&self, location: &str, key: &str, reason: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            location,
            key,
            reason,
            dropped_total = dropped,
            "spool: refused a picture"
        );
    }

    /// Whether pictures for `location` are waiting. While they are, new pictures for it should
    /// be pushed here too rather than written directly, or they would overtake older ones.
    pub fn has_pending(&self, location: &str) -> bool {
        self.lock()
            .pending_by_location
            .get(location)
            .is_some_and(|n| *n > 0)
    }

    /// Counters now.
    pub fn stats(&self) -> SpoolStats {
        let st = self.lock();
        SpoolStats {
            queued: st.queue.len() as u64,
            bytes: st.bytes,
            stored: self.stored.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bad: self.bad.load(Ordering::Relaxed),
        }
    }

    /// The spool folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the head entry (`seq`) from the queue and the accounting.
    fn pop_head(&self, seq: u64) {
        let mut st = self.lock();
        if st.queue.front().map(|q| q.seq) == Some(seq) {
            if let Some(q) = st.queue.pop_front() {
                st.bytes -= q.size;
                if let Some(n) = st.pending_by_location.get_mut(&q.location) {
                    *n -= 1;
                    if *n == 0 {
                        st.pending_by_location.remove(&q.location);
                    }
                }
            }
        }
    }

    /// Delivers entries for ever: the oldest first, handed to `deliver` and retried with
    /// exponential backoff ([`INITIAL_BACKOFF`] doubling up to [`MAX_BACKOFF`]) until it
    /// answers `Ok`; then its file is deleted. `deliver` does the whole delivery (store the
    /// picture, index it), so an entry leaves the spool only once nothing of it can be lost.
    /// An entry it refuses with a permanent error ([`Error::is_permanent`]: bad key, unknown
    /// location, unreadable metadata) is moved to `bad/`.
    ///
    /// Cancel it by dropping the future (e.g. aborting its task): an entry whose delivery was
    /// interrupted stays on disk and is delivered again (at least once: `deliver` must take a
    /// second delivery of the same entry as done). Only one loop runs per spool; a second call
    /// returns at once. `sleep` waits out a backoff: the server's clock, so that tests move it
    /// by hand.
    pub async fn run<D, G, Z, F>(&self, deliver: D, sleep: Z)
    where
        D: Fn(SpoolEntry) -> G + Send + Sync,
        G: std::future::Future<Output = Result<()>> + Send,
        Z: Fn(Duration) -> F + Send + Sync,
        F: std::future::Future<Output = ()> + Send,
    {
        if self.running.swap(true, Ordering::AcqRel) {
            tracing::error!(dir = %self.dir.display(), "spool: a delivery loop is already running");
            return;
        }
        // Clears `running` however this future ends, including by being dropped.
        struct Running<'a>(&'a AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _running = Running(&self.running);

        let mut backoff = INITIAL_BACKOFF;
        // The head entry, read once and kept across its retries.
        let mut current: Option<(u64, SpoolEntry)> = None;
        loop {
            let head = self.lock().queue.front().cloned();
            let Some(head) = head else {
                // `notify_one` keeps a permit when no one waits, so a push between the check
                // above and this wait is not missed.
                self.wake.notified().await;
                continue;
            };
            let path = self.dir.join(entry_name(head.seq));
            let entry = match current.take() {
                Some((seq, e)) if seq == head.seq => e,
                _ => {
                    let p = path.clone();
                    let read = tokio::task::spawn_blocking(move || read_entry(&p))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    match read {
                        Ok(e) => e,
                        Err(reason) => {
                            self.move_aside(&path, &reason);
                            self.pop_head(head.seq);
                            continue;
                        }
                    }
                }
            };
            match deliver(entry.clone()).await {
                Ok(()) => {
                    if let Err(e) = fs::remove_file(&path) {
                        // It would be delivered again after a restart: harmless, but say so.
                        tracing::warn!(file = %path.display(), error = %e, "spool: cannot remove a delivered entry");
                    }
                    self.pop_head(head.seq);
                    self.stored.fetch_add(1, Ordering::Relaxed);
                    backoff = INITIAL_BACKOFF;
                }
                Err(e) if e.is_permanent() => {
                    // Retrying cannot help.
                    self.move_aside(&path, &e.to_string());
                    self.pop_head(head.seq);
                }
                Err(e) => {
                    let retries = self.retries.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        location = %entry.location, key = %entry.key, error = %e,
                        retry_in_ms = backoff.as_millis() as u64, retries_total = retries,
                        "spool: delivery failed"
                    );
                    current = Some((head.seq, entry));
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(entry_name(42), "00000000000000000042.spool");
        assert_eq!(parse_entry_name("00000000000000000042.spool"), Some(42));
        for bad in [
            "42.spool",
            "00000000000000000042.tmp",
            "0000000000000000004x.spool",
            "x",
        ] {
            assert_eq!(parse_entry_name(bad), None, "{bad}");
        }
    }
}
