//! Operator input: the raw form text, its per-field validation, and the validated [`Profile`].
//!
//! Nothing downstream (sign-in, checks, the config writer) takes raw text: it takes a `Profile`,
//! which can only be built by [`ProfileForm::validate`]. Every problem is tied to the field it
//! belongs to so the wizard can show it right there.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use oauth2::{AuthUrl, ClientId, ClientSecret, Scope, TokenUrl};
use serde::{Deserialize, Serialize};

use crate::provider::{Preset, ProviderKind, Security};

/// Default time a network step may take before it is reported as hanging.
pub const DEFAULT_TIMEOUT_SECS: u64 = 20;

/// The form fields an operator fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Tenant,
    ClientId,
    ClientSecret,
    AuthorizeUrl,
    TokenUrl,
    Scopes,
    Mailbox,
    SmtpHost,
    SmtpPort,
    ImapHost,
    ImapPort,
    TestRecipient,
    TimeoutSecs,
    ExtraCaFile,
}

impl Field {
    /// The label the wizard shows for this field (also its accessibility name).
    pub fn label(self) -> &'static str {
        match self {
            Field::Tenant => "Directory (tenant) ID",
            Field::ClientId => "Application (client) ID",
            Field::ClientSecret => "Client secret",
            Field::AuthorizeUrl => "Authorize URL",
            Field::TokenUrl => "Token URL",
            Field::Scopes => "Scopes",
            Field::Mailbox => "Mailbox address",
            Field::SmtpHost => "SMTP host",
            Field::SmtpPort => "SMTP port",
            Field::ImapHost => "IMAP host",
            Field::ImapPort => "IMAP port",
            Field::TestRecipient => "Test recipient",
            Field::TimeoutSecs => "Timeout (seconds)",
            Field::ExtraCaFile => "Extra CA certificate file",
        }
    }
}

/// How serious a field problem is: errors block the next step, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem with one field, in words the operator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: Field,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.label(), self.message)
    }
}

/// Raw text of the setup form, exactly as typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileForm {
    pub provider: ProviderKind,
    pub tenant: String,
    pub client_id: String,
    /// Kept out of Debug output by [`ProfileForm`]'s users: never log a form.
    #[serde(skip)]
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: String,
    pub mailbox: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: Security,
    pub imap_host: String,
    pub imap_port: String,
    pub imap_security: Security,
    pub test_recipient: String,
    pub timeout_secs: String,
    pub extra_ca_file: String,
}

impl Default for ProfileForm {
    fn default() -> Self {
        ProfileForm::for_provider(ProviderKind::Microsoft365)
    }
}

/// A mail server as the checks and the service reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEndpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.host, self.port, self.security)
    }
}

/// Validated settings: every check, the sign-in and the config writer work from this.
#[derive(Clone, Debug)]
pub struct Profile {
    pub provider: ProviderKind,
    /// Tenant as typed and normalised (Microsoft only).
    pub tenant: Option<String>,
    pub client_id: ClientId,
    pub client_secret: Option<ClientSecret>,
    pub authorize_url: AuthUrl,
    pub token_url: TokenUrl,
    pub scopes: Vec<Scope>,
    pub mailbox: String,
    pub smtp: ServerEndpoint,
    pub imap: ServerEndpoint,
    pub test_recipient: String,
    pub timeout: Duration,
    pub extra_ca_file: Option<PathBuf>,
}

impl Profile {
    /// Scopes as one space-separated string, as sent to the provider.
    pub fn scope_string(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        scopes.join(" ")
    }

    /// True when the test message goes to the mailbox itself, which enables the round trip.
    pub fn round_trip_possible(&self) -> bool {
        self.test_recipient.eq_ignore_ascii_case(&self.mailbox)
    }
}

