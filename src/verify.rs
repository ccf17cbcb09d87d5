//! The verification plan: one check per scope, each proven on the real servers, and the report.
//!
//! Checks run in a fixed order on the caller's (worker) thread; each has a duration and, when
//! it does not pass, a [`Diagnosis`]. The plan never retries on its own and never sends a token
//! anywhere but the configured token endpoint and mail servers. A refresh that rotates the
//! refresh token hands the new [`TokenSet`] to `on_refreshed` before anything else uses it, so
//! a caller that persists tokens never loses the rotated one.

use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::diagnose::mail::MailContext;
use crate::diagnose::{self, Diagnosis, Retry};
use crate::mail::{imap, smtp};
use oauth2::RefreshToken;

use crate::oauth::{TokenClient, TokenSet};
use crate::preflight::{self, PreflightReport};
use crate::profile::Profile;
use crate::store::Identities;
use crate::trust::Trust;

/// The checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    Preflight,
    TokenReceived,
    ScopesGranted,
    SignedInAccount,
    Refresh,
    Smtp,
    Imap,
    RoundTrip,
}

impl CheckId {
    /// Every check in run order.
    pub const ALL: [CheckId; 8] = [
        CheckId::Preflight,
        CheckId::TokenReceived,
        CheckId::ScopesGranted,
        CheckId::SignedInAccount,
        CheckId::Refresh,
        CheckId::Smtp,
        CheckId::Imap,
        CheckId::RoundTrip,
    ];

    /// Row label in the checklist.
    pub fn label(self) -> &'static str {
        match self {
            CheckId::Preflight => "Servers reachable (name, connection, TLS)",
            CheckId::TokenReceived => "Token received",
            CheckId::ScopesGranted => "Every requested scope granted",
            CheckId::SignedInAccount => "Signed-in account fits the mailbox",
            CheckId::Refresh => "Refresh without the user",
            CheckId::Smtp => "Test e-mail sent over SMTP",
            CheckId::Imap => "Inbox opened over IMAP",
            CheckId::RoundTrip => "Test e-mail found in the inbox",
        }
    }

    /// The permission this check proves, when it proves one.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            CheckId::Refresh => Some("offline_access"),
            CheckId::Smtp => Some("SMTP.Send"),
            CheckId::Imap | CheckId::RoundTrip => Some("IMAP.AccessAsUser.All"),
            _ => None,
        }
    }
}

/// Where one check stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "diagnosis", rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Passed,
    /// Passed, but something deserves the operator's attention.
    Warning(Diagnosis),
    Failed(Diagnosis),
    /// Not run, with the reason.
    Skipped(String),
}

impl Outcome {
    /// True for outcomes that do not block saving without confirmation.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Passed | Outcome::Warning(_) | Outcome::Skipped(_))
    }

    /// The diagnosis, when there is one.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            Outcome::Warning(d) | Outcome::Failed(d) => Some(d),
            _ => None,
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub id: CheckId,
    pub name: &'static str,
    pub scope: Option<&'static str>,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(rename = "duration_ms", serialize_with = "serialize_millis")]
    pub duration: Duration,
    /// What was seen, e.g. "INBOX has 3 messages"; no secret values.
    pub summary: String,
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything one verification run found.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationReport {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub checks: Vec<CheckResult>,
    /// Every server's pre-flight steps (DNS, TCP, TLS), when that row ran.
    pub preflight: Option<PreflightReport>,
}

impl VerificationReport {
    /// True when no check failed (warnings and skips allowed).
    pub fn all_passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The result for one check.
    pub fn get(&self, id: CheckId) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Performs the refresh check's refresh. The CLI and the status view pass one that refreshes
/// under the config's lock and saves the rotated token before returning it; `None` refreshes
/// in memory with the profile's token endpoint (the wizard, before anything is saved).
pub type Refresher<'a> = Box<dyn FnMut(&RefreshToken) -> Result<TokenSet, Diagnosis> + Send + 'a>;

/// What a run needs.
pub struct VerifyInput<'a> {
    pub profile: Profile,
    pub trust: Trust,
    pub tokens: TokenSet,
    pub identities: Identities,
    /// How to refresh; see [`Refresher`].
    pub refresher: Option<Refresher<'a>>,
    /// Which checks to run; others are reported as skipped.
    pub only: Option<Vec<CheckId>>,
}

