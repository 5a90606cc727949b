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
//! string is also written on the run's line, after a space (see [`Strings::carve`]). A
//! SQLite row's text columns stand side by side with their lengths in the record's header
//! (`binance`, the key and the secret are one run): a database's leaf pages are read for
//! the spans of those columns (see [`sqlite_text_columns`]), written the same way. Two
//! strings side by side with no length anywhere (a pickle's, say) stay one.
//!
//! Windows and .NET keep their strings in UTF-16: a C# bot's literals in its executable's
//! `#US` heap, a registry hive's values, many Windows applications' databases. Each ASCII
//! character of such a string comes with a NUL byte, so no run of it is longer than one
//! character. The buffer is also read for its UTF-16 runs (see [`Wide`]), little- or
//! big-endian, which are written in the text as the characters they hold, one run a
//! line, among the printable runs in the order they stand in the buffer. A SQLite
//! database whose text is UTF-16 has its text columns cut out of those runs.

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

use aho_corasick::AhoCorasick;

/// The UTF-16 runs of a buffer worth writing: runs of printable ASCII characters each
/// with a NUL byte beside it, as UTF-16 writes them (see [`Wide::new`]), their
/// characters and the words found in them. Only the runs that are kept are stored (a
/// buffer of `c\0c\0c\0` and a byte, over and over, stores none), eight bytes each.
pub(crate) struct Wide {
    /// The characters of the runs, each run followed by a line feed.
    text: Vec<u8>,
    /// The runs, in order.
    runs: Vec<WideRun>,
    /// Where the words found in the runs start in `text`, in order.
    hits: Vec<u32>,
}

/// A run of printable ASCII written in UTF-16. Its characters start in [`Wide::text`]
/// after those of the runs before it and their line feeds.
#[derive(Clone, Copy)]
struct WideRun {
    /// Where its first character's byte is in the buffer.
    first: u32,
    /// How many characters it has (at least two).
    len: u32,
}

impl WideRun {
    /// Where its first character's byte is in the buffer.
    fn first(self) -> usize {
        self.first as usize
    }

    /// How many characters it has.
    fn chars(self) -> usize {
        self.len as usize
    }
}

/// How much of a buffer is read for UTF-16 runs: offsets in it fit in a `u32`. The
/// scanner's files are at most 64 MiB unless it is told otherwise; past 4 GiB, a
/// buffer is read for its printable runs only.
const MAX_WIDE: usize = u32::MAX as usize;

impl Wide {
    /// The runs in `data` of at least `min_len` characters (and two), or in which
    /// `words` finds a word, and the words found: printable ASCII
    /// characters (as in a printable run) two bytes apart with a NUL byte between each
    /// two, as UTF-16 writes them, little-endian (`k\0e\0y\0`) or big-endian
    /// (`\0k\0e\0y`). The two read the same characters out of the same bytes but at
    /// the ends (a NUL byte before or after), so the bytes are read once, for both: a
    /// string is one run, whichever its byte order. Any other code unit (a NUL, a
    /// character outside printable ASCII) ends a run.
    pub(crate) fn new(data: &[u8], min_len: usize, words: &AhoCorasick) -> Wide {
        let mut out = Wide {
            text: Vec::new(),
            runs: Vec::new(),
            hits: Vec::new(),
        };
        let data = &data[..data.len().min(MAX_WIDE)];
        let min_len = min_len.max(2);
        let shortest_word = words.min_pattern_len().max(2);
        let n = data.len();
        let mut i = 0;
        // A run starts with a character, a NUL byte and a character. Eight bytes at a
        // time are first tested for a NUL between two bytes that are not NUL and below
        // 0x80 (see [`nul_between_ascii`]): where there is none, no run starts in their
        // first six, and most of a binary is passed over so.
        while i + 2 < n {
            if let Some(word) = data[i..].first_chunk::<8>() {
                match nul_between_ascii(u64::from_le_bytes(*word)) {
                    0 => {
                        i += 6;
                        continue;
                    }
                    // The NUL's byte in the word, 1 to 6; its character is the one before.
                    mid => i += (mid.trailing_zeros() / 8) as usize - 1,
                }
            }
            if data[i + 1] != 0 || !PRINTABLE[data[i] as usize] || !PRINTABLE[data[i + 2] as usize]
            {
                i += 1;
                continue;
            }
            let first = i;
            let mut last = i + 2;
            while last + 2 < n && data[last + 1] == 0 && PRINTABLE[data[last + 2] as usize] {
                last += 2;
            }
            i = last + 1;
            let len = (last - first) / 2 + 1;
            if len < min_len.min(shortest_word) {
                continue;
            }
            // Written, then searched for words; taken back if it is short and holds none.
            let at = out.text.len();
            out.text.extend(data[first..=last].iter().step_by(2));
            let hits = out.hits.len();
            // The buffer's offsets fit in a u32 (see `MAX_WIDE`), and so do the text's:
            // a run of `len` characters is written in `len + 1` bytes, and takes at
            // least `2 * len - 1` of the buffer's.
            out.hits.extend(
                words
                    .find_iter(&out.text[at..])
                    .map(|m| (at + m.start()) as u32),
            );
            if len < min_len && out.hits.len() == hits {
                out.text.truncate(at);
                continue;
            }
            out.text.push(b'\n');
            out.runs.push(WideRun {
                first: first as u32,
                len: len as u32,
            });
        }
        out
    }

