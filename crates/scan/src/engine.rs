//! The matching engine: keyword prefilter, tokens, context, labels, PEM blocks, pairing.
//!
//! A buffer goes through four stages. (1) One Aho-Corasick pass finds exchange keywords,
//! rule prefixes and PEM headers; a buffer with none of them (the vast majority of source
//! files) is done after this pass. (2) The buffer is cut into tokens (runs of base64 /
//! base64url characters plus `=` padding) and each token is checked only against the rules
//! whose shape has exactly its length. (3) A candidate needs a keyword of its exchange in
//! a window of lines around it, or on an enclosing line of a nested YAML/JSON block (found
//! by indentation) or TOML/INI section (found by its `[header]`), or in the part of the file
//! path below the scan root. (4) Candidates of one exchange close together are paired into
//! credential sets. A binary buffer is first reduced to the printable runs in it (see
//! [`crate::binary`]), which go through the same stages, one run a line.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::binary::{Strings, Wide};
use crate::managed::ManagedKeys;
use crate::redact::redact;
use crate::report::{Finding, Part, Severity, Suppression};
use crate::rules::{LabelMode, Role, RuleSet};

/// The byte a JSON or C string escape at the start of `rest` stands for, and its width,
/// for the escapes that split a key's value: `\/`, and `\u002B` or `\u002F` (either case).
fn json_escape(rest: &[u8]) -> Option<(u8, usize)> {
    match rest {
        [b'\\', b'/', ..] => Some((b'/', 2)),
        [b'\\', b'u', b'0', b'0', b'2', last, ..] => match last.to_ascii_uppercase() {
            b'B' => Some((b'+', 6)),
            b'F' => Some((b'/', 6)),
            _ => None,
        },
        _ => None,
    }
}

/// The byte a URL's percent-encoding at the start of `rest` stands for, and its width,
/// for the escapes that split a base64 value: `%2B` (`+`), `%2F` (`/`) and `%3D` (`=`),
/// either case. A query string, a form body or a DSN's user part writes them so
/// (`secret=abc%2Bdef%3D%3D`, `kraken://KEY:SECRET%3D%3D@host`); other escapes (`%20`)
/// end a value, as the characters they stand for would.
fn percent_escape(rest: &[u8]) -> Option<(u8, usize)> {
    match rest {
        [b'%', b'2', last, ..] => match last.to_ascii_uppercase() {
            b'B' => Some((b'+', 3)),
            b'F' => Some((b'/', 3)),
            _ => None,
        },
        [b'%', b'3', last, ..] if last.eq_ignore_ascii_case(&b'D') => Some((b'=', 3)),
        _ => None,
    }
}

/// Whether `rest` begins with a URL's percent-encoding of an ASCII character that no
/// token holds (`%22`, `%3A`, `%20`, `%0A`): `%`, then two hex digits.
fn is_percent_escape(rest: &[u8]) -> bool {
    let [b'%', high, low, ..] = rest else {
        return false;
    };
    let digit = |b: &u8| (*b as char).to_digit(16);
    match (digit(high), digit(low)) {
        (Some(high), Some(low)) => {
            let byte = high * 16 + low;
            byte < 0x80 && !TOKEN_BYTE[byte as usize]
        }
        _ => false,
    }
}

/// Whether the text before the `:` at `colon` is a URL's scheme: a letter, then at most
/// 31 letters, digits, `+`, `-` or `.` (`binance-futures-testnet`), with nothing a token
/// goes on with before it. A key before a colon (`KEY:SECRET`) that could hold a `/` is
/// longer than any scheme.
fn is_scheme_before(data: &[u8], colon: usize) -> bool {
    let is_scheme_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    let start = data[..colon]
        .iter()
        .rposition(|&b| !is_scheme_byte(b))
        .map_or(0, |i| i + 1);
    let scheme = &data[start..colon];
    (1..=32).contains(&scheme.len())
        && scheme[0].is_ascii_alphabetic()
        && (start == 0 || !TOKEN_BYTE[data[start - 1] as usize])
}

/// An escape that stands for a character of a value: JSON's ([`json_escape`]) or a URL's
/// ([`percent_escape`]). One comparison for any byte that starts neither.
fn value_escape(rest: &[u8]) -> Option<(u8, usize)> {
    match rest.first() {
        Some(b'\\') => json_escape(rest),
        Some(b'%') => percent_escape(rest),
        _ => None,
    }
}

/// How a run of base64 was found to be decoded as a whole file
/// ([`Engine::encoded_file_findings`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum EncodedRun {
    /// An exchange's name is encoded in it.
    NamingItsExchange,
    /// It starts near a keyword of the exchange with this index, or in a file whose path
    /// names it: decoded if it is more than one value, and read as if a line naming the
    /// exchange came before it (found by review: read as if its path named it, every
    /// line of it had its context, and a data URI's CSV of hex ids made "secrets").
    NearItsExchange(usize),
}

/// Whether decoded text is more than one value: lines, or two fields (`a=1 b=2`,
/// `{"key": …, "secret": …}`), whatever blanks and base64 padding end it (one value
/// encoded with its line end, `echo KEY | base64`, is one value).
fn holds_fields(decoded: &[u8]) -> bool {
    let mut text = decoded.trim_ascii();
    while let [rest @ .., b'='] = text {
        text = rest;
    }
    text.contains(&b'\n') || text.iter().filter(|&&b| b == b':' || b == b'=').count() >= 2
}

/// Lines around an exchange's keyword within which a run of base64 is decoded as text
/// written base64-encoded as a whole ([`Engine::encoded_near_keywords`]): a Kubernetes
/// secret's name a few lines above its `data:`.
const ENCODED_NEAR_LINES: usize = 12;
/// The shortest run decoded near an exchange's keyword ([`Engine::encoded_near_keywords`]):
/// a `.env` of a key and a secret, encoded, is shorter than a value may be.
const ENCODED_NEAR_MIN: usize = 64;

/// The longest text written base64-encoded as a whole that is decoded (1 MiB, encoded).
const MAX_ENCODED_FILE: usize = 1 << 20;

/// What a finding's title says of values written base64-encoded.
const BASE64_TITLE: &str = " (base64-encoded)";

/// Where text written base64-encoded as a whole was found.
struct EncodedFile<'a> {
    path: &'a str,
    context_path: &'a str,
    data: &'a [u8],
    lines: &'a LineIndex,
}

