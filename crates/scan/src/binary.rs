//! Binary files: the printable text in them, as `strings` finds it, one run a line.
//!
//! A SQLite database, a Python `.pyc`, a Java `.class` or a pickle committed by mistake
//! holds its strings as they are, between bytes that are not text. Such a buffer is
//! scanned as the text made of its printable runs (ASCII 0x20–0x7E, tab, line feed and
//! carriage return), each run a line of its own, so that the keyword window counts runs;
//! a run is kept when it is at least as long as the shortest value any rule takes, or
//! when an exchange keyword is in it (a column `binance` beside a key column). The text
//! maps back to the offset of each byte in the buffer.
//!
//! Strings stored with a one-byte length in front of them (Python's marshal format in a
//! `.pyc`, a Java class file's constant pool) may have that length, or the next string's
//! type byte, glued to them as a letter or a digit: a 56-character Kraken key is `8`
//! followed by the key, and `settings.py`'s constants follow one another, each as `z`,
//! its length and its bytes. Where such a length says exactly where a string ends, the
//! string is also written on the run's line, after a space (see [`Strings::carve`]). What is not cut is two strings
//! side by side without any length between them (two text columns of one SQLite row).

/// Whether a byte belongs to a printable run.
static PRINTABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = (b >= 0x20 && b < 0x7f) || b == b'\t' || b == b'\n' || b == b'\r';
        i += 1;
    }
    t
};

/// Python marshal's type bytes of a string with a one-byte length (`z`: short ASCII,
/// `Z`: short ASCII interned), as they stand between one constant and the next.
fn is_marshal_short_string(b: u8) -> bool {
    matches!(b, b'z' | b'Z')
}

/// A byte that ends a token (see `engine::TOKEN_BYTE`): where a string ends before one,
/// its last character is not glued to what follows.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-' | b'=')
}

/// The printable text of a binary buffer, and where each of its lines came from.
pub(crate) struct Strings {
    /// The runs, each on a line of its own, followed by the strings cut out of it.
    pub(crate) text: Vec<u8>,
    /// Where each run or string cut out of one is in `text`, in order.
    pieces: Vec<Piece>,
}

/// A run, or a string cut out of one: where it starts in [`Strings::text`], where it
/// starts in the buffer, and which of the two it is.
#[derive(Clone, Copy)]
struct Piece {
    text: usize,
    data: usize,
    carved: bool,
}

