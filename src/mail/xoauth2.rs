//! The XOAUTH2 SASL exchange: the client's credentials string and the server's error challenge.
//!
//! [`Xoauth2Credentials`] is the only place the access token meets the user name. It cannot be
//! built from an empty user or an empty token (BR-18: never send `auth=Bearer ` followed by
//! nothing), and its value is reached only through the two `*_secret` accessors; `Debug` is
//! redacted and there is no `Display`.
//!
//! A server that refuses the token first sends a challenge carrying base64 JSON (SMTP `334`,
//! IMAP `+`). [`ErrorChallenge`] is that JSON decoded; it is the server's own words about the
//! token (status, schemes, scope), holds nothing secret and may be shown and logged.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oauth2::AccessToken;

/// Why an XOAUTH2 string could not be built. Names the problem, never the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The user name is empty.
    #[error("the mail login (user name) is empty")]
    EmptyUser,
    /// The access token is empty.
    #[error("the access token is empty; sign in or refresh first")]
    EmptyToken,
    /// The user name holds a control character (^A, CR, LF) that would break the SASL string.
    #[error("the mail login holds a control character")]
    ControlCharacterInUser,
    /// The token holds whitespace or a control character; a bearer token never does.
    #[error("the access token holds whitespace or a control character")]
    MalformedToken,
}

/// The XOAUTH2 initial response `user=<u>^Aauth=Bearer <token>^A^A`, kept out of every text.
#[derive(Clone)]
pub struct Xoauth2Credentials {
    raw: String,
    encoded: String,
}

impl Xoauth2Credentials {
    /// Builds the SASL string for `user` and `token`; refuses an empty or malformed one.
    pub fn new(user: &str, token: &AccessToken) -> Result<Xoauth2Credentials, CredentialsError> {
        let user = user.trim();
        let token = token.secret().as_str();
        if user.is_empty() {
            return Err(CredentialsError::EmptyUser);
        }
        if user.chars().any(char::is_control) {
            return Err(CredentialsError::ControlCharacterInUser);
        }
        if token.is_empty() {
            return Err(CredentialsError::EmptyToken);
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CredentialsError::MalformedToken);
        }

        let raw = format!("user={user}\x01auth=Bearer {token}\x01\x01");
        let encoded = BASE64.encode(raw.as_bytes());
        Ok(Xoauth2Credentials { raw, encoded })
    }

    /// The unencoded SASL string (IMAP clients base64-encode it themselves). Secret.
    pub fn raw_secret(&self) -> &str {
        &self.raw
    }

    /// The base64 SASL string as sent on an SMTP line. Secret.
    pub fn base64_secret(&self) -> &str {
        &self.encoded
    }

    /// Replaces every copy of this secret (raw or encoded) in `text` with `[redacted]`.
    ///
    /// Used on server reply text, so that a server echoing our line can never carry the token
    /// into an error.
    pub fn redact(&self, text: &str) -> String {
        let token = self.raw.split("auth=Bearer ").nth(1).map(|t| t.trim_end_matches('\x01'));
        let mut text = text.replace(&self.encoded, "[redacted]");
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            text = text.replace(token, "[redacted]");
        }
        text
    }
}

impl fmt::Debug for Xoauth2Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Xoauth2Credentials([redacted])")
    }
}

/// The server's XOAUTH2 error challenge, decoded (for example
/// `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorChallenge {
    /// `status`: an HTTP-like code (`400`, `401`) or an OAUTHBEARER word (`invalid_token`).
    pub status: Option<String>,
    /// `schemes`: the authentication schemes the server accepts (`Bearer`).
    pub schemes: Option<String>,
    /// `scope`: the scope the server says the token needs.
    pub scope: Option<String>,
    /// The decoded text as received (or the undecoded payload when it was not base64),
    /// shortened to 512 characters.
    pub text: String,
}

/// Longest challenge text kept; a server could send anything.
const CHALLENGE_TEXT_LIMIT: usize = 512;