/// The base64 forms of an exchange's id (`binance`, when it has five letters or more), in
/// lower and upper case as configuration files write it (`"name": "binance"`,
/// `BINANCE_API_KEY=`), at each of the three places in a group of three bytes it can
/// start: only the characters that its bytes alone decide, so that it is found whatever
/// surrounds it. Six characters or more each, so that random base64 (an image, a hash)
/// holds one about once in 64^6 places. Few, since each pattern slows every file's
/// keyword search.
fn encoded_names(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    if id.len() >= 5 {
        for name in [id.to_ascii_lowercase(), id.to_ascii_uppercase()] {
            for align in 0..3usize {
                let mut bytes = vec![0u8; align];
                bytes.extend_from_slice(name.as_bytes());
                let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
                // Character k holds bits 6k..6k+6: those within the name's bits alone.
                let first = (8 * align).div_ceil(6);
                let last = (8 * (align + name.len())) / 6;
                if let Some(core) = encoded.get(first..last).filter(|c| c.len() >= 6) {
                    out.push(core.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How every PEM block's header begins.
const PEM_BEGIN: &str = "-----BEGIN ";

/// The spans of the PEM blocks in `data` whose label is not a private key's (`PUBLIC KEY`,
/// `CERTIFICATE`, `PGP PUBLIC KEY BLOCK`), header to footer. A footer is looked for up to
/// the next header and at most 64 KiB on, so that a file of headers costs its length once.
fn public_pem_spans(data: &[u8]) -> Vec<(usize, usize)> {
    const MAX_LABEL: usize = 64;
    const MAX_BODY: usize = 64 * 1024;
    let starts: Vec<usize> = memchr::memmem::find_iter(data, PEM_BEGIN.as_bytes()).collect();
    let mut spans = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let label_start = start + PEM_BEGIN.len();
        let near = &data[label_start..data.len().min(label_start + MAX_LABEL)];
        let Some(dashes) = memchr::memmem::find(near, b"-----") else {
            continue;
        };
        let label = &near[..dashes];
        let is_label = !label.is_empty()
            && label
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ');
        if !is_label || label.ends_with(b"PRIVATE KEY") {
            continue;
        }
        let body = label_start + dashes + "-----".len();
        let limit = starts
            .get(n + 1)
            .copied()
            .unwrap_or(data.len())
            .min(body + MAX_BODY)
            .max(body);
        let footer = [b"-----END ", label, b"-----"].concat();
        if let Some(rel) = memchr::memmem::find(&data[body..limit], &footer) {
            spans.push((start, body + rel + footer.len()));
        }
    }
    spans
}

/// Longest token any rule can match.
pub(crate) const MAX_TOKEN: usize = 256;
/// "-----BEGIN" base64-encoded, as a text that starts with a PEM block begins.
const ENCODED_PEM_START: &str = "LS0tLS1CRUdJTi";
/// Longest base64 text decoded in search of a PEM block (a 16 KiB block, encoded).
const MAX_ENCODED_PEM: usize = 24 * 1024;
/// Lines before and after a value searched for an exchange keyword.
#[derive(Clone, Copy)]
struct Window {
    before: usize,
    after: usize,
    /// Whether a value labelled as a key or a secret by a name of two words or more
    /// (`API_SECRET = …`, `apiKey:`; not a bare `key` or `secret`), of
    /// [`LABELLED_MIN_LEN`] characters or more, takes its exchange's keyword from its
    /// TOML/INI section (the whole buffer when it has none), up to [`LABELLED_REACH`] lines
    /// away, when none is this near: a bot's configuration names its exchange once, at
    /// the top, a notebook in another cell (found by review: `EXCHANGE = "binance"` ten
    /// lines above the keys was missed).
    labelled_anywhere: bool,
    /// The fewest words the label of such a value has.
    label_words: usize,
}

/// The keyword window of text: six lines before a value, three after, or up to 200 in its
/// section for a value labelled as a key or secret ([`Window::labelled_anywhere`]).
const TEXT_WINDOW: Window = Window {
    before: 6,
    after: 3,
    labelled_anywhere: true,
    label_words: 2,
};

/// The keyword window of a binary file's printable text, where a line is a run: a
/// compiled Python module keeps the names of all its constants after all their values
/// (`KRAKEN_API_KEY` comes after the last constant), a SQLite page keeps a row's
/// columns in one run but the table's name pages away.
const BINARY_WINDOW: Window = Window {
    before: 24,
    after: 24,
    labelled_anywhere: false,
    label_words: 2,
};

/// How a buffer is read: whether text written base64-encoded as a whole is decoded and
/// scanned too (not within such a text: one layer only), and the lines around a value
/// searched for a keyword.
#[derive(Clone, Copy)]
struct Mode {
    decode_files: bool,
    window: Window,
}

/// A text file or blob.
const TEXT: Mode = Mode {
    decode_files: true,
    window: TEXT_WINDOW,
};

/// Text found written base64-encoded as a whole, in a text file.
const DECODED: Mode = Mode {
    decode_files: false,
    window: TEXT_WINDOW,
};

/// Text found written base64-encoded as a whole near an exchange's keyword
/// ([`EncodedRun::NearItsExchange`]), read as if [`DECODED_NEAR_GAP`] lines after a line
/// naming the exchange: its values labelled as a key or secret take the name, whatever
/// their label's words (`"secret": …` in a config.json); those without a label do not
/// (found by review: a notebook's data URI of a CSV of hex ids made "OKX secrets").
const DECODED_NEAR: Mode = Mode {
    decode_files: false,
    window: Window {
        label_words: 1,
        ..TEXT_WINDOW
    },
};

/// The blank lines between the exchange's name and text decoded near it
/// ([`DECODED_NEAR`]): more than a window's lines before a value.
const DECODED_NEAR_GAP: usize = TEXT_WINDOW.before + 2;

/// The printable text of a binary file or blob.
const BINARY: Mode = Mode {
    decode_files: true,
    window: BINARY_WINDOW,
};
/// Lines within which a key, a secret and a passphrase form one credential set; on one
/// line, [spots](Spot) within which they do.
const PAIR_WINDOW: usize = 10;
/// The bytes of a line that count as one line when two values on it are paired, or a
/// value and a keyword: a minified bundle holds a whole program on one line, and a value
/// at its start is no partner of one megabytes further on (found by review: ccxt's
/// browser build paired a method name with a referral code 1.6 MB away). A line of
/// ordinary text is shorter: all of it is one spot.
const SPOT_BYTES: usize = 1024;
/// The bytes of a line that count as one line between a value and a keyword on it: more
/// than between two values, since a whole cache of market data may stand between the
/// exchange's name and its keys in a one-line JSON file; still less than the distances
/// in a minified bundle at which another exchange's section stands.
const KEYWORD_SPOT_BYTES: usize = 16 * SPOT_BYTES;

/// Where a value or a keyword stands when values are paired: its line, and on that line
/// which [`SPOT_BYTES`] it is in. Two on different lines are as far apart as their lines
/// (a long line between them counts as one: found by review, a list of pairs on one line
/// between `exchange: kraken` and a key hid the key when every KiB counted); two on one
/// line, as their spots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Spot {
    line: usize,
    within: usize,
}

impl Spot {
    /// The spot of byte `col` of `line`.
    fn at(line: usize, col: usize) -> Spot {
        Spot {
            line,
            within: col / SPOT_BYTES,
        }
    }

    /// The spot of byte `col` of `line` in [`KEYWORD_SPOT_BYTES`].
    fn of_keyword_reach(line: usize, col: usize) -> Spot {
        Spot {
            line,
            within: col / KEYWORD_SPOT_BYTES,
        }
    }

    /// The first spot of `line`.
    fn line_start(line: usize) -> Spot {
        Spot { line, within: 0 }
    }

    /// How far apart two spots are: lines apart, or spots apart on one line.
    fn distance(self, other: Spot) -> usize {
        if self.line == other.line {
            self.within.abs_diff(other.within)
        } else {
            self.line.abs_diff(other.line)
        }
    }
}

/// The entry of `set` nearest to `at`, at most `before` lines (or spots, on its line)
/// before it and `after` after it, as (distance, index); of two as near, the one of
/// lower index among the first entries of their line (or spot, on its line). A few
/// searches, whatever the set holds: the last entry on a line above, the first on a line
/// below, and the nearest on its own line on each side.
fn nearest_spot(
    set: &BTreeSet<(Spot, usize)>,
    at: Spot,
    before: usize,
    after: usize,
) -> Option<(usize, usize)> {
    pair_steps(6 * search_steps(set.len()));
    let first_at = |spot: Spot| set.range((spot, 0)..).next().copied();
    let same_before = set
        .range((Spot::line_start(at.line), 0)..=(at, usize::MAX))
        .next_back()
        .and_then(|&(spot, _)| first_at(spot));
    let same_after = set
        .range((at, 0)..(Spot::line_start(at.line + 1), 0))
        .next()
        .copied();
    let line_above = set
        .range(..(Spot::line_start(at.line), 0))
        .next_back()
        .and_then(|&(spot, _)| first_at(Spot::line_start(spot.line)));
    let line_below = first_at(Spot::line_start(at.line + 1));
    let reach = |(spot, j): (Spot, usize), reach: usize| {
        let d = at.distance(spot);
        (d <= reach).then_some((d, j))
    };
    [
        same_before.and_then(|e| reach(e, before)),
        line_above.and_then(|e| reach(e, before)),
        same_after.and_then(|e| reach(e, after)),
        line_below.and_then(|e| reach(e, after)),
    ]
    .into_iter()
    .flatten()
    .min()
}
/// Lines walked back looking for the enclosing blocks of a nested value.
const ANCESTOR_SCAN: usize = 2000;
/// Keeps `finding` in `findings` and counts it when it is active; a suppressed one only
/// while fewer than [`MAX_FINDINGS_PER_BUFFER`] are kept, so that suppressed values
/// cannot take the memory the bound saves.
fn keep(findings: &mut Vec<Finding>, active: &mut usize, finding: Finding) {
    if finding.is_active() {
        *active += 1;
        findings.push(finding);
    } else if findings.len() < MAX_FINDINGS_PER_BUFFER {
        findings.push(finding);
    }
}

/// The most active findings one buffer gives (found by review: a file of 60 MiB of
/// `binance key: <64 characters>` lines gave 806 000 of them and took 1.7 GB, a pull
/// request of a few such files a CI runner's memory). A buffer that reaches it is
/// reported with this many, and a warning that it holds more; suppressed findings do
/// not count, and are kept while fewer than this many are.
pub(crate) const MAX_FINDINGS_PER_BUFFER: usize = 1000;
/// Distance given to a keyword found only in the file path.
const PATH_DISTANCE: usize = 1000;
/// Distance given to a keyword found only outside a labelled value's window
/// ([`Window::labelled_anywhere`]).
const LABELLED_DISTANCE: usize = 500;
/// The shortest value that takes a keyword from outside its window
/// ([`Window::labelled_anywhere`]).
const LABELLED_MIN_LEN: usize = 32;
/// How many lines away, at most, a labelled value takes its keyword from outside its
/// window ([`Window::labelled_anywhere`]): found by review, ccxt's test of Coinbase
/// (`exchange.secret = '…'`) took Gate's from a URL 1600 lines up.
const LABELLED_REACH: usize = 200;
/// Shortest token compared with managed keys.
const MIN_MANAGED_TOKEN: usize = 12;
/// The marker that suppresses findings on its line.
pub(crate) const ALLOW_MARKER: &[u8] = b"keygate:allow";

#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// A keyword of the exchange with this index; `common` when it is also a common word
    /// ([`Exchange::common_words`](crate::rules::Exchange::common_words)).
    Keyword {
        exchange: usize,
        common: bool,
    },
    Prefilter,
    Pem,
    /// The start of any PEM block (`-----BEGIN `): a public key, a certificate, armour.
    PemBegin,
    /// The start of a PEM block written base64-encoded (`LS0tLS1CRUdJTi`, "-----BEGIN").
    EncodedPem,
    /// An exchange's name inside text written base64-encoded (see [`encoded_keywords`]).
    EncodedKeyword,
}

/// Compiled matching state shared by all threads.
pub(crate) struct Engine {
    rules: &'static RuleSet,
    ac: AhoCorasick,
    patterns: Vec<Pattern>,
    by_len: Vec<Vec<usize>>,
    /// The length of the shortest value a rule with a shape takes.
    shortest_value: usize,
    /// By token length: whether base64 of a value some rule matches has that length.
    is_encoded_len: Vec<bool>,
    pem_rules: Vec<usize>,
    pem_re: regex::bytes::Regex,
    label_re: regex::bytes::Regex,
    assign_re: regex::bytes::Regex,
    passphrase_rule: Vec<Option<usize>>,
    /// The fingerprints an ignore file or a baseline lists.
    known: Known,
}

/// The fingerprints of values and sets already reviewed: listed in an ignore file, or in
/// a baseline (an earlier report). A set is suppressed when its own fingerprint is listed
/// or every value in it (but a passphrase) is; its other values are a finding of their
/// own, so that an entry for one secret cannot hide a new key written beside it.
#[derive(Default)]
pub(crate) struct Known {
    /// From ignore files: fingerprints of sets or of single values.
    pub(crate) ignored: HashSet<String>,
    /// From baselines: the fingerprint of each finding and of each of its values.
    pub(crate) baseline: HashSet<String>,
    /// From baselines written before values had fingerprints of their own, whose set
    /// fingerprint was its main value's: by that fingerprint, the other values of each
    /// such set as the report showed them (role, rule, redacted form). A value found
    /// with that main value again is known if it was shown so: a new random key looks
    /// like the old one redacted (first and last four characters) once in 62⁸.
    pub(crate) legacy: HashMap<String, Vec<(Role, String, String)>>,
}

impl Known {
    /// Adds the findings of an earlier report.
    pub(crate) fn add_baseline(&mut self, previous: &crate::Report) {
        for f in &previous.findings {
            self.baseline.insert(f.fingerprint.clone());
            let values = f.parts.iter().filter(|p| p.role != Role::Passphrase);
            let mut is_legacy = false;
            for p in values.clone() {
                match &p.fingerprint {
                    Some(fp) => {
                        self.baseline.insert(fp.clone());
                    }
                    None => is_legacy = true,
                }
            }
            if is_legacy {
                self.legacy
                    .entry(f.fingerprint.clone())
                    .or_default()
                    .extend(values.map(|p| (p.role, p.rule.clone(), p.redacted.clone())));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.ignored.is_empty() && self.baseline.is_empty()
    }
}

/// One value found by a rule, before pairing.
#[derive(Debug, Clone)]
struct Cand {
    rule: Option<usize>,
    exchange: Option<usize>,
    role: Role,
    needs_partner: bool,
    line: usize,
    col: usize,
    /// Where the value stands for pairing.
    spot: Spot,
    start: usize,
    dist: usize,
    value: String,
    der: Option<Vec<u8>>,
    managed: Option<String>,
    /// Whether the value was found base64-encoded (a Kubernetes secret's `data:`), and
    /// `value` is what it decodes to.
    base64: bool,
}

static TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'_' || b == b'-';
        i += 1;
    }
    t
};

/// The base64 alphabet, padding aside: `=` only ends a run ([`base64_run`]).
static BASE64_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        i += 1;
    }
    t
};

/// The length of the base64 run `bytes` start with: characters of the alphabet, then up
/// to two `=` of padding where nothing of the alphabet follows them. An `=` followed by
/// more is no padding but a separator (found by review: `CONFIG=<base64 of a .env>` was
/// read as one run from `CONFIG`, which did not decode, so the keys in it went unseen).
fn base64_run(bytes: &[u8]) -> usize {
    let text = bytes
        .iter()
        .take_while(|&&b| BASE64_BYTE[b as usize])
        .count();
    let padding = bytes[text..]
        .iter()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let after = bytes.get(text + padding).copied();
    if padding > 0 && after.is_none_or(|b| !BASE64_BYTE[b as usize]) {
        text + padding
    } else {
        text
    }
}

/// Where a candidate is reported: the offset of its value in the scanned buffer, and
/// whether the value was written there base64-encoded.
#[derive(Clone, Copy)]
struct Place {
    start: usize,
    base64: bool,
}

impl Engine {
    pub(crate) fn new(rules: &'static RuleSet, known: Known) -> Engine {
        let mut words: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        for (i, ex) in rules.exchanges().iter().enumerate() {
            for k in &ex.keywords {
                words.push(k.clone());
                patterns.push(Pattern::Keyword {
                    exchange: i,
                    common: ex.common_words.contains(k),
                });
            }
        }
        for r in rules.rules() {
            for p in &r.prefilter {
                words.push(p.to_ascii_lowercase());
                patterns.push(Pattern::Prefilter);
            }
        }
        words.push("private key-----".to_owned());
        patterns.push(Pattern::Pem);
        words.push(PEM_BEGIN.to_ascii_lowercase());
        patterns.push(Pattern::PemBegin);
        words.push(ENCODED_PEM_START.to_ascii_lowercase());
        patterns.push(Pattern::EncodedPem);
        for ex in rules.exchanges() {
            for encoded in encoded_names(&ex.id) {
                words.push(encoded);
                patterns.push(Pattern::EncodedKeyword);
            }
        }
        // The rule set's keywords (its own, or a library user's from `RuleSet::from_toml`)
        // and fixed words: construction fails only past aho-corasick's size limits, which
        // a few hundred short words are far below.
        #[allow(clippy::expect_used)]
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .expect("keyword automaton within aho-corasick's size limits");
        let mut by_len = vec![Vec::new(); MAX_TOKEN + 1];
        let mut pem_rules = Vec::new();
        let mut passphrase_rule = vec![None; rules.exchanges().len()];
        for (i, r) in rules.rules().iter().enumerate() {
            if r.shape.is_some() {
                for slot in &mut by_len[r.min_len..=r.max_len.min(MAX_TOKEN)] {
                    slot.push(i);
                }
            } else if !r.pem.is_empty() {
                pem_rules.push(i);
            } else if r.role == Role::Passphrase {
                passphrase_rule[r.exchange] = Some(i);
            }
        }
        // With a line end or two encoded after the value too (`echo $KEY | base64`, a
        // file given to `kubectl create secret --from-file`).
        let mut is_encoded_len = vec![false; MAX_TOKEN + 1];
        for len in (0..=MAX_TOKEN).filter(|&len| !by_len[len].is_empty()) {
            for with_end in len..=len + 2 {
                for encoded in base64_lengths(with_end) {
                    if let Some(slot) = is_encoded_len.get_mut(encoded) {
                        *slot = true;
                    }
                }
            }
        }
        // Fixed patterns, covered by every test; they cannot fail to compile.
        #[allow(clippy::expect_used)]
        let re = |p: &str| regex::bytes::Regex::new(p).expect("fixed pattern");
        let shortest_value = by_len
            .iter()
            .position(|rules| !rules.is_empty())
            .unwrap_or(MAX_TOKEN);
        Engine {
            rules,
            ac,
            patterns,
            by_len,
            shortest_value,
            is_encoded_len,
            pem_rules,
            pem_re: re(r"-----BEGIN ((?:EC |RSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----"),
            label_re: re(
                r#"([A-Za-z_][A-Za-z0-9_.\-]*)\\?["'`]?\s*(?:=>|:=|:-|=|:)\s*[\[({]?\s*[bru]?\\?["'`]?\s*$"#,
            ),
            assign_re: re(
                r#"([A-Za-z_][A-Za-z0-9_.\-]*)\\?["'`]?\s*(?:=>|:=|=|:)\s*\\?["'`]?([^\s"'`\\,;})\]]{1,128})"#,
            ),
            passphrase_rule,
            known,
        }
    }

    pub(crate) fn rules(&self) -> &'static RuleSet {
        self.rules
    }

    /// Scans one buffer. `path` names it in findings; `context_path` is searched for
    /// exchange keywords. They differ for a walked file: only the part of its path below
    /// the scan root counts as context, so how the root was typed (`~/src/binance-bot`
    /// or `.`) does not change what is found.
    pub(crate) fn scan(
        &self,
        path: &str,
        context_path: &str,
        data: &[u8],
        managed: Option<&ManagedKeys>,
        redact_values: bool,
    ) -> Vec<Finding> {
        self.scan_text(path, context_path, data, managed, redact_values, TEXT)
    }

    /// Scans a binary buffer (see [`is_binary`]) as the printable text in it, in ASCII
    /// and in UTF-16 (see [`crate::binary`]), with the same rules as text. A buffer where
    /// no keyword, rule prefix or PEM header is found, in either, under a path without
    /// keywords, is done after that search (unless managed keys are looked for).
    /// Findings stand where their values are in `data`: `offset` is the byte offset, and
    /// `line` and `column` count line feeds and bytes as in a text file. A value found
    /// both in a run and in a string cut out of it is reported once, from the run.
    pub(crate) fn scan_binary(
        &self,
        path: &str,
        context_path: &str,
        data: &[u8],
        managed: Option<&ManagedKeys>,
        redact_values: bool,
    ) -> Vec<Finding> {
        let mut hits = self.ac.find_iter(data).map(|m| m.start()).peekable();
        let min_len = if managed.is_some() {
            self.shortest_value.min(MIN_MANAGED_TOKEN)
        } else {
            self.shortest_value
        };
        // The UTF-16 runs long enough for a value or holding a word the automaton looks
        // for, and those words in them: a keyword there counts as in an ASCII run.
        let wide = Wide::new(data, min_len, &self.ac);
        let path_hit = self.ac.find_iter(context_path.as_bytes()).any(|m| {
            matches!(
                self.patterns[m.pattern().as_usize()],
                Pattern::Keyword { .. }
            )
        });
        if hits.peek().is_none() && !wide.has_hits() && !path_hit && managed.is_none() {
            return Vec::new();
        }
        // `wide` is dropped here, once written into `strings`.
        let strings = Strings::new(data, min_len, hits, wide);
        let found = self.scan_text(
            path,
            context_path,
            &strings.text,
            managed,
            redact_values,
            BINARY,
        );
        if found.is_empty() {
            return found;
        }
        let text_lines = LineIndex::new(&strings.text);
        let data_lines = LineIndex::new(data);
        // A 1-based line and column of the text: 1-based line and column in `data`, the
        // offset there, and whether the line is a string cut out of a run.
        let place = |line: usize, column: usize| {
            let (at, carved) = strings.locate(text_lines.start(line - 1) + column - 1);
            let l = data_lines.line_of(at);
            (l + 1, at - data_lines.start(l) + 1, at as u64, carved)
        };
        let mut placed: Vec<(Finding, bool)> = found
            .into_iter()
            .map(|mut f| {
                let (line, column, offset, carved) = place(f.line, f.column);
                (f.line, f.column, f.offset) = (line, column, Some(offset));
                for p in &mut f.parts {
                    let (line, column, offset, _) = place(p.line, p.column);
                    (p.line, p.column, p.offset) = (line, column, Some(offset));
                }
                (f, carved)
            })
            .collect();
        placed.sort_by_key(|&(_, carved)| carved);
        let mut reported = HashSet::new();
        let mut out = Vec::with_capacity(placed.len());
        for (f, carved) in placed {
            let offsets: Vec<u64> = f.parts.iter().filter_map(|p| p.offset).collect();
            if carved && offsets.iter().any(|o| reported.contains(o)) {
                continue;
            }
            reported.extend(offsets);
            out.push(f);
        }
        out
    }

    /// Whether the keyword at `start..end` lies inside a token that is itself a value of a
    /// rule that needs a keyword near it: such a keyword is a few characters of a random
    /// value, not the name of an exchange (a Binance key, 64 random letters and digits,
    /// holds `bnc` between a digit or a case change and another, `7bNc4`, `xBncD`, about
    /// once in 3 300). A value whose rule needs no keyword (a CDP key name,
    /// `organizations/…/apiKeys/…`) names its exchange itself, and its keyword counts.
    /// The token is cut as values are: a run of token bytes and up to two `=`; a run
    /// longer than any value is no value, and is not walked past [`MAX_TOKEN`].
    fn is_inside_value(&self, data: &[u8], start: usize, end: usize) -> bool {
        let low = start.saturating_sub(MAX_TOKEN);
        let from = match data[low..start]
            .iter()
            .rposition(|&b| !TOKEN_BYTE[b as usize])
        {
            Some(i) => low + i + 1,
            None if low == 0 => 0,
            None => return false,
        };
        let high = data.len().min(end + MAX_TOKEN);
        let mut to = match data[end..high]
            .iter()
            .position(|&b| !TOKEN_BYTE[b as usize])
        {
            Some(i) => end + i,
            None if high == data.len() => high,
            None => return false,
        };
        for _ in 0..2 {
            if data.get(to) == Some(&b'=') {
                to += 1;
            }
        }
        let token = &data[from..to];
        // An identifier of words in camel case names the exchange: `bybitTestnetApiKey`
        // has the shape of a Bybit key (found by review: its keyword stopped counting).
        if crate::rules::is_made_of_camel_case_words(token) {
            return false;
        }
        let rules = self.rules.rules();
        self.by_len.get(token.len()).is_some_and(|candidates| {
            candidates.iter().any(|&ri| {
                let rule = &rules[ri];
                rule.context
                    && rule
                        .shape
                        .as_ref()
                        .is_some_and(|shape| shape.is_match(token))
                    && rule.accepts_token(token)
            })
        })
    }

    /// [`Engine::scan`], reading `data` as `mode` says.
    fn scan_text(
        &self,
        path: &str,
        context_path: &str,
        data: &[u8],
        managed: Option<&ManagedKeys>,
        redact_values: bool,
        mode: Mode,
    ) -> Vec<Finding> {
        let nex = self.rules.exchanges().len();
        let mut kw_offsets: Vec<Vec<usize>> = vec![Vec::new(); nex];
        let mut any_hit = false;
        let mut pem_hit = false;
        let mut armour_hit = false;
        let mut encoded_pems = Vec::new();
        let mut encoded_names = Vec::new();
        for m in self.ac.find_iter(data) {
            match self.patterns[m.pattern().as_usize()] {
                Pattern::Keyword { exchange, common } => {
                    if is_keyword_at(data, m.start(), m.end(), common)
                        && !self.is_inside_value(data, m.start(), m.end())
                    {
                        kw_offsets[exchange].push(m.start());
                        any_hit = true;
                    }
                }
                Pattern::Prefilter => any_hit = true,
                Pattern::Pem => {
                    pem_hit = true;
                    any_hit = true;
                }
                Pattern::PemBegin => armour_hit = true,
                Pattern::EncodedPem => {
                    if data[m.range()] == *ENCODED_PEM_START.as_bytes()
                        && (m.start() == 0 || !BASE64_BYTE[data[m.start() - 1] as usize])
                    {
                        encoded_pems.push(m.start());
                        any_hit = true;
                    }
                }
                Pattern::EncodedKeyword if mode.decode_files => {
                    encoded_names.push(m.start());
                    any_hit = true;
                }
                Pattern::EncodedKeyword => {}
            }
        }
        let mut path_hit = vec![false; nex];
        for exchange in self.exchanges_named_in(context_path.as_bytes()) {
            path_hit[exchange] = true;
            any_hit = true;
        }
        if !any_hit && managed.is_none() {
            return Vec::new();
        }
        let lines = LineIndex::new(data);
        let kw_spots: Vec<BTreeSet<(Spot, usize)>> = kw_offsets
            .iter()
            .map(|offs| {
                offs.iter()
                    .map(|&o| {
                        let line = lines.line_of(o);
                        (Spot::of_keyword_reach(line, o - lines.start(line)), 0)
                    })
                    .collect()
            })
            .collect();
        let kw_lines: Vec<Vec<usize>> = kw_spots
            .iter()
            .map(|spots| {
                let mut lines: Vec<usize> = spots.iter().map(|(spot, _)| spot.line).collect();
                lines.dedup();
                lines
            })
            .collect();
        let ctx = Context {
            data,
            dotenv: is_dotenv_path(path),
            lines: &lines,
            kw_spots: &kw_spots,
            kw_lines: &kw_lines,
            path_hit: &path_hit,
            window: mode.window,
            blocks: OnceCell::new(),
        };
        let mut cands = Vec::new();
        // PEM blocks first: their base64 lines must not be mistaken for API keys.
        let mut pem_spans = if pem_hit {
            self.pem_cands(&ctx, managed, &mut cands)
        } else {
            Vec::new()
        };
        if !encoded_pems.is_empty() {
            pem_spans.extend(self.encoded_pem_cands(&ctx, &encoded_pems, managed, &mut cands));
        }
        // Nor are a public key's, a certificate's or PGP armour's (Binance's RSA keys
        // have their public half committed beside the bot, `binance_rsa_public.pem`).
        if armour_hit {
            pem_spans.extend(public_pem_spans(data));
        }
        pem_spans.sort_unstable();
        let mut in_pem = pem_spans.iter().peekable();
        let mut i = 0;
        let n = data.len();
        // An escape of a value's character inside it; `=` is padding, only at its end.
        let inner_escape = |rest: &[u8]| value_escape(rest).filter(|&(byte, _)| byte != b'=');
        while i < n {
            // A value may begin with an escape too (`\u002B…`, `%2F…`), not with padding.
            if !TOKEN_BYTE[data[i] as usize] {
                // A JSON or C string's `\n`, `\t`, `\r` or `\\` stands for a character no
                // value holds, as `%0A` does: the letter after the backslash begins no
                // token (`"KEY\nSECRET"` is `KEY` and `SECRET`, not `nSECRET`).
                if data[i] == b'\\' && matches!(data.get(i + 1), Some(b'n' | b't' | b'r' | b'\\')) {
                    i += 2;
                    continue;
                }
                match value_escape(&data[i..]) {
                    Some((b'=', width)) => {
                        i += width;
                        continue;
                    }
                    Some(_) => {}
                    // A URL escape of any other ASCII character no value holds (`%22`,
                    // `%3A`, `%20`): its two hex digits do not begin a value either
                    // (`%22KEY%22`, a JSON body written into a query string). A `%` before
                    // anything else (`100%ABCDEF…`, `LIKE '%e4f0…'`) is a `%`.
                    None if is_percent_escape(&data[i..]) => {
                        i += 3;
                        continue;
                    }
                    None => {
                        i += 1;
                        continue;
                    }
                }
            }
            let mut start = i;
            while i < n && TOKEN_BYTE[data[i] as usize] {
                i += 1;
            }
            // A default in `${VAR:-value}` (shell, docker-compose) is `value`, not `-value`.
            if data[start] == b'-' && start > 0 && data[start - 1] == b':' {
                start += 1;
            }
            // After a URL's `scheme:`, `//` begins the authority: in a DSN
            // (`kraken://KEY:SECRET@host`) the key is `KEY`, not `//KEY`. Only after a
            // scheme: in `KEY://SECRET` a secret that begins with `//` keeps it.
            if data[start..i].starts_with(b"//")
                && start + 2 < i
                && start > 0
                && data[start - 1] == b':'
                && is_scheme_before(data, start - 1)
            {
                start += 2;
            }
            // JSON and C strings may escape `/` (`\/`: PHP's `json_encode`) and `+`
            // (`\u002B`: .NET's `System.Text.Json`), and URLs percent-encode `+` and `/`
            // (`%2B`, `%2F`): such a value is read unescaped.
            let mut unescaped = None;
            if inner_escape(&data[i..]).is_some() {
                let mut value = data[start..i].to_vec();
                while i < n {
                    if TOKEN_BYTE[data[i] as usize] {
                        value.push(data[i]);
                        i += 1;
                    } else if let Some((byte, width)) = inner_escape(&data[i..]) {
                        value.push(byte);
                        i += width;
                    } else {
                        break;
                    }
                }
                unescaped = Some(value);
            }
            // Up to two `=` of padding, as they are or percent-encoded (`%3D`).
            let mut end = i;
            let mut padding = 0;
            let mut encoded_padding = false;
            while padding < 2 && end < n {
                if data[end] == b'=' {
                    end += 1;
                } else if data[end] == b'%' && percent_escape(&data[end..]) == Some((b'=', 3)) {
                    end += 3;
                    encoded_padding = true;
                } else {
                    break;
                }
                padding += 1;
            }
            let token: Cow<'_, [u8]> = match (unescaped, encoded_padding) {
                (None, false) => Cow::Borrowed(&data[start..end]),
                (value, _) => {
                    let mut value = value.unwrap_or_else(|| data[start..i].to_vec());
                    value.resize(value.len() + padding, b'=');
                    Cow::Owned(value)
                }
            };
            i = end;
            let len = token.len();
            if len > MAX_TOKEN {
                continue;
            }
            while in_pem.peek().is_some_and(|&&(_, e)| e <= start) {
                in_pem.next();
            }
            if in_pem.peek().is_some_and(|&&(s, _)| s <= start) {
                continue;
            }
            // A token cut out of a longer word at a non-ASCII letter (`Ä` + 43 alphanumerics)
            // is not a value of that shape: the value has a character outside the alphabet.
            if any_hit && !self.by_len[len].is_empty() && !is_glued_to_letter(data, start, end) {
                for &ri in &self.by_len[len] {
                    if let Some(c) = self.token_cand(&ctx, ri, start, &token) {
                        cands.push(c);
                    }
                }
            }
            // A value written base64-encoded, as a Kubernetes secret's `data:` holds it: the
            // decoded value is checked where the token stands, with the token's label and
            // keywords around it.
            if any_hit && self.is_encoded_len[len] && !is_glued_to_letter(data, start, end) {
                if let Some(decoded) = decode_printable(&token) {
                    for &ri in &self.by_len[decoded.len()] {
                        if let Some(c) = self.token_cand(&ctx, ri, start, &decoded) {
                            cands.push(Cand { base64: true, ..c });
                        }
                    }
                }
            }
            if let Some(m) = managed {
                if len >= MIN_MANAGED_TOKEN {
                    if let Some(account) = m.lookup(&token) {
                        let line = lines.line_of(start);
                        cands.push(Cand {
                            rule: None,
                            exchange: None,
                            role: Role::Secret,
                            needs_partner: false,
                            line,
                            col: start - lines.start(line),
                            spot: Spot::at(line, start - lines.start(line)),
                            start,
                            dist: usize::MAX,
                            value: String::from_utf8_lossy(&token).into_owned(),
                            der: None,
                            managed: Some(account.to_owned()),
                            base64: false,
                        });
                    }
                }
            }
        }
        // A value whose rule `requires` a partner (a CDP key id, a bare UUID, counts only
        // with its Ed25519 secret) and that has none within the pairing window is no
        // candidate: it must not take the place of another rule's candidate for the same
        // value below.
        self.drop_unpartnered(&mut cands);
        // One value, one candidate: a token that decodes to a value some rule takes is
        // that value (base64 of a key is no random Kraken or Ed25519 secret, which decode
        // to bytes that are not text); else keep the exchange whose keyword is nearest. A
        // managed match is merged into the rule candidate at the same place.
        cands.sort_by_key(|c| (c.start, !c.base64, c.dist));
        let mut merged: Vec<Cand> = Vec::with_capacity(cands.len());
        for c in cands {
            if let Some(last) = merged.last_mut() {
                if last.start == c.start {
                    if last.managed.is_none() {
                        last.managed = c.managed;
                    }
                    continue;
                }
            }
            merged.push(c);
        }
        if let Some(m) = managed {
            for c in &mut merged {
                if c.managed.is_none() {
                    c.managed = match &c.der {
                        Some(der) => m.lookup(der),
                        None => m.lookup(c.value.as_bytes()),
                    }
                    .map(str::to_owned);
                }
            }
        }
        self.passphrase_cands(&ctx, &mut merged);
        // The lines that carry `keygate:allow`, found in one pass: searching a value's line
        // for each finding cost the length of that line each time, n² on a one-line file.
        let mut allowed: Vec<usize> = memchr::memmem::find_iter(data, ALLOW_MARKER)
            .map(|o| lines.line_of(o))
            .collect();
        allowed.dedup();
        let mut findings = self.pair(path, &allowed, merged, redact_values);
        if !encoded_names.is_empty() {
            let at = EncodedFile {
                path,
                context_path,
                data,
                lines: &lines,
            };
            findings.extend(self.encoded_file_findings(
                &at,
                &encoded_names,
                EncodedRun::NamingItsExchange,
                managed,
                redact_values,
            ));
        }
        if mode.decode_files {
            let named_outside =
                self.encoded_near_keywords(&ctx, path, context_path, managed, redact_values);
            if !named_outside.is_empty() {
                // What was found already (in a run whose encoded text names its exchange,
                // or as values and PEM blocks encoded one by one) is not found again.
                let mut seen: HashSet<String> = findings
                    .iter()
                    .flat_map(|f| f.parts.iter().filter_map(|p| p.fingerprint.clone()))
                    .collect();
                for finding in named_outside {
                    let prints: Vec<&String> = finding
                        .parts
                        .iter()
                        .filter_map(|p| p.fingerprint.as_ref())
                        .collect();
                    if prints.iter().any(|print| !seen.contains(*print)) {
                        seen.extend(prints.into_iter().cloned());
                        findings.push(finding);
                    }
                }
            }
        }
        findings
    }

    /// The keys in text written base64-encoded as a whole whose exchange is named outside
    /// it, on a line near it or in the file's path (found by review: a Kubernetes secret
    /// `okx-bot-config` made with `--from-file=config.json`, under `okx/`, was never
    /// decoded: names of fewer than five letters, `okx` and `gate`, have no encoded form
    /// to look for, and the decoded text need not name its exchange). Each run of more
    /// than [`ENCODED_NEAR_MIN`] base64 characters starting within [`ENCODED_NEAR_LINES`] lines
    /// of a keyword (anywhere, for a keyword in the path) is decoded as
    /// [`Engine::encoded_file_findings`] decodes one, with the exchange as its context.
    fn encoded_near_keywords(
        &self,
        ctx: &Context<'_>,
        path: &str,
        context_path: &str,
        managed: Option<&ManagedKeys>,
        redact_values: bool,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for ex in 0..self.rules.exchanges().len() {
            let kl = &ctx.kw_lines[ex];
            if kl.is_empty() && !ctx.path_hit[ex] {
                continue;
            }
            let lines: Vec<std::ops::Range<usize>> = if ctx.path_hit[ex] {
                std::iter::once(0..ctx.lines.count()).collect()
            } else {
                kl.iter()
                    .map(|&l| {
                        l.saturating_sub(ENCODED_NEAR_LINES)
                            ..(l + ENCODED_NEAR_LINES + 1).min(ctx.lines.count())
                    })
                    .collect()
            };
            let mut offsets = Vec::new();
            let mut next_line = 0;
            for range in lines {
                for line in range.start.max(next_line)..range.end {
                    let start = ctx.lines.start(line);
                    let text = ctx.lines.text(ctx.data, line);
                    let mut i = 0;
                    while i < text.len() {
                        let run = base64_run(&text[i..]);
                        if run > ENCODED_NEAR_MIN {
                            offsets.push(start + i);
                        }
                        i += run.max(1);
                    }
                }
                next_line = next_line.max(range.end);
            }
            if offsets.is_empty() {
                continue;
            }
            let at = EncodedFile {
                path,
                context_path,
                data: ctx.data,
                lines: ctx.lines,
            };
            out.extend(self.encoded_file_findings(
                &at,
                &offsets,
                EncodedRun::NearItsExchange(ex),
                managed,
                redact_values,
            ));
        }
        out
    }

    /// The keys in text written base64-encoded as a whole (a Kubernetes secret made with
    /// `--from-file=config.json`, Helm's `b64enc`, `base64 -w0 .env`), found where an
    /// exchange's name is encoded, or near one (`offsets`, as `found`): each base64 run
    /// longer than any value (than [`ENCODED_NEAR_MIN`], near a name), of at most
    /// [`MAX_ENCODED_FILE`] bytes, is decoded once and, if it is
    /// text, scanned as a file of its own. Its findings are placed at the run, and their
    /// values marked base64. A longer run (an image, an archive, a dump: rarely a
    /// configuration) is not decoded, so that no file costs more than its length, however
    /// many names are encoded in it.
    fn encoded_file_findings(
        &self,
        at: &EncodedFile<'_>,
        offsets: &[usize],
        found: EncodedRun,
        managed: Option<&ManagedKeys>,
        redact_values: bool,
    ) -> Vec<Finding> {
        let data = at.data;
        let mut out = Vec::new();
        let mut decoded_to = 0;
        for &offset in offsets {
            if offset < decoded_to {
                continue;
            }
            // The whole run, measured once, and every later name in it skipped: cutting
            // a window of at most the cap around each name walked and decoded the same
            // bytes again for every name in a longer run. No run reaches back past the
            // last one's end, a byte no run holds.
            let start = offset
                - data[decoded_to..offset]
                    .iter()
                    .rev()
                    .take_while(|&&b| BASE64_BYTE[b as usize])
                    .count();
            let end = offset + base64_run(&data[offset..]);
            encoded_steps(end - start);
            decoded_to = end;
            let min_run = match found {
                EncodedRun::NamingItsExchange => MAX_TOKEN,
                EncodedRun::NearItsExchange(_) => ENCODED_NEAR_MIN,
            };
            if end - start <= min_run || end - start > MAX_ENCODED_FILE {
                continue;
            }
            encoded_steps(end - start);
            let Ok(decoded) = BASE64_ANY_PADDING.decode(&data[start..end]) else {
                continue;
            };
            if is_binary(&decoded) || std::str::from_utf8(&decoded).is_err() {
                continue;
            }
            // Near a name, a run may be one value encoded (`BUNDLE_SHA256: <base64>`),
            // which the values' own decoding reads with its label: only text of more than
            // one line or field is a file.
            let (decoded, mode) = match found {
                EncodedRun::NamingItsExchange => (decoded, DECODED),
                EncodedRun::NearItsExchange(_) if !holds_fields(&decoded) => continue,
                EncodedRun::NearItsExchange(exchange) => {
                    let name = &self.rules.exchanges()[exchange].id;
                    let gap = [b'\n'; DECODED_NEAR_GAP + 1];
                    ([name.as_bytes(), &gap, &decoded].concat(), DECODED_NEAR)
                }
            };
            let line = at.lines.line_of(start);
            let column = start - at.lines.start(line);
            let nested = self.scan_text(
                at.path,
                at.context_path,
                &decoded,
                managed,
                redact_values,
                mode,
            );
            for mut finding in nested {
                finding.line = line + 1;
                finding.column = column + 1;
                for part in &mut finding.parts {
                    part.line = line + 1;
                    part.column = column + 1;
                    part.encoding = Some("base64".to_owned());
                }
                if !finding.title.ends_with(BASE64_TITLE) {
                    finding.title.push_str(BASE64_TITLE);
                }
                out.push(finding);
            }
        }
        out
    }

    /// Removes the candidates whose rule `requires` a partner rule of which no candidate
    /// lies within [`PAIR_WINDOW`] lines. The lines of each rule's candidates are sorted
    /// once, so each check is one binary search per required rule: a pass over all
    /// candidates for each one made a JSON file of 50 000 `"id": "<uuid>"` records under
    /// `cdp/` cost 50 000² steps.
    fn drop_unpartnered(&self, cands: &mut Vec<Cand>) {
        if cands.iter().all(|c| self.requires(c).is_empty()) {
            return;
        }
        let mut spots_of: HashMap<usize, BTreeSet<(Spot, usize)>> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            if let Some(r) = c.rule {
                spots_of.entry(r).or_default().insert((c.spot, i));
            }
        }
        cands.retain(|c| {
            pair_steps(1);
            let requires = self.requires(c);
            requires.is_empty()
                || requires.iter().any(|r| {
                    spots_of.get(r).is_some_and(|spots| {
                        nearest_spot(spots, c.spot, PAIR_WINDOW, PAIR_WINDOW).is_some()
                    })
                })
        });
    }

    fn token_cand(&self, ctx: &Context<'_>, ri: usize, start: usize, token: &[u8]) -> Option<Cand> {
        let rule = &self.rules.rules()[ri];
        let shape = rule.shape.as_ref()?;
        if !shape.is_match(token) || !rule.accepts_token(token) {
            return None;
        }
        let line = ctx.lines.line_of(start);
        let near = if rule.context {
            ctx.distance(rule.exchange, line, start - ctx.lines.start(line))
        } else {
            Some(0)
        };
        // Without a keyword near, only a value labelled as a key or a secret, and long
        // enough not to be a word (`CEPSetupProperty`, sixteen letters, is a Coinbase v2
        // key's shape), may take one from further away; the label is read only then.
        let anywhere = ctx.window.labelled_anywhere
            && token.len() >= LABELLED_MIN_LEN
            && !ctx.kw_lines[rule.exchange].is_empty();
        if near.is_none() && (!anywhere || rule.label == LabelMode::None) {
            return None;
        }
        let line_start = ctx.lines.start(line);
        let from = line_start.max(start.saturating_sub(120));
        let label = self
            .label_re
            .captures(&ctx.data[from..start])
            .and_then(|c| c.get(1))
            .map(|m| m.as_bytes())
            .or_else(|| self.list_label(ctx, line, &ctx.data[line_start..start]));
        // A value labelled as a hash (`sha256:`, `md5 =`, `integrity:`) is a digest, whatever
        // its shape and whatever exchange keyword is near: no rule takes it.
        if label.is_some_and(is_hash_label) {
            return None;
        }
        // An optional or paired label still has to be plausible: `orderId`, `clientOid`,
        // `id`, `order_ids` name records, not keys, unless the name itself says key
        // (`apiKeyId`). Only a rule that requires its label and a partner (a CDP key's
        // `"id"` beside its `"privateKey"`) takes a bare `id`.
        if matches!(
            rule.label,
            LabelMode::Optional | LabelMode::Paired | LabelMode::RoleOrNone
        ) && label.is_some_and(is_record_id_label)
        {
            return None;
        }
        let label_role = if rule.label == LabelMode::None {
            None
        } else {
            label.and_then(label_role)
        };
        let dist = match near {
            Some(dist) => dist,
            None if label_role.is_some_and(|r| matches!(r, Role::Key | Role::Secret))
                && label.is_some_and(|l| label_words(l).len() >= ctx.window.label_words)
                && ctx.in_section(rule.exchange, line) =>
            {
                LABELLED_DISTANCE
            }
            None => return None,
        };
        let fits = |r: Role| {
            r == rule.role || (rule.role == Role::Any && matches!(r, Role::Key | Role::Secret))
        };
        let (role, needs_partner) = match (rule.label, label_role) {
            (LabelMode::None, _) => (rule.role, false),
            (LabelMode::Optional, Some(r)) if fits(r) => (r, false),
            (LabelMode::Optional, _) => (rule.role, false),
            (LabelMode::Required, Some(r)) if fits(r) => (r, false),
            (LabelMode::Required, _) => return None,
            (LabelMode::Paired, Some(r)) if fits(r) => (r, false),
            (LabelMode::Paired, Some(_)) => return None,
            (LabelMode::Paired, None) => (rule.role, true),
            (LabelMode::RoleOrNone, Some(r)) if fits(r) => (r, false),
            (LabelMode::RoleOrNone, Some(_)) => return None,
            (LabelMode::RoleOrNone, None) if label.is_some_and(is_record_label) => return None,
            // A value passed bare to a call (`client.cancel_order('5bd6…')`) is a key only
            // beside its partner, as in `Client('<key>', '<secret>', …)` (found by review:
            // every record id in an exchange's SDK was reported as a key).
            (LabelMode::RoleOrNone, None)
                if label.is_none() && is_call_argument(&ctx.data[line_start..start]) =>
            {
                (rule.role, true)
            }
            (LabelMode::RoleOrNone, None) => (rule.role, false),
        };
        Some(Cand {
            rule: Some(ri),
            exchange: Some(rule.exchange),
            role,
            needs_partner,
            line,
            col: start - ctx.lines.start(line),
            spot: Spot::at(line, start - ctx.lines.start(line)),
            start,
            dist,
            value: String::from_utf8_lossy(token).into_owned(),
            der: None,
            managed: None,
            base64: false,
        })
    }

    /// The name of the list a value stands in alone on its line (`before` is what
    /// precedes it there: blanks, comment marks, an opening quote), as in
    /// `"cancelledOrderIds": [` a few lines up, over the list's earlier elements: the
    /// name says what the value is as a label on its own line would.
    fn list_label<'d>(&self, ctx: &Context<'d>, line: usize, before: &[u8]) -> Option<&'d [u8]> {
        /// How many earlier elements are looked over for the list's opening line.
        const MAX_ELEMENTS: usize = 64;
        let is_mark = |b: &u8| b" \t#/*-\"'`".contains(b);
        if !before.iter().all(is_mark) {
            return None;
        }
        for above in (line.saturating_sub(MAX_ELEMENTS + 1)..line).rev() {
            let text = ctx.lines.text(ctx.data, above);
            let text = text.strip_suffix(b"\r").unwrap_or(text).trim_ascii_end();
            if text.ends_with(b"[") {
                return self
                    .label_re
                    .captures(text)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_bytes());
            }
            // An earlier element: marks, one quoted value, a comma.
            let element = text.strip_suffix(b",").unwrap_or(text);
            let bare = element
                .iter()
                .all(|b| is_mark(b) || b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'));
            if !bare {
                return None;
            }
        }
        None
    }

    /// Finds PEM private keys; returns the byte spans of all decodable blocks, in order.
    fn pem_cands(
        &self,
        ctx: &Context<'_>,
        managed: Option<&ManagedKeys>,
        out: &mut Vec<Cand>,
    ) -> Vec<(usize, usize)> {
        let at = |start| Place {
            start,
            base64: false,
        };
        self.pem_blocks(ctx, ctx.data, at, managed, out)
    }

    /// Finds PEM private keys written base64-encoded, as a Kubernetes secret's `data:`
    /// holds a key file: at each of `starts` (where `LS0tLS1CRUdJTi` begins a token), the
    /// base64 text is decoded and its PEM blocks are found where the text stands. Returns
    /// the byte spans of the encoded texts that held a block.
    fn encoded_pem_cands(
        &self,
        ctx: &Context<'_>,
        starts: &[usize],
        managed: Option<&ManagedKeys>,
        out: &mut Vec<Cand>,
    ) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        // A start inside a text already decoded is one of its lines: decoded with it.
        let mut decoded_to = 0;
        for &start in starts {
            if start < decoded_to {
                continue;
            }
            let (end, decoded) = decode_wrapped_base64_at(ctx.data, start);
            decoded_to = end;
            let Some(decoded) = decoded else {
                continue;
            };
            let at = |_| Place {
                start,
                base64: true,
            };
            if !self.pem_blocks(ctx, &decoded, at, managed, out).is_empty() {
                spans.push((start, end));
            }
        }
        spans
    }

    /// The PEM private keys in `text`, as candidates at the place `at` gives for a block's
    /// offset in `text`; returns the spans of the blocks that decode, in `text`.
    fn pem_blocks(
        &self,
        ctx: &Context<'_>,
        text: &[u8],
        at: impl Fn(usize) -> Place,
        managed: Option<&ManagedKeys>,
        out: &mut Vec<Cand>,
    ) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let headers: Vec<_> = self.pem_re.captures_iter(text).collect();
        for (n, caps) in headers.iter().enumerate() {
            let (Some(whole), Some(label)) = (caps.get(0), caps.get(1)) else {
                continue;
            };
            let label = String::from_utf8_lossy(label.as_bytes()).into_owned();
            let footer = format!("-----END {label}-----");
            // Up to the next header: a file of headers without footers costs its length
            // once, not 16 KiB a header.
            let next_header = headers
                .get(n + 1)
                .and_then(|next| next.get(0))
                .map_or(text.len(), |next| next.start());
            let limit = next_header.min(whole.end() + 16 * 1024);
            pem_steps(limit - whole.end());
            let Some(rel) = memchr::memmem::find(&text[whole.end()..limit], footer.as_bytes())
            else {
                continue;
            };
            let Some(der) = decode_pem_body(&text[whole.end()..whole.end() + rel]) else {
                continue;
            };
            spans.push((whole.start(), whole.end() + rel + footer.len()));
            let Place { start, base64 } = at(whole.start());
            let line = ctx.lines.line_of(start);
            let col = start - ctx.lines.start(line);
            let value = pem_text(&label, &der);
            let mut found = false;
            for &ri in &self.pem_rules {
                let rule = &self.rules.rules()[ri];
                if !rule.accepts_der(&label, &der) {
                    continue;
                }
                let Some(dist) = ctx.distance(rule.exchange, line, col) else {
                    continue;
                };
                found = true;
                out.push(Cand {
                    rule: Some(ri),
                    exchange: Some(rule.exchange),
                    role: Role::Secret,
                    needs_partner: false,
                    line,
                    col,
                    spot: Spot::at(line, col),
                    start,
                    dist,
                    value: value.clone(),
                    der: Some(der.clone()),
                    managed: None,
                    base64,
                });
            }
            if !found {
                if let Some(account) = managed.and_then(|m| m.lookup(&der)) {
                    out.push(Cand {
                        rule: None,
                        exchange: None,
                        role: Role::Secret,
                        needs_partner: false,
                        line,
                        col,
                        spot: Spot::at(line, col),
                        start,
                        dist: usize::MAX,
                        value,
                        der: Some(der),
                        managed: Some(account.to_owned()),
                        base64,
                    });
                }
            }
        }
        spans
    }

    /// The exchanges `text` names by one of their keywords, each once per keyword.
    fn exchanges_named_in<'t>(&'t self, text: &'t [u8]) -> impl Iterator<Item = usize> + 't {
        self.ac
            .find_iter(text)
            .filter_map(move |m| match self.patterns[m.pattern().as_usize()] {
                Pattern::Keyword { exchange, common }
                    if is_keyword_at(text, m.start(), m.end(), common) =>
                {
                    Some(exchange)
                }
                _ => None,
            })
    }

    /// Whether `name` names an exchange by one of its keywords, and none of them is
    /// `exchange`.
    fn names_only_others(&self, name: &[u8], exchange: usize) -> bool {
        let named: Vec<usize> = self.exchanges_named_in(name).collect();
        !named.is_empty() && !named.contains(&exchange)
    }

    /// Passphrases are only looked for next to a key or secret of an exchange that has them.
    fn passphrase_cands(&self, ctx: &Context<'_>, cands: &mut Vec<Cand>) {
        let mut wanted: Vec<(usize, usize)> = Vec::new();
        // Near a value found base64-encoded, a passphrase is decoded too, where it is.
        let mut encoded_near: HashSet<(usize, usize)> = HashSet::new();
        for c in cands.iter() {
            if let Some(ex) = c.exchange {
                if let Some(ri) = self.passphrase_rule[ex] {
                    let lo = c.line.saturating_sub(PAIR_WINDOW);
                    let hi = (c.line + PAIR_WINDOW).min(ctx.lines.count().saturating_sub(1));
                    for l in lo..=hi {
                        wanted.push((l, ri));
                        if c.base64 {
                            encoded_near.insert((l, ri));
                        }
                    }
                }
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        // Where values are already: a passphrase found there is another rule's value.
        let mut taken: HashSet<usize> = cands.iter().map(|c| c.start).collect();
        for (line, ri) in wanted {
            let rule = &self.rules.rules()[ri];
            let text = ctx.lines.text(ctx.data, line);
            let assignments = parameters(text, ctx.dotenv).flat_map(|(at, part)| {
                self.assign_re
                    .captures_iter(part)
                    .map(move |caps| (at, caps))
            });
            for (at, caps) in assignments {
                let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) else {
                    continue;
                };
                if label_role(name.as_bytes()) != Some(Role::Passphrase) {
                    continue;
                }
                // A passphrase whose name says its exchange (`KUCOIN_PASSPHRASE`) is that
                // exchange's only (found by review: an OKX key below it took it, being
                // nearer, and the KuCoin key was reported without one).
                if self.names_only_others(name.as_bytes(), rule.exchange) {
                    continue;
                }
                let written = percent_decoded(value.as_bytes());
                let decoded = encoded_near
                    .contains(&(line, ri))
                    .then(|| decode_printable(&written))
                    .flatten()
                    .filter(|v| is_plausible_passphrase(v));
                if decoded.is_none() && !is_plausible_passphrase(&written) {
                    continue;
                }
                let start = ctx.lines.start(line) + at + value.start();
                pair_steps(1);
                if !taken.insert(start) {
                    continue;
                }
                cands.push(Cand {
                    rule: Some(ri),
                    exchange: Some(rule.exchange),
                    role: Role::Passphrase,
                    needs_partner: true,
                    line,
                    col: at + value.start(),
                    spot: Spot::at(line, at + value.start()),
                    start,
                    dist: 0,
                    value: String::from_utf8_lossy(decoded.as_deref().unwrap_or(&written))
                        .into_owned(),
                    der: None,
                    managed: None,
                    base64: decoded.is_some(),
                });
            }
        }
    }

    /// Pairs candidates into findings, [`MAX_FINDINGS_PER_BUFFER`] at most; `allowed` are
    /// the lines that carry `keygate:allow`, in order.
    fn pair(
        &self,
        path: &str,
        allowed: &[usize],
        mut cands: Vec<Cand>,
        redact_values: bool,
    ) -> Vec<Finding> {
        cands.sort_by_key(|c| (c.exchange, c.line, c.col));
        let mut findings = Vec::new();
        let mut used = vec![false; cands.len()];
        self.assign_any_roles(&mut cands);
        let mut unused = Unused::new(&cands);
        // Active findings count towards the bound, suppressed ones only while so few are
        // kept (found by review: a thousand `keygate:allow`ed values hid a real key after
        // them).
        let mut active = 0;
        for primary_role in [Role::Secret, Role::Key] {
            for i in 0..cands.len() {
                if active >= MAX_FINDINGS_PER_BUFFER {
                    return findings;
                }
                if used[i] || cands[i].role != primary_role {
                    continue;
                }
                used[i] = true;
                unused.take(&cands, i);
                let mut group = vec![i];
                if primary_role == Role::Secret {
                    if let Some(k) = unused.nearest(self, &cands, i, Role::Key) {
                        used[k] = true;
                        unused.take(&cands, k);
                        group.push(k);
                    }
                }
                if let Some(p) = unused.nearest(self, &cands, i, Role::Passphrase) {
                    used[p] = true;
                    unused.take(&cands, p);
                    group.push(p);
                }
                if group.len() == 1 && cands[i].needs_partner && cands[i].managed.is_none() {
                    continue;
                }
                // A value whose required partner went to another set (or lost its value to
                // another exchange) is not reported, unless it is a key keygate manages.
                let unmet = |&m: &usize| {
                    !self.requires(&cands[m]).is_empty()
                        && cands[m].managed.is_none()
                        && !group
                            .iter()
                            .any(|&o| o != m && self.joins(cands[m].rule, cands[o].rule))
                };
                if group.iter().any(unmet) {
                    continue;
                }
                // A published example next to a real value must not hide it: the real parts
                // (with the passphrase) are one finding, the examples another, suppressed.
                let (examples, real): (Vec<usize>, Vec<usize>) = group
                    .iter()
                    .partition(|&&j| self.is_documentation_example(&cands[j]));
                // So must a value an ignore file or baseline covers: the values it does not
                // cover (with the passphrase) are one finding, the known ones another.
                if examples.is_empty() || real.iter().all(|&j| cands[j].role == Role::Passphrase) {
                    for g in self.split_known(&cands, group) {
                        let finding = self.finding(path, allowed, &cands, &g, redact_values);
                        keep(&mut findings, &mut active, finding);
                    }
                } else {
                    for g in self.split_known(&cands, real) {
                        let finding = self.finding(path, allowed, &cands, &g, redact_values);
                        keep(&mut findings, &mut active, finding);
                    }
                    let finding = self.finding(path, allowed, &cands, &examples, redact_values);
                    keep(&mut findings, &mut active, finding);
                }
            }
        }
        findings
    }

    /// Gives each unlabelled value of a rule that fits key and secret (`Role::Any`) its
    /// role, by position: the first of two such values within the pairing window is the
    /// key, the second the secret; a value alone is the secret beside a key, the key beside
    /// a secret, else the secret. `cands` are sorted by exchange, line and column. The
    /// values still unassigned and the lines of each exchange's keys and secrets are kept
    /// in ordered sets, so each value costs a few searches, not passes over all candidates.
    fn assign_any_roles(&self, cands: &mut [Cand]) {
        let mut any: BTreeSet<usize> = (0..cands.len())
            .filter(|&i| cands[i].role == Role::Any)
            .collect();
        if any.is_empty() {
            return;
        }
        // The spots of the keys and of the secrets of each exchange.
        type Spots = HashMap<(Option<usize>, Role), BTreeSet<(Spot, usize)>>;
        let mut spots: Spots = HashMap::new();
        let add = |spots: &mut Spots, cands: &[Cand], i: usize| {
            let c = &cands[i];
            let set = spots.entry((c.exchange, c.role)).or_default();
            pair_steps(search_steps(set.len()));
            set.insert((c.spot, i));
        };
        for i in 0..cands.len() {
            if matches!(cands[i].role, Role::Key | Role::Secret) {
                add(&mut spots, cands, i);
            }
        }
        for i in 0..cands.len() {
            if !any.remove(&i) {
                continue;
            }
            let (ex, spot) = (cands[i].exchange, cands[i].spot);
            pair_steps(search_steps(any.len()));
            // Sorted: if the next unassigned value is of another exchange or too far down,
            // so is every later one (on a long line, one on the next line may be nearer
            // than the next on this one: it is left to be a value of its own).
            let next_any = any.range(i + 1..).next().copied().filter(|&j| {
                cands[j].exchange == ex && cands[j].spot.distance(spot) <= PAIR_WINDOW
            });
            let near = |spots: &Spots, role: Role| {
                spots
                    .get(&(ex, role))
                    .is_some_and(|set| nearest_spot(set, spot, PAIR_WINDOW, PAIR_WINDOW).is_some())
            };
            if let Some(j) = next_any {
                any.remove(&j);
                cands[i].role = Role::Key;
                cands[j].role = Role::Secret;
                add(&mut spots, cands, j);
            } else if near(&spots, Role::Key) {
                cands[i].role = Role::Secret;
            } else if near(&spots, Role::Secret) {
                cands[i].role = Role::Key;
            } else {
                cands[i].role = Role::Secret;
            }
            add(&mut spots, cands, i);
        }
    }

    /// The rules one of which must give another part of `c`'s set (see `requires` in the
    /// rule files); empty when `c` counts on its own.
    fn requires(&self, c: &Cand) -> &[usize] {
        c.rule
            .map_or(&[][..], |r| self.rules.rules()[r].requires.as_slice())
    }

    /// True when a value of rule `a` may be in a set with a value of rule `b`: `a` requires
    /// nothing, or `b` is one of the rules it requires.
    fn joins(&self, a: Option<usize>, b: Option<usize>) -> bool {
        let requires = a.map_or(&[][..], |r| self.rules.rules()[r].requires.as_slice());
        requires.is_empty() || b.is_some_and(|r| requires.contains(&r))
    }

    /// True when the value is published in an exchange's documentation: any exchange's,
    /// since a file about several exchanges may have another's keyword nearest to one
    /// exchange's published example. A passphrase is never an example: it is chosen by
    /// the user.
    fn is_documentation_example(&self, c: &Cand) -> bool {
        c.role != Role::Passphrase
            && self
                .rules
                .exchanges()
                .iter()
                .any(|e| e.documentation_examples.contains(&c.value))
    }

    /// The fingerprint of one value: the first 128 bits of SHA-256 over the exchange and
    /// the value (a PEM key's DER bytes). A set of one value has this fingerprint too, as
    /// every set had its main value's before values had their own.
    fn value_fingerprint(&self, c: &Cand) -> String {
        let material: &[u8] = match &c.der {
            Some(der) => der,
            None => c.value.as_bytes(),
        };
        let exchange = c.exchange.map(|e| &self.rules.exchanges()[e]);
        let mut h = Sha256::new();
        h.update(b"keygate-scan/v1\0");
        h.update(exchange.map_or("managed", |e| e.id.as_str()).as_bytes());
        h.update(b"\0");
        h.update(material);
        hex::encode(&h.finalize()[..16])
    }

    /// The fingerprint of a set: its value's, for one value (a passphrase does not
    /// count); for more, of all of their fingerprints in order, so that listing it
    /// covers exactly this set, and no set with a value it does not hold.
    fn set_fingerprint(&self, cands: &[Cand], group: &[usize]) -> String {
        let mut values: Vec<String> = group
            .iter()
            .filter(|&&i| cands[i].role != Role::Passphrase)
            .map(|&i| self.value_fingerprint(&cands[i]))
            .collect();
        if values.len() <= 1 {
            return values
                .pop()
                .unwrap_or_else(|| self.value_fingerprint(&cands[group[0]]));
        }
        values.sort();
        let mut h = Sha256::new();
        h.update(b"keygate-scan/v1 set\0");
        for v in &values {
            h.update(v.as_bytes());
            h.update(b"\0");
        }
        hex::encode(&h.finalize()[..16])
    }

    /// Whether an ignore file (`Some(true)`) or a baseline (`Some(false)`) lists value
    /// `i` of a set whose main value is `main`.
    fn known_value(&self, cands: &[Cand], main: usize, i: usize) -> Option<bool> {
        let fp = self.value_fingerprint(&cands[i]);
        if self.known.ignored.contains(&fp) {
            return Some(true);
        }
        if self.known.baseline.contains(&fp) {
            return Some(false);
        }
        let c = &cands[i];
        let shown = self
            .known
            .legacy
            .get(&self.value_fingerprint(&cands[main]))?;
        let rule = c.rule.map(|r| self.rules.rules()[r].id.as_str());
        let redacted = redact(&c.value);
        shown
            .iter()
            .any(|(role, r, red)| *role == c.role && Some(r.as_str()) == rule && *red == redacted)
            .then_some(false)
    }

    /// Why an ignore file or a baseline suppresses the set `group`, if one does: its own
    /// fingerprint is listed, or every value's in it but the passphrase is. An ignore file
    /// is named when it lists the set or every value; otherwise the baseline.
    fn known_suppression(&self, cands: &[Cand], group: &[usize]) -> Option<Suppression> {
        if self.known.is_empty() {
            return None;
        }
        let set = self.set_fingerprint(cands, group);
        if self.known.ignored.contains(&set) {
            return Some(Suppression::IgnoreFile);
        }
        if self.known.baseline.contains(&set) {
            return Some(Suppression::Baseline);
        }
        let mut all_ignored = true;
        for &i in group.iter().filter(|&&i| cands[i].role != Role::Passphrase) {
            all_ignored &= self.known_value(cands, group[0], i)?;
        }
        Some(if all_ignored {
            Suppression::IgnoreFile
        } else {
            Suppression::Baseline
        })
    }

    /// `group` cut in two when an ignore file or a baseline lists some of its values but
    /// not all (nor the set): the values it does not list, with the passphrase, then the
    /// ones it does. A set with a managed key or a documentation example is left whole.
    fn split_known(&self, cands: &[Cand], group: Vec<usize>) -> Vec<Vec<usize>> {
        let whole = self.known.is_empty()
            || group.iter().any(|&i| cands[i].managed.is_some())
            || group
                .iter()
                .any(|&i| self.is_documentation_example(&cands[i]))
            || self.known_suppression(cands, &group).is_some();
        if whole {
            return vec![group];
        }
        let (known, unknown): (Vec<usize>, Vec<usize>) = group.iter().partition(|&&i| {
            cands[i].role != Role::Passphrase && self.known_value(cands, group[0], i).is_some()
        });
        if known.is_empty() {
            return vec![group];
        }
        vec![unknown, known]
    }

    fn finding(
        &self,
        path: &str,
        allowed: &[usize],
        cands: &[Cand],
        group: &[usize],
        redact_values: bool,
    ) -> Finding {
        let primary = &cands[group[0]];
        let rules = self.rules;
        let exchange = primary.exchange.map(|e| &rules.exchanges()[e]);
        let managed = group.iter().find_map(|&i| cands[i].managed.clone());
        let mut parts: Vec<Part> = group
            .iter()
            .map(|&i| {
                let c = &cands[i];
                Part {
                    role: c.role,
                    rule: c.rule.map_or_else(
                        || "keygate.managed".to_owned(),
                        |r| rules.rules()[r].id.clone(),
                    ),
                    line: c.line + 1,
                    column: c.col + 1,
                    redacted: if c.role == Role::Passphrase {
                        "****".to_owned()
                    } else {
                        redact(&c.value)
                    },
                    value: (!redact_values).then(|| c.value.clone()),
                    encoding: c.base64.then(|| "base64".to_owned()),
                    offset: None,
                    fingerprint: (c.role != Role::Passphrase).then(|| self.value_fingerprint(c)),
                }
            })
            .collect();
        parts.sort_by_key(|p| (p.line, p.column));
        let roles: Vec<&str> = [Role::Key, Role::Secret, Role::Passphrase]
            .iter()
            .filter(|r| group.iter().any(|&i| cands[i].role == **r))
            .map(|r| match r {
                Role::Key => "key",
                Role::Secret => "secret",
                _ => "passphrase",
            })
            .collect();
        let title = match (&managed, exchange) {
            (Some(account), _) => format!("key managed by keygate (account {account})"),
            (None, Some(ex)) if group.iter().any(|&i| cands[i].base64) => {
                format!("{} API {} (base64-encoded)", ex.display, roles.join(" + "))
            }
            (None, Some(ex)) => format!("{} API {}", ex.display, roles.join(" + ")),
            (None, None) => "secret".to_owned(),
        };
        let severity = if managed.is_some() {
            Severity::Critical
        } else if group.iter().any(|&i| cands[i].role == Role::Secret) {
            Severity::High
        } else {
            Severity::Medium
        };
        let fingerprint = self.set_fingerprint(cands, group);
        // A key the vault manages is never suppressed. Otherwise a set is suppressed only
        // when every part is: each value that is not a passphrase is a published example,
        // or every part's own line carries `keygate:allow` (a marker covers its line only),
        // or an ignore file or baseline lists the set or each value that is not a
        // passphrase.
        let suppressed = if managed.is_some() {
            None
        } else if group
            .iter()
            .filter(|&&i| cands[i].role != Role::Passphrase)
            .all(|&i| self.is_documentation_example(&cands[i]))
            && group.iter().any(|&i| cands[i].role != Role::Passphrase)
        {
            Some(Suppression::DocumentationExample)
        } else if group.iter().all(|&i| {
            pair_steps(search_steps(allowed.len()));
            allowed.binary_search(&cands[i].line).is_ok()
        }) {
            Some(Suppression::InlineAllow)
        } else {
            self.known_suppression(cands, group)
        };
        let fix = match (&managed, exchange) {
            (Some(_), _) => "this key is in keygate's vault: rotate it at the exchange now, update the vault, and remove it from this file".to_owned(),
            (None, Some(ex)) => ex.fix.clone(),
            (None, None) => "remove the secret and rotate it".to_owned(),
        };
        Finding {
            rule: parts
                .iter()
                .find(|p| p.line == primary.line + 1 && p.column == primary.col + 1)
                .map_or_else(String::new, |p| p.rule.clone()),
            exchange: exchange.map_or_else(|| "managed".to_owned(), |e| e.id.clone()),
            title,
            severity,
            path: path.to_owned(),
            line: primary.line + 1,
            column: primary.col + 1,
            utf16_column: None,
            offset: None,
            parts,
            fingerprint,
            suppressed,
            managed_account: managed,
            provenance: None,
            fix,
        }
    }
}

