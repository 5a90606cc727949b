//! Integration tests of keygate-scan: rule examples, a generated corpus, git history,
//! staged changes, hooks, suppression, managed keys and output formats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod synth;

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
#[cfg(target_os = "linux")]
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A scanner builder whose warnings are collected instead of printed.
fn warned() -> (
    keygate_scan::ScannerBuilder,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let builder = keygate_scan::Scanner::builder().on_warning(std::sync::Arc::new(move |m| {
        sink.lock().unwrap().push(m.to_owned())
    }));
    (builder, warnings)
}

/// A file name with every character that needs percent-encoding in a URI (space, `%`,
/// `#`, `?`, non-ASCII) and one that git quotes even with `core.quotePath=false` (`"`).
const AWKWARD_NAME: &str = "100% #1? clés \"prod\".env";

/// A file name with control characters a terminal acts on: an OSC title sequence ended
/// by BEL, "erase line" and carriage return (to overwrite what was printed), a line feed
/// (to forge a line), tab, DEL and the C1 CSI (U+009B, an ESC `[` of its own).
const CONTROL_NAME: &str = "ok\x1b]0;pwned\x07\x1b[2K\r\n\t\x7f\u{9b}31m.env";

/// [`CONTROL_NAME`] as the human report shows it.
const CONTROL_NAME_SHOWN: &str = "ok\\x1b]0;pwned\\x07\\x1b[2K\\x0d\\x0a\\x09\\x7f\\u{9b}31m.env";

/// Checks that the human report of `report` holds no control character but its own line
/// ends, and is exactly the report of the same findings with [`CONTROL_NAME`] shown as
/// [`CONTROL_NAME_SHOWN`] in their paths (at the finding and in its provenance); and that
/// JSON and SARIF keep the exact paths.
fn assert_paths_escaped_for_humans(report: &keygate_scan::Report) {
    let human = report.to_human();
    assert!(
        !human.chars().any(|c| c.is_control() && c != '\n'),
        "{human:?}"
    );
    assert!(human.contains(CONTROL_NAME_SHOWN), "{human}");
    let mut shown = report.clone();
    for f in &mut shown.findings {
        f.path = f.path.replace(CONTROL_NAME, CONTROL_NAME_SHOWN);
        if let Some(p) = &mut f.provenance {
            p.path = p.path.replace(CONTROL_NAME, CONTROL_NAME_SHOWN);
        }
    }
    assert_eq!(human, shown.to_human());
    let paths: Vec<String> = report.findings.iter().map(|f| f.path.clone()).collect();
    assert!(paths.iter().all(|p| p.ends_with(CONTROL_NAME)), "{paths:?}");
    let back = keygate_scan::Report::from_json(&report.to_json()).unwrap();
    let back: Vec<String> = back.findings.into_iter().map(|f| f.path).collect();
    assert_eq!(back, paths);
    let relative: Vec<&str> = paths.iter().map(|p| p.trim_start_matches('/')).collect();
    let sarif: Vec<String> = sarif_paths(report);
    let sarif: Vec<&str> = sarif.iter().map(|p| p.trim_start_matches('/')).collect();
    assert_eq!(sarif, relative);
}

/// `text` as UTF-16 with a byte-order mark, little- or big-endian.
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

/// The `artifactLocation.uri` of every SARIF result, percent-decoded, after checking that
/// each is a valid RFC 3986 relative reference: unreserved characters, `/` and `%XX`
/// escapes only, not starting with `//`.
fn sarif_paths(report: &keygate_scan::Report) -> Vec<String> {
    let sarif = report.to_sarif(keygate_scan::RuleSet::builtin());
    let v: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    results
        .iter()
        .map(|r| {
            let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap();
            assert!(!uri.starts_with("//"), "{uri}: a network-path reference");
            let b = uri.as_bytes();
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = b.get(i + 1..i + 3).unwrap_or_default();
                    assert!(
                        hex.len() == 2 && hex.iter().all(u8::is_ascii_hexdigit),
                        "{uri}: bad escape"
                    );
                    let hex = std::str::from_utf8(hex).unwrap();
                    decoded.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    assert!(
                        b[i].is_ascii_alphanumeric() || b"-._~/".contains(&b[i]),
                        "{uri}: {:?} is not encoded",
                        char::from(b[i])
                    );
                    decoded.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(decoded).unwrap()
        })
        .collect()
}

mod rules {
    use keygate_scan::{RuleSet, Scanner};
    use rand::SeedableRng;

    use super::synth::{cred, expand, EXCHANGES};

    /// A regression test (found by review): ccxt's ids of the same exchanges' regional
    /// sites (`ccxt.myokx`, `bybiteu`, `gateeu`...) gave no context, a keyword being a
    /// word of its own, and a bot's keys beside them were not found. Every id ccxt 4.5.90
    /// has that begins with a covered exchange's name is a keyword of that exchange.
    #[test]
    fn every_ccxt_id_of_a_covered_exchange_gives_context() {
        const CCXT_IDS: &[&str] = &[
            "binance",
            "binancecoinm",
            "binanceus",
            "binanceusdm",
            "bitfinex",
            "bybit",
            "bybiteu",
            "bybitid",
            "coinbase",
            "coinbaseexchange",
            "coinbaseinternational",
            "gate",
            "gateeu",
            "kraken",
            "krakenfutures",
            "kucoin",
            "kucoinfutures",
            "myokx",
            "okx",
            "okxus",
        ];
        let scanner = Scanner::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(60);
        for id in CCXT_IDS {
            let exchange = EXCHANGES
                .iter()
                .find(|name| id.contains(*name))
                .expect("a covered exchange");
            let c = cred(exchange, 0, &mut rng);
            let password = c.passphrase.as_deref().unwrap_or("");
            let text = format!(
                "import ccxt\nex = ccxt.{id}({{'apiKey': '{}', 'secret': '{}', 'password': '{password}'}})\n",
                c.key.replace('\n', "\\n"),
                c.secret.replace('\n', "\\n"),
            );
            let found = scanner.scan_bytes("bot.py", text.as_bytes());
            assert!(
                found.iter().any(|f| f.exchange == *exchange),
                "ccxt.{id}: nothing found\n{text}\n{found:#?}"
            );
        }
    }

    #[test]
    fn every_rule_example_is_found_by_its_rule() {
        let scanner = Scanner::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut checked = 0;
        for rule in RuleSet::builtin().rules() {
            for ex in &rule.examples {
                // Each example is expanded several times: random values must always match.
                for _ in 0..20 {
                    let text = expand(ex, &mut rng);
                    let f = scanner.scan_bytes("example.txt", text.as_bytes());
                    assert!(
                        f.iter().any(|f| f.parts.iter().any(|p| p.rule == rule.id)),
                        "{}: example not found: {text}\n{f:#?}",
                        rule.id
                    );
                    checked += 1;
                }
            }
            for ex in &rule.negative_examples {
                for _ in 0..20 {
                    let text = expand(ex, &mut rng);
                    let f = scanner.scan_bytes("example.txt", text.as_bytes());
                    assert!(
                        !f.iter().any(|f| f.parts.iter().any(|p| p.rule == rule.id)),
                        "{}: negative example found: {text}\n{f:#?}",
                        rule.id
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} examples checked");
    }

    #[test]
    fn every_rule_with_a_shape_has_examples() {
        for rule in RuleSet::builtin().rules() {
            if rule.role != keygate_scan::Role::Passphrase {
                assert!(!rule.examples.is_empty(), "{} has no examples", rule.id);
                assert!(
                    !rule.negative_examples.is_empty(),
                    "{} has no negative examples",
                    rule.id
                );
            }
        }
    }

    #[test]
    fn documentation_examples_are_suppressed() {
        let scanner = Scanner::new();
        let cases = [
            ("binance", "binance:\n  api_key: vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A\n  secret: NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j\n"),
            ("binance", "BINANCE_API_SECRET=Fhs4lGae2qAi6VNjbJjebUAwXrIChb7mlf372UOICMwdKaNdNBGKtfdeUff2TTTT\n"),
            ("kraken", "kraken key CJbfPw4tnbf/9en/ZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8+V9I3y secret FRs+gtq09rR7OFtKj9BGhyOGS3u5vtY/EdiIBO9kD8NFtRX7w7LeJDSrX6cq1D8zmQmGkWFjksuhBvKOAWJohQ==\n"),
            ("okx", "OKX secret_key = '22582BD0CFF14C41EDBF1AB98506286D'\n"),
            // Found by review: KuCoin's published sub-account key, in its SDKs' comments.
            ("kucoin", "# kucoin\n{\"apiKey\": \"630325e0e750870001829864\", \"apiSecret\": \"110f31fc-61c5-4baf-a29f-3f19a62bbf5d\", \"passphrase\": \"passphrase\"}\n"),
            ("coinbase", "{\"name\": \"organizations/243873d8-c14e-436d-9cea-10d530cbe201/apiKeys/d29bb143-ad4c-234f-9bd7-c705c16b6d19\"}\n"),
            // Regression (found by review): Kraken's published private key, where another
            // exchange's keyword is nearer, was reported as that exchange's live secret.
            ("coinbase", "# exchanges: kraken, coinbase\ncoinbase_secret = \"FRs+gtq09rR7OFtKj9BGhyOGS3u5vtY/EdiIBO9kD8NFtRX7w7LeJDSrX6cq1D8zmQmGkWFjksuhBvKOAWJohQ==\"\n"),
        ];
        for (exchange, text) in cases {
            let f = scanner.scan_bytes("docs.md", text.as_bytes());
            assert_eq!(f.len(), 1, "{text}: {f:#?}");
            assert_eq!(f[0].exchange, exchange);
            assert_eq!(
                f[0].suppressed,
                Some(keygate_scan::Suppression::DocumentationExample)
            );
        }
    }

    /// Regression: a documentation example in a credential set suppressed the whole set,
    /// so a real secret next to Binance's example key was reported as suppressed (exit 0).
    #[test]
    fn documentation_example_key_does_not_hide_a_real_secret() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let scanner = Scanner::builder().redact(false).build();
        let secret = super::synth::alnum(&mut rng, 64);
        let key = super::synth::alnum(&mut rng, 64);
        let example_key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
        let example_secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let cases = [
            (
                format!("BINANCE_API_KEY={example_key}\nBINANCE_API_SECRET={secret}\n"),
                &secret,
                example_key,
            ),
            (
                format!("BINANCE_API_KEY={key}\nBINANCE_API_SECRET={example_secret}\n"),
                &key,
                example_secret,
            ),
        ];
        for (text, real, example) in cases {
            let f = scanner.scan_bytes(".env", text.as_bytes());
            let active: Vec<_> = f.iter().filter(|f| f.is_active()).collect();
            assert_eq!(active.len(), 1, "{text}\n{f:#?}");
            let values: Vec<_> = active[0].parts.iter().map(|p| p.value.as_deref()).collect();
            assert_eq!(values, [Some(real.as_str())], "{f:#?}");
            let report = keygate_scan::Report {
                findings: f.clone(),
                stats: Default::default(),
            };
            assert_eq!(report.exit_code(), 1);
            // The example itself is still shown, as suppressed.
            assert!(
                f.iter().any(|f| f.suppressed
                    == Some(keygate_scan::Suppression::DocumentationExample)
                    && f.parts.iter().all(|p| p.value.as_deref() == Some(example))),
                "{f:#?}"
            );
        }
    }

    /// Regression: a TOML/INI section header gave no context to its section, because
    /// enclosing blocks were found by indentation only; a Kraken key seven lines below
    /// `[exchanges.kraken]` was missed. The next header ends the section.
    #[test]
    fn toml_section_header_gives_context_to_its_section() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(51);
        let scanner = Scanner::builder().redact(false).build();
        let key = super::synth::b64(&mut rng, 42);
        let secret = super::synth::b64(&mut rng, 64);
        let settings = "account = \"main\"\nenabled = true\nsandbox = false\ntimeout = 30\n\
                        retries = 3\nrate_limit = 10\n";
        let text = format!(
            "[general]\nlog = \"info\"\n\n[exchanges.kraken]\n{settings}\
             key = \"{key}\"\nsecret = \"{secret}\"\n"
        );
        let f = scanner.scan_bytes("config.toml", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        assert_eq!(f[0].title, "Kraken API key + secret");
        let mut values: Vec<_> = f[0].parts.iter().filter_map(|p| p.value.clone()).collect();
        values.sort();
        let mut want = vec![key.clone(), secret.clone()];
        want.sort();
        assert_eq!(values, want);
        // The same values in the next section are not Kraken's.
        let text = format!(
            "[exchanges.kraken]\nenabled = true\n\n[database]\n{settings}\
             key = \"{key}\"\nsecret = \"{secret}\"\n"
        );
        let f = scanner.scan_bytes("config.toml", text.as_bytes());
        assert!(f.is_empty(), "{text}\n{f:#?}");
    }

    /// Found by review: suppressed findings counted towards the thousand, so a file of
    /// a thousand `keygate:allow`ed values hid a real key after them.
    #[test]
    fn suppressed_findings_do_not_hide_a_key_after_a_thousand_of_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(58);
        let mut text: String = (0..1100)
            .map(|_| {
                let key = super::synth::alnum(&mut rng, 64);
                format!("BINANCE_API_KEY={key} # keygate:allow\n")
            })
            .collect();
        text.push_str(&format!(
            "BINANCE_API_KEY={}\n",
            super::synth::alnum(&mut rng, 64)
        ));
        let f = Scanner::new().scan_bytes("fixtures.env", text.as_bytes());
        assert_eq!(f.iter().filter(|f| f.is_active()).count(), 1);
    }

    /// Found by review: with the keyword anywhere in the file, ccxt's sources gave ten
    /// findings: `'key': '<uuid>'` partner ids a thousand lines from a comment naming
    /// okex, and a test's `exchange.secret = '0123…'` 1600 lines below a URL naming
    /// gateio. A far keyword counts for a label of two words or more, within 200 lines.
    #[test]
    fn a_far_keyword_needs_a_label_of_two_words_within_reach() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(59);
        let scanner = Scanner::new();
        let filler = |n: usize| "x = 1\n".repeat(n);
        let uuid = super::synth::uuid(&mut rng);
        let hex = super::synth::hex_lower(&mut rng, 64);
        for text in [
            format!("# okex\n{}partner = {{'key': '{uuid}'}}\n", filler(20)),
            format!("# api.gateio.ws\n{}API_SECRET = '{hex}'\n", filler(300)),
        ] {
            let f = scanner.scan_bytes("exchange.py", text.as_bytes());
            assert!(f.is_empty(), "{f:#?}");
        }
        let f = scanner.scan_bytes(
            "exchange.py",
            format!("# api.gateio.ws\n{}API_SECRET = '{hex}'\n", filler(150)).as_bytes(),
        );
        assert_eq!(f.len(), 1, "{f:#?}");
    }

    /// Found by review: a bot's configuration names its exchange once, at the top, and its
    /// keys further down (`EXCHANGE = "binance"`, settings, then `API_KEY`/`API_SECRET`),
    /// and a notebook names it in another cell; both were missed, the keyword more than
    /// six lines above. A value labelled as a key or a secret takes its exchange's
    /// keyword from anywhere in its section; an unlabelled value does not.
    #[test]
    fn a_labelled_key_takes_its_exchange_from_anywhere_in_its_section() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(53);
        let scanner = Scanner::builder().redact(false).build();
        let key = super::synth::alnum(&mut rng, 64);
        let secret = super::synth::alnum(&mut rng, 64);
        let settings: String = (0..12).map(|n| format!("SETTING_{n} = {n}\n")).collect();
        let config = format!(
            "EXCHANGE = \"binance\"\n{settings}\nAPI_KEY = \"{key}\"\nAPI_SECRET = \"{secret}\"\n"
        );
        let notebook = format!(
            "{{\"cells\": [\n {{\"source\": [\n  \"API_KEY = '{key}'\\n\",\n  \
             \"API_SECRET = '{secret}'\"\n ]}},\n{}\n {{\"source\": [\n  \
             \"ex = ccxt.binance({{'apiKey': API_KEY, 'secret': API_SECRET}})\"\n ]}}\n]}}\n",
            " {\"source\": []},\n".repeat(8)
        );
        for (path, text) in [("config.py", &config), ("analysis.ipynb", &notebook)] {
            let f = scanner.scan_bytes(path, text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            assert_eq!(f[0].exchange, "binance", "{text}\n{f:#?}");
            let mut values: Vec<_> = f[0].parts.iter().filter_map(|p| p.value.clone()).collect();
            values.sort();
            let mut want = vec![key.clone(), secret.clone()];
            want.sort();
            assert_eq!(values, want, "{path}");
        }
        // Unlabelled, or in another TOML section, they are not Binance's.
        let unlabelled = format!("exchange: binance\n{settings}\n{key}\n{secret}\n");
        let other_section = format!(
            "[exchange]\nname = \"binance\"\n\n[database]\n{settings}\
             api_key = \"{key}\"\napi_secret = \"{secret}\"\n"
        );
        for (path, text) in [("notes.txt", &unlabelled), ("config.toml", &other_section)] {
            let f = scanner.scan_bytes(path, text.as_bytes());
            assert!(f.is_empty(), "{text}\n{f:#?}");
        }
    }

    /// Found by review: a file of `binance key: <64 characters>` lines gave a finding per
    /// line, 806 000 of them for 60 MiB, in 1.7 GB; a pull request of a few such files
    /// took a CI runner's memory. One file gives a thousand at most, with a warning.
    #[test]
    fn a_file_full_of_keys_gives_a_thousand_findings_and_a_warning() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(54);
        let lines: String = (0..1500)
            .map(|_| format!("binance key: {}\n", super::synth::alnum(&mut rng, 64)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys.txt"), &lines).unwrap();
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.findings.len(), 1000);
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("keys.txt: 1000 findings or more")),
            "{warnings:?}"
        );
    }

    /// Found by review: a CI job named `quality-gate` made a Datadog key three lines below
    /// a "Gate API key": "gate" is a common word, and as the last word of a compound name
    /// it names something else. As the first (`gate_api_key`, `GATE_API_KEY`, `gate-bot`)
    /// or alone (`ccxt.gate`, `gate:`), it still names the exchange.
    #[test]
    fn gate_ending_a_compound_name_is_not_the_exchange() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(56);
        let scanner = Scanner::new();
        let key = super::synth::hex_lower(&mut rng, 32);
        let secret = super::synth::hex_lower(&mut rng, 64);
        for name in [
            "quality-gate",
            "feature_gate",
            "featureGate",
            "release-gate",
        ] {
            let text = format!("jobs:\n  {name}:\n    env:\n      DD_API_KEY: {key}\n");
            let f = scanner.scan_bytes(".github/workflows/ci.yml", text.as_bytes());
            assert!(f.is_empty(), "{text}\n{f:#?}");
        }
        for (path, text) in [
            (
                "bot.env",
                format!("GATE_API_KEY={key}\nGATE_API_SECRET={secret}\n"),
            ),
            (
                "bot.env",
                format!("gate_api_key={key}\ngate_api_secret={secret}\n"),
            ),
            (
                "bot.py",
                format!("ex = ccxt.gate({{'apiKey': '{key}', 'secret': '{secret}'}})\n"),
            ),
            (
                "deploy/gate-bot.yml",
                format!("api_key: {key}\napi_secret: {secret}\n"),
            ),
        ] {
            let f = scanner.scan_bytes(path, text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            assert_eq!(f[0].exchange, "gate", "{text}");
        }
    }

    /// Regression: values labelled as hashes paired into a credential set: `# release gate`
    /// above `md5: <32 hex>` and `sha256: <64 hex>` was reported as "Gate API key + secret".
    #[test]
    fn hash_labelled_values_are_not_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(52);
        let scanner = Scanner::new();
        let md5 = super::synth::hex_lower(&mut rng, 32);
        let sha = super::synth::hex_lower(&mut rng, 64);
        let text = format!("# release gate\nmd5: {md5}\nsha256: {sha}\n");
        let f = scanner.scan_bytes("release.yml", text.as_bytes());
        assert!(f.is_empty(), "{text}\n{f:#?}");
        // The same values under key labels are still found.
        let text = format!("# release gate\nkey: {md5}\nsecret: {sha}\n");
        let f = scanner.scan_bytes("release.yml", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        assert_eq!(f[0].title, "Gate API key + secret");
    }

    /// Regression: an optional label accepted any field name, so a KuCoin order
    /// (`"orderId"`: 24 hex, `"clientOid"`: a UUID) near "kucoin" was reported as
    /// "KuCoin API key + secret".
    #[test]
    fn record_id_labels_are_not_key_labels() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(53);
        let scanner = Scanner::new();
        let id = super::synth::hex_lower(&mut rng, 24);
        let uuid = super::synth::uuid(&mut rng);
        let text = format!("// kucoin fill\n{{\"orderId\":\"{id}\",\"clientOid\":\"{uuid}\"}}\n");
        let f = scanner.scan_bytes("fills.json", text.as_bytes());
        assert!(f.is_empty(), "{text}\n{f:#?}");
        // A label that names a key still counts, whatever it ends with.
        let text = format!("// kucoin\n{{\"apiKeyId\":\"{id}\",\"secret\":\"{uuid}\"}}\n");
        let f = scanner.scan_bytes("creds.json", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        assert_eq!(f[0].title, "KuCoin API key + secret");
    }
    /// Regression: a key's alphabet was only checked on the token, and tokens are cut at
    /// non-ASCII bytes, so a value such as `Ä` + 43 alphanumerics (or 43 alphanumerics +
    /// `ß`) near "bitfinex" was reported as a Bitfinex key. A value with `_`, `-`, `+` or
    /// `/` among its 43 characters was already rejected by the anchored shape; pinned here.
    #[test]
    fn bitfinex_value_outside_the_alphabet_is_not_a_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(55);
        let scanner = Scanner::new();
        for _ in 0..20 {
            let key = super::synth::alnum(&mut rng, 43);
            let secret = super::synth::alnum(&mut rng, 43);
            let real = format!("BFX_API_KEY={key}\nBFX_API_SECRET={secret}\n");
            let f = scanner.scan_bytes(".env", real.as_bytes());
            assert_eq!(f.len(), 1, "{real}\n{f:#?}");
            assert_eq!(f[0].title, "Bitfinex API key + secret");
            let mut bad = Vec::new();
            for c in ["_", "-", "+", "/", "é", "Ä", "ж"] {
                bad.push(format!("{}{c}{}", &key[..20], &key[21..]));
                bad.push(format!("{c}{}", &key[1..]));
            }
            for c in ["Ä", "é", "ß", "Ω", "ж"] {
                bad.push(format!("{c}{key}"));
                bad.push(format!("{key}{c}"));
            }
            for v in bad {
                for text in [
                    format!("BFX_API_KEY={v}\n"),
                    format!("bitfinex:\n  api_secret: '{v}'\n"),
                    format!("$bfx = new Bitfinex('{v}');\n"),
                ] {
                    let f = scanner.scan_bytes("bfx.txt", text.as_bytes());
                    assert!(f.is_empty(), "{text}\n{f:#?}");
                }
            }
            // Next to letters of a script written without spaces, it is still a key.
            let text = format!("# bitfinex\n密钥是{key}。\n");
            assert_eq!(scanner.scan_bytes("notes.md", text.as_bytes()).len(), 1);
        }
    }

    /// Regression: any UUID labelled `id` near the word "cdp" (in the text or the path) was
    /// reported as a Coinbase CDP key, e.g. the `"id"` of an unrelated JSON record under
    /// `cdp/`. A CDP key id is a finding only together with its Ed25519 secret; real CDP
    /// keys (ECDSA key name + EC private key, Ed25519 id + secret) are still found.
    #[test]
    fn bare_uuid_near_cdp_is_not_a_cdp_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(56);
        let scanner = Scanner::builder().redact(false).build();
        let uuid = super::synth::uuid(&mut rng);
        let record = format!(
            "{{\n  \"id\": \"{uuid}\",\n  \"name\": \"nightly\",\n  \"createdAt\": \"2024-05-01\"\n}}\n"
        );
        for (path, text) in [
            ("cdp/pipeline.json", record.clone()),
            ("pipeline.json", format!("// cdp pipeline\n{record}")),
            ("cdp.env", format!("CDP_API_KEY_ID={uuid}\n")),
            (
                "cdp.yaml",
                format!("cdp:\n  id: {uuid}\n  passphrase: hunter22\n"),
            ),
        ] {
            let f = scanner.scan_bytes(path, text.as_bytes());
            assert!(f.is_empty(), "{path}:\n{text}\n{f:#?}");
        }
        // Ed25519: the id with its 88-character secret, as in `cdp_api_key.json`.
        let secret = super::synth::b64(&mut rng, 64);
        let ed = format!("{{\n  \"id\": \"{uuid}\",\n  \"privateKey\": \"{secret}\"\n}}\n");
        let f = scanner.scan_bytes("cdp/cdp_api_key.json", ed.as_bytes());
        assert_eq!(f.len(), 1, "{ed}\n{f:#?}");
        assert_eq!(f[0].title, "Coinbase API key + secret");
        let values: Vec<_> = f[0].parts.iter().filter_map(|p| p.value.clone()).collect();
        assert_eq!(values, [uuid.as_str(), secret.as_str()]);
        // ECDSA: the key name with its P-256 key.
        let name = format!(
            "organizations/{}/apiKeys/{}",
            super::synth::uuid(&mut rng),
            super::synth::uuid(&mut rng)
        );
        let pem = super::synth::pem_p256(&mut rng).replace('\n', "\\n");
        let ec = format!("{{\n  \"name\": \"{name}\",\n  \"privateKey\": \"{pem}\"\n}}\n");
        let f = scanner.scan_bytes("cdp_api_key.json", ec.as_bytes());
        assert_eq!(f.len(), 1, "{ec}\n{f:#?}");
        assert_eq!(f[0].title, "Coinbase API key + secret");
        assert_eq!(f[0].parts[0].value.as_deref(), Some(name.as_str()));
    }
}