impl Strings {
    /// The printable runs of `data` of at least `min_len` bytes, or with a keyword
    /// starting in them; `keywords` are the offsets where keywords start, in order.
    pub(crate) fn new(
        data: &[u8],
        min_len: usize,
        keywords: impl Iterator<Item = usize>,
    ) -> Strings {
        let mut out = Strings {
            text: Vec::new(),
            pieces: Vec::new(),
        };
        let mut keywords = keywords.peekable();
        let mut in_run = Vec::new();
        let n = data.len();
        let mut i = 0;
        while i < n {
            if !PRINTABLE[data[i] as usize] {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && PRINTABLE[data[i] as usize] {
                i += 1;
            }
            in_run.clear();
            while let Some(&k) = keywords.peek() {
                if k >= i {
                    break;
                }
                if k >= start {
                    in_run.push(k);
                }
                keywords.next();
            }
            if i - start < min_len && in_run.is_empty() {
                continue;
            }
            out.push(data, start, i, false);
            out.carve(data, start, i, min_len, &in_run);
            out.text.push(b'\n');
        }
        out
    }

    /// Writes `data[start..end]`: a run, or a string cut out of it, on the run's line after
    /// a space (so that it counts as near what the run is near).
    fn push(&mut self, data: &[u8], start: usize, end: usize, carved: bool) {
        if carved {
            self.text.push(b' ');
        }
        self.pieces.push(Piece {
            text: self.text.len(),
            data: start,
            carved,
        });
        self.text.extend_from_slice(&data[start..end]);
    }

    /// Writes as lines of their own the strings of the run `start..end` that a one-byte
    /// length in front of them delimits, when the run glues them to a token character
    /// (so that, read in the run, they are part of a longer token). The first string's
    /// length is the byte before the run (marshal's type byte and a length that is not
    /// printable), or the run's first byte (Java's two-byte length, or a marshal type
    /// with its reference flag, leave the length printable), or its second after a
    /// marshal type byte `z` or `Z`; a string followed by `z` or `Z` and a length is
    /// followed by another. A string after a marshal type byte is taken as its length
    /// says; any other ends at the end of the run or before a byte that is no token
    /// character (a Java constant is followed by the next one's tag, not printable), so
    /// that ordinary text whose first byte happens to count some of it is not cut.
    fn carve(&mut self, data: &[u8], start: usize, end: usize, min_len: usize, keywords: &[usize]) {
        // A marshal string type byte with its reference flag (0x80) set.
        let flagged = |i: Option<usize>| {
            i.and_then(|i| data.get(i))
                .is_some_and(|&b| b & 0x80 != 0 && is_marshal_short_string(b & 0x7f))
        };
        let mut firsts = Vec::with_capacity(3);
        if let Some(&len) = start.checked_sub(1).and_then(|i| data.get(i)) {
            firsts.push((start, usize::from(len), flagged(start.checked_sub(2))));
        }
        firsts.push((
            start + 1,
            usize::from(data[start]),
            flagged(start.checked_sub(1)),
        ));
        if is_marshal_short_string(data[start]) && start + 1 < end {
            firsts.push((start + 2, usize::from(data[start + 1]), true));
        }
        for (mut at, mut len, mut marshal) in firsts {
            while len > 0 && at + len <= end {
                let stop = at + len;
                let next = data.get(stop).copied().filter(|_| stop < end);
                let chained = next.is_some_and(is_marshal_short_string) && stop + 2 <= end;
                if !marshal && !chained && next.is_some_and(is_token_byte) {
                    break;
                }
                let glued =
                    (at > start && is_token_byte(data[at - 1])) || next.is_some_and(is_token_byte);
                let wanted = len >= min_len || keywords.iter().any(|&k| (at..stop).contains(&k));
                if glued && wanted {
                    self.push(data, at, stop, true);
                }
                if !chained {
                    break;
                }
                len = usize::from(data[stop + 1]);
                at = stop + 2;
                marshal = true;
            }
        }
    }

    /// Where the byte at `offset` in [`Strings::text`] is in the buffer, and whether it is
    /// in a string cut out of a run. `offset` must not be a line feed or space this text
    /// added between pieces (no value starts on one).
    pub(crate) fn locate(&self, offset: usize) -> (usize, bool) {
        let i = self
            .pieces
            .partition_point(|l| l.text <= offset)
            .saturating_sub(1);
        match self.pieces.get(i) {
            Some(l) => (l.data + (offset - l.text), l.carved),
            None => (offset, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Strings;

    /// The runs of `data` and the strings cut out of them, and where each starts in
    /// `data`.
    fn lines(data: &[u8], min_len: usize) -> Vec<(String, usize)> {
        let s = Strings::new(data, min_len, std::iter::empty());
        s.text
            .split(|&b| b == b'\n' || b == b' ')
            .zip(s.pieces.iter())
            .map(|(l, at)| (String::from_utf8_lossy(l).into_owned(), at.data))
            .collect()
    }

    #[test]
    fn runs_shorter_than_the_minimum_are_dropped_unless_a_keyword_starts_in_them() {
        let data = b"\x00\x01short\x00a_run_of_twenty_bytes\xff\x02binance\x00";
        assert_eq!(lines(data, 16), [("a_run_of_twenty_bytes".to_owned(), 8)]);
        let keyword = data.windows(7).position(|w| w == b"binance").unwrap();
        let s = Strings::new(data, 16, [keyword].into_iter());
        assert_eq!(s.text, b"a_run_of_twenty_bytes\nbinance\n");
        assert_eq!(s.locate(22), (keyword, false));
        assert_eq!(s.locate(3), (11, false));
    }

    #[test]
    fn marshal_constants_side_by_side_are_cut_at_their_lengths() {
        // As CPython 3.13 writes a module's constants: `0xDA` (interned, with its
        // reference flag) + length, then `z` + length + string for each next one.
        let a = "A".repeat(64);
        let b = "b".repeat(56);
        let data = [&[1, 0xDA][..], format!("@{a}z8{b}N)").as_bytes()].concat();
        let got = lines(&data, 16);
        assert_eq!(got[0].0, format!("@{a}z8{b}N)"));
        assert_eq!(got[1..], [(a, 3), (b, 69)]);
        // A length byte that is not printable: `0xDA 0x06 kraken z 8 …`.
        let data = [
            &[0xDA, 6][..],
            format!("krakenz8{})", "c".repeat(56)).as_bytes(),
        ]
        .concat();
        let keyword = 2;
        let s = Strings::new(&data, 16, [keyword].into_iter());
        let text = String::from_utf8(s.text).unwrap();
        assert_eq!(
            text,
            format!("krakenz8{c}) kraken {c}\n", c = "c".repeat(56))
        );
    }

    #[test]
    fn a_java_constant_whose_length_is_a_digit_is_cut_from_it() {
        // CONSTANT_Utf8: tag 1, a two-byte length (0x00, 0x38 = `8`), the bytes.
        let key = "k".repeat(56);
        let data = format!("\u{1}\u{0}8{key}\u{1}\u{0}\u{5}hello").into_bytes();
        assert_eq!(lines(&data, 16), [(format!("8{key}"), 2), (key, 3)]);
    }

    #[test]
    fn ordinary_text_is_not_cut() {
        // The first byte `(` is 40: whatever the forty bytes after it end before, that
        // string is glued to nothing a token continues.
        let text = "(ordinary_text_whose_first_byte_is_forty;and_more_words_after_it";
        let data = [b"\x00", text.as_bytes(), b"\x00"].concat();
        assert_eq!(lines(&data, 16), [(text.to_owned(), 1)]);
    }
}
