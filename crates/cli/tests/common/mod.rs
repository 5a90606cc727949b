//! Helpers for the CLI tests: a throwaway home and the real `keygate` binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keygate_mockex::Credential;

use tempfile::TempDir;

/// The upstream [`Kg::add_account`] gives an account unless told otherwise: loopback's
/// discard port, where nothing listens, so a request that goes upstream fails at once
/// and never leaves the machine.
pub const DEAD_UPSTREAM: &str = "http://127.0.0.1:9";

/// The outcome of one `keygate` run.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Both streams, for searching.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A temporary directory holding a keygate home (`home/`) and a key file (`master.key`).
pub struct Kg {
    pub dir: TempDir,
}

impl Kg {
    /// An empty temporary directory; nothing initialised yet.
    pub fn empty() -> Kg {
        Kg {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// A vault initialised with a fresh key file.
    pub fn with_key_file() -> Kg {
        let kg = Kg::empty();
        let key = kg.key_file();
        kg.ok(
            &[
                "init",
                "--master-key-file",
                key.to_str().expect("utf-8 path"),
            ],
            "",
        );
        kg
    }

    /// The keygate home.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The database.
    pub fn db(&self) -> PathBuf {
        self.home().join("keygate.db")
    }

    /// Where `with_key_file` keeps the master key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    /// A path inside the temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `keygate --home HOME ARGS` with `stdin` piped in.
    pub fn run(&self, args: &[&str], stdin: &str) -> Out {
        run_keygate(&self.home(), self.dir.path(), args, stdin, None, &[])
    }

    /// Like [`Kg::run`], with environment variables `env` set for keygate.
    pub fn run_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, &Path)]) -> Out {
        run_keygate(&self.home(), self.dir.path(), args, stdin, None, env)
    }

    /// Like [`Kg::run`], logging at trace level (`KEYGATE_LOG=trace`).
    pub fn run_traced(&self, args: &[&str], stdin: &str) -> Out {
        run_keygate(
            &self.home(),
            self.dir.path(),
            args,
            stdin,
            Some("trace"),
            &[],
        )
    }

    /// Runs `keygate --home HOME ARGS` with its standard output a pipe whose reader has
    /// already gone, as in `keygate ... | head -0`; its standard output is not captured.
    pub fn run_without_reader(&self, args: &[&str]) -> Out {
        let (reader, writer) = std::io::pipe().expect("create a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KEYGATE_HOME")
            .env_remove("KEYGATE_LOG")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run keygate");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `keygate --home HOME ARGS` with `stdin` piped in and its standard output
    /// `/dev/full`, where every write fails (no space left on device), as on a full disk;
    /// its standard output is not captured.
    #[cfg(target_os = "linux")]
    pub fn run_to_full_device(&self, args: &[&str], stdin: &str) -> Out {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keygate"));
        command
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KEYGATE_HOME")
            .env_remove("KEYGATE_LOG")
            .stdout(std::fs::File::create("/dev/full").expect("open /dev/full"));
        fed(&mut command, stdin)
    }

    /// Like [`Kg::run`], asserting success.
    pub fn ok(&self, args: &[&str], stdin: &str) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(out.code, 0, "keygate {args:?} failed: {out:#?}");
        out
    }

    /// Like [`Kg::run`], asserting failure with `code`.
    pub fn fails(&self, args: &[&str], stdin: &str, code: i32) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(
            out.code, code,
            "keygate {args:?} should exit {code}: {out:#?}"
        );
        out
    }

    /// Like [`Kg::fails`], for a command that must stop by itself (a refused `serve`, a
    /// command that may call out): one still running after [`BOUND`] is killed and the
    /// test fails naming it, where a regression would otherwise hang the suite.
    pub fn fails_within(&self, args: &[&str], stdin: &str, code: i32) -> Out {
        let mut command = keygate_command(&self.home(), self.dir.path(), args, None, &[]);
        let out = fed_within(&mut command, stdin, BOUND, &format!("keygate {args:?}"));
        assert_eq!(
            out.code, code,
            "keygate {args:?} should exit {code}: {out:#?}"
        );
        out
    }

    /// Adds a binance account with the key and secret on stdin, whose upstream is
    /// [`DEAD_UPSTREAM`]: tests reach loopback only, and an account with no upstream is
    /// Binance itself, which serve's start-up reconciliation, `reconcile` and
    /// `doctor --exchange` would call with the planted key (found by review: a serve test
    /// resolved and contacted api.binance.com).
    pub fn add_account(&self, label: &str, key: &str, secret: &str) -> Out {
        self.add_account_with(label, key, secret, &[])
    }

    /// As [`Kg::add_account`], with `extra` options (`--upstream URL`, say; without one
    /// the upstream is [`DEAD_UPSTREAM`]). The key is stored unchecked (`--no-check`):
    /// the check has tests of its own.
    pub fn add_account_with(&self, label: &str, key: &str, secret: &str, extra: &[&str]) -> Out {
        let mut extra = extra.to_vec();
        if !extra.contains(&"--upstream") {
            extra.extend_from_slice(&["--upstream", DEAD_UPSTREAM]);
        }
        self.add_account_without_upstream(label, key, secret, &extra)
    }

    /// Adds a binance account with `extra` options as they are: without an `--upstream`
    /// among them, its exchange is Binance itself. Only for tests of what is said about the exchange's
    /// own hosts; such a test must never start serve (unless with `--reconcile-every
    /// off` and no request sent), `reconcile` or `doctor --exchange` on this home.
    pub fn add_account_without_upstream(
        &self,
        label: &str,
        key: &str,
        secret: &str,
        extra: &[&str],
    ) -> Out {
        let mut args = vec!["account", "add", "--exchange", "binance", "--label", label];
        args.extend_from_slice(extra);
        args.push("--no-check");
        self.ok(&args, &format!("{key}\n{secret}\n"))
    }

    /// Issues a client with `extra` options and returns the `--json` output.
    pub fn issue(&self, account: &str, name: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "client",
            "issue",
            "--account",
            account,
            "--name",
            name,
            "--json",
        ];
        args.extend_from_slice(extra);
        self.ok(&args, "").json()
    }

    /// The status `client list --json` reports for `name`.
    pub fn status(&self, name: &str) -> String {
        let list = self.ok(&["client", "list", "--json"], "").json();
        list.as_array()
            .expect("client list is an array")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("client {name} not listed: {list}"))["status"]
            .as_str()
            .expect("status is a string")
            .to_owned()
    }
}

