//! Token health forecast: how long the stored sign-in will keep working, and what to do
//! before it stops.
//!
//! Built from the plain config and the secrets at a given moment, with no network access, so
//! the status view, `mailgrant status` and a monitoring script all say the same thing. The
//! rules, by provider (recognised from the token URL's host, never from a guess about the
//! path):
//! - Microsoft (Entra): a refresh token dies after 90 days without use; every refresh rotates
//!   it and restarts the clock. Warned [`MICROSOFT_WARN_BEFORE`] ahead.
//! - Google: an app whose consent screen is in "Testing" gets refresh tokens that die 7 days
//!   after issue (BR-15); warned from day 5. A token that still refreshed after day 7 belongs
//!   to an app in production, whose tokens die after 6 months without use.
//! - Other providers: no lifetime is known; only the recorded dates are shown.
//! - The client secret's expiry date the operator entered (BR-13) is warned 30 days ahead.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

use crate::provider::ProviderKind;
use crate::store::{Secrets, ServiceConfig};

/// Microsoft refresh tokens die after this long without use.
pub const MICROSOFT_INACTIVITY: Duration = Duration::days(90);
/// Warn this long before a Microsoft refresh token would die from inactivity.
pub const MICROSOFT_WARN_BEFORE: Duration = Duration::days(14);
/// Google refresh tokens of apps in "Testing" die this long after issue.
pub const GOOGLE_TESTING_LIFETIME: Duration = Duration::days(7);
/// Warn about Google's "Testing" limit from this age on.
pub const GOOGLE_TESTING_WARN_FROM: Duration = Duration::days(5);
/// Google refresh tokens of apps in production die after this long without use.
pub const GOOGLE_INACTIVITY: Duration = Duration::days(183);
/// Warn this long before a Google production token would die from inactivity.
pub const GOOGLE_WARN_BEFORE: Duration = Duration::days(14);
/// Warn this many days before the entered client secret expiry date.
pub const CLIENT_SECRET_WARN_DAYS: i64 = 30;

/// Whose refresh-token rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRules {
    /// Entra ID: 90 days of inactivity.
    Microsoft,
    /// Google: 7 days after issue while the app is in "Testing", else 6 months of inactivity.
    Google,
    /// No lifetime is known.
    Unknown,
}

impl TokenRules {
    /// The rules for a config: Microsoft for the Microsoft 365 provider or a Microsoft login
    /// host, Google for Google's token hosts, otherwise unknown.
    pub fn for_config(config: &ServiceConfig) -> TokenRules {
        let host = url::Url::parse(&config.oauth.token_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let google = ["oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com"];
        let microsoft = [
            "login.microsoftonline.com",
            "login.microsoftonline.us",
            "login.partner.microsoftonline.cn",
            "login.chinacloudapi.cn",
            "login.live.com",
        ];
        if google.contains(&host.as_str()) {
            TokenRules::Google
        } else if config.oauth.provider == ProviderKind::Microsoft365
            || microsoft.contains(&host.as_str())
        {
            TokenRules::Microsoft
        } else {
            TokenRules::Unknown
        }
    }
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Nothing to do.
    Ok,
    /// Works now; someone must act before the date given.
    Warning,
    /// Mail cannot be sent (or almost certainly cannot) until someone acts.
    Failed,
}

impl Health {
    /// Lowercase name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Failed => "failed",
        }
    }
}

/// One thing the operator should know about, with what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id for scripts, e.g. `refresh-token-inactive-soon`.
    pub id: &'static str,
    /// Warning or failed.
    pub health: Health,
    /// What is going to happen (or happened), with the date.
    pub summary: String,
    /// What to do about it.
    pub fix: String,
    /// When it happens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
}

