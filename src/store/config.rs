//! The service config: the plain settings the service runs on, as TOML (`schema_version = 1`).
//!
//! It holds no secret: the refresh token and client secret live in the secrets file it points
//! to. It is built only from a validated [`Profile`], and read back into one only through
//! [`ProfileForm::validate`], so the service never runs on settings the wizard would refuse.
//! Unknown keys are refused (a typo must not silently fall back to a default).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::parse::SCHEMA_VERSION;
use super::secrets::Secrets;
use crate::profile::{Field, Profile, ProfileForm, ServerEndpoint};
use crate::provider::{ProviderKind, Security};

/// The plain settings of one setup, as written to `mailgrant.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Format version; this mailgrant reads and writes 1.
    pub schema_version: u32,
    /// The mailbox the setup is for: login hint at sign-in and round-trip target.
    pub mailbox: String,
    /// User name in the IMAP XOAUTH2 string (usually the mailbox).
    pub imap_user: String,
    /// User name in the SMTP XOAUTH2 string: the signed-in account's UPN.
    pub smtp_user: String,
    /// The From address of notifications (the mailbox, or a shared mailbox sent as).
    pub from: String,
    /// Where "Send test email" and the checks send their message.
    pub test_recipient: String,
    /// How long one network step may take.
    pub timeout_secs: u64,
    /// PEM file with extra CA certificates (TLS-inspecting proxies). Use an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
    /// The identity provider and app registration.
    pub oauth: OAuthSettings,
    /// SMTP submission server.
    pub smtp: MailServer,
    /// IMAP server.
    pub imap: MailServer,
    /// Where the secrets are kept.
    pub secrets: SecretsLocation,
}

/// The `[oauth]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// `microsoft365` or `custom`.
    pub provider: ProviderKind,
    /// Directory (tenant): GUID, verified domain or `organizations` (Microsoft only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Application (client) ID.
    pub client_id: String,
    /// Authorize endpoint. For `microsoft365` it is derived from the tenant when loaded.
    pub authorize_url: String,
    /// Token endpoint. For `microsoft365` it is derived from the tenant when loaded.
    pub token_url: String,
    /// Scopes requested at sign-in.
    pub scopes: Vec<String>,
    /// The client secret's expiry date as the operator entered it (BR-13), for warnings.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "toml_date")]
    pub client_secret_expires_on: Option<time::Date>,
}

/// A `[smtp]` or `[imap]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailServer {
    /// Host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `tls` (from the first byte) or `start_tls`.
    pub security: Security,
}

/// The `[secrets]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsLocation {
    /// Which store holds the secrets: `file`, `dpapi_file` (Windows) or `keyring`.
    pub store: SecretsStore,
    /// The secrets file (`file`, `dpapi_file`), relative to the config's folder. `None` in
    /// memory means the default `<stem>.secrets.toml`; `save` writes it out for file stores
    /// and leaves it out for `keyring`, which ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Windows: the account the service runs as (`NT SERVICE\AlarmMailer`); it gets modify
    /// access to the secrets file and its backups. Ignored on other platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Kinds of secret store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsStore {
    /// A TOML file readable only by its owner (Unix 0600; Windows: SYSTEM, Administrators,
    /// the saving user and the service account).
    #[default]
    File,
    /// Windows only: the same file with its content encrypted by DPAPI for this machine.
    DpapiFile,
    /// The OS keyring (Linux kernel keyring, Windows Credential Manager), for a service that
    /// runs as the user who saved.
    Keyring,
}

impl SecretsStore {
    /// Every store, in the order the docs list them.
    pub const ALL: [SecretsStore; 3] =
        [SecretsStore::File, SecretsStore::DpapiFile, SecretsStore::Keyring];

    /// The value written in `[secrets] store`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretsStore::File => "file",
            SecretsStore::DpapiFile => "dpapi_file",
            SecretsStore::Keyring => "keyring",
        }
    }

    /// Why this store cannot work on this platform, `None` when it can.
    pub fn unsupported_here(self) -> Option<&'static str> {
        match self {
            SecretsStore::File => None,
            SecretsStore::DpapiFile if cfg!(windows) => None,
            SecretsStore::DpapiFile => {
                Some("dpapi_file works on Windows only; use file or keyring")
            }
            SecretsStore::Keyring if cfg!(any(target_os = "linux", windows)) => None,
            SecretsStore::Keyring => Some("keyring works on Linux and Windows only; use file"),
        }
    }

    /// True for the stores that keep the secrets in a file next to the config.
    pub fn is_file(self) -> bool {
        matches!(self, SecretsStore::File | SecretsStore::DpapiFile)
    }
}

