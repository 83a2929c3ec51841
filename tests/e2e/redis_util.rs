//! A real `redis-server` for the Redis tests (`tests/lnbits_redis.rs`,
//! `tests/payments_redis.rs`, which include this file by `#[path]`): started from the
//! system's packages on a free port with a temporary directory, no persistence, killed on
//! drop. Not part of the hermetic `e2e` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running redis-server.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// The first redis-server binary that runs (`--version`).
    pub fn binary() -> Option<String> {
        [
            "redis-server",
            "/usr/bin/redis-server",
            "/usr/local/bin/redis-server",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
    }

    /// A free port on 127.0.0.1 and a fresh directory named `<name>-<pid>-<port>` for it.
    pub fn free_port_and_dir(name: &str) -> (u16, PathBuf) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("{name}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (port, dir)
    }

    /// Start `bin` on `port` with `dir` and wait until it answers PING.
    pub async fn start(bin: &str, port: u16, dir: &Path) -> Redis {
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        let r = Redis { child, port };
        let mut ready = false;
        for _ in 0..500 {
            if r.ping().await {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ready, "redis-server did not answer PING on port {port}");
        r
    }

    async fn ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