impl ProfileForm {
    /// A form pre-filled from a provider's preset.
    pub fn for_provider(provider: ProviderKind) -> ProfileForm {
        let preset = Preset::for_kind(provider);
        ProfileForm {
            provider,
            tenant: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            authorize_url: preset.authorize_url.to_owned(),
            token_url: preset.token_url.to_owned(),
            scopes: preset.scopes().join(" "),
            mailbox: String::new(),
            smtp_host: preset.smtp.0.to_owned(),
            smtp_port: preset.smtp.1.to_string(),
            smtp_security: preset.smtp.2,
            imap_host: preset.imap.0.to_owned(),
            imap_port: preset.imap.1.to_string(),
            imap_security: preset.imap.2,
            test_recipient: String::new(),
            timeout_secs: DEFAULT_TIMEOUT_SECS.to_string(),
            extra_ca_file: String::new(),
        }
    }

    /// Switches provider, replacing the preset-owned fields and keeping what the operator typed
    /// for the mailbox, client and tenant.
    pub fn switch_provider(&mut self, provider: ProviderKind) {
        if provider == self.provider {
            return;
        }
        let fresh = ProfileForm::for_provider(provider);
        self.provider = provider;
        self.authorize_url = fresh.authorize_url;
        self.token_url = fresh.token_url;
        self.scopes = fresh.scopes;
        self.smtp_host = fresh.smtp_host;
        self.smtp_port = fresh.smtp_port;
        self.smtp_security = fresh.smtp_security;
        self.imap_host = fresh.imap_host;
        self.imap_port = fresh.imap_port;
        self.imap_security = fresh.imap_security;
    }

    /// All problems with the form, errors and warnings, in field order.
    pub fn problems(&self) -> Vec<FieldProblem> {
        match self.validate() {
            Ok((_, warnings)) => warnings,
            Err(problems) => problems,
        }
    }

    /// Problems for one field only.
    pub fn problems_for(&self, field: Field) -> Vec<FieldProblem> {
        self.problems().into_iter().filter(|p| p.field == field).collect()
    }

    /// Validates every field. On success returns the profile and any warnings; on failure every
    /// problem (errors and warnings) so the wizard can show them all at once.
    pub fn validate(&self) -> Result<(Profile, Vec<FieldProblem>), Vec<FieldProblem>> {
        let mut problems = Problems::default();
        let microsoft = self.provider == ProviderKind::Microsoft365;

        let client_id = problems.take(Field::ClientId, check_client_id(&self.client_id, microsoft));
        let tenant = if microsoft {
            let tenant = problems.take(Field::Tenant, check_tenant(&self.tenant));
            if let (Some(t), Some(c)) = (&tenant, &client_id)
                && t.eq_ignore_ascii_case(c)
            {
                problems.warn(
                    Field::Tenant,
                    "This is the same as the application (client) ID. The Directory (tenant) ID \
                     is a different GUID on the app's Overview page",
                );
            }
            if let Some(alias @ ("common" | "organizations")) = tenant.as_deref() {
                // BR-03: single-tenant registrations refuse the shared endpoints (AADSTS50194).
                problems.warn(
                    Field::Tenant,
                    &format!(
                        "{alias} works only for a multi-tenant app registration. An app for \
                         \"Accounts in this organizational directory only\" needs its \
                         Directory (tenant) ID here (from the app's Overview page)"
                    ),
                );
            }
            tenant
        } else {
            None
        };
        let client_secret =
            problems.take(Field::ClientSecret, check_client_secret(&self.client_secret));

        let preset = Preset::for_kind(self.provider);
        let tenant_text = tenant.clone().unwrap_or_default();
        let (authorize_text, token_text) = if microsoft {
            (preset.authorize_url_for(&tenant_text), preset.token_url_for(&tenant_text))
        } else {
            (self.authorize_url.trim().to_owned(), self.token_url.trim().to_owned())
        };
        let authorize_url = problems.take(Field::AuthorizeUrl, check_endpoint_url(&authorize_text));
        let token_url = problems.take(Field::TokenUrl, check_endpoint_url(&token_text));
        let scopes = problems.take_with_warnings(Field::Scopes, check_scopes(&self.scopes));

        let mailbox = problems.take(Field::Mailbox, check_email(&self.mailbox));
        let smtp_host = problems.take(Field::SmtpHost, check_host(&self.smtp_host));
        let smtp_port = problems.take(Field::SmtpPort, check_port(&self.smtp_port));
        let imap_host = problems.take(Field::ImapHost, check_host(&self.imap_host));
        let imap_port = problems.take(Field::ImapPort, check_port(&self.imap_port));
        let test_recipient = if self.test_recipient.trim().is_empty() {
            mailbox.clone()
        } else {
            problems.take(Field::TestRecipient, check_email(&self.test_recipient))
        };
        let timeout_secs = problems.take(Field::TimeoutSecs, check_timeout(&self.timeout_secs));
        let extra_ca_file = problems.take(Field::ExtraCaFile, check_ca_file(&self.extra_ca_file));

        if problems.has_errors() {
            return Err(problems.list);
        }
        let (
            Some(client_id),
            Some(client_secret),
            Some(authorize_url),
            Some(token_url),
            Some(scopes),
            Some(mailbox),
            Some(smtp_host),
            Some(smtp_port),
            Some(imap_host),
            Some(imap_port),
            Some(test_recipient),
            Some(timeout_secs),
            Some(extra_ca_file),
        ) = (
            client_id,
            client_secret,
            authorize_url,
            token_url,
            scopes,
            mailbox,
            smtp_host,
            smtp_port,
            imap_host,
            imap_port,
            test_recipient,
            timeout_secs,
            extra_ca_file,
        )
        else {
            return Err(problems.list);
        };

        let profile = Profile {
            provider: self.provider,
            tenant,
            client_id: ClientId::new(client_id),
            client_secret: client_secret.map(ClientSecret::new),
            authorize_url: AuthUrl::from_url(authorize_url),
            token_url: TokenUrl::from_url(token_url),
            scopes: scopes.into_iter().map(Scope::new).collect(),
            mailbox,
            smtp: ServerEndpoint { host: smtp_host, port: smtp_port, security: self.smtp_security },
            imap: ServerEndpoint { host: imap_host, port: imap_port, security: self.imap_security },
            test_recipient,
            timeout: Duration::from_secs(timeout_secs),
            extra_ca_file,
        };
        Ok((profile, problems.list))
    }
}