/// The forecast for one setup at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenForecast {
    /// The moment it was made for.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// Whose rules were applied.
    pub rules: TokenRules,
    /// The worst finding (`ok` without findings).
    pub health: Health,
    /// When the cached access token expires (the next use refreshes it after that).
    #[serde(with = "time::serde::rfc3339::option")]
    pub access_expires_at: Option<OffsetDateTime>,
    /// True when a refresh token is stored.
    pub has_refresh_token: bool,
    /// When the stored refresh token was issued.
    #[serde(with = "time::serde::rfc3339::option")]
    pub refresh_issued_at: Option<OffsetDateTime>,
    /// When a refresh last succeeded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub refresh_last_used_at: Option<OffsetDateTime>,
    /// When the refresh token is expected to die if nothing uses it, when the rules say.
    #[serde(with = "time::serde::rfc3339::option")]
    pub refresh_expected_death: Option<OffsetDateTime>,
    /// Which rule gave that date, in words.
    pub refresh_death_rule: Option<String>,
    /// The client secret's expiry date as entered (`2027-06-30` in JSON).
    #[serde(serialize_with = "iso_date")]
    pub client_secret_expires_on: Option<Date>,
    /// What needs attention, worst first.
    pub findings: Vec<Finding>,
}

/// Makes the forecast for `config` and `secrets` at `now`.
pub fn forecast(config: &ServiceConfig, secrets: &Secrets, now: OffsetDateTime) -> TokenForecast {
    let rules = TokenRules::for_config(config);
    let mut findings = Vec::new();

    let has_refresh_token = secrets.has_refresh_token();
    let (death, rule) = if has_refresh_token && secrets.needs_sign_in.is_none() {
        expected_death(rules, secrets, now, &mut findings)
    } else {
        (None, None)
    };
    sign_in_findings(secrets, &mut findings);
    if let Some(expires_on) = config.oauth.client_secret_expires_on {
        client_secret_finding(expires_on, now, &mut findings);
    }

    findings.sort_by_key(|f| std::cmp::Reverse(f.health));
    TokenForecast {
        now,
        rules,
        health: findings.first().map_or(Health::Ok, |f| f.health),
        access_expires_at: secrets.access_expires_at,
        has_refresh_token,
        refresh_issued_at: secrets.refresh_token_issued_at,
        refresh_last_used_at: secrets.refresh_token_last_used_at,
        refresh_expected_death: death,
        refresh_death_rule: rule,
        client_secret_expires_on: config.oauth.client_secret_expires_on,
        findings,
    }
}