/// Subject of the test message: unique per run so the round trip finds exactly it.
pub fn test_subject(run_id: &str, at: OffsetDateTime) -> String {
    format!(
        "mailgrant test {run_id} {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Runs the plan. Blocking: call on a worker thread. `on_progress` sees each check when it
/// starts (`Running`) and when it ends. Returns the report and the newest tokens.
pub fn run(
    mut input: VerifyInput<'_>,
    mut on_progress: impl FnMut(&CheckResult),
) -> (VerificationReport, TokenSet) {
    let started_at = OffsetDateTime::now_utc();
    let run_id = new_run_id();
    let subject = test_subject(&run_id, started_at);
    let mut report = VerificationReport { run_id, started_at, checks: Vec::new(), preflight: None };
    let mut sent = false;
    tracing::info!(run = %report.run_id, "verification started");

    for id in CheckId::ALL {
        let wanted = input.only.as_ref().is_none_or(|only| only.contains(&id));
        let start = Instant::now();
        on_progress(&CheckResult {
            id,
            name: id.label(),
            scope: id.scope(),
            outcome: if wanted { Outcome::Running } else { Outcome::Skipped(String::new()) },
            duration: Duration::ZERO,
            summary: String::new(),
        });
        let (outcome, summary) = if wanted && id == CheckId::Preflight {
            let preflight = preflight::run(&input.profile, &input.trust);
            let row = preflight_row(&preflight);
            report.preflight = Some(preflight);
            row
        } else if wanted {
            run_check(id, &mut input, &subject, &mut sent)
        } else {
            (Outcome::Skipped("not selected".to_owned()), String::new())
        };
        let result = CheckResult {
            id,
            name: id.label(),
            scope: id.scope(),
            outcome,
            duration: start.elapsed(),
            summary,
        };
        log_result(&result);
        on_progress(&result);
        report.checks.push(result);
    }
    (report, input.tokens)
}

fn log_result(result: &CheckResult) {
    let ms = result.duration.as_millis();
    match &result.outcome {
        Outcome::Failed(d) => {
            tracing::error!(check = ?result.id, diagnosis = d.id, duration_ms = ms, "check failed")
        }
        Outcome::Warning(d) => {
            tracing::warn!(check = ?result.id, diagnosis = d.id, duration_ms = ms, "check warned")
        }
        Outcome::Skipped(why) => tracing::info!(check = ?result.id, reason = %why, "check skipped"),
        _ => tracing::info!(check = ?result.id, duration_ms = ms, "check passed"),
    }
}

fn new_run_id() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{n:08x}")
}

fn run_check(
    id: CheckId,
    input: &mut VerifyInput<'_>,
    subject: &str,
    sent: &mut bool,
) -> (Outcome, String) {
    match id {
        // Run by `run` itself, which keeps the whole pre-flight report.
        CheckId::Preflight => (Outcome::Skipped("run separately".to_owned()), String::new()),
        CheckId::TokenReceived => check_token_received(&input.tokens),
        CheckId::ScopesGranted => check_scopes(&input.profile, &input.tokens),
        CheckId::SignedInAccount => check_account(&input.profile, &input.tokens, &input.identities),
        CheckId::Refresh => check_refresh(input),
        CheckId::Smtp => {
            let result = check_smtp(input, subject);
            *sent = matches!(result.0, Outcome::Passed);
            result
        }
        CheckId::Imap => check_imap(input),
        CheckId::RoundTrip => check_round_trip(input, subject, *sent),
    }
}

/// The pre-flight row: passed when every server answered, else the first failure's diagnosis
/// with the others as details.
fn preflight_row(report: &PreflightReport) -> (Outcome, String) {
    let ms = report.duration.as_millis();
    let servers = report.targets.len();
    if report.all_passed() {
        return (Outcome::Passed, format!("{servers} servers answered within {ms} ms"));
    }
    let mut failures = report.diagnoses();
    let Some((target, first)) = failures.next() else {
        return (Outcome::Passed, format!("{servers} servers checked in {ms} ms"));
    };
    let mut diagnosis = first.clone();
    for (other_target, other) in failures {
        diagnosis = diagnosis.with_detail(format!("{}: {}", other_target.label(), other.summary));
    }
    (Outcome::Failed(diagnosis), format!("{} did not pass", target.label()))
}

fn minutes_left(tokens: &TokenSet) -> Option<i64> {
    tokens.access_expires_at.map(|at| (at - OffsetDateTime::now_utc()).whole_minutes())
}

fn check_token_received(tokens: &TokenSet) -> (Outcome, String) {
    if tokens.access_token.secret().is_empty() {
        let d = Diagnosis::new(
            "token-empty",
            "The provider answered without an access token",
            "The token endpoint returned an empty access_token",
            "Sign in again; if it repeats, check the token URL points at the provider's v2.0 \
             token endpoint",
            Retry::Permanent,
        );
        return (Outcome::Failed(d), String::new());
    }
    let summary = match minutes_left(tokens) {
        Some(m) => format!("Access token valid for {m} more minutes"),
        None => "Access token received (the provider gave no expiry)".to_owned(),
    };
    (Outcome::Passed, summary)
}

/// OpenID scopes providers do not echo back in `scope`.
const IDENTITY_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

fn check_scopes(profile: &Profile, tokens: &TokenSet) -> (Outcome, String) {
    let Some(granted) = &tokens.granted_scopes else {
        let d = Diagnosis::new(
            "scopes-not-reported",
            "The provider did not say which scopes it granted",
            "The token response has no scope field",
            "Nothing to do now; the SMTP and IMAP checks below prove the scopes for real",
            Retry::Permanent,
        );
        return (Outcome::Warning(d), String::new());
    };
    if let Some(d) = diagnose::scopes::wrong_audience(granted) {
        return (Outcome::Failed(d), granted.join(" "));
    }
    let missing: Vec<&str> = profile
        .scopes
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !IDENTITY_SCOPES.contains(s))
        .filter(|s| !granted.iter().any(|g| g.eq_ignore_ascii_case(s)))
        .collect();
    if missing.is_empty() {
        (Outcome::Passed, granted.join(" "))
    } else {
        let d = diagnose::scopes::not_granted(&missing, granted);
        (Outcome::Failed(d), granted.join(" "))
    }
}