/// Collects problems while fields are checked one by one.
#[derive(Default)]
struct Problems {
    list: Vec<FieldProblem>,
}

/// Result of checking one field: a value, or an error message; plus warnings either way.
struct Checked<T> {
    value: Result<T, String>,
    warnings: Vec<String>,
}

impl<T> From<Result<T, String>> for Checked<T> {
    fn from(value: Result<T, String>) -> Self {
        Checked { value, warnings: Vec::new() }
    }
}

impl Problems {
    fn take<T>(&mut self, field: Field, result: Result<T, String>) -> Option<T> {
        self.take_with_warnings(field, result.into())
    }

    fn take_with_warnings<T>(&mut self, field: Field, checked: Checked<T>) -> Option<T> {
        for warning in checked.warnings {
            self.warn(field, &warning);
        }
        match checked.value {
            Ok(value) => Some(value),
            Err(message) => {
                self.list.push(FieldProblem { field, severity: Severity::Error, message });
                None
            }
        }
    }

    fn warn(&mut self, field: Field, message: &str) {
        let message = message.to_owned();
        self.list.push(FieldProblem { field, severity: Severity::Warning, message });
    }

    fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Normalises a GUID typed with braces, spaces or upper case; `None` if it is not a GUID.
pub fn normalise_guid(text: &str) -> Option<String> {
    let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}').trim();
    let groups: Vec<&str> = trimmed.split('-').collect();
    let lengths_ok =
        groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, len)| g.len() == len);
    let hex_ok = groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    (lengths_ok && hex_ok).then(|| trimmed.to_ascii_lowercase())
}

fn guid_shape_hint(text: &str) -> String {
    let hex: usize = text.chars().filter(|c| c.is_ascii_hexdigit()).count();
    let bad: Vec<char> =
        text.chars().filter(|c| !c.is_ascii_hexdigit() && *c != '-').take(3).collect();
    if !bad.is_empty() {
        let bad: String = bad.into_iter().collect();
        format!(
            "Not a valid ID: it contains \"{bad}\". An ID has only 0-9, a-f and dashes, \
             like 00000000-0000-0000-0000-000000000000"
        )
    } else {
        format!(
            "Not a valid ID: it has {hex} hex digits where 32 are expected, grouped 8-4-4-4-12. \
             Copy it again from the app's Overview page"
        )
    }
}