    /// Whether a word was found in the runs.
    pub(crate) fn has_hits(&self) -> bool {
        !self.hits.is_empty()
    }
}

/// The bytes of `word` (read little-endian: byte `j` is bits `8j..8j + 8`) that are NUL
/// with a byte below 0x80 and not NUL on each side of them, in the word: the high bit of
/// each such byte set, the other bits clear. Bytes 0 and 7 are never set (a side is
/// outside the word). The test is looser than a run's (control characters pass), so it
/// misses no run's NUL.
fn nul_between_ascii(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW: u64 = !HIGH;
    // A byte's low seven bits plus 0x7F carry into its high bit unless they are all 0.
    let nul = !(((word & LOW) + LOW) | word) & HIGH;
    let ascii = !word & HIGH & !nul;
    nul & (ascii << 8) & (ascii >> 8)
}

/// Where the first code unit is of the UTF-16 characters whose first and last
/// characters' bytes are at `first` and `last` in `data`: at `first` if they read as
/// little-endian (`k\0e\0y\0`), a byte before it if they read as big-endian
/// (`\0k\0e\0y`). Each piece of a run is read so, by its own ends: a run that reads as
/// big-endian for the ASCII character glued after it (`\0k\0e\0y\0abc`) is
/// little-endian without it. Little-endian unless there is a NUL byte before the first
/// character and, after the last, no NUL byte, or a NUL code unit that ends a big-endian
/// string (`\0y\0\0`) where a little-endian one would not end (`y\0\0` then a byte
/// that is not NUL: little-endian, that would be a character outside ASCII). Bytes that
/// read as either stay ambiguous, and are taken as little-endian: `\0k\0e\0y\0` between
/// bytes that are not NUL, or followed by NULs (`\0y\0\0\0`).
fn first_unit(data: &[u8], first: usize, last: usize) -> usize {
    let nul_before = first > 0 && data[first - 1] == 0;
    let big_endian = nul_before
        && match data.get(last + 1) {
            Some(0) => data.get(last + 2) == Some(&0) && data.get(last + 3) != Some(&0),
            _ => true,
        };
    first - usize::from(big_endian)
}

/// Python marshal's type bytes of a string with a one-byte length (`z`: short ASCII,
/// `Z`: short ASCII interned), as they stand between one constant and the next.
fn is_marshal_short_string(b: u8) -> bool {
    matches!(b, b'z' | b'Z')
}

/// A byte a token is made of (see `engine::TOKEN_BYTE`), or its `=` padding: a string
/// beside one is glued to it, read in its run.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-' | b'=')
}

/// A printable run being written: its bounds in the buffer, the shortest piece worth
/// writing, and the offsets in it where keywords start.
struct Run<'a> {
    start: usize,
    end: usize,
    min_len: usize,
    keywords: &'a [usize],
}

