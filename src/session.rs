//! The token lifecycle on a saved setup: a valid access token on demand, refreshing under the
//! config's lock and saving a rotated refresh token before the access token is handed out.
//!
//! This is what `mailgrant token`, `mailgrant check`, the GUI's status view and a service
//! embedding the library call. Whoever refreshes first wins; the others find the fresh access
//! token on disk after the lock and do not refresh again, so two processes never redeem the
//! same refresh token. A permanent refusal (`invalid_grant` and friends) is written down as
//! "needs sign-in" so nobody loops on a dead token.

use time::{Duration, OffsetDateTime};

use crate::diagnose::{self, Diagnosis, Retry};
use crate::oauth::{TokenClient, TokenError, TokenSet};
use crate::profile::Profile;
use crate::store::{self, ConfigPaths, StoreError, UpdateError};
use crate::trust::Trust;

/// An access token closer than this to its expiry is refreshed first.
pub const REFRESH_MARGIN: Duration = Duration::minutes(5);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no refresh token is stored: sign in first")]
    NotSignedIn,
    #[error("the provider refused the stored refresh token earlier: {reason}")]
    NeedsSignIn { reason: String },
    #[error("refreshing the access token failed: {0}")]
    Token(#[from] TokenError),
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
            SessionError::NeedsSignIn { reason } => Diagnosis::new(
                "needs-sign-in",
                "The provider refused the stored refresh token; alarm mail cannot be sent",
                reason.clone(),
                "Sign in again (mailgrant login --config <file>, or Sign in again… in the app)",
                Retry::Permanent,
            ),
            SessionError::Token(e) => diagnose::oauth::token(e, profile),
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

/// A valid token set for the setup at `paths`, refreshing under the lock when needed. The
/// rotated refresh token is on disk before this returns.
pub fn tokens(
    paths: &ConfigPaths,
    profile: &Profile,
    trust: &Trust,
    freshness: Freshness,
) -> Result<TokenSet, SessionError> {
    let client = TokenClient::new(profile, trust);
    let result = store::update_secrets_locked(paths, |secrets| {
        let now = OffsetDateTime::now_utc();
        if freshness == Freshness::CachedIfValid
            && secrets.valid_access_token(now, REFRESH_MARGIN).is_some()
            && let Some(tokens) = secrets.token_set()
        {
            tracing::debug!("cached access token still valid");
            return Ok(tokens);
        }
        if let Some(reason) = &secrets.needs_sign_in {
            return Err(SessionError::NeedsSignIn { reason: reason.clone() });
        }
        let Some(refresh_token) = secrets.refresh_token.clone() else {
            return Err(SessionError::NotSignedIn);
        };

        match client.refresh(&refresh_token) {
            Ok(fresh) => {
                secrets.apply_refresh(&fresh);
                tracing::info!(rotated = fresh.refresh_token.is_some(), "access token refreshed");
                let mut tokens = fresh;
                tokens.refresh_token = secrets.refresh_token.clone();
                if tokens.identity.is_none() {
                    tokens.identity = secrets.token_set().and_then(|t| t.identity);
                }
                Ok(tokens)
            }
            Err(error) => {
                let grant_dead = error.provider_error().is_some_and(|p| p.error == "invalid_grant");
                if grant_dead {
                    let diagnosis = diagnose::oauth::token(&error, profile);
                    secrets.needs_sign_in = Some(diagnosis.summary);
                }
                tracing::error!(transient = error.is_transient(), grant_dead, "refresh failed");
                Err(SessionError::Token(error))
            }
        }
    });
    result.map_err(|e| match e {
        UpdateError::Store(e) => SessionError::Store(e),
        UpdateError::Update(e) => e,
    })
}