impl std::fmt::Display for SecretsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three identities the service uses; they differ in real tenants (a sign-in name that is
/// not the mail address, a shared mailbox sent from by a delegate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    /// IMAP XOAUTH2 user.
    pub imap_user: String,
    /// SMTP XOAUTH2 user: the signed-in account's UPN.
    pub smtp_user: String,
    /// From address.
    pub from: String,
}

impl Identities {
    /// The usual choice: IMAP user and From are the mailbox, SMTP user is the signed-in
    /// account (the mailbox when the sign-in named none).
    pub fn for_profile(profile: &Profile, signed_in_account: Option<&str>) -> Identities {
        Identities {
            imap_user: profile.mailbox.clone(),
            smtp_user: signed_in_account.unwrap_or(&profile.mailbox).to_owned(),
            from: profile.mailbox.clone(),
        }
    }
}

impl From<&ServerEndpoint> for MailServer {
    fn from(endpoint: &ServerEndpoint) -> Self {
        MailServer { host: endpoint.host.clone(), port: endpoint.port, security: endpoint.security }
    }
}

impl ServiceConfig {
    /// The config for a validated profile. The client secret is not in it (see
    /// [`Secrets`]); the secrets path is left to `save`.
    pub fn from_profile(profile: &Profile, identities: &Identities) -> ServiceConfig {
        ServiceConfig {
            schema_version: SCHEMA_VERSION,
            mailbox: profile.mailbox.clone(),
            imap_user: identities.imap_user.clone(),
            smtp_user: identities.smtp_user.clone(),
            from: identities.from.clone(),
            test_recipient: profile.test_recipient.clone(),
            timeout_secs: profile.timeout.as_secs(),
            extra_ca_file: profile.extra_ca_file.clone(),
            oauth: OAuthSettings {
                provider: profile.provider,
                tenant: profile.tenant.clone(),
                client_id: profile.client_id.as_str().to_owned(),
                authorize_url: profile.authorize_url.as_str().to_owned(),
                token_url: profile.token_url.as_str().to_owned(),
                scopes: profile.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                client_secret_expires_on: None,
            },
            smtp: MailServer::from(&profile.smtp),
            imap: MailServer::from(&profile.imap),
            secrets: SecretsLocation::default(),
        }
    }

    /// The identities written in this config.
    pub fn identities(&self) -> Identities {
        Identities {
            imap_user: self.imap_user.clone(),
            smtp_user: self.smtp_user.clone(),
            from: self.from.clone(),
        }
    }