/// The candidates not yet in a set, by exchange and role, then by rule, each as ordered
/// `(line, index)` pairs: the nearest partner of a value is found with a few searches per
/// rule, where a pass over all candidates for each value cost n² on a file with many
/// values of one exchange. Candidates without an exchange (managed keys no rule matched)
/// are never partners and are left out.
struct Unused {
    by_role: HashMap<(usize, Role), ByRule>,
}

/// The unused candidates of one exchange and role, per rule: `(spot, index)` in order.
type ByRule = Vec<(Option<usize>, BTreeSet<(Spot, usize)>)>;

impl Unused {
    fn new(cands: &[Cand]) -> Unused {
        let mut by_role: HashMap<_, ByRule> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            let Some(ex) = c.exchange else { continue };
            let rules = by_role.entry((ex, c.role)).or_default();
            let k = match rules.iter().position(|(r, _)| *r == c.rule) {
                Some(k) => k,
                None => {
                    rules.push((c.rule, BTreeSet::new()));
                    rules.len() - 1
                }
            };
            pair_steps(rules.len() + search_steps(rules[k].1.len()));
            rules[k].1.insert((c.spot, i));
        }
        Unused { by_role }
    }

    /// Marks candidate `i` as used.
    fn take(&mut self, cands: &[Cand], i: usize) {
        let c = &cands[i];
        let Some(rules) = c
            .exchange
            .and_then(|ex| self.by_role.get_mut(&(ex, c.role)))
        else {
            return;
        };
        if let Some((_, set)) = rules.iter_mut().find(|(r, _)| *r == c.rule) {
            pair_steps(search_steps(set.len()));
            set.remove(&(c.spot, i));
        }
    }

    /// The unused candidate of `role` and of the exchange of `cands[i]` nearest to it,
    /// within [`PAIR_WINDOW`] lines, that may be in a set with it (see [`Engine::joins`]);
    /// of two as near, the first in `cands`' order (exchange, line, column).
    fn nearest(&self, engine: &Engine, cands: &[Cand], i: usize, role: Role) -> Option<usize> {
        let c = &cands[i];
        let rules = self.by_role.get(&(c.exchange?, role))?;
        let mut best: Option<(usize, usize)> = None;
        for (rule, set) in rules {
            if !engine.joins(*rule, c.rule) || !engine.joins(c.rule, *rule) {
                continue;
            }
            if let Some(found) = nearest_spot(set, c.spot, PAIR_WINDOW, PAIR_WINDOW) {
                if best.is_none_or(|b| found < b) {
                    best = Some(found);
                }
            }
        }
        best.map(|(_, j)| j)
    }
}

