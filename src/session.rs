//! The token lifecycle on a saved setup: a valid access token on demand, refreshing under the
//! config's lock and saving a rotated refresh token before the access token is handed out.
//!
//! This is what `mailgrant token`, `mailgrant check`, the GUI's status view and a service
//! embedding the library call. A cached access token that is still good is read without the
//! lock (files are only ever replaced whole, so a lock-free read sees a complete file): a
//! stuck lock holder or a read-only config folder does not stop it. Only a refresh takes the
//! lock, and re-reads under it. Whoever refreshes first wins; the others find the fresh access
//! token on disk after the lock and do not refresh again, so two processes never redeem the
//! same refresh token.
//!
//! Every call ends within [`RetryPolicy::budget`] of the request timeout (89 s with the
//! default policy and the default 20 s timeout): the wait for the lock, the requests and the
//! backoff all come out of that one budget, so callers queued behind a slow refresh do not
//! add up their waits.
//!
//! Failures are sorted by what they mean for the stored grant:
//! - transient (timeouts, network faults, HTTP 5xx and 429): retried with a bounded backoff
//!   ([`RetryPolicy`]), sleeping *outside* the lock; the stored tokens are left exactly as
//!   they were, and a cached access token that has not expired yet is still handed out;
//! - the grant is dead (`invalid_grant`): written down as "needs sign-in" with the reason, so
//!   nobody loops on a dead token (BR-15);
//! - the client secret was refused (AADSTS7000222 expired, AADSTS7000215 wrong): the grant is
//!   fine and the refresh token is kept; only the secret must be replaced (BR-13);
//! - anything else permanent: reported, nothing marked, no retry.

use std::time::{Duration as StdDuration, Instant};

use oauth2::RefreshToken;
use time::{Duration, OffsetDateTime};

use crate::diagnose::{self, Diagnosis, Retry};
use crate::forecast::TokenRules;
use crate::oauth::{TokenClient, TokenError, TokenSet};
use crate::profile::Profile;
use crate::store::{self, ConfigPaths, Secrets, ServiceConfig, StoreError, UpdateError};
use crate::trust::Trust;

/// An access token closer than this to its expiry is refreshed first.
pub const REFRESH_MARGIN: Duration = Duration::minutes(5);

/// When every retry failed for a passing reason, a cached access token still good for at least
/// this long is handed out instead of an error (the mail can still go out).
pub const STALE_TOKEN_GRACE: Duration = Duration::seconds(30);

/// AADSTS numbers that mean "the client secret is wrong or expired": the grant is fine.
const CLIENT_SECRET_CODES: [u32; 2] = [7_000_222, 7_000_215];

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The config or secrets could not be read, locked or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No refresh token is stored.
    #[error("no refresh token is stored: sign in first")]
    NotSignedIn,
    /// The provider refused the refresh token for good (now or on an earlier run).
    #[error("the provider refused the stored refresh token: {reason}")]
    NeedsSignIn {
        /// What the provider said, as recorded in the secrets file (no secret values).
        reason: String,
    },
    /// The client secret was refused (expired or wrong); the refresh token was kept.
    #[error("the token endpoint refused the client secret; the refresh token was kept: {0}")]
    ClientSecret(TokenError),
    /// Every attempt failed for a passing reason; the stored tokens are unchanged.
    #[error("refreshing the access token failed {attempts} times; the tokens were kept: {error}")]
    Unavailable {
        /// How many requests were made.
        attempts: u32,
        /// The last failure.
        error: TokenError,
    },
    /// The token endpoint refused the refresh for another lasting reason.
    #[error("refreshing the access token failed: {0}")]
    Token(TokenError),
    /// The refresh failed (the first error), and recording the outcome in the secrets failed
    /// too (for example a dead grant could not be marked in a read-only folder).
    #[error("{error} (it could not be recorded: {store})")]
    NotRecorded {
        /// What went wrong with the refresh: the cause the operator needs first.
        error: Box<SessionError>,
        /// Why the secrets could not be written.
        store: StoreError,
    },
}

