//! Secret types: locked in memory, zeroized on drop, never printed, compared in
//! constant time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Secret bytes. No `Debug`, no `Display`; read them with [`SecretBytes::expose_secret`].
///
/// Their memory is locked (`mlock`), so that the kernel never writes them to swap, and
/// zeroed before it is unlocked and freed.
pub struct SecretBytes {
    bytes: Zeroizing<Vec<u8>>,
    pages: LockedPages,
}

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when the value drops.
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        let pages = LockedPages::lock(bytes.as_ptr(), bytes.capacity());
        SecretBytes {
            bytes: Zeroizing::new(bytes),
            pages,
        }
    }

    /// `len` bytes that `fill` writes into memory already locked and zeroed, so that the
    /// secret is never anywhere unlocked.
    pub(crate) fn filled<E>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<SecretBytes, E> {
        let mut secret = SecretBytes::new(vec![0; len]);
        fill(&mut secret.bytes)?;
        Ok(secret)
    }

    /// The secret itself. Every call site is a place a secret is used: keep them few.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.bytes.as_slice().ct_eq(other).into()
    }

    /// The bytes as a UTF-8 secret string, or `None` when they are not UTF-8.
    pub fn into_string(self) -> Option<SecretString> {
        std::str::from_utf8(&self.bytes)
            .ok()
            .map(|s| SecretString::new(s.to_owned()))
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> SecretBytes {
        SecretBytes::new(self.bytes.to_vec())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // Zeroed while still locked, unlocked while still allocated, then freed.
        self.bytes.zeroize();
        self.pages.unlock();
    }
}

/// A secret string (an API secret, a passphrase). No `Debug`, no `Display`. Locked in
/// memory and zeroized as [`SecretBytes`] are.
pub struct SecretString {
    text: Zeroizing<String>,
    pages: LockedPages,
}

impl SecretString {
    /// Takes ownership of `s`; it is zeroized when the value drops.
    pub fn new(s: String) -> SecretString {
        let pages = LockedPages::lock(s.as_ptr(), s.capacity());
        SecretString {
            text: Zeroizing::new(s),
            pages,
        }
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.text.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl Clone for SecretString {
    fn clone(&self) -> SecretString {
        SecretString::new(self.text.as_str().to_owned())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.text.zeroize();
        self.pages.unlock();
    }
}

/// Whether every secret so far could be locked in memory. `false` once one could not
/// (`RLIMIT_MEMLOCK` reached, or a system without `mlock`): that secret, and others on
/// its pages, may then be swapped out. Worth a warning at start-up.
pub fn secrets_locked() -> bool {
    !LOCK_FAILED.load(Ordering::Relaxed)
}

static LOCK_FAILED: AtomicBool = AtomicBool::new(false);

/// The pages of one secret's buffer, each locked while any secret lies on it.
///
/// `munlock` unlocks a page whatever else lies on it, so pages are counted: a page is
/// locked when the first secret on it arrives and unlocked when the last one leaves.
struct LockedPages {
    first: usize,
    count: usize,
}

/// A page some secret lies on.
struct Page {
    /// How many secrets lie on it.
    secrets: usize,
    /// Its lock, when `mlock` took: held only to be dropped, which unlocks the page.
    _lock: Option<region::LockGuard>,
}

/// Every page some secret lies on, by page number.
fn locked_pages() -> MutexGuard<'static, BTreeMap<usize, Page>> {
    static PAGES: Mutex<BTreeMap<usize, Page>> = Mutex::new(BTreeMap::new());
    PAGES
        .lock()
        // Every change under the lock is one insert, count or remove.
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LockedPages {
    fn lock(start: *const u8, len: usize) -> LockedPages {
        if len == 0 {
            return LockedPages { first: 0, count: 0 };
        }
        let page = region::page::size();
        let first = start as usize / page;
        let count = (start as usize + len - 1) / page - first + 1;
        let mut pages = locked_pages();
        for index in first..first + count {
            let entry = pages.entry(index).or_insert_with(|| {
                let lock = region::lock((index * page) as *const u8, page).ok();
                if lock.is_none() {
                    LOCK_FAILED.store(true, Ordering::Relaxed);
                }
                Page {
                    secrets: 0,
                    _lock: lock,
                }
            });
            entry.secrets += 1;
        }
        LockedPages { first, count }
    }

    /// Gives up this secret's hold on its pages; the last one to leave a page unlocks it.
    fn unlock(&mut self) {
        let mut pages = locked_pages();
        for index in self.first..self.first + self.count {
            if let Some(entry) = pages.get_mut(&index) {
                entry.secrets -= 1;
                if entry.secrets == 0 {
                    pages.remove(&index);
                }
            }
        }
        self.count = 0;
    }
}

/// Shows at most the first and last four characters of an identifier (`vmPU…eh8A`), and
/// nothing of one shorter than 12 characters.
///
/// Made of slices of `s`: a copy of it in characters, grown as it is read, would leave
/// the whole of it behind, unwiped (it is a real API key, often).
pub fn redact(s: &str) -> String {
    let count = s.chars().count();
    if count < 12 {
        return "…".to_owned();
    }
    let at = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    format!("{}…{}", &s[..at(4)], &s[at(count - 4)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keeps_four_each_side() {
        assert_eq!(
            redact("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"),
            "vmPU…Eh8A"
        );
        assert_eq!(redact("short"), "…");
        assert_eq!(redact("αβγδ-éèêë-ωψχφ"), "αβγδ…ωψχφ");
        assert_eq!(redact("123456789012"), "1234…9012");
        assert_eq!(redact("12345678901"), "…");
    }

    fn held(secret: &[u8]) -> Vec<usize> {
        let page = region::page::size();
        let first = secret.as_ptr() as usize / page;
        let last = (secret.as_ptr() as usize + secret.len() - 1) / page;
        let pages = locked_pages();
        (first..=last)
            .filter(|p| pages.get(p).is_some_and(|page| page.secrets > 0))
            .collect()
    }

    #[test]
    fn a_page_stays_locked_while_any_secret_lies_on_it() {
        // Small buffers allocated together share pages more often than not.
        let a = SecretBytes::new(vec![1; 48]);
        let b = SecretBytes::new(vec![2; 48]);
        let c = b.clone();
        assert!(!held(a.expose_secret()).is_empty());
        assert!(!held(b.expose_secret()).is_empty());
        let b_pages = held(b.expose_secret()).len();
        drop(a);
        drop(c);
        assert_eq!(held(b.expose_secret()).len(), b_pages, "b lost a page lock");
        if cfg!(target_os = "linux") && secrets_locked() {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let locked_kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            assert!(locked_kb > 0, "{status}");
        }
    }

    #[test]
    fn secrets_compare_by_value() {
        let s = SecretString::new("abc".into());
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
    }
}