fn check_client_id(text: &str, microsoft: bool) -> Result<String, String> {
    let text = text.trim();
    // Where the operator finds the ID: Entra's page for Microsoft, the provider's otherwise.
    let source = if microsoft {
        "the Application (client) ID from the app registration's Overview page"
    } else {
        "the client ID the provider gave for this client"
    };
    if text.is_empty() {
        return Err(format!("Enter {source}"));
    }
    if text.contains('@') {
        return Err(format!(
            "This looks like an e-mail address, not an application ID. Copy {source}"
        ));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(format!("This is a URL. Enter only {source}"));
    }
    if microsoft {
        return normalise_guid(text).ok_or_else(|| guid_shape_hint(text.trim_matches(['{', '}'])));
    }
    // Other providers shape their IDs freely (Google: `…apps.googleusercontent.com`); a GUID
    // is still tidied, anything else only needs to be one word of visible characters.
    if let Some(guid) = normalise_guid(text) {
        return Ok(guid);
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("A client ID has no spaces or line breaks. Copy {source} again"));
    }
    Ok(text.to_owned())
}

/// Tenants Entra accepts by name rather than by ID.
const TENANT_ALIASES: [&str; 3] = ["organizations", "consumers", "common"];

fn check_tenant(text: &str) -> Result<String, String> {
    let mut text = text.trim().to_owned();
    if text.is_empty() {
        return Err("Enter the Directory (tenant) ID from the app's Overview page, or your \
                    organisation's domain such as contoso.onmicrosoft.com"
            .to_owned());
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        let url = url::Url::parse(&text).map_err(|_| "This URL cannot be read".to_owned())?;
        let first = url.path_segments().and_then(|mut s| s.next()).unwrap_or_default();
        if first.is_empty() {
            return Err("This URL has no tenant in it. Enter the Directory (tenant) ID".to_owned());
        }
        // Braces and spaces arrive percent-encoded in a URL ("%7B...%7D").
        text = percent_decoded(first).trim().to_owned();
    }
    if text.contains('@') {
        return Err("This is an e-mail address. Enter the Directory (tenant) ID, or the part \
                    after @ if it is your organisation's domain"
            .to_owned());
    }
    let lower = text.to_ascii_lowercase();
    if TENANT_ALIASES.contains(&lower.as_str()) {
        return Ok(lower);
    }
    if let Some(guid) = normalise_guid(&text) {
        return Ok(guid);
    }
    if lower.contains('-') && lower.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(guid_shape_hint(&lower));
    }
    let domain_ok = lower.contains('.')
        && lower.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if domain_ok {
        Ok(lower)
    } else {
        Err("Enter a Directory (tenant) ID (a GUID), a verified domain such as \
             contoso.onmicrosoft.com, or organizations"
            .to_owned())
    }
}

/// Decodes `%XX` escapes of a URL path segment (invalid escapes are kept as typed).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_client_secret(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if normalise_guid(text).is_some() {
        return Err("This looks like the secret's ID (a GUID), not its value. In Certificates & \
                    secrets, copy the Value column (shown only right after the secret is created)"
            .to_owned());
    }
    if text.chars().any(char::is_whitespace) {
        return Err("A client secret has no spaces. Copy it again without line breaks".to_owned());
    }
    Ok(Some(text.to_owned()))
}

/// True for hosts that never leave this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_endpoint_url(text: &str) -> Result<url::Url, String> {
    if text.is_empty() {
        return Err("Enter the URL".to_owned());
    }
    let url = url::Url::parse(text).map_err(|e| format!("Not a valid URL ({e})"))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&host) => Ok(url),
        "http" => {
            Err("Use https://. Only a server on this machine may be reached over http".to_owned())
        }
        other => Err(format!("Unsupported scheme \"{other}\": use https://")),
    }
}