/// The date the refresh token dies if unused, the rule in words, and any warning.
fn expected_death(
    rules: TokenRules,
    secrets: &Secrets,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) -> (Option<OffsetDateTime>, Option<String>) {
    let issued = secrets.refresh_token_issued_at;
    let last_active = match (issued, secrets.refresh_token_last_used_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match rules {
        TokenRules::Microsoft => {
            let Some(active) = last_active else { return (None, None) };
            let death = active + MICROSOFT_INACTIVITY;
            inactivity_finding(active, MICROSOFT_INACTIVITY, MICROSOFT_WARN_BEFORE, now, findings);
            (Some(death), Some("Microsoft: 90 days after its last use".to_owned()))
        }
        TokenRules::Google => {
            let Some(issued) = issued else { return (None, None) };
            let testing_death = issued + GOOGLE_TESTING_LIFETIME;
            let proven_production =
                secrets.refresh_token_last_used_at.is_some_and(|used| used > testing_death);
            if proven_production {
                let active = last_active.unwrap_or(issued);
                let death = active + GOOGLE_INACTIVITY;
                inactivity_finding(active, GOOGLE_INACTIVITY, GOOGLE_WARN_BEFORE, now, findings);
                let rule = "Google (app in production): 6 months after its last use";
                return (Some(death), Some(rule.to_owned()));
            }
            if now >= issued + GOOGLE_TESTING_WARN_FROM {
                findings.push(google_testing_finding(testing_death, now));
            }
            let rule = "Google: 7 days after issue if the app is in \"Testing\"";
            (Some(testing_death), Some(rule.to_owned()))
        }
        TokenRules::Unknown => (None, None),
    }
}

fn inactivity_finding(
    last_active: OffsetDateTime,
    lifetime: Duration,
    warn_before: Duration,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) {
    let death = last_active + lifetime;
    let fix = "Make sure the service runs and fetches a token at least weekly \
               (mailgrant token --config <file>); if it cannot, sign in again";
    if now >= death {
        findings.push(Finding {
            id: "refresh-token-inactive",
            health: Health::Failed,
            summary: format!(
                "The refresh token was unused since {} and has probably expired",
                day(last_active)
            ),
            fix: "Sign in again (mailgrant login --config <file>, or Sign in again… in the app)"
                .to_owned(),
            due: Some(death),
        });
    } else if now >= death - warn_before {
        findings.push(Finding {
            id: "refresh-token-inactive-soon",
            health: Health::Warning,
            summary: format!(
                "The refresh token dies on {} unless it is used before then ({} days left)",
                day(death),
                (death - now).whole_days()
            ),
            fix: fix.to_owned(),
            due: Some(death),
        });
    }
}

fn google_testing_finding(death: OffsetDateTime, now: OffsetDateTime) -> Finding {
    let (health, summary) = if now >= death {
        (
            Health::Failed,
            format!(
                "The refresh token is past Google's 7-day limit for apps in \"Testing\" (since \
                 {}); if the app is in Testing it no longer works",
                day(death)
            ),
        )
    } else {
        (
            Health::Warning,
            format!(
                "If the Google app is in \"Testing\", the refresh token dies on {} (7 days \
                 after sign-in)",
                day(death)
            ),
        )
    };
    Finding {
        id: "google-testing-limit",
        health,
        summary,
        fix: "In Google Cloud console → APIs & Services → OAuth consent screen, set the \
              publishing status to \"In production\", then sign in again"
            .to_owned(),
        due: Some(death),
    }
}

fn sign_in_findings(secrets: &Secrets, findings: &mut Vec<Finding>) {
    let again = "Sign in again (mailgrant login --config <file>, or Sign in again… in the app)";
    if let Some(reason) = &secrets.needs_sign_in {
        findings.push(Finding {
            id: "needs-sign-in",
            health: Health::Failed,
            summary: format!("The provider refused the stored refresh token: {reason}"),
            fix: again.to_owned(),
            due: None,
        });
    } else if !secrets.has_refresh_token() {
        findings.push(Finding {
            id: "not-signed-in",
            health: Health::Failed,
            summary: "No refresh token is stored".to_owned(),
            fix: again.to_owned(),
            due: None,
        });
    }
}

fn client_secret_finding(expires_on: Date, now: OffsetDateTime, findings: &mut Vec<Finding>) {
    let due = expires_on.midnight().assume_utc();
    let days_left = (expires_on - now.date()).whole_days();
    let fix = "In the Entra admin center → App registrations → the app → Certificates & \
               secrets, create a new client secret, then use \"Replace client secret\" in \
               mailgrant; no new sign-in is needed";
    let (health, summary) = if days_left <= 0 {
        (Health::Failed, format!("The client secret expired on {expires_on}"))
    } else if days_left <= CLIENT_SECRET_WARN_DAYS {
        (
            Health::Warning,
            format!("The client secret expires on {expires_on} ({days_left} days left)"),
        )
    } else {
        return;
    };
    findings.push(Finding {
        id: "client-secret-expiry",
        health,
        summary,
        fix: fix.to_owned(),
        due: Some(due),
    });
}

fn iso_date<S: serde::Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => s.serialize_str(&date.to_string()),
        None => s.serialize_none(),
    }
}

/// A date as `2025-03-01`.
fn day(at: OffsetDateTime) -> String {
    at.date().to_string()
}

