//! The README's walkthrough, "Five minutes with keygate", run as a newcomer runs it: each
//! line of its shell blocks by bash in a fresh `HOME`, against the simulator as the README
//! offers, then its ccxt and python-binance snippets by a real Python, given the virtual
//! credentials step 3 printed. What the test changes, it says: ports (the README's 9090
//! and 8080 become free ones), the simulator's credentials file (in the test's directory
//! instead of `/tmp`), and the two commands that run in the foreground, started in the
//! background instead.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{ended_within, python, terminate};

/// The README's ports, and where its simulator's credentials file is written.
const README_SIMULATOR: &str = "127.0.0.1:9090";
const README_GATEWAY: &str = "127.0.0.1:8080";
const README_CREDENTIALS: &str = "/tmp/sim.json";

/// The walkthrough's blocks, in order: each with its language and text (a shell line
/// ending in `\` or `|` joined to the next).
fn walkthrough_blocks() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md is readable");
    let start = readme
        .find("## Five minutes with keygate")
        .expect("the README has its walkthrough");
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 3);
    let mut blocks = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in section[..end].lines() {
        match (line.trim_start().strip_prefix("```"), block.as_mut()) {
            (Some(_), Some(_)) => blocks.extend(block.take()),
            (Some(language), None) => block = Some((language.trim().to_owned(), String::new())),
            (None, Some((_, text))) => {
                if let Some(head) = line.strip_suffix('\\') {
                    text.push_str(head);
                } else if line.trim_end().ends_with('|') {
                    // A pipe goes on on the next line.
                    text.push_str(line);
                    text.push(' ');
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A command of the walkthrough that stays in the foreground, started in the background;
/// the address it prints on its first line, after `prefix`. The rest of what it prints
/// is read to its end, so that it never writes to a closed pipe.
fn started(shell: &mut Command, line: &str, prefix: &str) -> (Child, String) {
    let mut child = shell
        .arg(format!("exec {line}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("its first line");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = first
        .trim()
        .strip_prefix(prefix)
        .map(|rest| rest.trim_end_matches("/binance").to_owned())
        .unwrap_or_else(|| panic!("`{line}` printed {first:?}"));
    (child, addr)
}

/// The commands started in the background, stopped with SIGTERM when dropped, as an
/// operator stops them (on a failed assertion too: none is left running).
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for child in &self.0 {
            terminate(child);
        }
        for child in self.0.drain(..) {
            let (status, _, _) =
                ended_within(child, Duration::from_secs(30), "a background command");
            if !std::thread::panicking() {
                assert!(status.success(), "a background command ended with {status}");
            }
        }
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let keygate = Path::new(env!("CARGO_BIN_EXE_keygate"));
    let path = format!(
        "{}:{}",
        keygate.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let credentials = dir.path().join("sim.json");
    let shell = || {
        let mut bash = Command::new("bash");
        bash.args(["-euo", "pipefail", "-c"])
            .env("HOME", dir.path())
            .env("PATH", &path)
            .env_remove("KEYGATE_HOME")
            .env_remove("KEYGATE_LOG")
            .current_dir(dir.path());
        bash
    };
    let mut background = Background(Vec::new());
    let mut simulator = String::new();
    let mut gateway = String::new();
    // Step 2 as the README says to run it against the simulator: with the credentials
    // and `--upstream` the simulator's block shows.
    let mut feed_step_two: Option<(String, String)> = None;
    let mut virtual_key = None;
    let mut ran = Vec::new();
    let blocks = walkthrough_blocks();
    for (_, text) in blocks.iter().filter(|(language, _)| language == "sh") {
        for line in text.lines().map(str::trim) {
            let command = line.split(" #").next().unwrap_or(line).trim();
            if command.is_empty() || command.starts_with('#') {
                continue;
            }
            let command = command.replace(README_CREDENTIALS, &credentials.display().to_string());
            if command.starts_with("cargo install") {
                // The test runs the binary it built.
                continue;
            }
            if command.starts_with("keygate dev mock-exchange") {
                let command = command.replace(README_SIMULATOR, "127.0.0.1:0");
                let (child, addr) =
                    started(&mut shell(), &command, "mock binance listening on http://");
                background.0.push(child);
                simulator = addr;
                ran.push("simulator");
                continue;
            }
            let command = command.replace(README_SIMULATOR, &simulator);
            if let Some((feed, add)) = command.split_once(" | ") {
                let add = add.trim_start();
                if add.starts_with("keygate account add") {
                    let upstream = add
                        .split_once("--upstream ")
                        .map(|(_, url)| url.trim().to_owned())
                        .expect("the simulator's account add names its upstream");
                    feed_step_two = Some((
                        feed.to_owned(),
                        upstream.replace(README_SIMULATOR, &simulator),
                    ));
                    continue;
                }
            }
            if command.starts_with("keygate serve") {
                let command = command.replace(README_GATEWAY, "127.0.0.1:0");
                let (child, addr) = started(&mut shell(), &command, "keygate listening on http://");
                background.0.push(child);
                gateway = addr;
                ran.push("serve");
                continue;
            }
            let command = match (&feed_step_two, command.starts_with("keygate account add")) {
                (Some((feed, upstream)), true) => {
                    ran.push("account add");
                    format!("{feed} | {command} --upstream {upstream}")
                }
                _ => command,
            };
            let run = shell().arg(&command).output().expect("bash runs");
            let stdout = String::from_utf8_lossy(&run.stdout);
            assert!(
                run.status.success(),
                "`{command}` failed: {}\n{stdout}",
                String::from_utf8_lossy(&run.stderr)
            );
            if command.starts_with("keygate client issue") {
                let field = |name: &str| {
                    stdout
                        .lines()
                        .find_map(|line| line.trim().strip_prefix(name))
                        .map(|value| value.trim().to_owned())
                        .unwrap_or_else(|| panic!("client issue printed no {name}\n{stdout}"))
                };
                virtual_key = Some((field("api key:"), field("secret:")));
                ran.push("client issue");
            }
        }
    }
    assert_eq!(
        ran,
        ["simulator", "account add", "client issue", "serve"],
        "the walkthrough's steps changed: update this test with them"
    );
    let (key, secret) = virtual_key.expect("step 3 issued a key");
    let snippets: Vec<&String> = blocks
        .iter()
        .filter(|(language, _)| language == "python")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(snippets.len(), 2, "the ccxt and python-binance snippets");
    for snippet in snippets {
        let script = snippet
            .replace("VIRTUAL_KEY", &format!("{key:?}"))
            .replace("VIRTUAL_SECRET", &format!("{secret:?}"))
            .replace(README_GATEWAY, &gateway);
        let child = Command::new(python())
            .arg("-c")
            .arg(&script)
            .env("NO_PROXY", "*")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        let (status, stdout, stderr) = ended_within(child, Duration::from_secs(60), "a snippet");
        assert!(status.success(), "{script}\nfailed: {stdout}\n{stderr}");
    }
    drop(background);
}