impl SessionError {
    /// Operator text for this failure.
    pub fn diagnosis(&self, profile: &Profile) -> Diagnosis {
        match self {
            SessionError::Store(e) => diagnose::config::store(e),
            SessionError::NotSignedIn => Diagnosis::new(
                "not-signed-in",
                "No refresh token is stored for this setup",
                "Nobody has signed in yet, or the tokens were removed by signing out",
                "Open mailgrant and choose Sign in, or run mailgrant login --config <file>",
                Retry::Permanent,
            ),
            SessionError::NeedsSignIn { reason } => {
                let sign_in_again =
                    "Sign in again (mailgrant login --config <file>, or Sign in again… in the app)";
                // Google ends every sign-in of an app in "Testing" after 7 days: signing in
                // again alone would fail again a week later (BR-15).
                let fix = if diagnose::oauth::is_google(profile) {
                    format!(
                        "If the Google app's publishing status is \"Testing\", first set it to \
                         \"In production\" (Google Cloud console → APIs & Services → OAuth \
                         consent screen). Then {}{}",
                        sign_in_again[..1].to_lowercase(),
                        &sign_in_again[1..]
                    )
                } else {
                    sign_in_again.to_owned()
                };
                Diagnosis::new(
                    "needs-sign-in",
                    "The provider refused the stored refresh token; alarm mail cannot be sent",
                    reason.clone(),
                    fix,
                    Retry::Permanent,
                )
            }
            SessionError::ClientSecret(e) => diagnose::oauth::token(e, profile)
                .with_detail("the stored refresh token was kept: no new sign-in is needed"),
            SessionError::Unavailable { attempts, error } => diagnose::oauth::token(error, profile)
                .with_detail(format!("tried {attempts} times; the stored tokens were kept")),
            SessionError::Token(e) => diagnose::oauth::token(e, profile),
            SessionError::NotRecorded { error, store } => {
                let unsaved = diagnose::config::store(store);
                error.diagnosis(profile).with_detail(format!(
                    "this could not be recorded in the secrets ({}): {} {}",
                    unsaved.id, unsaved.summary, unsaved.fix
                ))
            }
        }
    }

    /// True when the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::Unavailable { .. } => true,
            SessionError::Store(StoreError::LockBusy { .. }) => true,
            SessionError::NotRecorded { error, .. } => error.is_transient(),
            _ => false,
        }
    }
}

/// Which tokens the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// The cached access token when it is good for [`REFRESH_MARGIN`] more.
    CachedIfValid,
    /// Always redeem the refresh token (the "Refresh token now" button, the refresh check).
    ForceRefresh,
}

/// How often and how long to wait before retrying a refresh that failed for a passing reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before each retry; its length is the number of retries.
    pub delays: Vec<StdDuration>,
    /// The longest wait a server's `Retry-After` may ask for.
    pub retry_after_cap: StdDuration,
}

impl Default for RetryPolicy {
    /// Three retries after 1 s, 2 s and 4 s; `Retry-After` honoured up to 30 s.
    fn default() -> Self {
        RetryPolicy {
            delays: [1, 2, 4].map(StdDuration::from_secs).to_vec(),
            retry_after_cap: StdDuration::from_secs(30),
        }
    }
}

/// Time allowed for reading, locking and saving around the requests, within the budget.
const FILE_WORK: StdDuration = StdDuration::from_secs(2);

impl RetryPolicy {
    /// The longest a whole call may take with requests bounded by `request_timeout`: one
    /// timeout per request, every backoff delay, and [`FILE_WORK`] (for the default policy,
    /// 4 × timeout + 9 s). Waiting for the lock and `Retry-After` waits come out of it; a retry
    /// that would not finish inside it is not started.
    pub fn budget(&self, request_timeout: StdDuration) -> StdDuration {
        let requests = u32::try_from(self.delays.len() + 1).unwrap_or(u32::MAX);
        let backoff: StdDuration = self.delays.iter().sum();
        request_timeout.saturating_mul(requests).saturating_add(backoff).saturating_add(FILE_WORK)
    }

    /// No retries (for a button the operator is watching).
    pub fn none() -> RetryPolicy {
        RetryPolicy { delays: Vec::new(), ..RetryPolicy::default() }
    }

    /// The wait before retry number `retry` (0-based), or `None` when no retry is left. A
    /// server's `Retry-After` lengthens the wait, up to the cap.
    pub fn delay(&self, retry: usize, retry_after: Option<StdDuration>) -> Option<StdDuration> {
        let backoff = *self.delays.get(retry)?;
        let asked = retry_after.map_or(StdDuration::ZERO, |d| d.min(self.retry_after_cap));
        Some(backoff.max(asked))
    }
}

/// A valid token set for the setup at `paths`, refreshing under the lock when needed, with the
/// default [`RetryPolicy`]. The rotated refresh token is on disk before this returns.
pub fn tokens(
    paths: &ConfigPaths,
    profile: &Profile,
    trust: &Trust,
    freshness: Freshness,
) -> Result<TokenSet, SessionError> {
    tokens_with_policy(paths, profile, trust, freshness, &RetryPolicy::default())
}

