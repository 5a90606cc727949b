//! Findings and reports: human text, JSON and SARIF 2.1.0.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use keygate_core::{escape_controls, escape_json_controls};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rules::{Role, RuleSet};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A key without its secret.
    Medium,
    /// A secret or private key, alone or with its key.
    High,
    /// A key or secret that keygate manages.
    Critical,
}

/// Why a finding does not fail the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suppression {
    /// The value is published in the exchange's documentation.
    DocumentationExample,
    /// A `keygate:allow` comment is on the line.
    InlineAllow,
    /// The fingerprint is listed in an ignore file (`.keygateignore`).
    IgnoreFile,
    /// The fingerprint is in the baseline report.
    Baseline,
}

impl Suppression {
    fn text(self) -> &'static str {
        match self {
            Suppression::DocumentationExample => "documentation example",
            Suppression::InlineAllow => "keygate:allow",
            Suppression::IgnoreFile => "ignore file",
            Suppression::Baseline => "baseline",
        }
    }
}

/// One value of a credential set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// Key, secret or passphrase.
    pub role: Role,
    /// The rule that found it.
    pub rule: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column (a UTF-8 byte-order mark does not count).
    pub column: usize,
    /// The value redacted for display.
    pub redacted: String,
    /// The full value, only when redaction was turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// How the value was written, when not as itself (`base64`); `value` and `redacted`
    /// are then of the decoded value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// For a value found in a binary file: its 0-based byte offset in the file (`line`
    /// and `column` then count line-feed bytes and bytes as if the file were text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The value's own fingerprint (see [`Finding::fingerprint`]), which an ignore file or
    /// baseline may list to cover this value in whatever set it is found. `None` for a
    /// passphrase, and in a report written before values had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Where in git history a finding first appeared.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provenance {
    /// The first commit (oldest by author time) that contains the blob.
    pub commit: String,
    /// The path of the blob in that commit.
    pub path: String,
    /// Author time of that commit, seconds since the epoch.
    pub author_time: i64,
    /// The blob id.
    pub blob: String,
}

/// One credential set (or lone key or secret) found in one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id of the main part (`kraken.private-key`), or `keygate.managed`.
    pub rule: String,
    /// Exchange id, or `managed` for a managed key no rule matched.
    pub exchange: String,
    /// One-line title, such as `Kraken API key + secret`.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Path of the file (repository-relative for git scans).
    pub path: String,
    /// 1-based line of the main part.
    pub line: usize,
    /// 1-based byte column of the main part (a UTF-8 byte-order mark does not count).
    pub column: usize,
    /// 1-based column of the main part in UTF-16 code units, as SARIF and most editors
    /// count (the line's bytes before it read as UTF-8, an invalid byte as U+FFFD). `None`
    /// in a binary file, where `offset` locates the part, and in a report written before
    /// it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utf16_column: Option<usize>,
    /// For a finding in a binary file: the 0-based byte offset of the main part in the
    /// file, which is what locates it there (`line` and `column` count line-feed bytes
    /// and bytes as if the file were text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The values of the set.
    pub parts: Vec<Part>,
    /// Path-independent fingerprint of the set, for ignore files and baselines: for one
    /// value, the first 128 bits of SHA-256 over the exchange and the value (never over a
    /// passphrase); for more, over their fingerprints. Listing it suppresses this set,
    /// not another that shares a value with it.
    pub fingerprint: String,
    /// Why the finding does not count, if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
    /// The keygate account whose key this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_account: Option<String>,
    /// Git provenance, for `--git` scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    /// Places this finding, made in a part of a file, in the whole of it: `lines` lines
    /// and `bytes` bytes came before the part.
    ///
    /// `columns` is where the buffer began on its first line, in bytes and UTF-16 units
    /// (nothing when it began at a line's start): a value on that line moves that far to
    /// the right.
    pub(crate) fn shift(&mut self, lines: usize, bytes: u64, columns: (usize, usize)) {
        let (column_bytes, column_units) = columns;
        if self.line == 1 {
            self.column += column_bytes;
            self.utf16_column = self.utf16_column.map(|c| c + column_units);
        }
        self.line += lines;
        self.offset = self.offset.map(|offset| offset + bytes);
        for part in &mut self.parts {
            if part.line == 1 {
                part.column += column_bytes;
            }
            part.line += lines;
            part.offset = part.offset.map(|offset| offset + bytes);
        }
    }

    /// True unless suppressed.
    pub fn is_active(&self) -> bool {
        self.suppressed.is_none()
    }
}