#[cfg(test)]
thread_local! {
    /// Steps of the searches that pair candidates and make findings of them (the partner
    /// check, role assignment, the nearest partner, the `keygate:allow` lookup), counted
    /// in unit tests only: they check that this work grows like n log n with the number
    /// of candidates n, not like n² (or like n times the length of a line).
    static PAIR_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps of pairing work; nothing outside unit tests.
#[inline]
fn pair_steps(n: usize) {
    #[cfg(test)]
    PAIR_STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

thread_local! {
    /// Bytes of base64 decoded and searched for PEM footers, counted in unit tests only:
    /// they check that this work grows with the length of the file, whatever it holds.
    static PEM_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes of PEM work; nothing outside unit tests.
#[inline]
fn pem_steps(n: usize) {
    #[cfg(test)]
    PEM_STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

#[cfg(test)]
thread_local! {
    /// Bytes of base64 walked over and decoded in search of text written base64-encoded
    /// as a whole, counted in unit tests only: they check that this work grows with the
    /// length of the file, however many exchange names are encoded in it.
    static ENCODED_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes of work on text written base64-encoded; nothing outside unit tests.
#[inline]
fn encoded_steps(n: usize) {
    #[cfg(test)]
    ENCODED_STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

/// The steps of a binary search among `len` items: ⌊log₂ len⌋ + 1.
fn search_steps(len: usize) -> usize {
    (usize::BITS - len.leading_zeros()) as usize
}

struct Context<'a> {
    data: &'a [u8],
    /// Whether the buffer is a file of environment variables (see [`is_dotenv_path`]).
    dotenv: bool,
    lines: &'a LineIndex,
    /// The lines of each exchange's keywords, in order.
    kw_lines: &'a [Vec<usize>],
    /// Their [spots](Spot), in [`KEYWORD_SPOT_BYTES`].
    kw_spots: &'a [BTreeSet<(Spot, usize)>],
    path_hit: &'a [bool],
    window: Window,
    blocks: OnceCell<Blocks>,
}

impl Context<'_> {
    /// Whether a keyword of `ex` is anywhere in the TOML/INI section of `line` (the whole
    /// buffer when it has none): a value under `[database]` is not the `[exchanges.kraken]`
    /// section's.
    fn in_section(&self, ex: usize, line: usize) -> bool {
        let section = self
            .blocks
            .get_or_init(|| Blocks::new(self.data, self.lines))
            .section(line);
        let reach = line.saturating_sub(LABELLED_REACH)..line.saturating_add(LABELLED_REACH + 1);
        let lines = section.start.max(reach.start)..section.end.min(reach.end);
        let kl = &self.kw_lines[ex];
        let first = kl.partition_point(|&l| l < lines.start);
        kl.get(first).is_some_and(|&l| lines.contains(&l))
    }

    /// Line distance to the nearest keyword of `ex` from byte `col` of `line`, if any is
    /// close enough. On one line, keywords count by their spots of
    /// [`KEYWORD_SPOT_BYTES`] ([`Spot::of_keyword_reach`]): a minified
    /// bundle's one line does not put every keyword in it near every value (found by
    /// review: a broker id in ccxt's browser build took the name of an exchange 600 KB
    /// away).
    fn distance(&self, ex: usize, line: usize, col: usize) -> Option<usize> {
        let kl = &self.kw_lines[ex];
        if !kl.is_empty() {
            let near = nearest_spot(
                &self.kw_spots[ex],
                Spot::of_keyword_reach(line, col),
                self.window.before,
                self.window.after,
            );
            if let Some((distance, _)) = near {
                return Some(distance);
            }
            let blocks = self
                .blocks
                .get_or_init(|| Blocks::new(self.data, self.lines));
            let enclosing = blocks.ancestors(line);
            if let Some(&a) = enclosing.iter().find(|a| kl.binary_search(a).is_ok()) {
                return Some(line - a);
            }
        }
        self.path_hit[ex].then_some(PATH_DISTANCE)
    }
}

/// Line starts of a buffer.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub(crate) fn new(data: &[u8]) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', data).map(|i| i + 1));
        LineIndex {
            starts,
            len: data.len(),
        }
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }

    pub(crate) fn start(&self, line: usize) -> usize {
        self.starts[line]
    }

    pub(crate) fn count(&self) -> usize {
        self.starts.len()
    }

    pub(crate) fn text<'a>(&self, data: &'a [u8], line: usize) -> &'a [u8] {
        let end = self.starts.get(line + 1).map_or(self.len, |&s| s - 1);
        &data[self.starts[line]..end.max(self.starts[line])]
    }
}

