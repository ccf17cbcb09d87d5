//! The framing of an encrypted secrets file (`store = "dpapi_file"`): a header line naming the
//! format and its version, then the ciphertext in base64, 76 characters a line.
//!
//! ```text
//! mailgrant-sealed-secrets 1 dpapi-machine
//! AQAAANCMnd8BFdERjHoAwE/Cl+sBAAAA...
//! ```
//!
//! The framing is platform-independent and tested with a stand-in cipher; the real cipher
//! (DPAPI, machine scope) is in `store::windows`. A damaged file is reported as such (typed
//! [`FrameError`]), never a panic, and an error never quotes the file's content.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// First word of the header line.
pub const MAGIC: &str = "mailgrant-sealed-secrets";
/// The framing version this mailgrant writes and reads.
pub const VERSION: u32 = 1;
/// The cipher named in the header.
pub const DPAPI_MACHINE: &str = "dpapi-machine";
const LINE: usize = 76;

/// Encrypts and decrypts whole secrets files.
pub trait Cipher {
    /// The name written in the header (`dpapi-machine`).
    fn name(&self) -> &'static str;
    /// Encrypts `plain`.
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CipherError>;
    /// Decrypts what [`Cipher::seal`] made.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CipherError>;
}

/// The cipher failed; `code` is the system's error number when there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed{}", code.map(|c| format!(" (system error {c})")).unwrap_or_default())]
pub struct CipherError {
    /// `encrypt` or `decrypt`.
    pub operation: &'static str,
    /// The system's error code (`GetLastError`).
    pub code: Option<u32>,
}

/// Why a sealed file cannot be unframed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The file does not start with the header line.
    #[error("it does not start with the `{MAGIC}` header line")]
    NotSealed,
    /// The header names a version this mailgrant does not read.
    #[error("it is sealed with format version {found}; this mailgrant reads version {VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },
    /// The header names another cipher.
    #[error("it is sealed with `{found}`, not `{expected}`")]
    OtherCipher {
        /// The cipher named in the file.
        found: String,
        /// The one this store uses.
        expected: &'static str,
    },
    /// The body is not base64 or is empty.
    #[error("its content is damaged (line {line} is not base64)")]
    DamagedBody {
        /// 1-based line in the file.
        line: usize,
    },
    /// There is no content after the header.
    #[error("it has a header but no content")]
    Empty,
    /// The file is sealed, and this platform has no DPAPI to open it.
    #[error("it is encrypted with Windows DPAPI, which only Windows can decrypt")]
    WindowsOnly,
    /// Decryption failed (another machine's file, or altered ciphertext).
    #[error("it cannot be decrypted on this machine: {0}")]
    Cipher(CipherError),
}

/// True when `bytes` look like a sealed file (the header's first word), so a reader can tell a
/// sealed file from a plain TOML one.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC.as_bytes())
}

/// Encrypts `plain` and frames it.
pub fn seal(cipher: &dyn Cipher, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
    let sealed = cipher.seal(plain)?;
    let body = STANDARD.encode(sealed);

    let mut text = format!("{MAGIC} {VERSION} {}\n", cipher.name());
    for chunk in body.as_bytes().chunks(LINE) {
        text.push_str(&String::from_utf8_lossy(chunk));
        text.push('\n');
    }
    Ok(text.into_bytes())
}

/// Unframes and decrypts what [`seal`] wrote.
pub fn open(cipher: &dyn Cipher, bytes: &[u8]) -> Result<Vec<u8>, FrameError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FrameError::NotSealed)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let mut words = header.split_whitespace();
    if words.next() != Some(MAGIC) {
        return Err(FrameError::NotSealed);
    }
    let version = words.next().unwrap_or_default();
    if version != VERSION.to_string() {
        return Err(FrameError::UnsupportedVersion { found: shorten(version) });
    }
    let name = words.next().unwrap_or_default();
    if name != cipher.name() || words.next().is_some() {
        return Err(FrameError::OtherCipher { found: shorten(name), expected: cipher.name() });
    }

    let mut body = String::new();
    for (index, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let valid = line.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !valid {
            return Err(FrameError::DamagedBody { line: index + 2 });
        }
        body.push_str(line);
    }
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    let line_count = text.lines().count();
    let sealed = STANDARD.decode(body).map_err(|_| FrameError::DamagedBody { line: line_count })?;
    cipher.open(&sealed).map_err(FrameError::Cipher)
}