mod corpus {
    use keygate_scan::{Role, Scanner};
    use rand::SeedableRng;

    use super::synth::{cred, decoys, layouts, EXCHANGES};

    /// Every exchange, every key type, every layout: exactly one active finding, of the
    /// right exchange, whose key and secret are the planted ones, and the passphrase too.
    #[test]
    fn planted_credentials_are_found_as_one_set_in_every_layout() {
        let scanner = Scanner::builder().redact(false).build();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut checked = 0;
        for round in 0..6 {
            for ex in EXCHANGES {
                let c = cred(ex, round, &mut rng);
                for (name, text) in layouts(&c) {
                    let f = scanner.scan_bytes(&format!("{ex}-{round}/{name}"), text.as_bytes());
                    let active: Vec<_> = f.iter().filter(|f| f.is_active()).collect();
                    assert_eq!(active.len(), 1, "{ex} in {name}:\n{text}\n{f:#?}");
                    let got = active[0];
                    assert_eq!(got.exchange, *ex, "{name}:\n{text}");
                    let value = |r: Role| {
                        got.parts
                            .iter()
                            .find(|p| p.role == r)
                            .and_then(|p| p.value.clone())
                    };
                    let secret = value(Role::Secret).unwrap_or_default();
                    let norm = |s: &str| {
                        s.chars()
                            .filter(|c| c.is_ascii_alphanumeric())
                            .collect::<String>()
                    };
                    assert!(
                        norm(&secret).contains(
                            &norm(&c.secret)
                                .replace("BEGINECPRIVATEKEY", "")
                                .replace("ENDECPRIVATEKEY", "")
                        ) || norm(&c.secret).contains(&norm(&secret)) && !secret.is_empty(),
                        "{ex} {name}: secret {secret:?} vs planted {:?}",
                        c.secret
                    );
                    assert_eq!(
                        value(Role::Key).as_deref(),
                        Some(c.key.as_str()),
                        "{ex} {name}: key\n{text}\n{got:#?}"
                    );
                    if c.passphrase.is_some() {
                        assert_eq!(
                            value(Role::Passphrase),
                            c.passphrase,
                            "{ex} {name}: passphrase\n{text}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 8 * 10);
    }

    #[test]
    fn decoys_are_not_reported() {
        let scanner = Scanner::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..30 {
            for (name, text) in decoys(&mut rng) {
                let f = scanner.scan_bytes(&name, text.as_bytes());
                assert!(f.is_empty(), "decoy {name} reported:\n{text}\n{f:#?}");
            }
        }
    }

    #[test]
    fn lone_secret_is_still_reported() {
        let scanner = Scanner::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let c = cred("kraken", 0, &mut rng);
        let f = scanner.scan_bytes(
            "x.yaml",
            format!("kraken:\n  private_key: {}\n", c.secret).as_bytes(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].parts.len(), 1);
        assert_eq!(f[0].parts[0].role, Role::Secret);
        assert_eq!(f[0].severity, keygate_scan::Severity::High);
    }

    #[test]
    fn redacted_output_shows_at_most_four_characters_each_side() {
        let scanner = Scanner::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for ex in EXCHANGES {
            let c = cred(ex, 0, &mut rng);
            for (name, text) in layouts(&c) {
                let f = scanner.scan_bytes(&name, text.as_bytes());
                let report = keygate_scan::Report {
                    findings: f,
                    stats: Default::default(),
                };
                for out in [
                    report.to_human(),
                    report.to_json(),
                    report.to_sarif(scanner.rules()),
                ] {
                    for v in [&c.key, &c.secret] {
                        let probe = &v[v.len() / 2 - 4..v.len() / 2 + 4];
                        assert!(
                            !out.contains(probe),
                            "{ex} {name}: output leaks {probe}:\n{out}"
                        );
                    }
                }
            }
        }
    }
}

/// Values as configuration files and serializers write them.
mod written {
    use keygate_scan::Scanner;
    use rand::SeedableRng;

    use super::synth::{alnum, b64};

    fn values(f: &keygate_scan::Finding) -> Vec<String> {
        let mut values: Vec<String> = f.parts.iter().filter_map(|p| p.value.clone()).collect();
        values.sort();
        values
    }

    /// A regression test (from a review): in a JSON or C string, the letter of a `\\n`,
    /// `\\t` or `\\r` escape began the token after it (`"KEY\\nSECRET"` gave `nSECRET`),
    /// so a value right after one was missed: of a Binance pair only the key was found,
    /// of a Kraken pair only the key, and of a Kraken pair with labels nothing.
    #[test]
    fn values_after_newline_and_tab_escapes_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(72);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        let (kkey, ksecret) = (b64(&mut rng, 42), b64(&mut rng, 64));
        let cases = [
            (
                format!("{{\"binance\": \"{key}\\n{secret}\"}}\n"),
                &key,
                &secret,
            ),
            (
                format!("{{\"binance\": \"{key}\\r\\n{secret}\"}}\n"),
                &key,
                &secret,
            ),
            (
                format!("{{\"kraken\": {{\"credentials\": \"{kkey}\\n{ksecret}\"}}}}\n"),
                &kkey,
                &ksecret,
            ),
            (
                format!("{{\"kraken_creds\": \"key:\\t{kkey}\\tsecret:\\t{ksecret}\"}}\n"),
                &kkey,
                &ksecret,
            ),
        ];
        let scanner = Scanner::builder().redact(false).build();
        for (text, key, secret) in cases {
            let f = scanner.scan_bytes("config.json", text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            let mut want = vec![key.clone(), secret.clone()];
            want.sort();
            assert_eq!(values(&f[0]), want, "{text}\n{f:#?}");
        }
    }

    /// A regression test: a default in `${VAR:-value}` (docker-compose, shell) was read
    /// with its `-`, one character too long for any rule.
    #[test]
    fn defaults_of_shell_and_compose_variables_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(71);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        let text = format!(
            "services:\n  bot:\n    environment:\n      \
             BINANCE_API_KEY: ${{BINANCE_API_KEY:-{key}}}\n      \
             BINANCE_API_SECRET: ${{BINANCE_API_SECRET:-{secret}}}\n"
        );
        let scanner = Scanner::builder().redact(false).build();
        let f = scanner.scan_bytes("docker-compose.yml", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        assert_eq!(f[0].title, "Binance API key + secret");
        let mut want = vec![key, secret];
        want.sort();
        assert_eq!(values(&f[0]), want);
    }

    /// A regression test: JSON that escapes `/` (`\/`, PHP's `json_encode`) or `+`
    /// (`\u002B`, .NET's `System.Text.Json`) cut a base64 secret into pieces no rule took.
    #[test]
    fn values_with_escaped_slashes_and_pluses_in_json_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(72);
        let scanner = Scanner::builder().redact(false).build();
        let mut found = 0;
        for _ in 0..8 {
            let (key, secret) = (b64(&mut rng, 42), b64(&mut rng, 64));
            if !secret.contains('/') && !secret.contains('+') {
                continue;
            }
            let escape = |v: &str| v.replace('/', "\\/").replace('+', "\\u002B");
            let text = format!(
                "{{\"kraken\": {{\"apiKey\": \"{}\", \"secret\": \"{}\"}}}}\n",
                escape(&key),
                escape(&secret)
            );
            let f = scanner.scan_bytes("config.json", text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            assert_eq!(f[0].title, "Kraken API key + secret");
            let mut want = vec![key, secret];
            want.sort();
            assert_eq!(values(&f[0]), want);
            found += 1;
        }
        assert!(found > 0, "no secret had a / or a +");
        // One that begins with an escape.
        let key = b64(&mut rng, 42);
        let secret = format!("+{}", &b64(&mut rng, 64)[1..]);
        let text = format!(
            "{{\"kraken\": {{\"apiKey\": \"{key}\", \"secret\": \"{}\"}}}}\n",
            secret.replace('+', "\\u002B").replace('/', "\\/")
        );
        let f = scanner.scan_bytes("config.json", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        let mut want = vec![key, secret];
        want.sort();
        assert_eq!(values(&f[0]), want);
    }

    /// A regression test: a secret in a URL's query string, a form body or a DSN is
    /// percent-encoded (`+`, `/` and `=` as `%2B`, `%2F` and `%3D`), which cut a base64
    /// secret into pieces no rule took. Such a value is read decoded, upper- or lower-case
    /// hex alike: found, shown and fingerprinted as the same value written plainly, and a
    /// passphrase ends where the next parameter begins.
    #[test]
    fn percent_encoded_secrets_in_urls_form_bodies_and_dsns_are_found() {
        use super::synth::{hex_lower, percent_encoded};
        let mut rng = rand::rngs::StdRng::seed_from_u64(74);
        let scanner = Scanner::builder().redact(false).build();
        let mut escaped = [false; 3];
        for round in 0..8 {
            let lower = round % 2 == 1;
            let enc = |v: &str| percent_encoded(v, lower);
            let (key, secret) = (b64(&mut rng, 42), b64(&mut rng, 64));
            let (cb_key, cb_secret) = (hex_lower(&mut rng, 32), b64(&mut rng, 64));
            let passphrase = "Tr4d+3r/x=";
            for (i, c) in ['+', '/', '='].into_iter().enumerate() {
                escaped[i] |= key.contains(c) || secret.contains(c);
            }
            let plain = format!("KRAKEN_API_KEY={key}\nKRAKEN_API_SECRET={secret}\n");
            let plain = scanner.scan_bytes(".env", plain.as_bytes());
            let cases = [
                (
                    "connect.sh",
                    format!(
                        "curl -s 'https://bot.example/connect?exchange=kraken&apiKey={}&secret={}'\n",
                        enc(&key),
                        enc(&secret)
                    ),
                    "kraken",
                    vec![key.clone(), secret.clone()],
                ),
                (
                    "docker-compose.yml",
                    format!(
                        "services:\n  bot:\n    environment:\n      \
                         EXCHANGE_DSN: kraken://{}:{}@api.kraken.com\n",
                        enc(&key),
                        enc(&secret)
                    ),
                    "kraken",
                    vec![key.clone(), secret.clone()],
                ),
                (
                    "deploy.sh",
                    format!(
                        "# coinbase exchange\ncurl -d 'key={cb_key}&secret={}&passphrase={}&ts=1' \
                         https://bot.example/keys\n",
                        enc(&cb_secret),
                        enc(passphrase)
                    ),
                    "coinbase",
                    vec![cb_key.clone(), cb_secret.clone(), passphrase.to_owned()],
                ),
            ];
            for (path, text, exchange, mut want) in cases {
                let f = scanner.scan_bytes(path, text.as_bytes());
                assert_eq!(f.len(), 1, "{text}\n{f:#?}");
                assert_eq!(f[0].exchange, exchange, "{text}");
                want.sort();
                assert_eq!(values(&f[0]), want, "{text}");
                for p in f[0].parts.iter().filter(|p| p.redacted != "****") {
                    let value = p.value.as_deref().unwrap();
                    assert_eq!(p.redacted, keygate_scan::redact(value), "{text}");
                }
                if exchange == "kraken" {
                    assert_eq!(f[0].fingerprint, plain[0].fingerprint, "{text}");
                }
            }
        }
        assert_eq!(escaped, [true; 3], "no value had a +, a / and a =");
    }

    /// A regression test: a passphrase in a `.env` file was cut at `&name=`, read as the
    /// next parameter of a query string, though a dotenv loader gives the variable the
    /// rest of its line. On a dotenv line the query reading applies only inside a value
    /// that is a URL with a query or a form body; elsewhere it applies as before.
    #[test]
    fn a_dotenv_passphrase_holding_an_ampersand_and_a_name_is_read_whole() {
        use super::synth::{hex_lower, uuid};
        let mut rng = rand::rngs::StdRng::seed_from_u64(76);
        let scanner = Scanner::builder().redact(false).build();
        let (key, secret) = (hex_lower(&mut rng, 24), uuid(&mut rng));
        let creds = format!("KUCOIN_API_KEY={key}\nKUCOIN_API_SECRET={secret}\n");
        let cases = [
            (".env", "KUCOIN_API_PASSPHRASE=ab&name=cd9", "ab&name=cd9"),
            (
                "config/prod.env",
                "export KUCOIN_API_PASSPHRASE=\"Tr4&d3r=x&sig=1\"",
                "Tr4&d3r=x&sig=1",
            ),
            (
                ".env.local",
                "KUCOIN_CONNECT=https://bot.example/kucoin?apiKey=k&passphrase=Tr4d3r&ts=1",
                "Tr4d3r",
            ),
            (".env", "KUCOIN_BODY=key=k&passphrase=Tr4d3r&ts=1", "Tr4d3r"),
            // Found by review: a passphrase holding `=` read as a form body and cut; a
            // query's first parameter never read as one of its own.
            (
                ".env",
                "KUCOIN_API_PASSPHRASE=Tr4=d3r&sig=1",
                "Tr4=d3r&sig=1",
            ),
            (
                ".env",
                "KUCOIN_URL=https://h.example/p?passphrase=Tr4d3r&key=k",
                "Tr4d3r",
            ),
            (
                "kucoin.txt",
                "https://h.example/p?passphrase=Tr4d3r&ts=1",
                "Tr4d3r",
            ),
            // Compose files' environment lists and Dockerfiles' ENV lines likewise.
            (
                "deploy/docker-compose.yml",
                "      - KUCOIN_API_PASSPHRASE=ab&name=cd9",
                "ab&name=cd9",
            ),
            (
                "compose.prod.yaml",
                "      - \"KUCOIN_API_PASSPHRASE=ab&name=cd9\"",
                "ab&name=cd9",
            ),
            (
                "compose.yaml",
                "      KUCOIN_API_PASSPHRASE: ab&name=cd9",
                "ab&name=cd9",
            ),
            (
                "Dockerfile",
                "ENV KUCOIN_API_PASSPHRASE=ab&name=cd9",
                "ab&name=cd9",
            ),
            (
                "docker-compose.yml",
                "      - KUCOIN_URL=https://h.example/p?passphrase=Tr4d3r&key=k",
                "Tr4d3r",
            ),
            (
                "kucoin.txt",
                "key=k&secret=s&passphrase=Tr4d3r&name=bot",
                "Tr4d3r",
            ),
        ];
        for (path, line, passphrase) in cases {
            let text = format!("{creds}{line}\n");
            let f = scanner.scan_bytes(path, text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            let mut want = vec![key.clone(), secret.clone(), passphrase.to_owned()];
            want.sort();
            assert_eq!(values(&f[0]), want, "{path}: {line}");
        }
    }

    /// A regression test (found by review): the `//` after a URL's scheme was dropped
    /// after any colon, so a Kraken secret that begins with `//` in `KEY://SECRET` (a
    /// colon pair, or a DSN's user part) lost two characters and was missed.
    #[test]
    fn a_secret_that_begins_with_two_slashes_after_a_colon_keeps_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(75);
        let scanner = Scanner::builder().redact(false).build();
        let key = b64(&mut rng, 42);
        let secret = format!("//{}", &b64(&mut rng, 64)[2..]);
        for text in [
            format!("# kraken\n{key}:{secret}\n"),
            format!("KRAKEN_DSN=kraken://{key}:{secret}@api.kraken.com\n"),
        ] {
            let f = scanner.scan_bytes("creds.txt", text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            let mut want = vec![key.clone(), secret.clone()];
            want.sort();
            assert_eq!(values(&f[0]), want, "{text}");
        }
    }

    /// A regression test (found by review): the two hex digits of an escape that stands
    /// for no character of a value began the next token, so a key after `%22` (a JSON
    /// body written into a query string) was read with `22` in front and missed.
    #[test]
    fn a_key_in_a_json_body_written_into_a_query_string_is_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(76);
        let scanner = Scanner::builder().redact(false).build();
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        let text = format!(
            "GET /hook?exchange=binance&body=%7B%22apiKey%22%3A%22{key}%22%2C%22secret%22%3A%22{secret}%22%7D\n"
        );
        let f = scanner.scan_bytes("access.log", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        let mut want = vec![key.clone(), secret.clone()];
        want.sort();
        assert_eq!(values(&f[0]), want, "{text}");
        // A `%` before what an escape of a token character would be is a `%`: the value
        // after it keeps its first two characters (found by review).
        let key = format!("e4{}", &key[2..]);
        let text = format!(
            "-- binance\nSELECT * FROM keys WHERE api_key LIKE '%{key}' AND secret = '{secret}';\n"
        );
        let f = scanner.scan_bytes("audit.sql", text.as_bytes());
        assert_eq!(f.len(), 1, "{text}\n{f:#?}");
        let mut want = vec![key, secret];
        want.sort();
        assert_eq!(values(&f[0]), want, "{text}");
    }

    /// Ordinary URLs with percent-encoded spaces and slashes next to an exchange's name are
    /// no keys: `%20` ends a value, and a path read with its `%2F` decoded is what the same
    /// path written plainly is.
    #[test]
    fn ordinary_urls_with_percent_escapes_are_no_keys() {
        let scanner = Scanner::new();
        for text in [
            "binance docs: https://developers.binance.com/docs/binance-spot-api-docs%2Frest-api%2Fgeneral-endpoints%20v3\n",
            "# kraken\nSEE=https://support.kraken.com/hc/en-us/articles/360000919966-How%20to%20create%20an%20API%20key%2FPrivate%20key%2FPermissions\n",
            "okx: https://www.okx.com/docs-v5/en/%23overview-rest-authentication%2Fmaking-requests%3Flang%3Den%26v%3D5\n",
            "coinbase: https://docs.cdp.coinbase.com/api-reference%2Fadvanced-trade-api%2Frest-api%20overview\n",
            "kucoin: https://www.google.com/search?q=kucoin%2Bapi%2Bkey%2Bpassphrase%2Bsetup%2Bguide%2Bpython%2Bbot&hl=en\n",
            "bybit webhook: https://hooks.example/bybit%2Forders%2F2024%2F05%2F01%2Fexport%20all%20fills.csv\n",
        ] {
            let f = scanner.scan_bytes("notes.md", text.as_bytes());
            assert!(f.is_empty(), "{text}\n{f:#?}");
        }
    }

    /// A regression test: a PEM key written as string literals joined by `+` (JavaScript,
    /// Java, Go, C#) had each `+` read into its base64, which then did not decode.
    #[test]
    fn a_pem_key_in_concatenated_string_literals_is_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(73);
        let pem = super::synth::pem_p256(&mut rng);
        let quoted = |escape_plus: bool| -> Vec<String> {
            pem.lines()
                .map(|line| {
                    let line = if escape_plus {
                        line.replace('+', "\\u002B")
                    } else {
                        line.to_owned()
                    };
                    format!("  \"{line}\\n\"")
                })
                .collect()
        };
        // Joined at the end of each line; then at the start, with `+` escaped as JSON
        // writes it for .NET.
        for joined in [quoted(false).join(" +\n"), quoted(true).join("\n  + ")] {
            let text = format!("// coinbase CDP key\nconst privateKey =\n{joined};\n");
            let f = Scanner::new().scan_bytes("src/exchange.js", text.as_bytes());
            assert!(
                f.iter().any(|f| f
                    .parts
                    .iter()
                    .any(|p| p.rule == "coinbase.cdp-ec-private-key")),
                "{text}\n{f:#?}"
            );
        }
    }
}

mod armour {
    use keygate_scan::Scanner;
    use rand::SeedableRng;

    use super::synth::alnum;

    /// A regression test: the lines of a public key, a certificate or PGP armour beside
    /// an exchange's name (Binance's RSA keys have their public half committed as
    /// `binance_rsa_public.pem`) were reported as API secrets; about one line in eight of
    /// random base64 is all letters and digits.
    #[test]
    fn public_keys_certificates_and_armour_are_no_api_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(61);
        let scanner = Scanner::new();
        for label in ["PUBLIC KEY", "CERTIFICATE", "PGP PUBLIC KEY BLOCK"] {
            let body = format!("{}\n{}\n", alnum(&mut rng, 64), alnum(&mut rng, 64));
            let text = format!("-----BEGIN {label}-----\n{body}-----END {label}-----\n");
            let f = scanner.scan_bytes("keys/binance_rsa_public.pem", text.as_bytes());
            assert!(f.is_empty(), "{label}: {f:#?}");
            // The same lines outside a block are what a secret looks like.
            let f = scanner.scan_bytes("keys/binance_rsa_public.pem", body.as_bytes());
            assert!(!f.is_empty(), "{label}: the lines alone are not found");
        }
        // A block without its footer proves nothing: its lines are read as any others.
        let body = alnum(&mut rng, 64);
        let text = format!("-----BEGIN PUBLIC KEY-----\n{body}\n");
        assert!(!scanner
            .scan_bytes("binance.pem", text.as_bytes())
            .is_empty());
    }
}

mod files {
    use std::fs;

    use keygate_scan::Scanner;
    use rand::SeedableRng;

    use super::synth::{cred, layouts};

    #[test]
    fn directory_scan_respects_gitignore_scans_binaries_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir_all(root.join("src")).unwrap();
        git_init(&root);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let c = cred("binance", 0, &mut rng);
        let (_, env) = layouts(&c).into_iter().next().unwrap();
        fs::write(root.join(".env"), &env).unwrap();
        fs::write(root.join("ignored.env"), &env).unwrap();
        fs::write(root.join(".gitignore"), "ignored.env\n").unwrap();
        let mut bin = env.clone().into_bytes();
        bin.insert(0, 0);
        fs::write(root.join("src/blob.bin"), bin).unwrap();
        let outside = dir.path().join("outside.env");
        fs::write(&outside, &env).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link.env")).unwrap();
        let report = Scanner::new().scan_paths(&[&root]).unwrap();
        let paths: Vec<&str> = report.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].ends_with(".env") && !paths[0].contains("ignored"));
        // The binary file is scanned for the text in it, no longer skipped.
        assert!(paths[1].ends_with("src/blob.bin"), "{paths:?}");
        let secret_at = 1 + env.find(&c.secret).unwrap() as u64;
        assert_eq!(report.findings[1].offset, Some(secret_at));
        assert_eq!(report.stats.skipped, 0);
        // `.gitignore`, `.env` and the binary file.
        assert_eq!((report.stats.scanned, report.stats.binary), (3, 1));
        assert_eq!(report.exit_code(), 1);
    }

    /// Found by review: the walk read every ignore file whole, whatever it was, so a
    /// pull request committing `sub/.gitignore` as a link to `/dev/zero` took all the
    /// runner's memory, and a pipe there hung the scan. Such a directory is not entered
    /// (told, and counted as skipped), and one above the roots stops the scan.
    #[cfg(unix)]
    #[test]
    fn an_ignore_file_that_is_no_regular_file_is_not_read() {
        let (_dir, root) = planted(43);
        fs::create_dir_all(root.join("zero")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero/.gitignore")).unwrap();
        fs::create_dir_all(root.join("pipe")).unwrap();
        let fifo = root.join("pipe/.ignore");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[&root]).unwrap();
        assert_eq!(report.active().count(), 1, "the planted key: {report:#?}");
        assert_eq!(report.stats.skipped, 2);
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("zero/.gitignore is not a regular file"))
                && warnings
                    .iter()
                    .any(|w| w.contains("pipe/.ignore is not a regular file")),
            "{warnings:?}"
        );
        // At a root, the scan stops: its rules would be read before the walk began.
        let refused = Scanner::new().scan_paths(&[root.join("pipe")]).unwrap_err();
        let said = std::error::Error::source(&refused).map(ToString::to_string);
        assert!(
            said.as_ref().is_some_and(|s| s.contains("--no-ignore")),
            "{said:?}"
        );
        let unruled = Scanner::builder()
            .respect_ignore_files(false)
            .build()
            .scan_paths(&[root.join("pipe")]);
        assert!(unruled.is_ok());
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(Scanner::new()
            .scan_paths(&["/nonexistent/keygate"])
            .is_err());
    }