/// The block structure of a buffer, for [`Blocks::ancestors`]: built once per buffer, the
/// first time a value needs the lines enclosing it, in one pass over the lines.
struct Blocks {
    /// For each line, the nearest line above with less indentation (blank lines skipped),
    /// or [`NO_LINE`]: the line that opens its block.
    parent: Vec<usize>,
    /// For each line, the nearest TOML/INI section header at or above it, or [`NO_LINE`].
    header: Vec<usize>,
    /// For each line, the nearest TOML/INI section header below it, or [`NO_LINE`].
    next_header: Vec<usize>,
}

/// No line.
const NO_LINE: usize = usize::MAX;

impl Blocks {
    fn new(data: &[u8], lines: &LineIndex) -> Blocks {
        let indent = |t: &[u8]| t.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
        let count = lines.count();
        let mut parent = vec![NO_LINE; count];
        let mut header = vec![NO_LINE; count];
        // The lines that may still open a block, with their indentation, deepest last.
        let mut open: Vec<(usize, usize)> = Vec::new();
        let mut last_header = NO_LINE;
        for line in 0..count {
            let t = lines.text(data, line);
            if is_section_header(t) {
                last_header = line;
            }
            header[line] = last_header;
            if t.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ind = indent(t);
            while open.last().is_some_and(|&(i, _)| i >= ind) {
                open.pop();
            }
            parent[line] = open.last().map_or(NO_LINE, |&(_, l)| l);
            open.push((ind, line));
        }
        let mut next_header = vec![NO_LINE; count];
        let mut below = NO_LINE;
        for line in (0..count).rev() {
            next_header[line] = below;
            if header[line] == line {
                below = line;
            }
        }
        Blocks {
            parent,
            header,
            next_header,
        }
    }