/// The spans of the non-empty text columns of the records on a SQLite database's b-tree
/// leaf pages, in order; none for a buffer that is not a SQLite database. The columns of
/// a row are stored side by side, their lengths only in the record's header (`binance`,
/// a key and its secret are one run of printable bytes), so the records are read: each
/// leaf page's cell pointers, each cell's record header (serial types), each text
/// column's span. A column that runs past the cell's part on its page (the rest is on an
/// overflow page) is left out; so are free blocks (deleted rows), which are still read
/// as runs. The cells of a page do not overlap, so their headers hold at most the page's
/// bytes: no more serial types than that are read on a page, however its cell pointers
/// are forged.
fn sqlite_text_columns(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if !data.starts_with(b"SQLite format 3\0") || data.len() < 100 {
        return out;
    }
    let page_size = match u16::from_be_bytes([data[16], data[17]]) {
        1 => 65536,
        n if n >= 512 && n.is_power_of_two() => usize::from(n),
        _ => return out,
    };
    // The usable size of a page: the page less the bytes reserved at its end.
    let usable = page_size - usize::from(data[20]);
    for (index, page) in data.chunks(page_size).enumerate() {
        let base = index * page_size;
        let header = if index == 0 { 100 } else { 0 };
        let table = match page.get(header) {
            Some(0x0d) => true,
            Some(0x0a) => false,
            _ => continue,
        };
        let Some(count) = page.get(header + 3..header + 5) else {
            continue;
        };
        let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
        let mut budget = page.len();
        let mut columns = Vec::new();
        for cell in 0..count {
            let at = header + 8 + 2 * cell;
            let Some(pointer) = page.get(at..at + 2) else {
                break;
            };
            let pointer = usize::from(u16::from_be_bytes([pointer[0], pointer[1]]));
            if let Some(found) = record_text_columns(page, pointer, table, usable, &mut budget) {
                columns.extend(found.into_iter().map(|(s, e)| (base + s, base + e)));
            }
        }
        // The cells of a database do not overlap: a column that overlaps the one before
        // it was reached through a forged cell pointer (several pointing at one cell), and
        // is read once, before it counts against the budget. The columns then hold each
        // byte of the file once at most.
        columns.sort_unstable();
        let mut covered = 0;
        columns.retain(|&(at, stop)| {
            let first = at >= covered;
            if first {
                covered = stop;
            }
            first
        });
        let room = MAX_SQLITE_COLUMNS - out.len();
        columns.truncate(room);
        out.extend(columns);
        if out.len() >= MAX_SQLITE_COLUMNS {
            break;
        }
    }
    out
}

/// Whether a buffer that is a SQLite database stores its text in UTF-16: the text
/// encoding in its header (a big-endian four-byte number at offset 56) is 2
/// (UTF-16le) or 3 (UTF-16be), not 1 (UTF-8).
fn sqlite_is_utf16(data: &[u8]) -> bool {
    data.starts_with(b"SQLite format 3\0")
        && data
            .get(56..60)
            .is_some_and(|e| matches!(u32::from_be_bytes([e[0], e[1], e[2], e[3]]), 2 | 3))
}

/// The most text columns read out of one database (16 MiB of spans): past them, what is
/// left is scanned as printable runs only, a key glued to its neighbour column unread.
const MAX_SQLITE_COLUMNS: usize = 1 << 20;

/// The spans, in `page`, of the non-empty text columns of the record in the cell at
/// `cell` of a table (`table`) or index b-tree leaf page whose usable size is `usable`;
/// `None` where the bytes are no such cell, or once `budget` serial types have been read.
fn record_text_columns(
    page: &[u8],
    cell: usize,
    table: bool,
    usable: usize,
    budget: &mut usize,
) -> Option<Vec<(usize, usize)>> {
    let (payload, width) = varint(page.get(cell..)?)?;
    let payload = usize::try_from(payload).ok()?;
    let mut at = cell + width;
    if table {
        at += varint(page.get(at..)?)?.1;
    }
    // What of the payload is on this page (SQLite's file format, "Cell Payload Overflow
    // Pages"): all of it up to a limit, else a part, the rest on overflow pages.
    let max_local = if table {
        usable.checked_sub(35)?
    } else {
        ((usable.checked_sub(12)? * 64) / 255).checked_sub(23)?
    };
    let local = if payload <= max_local {
        payload
    } else {
        let min_local = ((usable - 12) * 32 / 255).checked_sub(23)?;
        let k = min_local + (payload - min_local) % (usable - 4);
        if k <= max_local {
            k
        } else {
            min_local
        }
    };
    let end = page.len().min(at.checked_add(local)?);
    let (header_len, width) = varint(page.get(at..end)?)?;
    let header_end = at.checked_add(usize::try_from(header_len).ok()?)?;
    if header_end > end {
        return None;
    }
    let mut types = at + width;
    let mut body = header_end;
    let mut out = Vec::new();
    while types < header_end {
        *budget = budget.checked_sub(1)?;
        let (serial, width) = varint(&page[types..header_end])?;
        types += width;
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            n => usize::try_from((n - 12) / 2).ok()?,
        };
        let stop = body.checked_add(size)?;
        if serial >= 13 && serial % 2 == 1 && size > 0 && stop <= end {
            out.push((body, stop));
        }
        body = stop;
    }
    Some(out)
}

