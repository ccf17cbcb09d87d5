//! The secrets file: refresh token, client secret, the cached access token, and the token's
//! run state (when it was issued and last redeemed, granted scopes, signed-in account, and
//! whether the provider refused it for good).
//!
//! Invariants:
//! - Secret values are oauth2 types, so `Debug` prints `[redacted]`; values are reached only
//!   through `.secret()`.
//! - A refresh token is never replaced by nothing (BR-17): an empty or absent refresh token in
//!   a token response or in the file counts as "none", and no write drops a stored one unless
//!   [`Secrets::sign_out`] was called. An older refresh token never replaces a newer one.
//! - On Unix the file is 0600 from its first byte and refused when looser. On Windows it gets a
//!   protected DACL (SYSTEM, Administrators, the saving user, the service account) before its
//!   first byte, and is refused when a broad group may read it (`store::acl`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use oauth2::{AccessToken, ClientSecret, RefreshToken};
use serde::{Deserialize, Deserializer, Serialize};
use time::{Duration, OffsetDateTime};

use super::error::{FileRole, StoreError};
use super::parse::SCHEMA_VERSION;
use crate::oauth::{IdentityClaims, TokenSet};

/// Everything secret about one setup, plus the token's run state.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    schema_version: u32,
    /// The long-lived token the service turns into access tokens.
    #[serde(
        default,
        deserialize_with = "non_empty_refresh",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<RefreshToken>,
    /// When the stored refresh token was issued (sign-in or the refresh that rotated it).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token_issued_at: Option<OffsetDateTime>,
    /// When a refresh last succeeded with this token chain (keeps Microsoft's 90-day
    /// inactivity window open).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token_last_used_at: Option<OffsetDateTime>,
    /// The app registration's client secret (confidential clients only).
    #[serde(
        default,
        deserialize_with = "non_empty_client_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_secret: Option<ClientSecret>,
    /// The last access token, reused until shortly before it expires.
    #[serde(
        default,
        deserialize_with = "non_empty_access",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_token: Option<AccessToken>,
    /// When the cached access token expires.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_expires_at: Option<OffsetDateTime>,
    /// Scopes the provider granted, as it last reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_scopes: Option<Vec<String>>,
    /// The account that signed in (UPN or e-mail), from the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_account: Option<String>,
    /// Set when the provider refused the refresh token for good (`invalid_grant`): the reason,
    /// without secret values. Cleared by a new sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_sign_in: Option<String>,
    /// True after `sign_out`: the one case in which a stored refresh token may be dropped.
    #[serde(skip)]
    signed_out: bool,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            schema_version: SCHEMA_VERSION,
            refresh_token: None,
            refresh_token_issued_at: None,
            refresh_token_last_used_at: None,
            client_secret: None,
            access_token: None,
            access_expires_at: None,
            granted_scopes: None,
            signed_in_account: None,
            needs_sign_in: None,
            signed_out: false,
        }
    }
}

impl Secrets {
    /// Secrets after a browser sign-in.
    pub fn from_sign_in(tokens: &TokenSet, client_secret: Option<ClientSecret>) -> Secrets {
        let mut secrets = Secrets { client_secret: non_empty(client_secret), ..Secrets::default() };
        secrets.apply_sign_in(tokens);
        secrets
    }

    /// Takes a new sign-in's tokens: a fresh refresh token chain, the sign-in mark cleared.
    pub fn apply_sign_in(&mut self, tokens: &TokenSet) {
        self.take_access(tokens);
        if let Some(refresh) = non_empty(tokens.refresh_token.clone()) {
            self.refresh_token = Some(refresh);
            self.refresh_token_issued_at = Some(tokens.obtained_at);
            self.refresh_token_last_used_at = None;
        }
        self.needs_sign_in = None;
        self.signed_out = false;
    }

    /// Takes a refresh response. A rotated refresh token replaces the stored one; an absent,
    /// empty or null one keeps it (RFC 6749 §6, BR-17).
    pub fn apply_refresh(&mut self, tokens: &TokenSet) {
        self.take_access(tokens);
        self.refresh_token_last_used_at = Some(tokens.obtained_at);
        if let Some(refresh) = non_empty(tokens.refresh_token.clone()) {
            self.refresh_token = Some(refresh);
            self.refresh_token_issued_at = Some(tokens.obtained_at);
        }
        self.needs_sign_in = None;
    }

