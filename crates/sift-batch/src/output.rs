//! A job's output: one JSON line per item, each written whole with one `write` and flushed as
//! its item completes, so that whatever happens to the process the file holds whole lines
//! (and at most one torn last line, which resuming drops and redoes).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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
    pub fn open(path: &Path, retry_failed: bool) -> Result<(Self, Done), BatchError> {
        let mut done = Done::default();
        let mut keep_len = 0u64;
        if path.exists() {
            let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut n = 0usize;
            loop {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| BatchError::io(path, e))?;
                if read == 0 {
                    break;
                }
                n += 1;
                if line.last() != Some(&b'\n') {
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
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| BatchError::io(path, e))?;
        file.set_len(keep_len)
            .map_err(|e| BatchError::io(path, e))?;
        if retry_failed && !done.failed.is_empty() {
            remove_lines(path, &done.failed)?;
            for id in done.failed.drain() {
                done.ids.remove(&id);
            }
            file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| BatchError::io(path, e))?;
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

/// Rewrites `path` without the lines of `ids`: into a temporary file beside it, then renamed
/// over it, so a crash leaves either the old file or the new one.
fn remove_lines(path: &Path, ids: &HashSet<String>) -> Result<(), BatchError> {
    let tmp = path.with_extension("retry-failed.tmp");
    {
        let reader = BufReader::new(File::open(path).map_err(|e| BatchError::io(path, e))?);
        let mut out =
            std::io::BufWriter::new(File::create(&tmp).map_err(|e| BatchError::io(&tmp, e))?);
        for line in reader.lines() {
            let line = line.map_err(|e| BatchError::io(path, e))?;
            let failed = serde_json::from_str::<Record>(&line)
                .is_ok_and(|r| r.error.is_some() && ids.contains(&r.id));
            if !failed {
                out.write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| BatchError::io(&tmp, e))?;
            }
        }
        out.flush().map_err(|e| BatchError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| BatchError::io(path, e))
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