impl ErrorChallenge {
    /// Decodes the payload of a `334 <payload>` / `+ <payload>` line. Never fails: a payload
    /// that is not base64 JSON is kept as text with the fields left empty.
    pub fn decode(payload: &str) -> ErrorChallenge {
        let payload = payload.trim();
        let text = match BASE64.decode(payload) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => payload.to_owned(),
        };
        ErrorChallenge::from_text(&text)
    }

    /// Reads the fields from already decoded JSON text.
    pub fn from_text(text: &str) -> ErrorChallenge {
        let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
        let field = |name: &str| {
            json.as_ref().and_then(|v| v.get(name)).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
        };
        ErrorChallenge {
            status: field("status"),
            schemes: field("schemes"),
            scope: field("scope"),
            text: text.chars().filter(|c| !c.is_control()).take(CHALLENGE_TEXT_LIMIT).collect(),
        }
    }
}

impl fmt::Display for ErrorChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(status) = &self.status {
            parts.push(format!("status {status}"));
        }
        if let Some(scope) = &self.scope {
            parts.push(format!("scope {scope}"));
        }
        if let Some(schemes) = &self.schemes {
            parts.push(format!("schemes {schemes}"));
        }
        if parts.is_empty() {
            write!(f, "\"{}\"", self.text)
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> AccessToken {
        AccessToken::new(value.to_owned())
    }

    #[test]
    fn builds_the_documented_sasl_string() {
        let creds = Xoauth2Credentials::new("alice@example.test", &token("tok-123")).expect("ok");
        assert_eq!(creds.raw_secret(), "user=alice@example.test\x01auth=Bearer tok-123\x01\x01");
        assert_eq!(
            creds.base64_secret(),
            "dXNlcj1hbGljZUBleGFtcGxlLnRlc3QBYXV0aD1CZWFyZXIgdG9rLTEyMwEB"
        );
    }

    #[test]
    fn refuses_empty_user_and_empty_token() {
        let err = Xoauth2Credentials::new("  ", &token("tok")).expect_err("refused");
        assert_eq!(err, CredentialsError::EmptyUser);
        let err = Xoauth2Credentials::new("alice@example.test", &token("")).expect_err("refused");
        assert_eq!(err, CredentialsError::EmptyToken);
        let err =
            Xoauth2Credentials::new("alice@example.test", &token("a b")).expect_err("refused");
        assert_eq!(err, CredentialsError::MalformedToken);
        let err = Xoauth2Credentials::new("a\x01b", &token("tok")).expect_err("refused");
        assert_eq!(err, CredentialsError::ControlCharacterInUser);
    }

    #[test]
    fn debug_and_redact_never_show_the_token() {
        let creds =
            Xoauth2Credentials::new("alice@example.test", &token("SECRET-TOK")).expect("ok");
        let debug = format!("{creds:?}");
        assert!(!debug.contains("SECRET-TOK") && !debug.contains(creds.base64_secret()));
        let echoed = format!("500 unknown command {} SECRET-TOK", creds.base64_secret());
        assert_eq!(creds.redact(&echoed), "500 unknown command [redacted] [redacted]");
    }

    #[test]
    fn decodes_googles_challenge() {
        let challenge = ErrorChallenge::decode(
            "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29v\
             Z2xlLmNvbS8ifQ==",
        );
        assert_eq!(challenge.status.as_deref(), Some("400"));
        assert_eq!(challenge.schemes.as_deref(), Some("Bearer"));
        assert_eq!(challenge.scope.as_deref(), Some("https://mail.google.com/"));
        assert_eq!(
            challenge.to_string(),
            "status 400, scope https://mail.google.com/, schemes Bearer"
        );
    }

    #[test]
    fn keeps_a_payload_that_is_not_json() {
        let challenge = ErrorChallenge::decode("not base64 at all!");
        assert_eq!(challenge.status, None);
        assert_eq!(challenge.text, "not base64 at all!");
        let oauthbearer = ErrorChallenge::decode("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
        assert_eq!(oauthbearer.status.as_deref(), Some("invalid_token"));
    }
}
