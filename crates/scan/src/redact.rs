//! Redaction: at most the first and last four characters of a value are ever shown.

/// Shortens a secret for display: `abcd…wxyz` for long values, less for short ones,
/// the header only for PEM blocks.
pub fn redact(value: &str) -> String {
    if let Some(rest) = value.strip_prefix("-----BEGIN ") {
        let label = rest.split("-----").next().unwrap_or("PRIVATE KEY");
        return format!("-----BEGIN {label}-----…");
    }
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let keep = match n {
        0..=11 => 0,
        12..=19 => 2,
        _ => 4,
    };
    if keep == 0 {
        return "…".to_owned();
    }
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[n - keep..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn never_more_than_four_each_side() {
        assert_eq!(
            redact("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"),
            "vmPU…Eh8A"
        );
        assert_eq!(redact("abcdefghijklmnop"), "ab…op");
        assert_eq!(redact("short"), "…");
        assert_eq!(
            redact("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----"),
            "-----BEGIN EC PRIVATE KEY-----…"
        );
    }
}