    /// The form text for reopening this config in the wizard. The client secret is left empty;
    /// use [`ServiceConfig::to_form_with_secret`] to fill it from the secrets.
    pub fn to_form(&self) -> ProfileForm {
        ProfileForm {
            provider: self.oauth.provider,
            tenant: self.oauth.tenant.clone().unwrap_or_default(),
            client_id: self.oauth.client_id.clone(),
            client_secret: String::new(),
            authorize_url: self.oauth.authorize_url.clone(),
            token_url: self.oauth.token_url.clone(),
            scopes: self.oauth.scopes.join(" "),
            mailbox: self.mailbox.clone(),
            smtp_host: self.smtp.host.clone(),
            smtp_port: self.smtp.port.to_string(),
            smtp_security: self.smtp.security,
            imap_host: self.imap.host.clone(),
            imap_port: self.imap.port.to_string(),
            imap_security: self.imap.security,
            test_recipient: self.test_recipient.clone(),
            timeout_secs: self.timeout_secs.to_string(),
            extra_ca_file: self
                .extra_ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// [`ServiceConfig::to_form`] with the client secret filled in from `secrets`.
    pub fn to_form_with_secret(&self, secrets: &Secrets) -> ProfileForm {
        let mut form = self.to_form();
        if let Some(secret) = &secrets.client_secret {
            form.client_secret = secret.secret().clone();
        }
        form
    }

    /// The validated profile the service and the checks run on, with the client secret from
    /// `secrets`. Problems name the config key (`smtp.port`), never a secret value.
    pub fn to_profile(&self, secrets: &Secrets) -> Result<Profile, StoreError> {
        match self.to_form_with_secret(secrets).validate() {
            Ok((profile, _warnings)) => Ok(profile),
            Err(problems) => Err(StoreError::InvalidSettings {
                file: None,
                problems: problems
                    .into_iter()
                    .filter(|p| p.severity == crate::profile::Severity::Error)
                    .map(|p| (config_key(p.field).to_owned(), p))
                    .collect(),
            }),
        }
    }
}

/// The config key a form field is stored under.
pub fn config_key(field: Field) -> &'static str {
    match field {
        Field::Tenant => "oauth.tenant",
        Field::ClientId => "oauth.client_id",
        Field::ClientSecret => "client_secret (secrets file)",
        Field::AuthorizeUrl => "oauth.authorize_url",
        Field::TokenUrl => "oauth.token_url",
        Field::Scopes => "oauth.scopes",
        Field::Mailbox => "mailbox",
        Field::SmtpHost => "smtp.host",
        Field::SmtpPort => "smtp.port",
        Field::ImapHost => "imap.host",
        Field::ImapPort => "imap.port",
        Field::TestRecipient => "test_recipient",
        Field::TimeoutSecs => "timeout_secs",
        Field::ExtraCaFile => "extra_ca_file",
    }
}

/// `client_secret_expires_on` as a native TOML local date (`2027-06-30`, no quotes).
mod toml_date {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
    use toml::value::{Date as TomlDate, Datetime};

    pub fn serialize<S: Serializer>(date: &Option<time::Date>, s: S) -> Result<S::Ok, S::Error> {
        let datetime = date.map(|d| Datetime {
            date: Some(TomlDate { year: d.year() as u16, month: d.month() as u8, day: d.day() }),
            time: None,
            offset: None,
        });
        datetime.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<time::Date>, D::Error> {
        let Some(datetime) = Option::<Datetime>::deserialize(d)? else {
            return Ok(None);
        };
        let (Some(date), None, None) = (datetime.date, datetime.time, datetime.offset) else {
            return Err(D::Error::custom("expected a date such as 2027-06-30, without a time"));
        };
        let month = time::Month::try_from(date.month).map_err(D::Error::custom)?;
        time::Date::from_calendar_date(i32::from(date.year), month, date.day)
            .map(Some)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::profile::ProfileForm;
    use crate::store::error::ParseProblemKind;
    use crate::store::error::{FileRole, StoreError};
    use crate::store::parse::parse_versioned;

    pub(crate) fn microsoft_profile() -> Profile {
        let form = ProfileForm {
            tenant: "00000000-0000-0000-0000-000000000000".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        form.validate().expect("valid form").0
    }

    fn parse(text: &str) -> Result<ServiceConfig, StoreError> {
        parse_versioned(text, Path::new("/cfg/mailgrant.toml"), FileRole::Config)
    }

    #[test]
    fn from_profile_keeps_identities_apart_and_round_trips_through_toml() {
        let profile = microsoft_profile();
        let identities = Identities {
            imap_user: "alarms@example.com".into(),
            smtp_user: "operator@example.com".into(),
            from: "alarms@example.com".into(),
        };
        let mut config = ServiceConfig::from_profile(&profile, &identities);
        config.oauth.client_secret_expires_on = Some(time::macros::date!(2027 - 06 - 30));

        let text = toml::to_string(&config).expect("serialises");
        assert!(text.contains("client_secret_expires_on = 2027-06-30\n"), "{text}");
        assert!(text.contains("smtp_user = \"operator@example.com\""), "{text}");
        assert!(text.contains("security = \"start_tls\""), "{text}");
        assert_eq!(parse(&text).expect("parses"), config);
    }

    #[test]
    fn to_profile_gives_back_the_validated_profile() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let back = config.to_profile(&Secrets::default()).expect("valid");
        assert_eq!(back.token_url, profile.token_url);
        assert_eq!(back.smtp, profile.smtp);
        assert_eq!(back.scopes, profile.scopes);
        assert_eq!(back.timeout, profile.timeout);
        assert_eq!(config.to_form().client_secret, "");
    }

    #[test]
    fn invalid_settings_name_the_config_key() {
        let profile = microsoft_profile();
        let mut config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        config.smtp.port = 0;
        let error = config.to_profile(&Secrets::default()).expect_err("port 0");
        let StoreError::InvalidSettings { problems, .. } = &error else { panic!("{error:?}") };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "smtp.port");
        assert!(error.to_string().contains("`smtp.port`"), "{error}");
    }

    #[test]
    fn a_typo_in_a_key_is_an_unknown_key_with_its_table() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let text =
            toml::to_string(&config).expect("serialises").replace("port = 993", "prot = 993");
        let error = parse(&text).expect_err("typo");
        let problem = error.parse_problem().expect("parse problem");
        assert_eq!(problem.kind, ParseProblemKind::UnknownKey);
        assert_eq!(problem.key.as_deref(), Some("imap.prot"));
        let line = text.lines().position(|l| l.starts_with("prot")).map(|i| i + 1);
        assert_eq!(problem.line, line);
    }