/// How long [`Kg::fails_within`] and [`ended_within`]'s callers give a command that
/// must stop by itself.
pub const BOUND: Duration = Duration::from_secs(60);

/// Runs the real binary with a clean environment: HOME inside the temp dir, no
/// KEYGATE_* variables inherited but `KEYGATE_LOG=log_level` when one is given, and
/// `env` on top.
pub fn run_keygate(
    home: &Path,
    sandbox: &Path,
    args: &[&str],
    stdin: &str,
    log_level: Option<&str>,
    env: &[(&str, &Path)],
) -> Out {
    fed(
        &mut keygate_command(home, sandbox, args, log_level, env),
        stdin,
    )
}

/// The command [`run_keygate`] runs, its standard output piped.
fn keygate_command(
    home: &Path,
    sandbox: &Path,
    args: &[&str],
    log_level: Option<&str>,
    env: &[(&str, &Path)],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keygate"));
    command
        .arg("--home")
        .arg(home)
        .args(args)
        .env("HOME", sandbox)
        .env_remove("KEYGATE_HOME")
        .env_remove("KEYGATE_LOG");
    if let Some(level) = log_level {
        command.env("KEYGATE_LOG", level);
    }
    command.envs(env.iter().copied()).stdout(Stdio::piped());
    command
}

/// Runs `command` with `stdin` piped in and its standard error captured (its standard
/// output as the caller set it up).
fn fed(command: &mut Command, stdin: &str) -> Out {
    let out = spawned(command, stdin)
        .wait_with_output()
        .expect("wait for keygate");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// As [`fed`], killing the command and failing the test, naming it `what`, if it has not
/// ended within `limit`.
fn fed_within(command: &mut Command, stdin: &str, limit: Duration, what: &str) -> Out {
    let (status, stdout, stderr) = ended_within(spawned(command, stdin), limit, what);
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// `command` started with `stdin` written to it and closed, its standard error piped.
fn spawned(command: &mut Command, stdin: &str) -> Child {
    let mut child = command
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keygate");
    {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A command that does not read stdin may exit first; a broken pipe is fine then.
        let _ = pipe.write_all(stdin.as_bytes());
    }
    child
}

/// How `child` ended within `limit`, with what it printed on the standard output and
/// error it was given as pipes (read as it runs, so a full pipe cannot stall it). One
/// still running then is killed, and the test fails naming it `what`: a command that
/// should stop and does not is a bug, not a reason for CI to wait.
pub fn ended_within(mut child: Child, limit: Duration, what: &str) -> (ExitStatus, String, String) {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("read standard output");
    let stderr = stderr.join().expect("read standard error");
    (status, stdout, stderr)
}

/// The Python with ccxt installed, from `scripts/test.sh`.
pub fn python() -> PathBuf {
    let python = std::env::var_os("KEYGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with ccxt at {}: run the tests with `bash scripts/test.sh`, which creates it",
        python.display()
    );
    python
}

/// The SoftHSM2 module, or `None` (the caller skips, saying so) where it is not installed;
/// `scripts/test.sh` installs it and sets `KEYGATE_REQUIRE_SOFTHSM`, so CI never skips.
pub fn softhsm_module() -> Option<PathBuf> {
    let module = keygate_vault::hsm::softhsm_module();
    if module.is_none() {
        assert!(
            std::env::var_os("KEYGATE_REQUIRE_SOFTHSM").is_none(),
            "SoftHSM2 is required (KEYGATE_REQUIRE_SOFTHSM) but not installed"
        );
        eprintln!("skipped: SoftHSM2 is not installed (apt-get install softhsm2)");
    }
    module
}

/// libfaketime's preload library, to run keygate at another time (`FAKETIME`), or
/// `None`, saying so, where it is not installed; `scripts/test.sh` installs it and sets
/// `KEYGATE_REQUIRE_FAKETIME`, so CI never skips.
pub fn libfaketime() -> Option<PathBuf> {
    let found = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("KEYGATE_REQUIRE_FAKETIME").is_none(),
            "libfaketime is required (KEYGATE_REQUIRE_FAKETIME) but not installed"
        );
        eprintln!("skipped: libfaketime is not installed (apt-get install faketime)");
    }
    found
}