/// [`tokens`] with a chosen retry policy.
pub fn tokens_with_policy(
    paths: &ConfigPaths,
    profile: &Profile,
    trust: &Trust,
    freshness: Freshness,
    policy: &RetryPolicy,
) -> Result<TokenSet, SessionError> {
    let client = TokenClient::new(profile, trust);
    let refresh = |token: &RefreshToken| client.refresh(token);
    tokens_via(paths, profile, freshness, policy, refresh, Instant::now, std::thread::sleep)
}

/// What one locked attempt came to.
enum Attempt {
    Done(TokenSet),
    /// A passing failure; the still-usable cached tokens, if any.
    Transient {
        error: TokenError,
        cached: Option<TokenSet>,
    },
}

/// The retry loop, with the token request, the clock and the sleep passed in (tests replace
/// them).
fn tokens_via(
    paths: &ConfigPaths,
    profile: &Profile,
    freshness: Freshness,
    policy: &RetryPolicy,
    refresh: impl Fn(&RefreshToken) -> Result<TokenSet, TokenError>,
    now: impl Fn() -> Instant,
    mut sleep: impl FnMut(StdDuration),
) -> Result<TokenSet, SessionError> {
    // Without the lock: a good cached token, or a stored answer that needs no request.
    let snapshot = store::load_secrets(paths)?;
    if let Some(tokens) = without_lock(&snapshot, freshness)? {
        return Ok(tokens);
    }

    // Every wait below comes out of one budget; the lock is waited for only as long as still
    // leaves time for one request.
    let deadline = now() + policy.budget(profile.timeout);
    let lock_deadline = deadline.checked_sub(profile.timeout).unwrap_or_else(&now);
    let mut retry = 0;
    let mut last: Option<(TokenError, Option<TokenSet>)> = None;
    loop {
        let (error, cached) = match attempt(paths, profile, freshness, lock_deadline, &refresh) {
            Ok(Attempt::Done(tokens)) => return Ok(tokens),
            Ok(Attempt::Transient { error, cached }) => (error, cached),
            Err(SessionError::Store(busy @ StoreError::LockBusy { .. })) => {
                tracing::warn!(error = %busy, "the lock stayed busy");
                let cached = last.as_ref().and_then(|(_, cached)| cached.clone());
                if let Some(tokens) = fallback(cached, &snapshot, freshness) {
                    return Ok(tokens);
                }
                return Err(match last {
                    Some((error, _)) => unavailable(retry, error),
                    None => SessionError::Store(busy),
                });
            }
            Err(error) => return Err(error),
        };

        // The lock is not held here: others may use the cached token or refresh meanwhile.
        let delay = policy.delay(retry, error.retry_after());
        if let Some(delay) = delay.filter(|d| now() + *d < lock_deadline) {
            retry += 1;
            tracing::warn!(
                retry,
                delay_ms = delay.as_millis(),
                status = error.status(),
                "refresh failed for a passing reason; retrying"
            );
            sleep(delay);
            last = Some((error, cached));
            continue;
        }

        if let Some(tokens) = fallback(cached, &snapshot, freshness) {
            return Ok(tokens);
        }
        return Err(unavailable(retry + 1, error));
    }
}

/// The answer a lock-free read of the secrets gives: a cached access token good for
/// [`REFRESH_MARGIN`] more, or a stored reason why no refresh can work. `None` when a refresh
/// is needed.
fn without_lock(
    snapshot: &Secrets,
    freshness: Freshness,
) -> Result<Option<TokenSet>, SessionError> {
    let now = OffsetDateTime::now_utc();
    if freshness == Freshness::CachedIfValid
        && snapshot.valid_access_token(now, REFRESH_MARGIN).is_some()
        && let Some(tokens) = snapshot.token_set()
    {
        tracing::debug!("cached access token still valid; no lock taken");
        return Ok(Some(tokens));
    }
    if let Some(reason) = &snapshot.needs_sign_in {
        return Err(SessionError::NeedsSignIn { reason: reason.clone() });
    }
    if snapshot.refresh_token.is_none() {
        return Err(SessionError::NotSignedIn);
    }
    Ok(None)
}

/// When no refresh worked out in time: the cached access token if it is still good for
/// [`STALE_TOKEN_GRACE`] (from the last locked read, else the lock-free one). Never for a
/// forced refresh, which must not pretend it worked.
fn fallback(
    cached: Option<TokenSet>,
    snapshot: &Secrets,
    freshness: Freshness,
) -> Option<TokenSet> {
    if freshness == Freshness::ForceRefresh {
        return None;
    }
    let now = OffsetDateTime::now_utc();
    let tokens = cached.or_else(|| {
        snapshot.valid_access_token(now, STALE_TOKEN_GRACE).and_then(|_| snapshot.token_set())
    })?;
    tracing::warn!("no refresh in time; handing out the cached access token");
    Some(tokens)
}

