//! The support bundle: one JSON file an operator can send to whoever helps them, holding
//! everything needed to understand a failing setup and nothing that grants access.
//!
//! Contents (format 1, documented in `docs/troubleshooting.md`): mailgrant's version, the OS,
//! the service config as parsed (it holds no secret by design), non-secret facts about the
//! secrets file (whether a refresh token and a client secret are stored, when the token was
//! issued and last used, granted scopes, signed-in account), the last recorded verification
//! report, a fresh pre-flight run, and the recent in-memory log.
//!
//! Invariants: no secret value is ever copied into the bundle; as a second line of defence the
//! finished text is scrubbed of every secret value known from the secrets file (refresh token,
//! access token, client secret, and the XOAUTH2 strings built from them) before it is written.
//! A config that does not parse is described by its diagnosis, never copied raw.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::diagnose::{self, Diagnosis};
use crate::logging::LogBuffer;
use crate::mail::Xoauth2Credentials;
use crate::preflight::{self, PreflightReport};
use crate::store::last_check::{self, LastCheck};
use crate::store::{self, ConfigPaths, Secrets, ServiceConfig};
use crate::trust::Trust;

/// Version of the bundle's layout.
pub const BUNDLE_FORMAT: u32 = 1;
/// What replaces a secret value found in the text.
pub const REMOVED: &str = "[removed]";
/// Secret values shorter than this are not scrubbed (they would match ordinary words).
const MIN_SCRUB_LEN: usize = 8;

/// Failure to write the bundle file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write the support bundle {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// The path is one of the setup's own files (config, secrets, lock, last check, backups),
    /// or an existing file that is not an earlier support bundle: it is never replaced.
    #[error("the support bundle would replace {path}, which is {what}")]
    WouldReplace { path: PathBuf, what: &'static str },
}

/// The operating system mailgrant runs on.
#[derive(Clone, Debug, Serialize)]
pub struct OsInfo {
    /// `linux`, `windows`, `macos`, ...
    pub os: &'static str,
    pub family: &'static str,
    pub arch: &'static str,
    /// Distribution or version name when it can be read (`PRETTY_NAME` on Linux).
    pub release: Option<String>,
}

/// Non-secret facts about the secrets file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SecretsFacts {
    pub path: String,
    pub present: bool,
    pub has_refresh_token: bool,
    pub has_client_secret: bool,
    pub has_cached_access_token: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub access_token_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub refresh_token_issued_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub refresh_token_last_used_at: Option<OffsetDateTime>,
    pub granted_scopes: Option<Vec<String>>,
    pub signed_in_account: Option<String>,
    /// Why the provider refused the stored token for good, when it did.
    pub needs_sign_in: Option<String>,
    /// Why the file could not be read, when it could not.
    pub problem: Option<Diagnosis>,
    /// Why the file was not read at all, when it was not.
    pub note: Option<String>,
}

/// The last verification, or why there is none.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastVerification {
    Recorded(LastCheck),
    NoneStored(String),
}

/// Everything the bundle holds.
#[derive(Clone, Debug, Serialize)]
pub struct SupportBundle {
    pub bundle_format: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub mailgrant_version: &'static str,
    pub os: OsInfo,
    pub config_path: String,
    /// The parsed service config (no secret lives there).
    pub config: Option<ServiceConfig>,
    /// Why the config could not be used, when it could not.
    pub config_problem: Option<Diagnosis>,
    pub secrets: SecretsFacts,
    pub last_verification: LastVerification,
    pub preflight: Option<PreflightReport>,
    /// Why pre-flight checks could not run, when they could not.
    pub preflight_problem: Option<Diagnosis>,
    /// Recent log lines, oldest first.
    pub log: Vec<String>,
    /// Values removed by the final scrub (0 when nothing secret had slipped in).
    pub scrubbed_values: usize,
    #[serde(skip)]
    scrubber: Scrubber,
}

impl SupportBundle {
    /// The bundle as pretty JSON, scrubbed of every known secret value.
    pub fn to_json(&self) -> String {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let (text, removed) = self.scrubber.scrub(&text);
        if removed == 0 {
            return text;
        }
        tracing::warn!(removed, "secret values were removed from the support bundle");
        let mut bundle = self.clone();
        bundle.scrubbed_values = removed;
        let again = serde_json::to_string_pretty(&bundle).unwrap_or_default();
        self.scrubber.scrub(&again).0
    }
}

/// The secret values of the setup, kept only to remove them from the finished text.
#[derive(Clone, Default)]
struct Scrubber {
    values: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} values, [redacted])", self.values.len())
    }
}