fn check_scopes(text: &str) -> Checked<Vec<String>> {
    let mut warnings = Vec::new();
    if text.contains(',') || text.contains(';') {
        return Err("Separate scopes with single spaces, not commas".to_owned()).into();
    }
    let scopes: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err("Enter at least one scope".to_owned()).into();
    }
    for scope in &scopes {
        let lower = scope.to_ascii_lowercase();
        if let Some(name) = lower.strip_prefix("https://graph.microsoft.com/")
            && (name.starts_with("imap.") || name.starts_with("smtp.") || name.starts_with("pop."))
        {
            return Err(format!(
                "{scope} is a Microsoft Graph scope; IMAP and SMTP refuse Graph tokens. Use \
                 https://outlook.office.com/{}",
                &scope["https://graph.microsoft.com/".len()..]
            ))
            .into();
        }
        if matches!(lower.as_str(), "imap.accessasuser.all" | "smtp.send") {
            return Err(format!(
                "{scope} without a resource gets the wrong audience. Use \
                 https://outlook.office.com/{scope}"
            ))
            .into();
        }
    }
    let exchange = scopes.iter().any(|s| s.starts_with("https://outlook.office.com/"));
    let graph = scopes.iter().find(|s| {
        let lower = s.to_ascii_lowercase();
        lower.starts_with("https://graph.microsoft.com/")
            || matches!(lower.as_str(), "user.read" | "mail.read" | "mail.send")
    });
    if let (true, Some(graph)) = (exchange, graph) {
        return Err(format!(
            "{graph} is a Microsoft Graph scope and cannot be requested together with Exchange \
             scopes (AADSTS28000). Remove it"
        ))
        .into();
    }
    if !scopes.iter().any(|s| s == "offline_access")
        && !scopes.iter().any(|s| s == "https://mail.google.com/")
    {
        warnings.push(
            "offline_access is missing: without it no refresh token is issued and the service \
             stops after about an hour"
                .to_owned(),
        );
    }
    Checked { value: Ok(scopes), warnings }
}

fn check_email(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Enter an e-mail address such as alarms@example.com".to_owned());
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err("An e-mail address needs an @, such as alarms@example.com".to_owned());
    };
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty())
        && !domain.contains(char::is_whitespace);
    if local.is_empty() || local.contains(char::is_whitespace) || local.contains('@') {
        return Err("The part before @ is not valid".to_owned());
    }
    if !domain_ok {
        return Err(format!("\"{domain}\" is not a valid mail domain"));
    }
    Ok(text.to_owned())
}

fn check_host(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Enter the server's host name".to_owned());
    }
    if text.contains("://") {
        return Err("Enter only the host name, without a scheme like https://".to_owned());
    }
    if text.contains(char::is_whitespace) || text.contains('/') || text.contains('@') {
        return Err("A host name has no spaces, slashes or @".to_owned());
    }
    if text.matches(':').count() == 1 {
        return Err("Put the port in the port field, not after the host name".to_owned());
    }
    if text.chars().any(char::is_control) {
        return Err("The host name holds an invisible control character; type it again".to_owned());
    }
    // DNS names are at most 253 characters; anything longer is a paste gone wrong.
    if text.chars().count() > 253 {
        return Err("A host name is at most 253 characters long".to_owned());
    }
    Ok(text.to_ascii_lowercase())
}

fn check_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err("Enter a port number from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
    }
}

fn check_timeout(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) if (1..=600).contains(&secs) => Ok(secs),
        _ => Err("Enter a number of seconds from 1 to 600".to_owned()),
    }
}