    /// Found by review: a `.gitignore` hid files outside any git work tree too, where it
    /// says nothing (git reads it only in a repository), so a deployed copy of a bot (no
    /// `.git`, its `.gitignore` listing `.env`) scanned clean with its key in `.env`.
    /// It now hides files only in a work tree: one whose top the walk comes to, and one
    /// whose top is above the directory scanned. `.ignore` files hide files anywhere.
    #[test]
    fn a_gitignore_hides_files_only_in_a_git_work_tree() {
        let active = |root: &std::path::Path| {
            Scanner::new()
                .scan_paths(&[root])
                .unwrap()
                .active()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        };
        let (_dir, deployed) = planted(45);
        fs::write(deployed.join(".gitignore"), ".env\n").unwrap();
        assert_eq!(active(&deployed).len(), 1, "outside a work tree");
        fs::write(deployed.join(".ignore"), ".env\n").unwrap();
        assert!(active(&deployed).is_empty(), "listed in .ignore");

        // A work tree in the directory scanned, and one around it.
        let (_dir, around) = planted(46);
        let repository = around.join("repository");
        fs::create_dir_all(repository.join("config")).unwrap();
        git_init(&repository);
        fs::copy(around.join(".env"), repository.join("config/.env")).unwrap();
        fs::write(repository.join("config/.gitignore"), ".env\n").unwrap();
        let found = active(&around);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("tree/.env"), "{found:?}");
        assert!(active(&repository.join("config")).is_empty());
        assert!(active(&repository).is_empty());
    }

    /// `git init` in `dir`.
    fn git_init(dir: &std::path::Path) {
        let status = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A tree with one planted `.env` (one finding); returns the tempdir and its root.
    fn planted(seed: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir_all(&root).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (_, env) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        fs::write(root.join(".env"), env).unwrap();
        (dir, root)
    }

    /// Regression: a file was read whole (`fs::read`) before its size was checked, so a
    /// huge or sparse file cost its full size in memory. It is read a window at a time.
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_sparse_file_is_scanned_without_being_held_in_memory() {
        let (_dir, root) = planted(41);
        let huge = fs::File::create(root.join("huge.log")).unwrap();
        huge.set_len(1 << 30).unwrap();
        let before = super::peak_rss();
        let report = Scanner::new().scan_paths(&[&root]).unwrap();
        let grown = super::peak_rss().saturating_sub(before);
        assert!(grown < 256 << 20, "peak memory grew by {grown} bytes");
        assert_eq!(report.stats.skipped, 0, "{report:#?}");
        assert_eq!(report.stats.scanned, 2);
        assert_eq!(report.active().count(), 1);
    }

    /// Regression: one unreadable file made the whole scan fail (exit 2, no report).
    /// `/proc/self/clear_refs` is a regular file that cannot be read, even by root
    /// (permission denied for others, `EINVAL` for root).
    #[cfg(target_os = "linux")]
    #[test]
    fn unreadable_file_is_skipped_with_a_warning() {
        let (_dir, root) = planted(42);
        let unreadable = std::path::Path::new("/proc/self/clear_refs");
        assert!(fs::read(unreadable).is_err());
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[&root, unreadable]).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
        assert_eq!(report.stats.skipped, 1);
        assert_eq!(report.exit_code(), 1);
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("/proc/self/clear_refs"),
            "{warnings:?}"
        );
        // With nothing else found, the scan is clean.
        let clean = tempfile::tempdir().unwrap();
        let report = super::warned()
            .0
            .build()
            .scan_paths(&[clean.path(), unreadable])
            .unwrap();
        assert_eq!(report.exit_code(), 0);
        assert_eq!(report.stats.skipped, 1);
    }

    /// Regression: one unreadable directory made the whole scan fail (exit 2, no report).
    /// A path longer than `PATH_MAX` cannot be listed by anyone, root included.
    #[test]
    fn unreadable_directory_is_skipped_with_a_warning() {
        let (_dir, root) = planted(43);
        // Built inside out (each step wraps the chain in one more directory), so that no
        // step needs a long path.
        let part = "d".repeat(250);
        let (chain, wrap) = (root.join("chain"), root.join("wrap"));
        fs::create_dir(&chain).unwrap();
        fs::write(chain.join("f.txt"), "x\n").unwrap();
        for _ in 0..20 {
            fs::create_dir(&wrap).unwrap();
            fs::rename(&chain, wrap.join(&part)).unwrap();
            fs::rename(&wrap, &chain).unwrap();
        }
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[&root]).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
        assert!(report.stats.skipped >= 1, "{report:#?}");
        assert_eq!(report.exit_code(), 1);
        let warnings = warnings.lock().unwrap();
        assert!(!warnings.is_empty());
        assert!(
            warnings.iter().all(|w| w.contains(&part)),
            "a warning does not name the path: {warnings:?}"
        );
    }

    /// Pins what `docs/scan.md` says: in a git work tree, a `.env` listed in `.gitignore`
    /// is skipped by a directory scan, and scanned when named or with the ignore rules
    /// off.
    #[test]
    fn gitignored_env_is_skipped_unless_named() {
        let (_dir, root) = planted(44);
        git_init(&root);
        fs::write(root.join(".gitignore"), ".env\n").unwrap();
        assert!(!Scanner::new().scan_paths(&[&root]).unwrap().has_active());
        let named = Scanner::new().scan_paths(&[root.join(".env")]).unwrap();
        assert_eq!(named.active().count(), 1);
        // And with the ignore rules turned off (`--no-ignore`).
        let everything = Scanner::builder()
            .respect_ignore_files(false)
            .build()
            .scan_paths(&[&root])
            .unwrap();
        assert_eq!(everything.active().count(), 1);
    }

    /// Regression: keyword context was taken from the path as typed, so
    /// `keygate scan ~/src/binance-bot` gave every file Binance context (a lone 64-character
    /// token became a HIGH finding) while `keygate scan .` from inside the folder did not.
    /// Only the path below the scan root counts.
    #[test]
    fn scan_root_name_gives_no_keyword_context() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("binance-bot");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::create_dir_all(root.join("binance")).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(54);
        let text = format!("token = \"{}\"\n", super::synth::alnum(&mut rng, 64));
        fs::write(root.join("src/settings.txt"), &text).unwrap();
        let report = Scanner::new().scan_paths(&[&root]).unwrap();
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        // Directories below the root and the file's own name still count.
        fs::write(root.join("binance/settings.txt"), &text).unwrap();
        fs::write(root.join("src/binance.txt"), &text).unwrap();
        let report = Scanner::new().scan_paths(&[&root]).unwrap();
        let mut paths: Vec<&str> = report.findings.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].ends_with("binance/settings.txt"), "{paths:?}");
        assert!(paths[1].ends_with("src/binance.txt"), "{paths:?}");
        // A file named on the command line keeps its own name as context.
        let named = Scanner::new()
            .scan_paths(&[root.join("src/binance.txt")])
            .unwrap();
        assert_eq!(named.findings.len(), 1);
    }
    /// Regression: a UTF-16 file (Windows PowerShell output, a `regedit` export) looked
    /// binary (a NUL next to every ASCII character) and was skipped, so a key in it was
    /// missed. With a byte-order mark it is decoded and scanned; lines are those of the
    /// decoded text and values are redacted as usual.
    #[test]
    fn utf16_file_with_a_bom_is_scanned() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(45);
        let key = super::synth::alnum(&mut rng, 64);
        let secret = super::synth::alnum(&mut rng, 64);
        let reg = format!(
            "Windows Registry Editor Version 5.00\r\n\r\n\
             [HKEY_CURRENT_USER\\Software\\TradingBot\\Binance]\r\n\
             \"ApiKey\"=\"{key}\"\r\n\"ApiSecret\"=\"{secret}\"\r\n"
        );
        let kraken_key = super::synth::b64(&mut rng, 42);
        let kraken_secret = super::synth::b64(&mut rng, 64);
        let ps1 = format!(
            "# Set up the Kraken bot – ü\r\n$ErrorActionPreference = 'Stop'\r\n\
             $env:KRAKEN_API_KEY = \"{kraken_key}\"\r\n\
             $env:KRAKEN_API_SECRET = \"{kraken_secret}\"\r\n"
        );
        let cases = [
            ("bot.reg", &reg, 5, &secret, &key),
            ("setup.ps1", &ps1, 4, &kraken_secret, &kraken_key),
        ];
        for big_endian in [false, true] {
            for &(name, text, line, secret, key) in &cases {
                let data = super::utf16(text, big_endian);
                let dir = tempfile::tempdir().unwrap();
                fs::write(dir.path().join(name), &data).unwrap();
                let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
                assert_eq!(report.stats.skipped, 0, "{name} be={big_endian}");
                assert_eq!(
                    report.findings.len(),
                    1,
                    "{name} be={big_endian}: {report:#?}"
                );
                let f = &report.findings[0];
                assert!(f.is_active());
                let column = text.lines().nth(line - 1).unwrap().find(secret.as_str());
                assert_eq!((f.line, f.column), (line, column.unwrap() + 1), "{name}");
                let shown: Vec<&str> = f.parts.iter().map(|p| p.redacted.as_str()).collect();
                let redact = keygate_scan::redact;
                assert_eq!(shown, [redact(key), redact(secret)], "{name}");
                // The same through `scan_bytes`, and the same finding as for UTF-8.
                let direct = Scanner::new().scan_bytes(name, &data);
                let utf8 = Scanner::new().scan_bytes(name, text.as_bytes());
                assert_eq!(direct.len(), 1);
                assert_eq!(
                    (direct[0].line, direct[0].column, &direct[0].fingerprint),
                    (utf8[0].line, utf8[0].column, &utf8[0].fingerprint)
                );
            }
        }
    }

    /// Regression: anything starting with `FF FE` or `FE FF` was decoded as UTF-16, so a
    /// UTF-16 BOM put in front of a UTF-8 `.env` (dotenv loaders read it as a stray first
    /// line) turned its keys into CJK characters: nothing was found. Bytes without a NUL
    /// are not UTF-16 of any text with ASCII in it; they are scanned as they are.
    #[test]
    fn utf16_bom_in_front_of_utf8_does_not_hide_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(46);
        for ex in ["binance", "okx"] {
            let (name, env) = layouts(&cred(ex, 0, &mut rng)).remove(0);
            let utf8 = Scanner::new().scan_bytes(&name, env.as_bytes());
            assert_eq!(utf8.len(), 1, "{utf8:#?}");
            for bom in [[0xFF, 0xFE], [0xFE, 0xFF]] {
                let data = [&bom[..], env.as_bytes()].concat();
                let dir = tempfile::tempdir().unwrap();
                fs::write(dir.path().join(&name), &data).unwrap();
                let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
                let direct = Scanner::new().scan_bytes(&name, &data);
                for found in [&report.findings, &direct] {
                    assert_eq!(found.len(), 1, "{ex} {bom:02X?}: {found:#?}");
                    assert!(found[0].is_active());
                    assert_eq!(
                        (found[0].line, found[0].column, &found[0].fingerprint),
                        (utf8[0].line, utf8[0].column, &utf8[0].fingerprint)
                    );
                    assert_eq!(found[0].parts.len(), utf8[0].parts.len());
                }
                // A NUL byte past the first 8 KiB makes the BOM select UTF-16, and the
                // bytes as they are are scanned too: the key is still found, once.
                let nul_later = [&data[..], "\n#".repeat(5000).as_bytes(), b"\0"].concat();
                fs::write(dir.path().join(&name), &nul_later).unwrap();
                let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
                let direct = Scanner::new().scan_bytes(&name, &nul_later);
                for found in [&report.findings, &direct] {
                    assert_eq!(found.len(), 1, "{ex} {bom:02X?} NUL later: {found:#?}");
                    assert_eq!(found[0].fingerprint, utf8[0].fingerprint);
                }
            }
        }
    }
}

/// Binary files: a SQLite database, a compiled Python module, anything with NUL bytes.
mod binary {
    use std::fs;

    use keygate_scan::Scanner;
    use rand::{Rng, SeedableRng};

    use super::synth::{alnum, b64};

    /// A column of a SQLite record.
    pub(crate) enum Column<'a> {
        /// An integer primary key, stored as the row id (NULL in the record).
        RowId,
        /// An integer from 2 to 127: one byte in the record's body.
        Small(u8),
        Text(&'a str),
    }