    fn take_access(&mut self, tokens: &TokenSet) {
        self.access_token = non_empty(Some(tokens.access_token.clone()));
        self.access_expires_at = tokens.access_expires_at;
        if tokens.granted_scopes.is_some() {
            self.granted_scopes = tokens.granted_scopes.clone();
        }
        if let Some(account) = tokens.identity.as_ref().and_then(IdentityClaims::account) {
            self.signed_in_account = Some(account.to_owned());
        }
    }

    /// Removes the tokens (refresh and access) and the sign-in state; keeps the client secret.
    /// The next save writes the file without a refresh token.
    pub fn sign_out(&mut self) {
        self.refresh_token = None;
        self.refresh_token_issued_at = None;
        self.refresh_token_last_used_at = None;
        self.access_token = None;
        self.access_expires_at = None;
        self.granted_scopes = None;
        self.signed_in_account = None;
        self.needs_sign_in = None;
        self.signed_out = true;
    }

    /// True when a usable (non-empty) refresh token is stored.
    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token.as_ref().is_some_and(|t| !t.secret().trim().is_empty())
    }

    /// The cached access token if it is still good for at least `margin` after `now`.
    pub fn valid_access_token(
        &self,
        now: OffsetDateTime,
        margin: Duration,
    ) -> Option<&AccessToken> {
        let token = self.access_token.as_ref()?;
        let expires_at = self.access_expires_at?;
        (expires_at - margin > now && !token.secret().is_empty()).then_some(token)
    }

    /// The stored tokens as a [`TokenSet`], for reopening a setup; `None` without an access
    /// token.
    pub fn token_set(&self) -> Option<TokenSet> {
        let access_token = self.access_token.clone()?;
        Some(TokenSet {
            access_token,
            access_expires_at: self.access_expires_at,
            refresh_token: self.refresh_token.clone(),
            granted_scopes: self.granted_scopes.clone(),
            identity: self.signed_in_account.as_ref().map(|account| IdentityClaims {
                preferred_username: Some(account.clone()),
                ..IdentityClaims::default()
            }),
            obtained_at: self.refresh_token_last_used_at.or(self.refresh_token_issued_at)?,
        })
    }

    /// Brings `self` (about to be written) in line with what is on disk so no write loses a
    /// live refresh token: without `sign_out`, a missing refresh token or one issued before the
    /// one on disk gives way to the disk's token chain, with the account and scopes that belong
    /// to it. A token of another account is a different grant written on purpose (a restored
    /// backup, a sign-in as someone else) and is never replaced. Returns true when the disk's
    /// chain was kept.
    pub(crate) fn keep_live_token(&mut self, on_disk: &Secrets) -> bool {
        if self.signed_out || !on_disk.has_refresh_token() {
            return false;
        }
        let newer_on_disk = match (self.has_refresh_token(), &self.refresh_token) {
            (false, _) => true,
            (true, Some(mine)) if mine.secret() == on_disk.secret_refresh() => false,
            (true, _) if self.other_account_than(on_disk) => false,
            (true, _) => matches!(
                (self.refresh_token_issued_at, on_disk.refresh_token_issued_at),
                (Some(mine), Some(theirs)) if theirs > mine
            ),
        };
        if newer_on_disk {
            self.refresh_token = on_disk.refresh_token.clone();
            self.refresh_token_issued_at = on_disk.refresh_token_issued_at;
            self.refresh_token_last_used_at = on_disk.refresh_token_last_used_at;
            self.access_token = on_disk.access_token.clone();
            self.access_expires_at = on_disk.access_expires_at;
            self.needs_sign_in = on_disk.needs_sign_in.clone();
            self.granted_scopes = on_disk.granted_scopes.clone();
            self.signed_in_account = on_disk.signed_in_account.clone();
        }
        newer_on_disk
    }

    /// Both name their signed-in account and the two differ (case does not count).
    fn other_account_than(&self, other: &Secrets) -> bool {
        match (&self.signed_in_account, &other.signed_in_account) {
            (Some(mine), Some(theirs)) => !mine.eq_ignore_ascii_case(theirs),
            _ => false,
        }
    }

    fn secret_refresh(&self) -> &str {
        self.refresh_token.as_ref().map_or("", |t| t.secret().as_str())
    }

    /// Serialises for the secrets file.
    pub(crate) fn to_toml(&self) -> String {
        let mut copy = self.clone();
        copy.schema_version = SCHEMA_VERSION;
        // A struct of strings, options and string lists always serialises.
        toml::to_string(&copy).unwrap_or_default()
    }
}

