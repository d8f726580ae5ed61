//! Running the real `eye-server` binary: API nodes, workers, and the store they share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use eye_server::store::Store;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

/// One deployment: a data directory (SQLite), a Redis URL and a key prefix.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub redis_url: String,
    pub prefix: String,
}

impl Deployment {
    /// A fresh database (migrated) on `redis_url` under a unique prefix.
    pub fn new(redis_url: &str, name: &str) -> Self {
        let d = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            redis_url: redis_url.to_owned(),
            prefix: crate::harness::unique_prefix(name),
        };
        let out = d
            .command()
            .arg("migrate")
            .output()
            .expect("run eye-server migrate");
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("eye.db").display())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env("EYE_DATABASE_URL", self.database_url())
            .env("EYE_REDIS_URL", &self.redis_url)
            .env("EYE_REDIS_PREFIX", &self.prefix)
            .env("EYE_CLAIM_IDLE_MS", "1000")
            .env("EYE_REDIS_BLOCK_MS", "200")
            // Every test client connects from 127.0.0.1: lift the per-address share.
            .env("EYE_MAX_CONNECTIONS_PER_IP", "1024")
            .env("EYE_LOG_FORMAT", "json")
            .env("EYE_LOG", "info");
        cmd
    }

    /// `serve --no-worker` (an API node) on a free loopback port, without API keys.
    pub fn api(&self, extra: &[&str]) -> Proc {
        let mut cmd = self.command();
        cmd.args([
            "serve",
            "--no-worker",
            "--insecure-no-auth",
            "--bind",
            "127.0.0.1:0",
        ])
        .args(extra);
        Proc::start(cmd, Wait::Listening)
    }

    /// `serve` with its embedded worker, on a free loopback port, without API keys.
    pub fn serve(&self, extra: &[&str]) -> Proc {
        let mut cmd = self.command();
        cmd.args(["serve", "--insecure-no-auth", "--bind", "127.0.0.1:0"])
            .args(extra);
        Proc::start(cmd, Wait::Listening)
    }

    /// `worker` with a consumer name.
    pub fn worker(&self, consumer: &str, extra: &[&str]) -> Proc {
        let mut cmd = self.command();
        cmd.args(["worker", "--consumer-name", consumer])
            .args(extra);
        Proc::start(cmd, Wait::WorkerStarted)
    }

    /// `erase --session ID` run to completion.
    pub fn erase(&self, session: &str) -> std::process::Output {
        self.command()
            .args(["erase", "--session", session])
            .output()
            .expect("run eye-server erase")
    }

    /// The store, opened from the test.
    pub async fn store(&self) -> Store {
        Store::open(&self.database_url())
            .await
            .expect("open the store")
    }
}

#[derive(Clone, Copy)]
enum Wait {
    Listening,
    WorkerStarted,
}

/// A running `eye-server` process; killed on drop.
pub struct Proc {
    child: Child,
    pub addr: Option<String>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` (a `serve`) and waits until it listens.
    pub fn spawn_listening(cmd: Command) -> Self {
        Self::start(cmd, Wait::Listening)
    }

    /// Spawns `cmd` (a `worker`) and waits until its worker started.
    pub fn spawn_worker(cmd: Command) -> Self {
        Self::start(cmd, Wait::WorkerStarted)
    }

    fn start(mut cmd: Command, wait: Wait) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eye-server");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&lines);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let message = v["fields"]["message"].as_str().unwrap_or_default();
                    match (wait, v["fields"]["addr"].as_str()) {
                        (Wait::Listening, Some(addr)) => {
                            let _ = tx.send(addr.to_owned());
                        }
                        (Wait::WorkerStarted, _) if message == "worker started" => {
                            let _ = tx.send(String::new());
                        }
                        _ => {}
                    }
                }
                keep.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("eye-server did not start: {:?}", lines.lock().unwrap());
        };
        Self {
            child,
            addr: (!addr.is_empty()).then_some(addr),
            lines,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.addr.as_deref().expect("an API node")
        )
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