/// A header word as found, cut short so a damaged file cannot flood a message.
fn shorten(word: &str) -> String {
    word.chars().take(24).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in for DPAPI: XOR with a key and a 4-byte checksum, so altered ciphertext fails
    /// like DPAPI's integrity check does.
    pub(crate) struct FakeCipher;

    impl Cipher for FakeCipher {
        fn name(&self) -> &'static str {
            DPAPI_MACHINE
        }

        fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
            let mut out: Vec<u8> = plain.iter().map(|b| b ^ 0x5a).collect();
            out.extend(checksum(plain).to_le_bytes());
            Ok(out)
        }

        fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
            let fail = CipherError { operation: "decrypt", code: Some(13) };
            let split = sealed.len().checked_sub(4).ok_or(fail.clone())?;
            let plain: Vec<u8> = sealed[..split].iter().map(|b| b ^ 0x5a).collect();
            let sum: [u8; 4] = sealed[split..].try_into().map_err(|_| fail.clone())?;
            (u32::from_le_bytes(sum) == checksum(&plain)).then_some(plain).ok_or(fail)
        }
    }

    fn checksum(bytes: &[u8]) -> u32 {
        bytes.iter().fold(17u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(*b)))
    }

    const PLAIN: &str = "schema_version = 1\nrefresh_token = \"RT-sealed-value-42\"\n";

    fn sealed() -> Vec<u8> {
        seal(&FakeCipher, PLAIN.repeat(5).as_bytes()).expect("seals")
    }

    #[test]
    fn a_sealed_file_round_trips_and_hides_the_plain_text() {
        let bytes = sealed();
        let text = String::from_utf8(bytes.clone()).expect("framing is text");
        assert!(text.starts_with("mailgrant-sealed-secrets 1 dpapi-machine\n"), "{text}");
        assert!(!text.contains("RT-sealed-value-42"), "{text}");
        assert!(text.lines().skip(1).all(|l| l.len() <= 76), "{text}");
        assert!(text.lines().count() > 2, "the body wraps over several lines");
        assert!(is_sealed(&bytes));
        assert!(!is_sealed(PLAIN.as_bytes()));

        let opened = open(&FakeCipher, &bytes).expect("opens");
        assert_eq!(opened, PLAIN.repeat(5).as_bytes());
    }

    #[test]
    fn crlf_line_ends_from_a_copy_still_open() {
        let text = String::from_utf8(sealed()).expect("text").replace('\n', "\r\n");
        assert_eq!(open(&FakeCipher, text.as_bytes()).expect("opens"), PLAIN.repeat(5).as_bytes());
    }

    #[test]
    fn a_tampered_header_is_a_clear_error() {
        let text = String::from_utf8(sealed()).expect("text");
        let cases = [
            (text.replacen("mailgrant-sealed-secrets", "mailgrant-sealed-secret", 1), "header"),
            (text.replacen(" 1 ", " 2 ", 1), "version"),
            (text.replacen("dpapi-machine", "dpapi-user", 1), "cipher"),
            (String::new(), "empty file"),
        ];
        let errors: Vec<FrameError> = cases
            .iter()
            .map(|(t, what)| open(&FakeCipher, t.as_bytes()).expect_err(what))
            .collect();
        assert_eq!(errors[0], FrameError::NotSealed);
        assert_eq!(errors[1], FrameError::UnsupportedVersion { found: "2".into() });
        assert_eq!(
            errors[1].to_string(),
            "it is sealed with format version 2; this mailgrant reads version 1"
        );
        assert_eq!(
            errors[2],
            FrameError::OtherCipher { found: "dpapi-user".into(), expected: DPAPI_MACHINE }
        );
        assert_eq!(errors[3], FrameError::NotSealed);
    }

    #[test]
    fn a_corrupt_body_is_a_clear_error_not_a_panic() {
        let text = String::from_utf8(sealed()).expect("text");
        let header_only = format!("{}\n", text.lines().next().unwrap_or_default());
        assert_eq!(open(&FakeCipher, header_only.as_bytes()), Err(FrameError::Empty));

        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[2].replace_range(0..1, "#");
        let damaged = lines.join("\n");
        assert_eq!(open(&FakeCipher, damaged.as_bytes()), Err(FrameError::DamagedBody { line: 3 }));

        // Valid base64 but altered ciphertext: the cipher's integrity check refuses it.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let flipped = if lines[1].starts_with('A') { "B" } else { "A" };
        lines[1].replace_range(0..1, flipped);
        let altered = lines.join("\n");
        let error = open(&FakeCipher, altered.as_bytes()).expect_err("altered");
        assert_eq!(error, FrameError::Cipher(CipherError { operation: "decrypt", code: Some(13) }));
        assert_eq!(
            error.to_string(),
            "it cannot be decrypted on this machine: decrypt failed (system error 13)"
        );

        // Truncated base64 (a cut-off copy) and binary garbage.
        let cut = &text[..text.len() - 3];
        assert!(open(&FakeCipher, cut.as_bytes()).is_err());
        assert_eq!(open(&FakeCipher, &[0xff, 0xfe, 0x00]), Err(FrameError::NotSealed));
    }
}