    /// The lines of the TOML/INI section `line` is in, from its header (or the first
    /// line) to the line before the next header (or the last line): the whole buffer
    /// when it has none.
    fn section(&self, line: usize) -> std::ops::Range<usize> {
        let start = match self.header[line] {
            NO_LINE => 0,
            header => header,
        };
        start..self.next_header[line]
    }

    /// The lines that open the blocks enclosing `line`, nearest first, within
    /// [`ANCESTOR_SCAN`] lines above it: by indentation (YAML, JSON, indented TOML), then
    /// the nearest TOML/INI section header above it (`[exchanges.kraken]`, `[[accounts]]`
    /// at column 0), which encloses every line up to the next header although nothing in
    /// the section is indented. As many steps as there are blocks, however far apart.
    fn ancestors(&self, line: usize) -> Vec<usize> {
        let stop = line.saturating_sub(ANCESTOR_SCAN);
        let mut out = Vec::new();
        let mut at = self.parent[line];
        while at != NO_LINE && at >= stop {
            out.push(at);
            at = self.parent[at];
        }
        // The nearest header is the section's own: a later header would have ended it. Any
        // indentation ancestor found above lies below that header (a header is a column-0
        // line, where the chain ends), so the order stays nearest first.
        if let Some(h) = line
            .checked_sub(1)
            .map(|above| self.header[above])
            .filter(|&h| h != NO_LINE && h >= stop)
        {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }
}

/// Keywords need a non-letter on each side, or a camelCase transition (`myBinanceKey`).
fn is_keyword_at(data: &[u8], start: usize, end: usize, common: bool) -> bool {
    keyword_boundary(data, start, end) && !(common && is_compound_tail(data, start))
}

/// Whether the word at `start` ends a compound name (`quality-gate`, `feature_gate`,
/// `featureGate`): joined by `-` or `_` to a letter or digit before it, or a capital after
/// a lower-case letter. A common word so placed names something else (found by review: a
/// CI job `quality-gate:` made a Datadog key three lines down a Gate key); `ccxt.gate`
/// and `gate_api_key` still name the exchange.
fn is_compound_tail(data: &[u8], start: usize) -> bool {
    let before = |n: usize| start.checked_sub(n).map(|i| data[i]);
    match (before(2), before(1)) {
        (Some(joined), Some(b'-' | b'_')) => joined.is_ascii_alphanumeric(),
        (_, Some(lower)) => lower.is_ascii_lowercase() && data[start].is_ascii_uppercase(),
        _ => false,
    }
}

fn keyword_boundary(data: &[u8], start: usize, end: usize) -> bool {
    let first = data[start];
    let last = data[end - 1];
    let before_ok = match start.checked_sub(1).map(|i| data[i]) {
        Some(b) if b.is_ascii_alphabetic() && first.is_ascii_alphabetic() => {
            b.is_ascii_lowercase() && first.is_ascii_uppercase()
        }
        _ => true,
    };
    let after_ok = match data.get(end) {
        Some(&a) if a.is_ascii_alphabetic() && last.is_ascii_alphabetic() => {
            a.is_ascii_uppercase() && last.is_ascii_lowercase()
        }
        _ => true,
    };
    before_ok && after_ok
}

/// True when a non-ASCII cased letter (`é`, `Ä`, `ß`, `ж`) directly precedes or follows the
/// token, so that it is only part of a word whose other letters lie outside every rule's
/// alphabet. Letters of scripts without case (CJK, kana, Hangul, Thai, Arabic) do not
/// count: those scripts are written without spaces, and a key is often glued to them
/// (`密钥是…`). Cheap: only a token next to a byte above 0x7f is decoded.
fn is_glued_to_letter(data: &[u8], start: usize, end: usize) -> bool {
    let cased = |c: char| !c.is_ascii() && (c.is_lowercase() || c.is_uppercase());
    let after = data
        .get(end)
        .filter(|b| !b.is_ascii())
        .and_then(|_| first_char(&data[end..data.len().min(end + 4)]));
    let before = start
        .checked_sub(1)
        .filter(|&i| !data[i].is_ascii())
        .and_then(|_| last_char(&data[start.saturating_sub(4)..start]));
    after.is_some_and(cased) || before.is_some_and(cased)
}

/// The first UTF-8 character of `bytes`, if they start with a valid one.
fn first_char(bytes: &[u8]) -> Option<char> {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
    };
    valid.chars().next()
}

/// The last UTF-8 character of `bytes`, if they end with a valid one.
fn last_char(bytes: &[u8]) -> Option<char> {
    (1..=bytes.len()).find_map(|k| {
        std::str::from_utf8(&bytes[bytes.len() - k..])
            .ok()
            .and_then(|s| s.chars().next_back())
    })
}

/// A TOML table or INI section header: exactly `[name]` or `[[name]]` at column 0 (a
/// trailing `\r` or blanks allowed), `name` made of the characters of dotted, quoted keys.
fn is_section_header(line: &[u8]) -> bool {
    let t = line.trim_ascii_end();
    let inner = match t {
        [b'[', b'[', inner @ .., b']', b']'] => inner,
        [b'[', inner @ .., b']'] => inner,
        _ => return false,
    };
    inner.first().is_some_and(|b| !b.is_ascii_whitespace())
        && inner.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'"' | b'\'' | b' ')
        })
}

