//! The HTTPS listener's certificate: checked when read, replaced in place when renewed.
//!
//! A certificate is renewed every few weeks (ACME's are valid for 90 days at most), and a
//! gateway that had to be restarted for it would drop the bots' connections each time.
//! [`ListenerCertificate`] is what every handshake asks for the certificate to present;
//! [`ListenerCertificate::replace`] swaps in a renewed one for the handshakes that
//! follow, while connections already made go on with the one they were made with.
//!
//! A [`Certified`] is a chain and a private key that go together (the key is the one of
//! the chain's first certificate), with that certificate's validity read from it, so that
//! keygate can say when it expires instead of letting bots find out.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::Error;

/// A certificate chain and the private key of its first certificate, checked to go
/// together.
pub struct Certified {
    key: Arc<CertifiedKey>,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
}

impl Certified {
    /// Reads a chain (the server's certificate first) and a private key, both in PEM.
    /// Refuses a file that holds no certificate, and a key that does not read or that is
    /// not the certificate's; the key's bytes never appear in an error. The validity is
    /// read as leniently as rustls reads the rest: a certificate whose dates do not read
    /// is taken, without them.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Certified, Error> {
        let refused = |what: &str, e: &dyn fmt::Display| Error::Tls(format!("{what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused("the certificate does not read as PEM", &e))?;
        let Some(leaf) = chain.first() else {
            return Err(Error::Tls(
                "the certificate file holds no certificate".into(),
            ));
        };
        let (not_before, not_after) = validity(leaf.as_ref());
        // The key's own error would not quote it, but say nothing of it all the same.
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| Error::Tls("the private key does not read as PEM".into()))?;
        let key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| refused("the certificate and key do not go together", &e))?;
        Ok(Certified {
            key: Arc::new(key),
            not_before,
            not_after,
        })
    }

    /// When the server's certificate (the chain's first) stops being valid, if its
    /// validity reads.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// When the server's certificate starts being valid, if its validity reads.
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
    }
}

impl fmt::Debug for Certified {
    // Not derived: the signing key is no one's business, even as a type name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certified")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The certificate an HTTPS listener presents, which [`ListenerCertificate::replace`]
/// changes for the handshakes that follow.
pub struct ListenerCertificate {
    current: RwLock<Presented>,
}

/// The certificate presented, and when it stops being valid.
struct Presented {
    key: Arc<CertifiedKey>,
    not_after: Option<SystemTime>,
}

impl ListenerCertificate {
    /// A listener certificate presenting `first` until it is replaced.
    pub fn new(first: Certified) -> Arc<ListenerCertificate> {
        Arc::new(ListenerCertificate {
            current: RwLock::new(Presented {
                key: first.key,
                not_after: first.not_after,
            }),
        })
    }

    /// Presents `next` from the next handshake on.
    pub fn replace(&self, next: Certified) {
        // A poisoned lock still holds a whole value: a panic cannot leave half of one.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Presented {
            key: next.key,
            not_after: next.not_after,
        };
    }

    /// When the certificate presented now stops being valid, if its validity reads.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .not_after
    }

    /// The TLS configuration of a listener presenting this certificate: TLS 1.2 and 1.3
    /// with rustls's safe defaults (ring), HTTP/1.1 by ALPN, no client certificates.
    pub fn tls_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("protocol versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ListenerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()).key,
        ))
    }
}

impl fmt::Debug for ListenerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerCertificate")
            .finish_non_exhaustive()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The validity (`notBefore`, `notAfter`) of a certificate in DER, each `None` when it
/// does not read. Only the structure up to `tbsCertificate.validity` is walked, as
/// lengths and tags: a field RFC 5280 bounds but webpki takes (a serial of more than 20
/// bytes, say) is skipped like any other, and a date before 1970 reads.
fn validity(der: &[u8]) -> (Option<SystemTime>, Option<SystemTime>) {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let read = || {
        let (SEQUENCE, certificate, _) = tlv(der)? else {
            return None;
        };
        let (SEQUENCE, mut tbs, _) = tlv(certificate)? else {
            return None;
        };
        if tbs.first() == Some(&VERSION) {
            tbs = tlv(tbs)?.2;
        }
        // The serial number, the signature algorithm and the issuer.
        for _ in 0..3 {
            tbs = tlv(tbs)?.2;
        }
        let (SEQUENCE, validity, _) = tlv(tbs)? else {
            return None;
        };
        let (before_tag, before, rest) = tlv(validity)?;
        let (after_tag, after, _) = tlv(rest)?;
        Some((time(before_tag, before), time(after_tag, after)))
    };
    read().unwrap_or((None, None))
}