fn non_empty<T: SecretText>(value: Option<T>) -> Option<T> {
    value.filter(|v| !v.text().trim().is_empty())
}

trait SecretText {
    fn text(&self) -> &str;
}

impl SecretText for RefreshToken {
    fn text(&self) -> &str {
        self.secret()
    }
}

impl SecretText for AccessToken {
    fn text(&self) -> &str {
        self.secret()
    }
}

impl SecretText for ClientSecret {
    fn text(&self) -> &str {
        self.secret()
    }
}

fn non_empty_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.trim().is_empty()))
}

fn non_empty_refresh<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RefreshToken>, D::Error> {
    Ok(non_empty_string(d)?.map(RefreshToken::new))
}

fn non_empty_access<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AccessToken>, D::Error> {
    Ok(non_empty_string(d)?.map(AccessToken::new))
}

fn non_empty_client_secret<'de, D>(d: D) -> Result<Option<ClientSecret>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(non_empty_string(d)?.map(ClientSecret::new))
}

/// Reads and parses a secrets file, plain or sealed (backups, restores); `check_permissions`
/// refuses a file other users can get at.
pub(crate) fn read_secrets(path: &Path, check_permissions: bool) -> Result<Secrets, StoreError> {
    let bytes = read_secrets_bytes(path, check_permissions, None)?;
    super::backend::decode_file(&bytes, path, super::backend::cipher())
}

/// The secrets file's bytes, after the permission checks. `service_account` only names the
/// account in a Windows fix.
pub(crate) fn read_secrets_bytes(
    path: &Path,
    check_permissions: bool,
    service_account: Option<&str>,
) -> Result<Vec<u8>, StoreError> {
    let unreadable = |source| StoreError::Unreadable {
        role: FileRole::Secrets,
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = |what: String| StoreError::SecretsNotAFile { path: path.to_path_buf(), what };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing { role: FileRole::Secrets, path: path.to_path_buf() });
        }
        Err(e) => return Err(unreadable(e)),
        Ok(meta) if meta.is_symlink() => {
            let target = std::fs::read_link(path)
                .map_or_else(|_| "elsewhere".to_owned(), |t| t.display().to_string());
            return Err(not_a_file(format!("a symbolic link to {target}")));
        }
        Ok(meta) if meta.is_dir() => return Err(not_a_file("a folder".to_owned())),
        Ok(meta) if !meta.is_file() => {
            return Err(not_a_file("not a regular file (a device or pipe)".to_owned()));
        }
        Ok(_) => {}
    }
    let file = File::open(path).map_err(unreadable)?;

    let mut bytes = Vec::new();
    (&file).take(MAX_SECRETS_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SECRETS_BYTES {
        return Err(not_a_file(format!(
            "larger than {} KiB, far more than any secrets file",
            MAX_SECRETS_BYTES / 1024
        )));
    }
    if check_permissions && let Err(too_open) = check_file_permissions(path, &file, service_account)
    {
        // Advice to chmod a file that is not ours (say /etc/passwd) would do harm.
        return Err(if looks_like_secrets(&bytes) {
            too_open
        } else {
            not_a_file("not a mailgrant secrets file".to_owned())
        });
    }
    Ok(bytes)
}

/// A secrets file is a few KB; anything this large is another file.
const MAX_SECRETS_BYTES: u64 = 1024 * 1024;

/// Plain secrets (TOML with `schema_version`) or a sealed file's header line.
fn looks_like_secrets(bytes: &[u8]) -> bool {
    if super::sealed::is_sealed(bytes) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    text.parse::<toml::Table>().is_ok_and(|table| table.contains_key("schema_version"))
}