fn check_ca_file(text: &str) -> Result<Option<PathBuf>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(text);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Some(path)),
        Ok(meta) if meta.is_dir() => {
            Err("This is a folder; choose the PEM certificate file itself".to_owned())
        }
        Ok(_) => Err("This is not a plain file (a device or pipe); choose the PEM certificate \
                      file itself"
            .to_owned()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "There is no file at that path; check the name, or clear the field".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "This user may not read that file; choose a copy it can read".to_owned()
            }
            kind => format!("The system refused to read this file ({kind})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_form() -> ProfileForm {
        ProfileForm {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        }
    }

    fn errors_for(form: &ProfileForm, field: Field) -> Vec<String> {
        form.problems_for(field)
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn a_complete_microsoft_form_validates_into_tenant_specific_urls() {
        let (profile, warnings) = ms_form().validate().expect("valid form");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            profile.token_url.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(profile.test_recipient, "alarms@example.com");
        assert!(profile.round_trip_possible());
        assert_eq!(profile.smtp.port, 587);
        assert_eq!(profile.imap.security, Security::Tls);
    }

    #[test]
    fn an_email_typed_as_client_id_is_named_as_such() {
        let form = ProfileForm { client_id: "alarms@example.com".into(), ..ms_form() };
        let errors = errors_for(&form, Field::ClientId);
        assert!(errors[0].contains("e-mail address"), "{errors:?}");
    }

    #[test]
    fn a_guid_with_a_typo_says_what_is_wrong() {
        let form =
            ProfileForm { client_id: "0000000-0000-0000-0000-00000000000g".into(), ..ms_form() };
        let errors = errors_for(&form, Field::ClientId);
        assert!(errors[0].contains("\"g\""), "{errors:?}");
        let form =
            ProfileForm { client_id: "0000000-0000-0000-0000-000000000000".into(), ..ms_form() };
        assert!(errors_for(&form, Field::ClientId)[0].contains("31 hex digits"));
    }

    #[test]
    fn tenant_accepts_guid_with_braces_domain_and_aliases() {
        for (input, expected) in [
            ("{00000000-0000-0000-0000-00000000000A} ", "00000000-0000-0000-0000-00000000000a"),
            (" Contoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
            ("organizations", "organizations"),
            ("Common", "common"),
            (
                "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000002/",
                "00000000-0000-0000-0000-000000000002",
            ),
        ] {
            assert_eq!(check_tenant(input).as_deref(), Ok(expected), "input {input:?}");
        }
        assert!(check_tenant("").is_err());
        assert!(check_tenant("alarms@example.com").unwrap_err().contains("e-mail"));
    }

    #[test]
    fn br03_tenant_field_inputs() {
        let tenant = |text: &str| ProfileForm { tenant: text.into(), ..ms_form() };
        let warnings = |form: &ProfileForm| -> Vec<String> {
            form.problems_for(Field::Tenant)
                .into_iter()
                .filter(|p| p.severity == Severity::Warning)
                .map(|p| p.message)
                .collect()
        };
        // The shared endpoints are accepted, with a warning about single-tenant apps.
        for alias in ["common", "organizations", " Common "] {
            let form = tenant(alias);
            let (profile, _) = form.validate().expect("accepted");
            assert_eq!(profile.tenant.as_deref(), Some(alias.trim().to_lowercase().as_str()));
            let warned = warnings(&form);
            assert_eq!(warned.len(), 1, "{alias}: {warned:?}");
            assert!(warned[0].contains("Directory (tenant) ID"), "{warned:?}");
            assert!(warned[0].contains("multi-tenant"), "{warned:?}");
        }
        assert!(warnings(&tenant("consumers")).is_empty());
        // Empty is an error that says what to enter.
        let errors = errors_for(&tenant("  "), Field::Tenant);
        assert!(errors[0].contains("Directory (tenant) ID"), "{errors:?}");
        // The client ID pasted again: a warning, not silently taken.
        let warned = warnings(&tenant("00000000-0000-0000-0000-000000000001"));
        assert!(warned.iter().any(|w| w.contains("same as the application")), "{warned:?}");
        // A whole URL: the tenant is extracted; braces arrive percent-encoded.
        for (url, expected) in [
            (
                "https://login.microsoftonline.com/00000000-0000-0000-0000-00000000000B/",
                "00000000-0000-0000-0000-00000000000b",
            ),
            (
                "https://login.microsoftonline.com/{00000000-0000-0000-0000-00000000000c}/oauth2/\
                 v2.0/authorize",
                "00000000-0000-0000-0000-00000000000c",
            ),
            (
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
                "contoso.onmicrosoft.com",
            ),
        ] {
            let (profile, _) = tenant(url).validate().expect(url);
            assert_eq!(profile.tenant.as_deref(), Some(expected), "{url}");
            assert!(
                profile.authorize_url.as_str().starts_with(&format!(
                    "https://login.microsoftonline.com/{expected}/oauth2/v2.0/authorize"
                )),
                "{}",
                profile.authorize_url.as_str()
            );
        }
        assert!(
            errors_for(&tenant("https://login.microsoftonline.com/"), Field::Tenant)[0]
                .contains("no tenant")
        );
        assert!(!errors_for(&tenant("https://portal.azure.com/#home"), Field::Tenant).is_empty());
        // GUIDs with braces or surrounding spaces are normalised.
        for typed in [
            "{00000000-0000-0000-0000-00000000000D}",
            "  00000000-0000-0000-0000-00000000000d\t",
            " { 00000000-0000-0000-0000-00000000000d } ",
        ] {
            let (profile, _) = tenant(typed).validate().expect(typed);
            assert_eq!(profile.tenant.as_deref(), Some("00000000-0000-0000-0000-00000000000d"));
        }
        let (profile, warned) = tenant("Contoso.onmicrosoft.com").validate().expect("domain");
        assert_eq!(profile.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
        assert!(warned.is_empty(), "{warned:?}");
    }

    #[test]
    fn tenant_equal_to_client_id_is_warned_about() {
        let form =
            ProfileForm { tenant: "00000000-0000-0000-0000-000000000001".into(), ..ms_form() };
        let (_, warnings) = form.validate().expect("still valid");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("same as the application"));
    }

    #[test]
    fn a_secret_id_pasted_instead_of_the_value_is_refused() {
        let form = ProfileForm {
            client_secret: "00000000-0000-0000-0000-000000000009".into(),
            ..ms_form()
        };
        assert!(errors_for(&form, Field::ClientSecret)[0].contains("Value column"));
    }

    #[test]
    fn graph_and_unprefixed_scopes_are_refused_with_the_exchange_form() {
        let graph = "https://graph.microsoft.com/IMAP.AccessAsUser.All offline_access";
        let err = check_scopes(graph).value.unwrap_err();
        assert!(err.contains("https://outlook.office.com/IMAP.AccessAsUser.All"), "{err}");
        let bare =
            check_scopes("offline_access IMAP.AccessAsUser.All SMTP.Send").value.unwrap_err();
        assert!(bare.contains("https://outlook.office.com/IMAP.AccessAsUser.All"), "{bare}");
        assert!(check_scopes("a,b").value.unwrap_err().contains("commas"));
        let mixed = "https://outlook.office.com/SMTP.Send User.Read offline_access";
        assert!(check_scopes(mixed).value.unwrap_err().contains("AADSTS28000"));
        assert_eq!(check_scopes("https://outlook.office.com/SMTP.Send").warnings.len(), 1);
    }

    #[test]
    fn custom_providers_take_client_ids_of_their_own_shape() {
        let google = "000000000000-example0000000000000000000000.apps.googleusercontent.com";
        assert_eq!(check_client_id(google, false), Ok(google.to_owned()));
        assert_eq!(
            check_client_id("{00000000-0000-0000-0000-00000000000A}", false),
            Ok("00000000-0000-0000-0000-00000000000a".to_owned())
        );
        assert!(check_client_id("two words", false).expect_err("space").contains("no spaces"));
        assert!(check_client_id(google, true).is_err(), "Microsoft IDs are GUIDs");
    }

    #[test]
    fn control_characters_and_overlong_host_names_are_refused() {
        assert!(check_host("127.0.0.1\u{0}x").expect_err("NUL").contains("control character"));
        assert!(check_host(&"a".repeat(254)).expect_err("long").contains("253 characters"));
        assert_eq!(check_host(&"a".repeat(253)), Ok("a".repeat(253)));
    }

    #[test]
    fn hosts_ports_and_timeouts_explain_their_limits() {
        assert!(check_host("smtp.office365.com:587").unwrap_err().contains("port field"));
        assert!(check_host("https://smtp.office365.com").unwrap_err().contains("scheme"));
        assert!(check_port("0").is_err());
        assert!(check_port("70000").is_err());
        assert_eq!(check_port(" 993 "), Ok(993));
        assert!(check_timeout("0").is_err());
        assert_eq!(check_timeout("20"), Ok(20));
    }

    #[test]
    fn plain_http_is_only_allowed_to_this_machine() {
        assert!(check_endpoint_url("http://127.0.0.1:9090/token").is_ok());
        assert!(check_endpoint_url("http://localhost:9090/token").is_ok());
        assert!(check_endpoint_url("http://idp.example.com/token").is_err());
    }
}