/// Counters of a scan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Files, blobs and commit or tag messages scanned.
    pub scanned: u64,
    /// Of those, the binary ones (a NUL byte in the first 8 KiB), scanned as the printable
    /// text in them.
    #[serde(default)]
    pub binary: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Files, blobs or messages skipped as unreadable or too large (each is also named in
    /// a warning).
    pub skipped: u64,
    /// Of those, the commit or tag messages over the size limit (64 MiB by default),
    /// whose keys were not looked for (a file or blob that large is scanned in windows).
    #[serde(default)]
    pub too_large: u64,
    /// Wall-clock time in milliseconds.
    pub elapsed_ms: u64,
}

/// The result of a scan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Findings, active and suppressed, ordered by path and line.
    pub findings: Vec<Finding>,
    /// Counters.
    pub stats: Stats,
}

impl Report {
    /// True when at least one finding is not suppressed.
    pub fn has_active(&self) -> bool {
        self.findings.iter().any(Finding::is_active)
    }

    /// Active findings.
    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_active())
    }

    /// The process exit code for this report: 0 clean, 1 findings.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.has_active())
    }

    /// Parses a report written by [`Report::to_json`], as used for baselines.
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Fingerprints of all findings and of each value in them.
    pub fn fingerprints(&self) -> HashSet<String> {
        self.findings
            .iter()
            .flat_map(|f| {
                std::iter::once(f.fingerprint.clone())
                    .chain(f.parts.iter().filter_map(|p| p.fingerprint.clone()))
            })
            .collect()
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        escape_json_controls(&serde_json::to_string_pretty(self).unwrap_or_default()).into_owned()
    }

    /// Human-readable text: one block per active finding, one line per suppressed one.
    ///
    /// Paths, values and commit ids come from the scanned files and repository, and a
    /// file name may hold any byte but `/` and NUL: every control character in the text
    /// printed is escaped (C0 and DEL as `\x1b`, C1 as `\u{9b}`), so that a committed file
    /// named `\x1b]0;…` cannot write escape sequences (or forge lines) on the terminal or
    /// CI log of whoever runs the scan. JSON and SARIF keep the exact text, in their own
    /// encoding.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        for f in self.active() {
            let sev = match f.severity {
                Severity::Critical => "CRITICAL",
                Severity::High => "HIGH",
                Severity::Medium => "MEDIUM",
            };
            let _ = writeln!(
                out,
                "{sev} {}  {}  [{}]",
                location(f, true),
                escape_controls(&f.title),
                escape_controls(&f.rule)
            );
            for p in &f.parts {
                let role = match p.role {
                    Role::Key => "key",
                    Role::Secret => "secret",
                    Role::Passphrase => "passphrase",
                    Role::Any => "value",
                };
                // A full value (`--no-redact`) of a PEM key keeps its line breaks: the engine
                // writes that text itself, base64 lines from the decoded key. Any other line
                // break is escaped like every control character.
                let shown = match &p.value {
                    Some(v) if v.starts_with("-----BEGIN ") => v
                        .split('\n')
                        .map(escape_controls)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Some(v) => escape_controls(v).into_owned(),
                    None => escape_controls(&p.redacted).into_owned(),
                };
                // In a binary file, a line number finds nothing: the byte offset does.
                let at = match p.offset {
                    Some(offset) => format!("byte {offset:<5}"),
                    None => format!("line {:<5}", p.line),
                };
                let _ = writeln!(out, "    {role:<10} {at} {shown}");
            }
            if let Some(p) = &f.provenance {
                let _ = writeln!(
                    out,
                    "    introduced in commit {} ({}, author time {})",
                    escape_controls(&p.commit),
                    escape_controls(&p.path),
                    p.author_time
                );
            }
            let _ = writeln!(out, "    fix: {}", escape_controls(&f.fix));
            let _ = writeln!(out, "    fingerprint: {}", escape_controls(&f.fingerprint));
        }
        for f in self.findings.iter().filter(|f| !f.is_active()) {
            let why = f.suppressed.map_or("", Suppression::text);
            let _ = writeln!(
                out,
                "suppressed ({why}): {}  {}  [{}]",
                location(f, false),
                escape_controls(&f.title),
                escape_controls(&f.rule)
            );
        }
        let active = self.active().count();
        let _ = writeln!(
            out,
            "{} finding(s), {} suppressed; scanned {} file(s) ({} binary), {:.1} MiB in {} ms; \
             skipped {} (too large or unreadable)",
            active,
            self.findings.len() - active,
            self.stats.scanned,
            self.stats.binary,
            self.stats.bytes as f64 / (1024.0 * 1024.0),
            self.stats.elapsed_ms,
            self.stats.skipped
        );
        out
    }

    /// SARIF 2.1.0, as accepted by GitHub code scanning.
    pub fn to_sarif(&self, rules: &RuleSet) -> String {
        let mut rule_ids: Vec<String> = rules.rules().iter().map(|r| r.id.clone()).collect();
        rule_ids.push("keygate.managed".to_owned());
        let rule_objs: Vec<serde_json::Value> = rule_ids
            .iter()
            .map(|id| {
                let (desc, fix) = match rules.rule(id) {
                    Some(r) => (r.description.clone(), rules.exchange_of(r).fix.clone()),
                    None => (
                        "A key or secret managed by keygate".to_owned(),
                        "a real account's key: make a new one at the exchange, delete this \
                         one there, then `keygate account rotate LABEL`; a client's secret: \
                         `keygate client rotate NAME`"
                            .to_owned(),
                    ),
                };
                json!({
                    "id": id,
                    "name": id.replace(['.', '-'], "_"),
                    "shortDescription": { "text": desc },
                    "fullDescription": { "text": desc },
                    "help": { "text": fix, "markdown": fix },
                    "defaultConfiguration": { "level": "error" },
                    "properties": {
                        "tags": ["security", "secret", "exchange-api-key"],
                        "precision": "high",
                        "security-severity": if id == "keygate.managed" { "9.5" } else { "8.0" }
                    }
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let index = rule_ids.iter().position(|r| *r == f.rule).unwrap_or(rule_ids.len() - 1);
                let uri = sarif_uri(&f.path);
                let mut r = json!({
                    "ruleId": rule_ids[index],
                    "ruleIndex": index,
                    "level": if f.severity == Severity::Medium { "warning" } else { "error" },
                    "message": { "text": format!("{} ({}). Fix: {}", f.title, f.parts.iter().map(|p| p.redacted.as_str()).collect::<Vec<_>>().join(", "), f.fix) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": uri, "uriBaseId": "%SRCROOT%" },
                            "region": {
                                "startLine": f.line,
                                "startColumn": f.utf16_column.unwrap_or(f.column)
                            }
                        }
                    }],
                    "partialFingerprints": { "keygate/v1": f.fingerprint },
                    "properties": { "exchange": f.exchange, "severity": f.severity }
                });
                if let Some(s) = f.suppressed {
                    let kind = if s == Suppression::InlineAllow { "inSource" } else { "external" };
                    r["suppressions"] = json!([{ "kind": kind, "justification": s.text() }]);
                }
                if let Some(offset) = f.offset {
                    r["locations"][0]["physicalLocation"]["region"]["byteOffset"] = json!(offset);
                }
                if let Some(p) = &f.provenance {
                    r["properties"]["commit"] = json!(p.commit);
                    r["properties"]["authorTime"] = json!(p.author_time);
                }
                r
            })
            .collect();
        // What was not scanned is said where a code-scanning page shows it (found by
        // review: a 72 MB dump, then skipped as too large, left the run looking clean).
        let mut notifications = Vec::new();
        if self.stats.too_large > 0 {
            notifications.push(json!({
                "level": "warning",
                "message": { "text": format!(
                    "{} commit or tag message(s) over the size limit were not scanned for \
                     keys (keygate scan names them on standard error): check them yourself",
                    self.stats.too_large
                ) }
            }));
        }
        let unreadable = self.stats.skipped.saturating_sub(self.stats.too_large);
        if unreadable > 0 {
            notifications.push(json!({
                "level": "warning",
                "message": { "text": format!(
                    "{unreadable} file(s) or blob(s) could not be read and were not scanned \
                     (keygate scan names them on standard error)"
                ) }
            }));
        }
        let doc = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "keygate-scan",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://example.invalid/keygate/docs/scan.md",
                    "rules": rule_objs
                }},
                "invocations": [{
                    "executionSuccessful": true,
                    "toolExecutionNotifications": notifications
                }],
                // SARIF's default unit, said so that no reader has to know the default.
                // (A binary file's columns count bytes: its `byteOffset` is what
                // locates a finding there.)
                "columnKind": "utf16CodeUnits",
                "results": results
            }]
        });
        escape_json_controls(&serde_json::to_string_pretty(&doc).unwrap_or_default()).into_owned()
    }
}