impl TokenForecast {
    /// Lines for a text status view: label and value.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let when = |at: Option<OffsetDateTime>| {
            at.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "(none)".to_owned())
        };
        let access = match self.access_expires_at {
            Some(at) if at > self.now => {
                format!("expires {} (in {} min)", when(Some(at)), (at - self.now).whole_minutes())
            }
            Some(at) => format!("expired {} (the next use refreshes it)", when(Some(at))),
            None => "(none)".to_owned(),
        };
        let death = match (&self.refresh_expected_death, &self.refresh_death_rule) {
            (Some(at), Some(rule)) => format!("{} ({rule})", when(Some(*at))),
            _ if self.has_refresh_token => "no lifetime known for this provider".to_owned(),
            _ => "(none)".to_owned(),
        };
        vec![
            ("Access token", access),
            ("Refresh token issued", when(self.refresh_issued_at)),
            ("Refresh token last used", when(self.refresh_last_used_at)),
            ("Dies if unused on", death),
            (
                "Client secret expires",
                self.client_secret_expires_on
                    .map_or_else(|| "(not entered)".to_owned(), |d| d.to_string()),
            ),
            ("Health", self.health.as_str().to_owned()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use oauth2::{AccessToken, RefreshToken};
    use time::macros::{date, datetime};

    use super::*;
    use crate::oauth::TokenSet;
    use crate::profile::ProfileForm;
    use crate::store::Identities;

    fn config(token_url: Option<&str>) -> ServiceConfig {
        let form = ProfileForm {
            tenant: "00000000-0000-0000-0000-000000000000".into(),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        let (profile, _) = form.validate().expect("valid");
        let mut config = ServiceConfig::from_profile(&profile, &Identities::default());
        if let Some(url) = token_url {
            config.oauth.provider = ProviderKind::Custom;
            config.oauth.token_url = url.to_owned();
        }
        config
    }

    fn signed_in(at: OffsetDateTime) -> Secrets {
        Secrets::from_sign_in(
            &TokenSet {
                access_token: AccessToken::new("AT".into()),
                access_expires_at: Some(at + Duration::hours(1)),
                refresh_token: Some(RefreshToken::new("RT".into())),
                granted_scopes: None,
                identity: None,
                obtained_at: at,
            },
            None,
        )
    }

    fn ids(f: &TokenForecast) -> Vec<(&'static str, Health)> {
        f.findings.iter().map(|f| (f.id, f.health)).collect()
    }

    const T0: OffsetDateTime = datetime!(2025-03-01 08:00 UTC);

    #[test]
    fn provider_rules_come_from_the_token_host() {
        let google = config(Some("https://oauth2.googleapis.com/token"));
        assert_eq!(TokenRules::for_config(&google), TokenRules::Google);
        let accounts = config(Some("https://accounts.google.com/o/oauth2/token"));
        assert_eq!(TokenRules::for_config(&accounts), TokenRules::Google);
        assert_eq!(TokenRules::for_config(&config(None)), TokenRules::Microsoft);
        let entra_custom =
            config(Some("https://login.microsoftonline.com/contoso/oauth2/v2.0/token"));
        assert_eq!(TokenRules::for_config(&entra_custom), TokenRules::Microsoft);
        let local = config(Some("http://127.0.0.1:8080/organizations/oauth2/v2.0/token"));
        assert_eq!(TokenRules::for_config(&local), TokenRules::Unknown);
    }

    #[test]
    fn microsoft_token_dies_90_days_after_last_use_and_is_warned_14_days_ahead() {
        let config = config(None);
        let mut secrets = signed_in(T0);
        secrets.refresh_token_last_used_at = Some(T0 + Duration::days(10));

        let fresh = forecast(&config, &secrets, T0 + Duration::days(11));
        assert_eq!(fresh.refresh_expected_death, Some(datetime!(2025-06-09 08:00 UTC)));
        assert_eq!(fresh.health, Health::Ok);
        assert!(fresh.findings.is_empty(), "{:?}", fresh.findings);

        let soon = forecast(&config, &secrets, datetime!(2025-05-27 08:00 UTC));
        assert_eq!(ids(&soon), [("refresh-token-inactive-soon", Health::Warning)]);
        assert!(soon.findings[0].summary.contains("2025-06-09"), "{}", soon.findings[0].summary);
        assert!(soon.findings[0].summary.contains("13 days left"));
        let day_before = forecast(&config, &secrets, datetime!(2025-05-25 08:00 UTC));
        assert_eq!(day_before.health, Health::Ok, "15 days ahead: no warning yet");

        let dead = forecast(&config, &secrets, datetime!(2025-06-09 08:00 UTC));
        assert_eq!(ids(&dead), [("refresh-token-inactive", Health::Failed)]);
        assert!(dead.findings[0].summary.contains("2025-03-11"), "{}", dead.findings[0].summary);
    }

    #[test]
    fn br_15_google_warns_from_day_5_and_fails_after_day_7_unless_proven_in_production() {
        let config = config(Some("https://oauth2.googleapis.com/token"));
        let mut secrets = signed_in(T0);
        // Google does not rotate: refreshes keep the issue date.
        secrets.refresh_token_last_used_at = Some(T0 + Duration::days(4));

        let day4 = forecast(&config, &secrets, T0 + Duration::days(4));
        assert_eq!(day4.refresh_expected_death, Some(datetime!(2025-03-08 08:00 UTC)));
        assert_eq!(day4.health, Health::Ok);

        let day5 = forecast(&config, &secrets, T0 + Duration::days(5));
        assert_eq!(ids(&day5), [("google-testing-limit", Health::Warning)]);
        assert!(day5.findings[0].summary.contains("2025-03-08"));
        assert!(day5.findings[0].fix.contains("In production"));

        let day8 = forecast(&config, &secrets, T0 + Duration::days(8));
        assert_eq!(ids(&day8), [("google-testing-limit", Health::Failed)]);

        // It refreshed on day 9: the app is in production; 6 months of inactivity apply.
        secrets.refresh_token_last_used_at = Some(T0 + Duration::days(9));
        let day10 = forecast(&config, &secrets, T0 + Duration::days(10));
        assert_eq!(day10.health, Health::Ok, "{:?}", day10.findings);
        assert_eq!(day10.refresh_expected_death, Some(T0 + Duration::days(9 + 183)));
    }

    #[test]
    fn br_13_client_secret_expiry_is_warned_30_days_ahead() {
        let mut config = config(None);
        config.oauth.client_secret_expires_on = Some(date!(2025 - 03 - 11));
        let secrets = signed_in(T0);

        // The case's timing input: today + 10 days.
        let f = forecast(&config, &secrets, T0);
        assert_eq!(ids(&f), [("client-secret-expiry", Health::Warning)]);
        let json = serde_json::to_value(&f).expect("json");
        assert_eq!(json["client_secret_expires_on"], "2025-03-11");
        assert!(f.findings[0].summary.contains("2025-03-11 (10 days left)"), "{:?}", f.findings);
        assert!(f.findings[0].fix.contains("Replace client secret"));

        let early = forecast(&config, &secrets, datetime!(2025-02-08 08:00 UTC));
        assert!(early.findings.is_empty(), "31 days ahead: {:?}", early.findings);
        let day30 = forecast(&config, &secrets, datetime!(2025-02-09 08:00 UTC));
        assert_eq!(day30.health, Health::Warning);

        let expired = forecast(&config, &secrets, datetime!(2025-03-11 00:00 UTC));
        assert_eq!(ids(&expired), [("client-secret-expiry", Health::Failed)]);
    }

    #[test]
    fn needs_sign_in_and_signed_out_are_failures_and_sorted_first() {
        let mut config = config(None);
        config.oauth.client_secret_expires_on = Some(date!(2025 - 03 - 20));
        let mut secrets = signed_in(T0);
        secrets.needs_sign_in = Some("AADSTS700082: expired due to inactivity".into());
        let f = forecast(&config, &secrets, T0);
        assert_eq!(
            ids(&f),
            [("needs-sign-in", Health::Failed), ("client-secret-expiry", Health::Warning)]
        );
        assert_eq!(f.refresh_expected_death, None);

        secrets.sign_out();
        let f = forecast(&config, &secrets, T0);
        assert_eq!(f.findings[0].id, "not-signed-in");
        assert!(!f.has_refresh_token);
    }

    #[test]
    fn rows_and_json_show_dates_and_no_token() {
        let config = config(None);
        let secrets = signed_in(T0);
        let f = forecast(&config, &secrets, T0 + Duration::minutes(30));
        let rows = f.rows();
        assert_eq!(rows[0], ("Access token", "expires 2025-03-01T09:00:00Z (in 30 min)".into()));
        assert_eq!(rows[3].1, "2025-05-30T08:00:00Z (Microsoft: 90 days after its last use)");
        let json = serde_json::to_value(&f).expect("json");
        assert_eq!(json["health"], "ok");
        assert_eq!(json["refresh_expected_death"], "2025-05-30T08:00:00Z");
        assert_eq!(json["rules"], "microsoft");
        assert_eq!(json["client_secret_expires_on"], serde_json::Value::Null);
        assert!(!json.to_string().contains("\"RT\""));
    }
}
