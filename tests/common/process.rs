//! Child processes the tests start: killed when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed when the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd`; returns it, the first line it prints, and the rest of its output.
pub fn start_reading(cmd: &mut Command) -> (Running, String, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("it prints its address");
    (Running(child), line.trim().to_string(), stdout)
}

/// Starts `cmd`; returns it and the first line it prints.
pub fn start(cmd: &mut Command) -> (Running, String) {
    let (child, line, _) = start_reading(cmd);
    (child, line)
}

/// `batch-proxy --upstream UPSTREAM --listen 127.0.0.1:0` with `extra` flags; returns it
/// and a client for the address it prints.
#[cfg(feature = "proxy")]
pub fn proxy(upstream: &str, extra: &[&str]) -> (Running, super::Http) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batch-proxy"));
    cmd.args(["--upstream", upstream, "--listen", "127.0.0.1:0"])
        .args(extra);
    let (child, line) = start(&mut cmd);
    // "batch-proxy listening on http://ADDR -> upstream ..."
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, super::Http::new(addr))
}

/// A `redis-server` of its own on a free 127.0.0.1 port, without persistence; stopped when
/// the test ends. Needs Debian's `redis-server` package (`.ci/run` installs it).
pub struct Redis {
    _server: Running,
    pub url: String,
}

impl Redis {
    pub fn start() -> Self {
        // A free port: taken from the kernel, then given to the server (which binds it
        // at once; retried if another process took it in between).
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"]);
            let child = cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install Debian's `redis-server` package")
            });
            let mut child = Running(child);
            let mut stdout = BufReader::new(child.0.stdout.take().unwrap()).lines();
            while let Some(Ok(line)) = stdout.next() {
                if line.contains("Ready to accept connections") {
                    // Its log goes on: read on, so that it never writes into a full pipe.
                    std::thread::spawn(move || stdout.for_each(drop));
                    return Self {
                        _server: child,
                        url: format!("redis://127.0.0.1:{port}/"),
                    };
                }
                if line.contains("Address already in use") {
                    break;
                }
            }
        }
        panic!("redis-server did not start");
    }
}