/// Unix: refuses a secrets file readable or writable by group or others, and a folder every
/// user may write to (they could swap the file). Checked on the open file, not the path.
#[cfg(unix)]
fn check_file_permissions(
    path: &Path,
    file: &File,
    _service_account: Option<&str>,
) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;

    let unreadable = |source| StoreError::Unreadable {
        role: FileRole::Secrets,
        path: path.to_path_buf(),
        source,
    };
    let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreError::SecretsPermissionsTooOpen { path: path.to_path_buf(), mode });
    }

    let dir = super::atomic::parent_dir(path);
    let dir_mode = std::fs::metadata(&dir).map_err(unreadable)?.permissions().mode() & 0o7777;
    if dir_mode & 0o002 != 0 {
        return Err(StoreError::SecretsFolderWorldWritable { path: dir, mode: dir_mode });
    }
    Ok(())
}

/// Windows: reads the open file's DACL and refuses one that lets Everyone, Users,
/// Authenticated Users or INTERACTIVE read, write or re-permission it (`store::acl`).
#[cfg(windows)]
fn check_file_permissions(
    path: &Path,
    file: &File,
    service_account: Option<&str>,
) -> Result<(), StoreError> {
    let dacl = super::windows::file_dacl(file).map_err(|source| StoreError::Unreadable {
        role: FileRole::Secrets,
        path: path.to_path_buf(),
        source,
    })?;
    super::acl::judge_dacl(dacl.as_deref()).map_err(|problem| StoreError::SecretsAclTooOpen {
        path: path.to_path_buf(),
        problem,
        service_account: service_account.map(str::to_owned),
    })
}