/// The first DER element of `input`: its tag, its contents and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (octets, rest) = rest.split_at(octets);
        let len = octets
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A time as RFC 5280 writes one: UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or
/// GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, contents: &[u8]) -> Option<SystemTime> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let digits = std::str::from_utf8(contents).ok()?.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |text: &str| text.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (number(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |at: usize| number(&rest[at..at + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, counting whole
/// 400-year eras (146 097 days each) from 0000-03-01, so that a leap day ends a year.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_after: (i32, u8, u8)) -> rcgen::CertifiedKey {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        rcgen::CertifiedKey { cert, key_pair }
    }

    #[test]
    fn the_validity_is_read_from_the_certificate() {
        let made = certificate((2031, 3, 4));
        let certified = Certified::from_pem(
            made.cert.pem().as_bytes(),
            made.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        // 2031-03-04T00:00:00Z and 2020-01-01T00:00:00Z.
        assert_eq!(
            certified.not_after(),
            Some(UNIX_EPOCH + Duration::from_secs(1_930_348_800))
        );
        assert_eq!(
            certified.not_before(),
            Some(UNIX_EPOCH + Duration::from_secs(1_577_836_800))
        );
    }

    /// From a review: the whole certificate was decoded under RFC 5280's strict profile,
    /// which refused what rustls takes (a date before 1970, a serial of 24 bytes), so a
    /// certificate serve took before stopped it starting.
    #[test]
    fn a_certificate_rustls_takes_is_taken_whatever_its_serial_and_dates() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(1960, 1, 1);
        params.not_after = rcgen::date_time_ymd(2050, 6, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42; 24]));
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let certified =
            Certified::from_pem(cert.pem().as_bytes(), key_pair.serialize_pem().as_bytes())
                .unwrap();
        // 1960-01-01 and 2050-06-01 (a GeneralizedTime: past UTCTime's 2049).
        assert_eq!(
            certified.not_before(),
            Some(UNIX_EPOCH - Duration::from_secs(315_619_200))
        );
        assert_eq!(
            certified.not_after(),
            Some(UNIX_EPOCH + Duration::from_secs(2_537_654_400))
        );
    }

    #[test]
    fn times_read_as_rfc_5280_writes_them_and_nothing_else() {
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(time(0x17, b"000229120000Z"), at(951_825_600));
        assert_eq!(time(0x18, b"20240229235960Z"), at(1_709_251_200));
        for (tag, bad) in [
            (0x17, &b"0002291200Z"[..]),
            (0x17, b"000229120000"),
            (0x17, b"001329120000Z"),
            (0x18, b"000229120000Z"),
            (0x17, b"00022912000+Z"),
            (0x04, b"000229120000Z"),
        ] {
            assert_eq!(time(tag, bad), None, "{bad:?}");
        }
        assert_eq!(validity(b"\x30\x03\x02\x01"), (None, None));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_being_quoted() {
        let made = certificate((2031, 3, 4));
        let other = certificate((2031, 3, 4));
        let key_pem = other.key_pair.serialize_pem();
        let refused = Certified::from_pem(made.cert.pem().as_bytes(), key_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("do not go together"), "{refused}");
        let key_line = key_pem.lines().nth(1).unwrap();
        assert!(!refused.contains(key_line), "{refused}");
    }

    #[test]
    fn an_empty_chain_and_a_bad_key_are_refused() {
        let made = certificate((2031, 3, 4));
        let key = made.key_pair.serialize_pem();
        let empty = Certified::from_pem(b"", key.as_bytes()).unwrap_err();
        assert!(empty.to_string().contains("no certificate"), "{empty}");
        let bad_key = Certified::from_pem(made.cert.pem().as_bytes(), b"not a key").unwrap_err();
        assert!(bad_key.to_string().contains("private key"), "{bad_key}");
    }

    #[test]
    fn a_replaced_certificate_is_presented_from_then_on() {
        let first = certificate((2031, 3, 4));
        let second = certificate((2032, 5, 6));
        let read = |made: &rcgen::CertifiedKey| {
            Certified::from_pem(
                made.cert.pem().as_bytes(),
                made.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap()
        };
        let listener = ListenerCertificate::new(read(&first));
        let presented = |listener: &ListenerCertificate| {
            listener
                .current
                .read()
                .unwrap()
                .key
                .end_entity_cert()
                .unwrap()
                .to_vec()
        };
        assert_eq!(presented(&listener), first.cert.der().to_vec());
        listener.replace(read(&second));
        assert_eq!(presented(&listener), second.cert.der().to_vec());
        // 2032-05-06T00:00:00Z.
        assert_eq!(
            listener.not_after(),
            Some(UNIX_EPOCH + Duration::from_secs(1_967_414_400))
        );
    }
}
