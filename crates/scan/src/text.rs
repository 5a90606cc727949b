//! Text encodings: a buffer that starts with a UTF-16 byte-order mark, and is UTF-16, is
//! decoded to UTF-8.
//!
//! Windows PowerShell (`Out-File`, `>` redirection), `regedit` exports (`.reg`) and some
//! configuration exports write UTF-16 with a BOM. Scanned as bytes, every ASCII character
//! of such a file is followed or preceded by a NUL: the file looks binary and no key in it
//! is a token. A BOM alone does not make a file UTF-16, though: `FF FE` in front of a
//! UTF-8 `.env` is read by dotenv loaders as a stray first line, and decoding that file as
//! UTF-16 would turn every key in it into CJK characters. So the BOM selects UTF-16 only
//! when the bytes hold a NUL byte, anywhere: every ASCII character in UTF-16 comes with
//! one, so a UTF-16 file that holds a key (keys are ASCII) has NUL bytes, even when its
//! first pages are all CJK; and UTF-8 text behind a stray or forged BOM has none, so a BOM
//! gives no way to hide a key. There is no other guessing from content.

use std::borrow::Cow;

use crate::engine::{is_binary, LineIndex};
use crate::report::Finding;

/// The UTF-8 byte-order mark, which no editor shows as part of the first line.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Makes the columns of the findings in `text` (a reading scanned as text) count as
/// editors and code-scanning tools do: a UTF-8 byte-order mark at the start is no part of
/// the first line, so byte columns there lose its three bytes; and each finding gets its
/// column in UTF-16 code units ([`Finding::utf16_column`]), SARIF's unit, in which `é` is
/// one and `😀` two where they are two and four bytes.
pub(crate) fn set_editor_columns(text: &[u8], findings: &mut [Finding]) {
    if findings.is_empty() {
        return;
    }
    let bom = if text.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    let lines = LineIndex::new(text);
    if bom > 0 {
        for f in findings.iter_mut() {
            if f.line == 1 {
                f.column = f.column.saturating_sub(bom).max(1);
            }
            for p in f.parts.iter_mut().filter(|p| p.line == 1) {
                p.column = p.column.saturating_sub(bom).max(1);
            }
        }
    }
    // In order of line and column, each count goes on from the one before it on its line:
    // counting from the start of the line for each finding cost the square of the line's
    // length on a line with many. A column is at a value's first byte, which is ASCII,
    // so no count stops inside a character.
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by_key(|&i| (findings[i].line, findings[i].column));
    // The line counted in, the byte counted to (after the BOM), and the units before it.
    let mut counted: Option<(usize, usize, usize)> = None;
    for i in order {
        let f = &mut findings[i];
        let Some(index) = f.line.checked_sub(1).filter(|&l| l < lines.count()) else {
            continue;
        };
        let skip = if index == 0 { bom } else { 0 };
        let line = lines.text(text, index);
        let end = skip + f.column.saturating_sub(1);
        if end > line.len() {
            continue;
        }
        let (from, units) = match counted {
            Some((l, to, units)) if l == index && to <= end => (to, units),
            _ => (skip, 0),
        };
        column_steps(end - from);
        let units = units + utf16_units(&line[from..end]);
        counted = Some((index, end, units));
        f.utf16_column = Some(units + 1);
    }
}

/// How many UTF-16 units `bytes` read as UTF-8 are (an invalid sequence as one U+FFFD, as
/// a lossy reading gives it), counted without making the text: a window of a line that
/// long is tens of megabytes.
pub(crate) fn utf16_units(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| {
            let valid: usize = chunk.valid().chars().map(char::len_utf16).sum();
            valid + usize::from(!chunk.invalid().is_empty())
        })
        .sum()
}