    /// SQLite's variable-length integer (big-endian groups of seven bits).
    fn varint(mut n: u64) -> Vec<u8> {
        let mut out = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n > 0 {
            out.insert(0, (n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        out
    }

    /// `text` as a database of text encoding `encoding` stores it (1: UTF-8, 2: UTF-16le,
    /// 3: UTF-16be).
    fn encode(text: &str, encoding: u32) -> Vec<u8> {
        match encoding {
            1 => text.as_bytes().to_vec(),
            2 => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            _ => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        }
    }

    /// A table b-tree leaf cell as SQLite writes one, its text in `encoding`: payload
    /// size, row id, then the record (header size, serial types, body).
    fn cell(rowid: u64, columns: &[Column<'_>], encoding: u32) -> Vec<u8> {
        let mut types = Vec::new();
        let mut body = Vec::new();
        for c in columns {
            match c {
                Column::RowId => types.push(0),
                Column::Small(n) => {
                    types.push(1);
                    body.push(*n);
                }
                Column::Text(t) => {
                    let t = encode(t, encoding);
                    types.extend(varint(t.len() as u64 * 2 + 13));
                    body.extend_from_slice(&t);
                }
            }
        }
        let mut record = vec![(types.len() + 1) as u8];
        record.extend(types);
        record.extend(body);
        let mut out = varint(record.len() as u64);
        out.extend(varint(rowid));
        out.extend(record);
        out
    }

    /// A SQLite database of three 4 KiB pages, reduced to what its bytes look like: the
    /// 100-byte file header, the schema page with the table's `CREATE TABLE`, and a table
    /// leaf page whose cells sit at its end, after a gap of zeros, each found by its
    /// pointer after the page header.
    pub(crate) fn sqlite_db(sql: &str, rows: &[Vec<Column<'_>>]) -> Vec<u8> {
        sqlite_db_encoded(1, sql, rows)
    }

    /// [`sqlite_db`] with its text in `encoding` (see [`encode`]), as its header says.
    fn sqlite_db_encoded(encoding: u32, sql: &str, rows: &[Vec<Column<'_>>]) -> Vec<u8> {
        let page = |cells: Vec<Vec<u8>>, first: bool| {
            let mut p = vec![0u8; 4096];
            if first {
                p[..16].copy_from_slice(b"SQLite format 3\0");
                p[16..24].copy_from_slice(&[0x10, 0, 1, 1, 0, 0x40, 0x20, 0x20]);
                p[56..60].copy_from_slice(&encoding.to_be_bytes());
            }
            let header = if first { 100 } else { 0 };
            p[header] = 0x0d;
            p[header + 3..header + 5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
            let mut at = 4096;
            for (i, c) in cells.iter().enumerate() {
                at -= c.len();
                p[at..at + c.len()].copy_from_slice(c);
                let pointer = header + 8 + 2 * i;
                p[pointer..pointer + 2].copy_from_slice(&(at as u16).to_be_bytes());
            }
            p[header + 5..header + 7].copy_from_slice(&(at as u16).to_be_bytes());
            p
        };
        let schema = cell(
            1,
            &[
                Column::Text("table"),
                Column::Text("accounts"),
                Column::Text("accounts"),
                Column::Small(2),
                Column::Text(sql),
            ],
            encoding,
        );
        let cells = rows
            .iter()
            .enumerate()
            .map(|(i, r)| cell(i as u64 + 1, r, encoding))
            .collect();
        [
            page(vec![schema], true),
            page(cells, false),
            vec![0u8; 4096],
        ]
        .concat()
    }

    /// Scans `data` as the file `name` in a directory of its own.
    fn scan_file(name: &str, data: &[u8]) -> keygate_scan::Report {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name), data).unwrap();
        let report = Scanner::builder()
            .redact(false)
            .build()
            .scan_paths(&[dir.path()])
            .unwrap();
        assert_eq!(report.stats.skipped, 0, "{report:#?}");
        assert_eq!((report.stats.scanned, report.stats.binary), (1, 1));
        report
    }

    /// The offset of `needle` in `data`.
    fn offset(data: &[u8], needle: &str) -> u64 {
        data.windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap() as u64
    }

    /// A regression test: a file with a NUL byte in its first 8 KiB was skipped as
    /// binary, so a bot's SQLite database committed by mistake (`bot.db`) hid the keys in
    /// it. It is scanned for its printable text, and the finding gives the byte offset.
    #[test]
    fn a_key_pair_in_a_sqlite_database_is_found_at_its_byte_offset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(91);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        let config = format!(
            "{{\"exchange\": \"binance\", \"apiKey\": \"{key}\", \"secret\": \"{secret}\"}}"
        );
        let db = sqlite_db(
            "CREATE TABLE settings (id INTEGER PRIMARY KEY, name TEXT, value TEXT)",
            &[
                vec![
                    Column::RowId,
                    Column::Text("telegram_chat"),
                    Column::Text("-1001"),
                ],
                vec![
                    Column::RowId,
                    Column::Text("exchange"),
                    Column::Text(&config),
                ],
            ],
        );
        let report = scan_file("bot.db", &db);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert!(f.is_active());
        assert_eq!(f.title, "Binance API key + secret");
        assert_eq!(f.offset, Some(offset(&db, &secret)));
        let parts: Vec<(Option<u64>, Option<&str>)> = f
            .parts
            .iter()
            .map(|p| (p.offset, p.value.as_deref()))
            .collect();
        assert_eq!(
            parts,
            [
                (Some(offset(&db, &key)), Some(key.as_str())),
                (Some(offset(&db, &secret)), Some(secret.as_str()))
            ]
        );
        // Line and column count line feeds and bytes, as for text.
        let before = &db[..offset(&db, &secret) as usize];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        assert_eq!((f.line, f.column), (line, column));
        // What a reader is shown is the byte offset; SARIF has it too.
        let human = report.to_human();
        let at = offset(&db, &secret);
        assert!(
            human.contains(&format!("bot.db: byte {at} (binary file)")),
            "{human}"
        );
        assert!(human.contains(&format!("secret     byte {at}")), "{human}");
        assert!(human.contains("scanned 1 file(s) (1 binary)"), "{human}");
        let sarif: serde_json::Value =
            serde_json::from_str(&report.to_sarif(keygate_scan::RuleSet::builtin())).unwrap();
        let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["byteOffset"], at);
        assert_eq!(region["startLine"], line);
        // The same through `scan_bytes`; and what the report says survives a round trip.
        let direct = Scanner::new().scan_bytes("bot.db", &db);
        assert_eq!(direct.len(), 1);
        assert_eq!(direct[0].fingerprint, f.fingerprint);
        let back = keygate_scan::Report::from_json(&report.to_json()).unwrap();
        assert_eq!(back.findings[0].offset, f.offset);
    }

    /// A regression test: the text columns of a SQLite row are stored side by side, their
    /// lengths only in the record's header, so `binance`, a key and its secret were one
    /// run, one token of 135 characters that no rule took. The records are read, and
    /// each column is a value of its own.
    #[test]
    fn keys_in_side_by_side_columns_of_a_sqlite_row_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(94);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        let (kraken_key, kraken_secret) = (b64(&mut rng, 42), b64(&mut rng, 64));
        let db = sqlite_db(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, exchange TEXT, api_key TEXT, \
             api_secret TEXT, leverage INTEGER)",
            &[
                vec![
                    Column::RowId,
                    Column::Text("binance"),
                    Column::Text(&key),
                    Column::Text(&secret),
                    Column::Small(3),
                ],
                vec![
                    Column::RowId,
                    Column::Text("kraken"),
                    Column::Text(&kraken_key),
                    Column::Text(&kraken_secret),
                    Column::Small(2),
                ],
            ],
        );
        // Read as `strings` reads it, each row is one run.
        let row = format!("binance{key}{secret}");
        assert!(db.windows(row.len()).any(|w| w == row.as_bytes()));
        let report = scan_file("bot.db", &db);
        let mut found: Vec<(&str, Vec<Option<u64>>)> = report
            .findings
            .iter()
            .map(|f| (f.title.as_str(), f.parts.iter().map(|p| p.offset).collect()))
            .collect();
        found.sort();
        let at = |v: &str| Some(offset(&db, v));
        assert_eq!(
            found,
            [
                ("Binance API key + secret", vec![at(&key), at(&secret)]),
                (
                    "Kraken API key + secret",
                    vec![at(&kraken_key), at(&kraken_secret)]
                ),
            ],
            "{report:#?}"
        );
    }

    /// A regression test (found by review): in a database whose text is UTF-16 (`PRAGMA
    /// encoding='UTF-16le'`, or `be`), a row's columns are one UTF-16 run, and the spans
    /// of its text columns were cut out of ASCII runs only: `binance`, a key and its
    /// secret were one token of 135 characters that no rule took. They are cut out of the
    /// UTF-16 run, and found at their first code units.
    #[test]
    fn keys_in_side_by_side_columns_of_a_utf16_sqlite_row_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(95);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        for encoding in [2, 3] {
            let db = sqlite_db_encoded(
                encoding,
                "CREATE TABLE accounts (exchange TEXT, api_key TEXT, api_secret TEXT)",
                &[vec![
                    Column::Text("binance"),
                    Column::Text(&key),
                    Column::Text(&secret),
                ]],
            );
            let at = |v: &str| {
                let v = encode(v, encoding);
                db.windows(v.len()).position(|w| w == v).map(|i| i as u64)
            };
            let report = scan_file("bot.db", &db);
            let found: Vec<(&str, Vec<Option<u64>>)> = report
                .findings
                .iter()
                .map(|f| (f.title.as_str(), f.parts.iter().map(|p| p.offset).collect()))
                .collect();
            assert_eq!(
                found,
                [("Binance API key + secret", vec![at(&key), at(&secret)])],
                "encoding {encoding}: {report:#?}"
            );
        }
    }

    /// A regression test: a compiled Python module (`__pycache__/settings.cpython-313.pyc`)
    /// was skipped as binary; and read as `strings` reads it, the module's constants stand
    /// side by side, each behind a type byte `z` and a one-byte length (`8` for 56), so
    /// a Kraken key and secret were one token of 148 characters.
    #[test]
    fn keys_in_a_compiled_python_module_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(92);
        let (key, secret) = (b64(&mut rng, 42), b64(&mut rng, 64));
        // As CPython 3.13 marshals `KRAKEN_API_KEY = "…"` and `KRAKEN_API_SECRET = "…"`:
        // the magic number and header, the code object, its constants (two short ASCII
        // strings and None), its names (interned, with the reference flag) and file name.
        let mut pyc = vec![0xf3, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0x44, 0x54, 0x13, 0x6b];
        pyc.extend([
            0x5c, 0x01, 0, 0, 0xe3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
        ]);
        pyc.extend([
            0, 0, 0, 0xf3, 0x0c, 0, 0, 0, 0x97, 0, 0x64, 0, 0x5a, 0, 0x64, 0x01,
        ]);
        pyc.extend([0x5a, 0x01, 0x79, 0x02, 0x29, 0x03]);
        pyc.push(b'z');
        pyc.push(key.len() as u8);
        pyc.extend_from_slice(key.as_bytes());
        pyc.push(b'z');
        pyc.push(secret.len() as u8);
        pyc.extend_from_slice(secret.as_bytes());
        pyc.extend([b'N', 0x29, 0x02, 0xda, 14]);
        pyc.extend_from_slice(b"KRAKEN_API_KEY");
        pyc.extend([0xda, 17]);
        pyc.extend_from_slice(b"KRAKEN_API_SECRET");
        pyc.extend([0xa9, 0, 0xfa, 11]);
        pyc.extend_from_slice(b"settings.py");
        pyc.extend([0xfa, 8]);
        pyc.extend_from_slice(b"<module>");
        pyc.extend([0x72, 0x0c, 0, 0, 0, 0x01, 0, 0, 0, 0x73, 0x0c, 0, 0, 0]);
        let report = scan_file("settings.cpython-313.pyc", &pyc);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.title, "Kraken API key + secret");
        let parts: Vec<(Option<u64>, Option<&str>)> = f
            .parts
            .iter()
            .map(|p| (p.offset, p.value.as_deref()))
            .collect();
        assert_eq!(
            parts,
            [
                (Some(offset(&pyc, &key)), Some(key.as_str())),
                (Some(offset(&pyc, &secret)), Some(secret.as_str()))
            ]
        );
    }

    /// `text` in UTF-16 without a byte-order mark, as an executable holds its strings.
    fn utf16_bare(text: &str, big_endian: bool) -> Vec<u8> {
        super::utf16(text, big_endian).split_off(2)
    }

    /// A regression test: a C# bot built with Binance.Net keeps its string literals in
    /// the `#US` heap of its executable, in UTF-16LE (a NUL byte after each ASCII
    /// character), so read as `strings` reads it, no key in it was a token. The UTF-16
    /// runs are read too, in either byte order, and the finding gives the offset of the
    /// value's first code unit in the file.
    #[test]
    fn a_key_pair_in_utf16_strings_of_an_executable_is_found_at_its_byte_offset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(95);
        let (key, secret) = (alnum(&mut rng, 64), alnum(&mut rng, 64));
        for big_endian in [false, true] {
            // A DOS header, a PE header, then as a .NET assembly's metadata holds them:
            // the `#Strings` heap (type and namespace names, ASCII, each ended by a NUL)
            // and the `#US` heap (each literal behind its length, 129 = 0x80 0x81, in
            // UTF-16, followed by a flag byte).
            let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
            exe.resize(0x80, 0);
            exe.extend_from_slice(b"PE\0\0\x4c\x01\x03\x00");
            exe.resize(0x400, 0);
            exe.extend_from_slice(
                b"\0<Module>\0Binance.Net\0BinanceRestClient\0ApiCredentials\0Main\0\0\0",
            );
            let mut at = Vec::new();
            for literal in [&key, &secret] {
                exe.extend_from_slice(&[0x80, 0x81]);
                at.push(exe.len() as u64);
                exe.extend_from_slice(&utf16_bare(literal, big_endian));
                exe.push(0x01);
            }
            exe.resize(exe.len() + 512, 0);
            let report = scan_file("TradingBot.exe", &exe);
            assert_eq!(report.findings.len(), 1, "{report:#?}");
            let f = &report.findings[0];
            assert!(f.is_active());
            assert_eq!(f.title, "Binance API key + secret");
            let parts: Vec<(Option<u64>, Option<&str>)> = f
                .parts
                .iter()
                .map(|p| (p.offset, p.value.as_deref()))
                .collect();
            assert_eq!(
                parts,
                [
                    (Some(at[0]), Some(key.as_str())),
                    (Some(at[1]), Some(secret.as_str()))
                ],
                "big endian: {big_endian}"
            );
            assert_eq!(f.offset, Some(at[1]));
        }
    }

    /// The exchange's name in UTF-16 only (a registry value's name, a resource string)
    /// gives the keys beside it their context, as it would in ASCII.
    #[test]
    fn a_keyword_in_utf16_only_gives_context() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(96);
        let (key, secret) = (b64(&mut rng, 42), b64(&mut rng, 64));
        for big_endian in [false, true] {
            let mut data = b"regf\x01\x00\x00\x00".to_vec();
            data.resize(0x1000, 0);
            let mut at = Vec::new();
            for text in ["Kraken", key.as_str(), secret.as_str()] {
                data.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
                at.push(data.len() as u64);
                data.extend_from_slice(&utf16_bare(text, big_endian));
                data.extend_from_slice(&[0x80, 0x81]);
            }
            let report = scan_file("NTUSER.DAT", &data);
            assert_eq!(report.findings.len(), 1, "{report:#?}");
            let f = &report.findings[0];
            assert_eq!(f.title, "Kraken API key + secret");
            let offsets: Vec<Option<u64>> = f.parts.iter().map(|p| p.offset).collect();
            assert_eq!(
                offsets,
                [Some(at[1]), Some(at[2])],
                "big endian: {big_endian}"
            );
        }
    }

    /// Binary files full of printable noise, strings that name exchanges, URLs, hashes
    /// and identifiers: no finding, however the bytes fall.
    #[test]
    fn a_binary_file_without_a_key_has_no_finding() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(93);
        for round in 0..4 {
            let mut data: Vec<u8> = (0..256 * 1024).map(|_| rng.gen()).collect();
            let strings = [
                "https://api.binance.com/api/v3/account?timestamp=1704164645000".to_owned(),
                "BINANCE_API_KEY".to_owned(),
                "kraken".to_owned(),
                format!("sha256:{}", super::synth::hex_lower(&mut rng, 64)),
                format!("order {}", super::synth::uuid(&mut rng)),
                "Lorem ipsum dolor sit amet, consectetur adipiscing elit".to_owned(),
                "organizations/{org_id}/apiKeys/{key_id}".to_owned(),
            ];
            for (i, s) in strings.iter().enumerate() {
                let at = 1000 + i * 4096 + round;
                data[at - 1] = 0;
                data[at..at + s.len()].copy_from_slice(s.as_bytes());
                data[at + s.len()] = 0;
            }
            data[0] = 0;
            let report = scan_file("binance-kraken-bot.bin", &data);
            assert!(report.findings.is_empty(), "{:#?}", report.findings);
        }
    }
}

/// Human-readable output and warnings of scanned data.
mod escapes {
    use std::fs;

    use keygate_scan::Scanner;
    use rand::SeedableRng;

    use super::synth::{cred, layouts};

    /// Regression: the human report printed paths as they are, so a file named with
    /// escape sequences (`\x1b]0;…\x07`, CSI) in a scanned tree wrote them to the terminal
    /// or CI log, at an active finding and at a suppressed one. They are escaped; JSON and
    /// SARIF keep the exact path.
    #[test]
    fn control_characters_in_a_file_name_are_escaped_in_human_output() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(61);
        let (_, env) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("docs");
        fs::create_dir(&sub).unwrap();
        fs::write(dir.path().join(super::CONTROL_NAME), &env).unwrap();
        // Binance's documentation example: a suppressed finding, on a line of its own.
        fs::write(
            sub.join(super::CONTROL_NAME),
            "BINANCE_API_KEY=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A\n",
        )
        .unwrap();
        let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.findings.len(), 2, "{report:#?}");
        assert_eq!(report.active().count(), 1, "{report:#?}");
        super::assert_paths_escaped_for_humans(&report);
    }

    /// Regression: a passphrase is any run of non-blank characters after its label, and
    /// `--no-redact` printed it as it is: an escape sequence in a scanned file reached the
    /// terminal through the value. Values are escaped like paths; a PEM key keeps its lines.
    #[test]
    fn control_characters_in_a_value_are_escaped_in_human_output() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(62);
        let mut c = cred("okx", 0, &mut rng);
        // Clear the screen, move up a line, clear it (ESC and C1 CSI).
        c.passphrase = Some("pa\x1b[2J\x1b[1Ass\u{9b}2K".to_owned());
        let (_, env) = layouts(&c).remove(0);
        let scanner = Scanner::builder().redact(false).build();
        let mut findings = scanner.scan_bytes(".env", env.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let values: Vec<_> = findings[0]
            .parts
            .iter()
            .filter_map(|p| p.value.clone())
            .collect();
        assert!(
            values.contains(&c.passphrase.clone().unwrap()),
            "{values:?}"
        );
        let (_, pem) = layouts(&cred("coinbase", 0, &mut rng)).remove(0);
        findings.extend(scanner.scan_bytes("cdp.env", pem.as_bytes()));
        assert_eq!(findings.len(), 2, "{findings:#?}");
        let report = keygate_scan::Report {
            findings,
            stats: Default::default(),
        };
        let human = report.to_human();
        assert!(
            !human.chars().any(|c| c.is_control() && c != '\n'),
            "{human:?}"
        );
        assert!(
            human.contains(" pa\\x1b[2J\\x1b[1Ass\\u{9b}2K\n"),
            "{human}"
        );
        assert!(
            human.contains("-----BEGIN EC PRIVATE KEY-----\n"),
            "{human}"
        );
    }

    /// Regression: a warning names a path of the scanned tree and was printed as it is
    /// (to standard error, or by the caller of `on_warning`), escape sequences and all.
    /// A path longer than `PATH_MAX` cannot be listed by anyone, root included.
    #[test]
    fn control_characters_in_a_warned_path_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir(&root).unwrap();
        let part = format!("{}\x1b]0;pwned\x07\u{9b}2J", "d".repeat(240));
        let shown = format!("{}\\x1b]0;pwned\\x07\\u{{9b}}2J", "d".repeat(240));
        let (chain, wrap) = (root.join("chain"), root.join("wrap"));
        fs::create_dir(&chain).unwrap();
        for _ in 0..20 {
            fs::create_dir(&wrap).unwrap();
            fs::rename(&chain, wrap.join(&part)).unwrap();
            fs::rename(&wrap, &chain).unwrap();
        }
        let (builder, warnings) = super::warned();
        builder.build().scan_paths(&[&root]).unwrap();
        let warnings = warnings.lock().unwrap();
        assert!(!warnings.is_empty());
        for w in warnings.iter() {
            assert!(!w.chars().any(char::is_control), "{w:?}");
            assert!(w.contains(&shown), "{w}");
        }
    }
}

mod suppress {
    use keygate_scan::{Report, Role, Scanner, Suppression};
    use rand::SeedableRng;

    use super::synth::{cred, layouts};

    fn env(seed: u64) -> String {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        layouts(&cred("okx", 0, &mut rng)).remove(0).1
    }

    #[test]
    fn inline_allow_suppresses() {
        let text = env(1).replace('\n', "  # keygate:allow\n");
        let f = Scanner::new().scan_bytes(".env", text.as_bytes());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].suppressed, Some(Suppression::InlineAllow));
    }

    /// Regression: `keygate:allow` on the line of any part suppressed the whole set, so a
    /// marker on a reviewed key's line hid the live secret on the next line.
    #[test]
    fn allow_marker_covers_only_its_own_line() {
        let text = env(5);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2, "{text}");
        for marked in 0..lines.len() {
            let t: String = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i == marked {
                        format!("{l}  # keygate:allow\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            let f = Scanner::new().scan_bytes(".env", t.as_bytes());
            assert_eq!(f.len(), 1, "{t}\n{f:#?}");
            assert!(
                f[0].is_active(),
                "marker on line {marked} hid the set:\n{t}"
            );
        }
    }

    #[test]
    fn ignore_file_and_baseline_suppress_by_fingerprint() {
        let old = env(2);
        let new = env(3);
        let first = Scanner::new().scan_bytes(".env", old.as_bytes());
        let fp = first[0].fingerprint.clone();
        let ignore = keygate_scan::parse_ignore(&format!("# reviewed\n{fp}  test fixture\n"));
        let f = Scanner::builder()
            .ignore_fingerprints(ignore)
            .build()
            .scan_bytes(".env", old.as_bytes());
        assert_eq!(f[0].suppressed, Some(Suppression::IgnoreFile));

        let baseline = Report {
            findings: first,
            stats: Default::default(),
        };
        let baseline = Report::from_json(&baseline.to_json()).unwrap();
        let scanner = Scanner::builder().baseline(&baseline).build();
        let both = format!("{old}\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n{new}");
        let f = scanner.scan_bytes(".env", both.as_bytes());
        assert_eq!(f.len(), 2);
        assert_eq!(
            f.iter()
                .filter(|f| f.suppressed == Some(Suppression::Baseline))
                .count(),
            1
        );
        assert_eq!(f.iter().filter(|f| f.is_active()).count(), 1);
    }

    /// A regression test (from a review): an ignore-file or baseline entry for one
    /// secret suppressed the whole set it was later found in, since a set's fingerprint
    /// was its main value's: a new live key written beside a reviewed secret (or, without
    /// labels, before it) was reported suppressed, and the scan passed. The values the
    /// entry does not cover are now a finding of their own, active.
    #[test]
    fn a_known_secret_does_not_hide_a_new_key_beside_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(91);
        let secret = super::synth::alnum(&mut rng, 64);
        let key = super::synth::alnum(&mut rng, 64);
        let cases = [
            (
                format!("BINANCE_API_SECRET={secret}\n"),
                format!("BINANCE_API_SECRET={secret}\nBINANCE_API_KEY={key}\n"),
            ),
            // Unlabelled: the first of two values is the key.
            (
                format!("binance:\n  - {secret}\n"),
                format!("binance:\n  - {key}\n  - {secret}\n"),
            ),
        ];
        for (old, new) in cases {
            let first = Scanner::new().scan_bytes(".env", old.as_bytes());
            assert_eq!(first.len(), 1, "{old}\n{first:#?}");
            let baseline = Report {
                findings: first.clone(),
                stats: Default::default(),
            };
            let baseline = Report::from_json(&baseline.to_json()).unwrap();
            for (scanner, why) in [
                (
                    Scanner::builder().baseline(&baseline).build(),
                    Suppression::Baseline,
                ),
                (
                    Scanner::builder()
                        .ignore_fingerprints([first[0].fingerprint.clone()])
                        .build(),
                    Suppression::IgnoreFile,
                ),
            ] {
                let f = scanner.scan_bytes(".env", new.as_bytes());
                let active: Vec<_> = f.iter().filter(|f| f.is_active()).collect();
                assert_eq!(active.len(), 1, "{new}\n{f:#?}");
                assert_eq!(active[0].parts.len(), 1, "{f:#?}");
                assert_eq!(active[0].parts[0].redacted, keygate_scan::redact(&key));
                let known: Vec<_> = f.iter().filter(|f| !f.is_active()).collect();
                assert_eq!(known.len(), 1, "{f:#?}");
                assert_eq!(known[0].suppressed, Some(why));
                assert_eq!(known[0].parts[0].redacted, keygate_scan::redact(&secret));
            }
        }
    }

    /// A set's fingerprint covers that set only, and a baseline written before values had
    /// fingerprints of their own (a set's was its main value's, its parts had none) still
    /// suppresses each set it holds, but not a new key beside its secret.
    #[test]
    fn set_fingerprints_and_old_baselines_cover_exactly_their_sets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(92);
        let secret = super::synth::alnum(&mut rng, 64);
        let (key, new_key) = (
            super::synth::alnum(&mut rng, 64),
            super::synth::alnum(&mut rng, 64),
        );
        let pair = |key: &str| format!("BINANCE_API_KEY={key}\nBINANCE_API_SECRET={secret}\n");
        let first = Scanner::new().scan_bytes(".env", pair(&key).as_bytes());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].parts.len(), 2);
        let value_fp = |f: &keygate_scan::Finding, role| {
            let part = f.parts.iter().find(|p| p.role == role).unwrap();
            part.fingerprint.clone().unwrap()
        };
        // Its set's fingerprint suppresses the set, and not the secret with another key.
        let by_set = Scanner::builder()
            .ignore_fingerprints([first[0].fingerprint.clone()])
            .build();
        let f = by_set.scan_bytes(".env", pair(&key).as_bytes());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].suppressed, Some(Suppression::IgnoreFile));
        let f = by_set.scan_bytes(".env", pair(&new_key).as_bytes());
        assert!(f.iter().all(|f| f.is_active()), "{f:#?}");

        // A report as written before: the set's fingerprint is the secret's, no part has one.
        let mut old = first.clone();
        old[0].fingerprint = value_fp(&first[0], Role::Secret);
        for p in &mut old[0].parts {
            p.fingerprint = None;
        }
        let old = Report {
            findings: old,
            stats: Default::default(),
        };
        let old = Report::from_json(&old.to_json()).unwrap();
        let scanner = Scanner::builder().baseline(&old).build();
        let f = scanner.scan_bytes(".env", pair(&key).as_bytes());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].suppressed, Some(Suppression::Baseline));
        let f = scanner.scan_bytes(".env", pair(&new_key).as_bytes());
        let active: Vec<_> = f.iter().filter(|f| f.is_active()).collect();
        assert_eq!(active.len(), 1, "{f:#?}");
        assert_eq!(active[0].parts.len(), 1);
        assert_eq!(value_fp(active[0], Role::Key), {
            let alone = Scanner::new()
                .scan_bytes(".env", format!("BINANCE_API_KEY={new_key}\n").as_bytes());
            alone[0].fingerprint.clone()
        });
    }

    #[test]
    fn fingerprint_does_not_depend_on_path_or_line() {
        let text = env(4);
        let a = Scanner::new().scan_bytes("a/.env", text.as_bytes());
        let b = Scanner::new().scan_bytes("b/.env", format!("\n\n{text}").as_bytes());
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
    }
}