fn check_account(profile: &Profile, tokens: &TokenSet, ids: &Identities) -> (Outcome, String) {
    let Some(account) = tokens.identity.as_ref().and_then(|c| c.account()) else {
        let d = Diagnosis::new(
            "account-unknown",
            "The sign-in did not say which account signed in",
            "No ID token came back (the openid scope may be missing)",
            "Add openid profile email to the scopes to see the account here",
            Retry::Permanent,
        );
        return (Outcome::Warning(d), String::new());
    };
    if account.eq_ignore_ascii_case(&profile.mailbox) {
        return (Outcome::Passed, format!("Signed in as {account}"));
    }
    let d = diagnose::scopes::account_mismatch(account, &profile.mailbox, &ids.smtp_user);
    (Outcome::Warning(d), format!("Signed in as {account}"))
}

fn check_refresh(input: &mut VerifyInput<'_>) -> (Outcome, String) {
    let Some(refresh_token) = input.tokens.refresh_token.clone() else {
        let d = Diagnosis::new(
            "no-refresh-token",
            "No refresh token was issued",
            "The offline_access scope was not requested or not granted",
            "Add offline_access to the scopes (the Microsoft 365 preset has it) and sign in again",
            Retry::Permanent,
        );
        return (Outcome::Failed(d), String::new());
    };
    let refreshed = match input.refresher.as_mut() {
        Some(refresher) => refresher(&refresh_token),
        None => TokenClient::new(&input.profile, &input.trust)
            .refresh(&refresh_token)
            .map_err(|e| diagnose::oauth::token(&e, &input.profile)),
    };
    match refreshed {
        Ok(mut fresh) => {
            let rotated = fresh
                .refresh_token
                .as_ref()
                .is_some_and(|new| new.secret() != refresh_token.secret());
            if fresh.refresh_token.as_ref().is_none_or(|t| t.secret().is_empty()) {
                fresh.refresh_token = Some(refresh_token);
            }
            if fresh.identity.is_none() {
                fresh.identity = input.tokens.identity.clone();
            }
            input.tokens = fresh;
            let summary = if rotated {
                "Refreshed; the provider rotated the refresh token and the new one is kept"
            } else {
                "Refreshed; the provider kept the same refresh token"
            };
            (Outcome::Passed, summary.to_owned())
        }
        Err(d) => (Outcome::Failed(d), String::new()),
    }
}

