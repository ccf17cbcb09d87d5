//! Code redemption and refresh at the token endpoint, through oauth2 and [`TokenHttpClient`].
//!
//! Client authentication: the client secret, when the profile has one, is sent in the request
//! body (`client_secret_post`), which is what Entra expects from a desktop app; with no secret
//! only `client_id` is sent (public client). A refresh answer that omits the refresh token, or
//! gives `""` or `null`, keeps the old one (RFC 6749 §6; BR-17). Error answers keep Microsoft's
//! extra fields (`error_codes`, `trace_id`, `correlation_id`, `error_uri`, `timestamp`).

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthorizationCode, Client, EndpointNotSet, EndpointSet, ErrorResponse,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    TokenResponse,
};
use serde::de::{Deserializer, IntoDeserializer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{ProviderError, TokenError, TransportKind, parse_retry_after, scrub};
use super::http::{RecordingClient, ResponseMeta, TokenHttpClient, TransportError};
use super::{TokenSet, claims};
use crate::profile::Profile;
use crate::trust::Trust;

type OAuthClient = Client<
    ErrorBody,
    TokenBody,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Talks to one profile's token endpoint.
#[derive(Clone, Debug)]
pub struct TokenClient {
    oauth: OAuthClient,
    http: TokenHttpClient,
    scopes: Vec<Scope>,
    host: String,
    client_secret: Option<oauth2::ClientSecret>,
}

impl TokenClient {
    /// A client for `profile`'s token URL, trusting `trust`, bounded by `profile.timeout`.
    pub fn new(profile: &Profile, trust: &Trust) -> TokenClient {
        let mut oauth = Client::new(profile.client_id.clone())
            .set_token_uri(profile.token_url.clone())
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = &profile.client_secret {
            oauth = oauth.set_client_secret(secret.clone());
        }
        TokenClient {
            oauth,
            http: TokenHttpClient::new(trust, profile.timeout),
            scopes: profile.scopes.clone(),
            host: profile.token_url.url().host_str().unwrap_or_default().to_owned(),
            client_secret: profile.client_secret.clone(),
        }
    }

    /// Redeems an authorization code (once) with its PKCE verifier and the exact redirect URI
    /// used in the authorize request.
    pub fn exchange_code(
        &self,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        redirect_uri: &RedirectUrl,
    ) -> Result<TokenSet, TokenError> {
        let sent = [code.secret().clone(), verifier.secret().clone()];
        let recorder = RecordingClient::new(&self.http);
        tracing::debug!(host = %self.host, "redeeming the authorization code");

        let result = self
            .oauth
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .set_redirect_uri(Cow::Borrowed(redirect_uri))
            .request(&recorder);
        let outcome = self.finish(result, &recorder, &sent);
        log_outcome("code redemption", &outcome);
        outcome
    }

    /// Turns a refresh token into a new access token. The returned set holds the rotated
    /// refresh token, or the old one when the provider did not send a new one.
    pub fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenSet, TokenError> {
        let sent = [refresh_token.secret().clone()];
        let recorder = RecordingClient::new(&self.http);
        tracing::debug!(host = %self.host, "refreshing the access token");

        let result = self
            .oauth
            .exchange_refresh_token(refresh_token)
            .add_scopes(self.scopes.iter().cloned())
            .request(&recorder);
        let mut outcome = self.finish(result, &recorder, &sent);
        if let Ok(set) = &mut outcome
            && set.refresh_token.is_none()
        {
            tracing::debug!("no new refresh token in the answer; the old one is kept");
            set.refresh_token = Some(refresh_token.clone());
        }
        log_outcome("refresh", &outcome);
        outcome
    }

    fn finish(
        &self,
        result: Result<TokenBody, RequestTokenError<TransportError, ErrorBody>>,
        recorder: &RecordingClient<'_>,
        sent: &[String],
    ) -> Result<TokenSet, TokenError> {
        let mut secrets: Vec<&str> = sent.iter().map(String::as_str).collect();
        if let Some(secret) = &self.client_secret {
            secrets.push(secret.secret());
        }
        match result {
            Ok(body) => Ok(body.into_token_set(OffsetDateTime::now_utc())),
            Err(error) => Err(map_error(error, recorder.last_response(), &self.host, &secrets)),
        }
    }
}

fn log_outcome(step: &str, outcome: &Result<TokenSet, TokenError>) {
    match outcome {
        Ok(set) => tracing::debug!(
            step,
            refresh_token = set.refresh_token.is_some(),
            scopes = set.granted_scopes.as_ref().map(Vec::len),
            "token endpoint succeeded"
        ),
        Err(e) => tracing::debug!(step, status = e.status(), aadsts = ?e.aadsts(), "token \
                                  endpoint failed"),
    }
}

/// Sorts oauth2's failure into a [`TokenError`], scrubbing anything we sent from server text.
fn map_error(
    error: RequestTokenError<TransportError, ErrorBody>,
    meta: Option<ResponseMeta>,
    host: &str,
    secrets: &[&str],
) -> TokenError {
    let retry_after = meta.as_ref().and_then(|m| m.retry_after.as_deref());
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, SystemTime::now()));
    match (error, meta) {
        (RequestTokenError::Request(e), _) => {
            TokenError::Transport { host: host.to_owned(), kind: e.kind, detail: e.detail }
        }
        // A proxy between here and the provider wants a login (RFC 9110 §15.5.8), whatever
        // the body says: the provider never saw the request.
        (_, Some(meta)) if meta.status == 407 => TokenError::Transport {
            host: host.to_owned(),
            kind: TransportKind::Proxy,
            detail: "HTTP 407 Proxy Authentication Required".to_owned(),
        },
        (RequestTokenError::ServerResponse(body), meta) => TokenError::Provider {
            status: meta.map(|m| m.status).unwrap_or(400),
            error: Box::new(body.into_provider_error(secrets)),
            retry_after,
        },
        (_, Some(meta)) if (300..400).contains(&meta.status) => TokenError::Redirected {
            status: meta.status,
            location: scrub(meta.location.as_deref().unwrap_or("nowhere"), secrets),
        },
        (RequestTokenError::Parse(_, body), Some(meta)) if meta.status != 200 => {
            TokenError::UnexpectedResponse {
                status: meta.status,
                what: describe_body(&meta, &body, secrets),
                retry_after,
            }
        }
        (RequestTokenError::Other(_), Some(meta)) => TokenError::UnexpectedResponse {
            status: meta.status,
            what: describe_body(&meta, &[], secrets),
            retry_after,
        },
        (RequestTokenError::Parse(e, _), _) => {
            // serde's message can quote the offending value (a token): keep only its category
            // and where it was.
            let category = match e.inner().classify() {
                serde_json::error::Category::Io => "read error",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "a field is missing or has the wrong type",
                serde_json::error::Category::Eof => "the answer is cut short",
            };
            let reason = match missing_field(&e.inner().to_string()) {
                Some(field) => format!("the field `{field}` is missing"),
                None => format!("{category} at `{}`", e.path()),
            };
            TokenError::InvalidResponse { reason }
        }
        (RequestTokenError::Other(text), None) => {
            TokenError::InvalidResponse { reason: scrub(&text, secrets) }
        }
    }
}