mod managed {
    use keygate_scan::{ManagedKeys, Scanner, Severity};
    use rand::SeedableRng;

    use super::synth::{alnum, cred, layouts, pem_p256};

    fn fixture(secret: &str, fk: [u8; 32]) -> ManagedKeys {
        ManagedKeys::new(
            fk,
            vec![(
                "acme-main".to_owned(),
                ManagedKeys::fingerprint_secret(&fk, secret),
            )],
        )
    }

    #[test]
    fn managed_secret_matched_by_a_rule_is_critical_and_names_the_account() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let c = cred("bybit", 0, &mut rng);
        let scanner = Scanner::builder()
            .managed(fixture(&c.secret, [9; 32]))
            .build();
        for (name, text) in layouts(&c) {
            let f = scanner.scan_bytes(&name, text.as_bytes());
            assert_eq!(f.len(), 1, "{name}");
            assert_eq!(f[0].severity, Severity::Critical);
            assert_eq!(f[0].managed_account.as_deref(), Some("acme-main"));
            let json = keygate_scan::Report {
                findings: f,
                stats: Default::default(),
            }
            .to_json();
            assert!(!json.contains(&c.secret));
        }
    }

    /// Regression: a key the vault manages was suppressed like any other finding by
    /// `keygate:allow`, `.keygateignore` or `--baseline`; it must always be reported.
    #[test]
    fn managed_key_is_never_suppressed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let c = cred("bybit", 0, &mut rng);
        let (_, text) = layouts(&c).remove(0);
        let allowed = text.replace('\n', "  # keygate:allow\n");
        let plain = Scanner::builder()
            .managed(fixture(&c.secret, [9; 32]))
            .build()
            .scan_bytes(".env", allowed.as_bytes());
        assert_eq!(plain.len(), 1, "{plain:#?}");
        let baseline = keygate_scan::Report {
            findings: plain.clone(),
            stats: Default::default(),
        };
        let fingerprint = plain[0].fingerprint.clone();
        // The same findings without the vault: the marker, the ignore file and the
        // baseline each do suppress them, so the checks below are not vacuous.
        assert!(!Scanner::new()
            .scan_bytes(".env", allowed.as_bytes())
            .iter()
            .any(|f| f.is_active()));
        for scanner in [
            Scanner::builder().ignore_fingerprints([fingerprint.clone()]),
            Scanner::builder().baseline(&baseline),
        ] {
            assert!(!scanner.build().scan_bytes(".env", text.as_bytes())[0].is_active());
        }
        for scanner in [
            Scanner::builder(),
            Scanner::builder().ignore_fingerprints([fingerprint.clone()]),
            Scanner::builder().baseline(&baseline),
        ] {
            let scanner = scanner.managed(fixture(&c.secret, [9; 32])).build();
            for t in [&text, &allowed] {
                let f = scanner.scan_bytes(".env", t.as_bytes());
                assert_eq!(f.len(), 1);
                assert_eq!(f[0].severity, Severity::Critical);
                assert!(f[0].is_active(), "managed key suppressed:\n{t}\n{f:#?}");
            }
        }
        // The same through a directory scan, where the ignore file and baseline apply.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), &allowed).unwrap();
        let report = Scanner::builder()
            .ignore_fingerprints([fingerprint])
            .baseline(&baseline)
            .managed(fixture(&c.secret, [9; 32]))
            .build()
            .scan_paths(&[dir.path()])
            .unwrap();
        assert_eq!(report.exit_code(), 1, "{report:#?}");
    }

    #[test]
    fn managed_key_without_any_rule_or_context_is_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let token = alnum(&mut rng, 40);
        let scanner = Scanner::builder().managed(fixture(&token, [3; 32])).build();
        let f = scanner.scan_bytes(
            "notes.txt",
            format!("the value was {token} yesterday\n").as_bytes(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "keygate.managed");
        assert_eq!(f[0].line, 1);
        let other = Scanner::builder()
            .managed(fixture(&alnum(&mut rng, 40), [3; 32]))
            .build();
        assert!(other
            .scan_bytes("notes.txt", format!("the value was {token}\n").as_bytes())
            .is_empty());
    }

    #[test]
    fn managed_pem_key_matches_whatever_its_layout() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let pem = pem_p256(&mut rng);
        let scanner = Scanner::builder().managed(fixture(&pem, [4; 32])).build();
        let escaped = format!(
            "{{\"privateKey\": \"{}\"}}",
            pem.trim_end().replace('\n', "\\n")
        );
        let f = scanner.scan_bytes("key.json", escaped.as_bytes());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].managed_account.as_deref(), Some("acme-main"));
    }
}

mod output {
    use keygate_scan::{Report, Scanner};
    use rand::SeedableRng;

    use super::synth::{cred, layouts};

    fn report() -> Report {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let scanner = Scanner::new();
        let mut findings = Vec::new();
        for ex in ["kucoin", "coinbase"] {
            let (name, text) = layouts(&cred(ex, 0, &mut rng)).remove(2);
            findings.extend(scanner.scan_bytes(&format!("./{ex}/{name}"), text.as_bytes()));
        }
        findings.extend(scanner.scan_bytes(
            "docs/binance.md",
            b"BINANCE_API_KEY=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A\n",
        ));
        Report {
            findings,
            stats: Default::default(),
        }
    }

    #[test]
    fn sarif_has_the_shape_github_code_scanning_accepts() {
        let r = report();
        let v: serde_json::Value =
            serde_json::from_str(&r.to_sarif(Scanner::new().rules())).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        for res in results {
            let idx = res["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[idx]["id"], res["ruleId"]);
            let loc = &res["locations"][0]["physicalLocation"];
            assert!(!loc["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("./"));
            assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
            assert!(res["partialFingerprints"]["keygate/v1"].is_string());
            assert!(res["message"]["text"].is_string());
        }
        assert_eq!(
            results
                .iter()
                .filter(|r| r.get("suppressions").is_some())
                .count(),
            1
        );
        for rule in rules {
            assert!(rule["shortDescription"]["text"].is_string());
            assert!(rule["properties"]["security-severity"].is_string());
        }
        assert_eq!(
            run["invocations"][0]["toolExecutionNotifications"],
            serde_json::json!([])
        );
    }

    /// Found by review: what was not scanned was said on standard error only, so a
    /// code-scanning page showed the run clean. The run says it.
    #[test]
    fn sarif_says_what_was_not_scanned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("zero")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero/.gitignore")).unwrap();
        std::fs::write(dir.path().join("small.txt"), b"nothing").unwrap();
        let (builder, _) = super::warned();
        let scanner = builder.build();
        let report = scanner.scan_paths(&[dir.path()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&report.to_sarif(scanner.rules())).unwrap();
        let said = &v["runs"][0]["invocations"][0]["toolExecutionNotifications"];
        assert_eq!(said.as_array().map(Vec::len), Some(1), "{said}");
        let text = said[0]["message"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("1 file(s) or blob(s) could not be read"),
            "{text}"
        );
    }

    #[test]
    fn json_round_trips() {
        let r = report();
        let back = Report::from_json(&r.to_json()).unwrap();
        assert_eq!(back.findings.len(), r.findings.len());
        assert_eq!(back.fingerprints(), r.fingerprints());
    }

    #[test]
    fn human_output_has_location_fix_and_summary() {
        let text = report().to_human();
        assert!(text.contains("./kucoin/settings.yaml:"), "{text}");
        assert!(text.contains("fix: delete the key in KuCoin"), "{text}");
        assert!(
            text.contains("suppressed (documentation example): docs/binance.md:1"),
            "{text}"
        );
        assert!(text.contains("2 finding(s), 1 suppressed"), "{text}");
    }
    /// Regression: SARIF `artifactLocation.uri` was the path as it is, so a space, `%`,
    /// `#`, `?` or non-ASCII character made an invalid URI or one that names another file
    /// (`#1?` starts a fragment). Each URI must decode back to the finding's path.
    #[test]
    fn sarif_uri_is_percent_encoded_and_decodes_to_the_path() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let (_, env) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ünïcode dir#2");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(super::AWKWARD_NAME), &env).unwrap();
        std::fs::write(dir.path().join("plain.env"), &env).unwrap();
        let mut report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.findings.len(), 2, "{report:#?}");
        // `scan_bytes` names a buffer as the caller says, `./` and all.
        report
            .findings
            .extend(Scanner::new().scan_bytes("./a b/%41.env", env.as_bytes()));
        let paths: Vec<String> = report
            .findings
            .iter()
            .map(|f| f.path.trim_start_matches("./").to_owned())
            .collect();
        assert!(paths[1].ends_with(super::AWKWARD_NAME), "{paths:?}");
        assert_eq!(super::sarif_paths(&report), paths);
    }

    /// A regression test: SARIF columns were UTF-8 byte columns, while SARIF 2.1.0 counts
    /// UTF-16 code units unless `run.columnKind` says otherwise, so GitHub highlighted the
    /// wrong span on a line with non-ASCII text before the key.
    #[test]
    fn sarif_columns_count_utf16_code_units() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let c = cred("binance", 0, &mut rng);
        let line = format!(
            "const ex = new ccxt.binance({{ note: 'clé 😀 ключ', apiKey: '{}', secret: '{}' }});",
            c.key, c.secret
        );
        let text = format!("const ccxt = require('ccxt');\n{line}\n");
        let findings = Scanner::new().scan_bytes("bot.js", text.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!(f.line, 2);
        let before = &line[..f.column - 1];
        assert!(before.ends_with("'"), "{before}");
        let utf16 = before.encode_utf16().count() + 1;
        assert!(
            utf16 < f.column,
            "the line has no text that tells them apart"
        );
        let report = Report {
            findings,
            stats: Default::default(),
        };
        let sarif: serde_json::Value =
            serde_json::from_str(&report.to_sarif(Scanner::new().rules())).unwrap();
        assert_eq!(sarif["runs"][0]["columnKind"], "utf16CodeUnits");
        let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startColumn"], utf16, "{region}");
    }

    /// A regression test: a UTF-8 byte-order mark counted as three columns of the first
    /// line, in every format; editors and GitHub do not count it.
    #[test]
    fn a_utf8_byte_order_mark_does_not_count_as_columns() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let c = cred("binance", 0, &mut rng);
        let text = format!(
            "\u{feff}BINANCE_API_SECRET={}\nBINANCE_API_KEY={}\n",
            c.secret, c.key
        );
        let findings = Scanner::new().scan_bytes(".env", text.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let on_first_line: Vec<usize> = findings[0]
            .parts
            .iter()
            .filter(|p| p.line == 1)
            .map(|p| p.column)
            .collect();
        let column = "BINANCE_API_SECRET=".len() + 1;
        assert_eq!(on_first_line, [column], "{findings:#?}");
        assert_eq!((findings[0].line, findings[0].column), (1, column));
        let report = Report {
            findings,
            stats: Default::default(),
        };
        let sarif: serde_json::Value =
            serde_json::from_str(&report.to_sarif(Scanner::new().rules())).unwrap();
        let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startColumn"], column, "{region}");
    }
}

mod git {
    use std::path::Path;
    use std::process::Command;

    use keygate_scan::Scanner;
    use rand::SeedableRng;