fn mail_context(input: &VerifyInput<'_>, login: &str) -> MailContext {
    MailContext {
        mailbox: input.profile.mailbox.clone(),
        login: login.to_owned(),
        signed_in_account: input
            .tokens
            .identity
            .as_ref()
            .and_then(|c| c.account())
            .map(str::to_owned),
        granted_scopes: input.tokens.granted_scopes.clone(),
        token_expired: input
            .tokens
            .access_expires_at
            .is_some_and(|at| at <= OffsetDateTime::now_utc()),
    }
}

fn check_smtp(input: &VerifyInput<'_>, subject: &str) -> (Outcome, String) {
    let body = format!(
        "This is a test message from mailgrant.\r\n\r\nIt proves that the alarm service can \
         send from {} through {}.\r\n",
        input.identities.from, input.profile.smtp
    );
    let message = smtp::SmtpTestMessage {
        from: &input.identities.from,
        to: &input.profile.test_recipient,
        subject,
        body: &body,
    };
    let login = &input.identities.smtp_user;
    match smtp::send_test_message(
        &input.profile.smtp,
        &input.trust,
        login,
        &input.tokens.access_token,
        &message,
        input.profile.timeout,
    ) {
        Ok(_) => (Outcome::Passed, format!("Sent to {} as {login}", input.profile.test_recipient)),
        Err(e) => {
            (Outcome::Failed(diagnose::mail::smtp(&e, &mail_context(input, login))), String::new())
        }
    }
}

fn check_imap(input: &VerifyInput<'_>) -> (Outcome, String) {
    let user = &input.identities.imap_user;
    match imap::check_inbox(
        &input.profile.imap,
        &input.trust,
        user,
        &input.tokens.access_token,
        input.profile.timeout,
    ) {
        Ok(status) => {
            let count = match status.exists {
                1 => "1 message".to_owned(),
                n => format!("{n} messages"),
            };
            (Outcome::Passed, format!("INBOX of {user} has {count}"))
        }
        Err(e) => {
            (Outcome::Failed(diagnose::mail::imap(&e, &mail_context(input, user))), String::new())
        }
    }
}

fn check_round_trip(input: &VerifyInput<'_>, subject: &str, sent: bool) -> (Outcome, String) {
    if !input.profile.round_trip_possible() {
        return (
            Outcome::Skipped("the test recipient is not the mailbox".to_owned()),
            String::new(),
        );
    }
    if !sent {
        return (Outcome::Skipped("no test e-mail was sent".to_owned()), String::new());
    }
    let user = &input.identities.imap_user;
    match imap::find_subject(
        &input.profile.imap,
        &input.trust,
        user,
        &input.tokens.access_token,
        subject,
        input.profile.timeout,
    ) {
        Ok(true) => (Outcome::Passed, format!("Found \"{subject}\"")),
        Ok(false) => {
            let secs = input.profile.timeout.as_secs();
            let d = Diagnosis::new(
                "round-trip-not-found",
                format!("The test e-mail did not arrive in the inbox within {secs} s"),
                "The server accepted it, but delivery is slow, or a rule or spam filter moved it",
                "Look for the subject in the mailbox's other folders and junk mail; run the \
                 check again, or raise the timeout",
                Retry::Transient,
            );
            (Outcome::Failed(d.with_detail(format!("subject: {subject}"))), String::new())
        }
        Err(e) => {
            (Outcome::Failed(diagnose::mail::imap(&e, &mail_context(input, user))), String::new())
        }
    }
}
