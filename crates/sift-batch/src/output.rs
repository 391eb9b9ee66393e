//! A job's output: one JSON line per item, each written whole with one `write` and flushed as
//! its item completes, so that whatever happens to the process the file holds whole lines
//! (and at most one torn last line, which resuming drops and redoes).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sift_core::report::{ExtractionFailure, UsageReport};

use crate::BatchError;

/// One line of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The item's id.
    pub id: String,
    /// The extracted value, when the item succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why the item failed, with every attempt's errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExtractionFailure>,
    /// Tokens spent on it.
    pub usage: UsageReport,
    /// Calls made.
    pub attempts: usize,
    /// The model that answered (the one asked, when none answered).
    pub model: String,
    /// Where each grounded value was found, by JSON pointer into `value` (with `--spans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<sift_core::grounding::Spans>,
    /// For a document: what was read (kind, pages, chunks), the fields where chunks
    /// disagreed and the chunks that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
}

/// What an existing output already holds.
#[derive(Debug, Default)]
pub struct Done {
    /// Ids with a line (succeeded or failed).
    pub ids: HashSet<String>,
    /// Of those, the ones that failed.
    pub failed: HashSet<String>,
    /// Whether a torn last line was dropped.
    pub dropped_torn_line: bool,
}

/// The output file, open for appending.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    file: File,
}

impl Output {
    /// Opens `path` for a job: reads what it already holds, cuts a torn last line off, and,
    /// when `retry_failed`, takes the failed items' lines out (so they are done again and
    /// nothing is written twice). A line in the middle that is not one sift writes stops the
    /// job: the file is someone else's, or damaged, and is not guessed at.
    ///
    /// The output must be a regular file (a pipe or a device is refused by name: it cannot
    /// be read back), and the run holds a lock on it while it writes, so a second run on the
    /// same output stops at once, saying so, instead of doing every item again.
    pub fn open(path: &Path, retry_failed: bool) -> Result<(Self, Done), BatchError> {
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            return Err(not_a_file(path, meta.file_type()));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| BatchError::io(path, e))?;
        let meta = file.metadata().map_err(|e| BatchError::io(path, e))?;
        if !meta.is_file() {
            return Err(not_a_file(path, meta.file_type()));
        }
        lock(&file, path)?;
        let mut done = Done::default();
        let mut keep_len = 0u64;
        {
            let mut reader = BufReader::new(&file);
            let mut line = Vec::new();
            let mut n = 0usize;
            loop {
                line.clear();
                let read = (&mut reader)
                    .take(crate::MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| BatchError::io(path, e))?;
                if read == 0 {
                    break;
                }
                n += 1;
                if line.last() != Some(&b'\n') {
                    if line.len() > crate::MAX_LINE {
                        // Not a line sift writes: the file is someone else's.
                        return Err(BatchError::NotAnOutput {
                            path: path.to_owned(),
                            line: n,
                            error: serde::de::Error::custom(format!(
                                "a line longer than {} bytes",
                                crate::MAX_LINE
                            )),
                        });
                    }
                    // The last write was cut short: dropped, and its item done again.
                    done.dropped_torn_line = true;
                    break;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    keep_len += read as u64;
                    continue;
                }
                let record: Record =
                    serde_json::from_slice(&line).map_err(|error| BatchError::NotAnOutput {
                        path: path.to_owned(),
                        line: n,
                        error,
                    })?;
                if record.error.is_some() {
                    done.failed.insert(record.id.clone());
                }
                done.ids.insert(record.id);
                keep_len += read as u64;
            }
        }
        file.set_len(keep_len)
            .map_err(|e| BatchError::io(path, e))?;
        if retry_failed && !done.failed.is_empty() {
            file = remove_lines(path, &file, &done.failed)?;
            for id in done.failed.drain() {
                done.ids.remove(&id);
            }
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| BatchError::io(path, e))?;
        Ok((
            Self {
                path: path.to_owned(),
                file,
            },
            done,
        ))
    }

    /// Appends `record` as one line, in one write, and flushes it.
    pub fn write(&mut self, record: &Record) -> Result<(), BatchError> {
        let mut line = serde_json::to_vec(record).map_err(|error| BatchError::Encode {
            what: "a record",
            error,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|e| BatchError::io(&self.path, e))
    }
}

/// The error for an output that is not a regular file.
fn not_a_file(path: &Path, t: std::fs::FileType) -> BatchError {
    BatchError::OutputNotAFile {
        path: path.to_owned(),
        kind: sift_core::files::describe(t),
    }
}

/// Takes the run's lock on the output (released when the file is closed, whatever ends the
/// process).
fn lock(file: &File, path: &Path) -> Result<(), BatchError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(BatchError::Locked(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(BatchError::io(path, e)),
    }
}

