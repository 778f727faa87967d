//! `broker-ctl audit tail [--follow] [--json] LOG`: the last records of a
//! log, and with `--follow` every record sealed after them, one JSON object
//! per line, for log shippers (Vector, Fluent Bit) and for watching.
//!
//! Only complete lines are printed: a record the writer is still writing
//! waits for its newline. Following survives rotation: when the path names
//! a new file (a different inode, as after `mv log log.1` and a restart),
//! the rest of the old file is read first and the new one from its start;
//! a file cut back (copy-truncate, or emptied and restarted) is read again
//! from its start: it is shorter than what was read, or its first bytes
//! changed. The file is polled every 200 ms rather than watched with
//! inotify: a shipper's latency budget is seconds, and polling needs no
//! dependency and works on every filesystem.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use infrabroker_common::display::escape_json_line;

use super::{Failure, Outcome};

const POLL: Duration = Duration::from_millis(200);

/// How many of the file's first bytes identify it (the first record's `ts`
/// and signature make them differ between chains).
const HEAD: usize = 256;

/// The last `n` records, then (with `follow`) new ones until stdout closes
/// or the process is stopped. Characters that would act on the terminal or
/// hide text (controls, bidi, zero-width, …) are written as JSON `\uXXXX`
/// escapes: each line still parses to the same record.
pub fn tail(file: &Path, n: usize, follow: bool) -> Outcome {
    let fail = |e: io::Error| Failure::other(format!("{}: {e}", file.display()));
    let mut reader = Follower::open(file).map_err(fail)?;
    let mut last = VecDeque::with_capacity(n + 1);
    reader
        .read_lines(|line| {
            last.push_back(line.to_owned());
            if last.len() > n {
                last.pop_front();
            }
            Ok(())
        })
        .map_err(fail)?;
    let mut out = io::stdout().lock();
    let print = |out: &mut io::StdoutLock<'_>, line: &[u8]| {
        writeln!(out, "{}", escape_json_line(&String::from_utf8_lossy(line)))
    };
    let printed = last
        .iter()
        .try_for_each(|l| print(&mut out, l))
        .and_then(|()| out.flush());
    if printed.is_err() || !follow {
        // A reader that went away (a closed pipe) is not an error.
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(POLL);
        let mut wrote = false;
        let step = reader.poll(|line| {
            wrote = true;
            print(&mut out, line)
        });
        match step {
            Ok(()) if wrote => {
                if out.flush().is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Reads complete lines of the file at `path`, following it across
/// rotation and truncation.
struct Follower<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    inode: (u64, u64),
    /// Bytes read from the file so far (complete lines and `pending`).
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    pending: Vec<u8>,
    /// The file's first bytes (up to [`HEAD`]) as read.
    head: Vec<u8>,
}

impl<'a> Follower<'a> {
    fn open(path: &'a Path) -> io::Result<Follower<'a>> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(Follower {
            path,
            reader: BufReader::with_capacity(1 << 16, file),
            inode: (meta.dev(), meta.ino()),
            offset: 0,
            pending: Vec::new(),
            head: Vec::new(),
        })
    }

    /// Hands every complete line available now to `emit` (without `\n`).
    fn read_lines(&mut self, mut emit: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let got = self.reader.read_until(b'\n', &mut buf)?;
            if got == 0 {
                return Ok(());
            }
            self.offset += got as u64;
            let room = HEAD.saturating_sub(self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..room]);
            self.pending.extend_from_slice(&buf);
            if let Some(line) = self.pending.strip_suffix(b"\n") {
                emit(line)?;
                self.pending.clear();
            }
        }
    }

    /// New lines, after switching to a rotated-in file or rereading a
    /// truncated one. A path that is briefly missing (between a rename and
    /// the service creating the new file) is waited for.
    fn poll(&mut self, mut emit: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.read_lines(&mut emit)?;
        let meta = match std::fs::metadata(self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if (meta.dev(), meta.ino()) != self.inode {
            // Rotated: the old file is drained above; the new one from 0.
            *self = Follower::open(self.path)?;
            return self.read_lines(emit);
        }
        if meta.len() < self.offset || !self.same_head()? {
            self.reader.seek(SeekFrom::Start(0))?;
            self.offset = 0;
            self.pending.clear();
            self.head.clear();
            return self.read_lines(emit);
        }
        Ok(())
    }

    /// Whether the file still starts with the bytes read from it.
    fn same_head(&self) -> io::Result<bool> {
        let mut now = vec![0; self.head.len()];
        match self.reader.get_ref().read_exact_at(&mut now, 0) {
            Ok(()) => Ok(now == self.head),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
}
