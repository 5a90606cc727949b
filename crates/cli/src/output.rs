//! Small helpers for what commands print: times, ages, JSON and tables.

use std::io::{self, Write};

use anyhow::Context;
use zeroize::Zeroizing;

/// A Unix time in milliseconds as RFC 3339 with milliseconds (`2025-01-01T00:00:00.000Z`).
pub use keygate_core::rfc3339;

/// A coarse, human age or remaining time: `3d`, `5h`, `12m`, `40s`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `text` with its control characters escaped (`\x1b`), for a terminal: text that came
/// from a bot, the exchange or the database must not move the cursor, recolour the
/// operator's screen or reorder the line. The scanner's escaping, so that every terminal
/// line keygate writes escapes the same characters the same way.
pub use keygate_core::escape_controls;

/// Whether to colour what goes to `stream`: on a terminal, unless `NO_COLOR` is set to
/// anything but nothing (<https://no-color.org>).
pub fn colours(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The context of a failed write of ordinary output to standard output: `main` ends the
/// command quietly when its cause is a reader that went away. Output that must arrive
/// (credentials shown once) says otherwise, and fails.
pub const STDOUT_WRITE: &str = "writing to standard output";

/// The context of a failed write of what a command that changed the vault prints: the
/// change stands (it was committed before the first line was written), and the operator
/// must not take the error for a refusal and make it again.
pub const CHANGE_MADE: &str = "the change is made, but its output could not be written";

/// Writes ordinary output to standard output with `write`, then flushes it: a failure is
/// an error in [`STDOUT_WRITE`]'s context (quiet when the reader went away), never the
/// panic of `println!`, which exits 101 as if keygate had a bug.
pub fn print(
    write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    write(&mut out)
        .and_then(|()| out.flush())
        .context(STDOUT_WRITE)
}

/// [`print()`], for what a command prints once its change is committed: a failure says
/// that the change is made ([`CHANGE_MADE`]).
pub fn print_after_change(
    write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
) -> anyhow::Result<()> {
    print(write).context(CHANGE_MADE)
}

/// Writes `line` and a newline to standard error, as `eprintln!` does without its panic
/// when standard error is gone (a terminal that hung up): a warning that cannot be shown
/// does not turn what the command did into an "internal error", nor change its exit code.
pub fn tell(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Prints `value` as pretty JSON on standard output, shown on a terminal as written
/// (see [`keygate_core::escape_json_controls`]).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON output")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", keygate_core::escape_json_controls(&text))
        .and_then(|()| out.flush())
        .context(STDOUT_WRITE)
}

/// Text that holds a secret, on its way to standard output.
///
/// `print!` would leave a copy in std's stdout buffer, which is never zeroized. This
/// gathers the text in a buffer of its own, zeroized when it grows and on drop, and
/// [`SecretOutput::finish`] writes it to a duplicate of the standard output descriptor,
/// unbuffered, after whatever `print!` left behind.
pub struct SecretOutput {
    text: Zeroizing<Vec<u8>>,
}

impl SecretOutput {
    /// Room for a set of credentials and the snippet around them without growing.
    const CAPACITY: usize = 4096;

    pub fn new() -> SecretOutput {
        SecretOutput {
            text: Zeroizing::new(Vec::with_capacity(SecretOutput::CAPACITY)),
        }
    }

    /// Writes everything gathered to standard output, then zeroizes it.
    #[cfg(unix)]
    pub fn finish(self) -> anyhow::Result<()> {
        use std::os::fd::AsFd;
        let stdout = io::stdout();
        stdout
            .lock()
            .flush()
            .context("writing the credentials to standard output")?;
        let descriptor = stdout
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the standard output descriptor")?;
        std::fs::File::from(descriptor)
            .write_all(&self.text)
            .context("writing the credentials to standard output")
    }

    /// Writes everything gathered to standard output, then zeroizes it (through std's
    /// buffer, where no descriptor can be duplicated).
    #[cfg(not(unix))]
    pub fn finish(self) -> anyhow::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(&self.text)
            .and_then(|()| stdout.flush())
            .context("writing the credentials to standard output")
    }
}

impl Write for SecretOutput {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let needed = self.text.len() + bytes.len();
        if needed > self.text.capacity() {
            // Grown by hand: a reallocation by `Vec` would free the old copy unzeroized.
            let mut larger =
                Zeroizing::new(Vec::with_capacity(needed.max(2 * self.text.capacity())));
            larger.extend_from_slice(&self.text);
            self.text = larger;
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Prints rows as left-aligned columns under `header`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    // Cells come from the database, which anyone who can write it fills: no cell may move
    // the cursor, retitle the window or reorder the line.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| escape_controls(cell).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line(header.to_vec())).context(STDOUT_WRITE)?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))
            .context(STDOUT_WRITE)?;
    }
    out.flush().context(STDOUT_WRITE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339_and_spans_round_down() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(90 * 60_000), "1h");
        assert_eq!(span(3 * 86_400_000 + 5), "3d");
    }

    #[test]
    fn secret_output_keeps_everything_written_past_its_first_capacity() {
        let mut out = SecretOutput::new();
        let line = "0123456789abcdef".repeat(64);
        for _ in 0..10 {
            writeln!(out, "{line}").unwrap();
        }
        assert_eq!(out.text.len(), 10 * (line.len() + 1));
        assert!(out.text.capacity() >= out.text.len());
        assert!(out
            .text
            .chunks(line.len() + 1)
            .all(|l| l[..line.len()] == *line.as_bytes()));
    }
}