/// The field named by serde's "missing field `name`" message: a name from our own struct,
/// never a value of the answer.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    let name = &rest[..rest.find('`')?];
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_').then_some(name)
}

/// A few words about a body that is not an OAuth answer: its type and its HTML title or first
/// words, which usually name the proxy or gateway that produced it.
fn describe_body(meta: &ResponseMeta, body: &[u8], secrets: &[&str]) -> String {
    let content_type = meta.content_type.as_deref().unwrap_or("no content type");
    if body.is_empty() {
        return format!("an empty body ({content_type})");
    }
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let title = lower
        .find("<title>")
        .and_then(|start| {
            let rest = &text[start + 7..];
            rest.to_ascii_lowercase().find("</title>").map(|end| rest[..end].to_owned())
        })
        .unwrap_or_else(|| text.chars().take(120).collect());
    let title: String = title.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("a {content_type} page: \"{}\"", scrub(&title, secrets))
}

/// Entra's error body: the RFC 6749 fields plus Microsoft's extras.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Option<Vec<u64>>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

impl ErrorResponse for ErrorBody {}

impl ErrorBody {
    fn into_provider_error(self, secrets: &[&str]) -> ProviderError {
        let description = self.error_description.map(|d| scrub(&d, secrets));
        let mut error =
            ProviderError::from_parts(&scrub(&self.error, secrets), description, self.error_uri);
        let listed: Vec<u32> = self
            .error_codes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| u32::try_from(c).ok())
            .collect();
        if !listed.is_empty() {
            error.aadsts = listed;
        }
        error.trace_id = self.trace_id.or(error.trace_id);
        error.correlation_id = self.correlation_id.or(error.correlation_id);
        error.timestamp = self.timestamp;
        error
    }
}

/// An ID token; a bearer credential for some systems, so its Debug is redacted.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
struct IdToken(String);

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdToken([redacted])")
    }
}

/// A token answer, read leniently: `expires_in` as number or string, `token_type` in any case,
/// an empty or null `refresh_token` taken as absent.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct TokenBody {
    access_token: AccessToken,
    #[serde(default = "bearer", deserialize_with = "token_type")]
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "non_empty_refresh_token")]
    refresh_token: Option<RefreshToken>,
    #[serde(default, rename = "scope", deserialize_with = "space_separated")]
    scopes: Option<Vec<Scope>>,
    #[serde(default)]
    id_token: Option<IdToken>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn token_type<'de, D: Deserializer<'de>>(d: D) -> Result<BasicTokenType, D::Error> {
    let text = Option::<String>::deserialize(d)?.unwrap_or_else(|| "bearer".to_owned());
    BasicTokenType::deserialize(text.to_ascii_lowercase().into_deserializer())
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<NumberOrText>::deserialize(d)? {
        Some(NumberOrText::Number(n)) => Some(n),
        Some(NumberOrText::Text(t)) => t.trim().parse().ok(),
        None => None,
    })
}