impl Scrubber {
    fn from_secrets(secrets: &Secrets, users: &[&str]) -> Scrubber {
        let mut values = Vec::new();
        if let Some(t) = &secrets.refresh_token {
            values.push(t.secret().clone());
        }
        if let Some(s) = &secrets.client_secret {
            values.push(s.secret().clone());
        }
        if let Some(access) = &secrets.access_token {
            values.push(access.secret().clone());
            for user in users {
                if let Ok(credentials) = Xoauth2Credentials::new(user, access) {
                    values.push(credentials.base64_secret().to_owned());
                    values.push(credentials.raw_secret().to_owned());
                }
            }
        }
        // Also the forms the values take inside JSON strings.
        let escaped: Vec<String> = values
            .iter()
            .filter_map(|v| serde_json::to_string(v).ok())
            .map(|quoted| quoted.trim_matches('"').to_owned())
            .collect();
        values.extend(escaped);
        values.retain(|v| v.trim().len() >= MIN_SCRUB_LEN);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Scrubber { values }
    }

    fn scrub(&self, text: &str) -> (String, usize) {
        let mut text = text.to_owned();
        let mut removed = 0;
        for value in &self.values {
            let found = text.matches(value.as_str()).count();
            if found > 0 {
                removed += found;
                text = text.replace(value.as_str(), REMOVED);
            }
        }
        (text, removed)
    }
}

/// Gathers the bundle for the setup at `paths`. Blocking (runs the pre-flight checks): call
/// on a worker thread. Never fails: what cannot be read is described in the bundle.
pub fn build(paths: &ConfigPaths) -> SupportBundle {
    tracing::info!(config = %paths.config.display(), "building support bundle");
    let (config, config_problem) = match store::load_config(paths) {
        Ok(config) => (Some(config), None),
        Err(e) => (None, Some(diagnose::config::store(&e))),
    };
    // Where the secrets are: a file, or a keyring entry (only facts about them are copied).
    let secrets_store = match &config {
        Some(c) => store::SecretsBackend::for_config(paths, c).ok(),
        None => None,
    };
    let secrets_where = secrets_store
        .as_ref()
        .map_or_else(|| paths.secrets.display().to_string(), store::SecretsBackend::describe);
    let (secrets, secrets_problem) = match (&config, store::load_secrets(paths)) {
        (None, _) => (None, None),
        (Some(_), Ok(secrets)) => (Some(secrets), None),
        (Some(_), Err(e)) if e.is_missing_secrets() => (None, None),
        (Some(_), Err(e)) => (None, Some(diagnose::config::store(&e))),
    };

    let users: Vec<&str> = config
        .as_ref()
        .map(|c| vec![c.imap_user.as_str(), c.smtp_user.as_str(), c.mailbox.as_str()])
        .unwrap_or_default();
    let scrubber = secrets.as_ref().map(|s| Scrubber::from_secrets(s, &users)).unwrap_or_default();
    let mut facts = secrets_facts(secrets_where, secrets.as_ref(), secrets_problem);
    if config.is_none() {
        facts.present = paths.secrets.exists();
        facts.note = Some("not read: the config could not be used".to_owned());
    }

    let last_verification = match last_check::load(paths) {
        Some(record) => LastVerification::Recorded(record),
        None => LastVerification::NoneStored(format!(
            "No verification report is stored next to {} (run `mailgrant check` or Verify in \
             the app, then save the bundle again)",
            paths.config.display()
        )),
    };

    let (preflight, preflight_problem) = match &config {
        Some(config) => run_preflight(config, secrets.as_ref()),
        None => (None, None),
    };

    let log = LogBuffer::global()
        .snapshot()
        .iter()
        .map(|line| {
            let at =
                line.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            format!("{at} {:5} {}: {}", line.level, line.target, line.text)
        })
        .collect();

    SupportBundle {
        bundle_format: BUNDLE_FORMAT,
        created_at: OffsetDateTime::now_utc(),
        mailgrant_version: env!("CARGO_PKG_VERSION"),
        os: os_info(),
        config_path: paths.config.display().to_string(),
        config,
        config_problem,
        secrets: facts,
        last_verification,
        preflight,
        preflight_problem,
        log,
        scrubbed_values: 0,
        scrubber,
    }
}

/// Builds the bundle for `paths` and writes it to `out` (owner-only on Unix).
pub fn write(paths: &ConfigPaths, out: &Path) -> Result<SupportBundle, BundleError> {
    refuse_to_replace(paths, out)?;
    let bundle = build(paths);
    let text = bundle.to_json();
    write_private(out, text.as_bytes())
        .map_err(|source| BundleError::Write { path: out.to_path_buf(), source })?;
    tracing::info!(out = %out.display(), "support bundle written");
    Ok(bundle)
}

