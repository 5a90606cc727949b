//! Text that came from outside (a bot, an exchange, a scanned file, the database), made
//! safe to show: on a terminal, in a JSON document a terminal may show, in a CSV cell.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every character escaped that could make a terminal show something other
/// than the text, for human-readable output of what came from outside (a scanned file, a
/// bot, an exchange, the database): C0 (including tab, line feed and carriage return) and
/// DEL as `\xNN`; C1 (U+0080 to U+009F, which some terminals read as ESC sequences too:
/// U+009B is CSI) as `\u{NN}`; and as `\u{NNNN}` the bidirectional controls (U+061C,
/// U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), which reorder what follows them
/// on the line ("Trojan Source", CVE-2021-42574), the line and paragraph separators
/// (U+2028, U+2029), and the characters that show as nothing (the soft hyphen U+00AD,
/// U+180E, the zero-width space, non-joiner and joiner U+200B to U+200D, the word joiner
/// and invisible operators U+2060 to U+2064, the byte-order mark U+FEFF), with which a
/// withdrawal address a bot named would read as one on the list (found by review).
/// Nothing else changes (a backslash stays as it is, so Windows paths read as usual);
/// text without such a character is borrowed as it is.
///
/// ```
/// assert_eq!(keygate_core::escape_controls("a\x1b[2Jb"), "a\\x1b[2Jb");
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match u32::from(c) {
            n @ (0..=0x1f | 0x7f) => {
                let _ = write!(out, "\\x{n:02x}");
            }
            n if needs_escape(c) => {
                let _ = write!(out, "\\u{{{n:x}}}");
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text (as `serde_json` writes it) with the characters [`escape_controls`] escapes
/// written as JSON escapes (`\u009b`): the same document, which a terminal shows as
/// written. `serde_json` escapes C0 itself, and leaves DEL, C1, the bidirectional
/// controls and the line separators as they are; outside strings JSON is ASCII, so every
/// one of them is inside a string.
///
/// ```
/// let json = serde_json::to_string("a\u{9b}2J\u{202e}").unwrap();
/// assert_eq!(keygate_core::escape_json_controls(&json), r#""a\u009b2J\u202e""#);
/// ```
pub fn escape_json_controls(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| u32::from(c) >= 0x7f && needs_escape(c);
    if !json.chars().any(escaped) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_controls`] escapes `c`.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{00ad}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200d}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, escape_json_controls};

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape_controls("a\x1b]0;x\x07b\tc\n\r\x7f\u{9b}31m\u{85}"),
            "a\\x1b]0;x\\x07b\\x09c\\x0a\\x0d\\x7f\\u{9b}31m\\u{85}"
        );
        // Trojan Source: the right-to-left override and isolates reorder the line.
        assert_eq!(
            escape_controls("key\u{202e}vne.\u{2066}x\u{2069}\u{200f}\u{2028}"),
            "key\\u{202e}vne.\\u{2066}x\\u{2069}\\u{200f}\\u{2028}"
        );
        // Characters that show as nothing: an address with one would read as another.
        assert_eq!(
            escape_controls("TCold\u{200b}Wallet\u{feff}\u{2060}\u{ad}1"),
            "TCold\\u{200b}Wallet\\u{feff}\\u{2060}\\u{ad}1"
        );
        for plain in [
            "clés/ü #1?.env",
            "C:\\keys\\.env",
            "\u{a0}密钥\u{202f}",
            "مفتاح",
            "",
        ] {
            assert!(matches!(escape_controls(plain), std::borrow::Cow::Borrowed(p) if p == plain));
        }
    }

    /// A regression test: `--json` output and the JSONL export wrote DEL, C1 (U+009B is
    /// CSI), the bidirectional controls and the line separators a bot put in a request
    /// raw to the operator's terminal; `serde_json` escapes only C0.
    #[test]
    fn json_keeps_its_meaning_and_shows_as_written() {
        let value = serde_json::json!({
            "network": "\u{9b}2J\u{7f}",
            "note": "x\u{202e}y\u{2028}\x1b",
            "plain": "密钥 é",
        });
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let escaped = escape_json_controls(&pretty);
        assert!(escaped.contains(r#""\u009b2J\u007f""#), "{escaped}");
        assert!(escaped.contains(r#""x\u202ey\u2028\u001b""#), "{escaped}");
        assert!(escaped.contains("密钥 é") && escaped.contains('\n'));
        assert!(!escaped
            .chars()
            .any(|c| u32::from(c) >= 0x7f && c.is_control()));
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
        let plain = serde_json::to_string(&serde_json::json!({"a": "b"})).unwrap();
        assert!(matches!(
            escape_json_controls(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