fn non_empty_refresh_token<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<RefreshToken>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.filter(|t| !t.trim().is_empty()).map(RefreshToken::new))
}

fn space_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Scope>>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.split_whitespace().map(|s| Scope::new(s.to_owned())).collect()))
}

impl TokenResponse for TokenBody {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<std::time::Duration> {
        self.expires_in.map(std::time::Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

/// The longest access-token lifetime taken from a token answer: one day.
const MAX_ACCESS_LIFETIME_SECS: i64 = 24 * 60 * 60;

impl TokenBody {
    fn into_token_set(self, obtained_at: OffsetDateTime) -> TokenSet {
        let identity =
            claims::identity(self.id_token.as_ref().map(|t| t.0.as_str()), &self.access_token);
        // A lifetime past a day is not believed (Entra gives 60 to 90 minutes): the token is
        // used for a day at most, and an absurd number cannot overflow the date.
        let access_expires_at = self.expires_in.map(|secs| {
            let secs = i64::try_from(secs).unwrap_or(i64::MAX).min(MAX_ACCESS_LIFETIME_SECS);
            obtained_at + time::Duration::seconds(secs)
        });
        TokenSet {
            access_token: self.access_token,
            access_expires_at,
            refresh_token: self.refresh_token,
            granted_scopes: self
                .scopes
                .map(|list| list.iter().map(|s| s.as_str().to_owned()).collect()),
            identity,
            obtained_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> TokenBody {
        serde_json::from_str(json).expect("token body parses")
    }

    #[test]
    fn expires_in_becomes_an_expiry_time_and_scope_a_list() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let set = body(
            r#"{"token_type":"Bearer","scope":"https://outlook.office.com/SMTP.Send  openid",
                "expires_in":"3599","access_token":"AT1","refresh_token":"RT1"}"#,
        )
        .into_token_set(at);
        assert_eq!(set.access_expires_at, Some(at + time::Duration::seconds(3599)));
        assert_eq!(
            set.granted_scopes,
            Some(vec!["https://outlook.office.com/SMTP.Send".to_owned(), "openid".to_owned()])
        );
        assert_eq!(set.refresh_token.as_ref().map(|t| t.secret().as_str()), Some("RT1"));
        assert_eq!(set.access_token.secret(), "AT1");
    }

    #[test]
    fn an_absurd_expires_in_is_capped_at_a_day_not_a_panic() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        for huge in ["99999999999999999", "18446744073709551615", "86401"] {
            let json = format!(
                concat!(
                    r#"{{"token_type":"Bearer","expires_in":{huge},"#,
                    r#""access_token":"AT","refresh_token":"RT"}}"#
                ),
                huge = huge
            );
            let set = body(&json).into_token_set(at);
            assert_eq!(set.access_expires_at, Some(at + time::Duration::days(1)), "{huge}");
        }
    }

    #[test]
    fn empty_or_null_refresh_tokens_count_as_absent() {
        for json in [
            r#"{"access_token":"AT2","token_type":"bearer","refresh_token":""}"#,
            r#"{"access_token":"AT2","token_type":"bearer","refresh_token":null}"#,
            r#"{"access_token":"AT2","token_type":"bearer"}"#,
        ] {
            assert!(body(json).refresh_token.is_none(), "{json}");
        }
    }

    #[test]
    fn id_token_is_redacted_in_debug() {
        let parsed = body(r#"{"access_token":"AT-SECRET-1","id_token":"ID-SECRET-2"}"#);
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("AT-SECRET-1") && !debug.contains("ID-SECRET-2"), "{debug}");
    }

    #[test]
    fn microsoft_error_fields_are_kept_and_echoed_secrets_scrubbed() {
        let error: ErrorBody = serde_json::from_str(concat!(
            r#"{"error":"invalid_grant","error_description":"AADSTS54005: code CODE-123 "#,
            r#"was already redeemed.","error_codes":[54005],"trace_id":"t-1","#,
            r#""correlation_id":"c-1","timestamp":"2024","#,
            r#""error_uri":"https://login.microsoftonline.com/error?code=54005"}"#
        ))
        .expect("parses");
        let error = error.into_provider_error(&["CODE-123"]);
        assert_eq!(error.aadsts, [54005]);
        assert_eq!(error.trace_id.as_deref(), Some("t-1"));
        assert_eq!(error.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(error.timestamp.as_deref(), Some("2024"));
        assert_eq!(
            error.description.as_deref(),
            Some("AADSTS54005: code [redacted] was already redeemed.")
        );
    }
}