    use super::synth::{cred, layouts};

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "init"]);
        dir
    }

    /// Found by review: the files a repository's index lists were read wherever the
    /// index said, so a dump holding a crafted `.git` (an entry `p/secret.env` beside a
    /// link `p -> /elsewhere`) had the scanner read, and report as the dump's, files
    /// outside it (`/proc/self/environ`: the scanner's own environment).
    #[cfg(unix)]
    #[test]
    fn an_index_entry_through_a_link_is_not_read_outside_the_repository() {
        let outside = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(outside.path().join(&name), &text).unwrap();
        assert!(Scanner::new()
            .scan_paths(&[outside.path()])
            .unwrap()
            .has_active());

        let dir = repo();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("p")).unwrap();
        let empty = git(dir.path(), &["hash-object", "-w", "/dev/null"]);
        git(
            dir.path(),
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{empty},p/{name}"),
            ],
        );
        let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        assert!(!report.has_active(), "{report:#?}");
    }

    /// Found by review: a key committed through Git LFS is in the repository's
    /// `lfs/objects` (and on the LFS server), its commit holding only a pointer; it was
    /// never scanned, and nothing said so. git-lfs itself is not needed to lay it out.
    #[test]
    fn a_key_committed_through_git_lfs_is_found_and_an_absent_object_is_told() {
        use sha2::Digest;
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(71);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        let pointer = |content: &[u8]| {
            let oid = hex::encode(sha2::Sha256::digest(content));
            let pointer = format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
                content.len()
            );
            (oid, pointer)
        };
        let (oid, stored) = pointer(text.as_bytes());
        let objects = dir.path().join(".git/lfs/objects");
        let at = objects.join(&oid[..2]).join(&oid[2..4]);
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join(&oid), &text).unwrap();
        let (_, absent) = pointer(b"never fetched\n");
        std::fs::write(dir.path().join(".gitattributes"), "*.env filter=lfs\n").unwrap();
        std::fs::write(dir.path().join(&name), &stored).unwrap();
        std::fs::write(dir.path().join("other.bin"), &absent).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "through lfs"]);
        let commit = git(dir.path(), &["rev-parse", "HEAD"]);

        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(dir.path()).unwrap();
        let found: Vec<_> = report.active().collect();
        assert_eq!(found.len(), 1, "{report:#?}");
        assert_eq!(found[0].exchange, "binance");
        assert_eq!(found[0].path, name);
        assert_eq!(found[0].provenance.as_ref().unwrap().commit, commit);
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("1 Git LFS file(s)") && w.contains("not scanned")),
            "{warnings:?}"
        );
        drop(warnings);

        // Found by review of the fix: a file that merely began like a pointer was taken
        // for one, and the key after its first lines never scanned.
        let (_, lookalike) = pointer(b"nothing\n");
        let (_, key) = layouts(&cred("binance", 1, &mut rng)).remove(0);
        std::fs::write(dir.path().join("binance.env"), format!("{lookalike}{key}")).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "lookalike"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.active().count(), 2, "{report:#?}");

        // Nor is a link out of the repository directory followed to read what it holds.
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::rename(&objects, outside.path().join("objects")).unwrap();
            std::os::unix::fs::symlink(outside.path().join("objects"), &objects).unwrap();
            let report = Scanner::new().scan_git_history(dir.path()).unwrap();
            assert_eq!(report.active().count(), 1, "{report:#?}");
        }
    }

    /// Found by review: a repository with one damaged tree (an old commit's, deleted)
    /// failed the whole history scan, though the warning said the blobs would still be
    /// scanned; an intact blob holding a key went unreported.
    #[test]
    fn a_damaged_tree_leaves_the_other_objects_scanned() {
        let dir = repo();
        let old_tree = git(dir.path(), &["rev-parse", "HEAD^{tree}"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(63);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);
        let loose = dir
            .path()
            .join(".git/objects")
            .join(&old_tree[..2])
            .join(&old_tree[2..]);
        std::fs::remove_file(loose).unwrap();

        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(dir.path()).unwrap();
        assert!(
            report.active().any(|f| f.exchange == "binance"),
            "{report:#?}"
        );
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("could not be walked")),
            "{warnings:?}"
        );
    }

    /// Found by review: only `REPO/.git` was looked at for pipes before a history scan,
    /// so a pipe in a bare repository's objects, or in the repository of a directory
    /// inside a work tree, kept `git cat-file` and the scan waiting for ever.
    #[cfg(unix)]
    #[test]
    fn a_pipe_in_a_bare_repository_or_above_a_subdirectory_does_not_hang_the_scan() {
        let dir = repo();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/notes.txt"), "nothing\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "notes"]);
        let bare = tempfile::tempdir().unwrap();
        let bare_repo = bare.path().join("r.git");
        git(
            bare.path(),
            &[
                "clone",
                "-q",
                "--bare",
                dir.path().to_str().unwrap(),
                "r.git",
            ],
        );
        for root in [dir.path().to_path_buf(), bare_repo.clone()] {
            let objects = git(&root, &["rev-parse", "--git-path", "objects"]);
            let pipe = root.join(objects).join("pipe-in-the-store");
            let made = Command::new("mkfifo").arg(&pipe).status().unwrap();
            assert!(made.success());
        }
        for root in [bare_repo, dir.path().join("sub")] {
            let (done, finished) = std::sync::mpsc::channel();
            let scanned = root.clone();
            std::thread::spawn(move || {
                let _ = done.send(Scanner::new().scan_git_history(&scanned).map(|_| ()));
            });
            let result = finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the scan of {} hangs", root.display()));
            let refused = result.unwrap_err();
            assert!(
                refused.to_string().contains("pipe or a device"),
                "{refused}"
            );
        }
    }

    /// Found by review: a dump whose `.git/index` is a pipe kept git, and so the scan,
    /// waiting for ever. It is refused at once; a directory scan says so and goes on.
    #[cfg(unix)]
    #[test]
    fn a_repository_whose_index_is_a_pipe_does_not_hang_the_scan() {
        let dir = repo();
        let index = dir.path().join(".git/index");
        std::fs::remove_file(&index).unwrap();
        let made = Command::new("mkfifo").arg(&index).status().unwrap();
        assert!(made.success());
        let refused = Scanner::new().scan_git_history(dir.path()).unwrap_err();
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.stats.skipped, 1, "{report:#?}");
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("index is not a regular file")),
            "{warnings:?}"
        );
        // Found by review of the fix: a pipe among the objects (`objects/info/alternates`,
        // a commit graph) kept `git fsck` waiting for ever.
        let dir = repo();
        let alternates = dir.path().join(".git/objects/info/alternates");
        let made = Command::new("mkfifo").arg(&alternates).status().unwrap();
        assert!(made.success());
        let refused = Scanner::new().scan_git_history(dir.path()).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("alternates is a pipe or a device"),
            "{refused}"
        );
        // Found by review: `git log` read a `.mailmap` of the work tree, a pipe, before
        // writing a line, for names the scan does not show.
        let dir = repo();
        let mailmap = dir.path().join(".mailmap");
        let made = Command::new("mkfifo").arg(&mailmap).status().unwrap();
        assert!(made.success());
        assert!(Scanner::new().scan_git_history(dir.path()).is_ok());
    }

    /// Found by review of the fix for links to `/dev/zero`: `/proc/self/pagemap` says
    /// it is a regular file holding nothing, and never ends; and a directory not entered
    /// for its ignore file lost the files a repository in it tracks (the scan exited 0).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_repository_behind_an_unreadable_ignore_file_is_still_scanned() {
        let top = tempfile::tempdir().unwrap();
        let nested = top.path().join("repo");
        std::fs::create_dir_all(&nested).unwrap();
        git(&nested, &["init", "-q"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(43);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(nested.join(&name), &text).unwrap();
        std::os::unix::fs::symlink("/proc/self/pagemap", nested.join(".gitignore")).unwrap();
        git(&nested, &["add", &name]);
        git(&nested, &["commit", "-q", "-m", "config"]);
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[top.path()]).unwrap();
        assert!(report.has_active(), "{report:#?}");
        assert!(
            warnings
                .lock()
                .unwrap()
                .iter()
                .any(|w| w.contains("not entered")),
            "{warnings:?}"
        );
        // As a root it stops the scan, read through its link or not.
        assert!(Scanner::new().scan_paths(&[&nested]).is_err());
    }

    /// A regression test: a key committed and then amended away, or stashed and dropped
    /// from the newest stash, was no longer reachable from any ref and was not scanned,
    /// though it stays in the repository (and its reflogs) until they expire.
    #[test]
    fn keys_in_amended_commits_and_older_stashes_are_found() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add config"]);
        let amended_away = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::write(dir.path().join(&name), "# keys come from the vault\n").unwrap();
        git(
            dir.path(),
            &["commit", "-q", "-a", "--amend", "-m", "add config"],
        );

        // Stashed, then buried under a newer stash: only the stash reflog has it.
        let (stashed_name, stashed_text) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&stashed_name), &stashed_text).unwrap();
        git(dir.path(), &["stash", "push", "-q", "-u"]);
        std::fs::write(dir.path().join("notes.txt"), "nothing\n").unwrap();
        git(dir.path(), &["stash", "push", "-q", "-u"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let exchanges: Vec<&str> = report.active().map(|f| f.exchange.as_str()).collect();
        assert_eq!(exchanges.len(), 2, "{report:#?}");
        assert!(exchanges.contains(&"binance") && exchanges.contains(&"kraken"));
        let binance = report.active().find(|f| f.exchange == "binance").unwrap();
        assert_eq!(binance.provenance.as_ref().unwrap().commit, amended_away);
    }

    /// Found by review: a blob is scanned once, under the path of the first commit that
    /// has it, and only that path's words counted: a key first committed at a path with
    /// no exchange's name in it, then moved under `binance/`, was found in HEAD by a
    /// scan of the files, and missed by a scan of the history.
    #[test]
    fn a_key_moved_under_an_exchange_s_name_is_found_in_history() {
        use rand::Rng;
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(57);
        let mut value = || -> String {
            (0..64)
                .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
                .collect()
        };
        let text = format!("API_KEY={}\nAPI_SECRET={}\n", value(), value());
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/keys.env"), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "wip"]);
        let first = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::create_dir(dir.path().join("binance")).unwrap();
        git(dir.path(), &["mv", "tmp/keys.env", "binance/prod.env"]);
        git(dir.path(), &["commit", "-q", "-m", "move"]);
        assert!(Scanner::new()
            .scan_paths(&[dir.path()])
            .unwrap()
            .has_active());

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let found: Vec<_> = report.active().collect();
        assert_eq!(found.len(), 1, "{report:#?}");
        assert_eq!(found[0].exchange, "binance");
        assert_eq!(found[0].path, "binance/prod.env");
        assert_eq!(found[0].provenance.as_ref().unwrap().commit, first);
    }

    /// A regression test: a key pasted into a commit message or an annotated tag's message
    /// is pushed and cloned with the history, and was not scanned (an empty commit's
    /// message least of all: the log lists the commits that change files).
    #[test]
    fn keys_in_commit_and_tag_messages_are_found() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        let message = format!("try the bot with these\n\n{text}");
        git(
            dir.path(),
            &["commit", "-q", "--allow-empty", "-m", &message],
        );
        let commit = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::write(dir.path().join("bot.py"), "print('hi')\n").unwrap();
        git(dir.path(), &["add", "."]);
        let (_, text) = layouts(&cred("okx", 0, &mut rng)).remove(0);
        let message = format!("add the bot\n\n{text}");
        git(dir.path(), &["commit", "-q", "-m", &message]);
        let (_, text) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        let message = format!("release\n\n{text}");
        git(dir.path(), &["tag", "-a", "v1.0", "-m", &message]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let found = |exchange: &str| {
            report
                .active()
                .find(|f| f.exchange == exchange)
                .unwrap_or_else(|| panic!("no {exchange} finding: {report:#?}"))
        };
        let binance = found("binance");
        assert_eq!(
            binance.path,
            format!("(message of commit {})", &commit[..12])
        );
        let provenance = binance.provenance.as_ref().unwrap();
        assert_eq!(provenance.commit, commit);
        assert_eq!(provenance.author_time, 1_704_164_645);
        assert!(found("okx").path.starts_with("(message of commit "));
        assert_eq!(found("kraken").path, "(message of tag v1.0)");
        assert_eq!(report.active().count(), 3, "{report:#?}");
        let mut paths: Vec<String> = report.active().map(|f| f.path.clone()).collect();
        paths.sort();

        // Found by review: a clone that borrows its objects (alternates, whose object
        // store is not listed) lost the empty commit's message, and a partial clone every
        // message (commits were taken for absent blobs); and a tag's name counted as the
        // context of its message, so two checksums under `binance-bot-v2` were a key.
        let checksum = |rng: &mut rand::rngs::StdRng| -> String {
            use rand::Rng;
            (0..64)
                .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
                .collect()
        };
        let (a, b) = (checksum(&mut rng), checksum(&mut rng));
        let release = format!("release\n\nbot.tar.gz {a}\nbot.zip {b}\n");
        git(dir.path(), &["tag", "-a", "binance-bot-v2", "-m", &release]);
        git(dir.path(), &["config", "uploadpack.allowFilter", "true"]);
        let clones = tempfile::tempdir().unwrap();
        let source = dir.path().to_str().unwrap();
        let url = format!("file://{source}");
        git(
            clones.path(),
            &["clone", "-q", "--shared", source, "shared"],
        );
        let partial = [
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:none",
            &url,
            "partial",
        ];
        git(clones.path(), &partial);
        for scanned in [
            dir.path().to_owned(),
            clones.path().join("shared"),
            clones.path().join("partial"),
        ] {
            let report = Scanner::new().scan_git_history(&scanned).unwrap();
            let mut found: Vec<String> = report.active().map(|f| f.path.clone()).collect();
            found.sort();
            assert_eq!(found, paths, "{}: {report:#?}", scanned.display());
        }
    }

    /// A regression test: a key `git add`ed and then unstaged, or in a commit whose reflog
    /// entries expired, stays in the repository (and in every copy of it, a Docker build
    /// context, a tarball) as a blob nothing reaches until `git gc` prunes it, and was not
    /// scanned. And (found by review) the commit nothing reaches was not walked: its blobs
    /// were scanned without the path that names their exchange, and a key whose only
    /// context is that path (`config/binance.json`) was not found.
    #[test]
    fn keys_in_blobs_nothing_reaches_are_found() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let (name, text) = layouts(&cred("okx", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["rm", "-q", "--cached", &name]);
        std::fs::remove_file(dir.path().join(&name)).unwrap();

        let (amended, amended_text) = layouts(&cred("bybit", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&amended), &amended_text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add config"]);
        std::fs::write(dir.path().join(&amended), "# from the vault\n").unwrap();
        let amended_away = git(dir.path(), &["rev-parse", "HEAD"]);
        git(
            dir.path(),
            &["commit", "-q", "-a", "--amend", "-m", "add config"],
        );

        // A branch deleted, its file named by its path alone.
        git(dir.path(), &["checkout", "-q", "-b", "feature"]);
        std::fs::create_dir(dir.path().join("config")).unwrap();
        let alphanumeric = |rng: &mut rand::rngs::StdRng| -> String {
            use rand::Rng;
            (0..64)
                .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
                .collect()
        };
        let (key, secret) = (alphanumeric(&mut rng), alphanumeric(&mut rng));
        std::fs::write(
            dir.path().join("config/binance.json"),
            format!("{{\"apiKey\": \"{key}\", \"secret\": \"{secret}\"}}\n"),
        )
        .unwrap();
        git(dir.path(), &["add", "config"]);
        git(dir.path(), &["commit", "-q", "-m", "feature config"]);
        let deleted = git(dir.path(), &["rev-parse", "HEAD"]);
        git(dir.path(), &["checkout", "-q", "main"]);
        git(dir.path(), &["branch", "-q", "-D", "feature"]);
        git(dir.path(), &["reflog", "expire", "--expire=now", "--all"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let mut exchanges: Vec<&str> = report.active().map(|f| f.exchange.as_str()).collect();
        exchanges.sort_unstable();
        assert_eq!(exchanges, ["binance", "bybit", "okx"], "{report:#?}");
        for f in report.active() {
            let commit = f.provenance.as_ref().map(|p| p.commit.as_str());
            match f.exchange.as_str() {
                "okx" => {
                    assert!(f.path.starts_with("(unreachable blob "), "{f:#?}");
                    assert_eq!(commit, None, "{f:#?}");
                }
                "bybit" => {
                    assert_eq!(f.path, amended, "{f:#?}");
                    assert_eq!(commit, Some(amended_away.as_str()), "{f:#?}");
                }
                _ => {
                    assert_eq!(f.path, "config/binance.json", "{f:#?}");
                    assert_eq!(commit, Some(deleted.as_str()), "{f:#?}");
                }
            }
        }
    }

    /// A regression test: keys that the log of every ref and fsck's unreachable list both
    /// miss were not scanned, though a clone or a copy of the repository holds them: a
    /// blob only a tag names, a blob staged and in no commit, a blob `git replace`
    /// shows as another, and a file an evil merge adds in a repository that sets
    /// `log.diffMerges=combined`.
    #[test]
    fn keys_only_a_tag_the_index_a_replacement_or_a_merge_holds_are_found() {
        let dir = repo();
        let path = dir.path();
        let mut rng = rand::rngs::StdRng::seed_from_u64(26);
        let mut planted = |exchange: &str| layouts(&cred(exchange, 0, &mut rng)).remove(0);

        let (name, text) = planted("binance");
        std::fs::write(path.join(&name), &text).unwrap();
        let tagged = git(path, &["hash-object", "-w", &name]);
        git(path, &["tag", "only-a-blob", &tagged]);
        std::fs::remove_file(path.join(&name)).unwrap();

        let (name, text) = planted("okx");
        std::fs::write(path.join(&name), &text).unwrap();
        git(path, &["add", "."]);
        git(path, &["commit", "-q", "-m", "config"]);
        let secret = git(path, &["rev-parse", &format!("HEAD:{name}")]);
        std::fs::write(path.join("clean.txt"), "nothing here\n").unwrap();
        let clean = git(path, &["hash-object", "-w", "clean.txt"]);
        std::fs::remove_file(path.join("clean.txt")).unwrap();
        git(path, &["replace", &secret, &clean]);
        git(path, &["rm", "-q", &name]);
        git(path, &["commit", "-q", "-m", "no config"]);

        git(path, &["config", "log.diffMerges", "combined"]);
        git(path, &["checkout", "-q", "-b", "side"]);
        std::fs::write(path.join("side.txt"), "side\n").unwrap();
        git(path, &["add", "."]);
        git(path, &["commit", "-q", "-m", "side"]);
        git(path, &["checkout", "-q", "main"]);
        git(path, &["merge", "-q", "--no-ff", "--no-commit", "side"]);
        let (name, text) = planted("bybit");
        std::fs::write(path.join(&name), &text).unwrap();
        git(path, &["add", "."]);
        git(path, &["commit", "-q", "-m", "merge side"]);
        git(path, &["rm", "-q", &name]);
        git(path, &["commit", "-q", "-m", "no config"]);

        let (name, text) = planted("kraken");
        std::fs::write(path.join(&name), &text).unwrap();
        git(path, &["add", "."]);
        std::fs::remove_file(path.join(&name)).unwrap();

        let report = Scanner::new().scan_git_history(path).unwrap();
        let mut exchanges: Vec<&str> = report.active().map(|f| f.exchange.as_str()).collect();
        exchanges.sort_unstable();
        assert_eq!(
            exchanges,
            ["binance", "bybit", "kraken", "okx"],
            "{report:#?}"
        );
        let tagged_finding = report.active().find(|f| f.exchange == "binance").unwrap();
        assert!(
            tagged_finding.path.contains("in no listed commit"),
            "{tagged_finding:#?}"
        );
    }

    /// A regression test: the repository's own config named programs that scanning it
    /// ran: an fsmonitor (fsck and the index read it) and, for a signed commit, a
    /// `gpg.program` (`log.showSignature`). A scanned tarball or build context is
    /// untrusted; nothing it names may run.
    #[cfg(unix)]
    #[test]
    fn a_scanned_repository_runs_no_program_its_config_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = repo();
        let path = dir.path();
        let marker = path.join("ran");
        let program = path.join("program.sh");
        std::fs::write(
            &program,
            format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tree = git(path, &["rev-parse", "HEAD^{tree}"]);
        let parent = git(path, &["rev-parse", "HEAD"]);
        let signed = format!(
            "tree {tree}\nparent {parent}\nauthor t <t@t> 1704164645 +0000\n\
             committer t <t@t> 1704164645 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n \
             iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n"
        );
        std::fs::write(path.join("commit.txt"), signed).unwrap();
        let commit = git(
            path,
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--literally",
                "commit.txt",
            ],
        );
        std::fs::remove_file(path.join("commit.txt")).unwrap();
        git(path, &["update-ref", "refs/heads/signed", &commit]);
        let program = program.to_str().unwrap();
        git(path, &["config", "core.fsmonitor", program]);
        git(path, &["config", "log.showSignature", "true"]);
        git(path, &["config", "gpg.program", program]);

        Scanner::new().scan_git_history(path).unwrap();
        Scanner::new().scan_staged(path).unwrap();
        assert!(!marker.exists(), "scanning the repository ran its program");
    }

    /// A repository that borrows objects from another (`git clone --shared`, a CI
    /// reference mirror) would have fsck list the other's unreachable blobs as its own.
    #[test]
    fn unreachable_blobs_of_another_repository_are_not_scanned() {
        let source = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let (name, text) = layouts(&cred("gate", 0, &mut rng)).remove(0);
        std::fs::write(source.path().join(&name), &text).unwrap();
        git(source.path(), &["add", "."]);
        git(source.path(), &["rm", "-q", "--cached", &name]);
        std::fs::remove_file(source.path().join(&name)).unwrap();

        let report = Scanner::new().scan_git_history(source.path()).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");

        let shared = tempfile::tempdir().unwrap();
        let clone = shared.path().join("clone");
        git(
            shared.path(),
            &[
                "clone",
                "-q",
                "--shared",
                source.path().to_str().unwrap(),
                "clone",
            ],
        );
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(&clone).unwrap();
        assert_eq!(report.active().count(), 0, "{report:#?}");
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("alternates")),
            "{warnings:?}"
        );
    }

    /// fsck lists what it can in a damaged repository, and says so by its exit status:
    /// a missing object elsewhere must not hide the unreachable blobs it listed.
    #[test]
    fn unreachable_blobs_are_scanned_in_a_damaged_repository() {
        let dir = repo();
        let readme = git(dir.path(), &["rev-parse", "HEAD:README.md"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        let (name, text) = layouts(&cred("bitfinex", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["rm", "-q", "--cached", &name]);
        std::fs::remove_file(dir.path().join(&name)).unwrap();
        let object = dir
            .path()
            .join(".git/objects")
            .join(&readme[..2])
            .join(&readme[2..]);
        std::fs::remove_file(object).unwrap();

        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(dir.path());
        let report = report.unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
        assert_eq!(report.findings[0].exchange, "bitfinex");
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("damaged")),
            "{warnings:?}"
        );
    }

    /// A regression test (found by review): fsck does not check what nothing reaches, so
    /// a deleted branch's commit whose tree is gone was given to the walk, which died on
    /// it, and the whole scan failed with no finding at all. The walk is made again
    /// without such commits, and says so.
    #[test]
    fn a_damaged_commit_nothing_reaches_does_not_stop_the_walk() {
        let dir = repo();
        git(dir.path(), &["checkout", "-q", "-b", "side"]);
        std::fs::write(dir.path().join("side.txt"), "side\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "side"]);
        let tree = git(dir.path(), &["rev-parse", "HEAD^{tree}"]);
        git(dir.path(), &["checkout", "-q", "main"]);
        git(dir.path(), &["branch", "-q", "-D", "side"]);
        git(dir.path(), &["reflog", "expire", "--expire=now", "--all"]);
        let object = dir
            .path()
            .join(".git/objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::remove_file(object).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(26);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);

        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(dir.path()).unwrap();
        let exchanges: Vec<&str> = report.active().map(|f| f.exchange.as_str()).collect();
        assert_eq!(exchanges, ["binance"], "{report:#?}");
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("commits nothing reaches")
                    && w.contains("could not all be walked")),
            "{warnings:?}"
        );
    }

    #[test]
    fn key_added_then_deleted_is_found_in_history_with_its_commit() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let (name, text) = layouts(&cred("gate", 0, &mut rng)).remove(1);
        std::fs::create_dir_all(dir.path().join("user_data")).unwrap();
        std::fs::write(dir.path().join("user_data").join(&name), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add config"]);
        let introducing = git(dir.path(), &["rev-parse", "HEAD"]);
        // A later edit keeps the key; the finding must still name the first commit.
        std::fs::write(
            dir.path().join("user_data").join(&name),
            format!("{text}\n"),
        )
        .unwrap();
        git(dir.path(), &["commit", "-q", "-am", "touch"]);
        git(dir.path(), &["rm", "-q", "-r", "user_data"]);
        git(dir.path(), &["commit", "-q", "-m", "oops, remove"]);

        assert!(!Scanner::new()
            .scan_paths(&[dir.path()])
            .unwrap()
            .has_active());
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.exchange, "gate");
        let p = f.provenance.as_ref().unwrap();
        assert_eq!(p.commit, introducing);
        assert_eq!(p.path, "user_data/config.json");
        assert_eq!(p.author_time, 1704164645);
        assert!(report.to_human().contains(&introducing));
    }

    /// Regression: de-duplication kept the oldest occurrence of a secret whether or not it
    /// was suppressed, so a secret first committed in an allowed fixture and later in
    /// `config/.env` was reported only as suppressed (exit 0).
    #[test]
    fn allowed_fixture_does_not_hide_the_same_secret_committed_later() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(
            dir.path().join("tests/fixture.env"),
            text.replace('\n', "  # keygate:allow\n"),
        )
        .unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "fixture"]);
        let fixture_commit = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/.env"), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.exit_code(), 1, "{report:#?}");
        let active: Vec<_> = report.active().collect();
        assert_eq!(active.len(), 1, "{report:#?}");
        assert_eq!(active[0].path, "config/.env");
        // Provenance: the secret leaked with the fixture.
        let p = active[0].provenance.as_ref().unwrap();
        assert_eq!(p.commit, fixture_commit);
        assert_eq!(p.path, "tests/fixture.env");
    }

    /// Regression: a secret still in `HEAD` was located where it first appeared (a path
    /// and line that may no longer exist) instead of where it has to be removed now.
    #[test]
    fn secret_still_in_head_is_located_where_it_is_in_head() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(26);
        let (_, text) = layouts(&cred("gate", 0, &mut rng)).remove(0);
        std::fs::create_dir_all(dir.path().join("old")).unwrap();
        std::fs::write(dir.path().join("old/.env"), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add"]);
        let introducing = git(dir.path(), &["rev-parse", "HEAD"]);
        let first = Scanner::new().scan_git_history(dir.path()).unwrap();
        let first_line = first.findings[0].line;
        std::fs::create_dir_all(dir.path().join("new")).unwrap();
        std::fs::write(
            dir.path().join("new/.env"),
            format!("# a\n# b\n# c\n{text}"),
        )
        .unwrap();
        git(dir.path(), &["rm", "-q", "-r", "old"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "move"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.path, "new/.env");
        assert_eq!(f.line, first_line + 3);
        let p = f.provenance.as_ref().unwrap();
        assert_eq!(
            (p.commit.as_str(), p.path.as_str()),
            (introducing.as_str(), "old/.env")
        );
        // A blob kept as is under a new name is located at its name in HEAD too.
        git(dir.path(), &["mv", "new/.env", "moved.env"]);
        git(dir.path(), &["commit", "-q", "-m", "rename"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        assert_eq!(report.findings[0].path, "moved.env");
    }

    /// A regression test: `--git` kept one finding per secret and rule, so the same
    /// secret in another file still in `HEAD` (where it has to be removed too), and the
    /// key beside it there, were not reported.
    #[test]
    fn the_same_secret_in_several_files_in_head_is_reported_in_each() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(34);
        let c = cred("binance", 0, &mut rng);
        std::fs::write(
            dir.path().join("a.env"),
            format!("BINANCE_API_SECRET={}\n", c.secret),
        )
        .unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "secret"]);
        let pair = format!(
            "BINANCE_API_KEY={}\nBINANCE_API_SECRET={}\n",
            c.key, c.secret
        );
        std::fs::write(dir.path().join("b.env"), &pair).unwrap();
        // The same blob at a second path.
        std::fs::write(dir.path().join("c.env"), &pair).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "pair"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let found: Vec<(&str, usize)> = report
            .active()
            .map(|f| (f.path.as_str(), f.parts.len()))
            .collect();
        assert_eq!(
            found,
            [("a.env", 1), ("b.env", 2), ("c.env", 2)],
            "{report:#?}"
        );
        // One secret: one fingerprint of its value in each (the sets' differ, as one has
        // a key the other has not).
        let fingerprints: std::collections::HashSet<&str> = report
            .findings
            .iter()
            .flat_map(|f| &f.parts)
            .filter(|p| p.role == keygate_scan::Role::Secret)
            .filter_map(|p| p.fingerprint.as_deref())
            .collect();
        assert_eq!(fingerprints.len(), 1);
        // Each names when the secret leaked: with `a.env`.
        for f in &report.findings {
            assert_eq!(f.provenance.as_ref().unwrap().path, "a.env");
        }
    }

    /// A regression test: of two occurrences of a secret no longer in `HEAD`, the one
    /// kept had no key while the other had one: the key was reported nowhere.
    #[test]
    fn a_key_beside_a_secret_seen_before_is_not_dropped() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(35);
        let c = cred("binance", 0, &mut rng);
        std::fs::write(
            dir.path().join("a.env"),
            format!("BINANCE_API_SECRET={}\n", c.secret),
        )
        .unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "secret"]);
        std::fs::write(
            dir.path().join("a.env"),
            format!(
                "BINANCE_API_KEY={}\nBINANCE_API_SECRET={}\n",
                c.key, c.secret
            ),
        )
        .unwrap();
        git(dir.path(), &["commit", "-q", "-am", "pair"]);
        git(dir.path(), &["rm", "-q", "a.env"]);
        git(dir.path(), &["commit", "-q", "-m", "removed"]);

        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        let parts: Vec<usize> = report.active().map(|f| f.parts.len()).collect();
        assert_eq!(parts, [1, 2], "{report:#?}");
        // A further version with nothing new is still reported once.
        std::fs::write(
            dir.path().join("b.env"),
            format!("# moved\nBINANCE_API_SECRET={}\n", c.secret),
        )
        .unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "again"]);
        git(dir.path(), &["rm", "-q", "b.env"]);
        git(dir.path(), &["commit", "-q", "-m", "removed again"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.active().count(), 2, "{report:#?}");
    }

    /// Regression: `git log` without `--root` hides the root commit's files when the
    /// user's configuration says `log.showRoot = false`, so a key committed first was missed.
    #[test]
    fn root_commit_is_scanned_whatever_log_show_root_says() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        git(dir.path(), &["config", "log.showRoot", "false"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(27);
        let (_, text) = layouts(&cred("bitfinex", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(".env"), text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "root"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
    }

    /// Regression: a shallow clone was scanned silently, as if its history were complete.
    #[test]
    fn shallow_clone_is_warned_about() {
        let dir = repo();
        std::fs::write(dir.path().join("README.md"), "hello again\n").unwrap();
        git(dir.path(), &["commit", "-q", "-am", "second"]);
        let (builder, warnings) = super::warned();
        builder.build().scan_git_history(dir.path()).unwrap();
        assert!(warnings.lock().unwrap().is_empty());

        let clones = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        git(
            clones.path(),
            &["clone", "-q", "--depth", "1", &url, "shallow"],
        );
        let (builder, warnings) = super::warned();
        builder
            .build()
            .scan_git_history(&clones.path().join("shallow"))
            .unwrap();
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("shallow"), "{warnings:?}");
    }

    /// A regression test: a file git tracks though .gitignore matches it (added with
    /// `--force`, or before the rule) is published, yet `keygate scan .` skipped it: a
    /// pull request adding `.env` and a rule for it passed a CI scan.
    #[test]
    fn a_tracked_file_gitignore_matches_is_scanned() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(30);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(".gitignore"), "secrets.env\nlocal.env\n").unwrap();
        std::fs::write(dir.path().join("secrets.env"), &text).unwrap();
        git(dir.path(), &["add", "-f", "secrets.env", ".gitignore"]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);
        // An ignored file git does not track stays skipped.
        let (_, other) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join("local.env"), other).unwrap();
        let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        let exchanges: Vec<&str> = report.active().map(|f| f.exchange.as_str()).collect();
        assert_eq!(exchanges, ["binance"], "{report:#?}");
        assert!(report.findings[0].path.ends_with("secrets.env"));
    }

    /// A regression test (found by review): a repository git would not list (one owned by
    /// another user, "dubious ownership"; here one whose `.git` names nothing) had its
    /// tracked files that an ignore rule matches skipped without a word, and the scan
    /// came out clean. Such a repository is now named in a warning and counted skipped.
    #[test]
    fn a_repository_git_cannot_list_is_named_in_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".git"),
            "gitdir: /nonexistent/keygate-test\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".gitignore"), "secrets.env\n").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join("secrets.env"), &text).unwrap();
        let (builder, warnings) = crate::warned();
        let report = builder.build().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.stats.skipped, 1, "{report:#?}");
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings.iter().any(
                |w| w.contains("cannot list the files git tracks") && w.contains("--no-ignore")
            ),
            "{warnings:?}"
        );
        // A directory in no repository is no trouble.
        let plain = tempfile::tempdir().unwrap();
        std::fs::write(plain.path().join("notes.txt"), "nothing\n").unwrap();
        let (builder, warnings) = crate::warned();
        let report = builder.build().scan_paths(&[plain.path()]).unwrap();
        assert_eq!(report.stats.skipped, 0);
        assert!(warnings.lock().unwrap().is_empty());
    }

    /// A regression test (found by review): a pipe named on the command line (`keygate
    /// scan /dev/stdin`, `<(...)`) was passed over as no file, and the scan came out
    /// clean with nothing read. It is an error, as a path that does not exist is.
    #[test]
    fn a_pipe_named_on_the_command_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("keys.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let refused = Scanner::new().scan_paths(&[&fifo]).unwrap_err();
        let why = std::error::Error::source(&refused).map(ToString::to_string);
        assert!(
            why.as_deref()
                .is_some_and(|why| why.contains("not a regular file or a directory")),
            "{refused}: {why:?}"
        );
        // One found by the walk inside a directory is skipped, as before.
        let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.stats.scanned, 0, "{report:#?}");
    }

    /// A regression test: a `.gitignore` in a directory above the repository hid the
    /// files it matches though the repository tracks them (the walk reads ignore files up
    /// to `/`, and the pass for tracked files only asked git's own rules), so a key
    /// committed in `prod.env` was not reported. Ignore rules only skip untracked files.
    #[test]
    fn a_gitignore_above_the_repository_does_not_hide_tracked_files() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join(".gitignore"), "*.env\n").unwrap();
        let dir = base.path().join("repo");
        std::fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "-q"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.join("prod.env"), &text).unwrap();
        git(&dir, &["add", "prod.env"]);
        git(&dir, &["commit", "-q", "-m", "config"]);
        // Untracked, and matched by the rule above, which git does not read (it is above
        // the repository): scanned whether the rule is in the tree scanned or above it
        // (those are not read: found by review, anyone may write `/tmp/.gitignore`).
        let (_, other) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        std::fs::write(dir.join("local.env"), other).unwrap();
        for root in [dir.as_path(), base.path()] {
            let report = Scanner::new().scan_paths(&[root]).unwrap();
            let mut found: Vec<(&str, &str)> = report
                .findings
                .iter()
                .map(|f| (f.exchange.as_str(), f.path.as_str()))
                .collect();
            found.sort();
            assert_eq!(found.len(), 2, "{found:?}");
            assert_eq!(found[0].0, "binance");
            assert!(found[0].1.ends_with("repo/prod.env"), "{found:?}");
            // `prod.env` and `local.env`, and `.gitignore` above.
            let scanned = if root == dir.as_path() { 2 } else { 3 };
            assert_eq!(report.stats.scanned, scanned, "{:?}", report.stats);
        }
    }

    /// A regression test: a tracked file listed in `.ignore` (a rule file git does not
    /// read) was never scanned, so `echo prod.env > .ignore` silenced a committed key in
    /// a CI scan.
    #[test]
    fn a_tracked_file_listed_in_dot_ignore_is_scanned() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(32);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::create_dir(dir.path().join("deploy")).unwrap();
        std::fs::write(dir.path().join("deploy/prod.env"), &text).unwrap();
        std::fs::write(dir.path().join(".ignore"), "prod.env\nlocal.env\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);
        let (_, other) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join("local.env"), other).unwrap();
        let report = Scanner::new().scan_paths(&[dir.path()]).unwrap();
        let exchanges: Vec<&str> = report
            .findings
            .iter()
            .map(|f| f.exchange.as_str())
            .collect();
        assert_eq!(exchanges, ["binance"], "{report:#?}");
        assert!(report.findings[0].path.ends_with("deploy/prod.env"));
        // `README.md`, `.ignore` and `deploy/prod.env`, each once.
        assert_eq!(report.stats.scanned, 3, "{:?}", report.stats);
    }

    /// A regression test: the pass that reads the files git tracks though an ignore rule
    /// matches them opened each with `File::open`, which follows a symbolic link: a
    /// committed `build.log -> /dev/stdin` or a link to a FIFO hung the scan, a link to
    /// `../outside/secret.env` read a file outside the tree, and one to `/dev/zero` read
    /// 64 MiB. No symbolic link is followed, and only regular files are read.
    #[cfg(unix)]
    #[test]
    fn tracked_symlinks_an_ignore_rule_matches_are_not_followed() {
        use std::os::unix::fs::symlink;

        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("repo");
        let outside = base.path().join("outside");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(33);
        let (_, text) = layouts(&cred("kraken", 0, &mut rng)).remove(0);
        std::fs::write(outside.join("secret.env"), text).unwrap();
        let fifo = base.path().join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        git(&dir, &["init", "-q"]);
        std::fs::write(dir.join(".gitignore"), "*.log\n").unwrap();
        symlink("/dev/stdin", dir.join("build.log")).unwrap();
        symlink(&fifo, dir.join("fifo.log")).unwrap();
        symlink("../outside/secret.env", dir.join("secret.log")).unwrap();
        symlink("/dev/zero", dir.join("zero.log")).unwrap();
        git(&dir, &["add", "-f", "."]);
        git(&dir, &["commit", "-q", "-m", "links"]);

        let (builder, warnings) = super::warned();
        let scanner = builder.build();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(scanner.scan_paths(&[&dir]).unwrap()));
        let report = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the scan hangs on a symbolic link");
        assert!(report.findings.is_empty(), "{report:#?}");
        // `.gitignore` only: nothing read through a link, nothing counted as skipped.
        assert_eq!((report.stats.scanned, report.stats.skipped), (1, 0));
        assert!(report.stats.bytes < 1024, "{:?}", report.stats);
        assert!(warnings.lock().unwrap().is_empty());
    }

    /// A regression test: a tracked file that could not be read in the pass for tracked
    /// files was skipped without a word (the walk names such a file in a warning). The
    /// index holds a name longer than a file name may be, which no one can open.
    #[test]
    fn a_tracked_file_that_cannot_be_read_is_named_in_a_warning() {
        let dir = repo();
        std::fs::write(dir.path().join(".gitignore"), "*.env\n").unwrap();
        let blob = git(dir.path(), &["hash-object", "-w", ".gitignore"]);
        let long = format!("{}.env", "n".repeat(300));
        let entry = format!("100644,{blob},{long}");
        git(
            dir.path(),
            &["update-index", "--add", "--cacheinfo", &entry],
        );
        git(dir.path(), &["commit", "-q", "-m", "long"]);
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_paths(&[dir.path()]).unwrap();
        assert_eq!(report.stats.skipped, 1, "{:?}", report.stats);
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(&long), "{warnings:?}");
    }

    /// A regression test (from two reviews): a file or blob over the size limit was
    /// skipped, so a 65 MiB `dump.sql` holding keys passed the pre-commit hook, and then
    /// `scan .` and `--git` with only a warning. Each is scanned in windows of the limit's
    /// length, in a walk, in history and in what is staged; its keys are found at their
    /// lines, whichever window they fall in, and once each.
    #[test]
    fn files_and_blobs_over_the_size_limit_are_scanned_in_windows() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(55);
        let row = "INSERT INTO t VALUES (1);\n";
        let mut dump = String::from("-- dump\n");
        let mut planted = Vec::new();
        // Keys at the start, in the windows' overlaps and at the very end, too far apart
        // to pair.
        for at in [1, 120, 150, 300, 400, 777] {
            while dump.lines().count() < at {
                dump.push_str(row);
            }
            planted.push(dump.lines().count() + 1);
            let key = super::synth::alnum(&mut rng, 64);
            dump.push_str(&format!(
                "INSERT INTO api_keys VALUES ('binance', '{key}');\n"
            ));
        }
        std::fs::write(dir.path().join("dump.sql"), &dump).unwrap();
        std::fs::write(dir.path().join("small.txt"), "hello\n").unwrap();
        git(dir.path(), &["add", "."]);
        for how in ["staged", "git", "paths"] {
            if how == "git" {
                git(dir.path(), &["commit", "-q", "-m", "dump"]);
            }
            let (builder, warnings) = super::warned();
            let scanner = builder.max_file_size(4096).build();
            let report = match how {
                "staged" => scanner.scan_staged(dir.path()),
                "git" => scanner.scan_git_history(dir.path()),
                _ => scanner.scan_paths(&[dir.path()]),
            }
            .unwrap();
            assert_eq!(report.stats.skipped, 0, "{how}: {:?}", report.stats);
            assert!(warnings.lock().unwrap().is_empty(), "{how}");
            let lines: Vec<usize> = report.findings.iter().map(|f| f.line).collect();
            assert_eq!(lines, planted, "{how}: {report:#?}");
        }
    }

    /// Found by review: a window took the findings of the whole overlap after its start,
    /// with nothing of the text before it, so a key on the line after its exchange's name
    /// was missed where a window began between them; and in a line longer than a window
    /// nothing but the last window's findings was kept. Keywords just before values all
    /// through a file, and keys in one line of several windows, are each found once.
    #[test]
    fn keys_at_every_place_of_a_file_read_in_windows_are_found_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(57);
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        let mut planted = Vec::new();
        for n in 0..400 {
            if n % 13 == 0 {
                text.push_str("-- exchange: binance\n");
                planted.push(text.lines().count() + 1);
                let key = super::synth::alnum(&mut rng, 64);
                text.push_str(&format!("INSERT INTO k VALUES ('{key}');\n"));
            } else {
                text.push_str("INSERT INTO t VALUES (1, 'filler');\n");
            }
        }
        std::fs::write(dir.path().join("dump.sql"), &text).unwrap();
        let mut line = String::from("[");
        let mut keys = Vec::new();
        for n in 0..300 {
            if n % 37 == 5 {
                let key = super::synth::alnum(&mut rng, 64);
                line.push_str(&format!(
                    "{{\"exchange\":\"binance\",\"apiKey\":\"{key}\"}},"
                ));
                keys.push(key);
            } else {
                line.push_str("{\"filler\":\"0123456789 abcdefghij klmnopqrst\"},");
            }
        }
        line.push_str("{}]");
        std::fs::write(dir.path().join("one-line.json"), &line).unwrap();
        let scanner = Scanner::builder().redact(false).max_file_size(4096).build();
        let report = scanner.scan_paths(&[dir.path()]).unwrap();
        let in_dump: Vec<usize> = report
            .findings
            .iter()
            .filter(|f| f.path.ends_with("dump.sql"))
            .map(|f| f.line)
            .collect();
        assert_eq!(in_dump, planted, "{report:#?}");
        let mut in_line: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.path.ends_with("one-line.json"))
            .flat_map(|f| f.parts.iter().filter_map(|p| p.value.clone()))
            .collect();
        in_line.sort();
        keys.sort();
        assert_eq!(in_line, keys, "{report:#?}");
        // Found by review: a value on the first line of a window that began inside a line
        // was placed at its column in the window, not in the line.
        for finding in report
            .findings
            .iter()
            .filter(|f| f.path.ends_with("one-line.json"))
        {
            for part in &finding.parts {
                let value = part.value.as_deref().unwrap();
                assert_eq!(part.column, line.find(value).unwrap() + 1, "{finding:#?}");
            }
            assert_eq!(finding.utf16_column, Some(finding.column), "{finding:#?}");
        }
    }

    /// A regression test: in a partial clone (`--filter=blob:none`), reading each blob
    /// fetched it from the remote, one round trip (or credential prompt) per blob; and a
    /// blob that could not be had was skipped without a word, so the scan said "clean".
    #[test]
    fn a_partial_clone_fetches_nothing_and_says_what_it_could_not_scan() {
        let dir = repo();
        git(dir.path(), &["config", "uploadpack.allowFilter", "true"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let (name, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(&name), text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "config"]);
        let clones = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        git(
            clones.path(),
            &[
                "clone",
                "-q",
                "--no-checkout",
                "--filter=blob:none",
                &url,
                "partial",
            ],
        );
        let partial = clones.path().join("partial");
        let objects = || git(&partial, &["count-objects", "-v"]);
        let before = objects();
        let (builder, warnings) = super::warned();
        let report = builder.build().scan_git_history(&partial).unwrap();
        assert_eq!(objects(), before, "blobs were fetched");
        assert!(report.stats.skipped >= 2, "{:?}", report.stats);
        let warnings = warnings.lock().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("partial clone")),
            "{warnings:?}"
        );
    }

    /// Regression: every git blob was allocated at its full size before its size was
    /// checked, so one huge blob in history cost its size in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn oversized_blob_is_drained_without_being_held_in_memory() {
        let dir = repo();
        let big = std::fs::File::create(dir.path().join("a-big.bin")).unwrap();
        big.set_len(128 << 20).unwrap();
        // Read after the big blob: the stream must stay in step.
        let mut rng = rand::rngs::StdRng::seed_from_u64(28);
        let (_, text) = layouts(&cred("okx", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join("z.env"), text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "big"]);
        let scanner = Scanner::builder().max_file_size(1 << 20).build();
        let before = super::peak_rss();
        let report = scanner.scan_git_history(dir.path()).unwrap();
        let grown = super::peak_rss().saturating_sub(before);
        assert!(grown < 64 << 20, "peak memory grew by {grown} bytes");
        assert_eq!(report.stats.skipped, 0, "{report:#?}");
        assert_eq!(report.active().count(), 1, "{report:#?}");
        assert_eq!(report.findings[0].path, "z.env");
    }

    #[test]
    fn staged_change_is_found_and_unstaged_one_is_not() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        let (_, staged) = layouts(&cred("kucoin", 0, &mut rng)).remove(0);
        let (_, unstaged) = layouts(&cred("bitfinex", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(".env"), &staged).unwrap();
        git(dir.path(), &["add", ".env"]);
        std::fs::write(dir.path().join("other.env"), &unstaged).unwrap();
        let report = Scanner::new().scan_staged(dir.path()).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        assert_eq!(report.findings[0].exchange, "kucoin");
        assert_eq!(report.findings[0].path, ".env");
        // Staged, then the working copy cleaned without staging: the index still leaks.
        std::fs::write(dir.path().join(".env"), "KUCOIN_API_KEY=\n").unwrap();
        assert!(Scanner::new().scan_staged(dir.path()).unwrap().has_active());
    }

    #[test]
    fn staged_scan_of_a_repository_without_commits() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let (_, text) = layouts(&cred("binance", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(".env"), text).unwrap();
        git(dir.path(), &["add", "."]);
        assert_eq!(
            Scanner::new()
                .scan_staged(dir.path())
                .unwrap()
                .active()
                .count(),
            1
        );
    }

    /// What `install_hooks` made of each hook, in [`keygate_scan::Hook::ALL`]'s order.
    fn installed(repo: &Path) -> Vec<Result<std::path::PathBuf, keygate_scan::Error>> {
        let hooks = keygate_scan::install_hooks(repo).unwrap();
        assert!(hooks
            .iter()
            .map(|(hook, _)| *hook)
            .eq(keygate_scan::Hook::ALL));
        hooks.into_iter().map(|(_, installed)| installed).collect()
    }

    #[test]
    fn installed_hook_blocks_a_commit_with_a_key() {
        let dir = repo();
        let hooks: Vec<_> = installed(dir.path())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for (path, hook) in hooks.iter().zip(keygate_scan::Hook::ALL) {
            assert!(path.ends_with(hook.file_name()), "{}", path.display());
            assert_eq!(std::fs::read_to_string(path).unwrap(), hook.script());
        }
        let hook = &hooks[0];
        // Installing twice is fine; a foreign hook is not overwritten.
        assert!(installed(dir.path()).iter().all(Result::is_ok));
        // The hook runs `keygate scan --staged`; a shim on PATH stands in for the binary,
        // using this crate's library through the test's own logic: exit 1 when the staged
        // scan finds something. The real binary is tested end to end in the CLI tests.
        let bin = tempfile::tempdir().unwrap();
        let shim = bin.path().join("keygate");
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let (_, text) = layouts(&cred("okx", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(".env"), &text).unwrap();
        git(dir.path(), &["add", ".env"]);
        let verdict = Scanner::new().scan_staged(dir.path()).unwrap().exit_code();
        std::fs::write(
            &shim,
            format!("#!/bin/sh\n[ \"$1 $2\" = \"scan --staged\" ] || exit 2\nexit {verdict}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "leak",
            ])
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "commit with a key was not blocked");
        assert_eq!(git(dir.path(), &["rev-list", "--count", "HEAD"]), "1");

        std::fs::write(hook, "#!/bin/sh\nexit 0\n").unwrap();
        assert!(matches!(
            installed(dir.path())[0],
            Err(keygate_scan::Error::HookExists { .. })
        ));
    }

    /// A regression test (from a review): an existing hook that was not UTF-8 (a binary,
    /// a script in Latin-1) read as "no hook" and was overwritten, and a symbolic link at
    /// `pre-commit`, even one pointing nowhere, was written through. Anything there that is
    /// not keygate's own hook is refused and left as it was.
    #[cfg(unix)]
    #[test]
    fn install_hook_refuses_what_is_not_its_own_hook_and_never_writes_through_a_link() {
        use std::os::unix::fs::symlink;
        let dir = repo();
        let hooks = dir.path().join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let hook = hooks.join("pre-commit");
        let refused = || {
            matches!(
                installed(dir.path())[0],
                Err(keygate_scan::Error::HookExists { .. })
            )
        };
        // Not UTF-8.
        let latin1 = b"#!/bin/sh\n# r\xe9sum\xe9 check\nexit 0\n";
        std::fs::write(&hook, latin1).unwrap();
        assert!(refused());
        assert_eq!(std::fs::read(&hook).unwrap(), latin1);
        // Found by review: a hook of the repository's own at one path kept keygate's
        // other hook from being installed. Each is installed on its own.
        assert!(
            hooks.join("commit-msg").is_file(),
            "the other hook was not installed"
        );
        // A dangling link: its target is not created.
        std::fs::remove_file(&hook).unwrap();
        let target = dir.path().join("elsewhere");
        symlink(&target, &hook).unwrap();
        assert!(refused());
        assert!(!target.exists());
        // A link to keygate's own hook is still a link.
        std::fs::write(&target, keygate_scan::Hook::PreCommit.script()).unwrap();
        assert!(refused());
        assert!(std::fs::symlink_metadata(&hook).unwrap().is_symlink());
        // Keygate's own hook, not UTF-8 after a user's edit, is rewritten.
        std::fs::remove_file(&hook).unwrap();
        let mut edited = keygate_scan::Hook::PreCommit.script().as_bytes().to_vec();
        edited.extend_from_slice(b"# \xff\n");
        std::fs::write(&hook, edited).unwrap();
        assert!(installed(dir.path())[0].is_ok());
        assert_eq!(
            std::fs::read_to_string(&hook).unwrap(),
            keygate_scan::Hook::PreCommit.script()
        );
    }

    /// Regression: git quotes a path holding `"` even with `core.quotePath=false`
    /// (`"dir/100% #1? clés \"prod\".env"`), and the quoted form was taken as the path of
    /// the finding and its provenance; and the SARIF URI of such a path was not encoded.
    #[test]
    fn awkward_path_in_history_is_reported_as_it_is_and_encoded_in_sarif() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let (_, text) = layouts(&cred("gate", 0, &mut rng)).remove(0);
        let rel = format!("ünïcode dir#2/{}", super::AWKWARD_NAME);
        std::fs::create_dir_all(dir.path().join("ünïcode dir#2")).unwrap();
        std::fs::write(dir.path().join(&rel), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add"]);
        let staged_dir = repo();
        std::fs::create_dir_all(staged_dir.path().join("ünïcode dir#2")).unwrap();
        std::fs::write(staged_dir.path().join(&rel), &text).unwrap();
        git(staged_dir.path(), &["add", "."]);
        for report in [
            Scanner::new().scan_git_history(dir.path()).unwrap(),
            Scanner::new().scan_staged(staged_dir.path()).unwrap(),
        ] {
            assert_eq!(report.findings.len(), 1, "{report:#?}");
            let f = &report.findings[0];
            // In history the file is still in `HEAD`, so this also checks that the `HEAD`
            // tree's paths are unquoted like the log's (else its path there would be used).
            assert_eq!(f.path, rel);
            if let Some(p) = &f.provenance {
                assert_eq!(p.path, rel);
            }
            assert_eq!(super::sarif_paths(&report), [rel.as_str()]);
        }
    }

    /// A regression test: a binary blob (a bot's SQLite database, committed and then
    /// deleted) was skipped, so `--git` missed the keys in it.
    #[test]
    fn a_key_in_a_binary_file_in_history_is_found() {
        use super::binary::{sqlite_db, Column};
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (key, secret) = (
            super::synth::alnum(&mut rng, 64),
            super::synth::alnum(&mut rng, 64),
        );
        let config = format!("BINANCE_API_KEY={key}\nBINANCE_API_SECRET={secret}\n");
        let db = sqlite_db(
            "CREATE TABLE settings (id INTEGER PRIMARY KEY, name TEXT, value TEXT)",
            &[vec![
                Column::RowId,
                Column::Text(".env"),
                Column::Text(&config),
            ]],
        );
        std::fs::write(dir.path().join("bot.db"), &db).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add database"]);
        let added = git(dir.path(), &["rev-parse", "HEAD"]);
        git(dir.path(), &["rm", "-q", "bot.db"]);
        git(dir.path(), &["commit", "-q", "-m", "remove database"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.stats.skipped, 0, "{report:#?}");
        assert_eq!(report.stats.binary, 1, "{report:#?}");
        assert_eq!(report.active().count(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.path, "bot.db");
        let at = db.windows(64).position(|w| w == secret.as_bytes()).unwrap();
        assert_eq!(f.offset, Some(at as u64));
        assert_eq!(f.provenance.as_ref().unwrap().commit, added);
        assert_eq!(f.parts.len(), 2, "{f:#?}");
    }

    /// Regression: a UTF-16 blob was skipped as binary, so a key committed in a PowerShell
    /// script written by Windows PowerShell was missed in history.
    #[test]
    fn utf16_blob_in_history_is_scanned() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(30);
        let (_, text) = layouts(&cred("okx", 0, &mut rng)).remove(0);
        let text = text.replace('\n', "\r\n");
        std::fs::write(dir.path().join("setup.ps1"), super::utf16(&text, false)).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add"]);
        git(dir.path(), &["rm", "-q", "setup.ps1"]);
        git(dir.path(), &["commit", "-q", "-m", "remove"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.stats.skipped, 0, "{report:#?}");
        assert_eq!(report.active().count(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.path, "setup.ps1");
        let utf8 = Scanner::new().scan_bytes("setup.ps1", text.as_bytes());
        assert_eq!(
            (f.line, &f.fingerprint),
            (utf8[0].line, &utf8[0].fingerprint)
        );
        assert_eq!(f.parts.len(), 3, "{f:#?}");
    }

    /// Regression: a committed file named with escape sequences (`\x1b]0;…\x07`, CSI)
    /// came out of `git log` quoted, was unquoted to its raw bytes, and the human report
    /// printed it as it is, at the finding and in its provenance line: `keygate scan --git`
    /// on someone else's repository wrote their escape sequences to the terminal or CI log.
    #[test]
    fn control_characters_in_a_committed_path_are_escaped_in_human_output() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let (_, text) = layouts(&cred("bybit", 0, &mut rng)).remove(0);
        std::fs::write(dir.path().join(super::CONTROL_NAME), &text).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add"]);
        let staged = repo();
        std::fs::write(staged.path().join(super::CONTROL_NAME), &text).unwrap();
        git(staged.path(), &["add", "."]);
        for report in [
            Scanner::new().scan_git_history(dir.path()).unwrap(),
            Scanner::new().scan_staged(staged.path()).unwrap(),
        ] {
            assert_eq!(report.findings.len(), 1, "{report:#?}");
            assert_eq!(report.findings[0].path, super::CONTROL_NAME);
            super::assert_paths_escaped_for_humans(&report);
        }
        let history = Scanner::new().scan_git_history(dir.path()).unwrap();
        let p = history.findings[0].provenance.as_ref().unwrap();
        assert_eq!(p.path, super::CONTROL_NAME);
        assert!(history.to_human().contains(&format!(
            "introduced in commit {} ({}, author time",
            p.commit,
            super::CONTROL_NAME_SHOWN
        )));
    }

    /// Regression: a blob starting with a UTF-16 BOM was decoded as UTF-16 whatever
    /// followed, so `FF FE` in front of a committed UTF-8 `.env` hid its keys in history.
    #[test]
    fn utf16_bom_in_front_of_a_utf8_blob_does_not_hide_keys() {
        let dir = repo();
        let mut rng = rand::rngs::StdRng::seed_from_u64(32);
        let (name, text) = layouts(&cred("kucoin", 0, &mut rng)).remove(0);
        let data = [&[0xFF, 0xFE][..], text.as_bytes()].concat();
        std::fs::write(dir.path().join(&name), data).unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "add"]);
        let report = Scanner::new().scan_git_history(dir.path()).unwrap();
        assert_eq!(report.active().count(), 1, "{report:#?}");
        let utf8 = Scanner::new().scan_bytes(&name, text.as_bytes());
        let f = &report.findings[0];
        assert_eq!(
            (f.line, &f.fingerprint),
            (utf8[0].line, &utf8[0].fingerprint)
        );
    }
}

