//! Benchmark: builds a corpus of at least 1 GiB (copies of the local cargo registry's
//! sources, each file made unique, plus generated files with planted credentials of all
//! eight exchanges and decoys), then runs keygate-scan and, when installed, kingfisher,
//! ripsecrets and detect-secrets on it, printing throughput, recall per exchange and
//! false positives per 100 MiB.
//!
//! `cargo run --release -p keygate-scan --example bench -- [--size-mib N] [--dir D] [--threads N] [--timeout S]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/synth/mod.rs"]
mod synth;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rand::SeedableRng;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

struct Corpus {
    root: PathBuf,
    planted: HashMap<PathBuf, &'static str>,
    clean_bytes: u64,
    total_bytes: u64,
}

fn build_corpus(root: &Path, size: u64) -> Corpus {
    let marker = root.join(".complete");
    let clean = root.join("clean");
    let planted_dir = root.join("planted");
    let decoy_dir = root.join("decoys");
    if !marker.exists() {
        let _ = fs::remove_dir_all(root);
        let home = std::env::var("HOME").unwrap();
        let registry = Path::new(&home).join(".cargo/registry/src");
        let mut src = Vec::new();
        files_under(&registry, &mut src);
        src.sort();
        let mut written = 0u64;
        let mut copy = 0;
        'outer: loop {
            for f in &src {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name == ".gitignore" || name == ".ignore" {
                    continue;
                }
                let Ok(data) = fs::read(f) else { continue };
                if data.len() > 4 << 20 || data[..data.len().min(8192)].contains(&0) {
                    continue;
                }
                // The whole path below the registry, so that no two sources share a
                // destination (a shorter suffix made files overwrite each other).
                let rel = f.strip_prefix(&registry).unwrap_or(f).to_path_buf();
                let dest = clean.join(format!("copy{copy}")).join(rel);
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                // A unique first line, so that no tool can skip a copy as a duplicate blob.
                let mut out = format!("// corpus copy {copy}\n").into_bytes();
                out.extend_from_slice(&data);
                written += out.len() as u64;
                fs::write(&dest, out).unwrap();
                if written >= size {
                    break 'outer;
                }
            }
            copy += 1;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
        let mut truth = String::new();
        for ex in synth::EXCHANGES {
            for i in 0..30 {
                let c = synth::cred(ex, i, &mut rng);
                for (name, text) in synth::layouts(&c) {
                    let dir = planted_dir.join(ex).join(i.to_string());
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join(&name), text).unwrap();
                    truth.push_str(&format!("{ex}\t{}\n", dir.join(&name).display()));
                }
            }
        }
        for i in 0..30 {
            for (name, text) in synth::decoys(&mut rng) {
                let dir = decoy_dir.join(i.to_string());
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join(name), text).unwrap();
            }
        }
        fs::write(root.join("truth.tsv"), truth).unwrap();
        fs::write(&marker, "").unwrap();
    }
    let mut planted = HashMap::new();
    for line in fs::read_to_string(root.join("truth.tsv")).unwrap().lines() {
        let (ex, p) = line.split_once('\t').unwrap();
        let ex: &'static str = synth::EXCHANGES.iter().find(|e| **e == ex).unwrap();
        planted.insert(PathBuf::from(p), ex);
    }
    let size_of = |d: &Path| {
        let mut v = Vec::new();
        files_under(d, &mut v);
        v.iter()
            .map(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    let clean_bytes = size_of(&clean) + size_of(&decoy_dir);
    let total_bytes = clean_bytes + size_of(&planted_dir);
    Corpus {
        root: root.to_path_buf(),
        planted,
        clean_bytes,
        total_bytes,
    }
}

/// Every (path, line) pair in a JSON document: objects with a path-like and a line-like field.
fn json_hits(v: &serde_json::Value, parent_key: Option<&str>, out: &mut Vec<(PathBuf, u64)>) {
    match v {
        serde_json::Value::Object(m) => {
            let path = ["path", "file", "filename", "file_path", "uri"]
                .iter()
                .find_map(|k| m.get(*k).and_then(|x| x.as_str()));
            let line = ["line", "line_number", "start_line", "startLine", "line_num"]
                .iter()
                .find_map(|k| m.get(*k).and_then(serde_json::Value::as_u64));
            if let (Some(p), Some(l)) = (path, line) {
                out.push((PathBuf::from(p), l));
            } else if let (None, Some(l), Some(p)) = (path, line, parent_key) {
                out.push((PathBuf::from(p), l));
            }
            for (k, x) in m {
                json_hits(x, Some(k), out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                json_hits(x, parent_key, out);
            }
        }
        _ => {}
    }
}

struct Outcome {
    seconds: f64,
    hits: Vec<(PathBuf, u64)>,
    note: String,
}

fn run_external(
    cmd: &[&str],
    timeout: u64,
    parse: fn(&str) -> Vec<(PathBuf, u64)>,
) -> Option<Outcome> {
    which(cmd[0])?;
    let t0 = Instant::now();
    // Run from the corpus root: detect-secrets, started inside a git work tree, skips
    // paths outside it and reports nothing.
    let cwd = cmd
        .last()
        .map(Path::new)
        .filter(|p| p.is_dir())
        .unwrap_or(Path::new("/"));
    let out = Command::new("timeout")
        .arg(timeout.to_string())
        .args(cmd)
        .current_dir(cwd)
        .output()
        .ok()?;
    let seconds = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let note = if out.status.code() == Some(124) {
        format!("timed out after {timeout} s")
    } else if stdout.trim().is_empty() && cmd[0] != "sh" {
        // A tool that printed nothing did not scan; say so rather than report 0% recall.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("no output (exit {:?}): {last}", out.status.code())
    } else {
        String::new()
    };
    Some(Outcome {
        seconds,
        hits: parse(&stdout),
        note,
    })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

fn parse_json_any(s: &str) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
        json_hits(&v, None, &mut out);
    } else {
        for line in s.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                json_hits(&v, None, &mut out);
            }
        }
    }
    out
}