/// Keeps the bundle off the setup's own files and off any file that is not an earlier bundle:
/// a mistyped `--out` must never cost the operator the refresh token or the config.
fn refuse_to_replace(paths: &ConfigPaths, out: &Path) -> Result<(), BundleError> {
    let refuse = |what| Err(BundleError::WouldReplace { path: out.to_path_buf(), what });
    let target = comparable(out);
    let configured_secrets = store::load_config(paths)
        .ok()
        .map(|config| paths.resolve_secrets(config.secrets.path.as_deref()));
    let own_files = [
        (Some(paths.config.clone()), "the service config"),
        (Some(paths.secrets.clone()), "the secrets file"),
        (configured_secrets, "the secrets file"),
        (Some(paths.lock.clone()), "the lock file"),
        (Some(last_check::path(paths)), "the last check record"),
    ];
    for (file, what) in own_files {
        if file.is_some_and(|file| comparable(&file) == target) {
            return refuse(what);
        }
    }
    if target.starts_with(comparable(&paths.backups)) {
        return refuse("inside the backups folder");
    }
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(meta) if !meta.is_file() => refuse("not a regular file"),
        Ok(_) => {
            let earlier_bundle = std::fs::read_to_string(out)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|json| json.get("bundle_format").is_some());
            if earlier_bundle { Ok(()) } else { refuse("an existing file, not a support bundle") }
        }
    }
}

/// `path` with its folder resolved (symbolic links, `..`), so two spellings of one file
/// compare equal even when the file itself does not exist yet.
fn comparable(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(real) = std::fs::canonicalize(&absolute) {
        return real;
    }
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => {
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).join(name)
        }
        _ => absolute,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn secrets_facts(
    path: String,
    secrets: Option<&Secrets>,
    problem: Option<Diagnosis>,
) -> SecretsFacts {
    let Some(s) = secrets else {
        return SecretsFacts {
            path,
            present: problem.is_some(),
            problem,
            ..SecretsFacts::default()
        };
    };
    SecretsFacts {
        path,
        present: true,
        has_refresh_token: s.has_refresh_token(),
        has_client_secret: s.client_secret.as_ref().is_some_and(|c| !c.secret().is_empty()),
        has_cached_access_token: s.access_token.as_ref().is_some_and(|a| !a.secret().is_empty()),
        access_token_expires_at: s.access_expires_at,
        refresh_token_issued_at: s.refresh_token_issued_at,
        refresh_token_last_used_at: s.refresh_token_last_used_at,
        granted_scopes: s.granted_scopes.clone(),
        signed_in_account: s.signed_in_account.clone(),
        needs_sign_in: s.needs_sign_in.clone(),
        problem,
        note: None,
    }
}

fn run_preflight(
    config: &ServiceConfig,
    secrets: Option<&Secrets>,
) -> (Option<PreflightReport>, Option<Diagnosis>) {
    let empty = Secrets::default();
    let profile = match config.to_profile(secrets.unwrap_or(&empty)) {
        Ok(profile) => profile,
        Err(e) => return (None, Some(diagnose::config::store(&e))),
    };
    match Trust::load(profile.extra_ca_file.as_deref()) {
        Ok(trust) => (Some(preflight::run(&profile, &trust)), None),
        Err(e) => (None, Some(diagnose::trust(&e))),
    }
}

fn os_info() -> OsInfo {
    let release = std::fs::read_to_string("/etc/os-release").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
    });
    OsInfo {
        os: std::env::consts::OS,
        family: std::env::consts::FAMILY,
        arch: std::env::consts::ARCH,
        release,
    }
}

#[cfg(test)]
mod tests {
    use oauth2::{AccessToken, ClientSecret, RefreshToken};

    use super::*;

    #[test]
    fn the_scrubber_removes_every_form_of_every_secret() {
        let mut secrets = Secrets::default();
        secrets.refresh_token = Some(RefreshToken::new("refresh-0123456789".into()));
        secrets.client_secret = Some(ClientSecret::new("client~secret.value".into()));
        secrets.access_token = Some(AccessToken::new("eyJaccess.token.value".into()));
        let scrubber = Scrubber::from_secrets(&secrets, &["alarms@example.com"]);
        let xoauth2 = Xoauth2Credentials::new(
            "alarms@example.com",
            &AccessToken::new("eyJaccess.token.value".into()),
        )
        .expect("credentials");
        let text = format!(
            "a refresh-0123456789 b client~secret.value c {} d {}",
            xoauth2.base64_secret(),
            serde_json::to_string(xoauth2.raw_secret()).expect("json")
        );
        let (clean, removed) = scrubber.scrub(&text);
        assert_eq!(removed, 4, "{clean}");
        assert!(!clean.contains("refresh-0123456789"));
        assert!(!clean.contains("eyJaccess"));
        assert!(!clean.contains("client~secret"));
        assert!(!format!("{scrubber:?}").contains("refresh"));
    }
}
