//! Helpers for the load benchmarks: run the `sift` binary and read its CPU time.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// A running `sift serve` pointed at an upstream; killed when dropped.
pub struct SiftProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl SiftProcess {
    /// Starts `binary serve --port 0` with `OPENAI_BASE_URL=base_url`; `extra_env` is
    /// `K=V,K=V`. Its stderr (the console) is discarded.
    ///
    /// # Panics
    /// If the binary cannot be run or prints no `listening on` line.
    pub fn start(binary: &str, base_url: &str, extra_env: &str) -> Self {
        Self::start_logged(binary, base_url, extra_env, None)
    }

    /// As [`start`](Self::start), writing stderr (the console) to `log` when given.
    ///
    /// # Panics
    /// If the binary cannot be run, the log not created, or no `listening on` line printed.
    pub fn start_logged(binary: &str, base_url: &str, extra_env: &str, log: Option<&str>) -> Self {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("create the console log")),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--port", "0"])
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", "sk-bench")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("LOGFIRE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for pair in extra_env.split(',').filter(|p| p.contains('=')) {
            let (k, v) = pair.split_once('=').unwrap();
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {binary}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().trim_start_matches("listening on ").to_owned();
        assert!(url.starts_with("http://"), "unexpected first line {line:?}");
        Self { child, url }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time so far, from /proc/PID/stat (fields 14 and 15, in ticks of
    /// 1/100 s).
    pub fn cpu_time(&self) -> Duration {
        let (user, system) = self.cpu_times();
        user + system
    }

    /// User and system CPU time so far.
    pub fn cpu_times(&self) -> (Duration, Duration) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc stat");
        let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| Duration::from_millis(fields[i].parse::<u64>().unwrap() * 10);
        (ticks(11), ticks(12))
    }
}

/// User and system CPU time so far of process `root` and every process below it (a proxy
/// that runs workers as child processes), from /proc.
///
/// # Panics
/// If `/proc/root/stat` cannot be read.
pub fn tree_cpu_times(root: u32) -> (Duration, Duration) {
    let read = |pid: &str| -> Option<(u32, Duration, Duration)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| -> Option<Duration> {
            Some(Duration::from_millis(
                fields.get(i)?.parse::<u64>().ok()? * 10,
            ))
        };
        Some((fields.get(1)?.parse().ok()?, ticks(11)?, ticks(12)?))
    };
    let mut procs = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (Ok(pid), Some(stat)) = (name.parse::<u32>(), read(&name)) {
            procs.insert(pid, stat);
        }
    }
    assert!(procs.contains_key(&root), "no process {root}");
    let below = |mut pid: u32| {
        while pid != root {
            match procs.get(&pid) {
                Some((parent, _, _)) if *parent != 0 => pid = *parent,
                _ => return false,
            }
        }
        true
    };
    procs.iter().filter(|(pid, _)| below(**pid)).fold(
        (Duration::ZERO, Duration::ZERO),
        |(u, s), (_, (_, pu, ps))| (u + *pu, s + *ps),
    )
}

impl Drop for SiftProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