#[cfg(test)]
thread_local! {
    /// Bytes read to count UTF-16 columns, counted in unit tests only: they check that
    /// this work grows with the length of the text, however many findings a line has.
    static COLUMN_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes read for UTF-16 columns; nothing outside unit tests.
#[inline]
fn column_steps(n: usize) {
    #[cfg(test)]
    COLUMN_STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

/// What to scan of `data`: [`decode`]'s reading, and also the bytes as they are when
/// [`decode`] decoded a buffer whose first 8 KiB hold no NUL byte (so that, as bytes, it
/// would be scanned as text too): UTF-8 behind a forged BOM with a NUL byte further down
/// must not hide its keys. A key is found in one reading at most.
pub(crate) fn readings(data: &[u8]) -> Vec<Cow<'_, [u8]>> {
    let decoded = decode(data);
    let both = matches!(decoded, Cow::Owned(_)) && !is_binary(data);
    let mut readings = vec![decoded];
    if both {
        readings.push(Cow::Borrowed(data));
    }
    readings
}

/// The text to scan: `data` itself, or its UTF-8 decoding when it starts with a UTF-16
/// BOM (`FF FE` little-endian, `FE FF` big-endian; the BOM is dropped) and has a NUL byte
/// anywhere. Unpaired surrogates and an odd trailing byte become U+FFFD.
/// `FF FE 00 00` is the UTF-32LE BOM, not UTF-16: such a buffer is returned as it is (and
/// is scanned as binary, for the printable ASCII in it). A BOM followed by text without NUL bytes
/// (UTF-8 or ASCII behind a stray or forged BOM) is returned as it is and scanned as bytes.
pub(crate) fn decode(data: &[u8]) -> Cow<'_, [u8]> {
    let (big_endian, body) = match data {
        [0xFF, 0xFE, 0, 0, ..] => return Cow::Borrowed(data),
        [0xFF, 0xFE, body @ ..] => (false, body),
        [0xFE, 0xFF, body @ ..] => (true, body),
        _ => return Cow::Borrowed(data),
    };
    if memchr::memchr(0, body).is_none() {
        return Cow::Borrowed(data);
    }
    let units = body.chunks_exact(2).map(|p| {
        let pair = [p[0], p[1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    });
    // ASCII text: two bytes in, one out; other text: at most three out.
    let mut out = String::with_capacity(body.len() / 2 + 1);
    out.extend(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
    if body.len() % 2 == 1 {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    Cow::Owned(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::{decode, set_editor_columns, utf16_units, COLUMN_STEPS};
    use crate::report::{Finding, Severity};

    fn finding(line: usize, column: usize) -> Finding {
        Finding {
            rule: String::new(),
            exchange: String::new(),
            title: String::new(),
            severity: Severity::High,
            path: String::new(),
            line,
            column,
            utf16_column: None,
            offset: None,
            parts: Vec::new(),
            fingerprint: String::new(),
            suppressed: None,
            managed_account: None,
            provenance: None,
            fix: String::new(),
        }
    }

    /// A regression test (from a review): each finding read its line from the start to
    /// its column to count UTF-16 units, so many findings on one long line cost the
    /// square of its length (4000 values on one line: 7 s in a debug build). The bytes
    /// read are counted, not timed; the columns are those of reading each prefix.
    #[test]
    fn utf16_columns_of_many_findings_on_one_line_cost_the_line_once() {
        let n = 4000;
        let value = "K".repeat(64);
        let mut line = String::from("binance: é😀 ");
        let mut columns = Vec::new();
        for _ in 0..n {
            columns.push(line.len() + 1);
            line.push_str(&value);
            line.push_str(", ñ ");
        }
        let text = format!("\u{FEFF}first\n{line}\n");
        // Out of order, as findings come.
        let mut findings: Vec<Finding> = columns.iter().rev().map(|&c| finding(2, c)).collect();
        // After the byte-order mark, which is no part of the line.
        findings.push(finding(1, 4));
        COLUMN_STEPS.with(|s| s.set(0));
        set_editor_columns(text.as_bytes(), &mut findings);
        let steps = COLUMN_STEPS.with(std::cell::Cell::get);
        assert!(
            steps <= 2 * text.len() as u64,
            "{steps} bytes read for {} bytes",
            text.len()
        );
        // Some of them, each counted from the start of its line (all would cost n²).
        for f in findings[..n].iter().step_by(97).chain(&findings[n - 1..n]) {
            let before = &line.as_bytes()[..f.column - 1];
            let want = String::from_utf8_lossy(before).encode_utf16().count() + 1;
            assert_eq!(f.utf16_column, Some(want));
        }
        assert_eq!((findings[n].column, findings[n].utf16_column), (1, Some(1)));
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut out = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            out.extend(if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_with_a_bom_is_decoded_either_way() {
        let text = "key = \"é€😀\"\r\nnext\n";
        for be in [false, true] {
            assert_eq!(&*decode(&utf16(text, be)), text.as_bytes());
        }
    }

    #[test]
    fn anything_else_is_left_alone() {
        for data in [
            &b"plain text"[..],
            b"\xEF\xBB\xBFutf-8 with a BOM",
            b"\xFF\xFE\x00\x00k\x00\x00\x00",
            b"",
            b"\xFF",
            b"k\x00e\x00y\x00",
            b"\xFF\xFEKEY=value\n",
            b"\xFE\xFF# \xC3\xA9\nKEY=value\n",
        ] {
            assert!(matches!(decode(data), std::borrow::Cow::Borrowed(d) if d == data));
        }
    }

    /// A regression test: the BOM selected UTF-16 only with a NUL byte in the first 8 KiB,
    /// so a UTF-16 file whose first 4096 characters were all outside ASCII (CJK, say)
    /// was scanned as bytes, and a key further down, its characters each beside a NUL
    /// byte, was never a token.
    #[test]
    fn utf16_without_ascii_in_its_first_pages_is_decoded_too() {
        let text = format!("{}\nkey = ABCDEF0123456789\n", "密钥".repeat(4096));
        for be in [false, true] {
            let data = utf16(&text, be);
            assert!(!data[..8192].contains(&0));
            assert_eq!(&*decode(&data), text.as_bytes());
        }
    }

    #[test]
    fn broken_utf16_becomes_replacement_characters() {
        // An unpaired high surrogate, then an odd trailing byte.
        let data = [0xFF, 0xFE, 0x3D, 0xD8, b'a', 0, b'b'];
        assert_eq!(&*decode(&data), "\u{FFFD}a\u{FFFD}".as_bytes());
    }

    /// Counted as a lossy reading would count them, without making the text (found by
    /// review: making it took five times a window's memory on a line of invalid bytes).
    #[test]
    fn utf16_units_are_those_of_the_lossy_text() {
        for bytes in [
            &b""[..],
            b"plain ascii",
            "caf\u{e9} \u{1F600} \u{4e2d}".as_bytes(),
            b"\xff\xfe\xfd",
            b"ok\xe2\x82end\xf0\x9f\x98",
            b"\xc3",
        ] {
            let lossy = String::from_utf8_lossy(bytes).encode_utf16().count();
            assert_eq!(utf16_units(bytes), lossy, "{bytes:?}");
        }
    }
}