/// Where a finding is, for the human report: `path:line:column` (or `path:line`) in a
/// text file, and `path: byte N (binary file)` in a binary one, where lines mean nothing.
fn location(f: &Finding, column: bool) -> String {
    let path = escape_controls(&f.path);
    match f.offset {
        Some(offset) => format!("{path}: byte {offset} (binary file)"),
        None if column => format!("{path}:{}:{}", f.line, f.column),
        None => format!("{path}:{}", f.line),
    }
}

/// The path of a finding as a SARIF `artifactLocation.uri`: an RFC 3986 relative reference
/// (resolved against `%SRCROOT%`). Every byte of the UTF-8 path other than an unreserved
/// character (`A-Z a-z 0-9 - . _ ~`) or `/` is percent-encoded, so a space, `%`, `#`, `?`,
/// `:` or a non-ASCII name cannot end the path early, start a query or fragment, or be read
/// as a scheme. A leading `./` is dropped; leading slashes are folded into one, since `//`
/// would start an authority (a network-path reference) instead of a path.
pub(crate) fn sarif_uri(path: &str) -> String {
    let path = if cfg!(windows) {
        Cow::Owned(path.replace('\\', "/"))
    } else {
        Cow::Borrowed(path)
    };
    let absolute = path.starts_with('/');
    let mut path = path.trim_start_matches('/');
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.trim_start_matches('/');
    }
    let mut out = String::with_capacity(path.len() + 1);
    if absolute {
        out.push('/');
    }
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sarif_uri;

    #[test]
    fn sarif_uri_encodes_everything_but_unreserved_and_slash() {
        assert_eq!(sarif_uri("./a/b.env"), "a/b.env");
        assert_eq!(sarif_uri(".//./a"), "a");
        assert_eq!(sarif_uri("a b/c%d#e?f.env"), "a%20b/c%25d%23e%3Ff.env");
        assert_eq!(sarif_uri("clés/ü.env"), "cl%C3%A9s/%C3%BC.env");
        assert_eq!(sarif_uri("c:d"), "c%3Ad");
        assert_eq!(sarif_uri("/tmp/x y"), "/tmp/x%20y");
        assert_eq!(sarif_uri("//host/share"), "/host/share");
        assert_eq!(sarif_uri("~a-b_c.d"), "~a-b_c.d");
    }
}