/// Every request of this call failed for a passing reason (`attempts` of them).
fn unavailable(attempts: usize, error: TokenError) -> SessionError {
    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
    tracing::error!(
        attempts,
        status = error.status(),
        "refresh keeps failing; alarm mail cannot be sent until the provider answers"
    );
    SessionError::Unavailable { attempts, error }
}

/// One attempt under the lock (waited for until `lock_deadline`): re-read, use the cache or
/// refresh, save before returning.
fn attempt(
    paths: &ConfigPaths,
    profile: &Profile,
    freshness: Freshness,
    lock_deadline: Instant,
    refresh: &impl Fn(&RefreshToken) -> Result<TokenSet, TokenError>,
) -> Result<Attempt, SessionError> {
    let result = store::update_secrets_locked_until(paths, lock_deadline, |secrets| {
        let now = OffsetDateTime::now_utc();
        if freshness == Freshness::CachedIfValid
            && secrets.valid_access_token(now, REFRESH_MARGIN).is_some()
            && let Some(tokens) = secrets.token_set()
        {
            tracing::debug!("cached access token still valid");
            return Ok(Attempt::Done(tokens));
        }
        if let Some(reason) = &secrets.needs_sign_in {
            return Err(SessionError::NeedsSignIn { reason: reason.clone() });
        }
        let Some(refresh_token) = secrets.refresh_token.clone() else {
            return Err(SessionError::NotSignedIn);
        };

        match refresh(&refresh_token) {
            Ok(fresh) => Ok(Attempt::Done(take_refresh(secrets, fresh))),
            Err(error) => classify_failure(secrets, error, profile, freshness, now),
        }
    });
    result.map_err(|e| match e {
        UpdateError::Store(e) => SessionError::Store(e),
        UpdateError::Update(e) => e,
        UpdateError::NotSaved { error, store } => {
            tracing::error!(%store, "the outcome of the refresh could not be recorded");
            SessionError::NotRecorded { error: Box::new(error), store }
        }
    })
}

/// Stores a successful refresh and returns the set to hand out (with the stored refresh token
/// and the known identity filled in).
fn take_refresh(secrets: &mut Secrets, fresh: TokenSet) -> TokenSet {
    secrets.apply_refresh(&fresh);
    tracing::info!(rotated = fresh.refresh_token.is_some(), "access token refreshed");

    let mut tokens = fresh;
    tokens.refresh_token = secrets.refresh_token.clone();
    if tokens.identity.is_none() {
        tokens.identity = secrets.token_set().and_then(|t| t.identity);
    }
    tokens
}

/// Sorts a failed refresh: transient (retry), dead grant (mark), client secret or other.
fn classify_failure(
    secrets: &mut Secrets,
    error: TokenError,
    profile: &Profile,
    freshness: Freshness,
    now: OffsetDateTime,
) -> Result<Attempt, SessionError> {
    if error.is_transient() {
        let cached = match freshness {
            Freshness::CachedIfValid => {
                secrets.valid_access_token(now, STALE_TOKEN_GRACE).and_then(|_| secrets.token_set())
            }
            Freshness::ForceRefresh => None,
        };
        return Ok(Attempt::Transient { error, cached });
    }

    if is_client_secret_failure(&error) {
        tracing::error!(aadsts = ?error.aadsts(),
            "the client secret was refused: alarm mail cannot be sent until it is replaced; \
             the refresh token is kept");
        return Err(SessionError::ClientSecret(error));
    }

    if error.provider_error().is_some_and(|p| p.error == "invalid_grant") {
        let reason = dead_grant_reason(&error, profile, secrets, now);
        tracing::error!(aadsts = ?error.aadsts(),
            "the provider refused the refresh token for good: alarm mail cannot be sent until \
             someone signs in again");
        secrets.needs_sign_in = Some(reason.clone());
        secrets.access_token = None;
        secrets.access_expires_at = None;
        return Err(SessionError::NeedsSignIn { reason });
    }

    tracing::error!(status = error.status(), aadsts = ?error.aadsts(), "refresh refused");
    Err(SessionError::Token(error))
}

/// True for a refused client secret (expired or wrong): the user's grant is still good.
pub fn is_client_secret_failure(error: &TokenError) -> bool {
    CLIENT_SECRET_CODES.iter().any(|code| error.aadsts().contains(code))
}

/// The reason recorded with "needs sign-in": the diagnosis' summary and cause and what the
/// provider said (its text was scrubbed of everything mailgrant sent).
fn dead_grant_reason(
    error: &TokenError,
    profile: &Profile,
    secrets: &Secrets,
    now: OffsetDateTime,
) -> String {
    let age =
        secrets.refresh_token_issued_at.and_then(|issued| StdDuration::try_from(now - issued).ok());
    let diagnosis = diagnose::oauth::token_with_refresh_age(error, profile, age);
    let said = error.provider_error().map(ToString::to_string).unwrap_or_default();
    format!("{}. {} (the provider said: {said})", diagnosis.summary, diagnosis.cause)
}