    #[test]
    fn an_unknown_table_is_named_once_at_its_header() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let text = format!("{}\n[proxy]\nurl = \"x\"\n", toml::to_string(&config).expect("toml"));
        let problem = parse(&text).expect_err("unknown").parse_problem().cloned().expect("parse");
        assert_eq!(problem.kind, ParseProblemKind::UnknownKey);
        assert_eq!(problem.key.as_deref(), Some("proxy"));
        let header = text.lines().position(|l| l == "[proxy]").map(|i| i + 1);
        assert_eq!((problem.line, problem.column), (header, Some(1)));
    }

    #[test]
    fn a_missing_key_is_named_with_its_table() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let text = toml::to_string(&config).expect("serialises");
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("client_id"))
            .map(|l| format!("{l}\n"))
            .collect();
        let problem = parse(&text).expect_err("missing").parse_problem().cloned().expect("parse");
        assert_eq!(problem.kind, ParseProblemKind::MissingKey);
        assert_eq!(problem.key.as_deref(), Some("oauth.client_id"));
    }

    #[test]
    fn an_unknown_store_names_the_key_the_allowed_values_and_the_line() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let text = toml::to_string(&config)
            .expect("serialises")
            .replace("store = \"file\"", "store = \"vault\"");
        let line = text.lines().position(|l| l.starts_with("store =")).map(|i| i + 1);
        let error = parse(&text).expect_err("unknown store");
        let problem = error.parse_problem().cloned().expect("parse problem");
        assert_eq!(problem.kind, ParseProblemKind::InvalidValue);
        assert_eq!(problem.key.as_deref(), Some("secrets.store"));
        assert_eq!(problem.line, line);
        let message = problem.message.unwrap_or_default();
        for allowed in ["`file`", "`dpapi_file`", "`keyring`"] {
            assert!(message.contains(allowed), "{allowed} not named: {message}");
        }
        assert!(message.contains("`vault`"), "{message}");
    }

    #[test]
    fn every_store_and_the_service_account_round_trip() {
        let profile = microsoft_profile();
        let mut config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        config.secrets.service_account = Some("NT SERVICE\\AlarmMailer".into());
        for store in SecretsStore::ALL {
            config.secrets.store = store;
            let text = toml::to_string(&config).expect("serialises");
            assert!(text.contains(&format!("store = \"{}\"", store.as_str())), "{text}");
            assert!(text.contains(r"service_account = 'NT SERVICE\AlarmMailer'"), "{text}");
            assert_eq!(parse(&text).expect("parses"), config);
        }
        assert_eq!(SecretsStore::File.unsupported_here(), None);
        assert_eq!(
            SecretsStore::DpapiFile.unsupported_here().is_some(),
            !cfg!(windows),
            "dpapi_file must be available on Windows and only there"
        );
    }

    #[test]
    fn a_date_with_a_time_is_refused_for_the_secret_expiry() {
        let profile = microsoft_profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let text = toml::to_string(&config)
            .expect("serialises")
            .replace("[oauth]\n", "[oauth]\nclient_secret_expires_on = 2027-06-30T10:00:00Z\n");
        let problem = parse(&text).expect_err("time").parse_problem().cloned().expect("parse");
        assert_eq!(problem.kind, ParseProblemKind::InvalidValue);
        assert_eq!(problem.key.as_deref(), Some("oauth.client_secret_expires_on"));
    }
}