/// The words of a field name: split at `_`, `-`, `.` and camelCase changes, lowercased
/// (`fileSha256` → `file`, `sha256`).
fn label_words(name: &[u8]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut prev_lower = false;
    for &b in name {
        if !b.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if b.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        cur.push(b.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// True when a field name labels a digest: `md5`, `sha1`, `sha256sum`, `checksum`,
/// `commit_hash`, `digest`, `integrity`, `etag`, `commit`, and a signature (`API-Sign`,
/// `signature`), a MAC as long as some secrets.
fn is_hash_label(name: &[u8]) -> bool {
    label_words(name).iter().any(|w| {
        let w = w
            .strip_suffix(b"sums")
            .or_else(|| w.strip_suffix(b"sum"))
            .unwrap_or(w);
        let sha = w
            .strip_prefix(b"sha")
            .is_some_and(|rest| rest.iter().all(u8::is_ascii_digit));
        sha || matches!(
            w,
            b"md5"
                | b"check"
                | b"hash"
                | b"digest"
                | b"integrity"
                | b"commit"
                | b"etag"
                | b"sign"
                | b"signature"
        )
    })
}

/// Whether a value that `before` (its line up to it) precedes is passed to a call as
/// the first argument or one after it, bare or in a list: `f(`, `f('`, `f(x, '`, `f(['`.
fn is_call_argument(before: &[u8]) -> bool {
    let before = before.trim_ascii_end();
    let before = before
        .strip_suffix(b"'")
        .or_else(|| before.strip_suffix(b"\""))
        .unwrap_or(before)
        .trim_ascii_end();
    let before = before.strip_suffix(b"[").unwrap_or(before).trim_ascii_end();
    before.ends_with(b"(") || (before.ends_with(b",") && before.contains(&b'('))
}

/// True when a field name names a record or a field of one (`orderNo`, `bizNo`, `memo`,
/// `loanRepayDetailNo`), as opposed to a name that says nothing of what its value is
/// (`kucoin`, `creds`).
fn is_record_label(name: &[u8]) -> bool {
    const RECORD_WORDS: &[&[u8]] = &[
        b"no",
        b"num",
        b"number",
        b"memo",
        b"order",
        b"orders",
        b"trade",
        b"trades",
        b"biz",
        b"ref",
        b"tx",
        b"txid",
        b"loan",
        b"detail",
        b"transfer",
        b"deposit",
        b"withdrawal",
        b"user",
        b"uid",
        b"tag",
        b"remark",
    ];
    is_record_id_label(name)
        || label_words(name)
            .iter()
            .any(|w| RECORD_WORDS.contains(&w.as_slice()))
}

/// True when a field name identifies a record (`orderId`, `clientOid`, `trade_id`, `id`)
/// rather than a key: it ends in `id`/`oid` and does not name a key (`apiKeyId`,
/// `access_id`, `api_id` do).
fn is_record_id_label(name: &[u8]) -> bool {
    let n = name.to_ascii_lowercase();
    let has = |w: &[u8]| memchr::memmem::find(&n, w).is_some();
    let names_key =
        has(b"key") || has(b"access") || n.ends_with(b"api_id") || n.ends_with(b"apiid");
    (n.ends_with(b"id") || n.ends_with(b"ids")) && !names_key
}

/// The role a field name announces: `api_secret` → secret, `passphrase` → passphrase.
fn label_role(name: &[u8]) -> Option<Role> {
    let n = name.to_ascii_lowercase();
    let has = |w: &[u8]| memchr::memmem::find(&n, w).is_some();
    if has(b"secret") || has(b"private") || has(b"priv_") || has(b"privkey") {
        Some(Role::Secret)
    } else if has(b"pass") || n == b"pwd" {
        Some(Role::Passphrase)
    } else if has(b"key")
        || n == b"id"
        || n.ends_with(b"api_id")
        || n.ends_with(b"apiid")
        || has(b"access")
    {
        Some(Role::Key)
    } else {
        None
    }
}

/// The parameters of a query string or form body on a line (`key=…&secret=…&passphrase=…`),
/// each with its offset: the line is cut before each `&` or `?` that a parameter's name
/// and `=` follow, so that a value ends where the next parameter begins, and a query's
/// first parameter is one of its own. A line without such an `&` is one part (a
/// passphrase `a&b` in a `.env` file stays whole). A line of a dotenv
/// file (`dotenv`) that assigns a variable is cut only where its value is a query or a
/// form body (see [`dotenv_parameters_start`]): `KUCOIN_PASSPHRASE=ab&name=cd` gives the
/// variable the rest of its line, as dotenv loaders do.
fn parameters(line: &[u8], dotenv: bool) -> impl Iterator<Item = (usize, &[u8])> {
    let from = if dotenv {
        dotenv_parameters_start(line)
    } else {
        0
    };
    // A query's first parameter follows its `?`, the others an `&`.
    let mut cuts: Vec<usize> = memchr::memchr2_iter(b'&', b'?', line)
        .filter(|&sep| sep >= from)
        .filter(|&sep| {
            let name = line[sep + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                .count();
            name > 0 && line.get(sep + 1 + name) == Some(&b'=')
        })
        .collect();
    cuts.push(line.len());
    let mut from = 0;
    cuts.into_iter().map(move |cut| {
        let part = (from, &line[from..cut]);
        from = cut;
        part
    })
}

/// Whether `path` names a file of environment variables, whose lines give a variable the
/// rest of the line: a dotenv file (`.env`, `.env.local`, `prod.env`: its name is `.env`,
/// begins with `.env.` or ends with `.env`), a Compose file (`docker-compose.yml`,
/// `compose.prod.yaml`: its `environment:` lists) or a Dockerfile (its `ENV` lines).
fn is_dotenv_path(path: &str) -> bool {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let compose = (name.starts_with("docker-compose") || name.starts_with("compose"))
        && (name.ends_with(".yml") || name.ends_with(".yaml"));
    name.ends_with(".env")
        || name.starts_with(".env.")
        || compose
        || name == "Dockerfile"
        || name.starts_with("Dockerfile.")
        || name.ends_with(".dockerfile")
}

/// Where the parameters of a query string or form body may begin on a line of a dotenv
/// file. A line that assigns a variable (`NAME=value`, `export NAME="value"`) gives it the
/// rest of the line, `&` included, so its `&`s separate parameters only where its value is
/// a URL with a query (after the `?`: `KUCOIN_URL=https://host/path?key=…&passphrase=…`)
/// or a form body (from its start: `BODY=key=…&passphrase=…`), and never in a variable
/// named for a passphrase; elsewhere, from its end.
/// Any other line is read as in any file, from its start.
fn dotenv_parameters_start(line: &[u8]) -> usize {
    let is_name = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let indent = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let mut at = indent;
    // A Compose list item (`- NAME=value`, quoted or not) or a Dockerfile's `ENV`.
    if let Some(rest) = line[at..].strip_prefix(b"- ") {
        at = line.len() - rest.len();
        at += line[at..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'"' | b'\''))
            .count();
    }
    for word in [&b"export"[..], b"ENV"] {
        if let Some(rest) = line[at..].strip_prefix(word) {
            let blanks = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            if blanks > 0 {
                at += word.len() + blanks;
            }
        }
    }
    let name = line[at..].iter().take_while(|b| is_name(b)).count();
    if name == 0 || line[at].is_ascii_digit() {
        return 0;
    }
    // A passphrase's variable holds the passphrase, `&` and `=` included: no query.
    if label_role(&line[at..at + name]) == Some(Role::Passphrase) {
        return line.len();
    }
    at += name;
    at += line[at..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    if line.get(at) != Some(&b'=') {
        return 0;
    }
    at += 1;
    at += line[at..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    if matches!(line.get(at), Some(b'"' | b'\'')) {
        at += 1;
    }
    let value = &line[at..];
    let first = value.iter().take_while(|b| is_name(b)).count();
    if first > 0 && value.get(first) == Some(&b'=') {
        return at;
    }
    let is_url = value.starts_with(b"/") || memchr::memmem::find(value, b"://").is_some();
    match memchr::memchr(b'?', value) {
        Some(query) if is_url => at + query,
        _ => line.len(),
    }
}

/// `v` with `%2B`, `%2F` and `%3D` decoded (see [`percent_escape`]); borrowed when it has
/// none.
fn percent_decoded(v: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', v).is_none() {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match percent_escape(&v[i..]) {
            Some((byte, width)) => {
                out.push(byte);
                i += width;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn is_plausible_passphrase(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    v.len() >= 3
        && !matches!(
            lower.as_slice(),
            b"null" | b"none" | b"true" | b"false" | b"undefined" | b"nil"
        )
        && !matches!(v.first(), Some(b'$' | b'{' | b'<' | b'%' | b'['))
        && !v.contains(&b'(')
        && memchr::memmem::find(&lower, b"your").is_none()
        && memchr::memmem::find(&lower, b"env").is_none()
}

/// The lengths of `n` bytes in base64: padded with `=` to a multiple of 4, and not.
fn base64_lengths(n: usize) -> [usize; 2] {
    [n.div_ceil(3) * 4, (n * 4).div_ceil(3)]
}

/// Standard base64, padded or not.
const BASE64_ANY_PADDING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// What a base64 token decodes to, when that is text a credential could be: printable
/// ASCII without spaces, after one line end (`\n` or `\r\n`) is taken off its end.
/// Padding may be there or not; the URL-safe alphabet is not decoded.
fn decode_printable(token: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = [0u8; MAX_TOKEN];
    let n = BASE64_ANY_PADDING.decode_slice(token, &mut decoded).ok()?;
    let text = decoded[..n].strip_suffix(b"\n").unwrap_or(&decoded[..n]);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    (!text.is_empty() && text.iter().all(u8::is_ascii_graphic)).then(|| text.to_vec())
}

/// Decodes the base64 text that starts at `start` and returns where it ends. The text is
/// a run of base64 characters, continued over line ends where the tools that wrap it
/// break lines (`base64` at 76 characters, `openssl base64` at 64): after a first line of
/// at least 60 characters, a multiple of 4, without padding, each following line holding
/// base64 alone (indentation aside) continues it, as long as the lines before it had the
/// first one's width. Where the text so continued does not decode (a value of that width
/// followed by a line holding one word), its first line alone is decoded.
fn decode_wrapped_base64_at(data: &[u8], start: usize) -> (usize, Option<Vec<u8>>) {
    let run_end = |from: usize| {
        let limit = data.len().min(from + MAX_ENCODED_PEM);
        from + base64_run(&data[from..limit])
    };
    let first_end = run_end(start);
    let width = first_end - start;
    let mut text = data[start..first_end].to_vec();
    let mut end = first_end;
    // Where the text ended, and its length, before its last line was added.
    let mut before_last = (first_end, text.len());
    let mut last_width = width;
    let wraps = width >= 60 && width.is_multiple_of(4) && !data[start..first_end].contains(&b'=');
    while wraps && last_width == width && text.len() < MAX_ENCODED_PEM {
        let mut next = end;
        if data.get(next) == Some(&b'\r') {
            next += 1;
        }
        if data.get(next) != Some(&b'\n') {
            break;
        }
        next += 1;
        while matches!(data.get(next), Some(b' ' | b'\t')) {
            next += 1;
        }
        let next_end = run_end(next);
        let alone = matches!(data.get(next_end), None | Some(b'\r' | b'\n'));
        if next_end == next || next_end - next > width || !alone {
            break;
        }
        before_last = (end, text.len());
        text.extend_from_slice(&data[next..next_end]);
        last_width = next_end - next;
        end = next_end;
    }
    pem_steps(text.len());
    if let Ok(decoded) = BASE64_ANY_PADDING.decode(&text) {
        return (end, Some(decoded));
    }
    // A value of that width followed by a line of base64 alone that is not part of it (a
    // word): the text without that line.
    let (end, len) = before_last;
    if end == first_end {
        return (end, None);
    }
    pem_steps(len);
    (end, BASE64_ANY_PADDING.decode(&text[..len]).ok())
}

/// Decodes the base64 body of a PEM block written raw, in a JSON/YAML string with `\n`
/// escapes (and `/` or `+` escaped, `\/`, `\u002B`), or split over quoted lines, joined
/// or not by `+` (`"…\n" +` in JavaScript, Java, Go, C#).
pub(crate) fn decode_pem_body(body: &[u8]) -> Option<Vec<u8>> {
    let is_quote = |b: &u8| matches!(b, b'"' | b'\'' | b'`');
    let is_blank = |b: &&u8| matches!(b, b' ' | b'\t');
    // The key's base64, a vault secret when `--managed` fingerprints one: wiped.
    let mut clean = zeroize::Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\\' && matches!(body.get(i + 1), Some(b'n' | b'r')) {
            i += 2;
            continue;
        }
        if let Some((byte, width)) = json_escape(&body[i..]) {
            clean.push(byte);
            i += width;
            continue;
        }
        // A `+` beside a quote joins two string literals; base64 has none beside one.
        let joins_literals = b == b'+'
            && (body[..i]
                .iter()
                .rev()
                .find(|b| !is_blank(b))
                .is_some_and(is_quote)
                || body[i + 1..]
                    .iter()
                    .find(|b| !is_blank(b))
                    .is_some_and(is_quote));
        if (b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=') && !joins_literals {
            clean.push(b);
        }
        i += 1;
    }
    if clean.len() < 32 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(&*clean)
        .ok()
}

fn pem_text(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----"));
    s
}

/// True when the first 8 KiB contain a NUL byte: the buffer is scanned as the printable
/// text in it ([`Engine::scan_binary`]).
pub(crate) fn is_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(8192)]).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keyword_boundaries() {
        let ok = |s: &str, k: &str| {
            let i = s.to_ascii_lowercase().find(k).unwrap();
            keyword_boundary(s.as_bytes(), i, i + k.len())
        };
        assert!(ok("GATE_API_KEY", "gate"));
        assert!(ok("gate.io", "gate"));
        assert!(ok("myGateKey", "gate"));
        assert!(!ok("gateway", "gate"));
        assert!(!ok("delegate", "gate"));
        assert!(!ok("keygate", "gate"));
    }

    /// A regression test (a flaky CLI test): a random 64-character value holding `bnc`
    /// between a digit or a case change and another (`7bnc4`, `xBncD`), about one in
    /// 3 300, was a Binance key, the keyword in it its own context, and made the value
    /// beside it one too. A keyword that is a word of its own still counts.
    #[test]
    fn a_keyword_inside_a_random_value_is_no_context() {
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        let scan = |text: &str| engine.scan("keys.json", "keys.json", text.as_bytes(), None, false);
        let (key, secret) = (
            "SmHPq2Lr8dWz0Xy7bnc4TkVwQe3RtYuIoPaSdFgHjKlZxCvBnMqWeRtYu1ANqC",
            "IoBUa7Kd9LmQ2wErTyUiOpAsDfGhJkLzXcVbNm1234567890qWeRtYuIvyuz",
        );
        let key = format!("{key}Ab");
        let secret = format!("{secret}Cdef");
        assert_eq!((key.len(), secret.len()), (64, 64));
        let json = format!("[{{\"api_key\": \"{key}\", \"secret\": \"{secret}\"}}]\n");
        assert!(scan(&json).is_empty(), "{json}");
        let camel = json.replace("7bnc4", "xBncD");
        assert!(scan(&camel).is_empty(), "{camel}");
        let named = format!("# bnc\n{json}");
        assert_eq!(scan(&named).len(), 1, "{named}");
        // An identifier in camel case that names the exchange and has a key's shape
        // (Bybit's keys are 18 letters and digits) still names it.
        let bybit = "const bybitTestnetApiKey = \"Xk3PqR7sT2vW9yZaB4\";\nconst bybitTestnetSecret = \"Qw8ErT5yUi2OpAs6DfGh1JkLz9XcVb3NmQw7Er4T\";\n";
        assert!(!scan(bybit).is_empty(), "{bybit}");
    }

    /// Found by review (ccxt's browser build, one line of 5 MB): pairing counted lines,
    /// so a value at the start of a minified bundle was paired with one megabytes
    /// further on. On a long line, values pair only within [`PAIR_WINDOW`] [spots](Spot)
    /// of each other; on lines of ordinary length, as before, and a long line between
    /// two values counts as one line (found by review of the first version, which
    /// counted its bytes and lost the pair).
    #[test]
    fn values_far_apart_on_one_long_line_are_no_pair() {
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        let scan =
            |text: &str| engine.scan("app.min.js", "app.min.js", text.as_bytes(), None, false);
        let (key, secret) = (
            "NqVwYS81VP7Hb1DX8pPd5khxE3pyIgKpaUnArl63XykWZeiNNCiia3anXn9k3ksu",
            "9mI4ROnl89Sm995ytbxAk7jqevt0MLaMRTvetw0tESulEETldq8b8Vw2zbJYAxyL",
        );
        let code = "function f(a){return a+1};".repeat(4000);
        let parts = |text: &str| {
            let mut parts: Vec<usize> = scan(text).iter().map(|f| f.parts.len()).collect();
            parts.sort_unstable();
            parts
        };
        let near = format!("{code}const binance={{apiKey:\"{key}\",secret:\"{secret}\"}};{code}");
        assert_eq!(parts(&near), [2]);
        let far = format!(
            "const binance={{apiKey:\"{key}\"}};{code}const binanceConfig={{secret:\"{secret}\"}};"
        );
        assert_eq!(parts(&far), [1, 1]);
        // The same values ten short lines apart still pair, across a long line too.
        let lines = format!(
            "const binance = {{\n  apiKey: \"{key}\",\n{}  secret: \"{secret}\",\n}};\n",
            "  // a comment\n".repeat(8)
        );
        assert_eq!(parts(&lines), [2]);
        let long_before = format!("{code}\n{lines}");
        assert_eq!(parts(&long_before), [2]);
        let long_between = lines.replacen("  // a comment", &format!("  // {code}"), 1);
        assert_eq!(parts(&long_between), [2]);
        // A long line between the exchange's name and a value is one line too.
        let named_above = format!(
            "exchange: binance\npairs: [{}]\nkey: {key}\nsecret: {secret}\n",
            "BTCUSDT, ".repeat(1000)
        );
        assert_eq!(parts(&named_above), [2]);
    }

    /// Found by review (ccxt's browser build): a keyword anywhere on a minified bundle's
    /// one line was near every value on it, so a broker id took the name of an exchange
    /// 600 KB away. Keywords count as near by the lines pairing counts.
    #[test]
    fn a_keyword_far_away_on_one_long_line_is_no_context() {
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        let scan =
            |text: &str| engine.scan("app.min.js", "app.min.js", text.as_bytes(), None, false);
        let secret = "9mI4ROnl89Sm995ytbxAk7jqevt0MLaMRTvetw0tESulEETldq8b8Vw2zbJYAxyL";
        let code = "function f(a){return a+1};".repeat(4000);
        let near = format!("{code}const binance={{secret:\"{secret}\"}};{code}");
        assert_eq!(scan(&near).len(), 1, "near");
        let far = format!("const binance=1;{code}{code}const other={{secret:\"{secret}\"}};");
        assert!(scan(&far).is_empty(), "far");
        // A cache of market data between the name and the keys of a one-line JSON file
        // is not too far (found by review of a first version, which lost the secret).
        let markets = r#""BTCUSDT":{"precision":{"price":2,"amount":5}},"#.repeat(250);
        let key = "NqVwYS81VP7Hb1DX8pPd5khxE3pyIgKpaUnArl63XykWZeiNNCiia3anXn9k3ksu";
        let config = format!(
            r#"{{"exchange":"binance","markets":{{{markets}}},"apiKey":"{key}","secret":"{secret}"}}"#
        );
        let found = scan(&config);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].parts.len(), 2, "{found:#?}");
        // On lines of ordinary length, as before: six lines above.
        let lines = format!(
            "// binance\n{}const s = {{secret: \"{secret}\"}};\n",
            "//\n".repeat(5)
        );
        assert_eq!(scan(&lines).len(), 1, "lines");
    }

    /// Found by review: a passphrase went to the nearest key of any exchange that has
    /// passphrases, so `KUCOIN_PASSPHRASE` went to the OKX key below it, and the KuCoin
    /// key was reported without one. A passphrase whose name says its exchange is that
    /// exchange's; one whose name says none still goes to the nearest.
    #[test]
    fn a_passphrase_named_for_its_exchange_goes_to_that_exchange() {
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        let env = "KUCOIN_API_KEY=5f3a9c1e7b2d4a6f8e0c1b3d\n\
                   KUCOIN_API_SECRET=3f9e2a71-8c4d-4b6e-9a1f-7d2c5e8b0a43\n\
                   OKX_PASSPHRASE=Okx-Pass-2024\n\
                   KUCOIN_PASSPHRASE=Kucoin-Pass-77\n\
                   OKX_API_KEY=9b1d4e7a-2c5f-4a8e-b3d6-1f0e9c8a7b25\n\
                   OKX_SECRET_KEY=A7F3C9E1B5D2084F6A3C7E9B1D5F2A84\n";
        let passphrase_of = |text: &str, exchange: &str| {
            let findings = engine.scan(".env", ".env", text.as_bytes(), None, false);
            let finding = findings.iter().find(|f| f.exchange == exchange).unwrap();
            let part = finding.parts.iter().find(|p| p.role == Role::Passphrase);
            part.and_then(|p| p.value.clone())
        };
        assert_eq!(
            passphrase_of(env, "kucoin").as_deref(),
            Some("Kucoin-Pass-77")
        );
        assert_eq!(passphrase_of(env, "okx").as_deref(), Some("Okx-Pass-2024"));
        let unnamed = env
            .replace("OKX_PASSPHRASE=Okx-Pass-2024\n", "")
            .replace("KUCOIN_PASSPHRASE", "PASSPHRASE");
        assert_eq!(
            passphrase_of(&unnamed, "okx").as_deref(),
            Some("Kucoin-Pass-77")
        );
    }

    #[test]
    fn labels_name_roles() {
        assert_eq!(label_role(b"BINANCE_API_SECRET"), Some(Role::Secret));
        assert_eq!(label_role(b"secret_key"), Some(Role::Secret));
        assert_eq!(label_role(b"apiKey"), Some(Role::Key));
        assert_eq!(label_role(b"password"), Some(Role::Passphrase));
        assert_eq!(label_role(b"order"), None);
    }

    /// The enclosing blocks of `line` in `text`.
    fn ancestors(text: &[u8], line: usize) -> Vec<usize> {
        Blocks::new(text, &LineIndex::new(text)).ancestors(line)
    }

    #[test]
    fn ancestors_follow_indentation() {
        let text = b"kraken:\n  auth:\n\n    key: x\n";
        assert_eq!(ancestors(text, 3), vec![1, 0]);
    }

    /// The enclosing blocks of `line` found by walking up from it, line by line, as the
    /// scanner did before it built [`Blocks`] (up to [`ANCESTOR_SCAN`] lines for every
    /// value, which made a large nested file slow): what `Blocks` must still find.
    fn walked_ancestors(data: &[u8], lines: &LineIndex, line: usize) -> Vec<usize> {
        let indent = |t: &[u8]| t.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
        let mut out = Vec::new();
        let mut cur = indent(lines.text(data, line));
        let stop = line.saturating_sub(ANCESTOR_SCAN);
        let mut j = line;
        while cur > 0 && j > stop {
            j -= 1;
            let t = lines.text(data, j);
            if t.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ind = indent(t);
            if ind < cur {
                out.push(j);
                cur = ind;
            }
        }
        if let Some(h) = (stop..line)
            .rev()
            .find(|&j| is_section_header(lines.text(data, j)))
        {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// Random nested text (indentation, blank lines, tabs, CRLF, section headers), longer
    /// than [`ANCESTOR_SCAN`] so that the bound is crossed: every non-blank line has the
    /// ancestors the line-by-line walk finds.
    #[test]
    fn blocks_find_what_walking_up_line_by_line_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let mut text = Vec::new();
            for _ in 0..rng.gen_range(1..3 * ANCESTOR_SCAN) {
                match rng.gen_range(0..20) {
                    0 => text.extend_from_slice(b"\n"),
                    1 => text.extend_from_slice(b"  \r\n"),
                    2 => text.extend_from_slice(b"[section.a]\n"),
                    3 => text.extend_from_slice(b"[[list]]\r\n"),
                    _ => {
                        let depth = rng.gen_range(0..6);
                        let pad = if rng.gen_bool(0.1) { b'\t' } else { b' ' };
                        text.extend(std::iter::repeat_n(pad, depth * 2));
                        text.extend_from_slice(b"key: value\n");
                    }
                }
            }
            let lines = LineIndex::new(&text);
            let blocks = Blocks::new(&text, &lines);
            for line in 0..lines.count() {
                if lines.text(&text, line).iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                assert_eq!(
                    blocks.ancestors(line),
                    walked_ancestors(&text, &lines, line),
                    "line {line}"
                );
            }
        }
    }

    /// Regression: TOML/INI sections are not indented, so their header was never an
    /// ancestor of the lines in the section.
    #[test]
    fn toml_section_header_is_an_ancestor_until_the_next_header() {
        let text = b"[a]\nx = 1\n\n[[b.c]]\ny = 2\nz = [\n  3,\n]\n[d]\nw = 4\n";
        assert_eq!(ancestors(text, 4), vec![3]);
        assert_eq!(ancestors(text, 6), vec![5, 3]);
        assert_eq!(ancestors(text, 9), vec![8]);
        assert!(is_section_header(b"[exchanges.kraken]\r"));
        assert!(!is_section_header(b" [a]"));
        assert!(!is_section_header(b"[]"));
        assert!(!is_section_header(b"[a] = 1"));
        assert!(!is_section_header(b"[1, 2]"));
    }

    #[test]
    fn tokens_glued_to_cased_non_ascii_letters() {
        let glued = |s: &str, token: &str| {
            let i = s.find(token).unwrap();
            is_glued_to_letter(s.as_bytes(), i, i + token.len())
        };
        assert!(glued("xÄabc", "abc"));
        assert!(glued("abcß", "abc"));
        assert!(glued("жabc", "abc"));
        assert!(!glued("abc", "abc"));
        assert!(!glued("«abc»", "abc"));
        assert!(!glued("是abc。", "abc"));
        assert!(!glued("\u{a0}abc\u{2019}", "abc"));
    }

    /// Regression: hash labels (`md5:`, `sha256:`) were taken as unlabelled key material.
    #[test]
    fn hash_labels_are_recognised() {
        for l in [
            "md5",
            "sha1",
            "sha256",
            "SHA512",
            "sha3_256",
            "sha256sum",
            "checksum",
            "commit",
            "commit_hash",
            "fileSha256",
            "digest",
            "integrity",
            "etag",
            "ETag",
        ] {
            assert!(is_hash_label(l.as_bytes()), "{l}");
        }
        for l in [
            "shared_secret",
            "secret",
            "api_key",
            "key",
            "sharpe",
            "commission",
        ] {
            assert!(!is_hash_label(l.as_bytes()), "{l}");
        }
    }

    /// Regression: `orderId`/`clientOid` were accepted as key labels by optional rules.
    #[test]
    fn record_id_labels_are_recognised() {
        for l in ["orderId", "clientOid", "trade_id", "id", "ID"] {
            assert!(is_record_id_label(l.as_bytes()), "{l}");
        }
        for l in ["apiKeyId", "key_id", "access_id", "api_id", "secret", "key"] {
            assert!(!is_record_id_label(l.as_bytes()), "{l}");
        }
    }

    /// Random values for the pairing-work tests.
    struct Values(rand::rngs::StdRng);

    impl Values {
        fn new(seed: u64) -> Values {
            Values(rand::SeedableRng::seed_from_u64(seed))
        }

        fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
            use rand::Rng as _;
            (0..n)
                .map(|_| char::from(alphabet[self.0.gen_range(0..alphabet.len())]))
                .collect()
        }

        fn alnum(&mut self, n: usize) -> String {
            self.pick(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                n,
            )
        }

        fn uuid(&mut self) -> String {
            let h = self.pick(b"0123456789abcdef", 32);
            format!(
                "{}-{}-4{}-a{}-{}",
                &h[..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..]
            )
        }

        fn b64(&mut self, bytes: usize) -> String {
            use rand::Rng as _;
            let raw: Vec<u8> = (0..bytes).map(|_| self.0.gen()).collect();
            base64::engine::general_purpose::STANDARD.encode(raw)
        }
    }

    /// Scans `text` as `path`; returns the findings and the pairing steps counted.
    fn scan_counting(path: &str, text: &str) -> (Vec<Finding>, u64) {
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        PAIR_STEPS.with(|s| s.set(0));
        let findings = engine.scan(path, path, text.as_bytes(), None, false);
        (findings, PAIR_STEPS.with(std::cell::Cell::get))
    }

    /// A regression test (from a review): each line starting with `LS0tLS1CRUdJTi`
    /// decoded the lines after it again, up to 24 KiB, and each `-----BEGIN … PRIVATE
    /// KEY-----` searched 16 KiB for its footer: a file of encoded headers without
    /// footers cost its length times thousands. Now each byte is decoded once, and a
    /// footer is looked for up to the next header.
    #[test]
    fn encoded_pem_headers_without_footers_cost_the_length_of_the_file() {
        use base64::Engine as _;
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        let header = b"-----BEGIN RSA PRIVATE KEY-----coinbase12345";
        let line = base64::engine::general_purpose::STANDARD.encode(header);
        assert_eq!(line.len(), 60);
        for text in [
            // Wrapped: one text of many lines.
            format!("coinbase:\n{}", format!("{line}\n").repeat(4000)),
            // Each its own value.
            format!("coinbase:\n{}", format!("  key: {line}\n").repeat(4000)),
            // Raw headers, no footer.
            format!(
                "coinbase\n{}",
                "-----BEGIN EC PRIVATE KEY-----\n".repeat(8000)
            ),
        ] {
            PEM_STEPS.with(|s| s.set(0));
            let findings = engine.scan("values.yaml", "values.yaml", text.as_bytes(), None, false);
            assert!(findings.is_empty());
            let steps = PEM_STEPS.with(std::cell::Cell::get);
            assert!(
                steps <= 2 * text.len() as u64,
                "{steps} for {} bytes",
                text.len()
            );
        }
    }

    /// A regression test (from a review): in a base64 run longer than 1 MiB, each
    /// encoded exchange name got a window of its own, the 1 MiB before it, walked and
    /// decoded again for every name: a 2 MiB `base64` of a trading log naming `binance`
    /// on each line took minutes (8 minutes, debug build). The run is measured once; one that long is not
    /// decoded, and the names in it cost nothing more. The bytes walked and decoded are
    /// counted, not timed.
    #[test]
    fn a_long_base64_run_full_of_exchange_names_costs_its_length_once() {
        use base64::Engine as _;
        let engine = Engine::new(RuleSet::builtin(), Known::default());
        // A name every 500 lines: enough names to show the cost, few enough that the old
        // code failed this test in seconds, not minutes.
        let block = format!(
            "{}2024-01-01 binance BTCUSDT buy 0.1\n",
            "2024-01-01 BTCUSDT sell 0.2\n".repeat(499)
        );
        let log = block.repeat(120);
        let run = base64::engine::general_purpose::STANDARD.encode(&log);
        assert!(run.len() > 2 * MAX_ENCODED_FILE);
        // A Secret made of a small config after the long run is still decoded and found.
        let mut v = Values::new(9);
        let config = format!(
            "{{\n  \"exchange\": {{\n    \"name\": \"binance\",\n    \"key\": \"{}\",\n    \
             \"secret\": \"{}\"\n  }}\n}}\n",
            v.alnum(64),
            v.alnum(64)
        );
        let small = base64::engine::general_purpose::STANDARD.encode(&config);
        let text = format!("data:\n  trades.log: {run}\n  config.json: {small}\n");
        ENCODED_STEPS.with(|s| s.set(0));
        let findings = engine.scan("secret.yaml", "secret.yaml", text.as_bytes(), None, false);
        let steps = ENCODED_STEPS.with(std::cell::Cell::get);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].line, 3, "{findings:#?}");
        assert!(
            steps <= 3 * text.len() as u64,
            "{steps} bytes walked or decoded for {} bytes",
            text.len()
        );
    }

    /// A regression test (from a review): wrapped base64 whose last line is full and is
    /// followed by a word alone on its line did not decode with that word, and then only
    /// its first line was decoded.
    #[test]
    fn wrapped_base64_followed_by_a_word_decodes_without_the_word() {
        let line = "QUFB".repeat(16);
        let text = format!("{line}\n{line}\n{line}\nsummary\n");
        let (end, decoded) = decode_wrapped_base64_at(text.as_bytes(), 0);
        assert_eq!(end, 3 * 65 - 1);
        assert_eq!(decoded, Some(vec![b'A'; 144]));
    }

    /// At most `per_value` binary searches over `n` values for each of them: n log n.
    fn n_log_n(n: usize, per_value: usize) -> u64 {
        (n * per_value * search_steps(n)) as u64
    }

    /// Regression: each candidate whose rule requires a partner (a CDP key id) looked at
    /// every candidate for one, so a JSON file of `"id": "<uuid>"` records under `cdp/`
    /// without any Ed25519 secret cost n² steps (50 000 records: 2.5 billion). The check is
    /// a binary search per candidate now; the steps are counted, not timed (the machine
    /// running the tests may be busy).
    #[test]
    fn many_cdp_record_ids_are_checked_for_a_secret_in_n_log_n_steps() {
        let n = 50_000;
        let mut v = Values::new(7);
        let mut multi = String::from("[\n");
        let mut one = String::from("[");
        for _ in 0..n {
            let id = v.uuid();
            multi.push_str(&format!(
                "  {{\n    \"id\": \"{id}\",\n    \"n\": 1\n  }},\n"
            ));
            one.push_str(&format!("{{\"id\": \"{id}\"}},"));
        }
        // With one secret, at the top: it and the nearest id are one finding; the other ids
        // within its pairing window have it as a partner, but it is taken.
        let with_secret = format!("{{\"privateKey\": \"{}\"}}\n{multi}", v.b64(64));
        for (text, sets) in [(multi, 0), (one, 0), (with_secret, 1)] {
            let (findings, steps) = scan_counting("cdp/records.json", &text);
            assert_eq!(findings.len(), sets, "{findings:#?}");
            assert!(steps <= n_log_n(n, 2), "{steps} steps for {n} ids");
        }
    }

    /// Regression: pairing looked at every candidate for the partners of each value (and
    /// for the role of each unlabelled one, and for a value already where a passphrase
    /// is), so a file with many values of one exchange cost n² steps, on one line or
    /// many: CDP key ids beside one Ed25519 secret, Binance keys without labels, OKX
    /// secrets with passphrases. And each finding searched its values' lines for
    /// `keygate:allow`: n times the length of the line when all are on one line.
    #[test]
    fn many_values_of_one_exchange_are_paired_in_n_log_n_steps() {
        let n = 5_000;
        let mut v = Values::new(8);
        let secret = v.b64(64);
        let ids: String = (0..n)
            .map(|_| format!("{{\"id\": \"{}\"}}, ", v.uuid()))
            .collect();
        let cdp = format!("[{ids}{{\"privateKey\": \"{secret}\"}}]\n");
        let binance: String = (0..n).map(|_| format!("\"{}\", ", v.alnum(64))).collect();
        let binance_lines: String = (0..n)
            .map(|_| format!("BINANCE_API_KEY={}\n", v.alnum(64)))
            .collect();
        let okx: String = (0..n)
            .map(|_| {
                let secret = v.pick(b"0123456789ABCDEF", 32);
                format!("okx_secret={secret} passphrase=Hunter2x\n")
            })
            .collect();
        for (path, text, sets) in [
            ("cdp/keys.json", cdp, 1),
            ("binance/keys.json", binance, n / 2),
            ("binance.env", binance_lines, n),
            ("okx.env", okx, n),
        ] {
            let (findings, steps) = scan_counting(path, &text);
            assert_eq!(findings.len(), sets.min(MAX_FINDINGS_PER_BUFFER), "{path}");
            assert!(
                steps <= n_log_n(n, 16),
                "{path}: {steps} steps for {n} values"
            );
        }
    }
}