/// A SQLite variable-length integer at the start of `bytes` (big-endian, seven bits a
/// byte while the high bit is set, the ninth byte whole), and its width.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(9).enumerate() {
        if i == 8 {
            return Some(((value << 8) | u64::from(b), 9));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The printable text of a binary buffer, and where each of its lines came from.
pub(crate) struct Strings {
    /// The runs, each on a line of its own, followed by the strings cut out of it.
    pub(crate) text: Vec<u8>,
    /// Where each run or string cut out of one is in `text`, in order.
    pieces: Vec<Piece>,
}

/// A run, or a string cut out of one: where it starts in [`Strings::text`], where it
/// starts in the buffer, which of the two it is, and whether it is written in UTF-16 (a
/// character every two bytes of the buffer).
#[derive(Clone, Copy)]
struct Piece {
    text: usize,
    data: usize,
    carved: bool,
    wide: bool,
}

impl Strings {
    /// The printable runs of `data` of at least `min_len` bytes, or with a keyword
    /// starting in them, and those of `wide`, the UTF-16 runs of `data` (read with the
    /// same `min_len`), all in the order they stand in `data`; `keywords` are the offsets
    /// where keywords start in `data`, in order. `wide` is dropped once read.
    pub(crate) fn new(
        data: &[u8],
        min_len: usize,
        keywords: impl Iterator<Item = usize>,
        wide: Wide,
    ) -> Strings {
        let mut out = Strings {
            text: Vec::new(),
            pieces: Vec::new(),
        };
        let mut keywords = keywords.peekable();
        let mut in_run = Vec::new();
        // A database's text columns are in its text encoding: cut out of the printable
        // runs, or out of the UTF-16 runs.
        let mut columns = sqlite_text_columns(data);
        let wide_columns = if sqlite_is_utf16(data) {
            std::mem::take(&mut columns)
        } else {
            Vec::new()
        };
        let mut columns = columns.iter().peekable();
        let mut wide_columns = wide_columns.iter().peekable();
        // Each UTF-16 run, and where its characters start in `wide`'s text.
        let mut wide_runs = wide
            .runs
            .iter()
            .scan(0, |text, &run| {
                let at = *text;
                *text += run.chars() + 1;
                Some((at, run))
            })
            .peekable();
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
            while let Some((text, run)) = wide_runs.next_if(|(_, r)| r.first() < start) {
                out.push_wide(data, &wide, text, run, min_len, &mut wide_columns);
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
            let mut in_columns = Vec::new();
            while let Some(&&(at, stop)) = columns.peek() {
                if at >= i {
                    break;
                }
                if at >= start && stop <= i {
                    in_columns.push((at, stop));
                }
                columns.next();
            }
            if i - start < min_len && in_run.is_empty() {
                continue;
            }
            out.push(data, start, i, false);
            let run = Run {
                start,
                end: i,
                min_len,
                keywords: &in_run,
            };
            out.carve(data, &run);
            for (at, stop) in in_columns {
                out.cut(data, &run, at, stop);
            }
            out.text.push(b'\n');
        }
        for (text, run) in wide_runs {
            out.push_wide(data, &wide, text, run, min_len, &mut wide_columns);
        }
        out
    }

    /// Writes `run`, a UTF-16 run of `wide` whose characters start at `text` in `wide`'s
    /// text, on a line of its own (`wide` holds the runs with at least `min_len` characters
    /// or a keyword in them). Its end characters may belong to the text beside it instead:
    /// `abc\0k\0e\0y\0`, a C string and a NUL before a UTF-16LE string, reads as the run
    /// `ckey`; its last character as the first of a string after a UTF-16BE one. So a run
    /// whose first character has a printable byte before it (not the NUL a UTF-16BE
    /// character has), or whose last has one after it, is also written without that
    /// character, after a space, when it is glued to the next by a token character and the
    /// rest is long enough or holds a keyword (as [`Strings::cut`] does). The first
    /// character can be the run's own: .NET writes a string's length in front of it, one
    /// byte, printable for 16 to 62 characters. It can also be a length with a NUL beside
    /// it (a two-byte length, `8\0` before 56 characters of UTF-16LE), which no printable
    /// byte betrays: a first character that counts the characters after it, or twice as
    /// many (their bytes), is also cut off. The text columns of a UTF-16 SQLite database
    /// (`columns`, spans in the buffer in order, taken from as far as this run reaches) are
    /// cut out of the run as [`Strings::cut`] cuts them out of a printable run.
    fn push_wide(
        &mut self,
        data: &[u8],
        wide: &Wide,
        text: usize,
        run: WideRun,
        min_len: usize,
        columns: &mut std::iter::Peekable<std::slice::Iter<'_, (usize, usize)>>,
    ) {
        let (first, len) = (run.first(), run.chars());
        let chars = &wide.text[text..text + len];
        let has_keyword = |from: usize, to: usize| {
            let at = wide.hits.partition_point(|&k| (k as usize) < text + from);
            wide.hits.get(at).is_some_and(|&k| (k as usize) < text + to)
        };
        let last = first + 2 * (len - 1);
        // The columns that start in the run (a column of a big-endian database starts at
        // the NUL byte before its first character), as characters of the run: those that
        // the run holds whole.
        let mut in_columns = Vec::new();
        while let Some(&(at, stop)) = columns.next_if(|&&(at, _)| at <= last) {
            // The first of the column's bytes that is a character's.
            let char_at = at + (at + first) % 2;
            let count = (stop - at) / 2;
            if char_at >= first && count > 0 {
                let from = (char_at - first) / 2;
                if from + count <= len {
                    in_columns.push((at, from, from + count));
                }
            }
        }
        self.push_wide_piece(first_unit(data, first, last), chars, false);
        let is_text = |b: Option<&u8>| b.is_some_and(|&b| b != 0 && PRINTABLE[b as usize]);
        let glued = |a: u8, b: u8| is_token_byte(a) && is_token_byte(b);
        let rest = len - 1;
        let is_length = matches!(usize::from(chars[0]), n if n == rest || n == 2 * rest);
        let mut cuts = Vec::with_capacity(2);
        if (is_length || is_text(first.checked_sub(1).and_then(|i| data.get(i))))
            && glued(chars[0], chars[1])
        {
            cuts.push((1, len));
        }
        if is_text(data.get(last + 1)) && glued(chars[len - 1], chars[len - 2]) {
            cuts.push((0, len - 1));
        }
        for (from, to) in cuts {
            if to - from >= min_len || has_keyword(from, to) {
                self.text.push(b' ');
                let unit = first_unit(data, first + 2 * from, first + 2 * (to - 1));
                self.push_wide_piece(unit, &chars[from..to], true);
            }
        }
        // A column's first code unit is where the database says it is.
        for (at, from, to) in in_columns {
            let glued = (from > 0 && is_token_byte(chars[from - 1]))
                || (to < len && is_token_byte(chars[to]));
            if glued && (to - from >= min_len || has_keyword(from, to)) {
                self.text.push(b' ');
                self.push_wide_piece(at, &chars[from..to], true);
            }
        }
        self.text.push(b'\n');
    }

    /// Writes `chars`, characters of a UTF-16 run whose first code unit is at `unit` in
    /// the buffer.
    fn push_wide_piece(&mut self, unit: usize, chars: &[u8], carved: bool) {
        self.pieces.push(Piece {
            text: self.text.len(),
            data: unit,
            carved,
            wide: true,
        });
        self.text.extend_from_slice(chars);
    }

    /// Writes `data[at..stop]`, a string of `run` delimited by its format, as a piece of
    /// its own when the run glues it to a token character (read in the run, it is part of
    /// a longer token) and it is long enough for a value or holds a keyword.
    fn cut(&mut self, data: &[u8], run: &Run<'_>, at: usize, stop: usize) {
        let glued = (at > run.start && is_token_byte(data[at - 1]))
            || (stop < run.end && is_token_byte(data[stop]));
        // `keywords` are in order: one binary search, however many columns the run has.
        let wanted = stop - at >= run.min_len || {
            let first = run.keywords.partition_point(|&k| k < at);
            run.keywords.get(first).is_some_and(|&k| k < stop)
        };
        if glued && wanted {
            self.push(data, at, stop, true);
        }
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
            wide: false,
        });
        self.text.extend_from_slice(&data[start..end]);
    }

    /// Writes, after `run`, the strings in it that a one-byte length in front of them
    /// delimits (see [`Strings::cut`] for which are written). The first string's
    /// length is the byte before the run (marshal's type byte and a length that is not
    /// printable), or the run's first byte (Java's two-byte length, or a marshal type
    /// with its reference flag, leave the length printable), or its second after a
    /// marshal type byte `z` or `Z`; a string followed by `z` or `Z` and a length is
    /// followed by another. A string after a marshal type byte is taken as its length
    /// says; any other ends at the end of the run or before a byte that is no token
    /// character (a Java constant is followed by the next one's tag, not printable), so
    /// that ordinary text whose first byte happens to count some of it is not cut.
    fn carve(&mut self, data: &[u8], run: &Run<'_>) {
        let (start, end) = (run.start, run.end);
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
                self.cut(data, run, at, stop);
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
            Some(l) => {
                let width = if l.wide { 2 } else { 1 };
                (l.data + (offset - l.text) * width, l.carved)
            }
            None => (offset, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

    use super::{Strings, Wide};

    /// An automaton for `word`, built as the engine builds its own.
    fn words(word: &str) -> AhoCorasick {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build([word])
            .unwrap()
    }

    /// The printable and UTF-16 text of `data`, read as the engine reads it, with
    /// keywords starting at `keywords`.
    fn read(data: &[u8], min_len: usize, keywords: &[usize]) -> Strings {
        let wide = Wide::new(data, min_len, &words("binance"));
        Strings::new(data, min_len, keywords.iter().copied(), wide)
    }

    /// The runs of `data` and the strings cut out of them, and where each starts in
    /// `data`.
    fn lines(data: &[u8], min_len: usize) -> Vec<(String, usize)> {
        let s = read(data, min_len, &[]);
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
        let s = read(data, 16, &[keyword]);
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
        let s = read(&data, 16, &[keyword]);
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

    /// A page whose cell pointers all point at one cell with a long header costs the
    /// page's length in serial types, not the number of pointers times that.
    #[test]
    fn forged_sqlite_cell_pointers_cost_one_page() {
        let mut db = vec![0u8; 8192];
        db[..16].copy_from_slice(b"SQLite format 3\0");
        db[16] = 0x10;
        let page = &mut db[4096..];
        page[0] = 0x0d;
        page[3..5].copy_from_slice(&2000u16.to_be_bytes());
        for i in 0..2000 {
            page[8 + 2 * i..10 + 2 * i].copy_from_slice(&4000u16.to_be_bytes());
        }
        // Payload 90, row id 1, a header of 40 bytes: 39 texts of length 0 … and a body.
        page[4000..4003].copy_from_slice(&[90, 1, 40]);
        page[4003..4042].fill(13);
        let mut budget = 4096;
        let page = &db[4096..];
        let cells = (0..2000)
            .take_while(|_| {
                super::record_text_columns(page, 4000, true, 4096, &mut budget).is_some()
            })
            .count();
        assert_eq!(cells, 4096 / 39);
        assert!(super::sqlite_text_columns(&db).is_empty());
    }

    /// A database of 64 KiB pages: a header page, then `pages` table leaf pages, each
    /// with `pointers` cell pointers to one cell of two text columns, 10 000 bytes and 5
    /// (the second glues the first to a token character). With where that cell's body
    /// starts in each page.
    fn forged_database(pages: usize, pointers: usize) -> (Vec<u8>, usize) {
        let mut db = vec![b'A'; (1 + pages) * 65536];
        db[..100].fill(0);
        db[..16].copy_from_slice(b"SQLite format 3\0");
        db[16..18].copy_from_slice(&1u16.to_be_bytes()); // 64 KiB pages
        let cell = 0x7594usize;
        for page in db[65536..].chunks_mut(65536) {
            page[0] = 0x0d;
            page[3..5].copy_from_slice(&(pointers as u16).to_be_bytes());
            for i in 0..pointers {
                page[8 + 2 * i..10 + 2 * i].copy_from_slice(&(cell as u16).to_be_bytes());
            }
            // Payload 10 010 (two varint bytes) and row id 1; the record's header, 5 bytes
            // long: a text of 10 000 bytes (serial type 20 013) and one of 5 (type 23).
            page[cell..cell + 3].copy_from_slice(&[0xce, 0x1a, 0x01]);
            page[cell + 3..cell + 8].copy_from_slice(&[0x05, 0x81, 0x9c, 0x2d, 0x17]);
            page[cell + 8 + 10_000..cell + 8 + 10_005].copy_from_slice(b"yyyyy");
        }
        (db, cell + 8)
    }

    /// A regression test (found by review): cell pointers forged to point at one cell
    /// with a long text column had that column copied once per pointer: a 64 KiB page
    /// made hundreds of megabytes of text. A column is read once, and the text stays
    /// within a few times the file's size.
    #[test]
    fn forged_cell_pointers_to_one_long_column_copy_it_once() {
        let (db, body) = forged_database(1, 15_000);
        let columns = super::sqlite_text_columns(&db);
        let at = 65536 + body;
        assert_eq!(columns.len(), 2, "one column per cell, not per pointer");
        assert_eq!(columns[..], [(at, at + 10_000), (at + 10_000, at + 10_005)]);
        let strings = read(&db, 16, &[]);
        assert!(
            strings.text.len() <= 2 * db.len(),
            "{} bytes of text from a file of {}",
            strings.text.len(),
            db.len()
        );
    }

    /// A regression test (found by review): the columns forged pointers repeat counted
    /// against the million a database may have before they were found to be repeats, so
    /// seventy such pages left every later column unread.
    #[test]
    fn repeated_columns_do_not_use_up_the_columns_read() {
        let pages = super::MAX_SQLITE_COLUMNS / 15_000 + 2;
        let (db, body) = forged_database(pages, 15_000);
        let columns = super::sqlite_text_columns(&db);
        assert_eq!(columns.len(), 2 * pages);
        let last = pages * 65536 + body;
        assert_eq!(columns.last(), Some(&(last + 10_000, last + 10_005)));
    }

    /// `text` in UTF-16, little-endian or big-endian, without a byte-order mark.
    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    /// The runs of `data`, and where each starts, read with keywords found as the engine
    /// finds them (by `find`) in the ASCII and in the UTF-16 text.
    fn lines_with_keywords(data: &[u8], min_len: usize, word: &str) -> Vec<(String, usize)> {
        let find = |text: &[u8]| -> Vec<usize> {
            text.windows(word.len())
                .enumerate()
                .filter(|(_, w)| *w == word.as_bytes())
                .map(|(i, _)| i)
                .collect()
        };
        let wide = Wide::new(data, min_len, &words(word));
        let s = Strings::new(data, min_len, find(data).into_iter(), wide);
        s.text
            .split(|&b| b == b'\n' || b == b' ')
            .zip(s.pieces.iter())
            .map(|(l, at)| (String::from_utf8_lossy(l).into_owned(), at.data))
            .collect()
    }

    /// The word test finds every NUL between two ASCII bytes, wherever it stands in the
    /// word, and nothing else.
    #[test]
    fn nul_between_ascii_flags_exactly_those_bytes() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            // xorshift; bytes drawn mostly from NUL, ASCII and high bytes.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let bytes = rng.to_le_bytes().map(|b| match b % 4 {
                0 => 0,
                1 | 2 => b % 0x80,
                _ => b | 0x80,
            });
            let got = super::nul_between_ascii(u64::from_le_bytes(bytes));
            let ascii = |b: u8| b != 0 && b < 0x80;
            for j in 0..8 {
                let want =
                    j > 0 && j < 7 && bytes[j] == 0 && ascii(bytes[j - 1]) && ascii(bytes[j + 1]);
                assert_eq!(
                    got >> (8 * j) & 0xff,
                    if want { 0x80 } else { 0 },
                    "{bytes:?}"
                );
            }
        }
    }

    /// The runs [`Wide::new`] finds, eight bytes at a time, are those a test of every
    /// byte finds, in buffers of random NULs, characters and other bytes.
    #[test]
    fn utf16_runs_are_those_a_byte_by_byte_reading_finds() {
        let printable = |b: u8| super::PRINTABLE[b as usize];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let data: Vec<u8> = (0..200)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    match rng % 5 {
                        0 | 1 => 0,
                        2 | 3 => b'a' + (rng >> 8) as u8 % 26,
                        _ => (rng >> 8) as u8,
                    }
                })
                .collect();
            let mut want = Vec::new();
            let mut i = 0;
            while i + 2 < data.len() {
                if data[i + 1] != 0 || !printable(data[i]) || !printable(data[i + 2]) {
                    i += 1;
                    continue;
                }
                let mut last = i + 2;
                while last + 2 < data.len() && data[last + 1] == 0 && printable(data[last + 2]) {
                    last += 2;
                }
                want.push((i, (last - i) / 2 + 1));
                i = last + 1;
            }
            let got: Vec<(usize, usize)> = Wide::new(&data, 2, &words("binance"))
                .runs
                .iter()
                .map(|r| (r.first(), r.chars()))
                .collect();
            assert_eq!(got, want, "{data:?}");
        }
    }

    /// A regression test (found by review): every UTF-16 run of three characters or more
    /// was kept, 32 bytes each: a buffer of `c\0c\0c` and a byte, over and over, kept a
    /// run for every six bytes, several times its own size. Only runs long enough for a
    /// value, or holding a word, are kept.
    #[test]
    fn short_utf16_runs_without_a_word_are_not_kept() {
        let min_len = 16;
        let short = [&utf16("ccc", false)[..], b"\x01"].concat().repeat(200_000);
        let almost = [&utf16(&"c".repeat(min_len - 1), false)[..], b"\x01"]
            .concat()
            .repeat(20_000);
        for data in [short, almost] {
            let wide = Wide::new(&data, min_len, &words("okx"));
            assert_eq!((wide.runs.len(), wide.text.len()), (0, 0));
        }
        // A run for each word: as many as the words, and no more.
        let data = [&utf16("okx", false)[..], b"\x01"].concat().repeat(100_000);
        let wide = Wide::new(&data, min_len, &words("okx"));
        assert_eq!((wide.runs.len(), wide.hits.len()), (100_000, 100_000));
        assert_eq!(std::mem::size_of::<super::WideRun>(), 8);
    }

    #[test]
    fn utf16_runs_are_read_in_either_byte_order_at_their_offsets() {
        let key = "K".repeat(20);
        for big_endian in [false, true] {
            // A length byte that is no character, the string, a flag byte, as .NET's `#US`
            // heap writes them; an ASCII run after it.
            let data = [
                &b"\x01\x02\x81"[..],
                &utf16(&key, big_endian),
                b"\x01\x02an_ascii_run_of_twenty\x00",
            ]
            .concat();
            let got = lines_with_keywords(&data, 16, "binance");
            assert_eq!(
                got,
                [(key.clone(), 3), ("an_ascii_run_of_twenty".to_owned(), 45)],
                "big endian: {big_endian}"
            );
            let s = read(&data, 16, &[]);
            // The fifth character is in the buffer at 3 + 2 × 4, whichever the byte order.
            assert_eq!(s.locate(4), (11, false), "big endian: {big_endian}");
        }
    }

    #[test]
    fn a_utf16_run_cut_by_a_code_unit_outside_printable_ascii_is_two_runs() {
        // `é`, a NUL and a control character: each ends a run.
        for unit in ["é", "\u{0}", "\u{1}"] {
            let text = format!("{}{unit}{}", "a".repeat(20), "b".repeat(20));
            let data = [&b"\x01"[..], &utf16(&text, false), b"\x01"].concat();
            let got = lines_with_keywords(&data, 16, "binance");
            assert_eq!(got, [("a".repeat(20), 1), ("b".repeat(20), 43)], "{unit:?}");
        }
    }

    /// A short run is kept for the keyword in it, and only then: `ShortOther` is long
    /// enough for the search of keywords (seven characters) but shorter than a value.
    #[test]
    fn short_utf16_runs_are_kept_when_a_keyword_is_in_them() {
        let data = [
            &b"\x01"[..],
            &utf16("Binance", false),
            b"\x01",
            &utf16("ShortOther", false),
            b"\x01",
        ]
        .concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "Binance"),
            [("Binance".to_owned(), 1)]
        );
    }

    #[test]
    fn a_utf16_run_glued_to_the_ascii_before_it_is_also_read_without_that_character() {
        // A C string and its NUL, then a UTF-16LE string: `c`, the NUL and `K` read as
        // the start of the run.
        let key = "K".repeat(20);
        let data = [&b"\x01abc\x00"[..], &utf16(&key, false), b"\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("c{key}"), 3), (key.clone(), 5)]
        );
        // A UTF-16BE string, a NUL, then a C string: its first character ends the run.
        // Without it, the string has a NUL byte on each side and reads as either byte
        // order (the bytes of a UTF-16LE string with a NUL before it): little-endian.
        let data = [&b"\x01"[..], &utf16(&key, true), b"\x00xyz\x00"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("{key}x"), 1), (key.clone(), 2)]
        );
    }

    /// A regression test (found by review): a UTF-16 string after a two-byte length has
    /// a NUL beside the length's character, not a printable byte, so it was never cut off:
    /// `8` and a 56-character key were one token of 57. A first character that counts
    /// the characters after it, or their bytes, is also cut off; another is not.
    #[test]
    fn a_utf16_string_after_a_two_byte_length_is_cut_from_it() {
        let key = "K".repeat(56);
        let data = [&b"\x01"[..], &utf16(&format!("8{key}"), false), b"\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("8{key}"), 1), (key.clone(), 3)]
        );
        // 112 (`p`) bytes, big-endian.
        let data = [&b"\x01"[..], &utf16(&format!("p{key}"), true), b"\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("p{key}"), 1), (key.clone(), 3)]
        );
        let data = [&b"\x01"[..], &utf16(&format!("x{key}"), false), b"\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("x{key}"), 1)]
        );
    }

    /// A regression test (found by review): a little-endian string with a NUL before it
    /// and an ASCII character glued after it read as big-endian, for the run that holds
    /// that character, and was reported a byte early; a big-endian string ending with a
    /// NUL code unit read as little-endian, a byte late.
    #[test]
    fn a_utf16_string_is_located_by_its_own_ends() {
        let key = "K".repeat(20);
        let data = [&b"\x01\x00"[..], &utf16(&key, false), b"xyz\x00"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(format!("{key}x"), 1), (key.clone(), 2)]
        );
        let data = [&b"\x01"[..], &utf16(&key, true), b"\x00\x00\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(key.clone(), 1)]
        );
        // Followed by a NUL code unit in either byte order, it reads as little-endian.
        let data = [&b"\x01\x00"[..], &utf16(&key, false), b"\x00\x00\x01"].concat();
        assert_eq!(
            lines_with_keywords(&data, 16, "binance"),
            [(key.clone(), 2)]
        );
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