/// Rewrites `path` (open as `current`) without the lines of `ids`: into a temporary file
/// beside it, locked before it is renamed over the output, so a crash leaves either the old
/// file or the new one and the lock never lapses. Returns the new file, for appending.
fn remove_lines(path: &Path, current: &File, ids: &HashSet<String>) -> Result<File, BatchError> {
    let tmp = path.with_extension("retry-failed.tmp");
    let mut out = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| BatchError::io(&tmp, e))?;
    lock(&out, &tmp)?;
    {
        let mut reading = current;
        reading
            .seek(SeekFrom::Start(0))
            .map_err(|e| BatchError::io(path, e))?;
        let reader = BufReader::new(reading);
        let mut writer = std::io::BufWriter::new(&mut out);
        for line in reader.split(b'\n') {
            let line = line.map_err(|e| BatchError::io(path, e))?;
            let failed = serde_json::from_slice::<Record>(&line)
                .is_ok_and(|r| r.error.is_some() && ids.contains(&r.id));
            if !failed {
                writer
                    .write_all(&line)
                    .and_then(|()| writer.write_all(b"\n"))
                    .map_err(|e| BatchError::io(&tmp, e))?;
            }
        }
        writer.flush().map_err(|e| BatchError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| BatchError::io(path, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ok(id: &str) -> Record {
        Record {
            id: id.into(),
            value: Some(json!({"n": 1})),
            error: None,
            usage: UsageReport {
                input_tokens: 3,
                output_tokens: 4,
                cached_input_tokens: 0,
            },
            attempts: 1,
            model: "m".into(),
            spans: None,
            document: None,
        }
    }

    fn failed(id: &str) -> Record {
        Record {
            value: None,
            error: Some(ExtractionFailure {
                message: "no".into(),
                kind: "retries_exhausted".into(),
                upstream_status: None,
                attempts: Vec::new(),
                usage: UsageReport::default(),
            }),
            ..ok(id)
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_appending_goes_on_after_the_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut text = String::new();
        for r in [ok("a"), failed("b")] {
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        text.push_str(r#"{"id": "c", "val"#);
        std::fs::write(&path, &text).unwrap();
        let (mut out, done) = Output::open(&path, false).unwrap();
        assert!(done.dropped_torn_line);
        assert_eq!(done.ids.len(), 2);
        assert!(done.failed.contains("b"));
        out.write(&ok("c")).unwrap();
        let lines: Vec<Record> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, [ok("a"), failed("b"), ok("c")]);
    }

    #[test]
    fn retry_failed_takes_the_failed_lines_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let text: String = [ok("a"), failed("b"), ok("c")]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(&path, &text).unwrap();
        let (mut out, done) = Output::open(&path, true).unwrap();
        assert_eq!(done.ids, HashSet::from(["a".to_owned(), "c".to_owned()]));
        out.write(&ok("b")).unwrap();
        let ids: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap().id)
            .collect();
        assert_eq!(ids, ["a", "c", "b"]);
    }

    #[test]
    fn a_second_run_on_the_same_output_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let (first, _) = Output::open(&path, false).unwrap();
        let err = Output::open(&path, false).unwrap_err().to_string();
        assert!(
            err.contains("another sift batch is writing this output"),
            "{err}"
        );
        drop(first);
        // Once the first is done, the output is free, retry_failed's rewrite included. (A
        // test beside this one that starts `mkfifo` can hold a copy of the descriptor, and
        // so the lock, between its fork and its exec: a few tries.)
        std::fs::write(&path, serde_json::to_string(&failed("x")).unwrap() + "\n").unwrap();
        let mut tries = 0;
        let (again, done) = loop {
            match Output::open(&path, true) {
                Err(BatchError::Locked(_)) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        assert!(done.ids.is_empty());
        let err = Output::open(&path, false).unwrap_err().to_string();
        assert!(err.contains("holds its lock"), "{err}");
        drop(again);
    }

    #[cfg(unix)]
    #[test]
    fn a_pipe_or_a_device_is_refused_as_an_output() {
        let err = Output::open(Path::new("/dev/full"), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the output must be a regular file (a character device given)"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = Output::open(&fifo, false).unwrap_err().to_string();
        assert!(err.contains("(a FIFO given)"), "{err}");
    }

    #[test]
    fn a_foreign_line_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"id\": \"a\"}\nhello\n").unwrap();
        let err = Output::open(&path, false).unwrap_err().to_string();
        assert!(
            err.contains("out.jsonl:1: not a line of a sift batch output"),
            "{err}"
        );
    }
}