/// A SoftHSM2 configuration whose tokens live in `dir/tokens`, with one token per label
/// in `labels`, each with user PIN `pin`. Returns the configuration file, for
/// `SOFTHSM2_CONF`.
pub fn softhsm_tokens(dir: &Path, labels: &[&str], pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("create the token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    for label in labels {
        let status = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", "security-officer"])
            .stdout(Stdio::null())
            .status()
            .expect("run softhsm2-util");
        assert!(
            status.success(),
            "softhsm2-util --init-token {label} failed"
        );
    }
    conf
}

/// The JSON summary a Python script run against `kg`'s serve printed on its last line of
/// standard output; the script's output and serve's log are shown if it failed.
pub fn script_summary(run: &std::process::Output, kg: &Kg) -> serde_json::Value {
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        std::fs::read_to_string(kg.path("serve.log")).unwrap_or_default()
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// `keygate serve` on a free loopback port, logging at trace level to `serve.log` in the
/// test's directory; stopped with SIGTERM on drop, as an operator stops it.
pub struct Serve {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
    pub log: PathBuf,
    /// Reads serve's standard output to its end (a reader dropped after the first line
    /// left the rest unread and unsearched); what [`Serve::stop`] returns.
    printed: Option<std::thread::JoinHandle<Vec<u8>>>,
    /// Whether it was stopped and waited for already.
    stopped: bool,
}

impl Serve {
    pub fn start(kg: &Kg) -> Serve {
        Serve::start_with(kg, &[])
    }

    pub fn start_with(kg: &Kg, options: &[&str]) -> Serve {
        Serve::start_with_env(kg, options, &[])
    }

    /// With `env` added to its environment (libfaketime's, say).
    pub fn start_with_env(kg: &Kg, options: &[&str], env: &[(&str, &Path)]) -> Serve {
        let log = kg.path("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .arg("--home")
            .arg(kg.home())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(options)
            .envs(env.iter().copied())
            .env("KEYGATE_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let first = line.clone().into_bytes();
        let printed = std::thread::spawn(move || {
            let mut all = first;
            let _ = stdout.read_to_end(&mut all);
            all
        });
        let addr = line
            .trim()
            .strip_prefix("keygate listening on ")
            .and_then(|s| {
                s.strip_prefix("http://")
                    .or_else(|| s.strip_prefix("https://"))
            })
            .and_then(|s| s.strip_suffix("/binance"))
            .unwrap_or_else(|| panic!("unexpected serve output {line:?}"))
            .to_owned();
        Serve {
            child,
            addr,
            log,
            printed: Some(printed),
            stopped: false,
        }
    }

    /// Stops serve as dropping it does, and returns everything it printed on its
    /// standard output.
    pub fn stop(mut self) -> Vec<u8> {
        self.stop_child();
        self.printed
            .take()
            .map(|printed| printed.join().expect("read serve's standard output"))
            .unwrap_or_default()
    }

    /// SIGTERM, as an operator would stop it: it drains and flushes its audit log. One
    /// that has not stopped a minute later is killed, and the test fails (unless it is
    /// failing already): a stop that hangs is a bug, not a reason for CI to wait.
    fn stop_child(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        if !terminate(&self.child) {
            let _ = self.child.kill();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(self.child.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                if !std::thread::panicking() {
                    panic!("keygate serve did not stop within 60 s of SIGTERM");
                }
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    /// Stops serve ([`Serve::stop`] without its output).
    fn drop(&mut self) {
        self.stop_child();
    }
}

/// Sends SIGTERM to `child`, in-process: a machine without the `kill` command would
/// otherwise wait forever. Whether it was sent.
#[cfg(target_os = "linux")]
pub fn terminate(child: &Child) -> bool {
    use rustix::process::{kill_process, Pid, Signal};
    kill_process(Pid::from_child(child), Signal::TERM).is_ok()
}

/// Sends SIGTERM to `child` with the `kill` command; whether it was sent.
#[cfg(not(target_os = "linux"))]
pub fn terminate(child: &Child) -> bool {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The Binance simulator on loopback, accepting `credentials`, on a runtime that the
/// caller keeps for as long as it needs the simulator (and can spawn more on).
pub fn simulator(
    credentials: Vec<Credential>,
) -> (tokio::runtime::Runtime, keygate_mockex::RunningSimulator) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let exchange = runtime
        .block_on(keygate_mockex::spawn(
            "127.0.0.1:0".parse().unwrap(),
            credentials,
        ))
        .unwrap();
    (runtime, exchange)
}
