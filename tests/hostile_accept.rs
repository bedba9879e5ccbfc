//! Out of file descriptors, a server's accept fails (`EMFILE`) until a connection closes.
//! The demo and `batch-proxy` then pause before they accept again, 5 ms doubling to 1 s,
//! instead of retrying at once on a spinning core; and they serve again once descriptors
//! are free. Each runs as a process with a small descriptor limit, and a client holds
//! connections until it fails; the pauses are read from the server's log (no clock).

mod common;

use common::process::Running;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The descriptors the server may open: a few for itself, the rest for connections.
const FD_LIMIT: u32 = 64;

/// `program args…` under `ulimit -n FD_LIMIT`, its log (and first line) on `stdout`.
fn limited(program: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Holds connections to `addr` until the server's log shows four failed accepts in a row,
/// each after a longer pause; then lets them go and sends a request that must be served.
fn exhaust_then_recover(mut child: Running, log: impl BufRead + Send + 'static, addr: &str) {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pauses = Vec::new();
        for line in log.lines().map_while(Result::ok) {
            if line.contains("accept failed") {
                let pause = line.split("retry_in=").nth(1).map(|s| s.trim().to_string());
                pauses.push(pause.unwrap_or_default());
                if pauses.len() == 4 {
                    let _ = seen_tx.send(pauses.clone());
                }
            }
        }
    });
    let mut held = Vec::new();
    for _ in 0..(FD_LIMIT * 2) {
        // The kernel completes the handshake into the backlog whether or not the server
        // accepts: past its limit, connections wait there.
        held.push(TcpStream::connect(addr).expect("connect"));
    }
    let pauses = seen_rx.recv().expect("the server logs its failed accepts");
    assert_eq!(pauses, ["5ms", "10ms", "20ms", "40ms"], "a growing pause");
    drop(held);
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 "), "{reply}");
    let _ = child.0.kill();
}

/// The address in a line like "… listening on http://127.0.0.1:PORT …".
fn address(line: &str) -> String {
    let rest = line.split("http://").nth(1).expect("an address");
    rest.split_whitespace().next().unwrap().to_string()
}

/// The demo example, as `cargo test` builds it beside the test binaries.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_demo_pauses_when_accept_fails_and_serves_again() {
    let binary = demo_binary();
    assert!(
        binary.exists(),
        "cargo test builds the demo example: {binary:?}"
    );
    let mut cmd = limited(
        &binary,
        &["--addr", "127.0.0.1:0", "--header-timeout-secs", "600"],
    );
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = address(&first);
    exhaust_then_recover(Running(child), out, &addr);
}

#[cfg(feature = "proxy")]
#[test]
fn the_proxy_pauses_when_accept_fails_and_serves_again() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_batch-proxy"));
    // The upstream is never reached: `/whoami` answers 502, which is a reply all the same.
    let args = [
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--header-timeout-secs",
        "600",
    ];
    let mut cmd = limited(&binary, &args);
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = address(&first);
    let log = BufReader::new(child.stderr.take().unwrap());
    // The proxy's stdout says no more; its log is on stderr.
    std::thread::spawn(move || out.read_to_end(&mut Vec::new()));
    exhaust_then_recover(Running(child), log, &addr);
}
