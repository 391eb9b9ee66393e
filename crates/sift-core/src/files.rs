//! Files sift reads by name (configs, schema files, gold sets, batch inputs): opened only when
//! they are regular files, and read up to a size bound. A FIFO would block the reader until
//! some writer appears, and `/dev/zero` never ends; both are refused by name instead.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The bound on a config file or a schema file read whole (16 MiB).
pub const MAX_CONFIG_FILE: u64 = 16 * 1024 * 1024;

/// The bound on a data file read whole: a gold set, one input of a folder (256 MiB).
pub const MAX_DATA_FILE: u64 = 256 * 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular {
        /// Which path.
        path: PathBuf,
        /// What it is (`a directory`, `a FIFO`, `a character device`, ...).
        kind: &'static str,
    },
    /// The file is larger than the bound.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// Which file.
        path: PathBuf,
        /// The bound.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{} is not UTF-8 text (the first bad byte is at offset {offset})", path.display())]
    NotText {
        /// Which file.
        path: PathBuf,
        /// Where the first bad byte is.
        offset: usize,
    },
}

impl FileError {
    /// A short name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            FileError::Io { .. } => "io",
            FileError::NotRegular { .. } => "not_regular",
            FileError::TooLarge { .. } => "too_large",
            FileError::NotText { .. } => "not_text",
        }
    }

    /// Why, without the path (for messages that name the file their own way).
    pub fn reason(&self) -> String {
        match self {
            FileError::Io { source, .. } => source.to_string(),
            FileError::NotRegular { kind, .. } => format!("it is {kind}, not a regular file"),
            FileError::TooLarge { limit, .. } => format!("it is larger than {limit} bytes"),
            FileError::NotText { offset, .. } => {
                format!("it is not UTF-8 text (the first bad byte is at offset {offset})")
            }
        }
    }
}

/// What a file type is, for people (`a FIFO`, `a character device`, `a directory`, ...).
pub fn describe(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading when it is a regular file (after following links). The type is
/// checked before opening (opening a FIFO blocks) and again on the open file.
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    open_checked(path).map(|(file, _)| file)
}

/// [`open_regular`], with the open file's metadata.
fn open_checked(path: &Path) -> Result<(File, std::fs::Metadata), FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let regular = |meta: std::fs::Metadata| {
        if meta.is_file() {
            Ok(meta)
        } else {
            Err(FileError::NotRegular {
                path: path.to_owned(),
                kind: describe(meta.file_type()),
            })
        }
    };
    regular(std::fs::metadata(path).map_err(io)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Should the path be swapped for a FIFO between the check and the open, the open
        // does not wait for a writer.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = regular(file.metadata().map_err(io)?)?;
    Ok((file, meta))
}

/// The bytes of the regular file `path`, at most `limit` of them.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let (file, meta) = open_checked(path)?;
    let too_large = || FileError::TooLarge {
        path: path.to_owned(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte past the limit tells a file that grew while read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The text of the regular file `path`, at most `limit` bytes of UTF-8.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| FileError::NotText {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_up_to_its_bound() {
        let dir = std::env::temp_dir().join(format!("sift-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        std::fs::write(&path, "hello").unwrap();
        assert_eq!(read_text(&path, 5).unwrap(), "hello");
        let e = read_text(&path, 4).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { limit: 4, .. }), "{e}");
        std::fs::write(&path, b"ok\xffno").unwrap();
        let e = read_text(&path, 100).unwrap_err();
        assert!(e.to_string().contains("offset 2"), "{e}");
        let e = read_text(&dir, 100).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_by_name_without_blocking() {
        let e = read_text(Path::new("/dev/zero"), 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
        let dir = std::env::temp_dir().join(format!("sift-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let e = read_text(&fifo, 100).unwrap_err();
        assert!(
            e.to_string().ends_with("is a FIFO, not a regular file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