fn parse_colon_lines(s: &str) -> Vec<(PathBuf, u64)> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let p = it.next()?;
            let n = it.next()?.parse().ok()?;
            Some((PathBuf::from(p), n))
        })
        .collect()
}

fn main() {
    let size_mib: u64 = arg("--size-mib", "1100").parse().unwrap();
    let root = PathBuf::from(arg("--dir", "/tmp/keygate-bench"));
    let threads: usize = arg("--threads", "2").parse().unwrap();
    let timeout: u64 = arg("--timeout", "1800").parse().unwrap();
    let t0 = Instant::now();
    let corpus = build_corpus(&root, size_mib << 20);
    eprintln!(
        "corpus {}: {:.0} MiB ({:.0} MiB clean + decoys, {} planted files) ready in {:.0} s",
        corpus.root.display(),
        corpus.total_bytes as f64 / 1048576.0,
        corpus.clean_bytes as f64 / 1048576.0,
        corpus.planted.len(),
        t0.elapsed().as_secs_f64()
    );
    // Warm the page cache once so that no tool pays for the first read.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -type f -exec cat {{}} + > /dev/null 2>&1 || true",
            root.display()
        ))
        .status();

    let mut results: Vec<(String, Outcome)> = Vec::new();
    let scanner = keygate_scan::Scanner::builder().threads(threads).build();
    let t = Instant::now();
    let report = scanner.scan_paths(&[&root]).unwrap();
    let hits = report
        .active()
        .map(|f| (PathBuf::from(&f.path), f.line as u64))
        .collect();
    results.push((
        format!("keygate-scan ({threads} threads)"),
        Outcome {
            seconds: t.elapsed().as_secs_f64(),
            hits,
            note: String::new(),
        },
    ));

    let r = root.to_str().unwrap();
    let kf_out = format!("{r}/../kingfisher.json");
    if let Some(mut o) = run_external(
        &["sh", "-c", &format!("kingfisher scan {r} --format json --no-validate --no-dedup -j {threads} > {kf_out} 2>/dev/null; true")],
        timeout,
        |_| Vec::new(),
    )
    .filter(|_| which("kingfisher").is_some())
    {
        o.hits = parse_json_any(&fs::read_to_string(&kf_out).unwrap_or_default());
        results.push(("kingfisher".into(), o));
    }
    if let Some(o) = run_external(&["ripsecrets", r], timeout, parse_colon_lines) {
        results.push(("ripsecrets".into(), o));
    }
    if let Some(o) = run_external(
        &["detect-secrets", "scan", "--all-files", r],
        timeout,
        parse_json_any,
    ) {
        results.push(("detect-secrets".into(), o));
    }

    let mib = corpus.total_bytes as f64 / 1048576.0;
    let mut per_ex_total: BTreeMap<&str, usize> = BTreeMap::new();
    for ex in corpus.planted.values() {
        *per_ex_total.entry(ex).or_default() += 1;
    }
    println!(
        "corpus: {mib:.0} MiB, {} planted credential files, {} CPU threads",
        corpus.planted.len(),
        threads
    );
    print!("| tool | MiB/s | time (s) |");
    for ex in synth::EXCHANGES {
        print!(" {ex} |");
    }
    println!(" FP / 100 MiB clean |");
    println!("|{}", "---|".repeat(4 + synth::EXCHANGES.len()));
    for (name, o) in &results {
        let norm = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                Path::new("/").join(p)
            }
        };
        let found: HashSet<PathBuf> = o.hits.iter().map(|(p, _)| norm(p)).collect();
        let mut found_per_ex: BTreeMap<&str, usize> = BTreeMap::new();
        for (p, ex) in &corpus.planted {
            if found.contains(p) {
                *found_per_ex.entry(ex).or_default() += 1;
            }
        }
        let fps = o
            .hits
            .iter()
            .filter(|(p, _)| !corpus.planted.contains_key(&norm(p)))
            .count();
        print!("| {name} | {:.1} | {:.1} |", mib / o.seconds, o.seconds);
        for ex in synth::EXCHANGES {
            let tot = per_ex_total.get(ex).copied().unwrap_or(0);
            let f = found_per_ex.get(ex).copied().unwrap_or(0);
            print!(" {:.0}% |", 100.0 * f as f64 / tot.max(1) as f64);
        }
        println!(
            " {:.2} |{}",
            fps as f64 / (corpus.clean_bytes as f64 / (100.0 * 1048576.0)),
            if o.note.is_empty() {
                String::new()
            } else {
                format!(" {}", o.note)
            }
        );
    }
}