/// Other platforms (macOS and the like) are not targets of the service; nothing is checked.
#[cfg(not(any(unix, windows)))]
fn check_file_permissions(
    _path: &Path,
    _file: &File,
    _service_account: Option<&str>,
) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::parse::parse_versioned;

    fn tokens(access: &str, refresh: Option<&str>, at: OffsetDateTime) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(access.into()),
            access_expires_at: Some(at + Duration::hours(1)),
            refresh_token: refresh.map(|r| RefreshToken::new(r.into())),
            granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".into()]),
            identity: Some(IdentityClaims {
                preferred_username: Some("operator@example.com".into()),
                ..IdentityClaims::default()
            }),
            obtained_at: at,
        }
    }

    fn refresh_of(secrets: &Secrets) -> Option<&str> {
        secrets.refresh_token.as_ref().map(|t| t.secret().as_str())
    }

    #[test]
    fn a_rotated_refresh_token_replaces_the_old_one() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let mut secrets = Secrets::from_sign_in(&tokens("AT1", Some("RT1"), t0), None);
        let t1 = t0 + Duration::hours(2);
        secrets.apply_refresh(&tokens("AT2", Some("RT2"), t1));
        assert_eq!(refresh_of(&secrets), Some("RT2"));
        assert_eq!(secrets.refresh_token_issued_at, Some(t1));
        assert_eq!(secrets.refresh_token_last_used_at, Some(t1));
        assert_eq!(secrets.access_token.as_ref().map(|t| t.secret().as_str()), Some("AT2"));
    }

    #[test]
    fn br_17_absent_empty_or_blank_refresh_tokens_keep_the_stored_one() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let mut secrets = Secrets::from_sign_in(&tokens("AT1", Some("RT1"), t0), None);
        for (i, refresh) in [None, Some(""), Some("  ")].into_iter().enumerate() {
            let at = t0 + Duration::hours(i as i64 + 1);
            secrets.apply_refresh(&tokens("AT2", refresh, at));
            assert_eq!(refresh_of(&secrets), Some("RT1"), "after {refresh:?}");
            assert_eq!(secrets.refresh_token_issued_at, Some(t0));
            assert_eq!(secrets.refresh_token_last_used_at, Some(at));
        }
    }

    #[test]
    fn an_empty_refresh_token_in_the_file_reads_as_none() {
        let text = "schema_version = 1\nrefresh_token = \"\"\nclient_secret = \" \"\n";
        let secrets: Secrets =
            parse_versioned(text, Path::new("s.toml"), FileRole::Secrets).expect("parses");
        assert!(secrets.refresh_token.is_none());
        assert!(secrets.client_secret.is_none());
        assert!(!secrets.has_refresh_token());
    }

    #[test]
    fn keep_live_token_prefers_the_newer_chain_unless_signing_out() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let stale = Secrets::from_sign_in(&tokens("AT1", Some("RT1"), t0), None);
        let mut disk = stale.clone();
        disk.apply_refresh(&tokens("AT2", Some("RT2"), t0 + Duration::hours(1)));

        let mut write = stale.clone();
        assert!(write.keep_live_token(&disk));
        assert_eq!(refresh_of(&write), Some("RT2"));

        let mut empty = Secrets::default();
        assert!(empty.keep_live_token(&disk));
        assert_eq!(refresh_of(&empty), Some("RT2"));

        let mut newer = disk.clone();
        newer.apply_sign_in(&tokens("AT3", Some("RT3"), t0 + Duration::hours(2)));
        assert!(!newer.keep_live_token(&disk));
        assert_eq!(refresh_of(&newer), Some("RT3"));

        let mut out = disk.clone();
        out.sign_out();
        assert!(!out.keep_live_token(&disk));
        assert!(out.refresh_token.is_none());
    }

    #[test]
    fn another_accounts_token_is_never_replaced_and_a_kept_chain_brings_its_account() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let mut other = tokens("AT-B", Some("RT-B"), t0 + Duration::hours(3));
        other.identity = Some(IdentityClaims {
            preferred_username: Some("someone-else@example.com".into()),
            ..IdentityClaims::default()
        });
        let disk = Secrets::from_sign_in(&other, None);

        // A restored backup of the first account: older, but a different grant.
        let mut backup = Secrets::from_sign_in(&tokens("AT-A", Some("RT-A"), t0), None);
        assert!(!backup.keep_live_token(&disk));
        assert_eq!(refresh_of(&backup), Some("RT-A"));
        assert_eq!(backup.signed_in_account.as_deref(), Some("operator@example.com"));

        // Nothing to write of its own: the disk's chain is kept whole, account included.
        let mut empty = Secrets::default();
        assert!(empty.keep_live_token(&disk));
        assert_eq!(refresh_of(&empty), Some("RT-B"));
        assert_eq!(empty.signed_in_account.as_deref(), Some("someone-else@example.com"));
    }

    #[test]
    fn cached_access_token_is_used_only_before_the_margin() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let secrets = Secrets::from_sign_in(&tokens("AT1", Some("RT1"), t0), None);
        let margin = Duration::minutes(5);
        assert!(secrets.valid_access_token(t0 + Duration::minutes(54), margin).is_some());
        assert!(secrets.valid_access_token(t0 + Duration::minutes(56), margin).is_none());
    }

    #[test]
    fn debug_and_toml_errors_show_no_secret_value() {
        let t0 = datetime!(2025-01-01 00:00 UTC);
        let secrets = Secrets::from_sign_in(
            &tokens("AT-value-123", Some("RT-value-456"), t0),
            Some(ClientSecret::new("CS-value-789".into())),
        );
        let debug = format!("{secrets:?} {secrets:#?}");
        for value in ["AT-value-123", "RT-value-456", "CS-value-789"] {
            assert!(!debug.contains(value), "{value} leaked into Debug: {debug}");
        }
        assert!(debug.contains("RefreshToken([redacted])"), "{debug}");

        // A secret value where a list belongs: serde's own message quotes it.
        let text: String = secrets
            .to_toml()
            .lines()
            .map(|l| {
                if l.starts_with("granted_scopes") {
                    "granted_scopes = \"CS-value-789\""
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let raw = toml::from_str::<Secrets>(&text).expect_err("a string is not a list");
        assert!(raw.message().contains("CS-value-789"), "the test needs a quoting message");
        let error = parse_versioned::<Secrets>(&text, Path::new("s.toml"), FileRole::Secrets)
            .expect_err("invalid");
        assert_eq!(error.parse_problem().and_then(|p| p.key.as_deref()), Some("granted_scopes"));
        let shown = format!("{error} {error:?}");
        for value in ["AT-value-123", "RT-value-456", "CS-value-789"] {
            assert!(!shown.contains(value), "{value} leaked into an error: {shown}");
        }
    }
}