/// Values written base64-encoded, as a Kubernetes secret's `data:` holds them.
mod encoded {
    use base64::Engine as _;
    use keygate_scan::{Role, Scanner};
    use rand::SeedableRng;

    use super::synth::{cred, pem_p256, EXCHANGES};

    fn b64(value: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(value)
    }

    /// A regression test: a whole configuration file written base64-encoded (a
    /// Kubernetes secret made with `kubectl create secret generic --from-file`, Helm's
    /// `b64enc`) was never decoded: only single values and PEM blocks were.
    #[test]
    fn keys_in_a_whole_file_written_base64_encoded_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(81);
        let (key, secret) = (
            super::synth::alnum(&mut rng, 64),
            super::synth::alnum(&mut rng, 64),
        );
        let config = format!(
            "{{\n  \"max_open_trades\": 3,\n  \"stake_currency\": \"USDT\",\n  \
             \"exchange\": {{\n    \"name\": \"binance\",\n    \"key\": \"{key}\",\n    \
             \"secret\": \"{secret}\"\n  }}\n}}\n"
        );
        for padding in ["", " ", "  "] {
            // The name at each of the three places in a group of three bytes.
            let config = format!("{padding}{config}");
            let manifest = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bot-config\ntype: Opaque\n\
                 data:\n  config.json: {}\n",
                b64(&config)
            );
            let scanner = Scanner::builder().redact(false).build();
            let f = scanner.scan_bytes("deploy/secret.yaml", manifest.as_bytes());
            assert_eq!(f.len(), 1, "{manifest}\n{f:#?}");
            assert_eq!(f[0].title, "Binance API key + secret (base64-encoded)");
            assert_eq!((f[0].line, f[0].column), (7, 16), "{f:#?}");
            let mut values: Vec<_> = f[0].parts.iter().filter_map(|p| p.value.clone()).collect();
            values.sort();
            let mut want = vec![key.clone(), secret.clone()];
            want.sort();
            assert_eq!(values, want);
            assert!(f[0]
                .parts
                .iter()
                .all(|p| p.encoding.as_deref() == Some("base64")));
        }
        // Base64 of anything else (bytes, text without a name) finds nothing.
        let noise: Vec<u8> = (0..30_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let text = format!(
            "data:\n  blob: {}\n",
            base64::engine::general_purpose::STANDARD.encode(&noise)
        );
        assert!(Scanner::new()
            .scan_bytes("secret.yaml", text.as_bytes())
            .is_empty());
    }

    /// Found by review: a whole config written base64-encoded was decoded only where it
    /// encodes an exchange's name of five letters or more, so a Kubernetes secret named
    /// `okx-bot-config`, or kept under `okx/`, whose `config.json` holds an OKX key,
    /// secret and passphrase (and names no exchange, or `"gateio"`), was never decoded.
    /// A long base64 run near an exchange's keyword, or in a file whose path names one,
    /// is decoded too, with that exchange as its context; once, however it is found.
    #[test]
    fn a_whole_file_written_base64_encoded_is_decoded_near_its_exchange_s_name() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(82);
        let scanner = Scanner::builder().redact(false).build();
        for exchange in ["okx", "gate", "binance"] {
            let c = cred(exchange, 0, &mut rng);
            let config = format!(
                "{{\n  \"apiKey\": \"{}\",\n  \"secret\": \"{}\",\n  \"password\": \"Hunter2-x\"\n}}\n",
                c.key, c.secret
            );
            let manifest = |name: &str| {
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\n\
                     data:\n  config.json: {}\n",
                    b64(&config)
                )
            };
            for (path, text) in [
                (
                    "deploy/secret.yaml",
                    manifest(&format!("{exchange}-bot-config")),
                ),
                (
                    &*format!("deploy/{exchange}/secret.yaml"),
                    manifest("bot-config"),
                ),
            ] {
                let f = scanner.scan_bytes(path, text.as_bytes());
                assert_eq!(f.len(), 1, "{exchange} {path}: {text}\n{f:#?}");
                assert_eq!(f[0].exchange, exchange, "{f:#?}");
                assert!(f[0].title.ends_with("(base64-encoded)"), "{}", f[0].title);
                assert!(f[0]
                    .parts
                    .iter()
                    .any(|p| p.value.as_deref() == Some(&c.secret)));
            }
        }
        // Without a name near it or in its path, such a config is not decoded.
        let c = cred("okx", 0, &mut rng);
        let config = format!(
            "{{\"apiKey\": \"{}\", \"secret\": \"{}\"}}\n",
            c.key, c.secret
        );
        let far = format!(
            "# okx\n{}data:\n  config.json: {}\n",
            "filler: 1\n".repeat(20),
            b64(&config)
        );
        assert!(scanner
            .scan_bytes("deploy/secret.yaml", far.as_bytes())
            .is_empty());
    }

    /// Found by review: a whole `.env` written base64-encoded straight after `NAME=`
    /// (`BOT_ENV_B64=$(base64 -w0 .env)`) was read as one run from `NAME`, through the
    /// `=`, which did not decode: its keys went unseen. With a space after the `=`, or
    /// quotes, they were found.
    #[test]
    fn a_file_written_base64_encoded_right_after_an_equals_sign_is_decoded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(84);
        let (key, secret) = (
            super::synth::alnum(&mut rng, 64),
            super::synth::alnum(&mut rng, 64),
        );
        let env = format!("BINANCE_API_KEY={key}\nBINANCE_API_SECRET={secret}\n");
        let scanner = Scanner::builder().redact(false).build();
        for layout in [
            "CONFIG={}",
            "CONFIG= {}",
            "export BOT_ENV_B64={}",
            "X=\"{}\"",
        ] {
            let text = format!("# binance\n{}\n", layout.replace("{}", &b64(&env)));
            let f = scanner.scan_bytes("deploy/bot.env", text.as_bytes());
            assert_eq!(f.len(), 1, "{text}\n{f:#?}");
            assert_eq!(f[0].title, "Binance API key + secret (base64-encoded)");
            assert!(f[0]
                .parts
                .iter()
                .any(|p| p.value.as_deref() == Some(secret.as_str())));
        }
    }

    /// Found by review: text decoded near an exchange's name was read as if its path
    /// named the exchange, so a notebook's data URI of a CSV of upper-case hex ids, in a
    /// cell beside `ccxt.okx()`, gave "OKX API secrets". Only labelled values take the
    /// name now.
    #[test]
    fn unlabelled_values_in_text_decoded_near_a_name_are_not_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(83);
        let rows: String = (0..20)
            .map(|n| {
                format!(
                    "{n},{}\n",
                    super::synth::hex_lower(&mut rng, 32).to_uppercase()
                )
            })
            .collect();
        let csv = format!("row,etag\n{rows}");
        let notebook = format!(
            "ex = ccxt.okx()\n<a href=\"data:text/csv;base64,{}\">download</a>\n",
            b64(&csv)
        );
        let f = Scanner::new().scan_bytes("analysis.html", notebook.as_bytes());
        assert!(f.is_empty(), "{f:#?}");
    }

    /// A regression test: a key and secret committed in a Kubernetes secret were missed,
    /// their base64 matching no rule's shape.
    #[test]
    fn every_exchange_is_found_in_a_kubernetes_secret() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let scanner = Scanner::builder().redact(false).build();
        for exchange in EXCHANGES {
            // Coinbase's Ed25519 key: its id and base64 secret fit on one line each.
            let c = cred(exchange, 1, &mut rng);
            let manifest = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}-bot\ntype: Opaque\ndata:\n  \
                 {env}_API_KEY: {}\n  {env}_API_SECRET: {}\n  LOG_LEVEL: {}\n",
                c.id,
                b64(&c.key),
                b64(&c.secret),
                b64("debug"),
                env = c.env,
            );
            let findings = scanner.scan_bytes("deploy/secret.yaml", manifest.as_bytes());
            assert_eq!(findings.len(), 1, "{exchange}: {manifest}\n{findings:#?}");
            let f = &findings[0];
            assert_eq!(f.exchange, *exchange);
            assert!(f.is_active());
            assert!(f.title.ends_with("(base64-encoded)"), "{}", f.title);
            let parts = [
                (Role::Key, &c.key, 7, "_API_KEY"),
                (Role::Secret, &c.secret, 8, "_API_SECRET"),
            ];
            for (role, value, line, label) in parts {
                let part = f.parts.iter().find(|p| p.role == role);
                let part = part.unwrap_or_else(|| panic!("{exchange}: no {role:?} in {f:#?}"));
                assert_eq!(part.value.as_ref(), Some(value), "{exchange}");
                assert_eq!(part.encoding.as_deref(), Some("base64"));
                // `  ENV_API_KEY: ` comes before the encoded value.
                let column = 2 + c.env.len() + label.len() + 2 + 1;
                assert_eq!((part.line, part.column), (line, column), "{exchange}");
            }
            // The finding is the key's, however it was written: one fingerprint for both.
            let plain = format!("{}:\n  api_key: {}\n  secret: {}\n", c.id, c.key, c.secret);
            let plain = scanner.scan_bytes("config.yaml", plain.as_bytes());
            assert_eq!(plain.len(), 1, "{exchange}: {plain:#?}");
            assert_eq!(plain[0].fingerprint, f.fingerprint, "{exchange}");
        }
    }

    /// `echo $KEY | base64` and `kubectl create secret --from-file` encode a line end too.
    #[test]
    fn a_value_encoded_with_its_line_end_is_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let scanner = Scanner::builder().redact(false).build();
        for end in ["\n", "\r\n"] {
            let c = cred("binance", 0, &mut rng);
            let manifest = format!(
                "data:\n  BINANCE_API_KEY: {}\n  BINANCE_API_SECRET: {}\n",
                b64(&format!("{}{end}", c.key)),
                b64(&format!("{}{end}", c.secret)),
            );
            let findings = scanner.scan_bytes("secret.yaml", manifest.as_bytes());
            assert_eq!(findings.len(), 1, "{end:?}: {findings:#?}");
            let values: Vec<_> = findings[0].parts.iter().map(|p| p.value.clone()).collect();
            assert_eq!(values, [Some(c.key), Some(c.secret)], "{end:?}");
        }
    }

    #[test]
    fn a_passphrase_beside_encoded_values_is_decoded_too() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(43);
        let scanner = Scanner::builder().redact(false).build();
        for exchange in ["okx", "kucoin"] {
            let c = cred(exchange, 0, &mut rng);
            let passphrase = c.passphrase.clone().unwrap();
            let manifest = format!(
                "data:\n  {env}_API_KEY: {}\n  {env}_API_SECRET: {}\n  {env}_API_PASSPHRASE: {}\n",
                b64(&c.key),
                b64(&c.secret),
                b64(&passphrase),
                env = c.env,
            );
            let findings = scanner.scan_bytes("secret.yaml", manifest.as_bytes());
            assert_eq!(findings.len(), 1, "{exchange}: {findings:#?}");
            let part = findings[0]
                .parts
                .iter()
                .find(|p| p.role == Role::Passphrase);
            let part = part.unwrap_or_else(|| panic!("{exchange}: {findings:#?}"));
            assert_eq!(part.value.as_ref(), Some(&passphrase), "{exchange}");
            assert_eq!(part.encoding.as_deref(), Some("base64"), "{exchange}");
        }
    }

    /// Base64 of a 64-character key has the shape of a Kraken private key (88 base64
    /// characters, 64 bytes): where both exchanges are named, the decoded reading wins.
    #[test]
    fn the_decoded_reading_wins_over_a_random_secret_of_the_encoded_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(44);
        let c = cred("binance", 0, &mut rng);
        let text = format!(
            "# kraken and binance bots\nKRAKEN_OR_BINANCE_SECRET: {}\n",
            b64(&c.secret)
        );
        let findings = Scanner::new().scan_bytes("secret.yaml", text.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].exchange, "binance", "{findings:#?}");
    }

    /// Line and column (from 1) where `needle` first stands in `text`.
    fn place_of(text: &str, needle: &str) -> (usize, usize) {
        let offset = text.find(needle).unwrap();
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        (
            text[..offset].matches('\n').count() + 1,
            offset - line_start + 1,
        )
    }

    /// A regression test: a Coinbase CDP key whose PEM file was put in a Kubernetes
    /// secret, or encoded with `base64` (lines wrapped at 76) or `openssl base64` (at 64),
    /// was missed: the encoded block matched no rule.
    #[test]
    fn a_pem_key_written_base64_encoded_is_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(46);
        let scanner = Scanner::builder().redact(false).build();
        let c = cred("coinbase", 0, &mut rng);
        let encoded = b64(&c.secret);
        let wrapped = |width: usize, end: &str, indent: &str| -> String {
            let lines = encoded.as_bytes().chunks(width);
            lines
                .map(|l| format!("{indent}{}{end}", std::str::from_utf8(l).unwrap()))
                .collect()
        };
        let layouts = [
            (
                "deploy/secret.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: coinbase-bot\ndata:\n  \
                     COINBASE_KEY_NAME: {}\n  cdp_api_key.pem: {encoded}\n",
                    b64(&c.key)
                ),
                true,
            ),
            ("keys/cdp_api_key.pem.b64", wrapped(76, "\n", ""), false),
            ("keys/cdp_api_key.pem.b64", wrapped(64, "\r\n", ""), false),
            (
                "values.yaml",
                format!(
                    "coinbase:\n  keyName: {}\n  privateKeyBase64: |\n{}  logLevel: debug\n",
                    c.key,
                    wrapped(76, "\n", "    ")
                ),
                true,
            ),
        ];
        for (path, text, with_key) in layouts {
            let findings = scanner.scan_bytes(path, text.as_bytes());
            assert_eq!(findings.len(), 1, "{path}:\n{text}\n{findings:#?}");
            let f = &findings[0];
            assert_eq!(f.exchange, "coinbase", "{path}");
            assert!(f.title.ends_with("(base64-encoded)"), "{}", f.title);
            let secret = f.parts.iter().find(|p| p.role == Role::Secret).unwrap();
            assert_eq!(secret.value.as_deref(), Some(c.secret.trim_end()), "{path}");
            assert_eq!(secret.encoding.as_deref(), Some("base64"), "{path}");
            let first_line = &encoded[..60];
            assert_eq!((secret.line, secret.column), place_of(&text, first_line));
            let key = f.parts.iter().find(|p| p.role == Role::Key);
            assert_eq!(
                key.and_then(|k| k.value.as_deref()),
                with_key.then_some(c.key.as_str())
            );
        }
    }

    #[test]
    fn an_encoded_pem_key_is_no_finding_without_its_exchange_or_whole() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(47);
        let scanner = Scanner::new();
        // A TLS key, as every Kubernetes TLS secret holds one: no exchange named.
        let tls = format!(
            "kind: Secret\ntype: kubernetes.io/tls\ndata:\n  tls.key: {}\n",
            b64(&pem_p256(&mut rng))
        );
        let findings = scanner.scan_bytes("deploy/tls.yaml", tls.as_bytes());
        assert!(findings.is_empty(), "{findings:#?}");
        // Cut short, or followed on the next line by a word: nothing decodes to a key,
        // and nothing panics.
        let encoded = b64(&pem_p256(&mut rng));
        for text in [
            format!("coinbase:\n  key: {}\n", &encoded[..encoded.len() / 2]),
            format!("coinbase:\n  key: {}\n", &encoded[..76]),
            format!("coinbase:\n  key: {}\nbinance\n", &encoded[..76]),
            format!("coinbase:\n  key: {}", &encoded[..14]),
        ] {
            let findings = scanner.scan_bytes("values.yaml", text.as_bytes());
            assert!(findings.is_empty(), "{text}\n{findings:#?}");
        }
        // A whole one followed on the next line by a word is still found, on one line
        // or wrapped, its last line full or not.
        let text = format!("coinbase:\n  key: {encoded}\nbinance\n");
        let findings = scanner.scan_bytes("values.yaml", text.as_bytes());
        assert_eq!(findings.len(), 1, "{text}\n{findings:#?}");
        for width in [64, 76] {
            let padded = encoded.trim_end_matches('=');
            let full = &padded[..padded.len() / width * width];
            let wrapped: String = full
                .as_bytes()
                .chunks(width)
                .map(|l| format!("{}\n", std::str::from_utf8(l).unwrap()))
                .collect();
            let rest = &encoded[full.len()..];
            // A word of seven letters: base64 alone on its line, which does not decode.
            for tail in [format!("{rest}\nsummary\n"), "summary\n".to_owned()] {
                let text = format!("# coinbase\n{wrapped}{tail}");
                let findings = scanner.scan_bytes("key.b64", text.as_bytes());
                let whole = tail.len() > "summary\n".len() || rest.is_empty();
                assert_eq!(findings.len(), usize::from(whole), "{text}\n{findings:#?}");
            }
        }
    }

    #[test]
    fn other_encoded_values_are_not_findings() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(45);
        let scanner = Scanner::new();
        let sha256_hex = super::synth::hex_lower(&mut rng, 64);
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: binance-bot\ndata:\n  \
             DATABASE_URL: {}\n  BINANCE_TESTNET: {}\n  BINANCE_NOTE: {}\n  \
             BINANCE_BUNDLE_SHA256: {}\n  KUCOIN_ORDER_ID: {}\n  BINANCE_LAST_ORDER_IDS: {}\n",
            b64("postgres://bot:hunter2@db.internal:5432/trades"),
            b64("true"),
            b64("rotate the keys of the trading account every ninety days"),
            b64(&sha256_hex),
            b64(&super::synth::uuid(&mut rng)),
            b64(&super::synth::alnum(&mut rng, 64)),
        );
        let findings = scanner.scan_bytes("deploy/secret.yaml", manifest.as_bytes());
        assert!(findings.is_empty(), "{findings:#?}");
    }
}