/// Removes the stored tokens of the setup at `paths` (the client secret stays), under the lock.
/// The grant stays valid at the provider until revoked there: tell the operator
/// [`revoke_instructions`].
pub fn sign_out(paths: &ConfigPaths) -> Result<(), StoreError> {
    store::sign_out(paths)?;
    tracing::info!(config = %paths.config.display(), "signed out: stored tokens removed");
    Ok(())
}

/// How to revoke the grant on the provider's side after [`sign_out`], for the config's
/// provider. Microsoft has no endpoint to revoke a refresh token; it is revoked through the
/// account or admin pages.
pub fn revoke_instructions(config: &ServiceConfig) -> &'static str {
    match TokenRules::for_config(config) {
        TokenRules::Microsoft => {
            "Microsoft has no endpoint to revoke a refresh token: the removed token stays valid \
             until it goes unused for 90 days or is revoked. To revoke it now:\n\
             - the mailbox owner: https://myaccount.microsoft.com → Sign out everywhere \
             (ends every session and refresh token of the account);\n\
             - the mailbox owner, for the app's consent: https://myapplications.microsoft.com \
             → the app → Manage your application → Revoke permissions;\n\
             - an administrator: Entra admin center → Identity → Users → the mailbox user → \
             Revoke sessions, and Enterprise applications → the app → Users and groups \
             (remove the user) or Permissions (review and revoke the consent)."
        }
        TokenRules::Google => {
            "The removed token stays valid at Google until it is revoked or unused for 6 \
             months. To revoke it now, the mailbox owner opens \
             https://myaccount.google.com/connections (Third-party apps & services) → the \
             app → Delete all connections; a Workspace administrator can do it under \
             Security → API controls → App access control."
        }
        TokenRules::Unknown => {
            "The removed token may stay valid at the provider until it expires. To end the \
             grant now, remove the app's access in the provider's account or admin pages \
             (look for connected apps, app permissions or sessions)."
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use oauth2::{AccessToken, ClientSecret};

    use super::*;
    use crate::oauth::{IdentityClaims, ProviderError, TransportKind};
    use crate::profile::ProfileForm;
    use crate::store::Identities;

    const ACCESS: &str = "access-token-value-Qm27";
    const REFRESH: &str = "refresh-token-value-Hx93";
    const SECRET: &str = "client-secret-value-Lp55";

    fn profile() -> Profile {
        let form = ProfileForm {
            tenant: "00000000-0000-0000-0000-000000000000".into(),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            mailbox: "alarms@example.com".into(),
            ..ProfileForm::default()
        };
        form.validate().expect("valid form").0
    }

    fn tokens(access: &str, refresh: Option<&str>, expires_in: Duration) -> TokenSet {
        let now = OffsetDateTime::now_utc();
        TokenSet {
            access_token: AccessToken::new(access.into()),
            access_expires_at: Some(now + expires_in),
            refresh_token: refresh.map(|r| RefreshToken::new(r.into())),
            granted_scopes: None,
            identity: Some(IdentityClaims {
                preferred_username: Some("alarms@example.com".into()),
                ..IdentityClaims::default()
            }),
            obtained_at: now,
        }
    }

    /// A saved setup whose access token expires in `expires_in`.
    fn setup(expires_in: Duration) -> (tempfile::TempDir, ConfigPaths) {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
        let profile = profile();
        let config =
            ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
        let secrets = Secrets::from_sign_in(
            &tokens(ACCESS, Some(REFRESH), expires_in),
            Some(ClientSecret::new(SECRET.into())),
        );
        store::save(&paths, &config, &secrets).expect("saved");
        (dir, paths)
    }

    fn on_disk(paths: &ConfigPaths) -> Secrets {
        store::load_secrets(paths).expect("secrets load")
    }

    fn refresh_on_disk(paths: &ConfigPaths) -> String {
        on_disk(paths).refresh_token.map(|t| t.secret().clone()).unwrap_or_default()
    }

    fn provider_error(status: u16, error: &str, description: &str) -> TokenError {
        TokenError::Provider {
            status,
            error: Box::new(ProviderError::from_parts(error, Some(description.into()), None)),
            retry_after: None,
        }
    }

    fn unavailable() -> TokenError {
        provider_error(503, "temporarily_unavailable", "try later")
    }

    fn timeout() -> TokenError {
        TokenError::Transport {
            host: "127.0.0.1".into(),
            kind: TransportKind::Timeout,
            detail: "timed out".into(),
        }
    }

    /// Runs `tokens_via` with scripted answers; returns the result, requests made and sleeps.
    fn run(
        paths: &ConfigPaths,
        freshness: Freshness,
        answers: Vec<Result<TokenSet, TokenError>>,
    ) -> (Result<TokenSet, SessionError>, usize, Vec<StdDuration>) {
        run_with(paths, &profile(), &RetryPolicy::default(), freshness, answers)
    }

    /// [`run`] with a chosen profile and policy. The sleeps only advance a pretend clock.
    fn run_with(
        paths: &ConfigPaths,
        profile: &Profile,
        policy: &RetryPolicy,
        freshness: Freshness,
        answers: Vec<Result<TokenSet, TokenError>>,
    ) -> (Result<TokenSet, SessionError>, usize, Vec<StdDuration>) {
        let answers = RefCell::new(answers.into_iter());
        let calls = Cell::new(0);
        let clock = Cell::new(Instant::now());
        let mut sleeps = Vec::new();
        let refresh = |token: &RefreshToken| {
            calls.set(calls.get() + 1);
            assert!(!token.secret().is_empty(), "refreshed with an empty token");
            answers.borrow_mut().next().expect("no more scripted answers")
        };
        let sleep = |d| {
            sleeps.push(d);
            clock.set(clock.get() + d);
        };
        let result = tokens_via(paths, profile, freshness, policy, refresh, || clock.get(), sleep);
        (result, calls.get(), sleeps)
    }

    fn too_many_requests(retry_after: StdDuration) -> TokenError {
        TokenError::Provider {
            status: 429,
            error: Box::new(ProviderError::from_parts("slow_down", None, None)),
            retry_after: Some(retry_after),
        }
    }

    fn secs(list: &[u64]) -> Vec<StdDuration> {
        list.iter().map(|s| StdDuration::from_secs(*s)).collect()
    }

    #[test]
    fn a_valid_cached_token_is_used_without_a_request() {
        let (_dir, paths) = setup(Duration::hours(1));
        let (result, calls, _) = run(&paths, Freshness::CachedIfValid, vec![]);
        assert_eq!(result.expect("cached").access_token.secret(), ACCESS);
        assert_eq!(calls, 0);
    }

    #[test]
    fn transient_failures_are_retried_with_backoff_and_the_rotation_is_saved() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let answers = vec![
            Err(unavailable()),
            Err(timeout()),
            Ok(tokens("AT-2", Some("RT-2"), Duration::hours(1))),
        ];
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, answers);
        assert_eq!(result.expect("third try works").access_token.secret(), "AT-2");
        assert_eq!((calls, sleeps), (3, secs(&[1, 2])));
        assert_eq!(refresh_on_disk(&paths), "RT-2");
    }

    #[test]
    fn when_every_retry_fails_the_tokens_are_kept_and_nothing_is_marked() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let before = std::fs::read_to_string(paths.dir().join("mailgrant.secrets.toml"));
        let answers = (0..4).map(|_| Err(unavailable())).collect();
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, answers);

        let error = result.expect_err("all failed");
        assert!(matches!(error, SessionError::Unavailable { attempts: 4, .. }), "{error:?}");
        assert!(error.is_transient());
        assert_eq!((calls, sleeps), (4, secs(&[1, 2, 4])));
        let after = std::fs::read_to_string(paths.dir().join("mailgrant.secrets.toml"));
        assert_eq!(after.ok(), before.ok(), "the secrets file changed");
        assert_eq!(error.diagnosis(&profile()).retry, Retry::Transient);
    }

    #[test]
    fn a_cached_token_inside_the_margin_is_handed_out_when_the_provider_is_down() {
        let (_dir, paths) = setup(Duration::minutes(2));
        let answers = (0..4).map(|_| Err(timeout())).collect();
        let (result, calls, _) = run(&paths, Freshness::CachedIfValid, answers);
        assert_eq!(result.expect("cached fallback").access_token.secret(), ACCESS);
        assert_eq!(calls, 4);

        // A forced refresh (the refresh check) must not pretend it worked.
        let answers = (0..4).map(|_| Err(timeout())).collect();
        let (result, _, _) = run(&paths, Freshness::ForceRefresh, answers);
        assert!(matches!(result, Err(SessionError::Unavailable { .. })), "{result:?}");
    }

    #[test]
    fn invalid_grant_marks_needs_sign_in_once_and_stops_asking() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let dead = provider_error(
            400,
            "invalid_grant",
            "AADSTS700082: The refresh token has expired due to inactivity.",
        );
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, vec![Err(dead)]);
        assert!(matches!(result, Err(SessionError::NeedsSignIn { .. })), "{result:?}");
        assert_eq!((calls, sleeps.len()), (1, 0));

        let reason = on_disk(&paths).needs_sign_in.expect("marked");
        assert!(reason.contains("AADSTS700082"), "{reason}");
        assert_eq!(refresh_on_disk(&paths), REFRESH, "the refresh token stays until sign-in");

        let (result, calls, _) = run(&paths, Freshness::CachedIfValid, vec![]);
        assert!(matches!(result, Err(SessionError::NeedsSignIn { .. })), "{result:?}");
        assert_eq!(calls, 0, "a dead grant is not redeemed again");
    }

    #[test]
    fn br_13_an_expired_client_secret_keeps_the_refresh_token_and_marks_nothing() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let expired = provider_error(
            401,
            "invalid_client",
            "AADSTS7000222: The provided client secret keys for app \
             '00000000-0000-0000-0000-000000000000' are expired. Trace ID: 1",
        );
        let (result, calls, sleeps) =
            run(&paths, Freshness::CachedIfValid, vec![Err(expired.clone())]);
        let error = result.expect_err("refused");
        assert!(matches!(error, SessionError::ClientSecret(_)), "{error:?}");
        assert_eq!((calls, sleeps.len()), (1, 0), "permanent: no retry storm");
        assert_eq!(error.diagnosis(&profile()).id, "client-secret-expired");

        let secrets = on_disk(&paths);
        assert!(secrets.needs_sign_in.is_none(), "the grant was marked dead");
        assert_eq!(refresh_on_disk(&paths), REFRESH);

        // Even dressed as invalid_grant, a secret failure does not kill the grant.
        let odd = provider_error(400, "invalid_grant", "AADSTS7000215: Invalid client secret.");
        let (result, _, _) = run(&paths, Freshness::CachedIfValid, vec![Err(odd)]);
        assert!(matches!(result, Err(SessionError::ClientSecret(_))), "{result:?}");
        assert!(on_disk(&paths).needs_sign_in.is_none());

        // Once the secret is replaced the same refresh token works: no sign-in needed.
        let fresh = Ok(tokens("AT-3", Some("RT-3"), Duration::hours(1)));
        let (result, calls, _) = run(&paths, Freshness::CachedIfValid, vec![fresh]);
        assert_eq!(result.expect("works again").access_token.secret(), "AT-3");
        assert_eq!(calls, 1);
    }

    #[test]
    fn other_permanent_failures_are_not_retried_and_mark_nothing() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let error = provider_error(400, "invalid_scope", "AADSTS70011: bad scope");
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, vec![Err(error)]);
        assert!(matches!(result, Err(SessionError::Token(_))), "{result:?}");
        assert_eq!((calls, sleeps.len()), (1, 0));
        assert!(on_disk(&paths).needs_sign_in.is_none());
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let s = StdDuration::from_secs;
        assert_eq!(policy.delay(0, None), Some(s(1)));
        assert_eq!(policy.delay(1, Some(s(10))), Some(s(10)));
        assert_eq!(policy.delay(2, Some(s(3600))), Some(s(30)));
        assert_eq!(policy.delay(2, Some(s(1))), Some(s(4)));
        assert_eq!(policy.delay(3, None), None);
        assert_eq!(RetryPolicy::none().delay(0, Some(s(5))), None);
    }

    #[test]
    fn f6_retry_after_of_a_429_sets_the_wait_capped_at_30_s() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let fresh = || Ok(tokens("AT-2", Some("RT-2"), Duration::hours(1)));
        let asked = too_many_requests(StdDuration::from_secs(10));
        let (result, calls, sleeps) =
            run(&paths, Freshness::CachedIfValid, vec![Err(asked), fresh()]);
        assert_eq!(result.expect("second try works").access_token.secret(), "AT-2");
        assert_eq!((calls, sleeps), (2, secs(&[10])));

        // An absurd Retry-After is capped, not overflowed.
        let (_dir, paths) = setup(Duration::minutes(-1));
        let absurd = too_many_requests(StdDuration::from_secs(99_999_999_999));
        let (result, calls, sleeps) =
            run(&paths, Freshness::CachedIfValid, vec![Err(absurd), fresh()]);
        assert_eq!(result.expect("second try works").access_token.secret(), "AT-2");
        assert_eq!((calls, sleeps), (2, secs(&[30])));
    }

    #[test]
    fn f6_retry_after_never_takes_a_call_past_its_budget() {
        // Timeout 20 s: the budget is 89 s and a retry must start by 69 s. Waits of 30 s fit
        // twice; the third would end past the budget, so the call stops after 3 requests.
        let (_dir, paths) = setup(Duration::minutes(-1));
        assert_eq!(profile().timeout, StdDuration::from_secs(20));
        assert_eq!(RetryPolicy::default().budget(profile().timeout), StdDuration::from_secs(89));
        let answers =
            (0..4).map(|_| Err(too_many_requests(StdDuration::from_secs(u64::MAX)))).collect();
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, answers);
        let error = result.expect_err("every request was refused");
        assert!(matches!(error, SessionError::Unavailable { attempts: 3, .. }), "{error:?}");
        assert_eq!((calls, sleeps), (3, secs(&[30, 30])));
    }

    #[test]
    fn f4_a_valid_cached_token_is_handed_out_while_another_process_holds_the_lock() {
        let (_dir, paths) = setup(Duration::minutes(59));
        let _held = store::StoreLock::acquire(&paths).expect("lock");
        let started = std::time::Instant::now();
        let (result, calls, sleeps) = run(&paths, Freshness::CachedIfValid, vec![]);
        assert_eq!(result.expect("cached, no lock").access_token.secret(), ACCESS);
        assert_eq!((calls, sleeps.len()), (0, 0));
        assert!(started.elapsed() < StdDuration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn f4_a_held_lock_ends_in_a_lock_busy_diagnosis_within_the_budget() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let _held = store::StoreLock::acquire(&paths).expect("lock");
        let mut profile = profile();
        profile.timeout = StdDuration::from_secs(1);
        let policy = RetryPolicy::none();
        // One request of 1 s and the file work: 3 s, of which 2 s may go to the lock.
        assert_eq!(policy.budget(profile.timeout), StdDuration::from_secs(3));

        let started = std::time::Instant::now();
        let (result, calls, _) =
            run_with(&paths, &profile, &policy, Freshness::CachedIfValid, vec![]);
        let took = started.elapsed();
        assert!((StdDuration::from_secs(2)..StdDuration::from_secs(3)).contains(&took), "{took:?}");
        assert_eq!(calls, 0);

        let error = result.expect_err("the lock stayed busy");
        assert!(error.is_transient());
        let diagnosis = error.diagnosis(&profile);
        assert_eq!(diagnosis.id, "config-lock-busy");
        let pid = std::process::id();
        if cfg!(target_os = "linux") {
            assert!(diagnosis.summary.contains(&format!(", pid {pid})")), "{diagnosis:?}");
        }
        assert!(diagnosis.summary.contains("has held the lock"), "{diagnosis:?}");
        assert!(diagnosis.fix.contains("never delete the lock file"), "{diagnosis:?}");
    }

    #[test]
    fn f4_a_cached_token_inside_the_margin_is_handed_out_when_the_lock_stays_busy() {
        let (_dir, paths) = setup(Duration::minutes(2));
        let _held = store::StoreLock::acquire(&paths).expect("lock");
        let mut profile = profile();
        profile.timeout = StdDuration::from_secs(1);
        let (result, calls, _) =
            run_with(&paths, &profile, &RetryPolicy::none(), Freshness::CachedIfValid, vec![]);
        assert_eq!(result.expect("cached fallback").access_token.secret(), ACCESS);
        assert_eq!(calls, 0);
    }

    #[test]
    fn sign_out_removes_the_tokens_keeps_the_secret_and_stops_refreshes() {
        let (_dir, paths) = setup(Duration::hours(1));
        sign_out(&paths).expect("signed out");
        let secrets = on_disk(&paths);
        assert!(secrets.refresh_token.is_none() && secrets.access_token.is_none());
        assert_eq!(secrets.client_secret.as_ref().map(|s| s.secret().as_str()), Some(SECRET));
        let (result, calls, _) = run(&paths, Freshness::CachedIfValid, vec![]);
        assert!(matches!(result, Err(SessionError::NotSignedIn)), "{result:?}");
        assert_eq!(calls, 0);

        let config = store::load_config(&paths).expect("config");
        let text = revoke_instructions(&config);
        assert!(text.contains("no endpoint to revoke"), "{text}");
        assert!(text.contains("Revoke sessions"), "{text}");
    }

    #[test]
    fn errors_show_no_secret_value() {
        let (_dir, paths) = setup(Duration::minutes(-1));
        let dead = provider_error(400, "invalid_grant", "AADSTS70008: expired.");
        let (result, _, _) = run(&paths, Freshness::CachedIfValid, vec![Err(dead)]);
        let error = result.expect_err("dead");
        let shown = format!("{error} {error:?} {}", error.diagnosis(&profile()).to_text());
        for value in [ACCESS, REFRESH, SECRET] {
            assert!(!shown.contains(value), "{value} leaked: {shown}");
        }
    }
}
