//! The browser sign-in: a loopback listener on `127.0.0.1` (and `::1` on the same port when the
//! machine has IPv6, since browsers may resolve `localhost` to either), waiting for exactly one
//! callback that carries our `state`.
//!
//! Invariants:
//! - nothing listens on any other interface;
//! - waiting blocks a worker thread on a channel (no polling): one thread per listening socket
//!   feeds requests into it, the canceller feeds a cancel into it, and the total timeout bounds
//!   it;
//! - stray requests (`/favicon.ico`, other paths, no parameters) get 404/400 and waiting goes
//!   on; a callback with a foreign `state` gets a 400 page and waiting goes on; `error` and
//!   `code` are only looked at after the `state` matched;
//! - the code is redeemed once, then the browser is answered with the real outcome;
//! - the port is released when the pending sign-in ends or is dropped, and the PKCE verifier
//!   and `state` go with it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use oauth2::{AuthorizationCode, CsrfToken};
use tiny_http::{Header, Response, Server};

use super::authorize::{self, AuthorizeRequest};
use super::error::{CallbackError, ProviderError, SignInError};
use super::{TokenClient, TokenSet};
use crate::diagnose;
use crate::profile::Profile;

/// How many times to pick a new port when `::1` has the port `127.0.0.1` got already taken.
const BIND_ATTEMPTS: usize = 5;

/// What reaches the waiting thread.
enum Event {
    Request(tiny_http::Request),
    Cancel,
}

/// Stops a pending sign-in from another thread (the GUI's Cancel button).
#[derive(Clone)]
pub struct SignInCanceller {
    events: Sender<Event>,
}

impl SignInCanceller {
    /// Wakes the waiting thread, which then returns [`SignInError::Cancelled`]. Does nothing
    /// once the sign-in has ended.
    pub fn cancel(&self) {
        // A closed channel means the wait is over; nothing to cancel then.
        let _ = self.events.send(Event::Cancel);
    }
}

impl std::fmt::Debug for SignInCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInCanceller")
    }
}

/// The listening sockets; closing them (on drop) releases the port.
struct LoopbackListener {
    servers: Vec<Arc<Server>>,
    port: u16,
}

impl LoopbackListener {
    /// Binds `127.0.0.1:0`, then `[::1]` on the same port when IPv6 is there.
    fn bind() -> Result<LoopbackListener, SignInError> {
        let mut last_v6_in_use = None;
        for _ in 0..BIND_ATTEMPTS {
            let v4_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let v4 = TcpListener::bind(v4_addr)
                .map_err(|source| SignInError::Listener { address: v4_addr.to_string(), source })?;
            let port = v4
                .local_addr()
                .map_err(|source| SignInError::Listener { address: v4_addr.to_string(), source })?;
            let port = port.port();

            let v6_addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            let v6 = match TcpListener::bind(v6_addr) {
                Ok(listener) => Some(listener),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // Another program holds this port on ::1; a browser resolving localhost
                    // to ::1 would reach it. Take another port.
                    last_v6_in_use = Some(port);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no IPv6 loopback; listening on 127.0.0.1 only");
                    None
                }
            };

            let mut servers = vec![serve(v4, v4_addr)?];
            if let Some(v6) = v6 {
                servers.push(serve(v6, v6_addr)?);
            }
            tracing::debug!(port, sockets = servers.len(), "loopback listener open");
            return Ok(LoopbackListener { servers, port });
        }
        Err(SignInError::Listener {
            address: format!("[::1]:{}", last_v6_in_use.unwrap_or_default()),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        })
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.servers.iter().filter_map(|s| s.server_addr().to_ip()).collect()
    }

    /// One named thread per socket, each blocking in `recv` and forwarding into `events`.
    fn forward_requests(&self, events: &Sender<Event>) -> Result<(), SignInError> {
        for server in &self.servers {
            let server = Arc::clone(server);
            let events = events.clone();
            let address = server.server_addr().to_ip();
            std::thread::Builder::new()
                .name("mailgrant-loopback".to_owned())
                .spawn(move || {
                    // `recv` fails once `unblock` is called (on drop) or the socket breaks.
                    while let Ok(request) = server.recv() {
                        if events.send(Event::Request(request)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|source| SignInError::Listener {
                    address: address.map(|a| a.to_string()).unwrap_or_default(),
                    source,
                })?;
        }
        Ok(())
    }
}

fn serve(listener: TcpListener, address: SocketAddr) -> Result<Arc<Server>, SignInError> {
    Server::from_listener(listener, None).map(Arc::new).map_err(|e| SignInError::Listener {
        address: address.to_string(),
        source: io::Error::other(e.to_string()),
    })
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        // Wakes each forwarding thread so it drops its handle; the last handle closes the
        // socket.
        for server in &self.servers {
            server.unblock();
        }
        tracing::debug!(port = self.port, "loopback listener closed");
    }
}

/// A sign-in in progress: the listener is open and the authorize URL is ready to open.
pub struct PendingSignIn {
    listener: LoopbackListener,
    request: AuthorizeRequest,
    profile: Profile,
    events: Receiver<Event>,
    sender: Sender<Event>,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("redirect_uri", &self.redirect_uri())
            .field("listening_on", &self.listening_on())
            .finish_non_exhaustive()
    }
}

impl PendingSignIn {
    /// Opens the loopback listener and builds a fresh authorize request for `profile`.
    pub fn start(profile: &Profile) -> Result<PendingSignIn, SignInError> {
        let listener = LoopbackListener::bind()?;
        let request = authorize::build(profile, listener.port)?;
        let (sender, events) = channel();
        Ok(PendingSignIn { listener, request, profile: profile.clone(), events, sender })
    }

    /// The URL to open in the browser (also shown for copying).
    pub fn authorize_url(&self) -> &str {
        &self.request.url
    }

    /// The redirect URI sent: `http://localhost:<port>/`.
    pub fn redirect_uri(&self) -> &str {
        self.request.redirect_uri.as_str()
    }

    /// The sockets listening for the callback (127.0.0.1 and, with IPv6, ::1).
    pub fn listening_on(&self) -> Vec<SocketAddr> {
        self.listener.addresses()
    }

    /// A handle that cancels [`PendingSignIn::wait`] from another thread.
    pub fn canceller(&self) -> SignInCanceller {
        SignInCanceller { events: self.sender.clone() }
    }

    /// Blocks (run it on a worker thread) until the one callback with our `state` arrives,
    /// redeems its code once, answers the browser with the real outcome and returns; or until
    /// cancelled or `timeout` passes. The listener is closed when this returns.
    pub fn wait(self, client: &TokenClient, timeout: Duration) -> Result<TokenSet, SignInError> {
        let PendingSignIn { listener, request, profile, events, sender } = self;
        listener.forward_requests(&sender)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let mut rejected = 0u32;

        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let http_request = match events.recv_timeout(remaining) {
                Ok(Event::Request(http_request)) => http_request,
                Ok(Event::Cancel) => {
                    tracing::debug!("sign-in cancelled");
                    return Err(SignInError::Cancelled);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let redirect_uri = request.redirect_uri.as_str().to_owned();
                    tracing::debug!(rejected, "no sign-in callback before the timeout");
                    return Err(if rejected > 0 {
                        SignInError::StateMismatch { redirect_uri, rejected }
                    } else {
                        SignInError::TimedOut { redirect_uri, waited: started.elapsed() }
                    });
                }
            };

            let callback = if *http_request.method() == tiny_http::Method::Get {
                classify(http_request.url(), &request.state)
            } else {
                Callback::NotFound
            };
            match callback {
                Callback::NotFound => {
                    tracing::debug!("loopback: stray request answered 404");
                    answer(http_request, 404, &pages::not_found());
                }
                Callback::MissingParameters => {
                    tracing::debug!("loopback: request without sign-in parameters answered 400");
                    answer(http_request, 400, &pages::not_a_callback());
                }
                Callback::ForeignState => {
                    rejected += 1;
                    tracing::debug!(rejected, "loopback: callback with a foreign state rejected");
                    answer(http_request, 400, &pages::foreign_state());
                }
                Callback::Error(error) => {
                    tracing::debug!(error = %error.0.error, aadsts = ?error.0.aadsts,
                        "sign-in page answered with an error");
                    let error = SignInError::Callback(error);
                    let diagnosis = diagnose::oauth::sign_in(&error, &profile);
                    answer(http_request, 200, &pages::failed(&diagnosis));
                    return Err(error);
                }
                Callback::Code(code) => {
                    tracing::debug!("loopback: callback with a code received");
                    let outcome = client
                        .exchange_code(code, request.verifier, &request.redirect_uri)
                        .map_err(SignInError::Token);
                    let page = match &outcome {
                        Ok(tokens) => pages::signed_in(
                            tokens.identity.as_ref().and_then(|i| i.account()),
                            &profile.mailbox,
                        ),
                        Err(error) => pages::failed(&diagnose::oauth::sign_in(error, &profile)),
                    };
                    answer(http_request, 200, &page);
                    drop(listener);
                    return outcome;
                }
            }
        }
    }
}

/// Opens `url` in the system browser (`$BROWSER` is honoured).
pub fn open_browser(url: &str) -> Result<(), io::Error> {
    webbrowser::open(url)
}

/// What one request to the listener turned out to be.
#[derive(Debug)]
enum Callback {
    /// Not our path (such as `/favicon.ico`), or not a GET.
    NotFound,
    /// Our path without `state`, or with our `state` but neither `code` nor `error`.
    MissingParameters,
    /// A callback whose `state` is not ours (another attempt, or forged).
    ForeignState,
    /// Our `state` with an `error`.
    Error(CallbackError),
    /// Our `state` with a `code`.
    Code(AuthorizationCode),
}

/// Sorts a request target (`/path?query`); the `state` is checked before anything else in it
/// is looked at.
fn classify(target: &str, state: &CsrfToken) -> Callback {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/" {
        return Callback::NotFound;
    }

    let mut received_state = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut error_uri = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "state" => &mut received_state,
            "code" => &mut code,
            "error" => &mut error,
            "error_description" => &mut description,
            "error_uri" => &mut error_uri,
            _ => continue,
        };
        // The first occurrence counts; a repeated parameter cannot override it.
        if slot.is_none() {
            *slot = Some(value.into_owned());
        }
    }

    if received_state.is_none() && code.is_none() && error.is_none() {
        return Callback::MissingParameters;
    }
    match received_state {
        Some(received) if same_secret(&received, state.secret()) => {}
        _ => return Callback::ForeignState,
    }
    match (error, code) {
        (Some(error), _) => {
            let error = ProviderError::from_parts(&error, description, error_uri);
            Callback::Error(CallbackError(Box::new(error)))
        }
        (None, Some(code)) if !code.is_empty() => Callback::Code(AuthorizationCode::new(code)),
        _ => Callback::MissingParameters,
    }
}

/// Compares without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(request: tiny_http::Request, status: u16, html: &str) {
    let mut response = Response::from_string(html).with_status_code(status);
    for header in [
        "Content-Type: text/html; charset=utf-8",
        "Cache-Control: no-store",
        "Referrer-Policy: no-referrer",
    ] {
        if let Ok(header) = header.parse::<Header>() {
            response = response.with_header(header);
        }
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "the browser went away before the page was sent");
    }
}

/// The pages the browser lands on. Text comes from the diagnosis; everything is escaped.
mod pages {
    use crate::diagnose::Diagnosis;

    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    }

    fn page(title: &str, paragraphs: &[String]) -> String {
        let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>\n")).collect();
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{title} - mailgrant</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;\
             font-size:1.2em;line-height:1.5}}</style></head>\n\
             <body><h1>{title}</h1>\n{body}</body></html>\n",
            title = escape(title),
        )
    }

    pub(super) fn signed_in(account: Option<&str>, mailbox: &str) -> String {
        let who = match account {
            Some(account) => format!("Signed in as <strong>{}</strong>.", escape(account)),
            None => "Signed in.".to_owned(),
        };
        let mut paragraphs = vec![who];
        if let Some(account) = account
            && !account.eq_ignore_ascii_case(mailbox)
        {
            paragraphs.push(format!(
                "This is not the mailbox {}; mailgrant explains what that means.",
                escape(mailbox)
            ));
        }
        paragraphs.push("You can close this tab and go back to mailgrant.".to_owned());
        page("Signed in to mailgrant", &paragraphs)
    }

    pub(super) fn failed(diagnosis: &Diagnosis) -> String {
        page(
            "Sign-in did not work",
            &[
                format!("<strong>{}</strong>", escape(&diagnosis.summary)),
                format!("Cause: {}", escape(&diagnosis.cause)),
                format!("Fix: {}", escape(&diagnosis.fix)),
                "mailgrant shows the same explanation. You can close this tab.".to_owned(),
            ],
        )
    }

    pub(super) fn foreign_state() -> String {
        page(
            "This sign-in link is from another attempt",
            &["Go back to mailgrant and use the sign-in it opened last, or start the sign-in \
               again."
                .to_owned()],
        )
    }

    pub(super) fn not_a_callback() -> String {
        page(
            "Not a sign-in answer",
            &["This address only receives the answer of a mailgrant sign-in.".to_owned()],
        )
    }

    pub(super) fn not_found() -> String {
        page("Not found", &["Nothing here.".to_owned()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CsrfToken {
        CsrfToken::new("S-123456789".to_owned())
    }

    #[test]
    fn paths_other_than_root_are_not_found() {
        assert!(matches!(classify("/favicon.ico", &state()), Callback::NotFound));
        assert!(matches!(
            classify("/callback?code=x&state=S-123456789", &state()),
            Callback::NotFound
        ));
        assert!(matches!(classify("/", &state()), Callback::MissingParameters));
        assert!(matches!(classify("/?foo=bar", &state()), Callback::MissingParameters));
    }

    #[test]
    fn state_is_checked_before_code_or_error() {
        assert!(matches!(classify("/?code=abc&state=other", &state()), Callback::ForeignState));
        assert!(matches!(classify("/?code=abc", &state()), Callback::ForeignState));
        assert!(matches!(
            classify("/?error=access_denied&state=S-12345678", &state()),
            Callback::ForeignState
        ));
        assert!(matches!(
            classify("/?state=S-123456789&state=other&code=c", &state()),
            Callback::Code(_)
        ));
        assert!(matches!(classify("/?state=S-123456789", &state()), Callback::MissingParameters));
    }

    #[test]
    fn br03_error_callback_is_decoded() {
        let target = "/?error=invalid_request&error_description=AADSTS50194%3a+Application+\
            %2700000000-0000-0000-0000-000000000000%27(alarm-mailer)+is+not+configured+as+a+\
            multi-tenant+application.+Usage+of+the+%2fcommon+endpoint+is+not+supported+for+\
            such+applications+created+after+%2710%2f15%2f2018%27.+Use+a+tenant-specific+\
            endpoint+or+configure+the+application+to+be+multi-tenant.%0d%0aTrace+ID%3a+\
            00000000-0000-0000-0000-000000000000%0d%0a&state=S-123456789";
        let Callback::Error(CallbackError(error)) = classify(target, &state()) else {
            panic!("expected an error callback");
        };
        assert_eq!(error.error, "invalid_request");
        assert_eq!(error.aadsts, [50194]);
        assert_eq!(error.trace_id.as_deref(), Some("00000000-0000-0000-0000-000000000000"));
        let description = error.description.as_deref().unwrap_or_default();
        assert!(description.starts_with(
            "AADSTS50194: Application '00000000-0000-0000-0000-000000000000'(alarm-mailer) is \
             not configured as a multi-tenant application. Usage of the /common endpoint"
        ));
        assert!(description.contains("multi-tenant.\r\nTrace ID: 0000"), "{description:?}");
        assert_eq!(
            error.short_description(),
            Some(
                "AADSTS50194: Application '00000000-0000-0000-0000-000000000000'(alarm-mailer) \
                 is not configured as a multi-tenant application. Usage of the /common \
                 endpoint is not supported for such applications created after '10/15/2018'. \
                 Use a tenant-specific endpoint or configure the application to be \
                 multi-tenant."
            )
        );
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = pages::signed_in(Some("<script>x</script>@example.com"), "a@example.com");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>"));
        assert!(page.contains("This is not the mailbox a@example.com"));
    }

    #[test]
    fn the_canceller_and_the_pending_sign_in_can_cross_threads() {
        fn clone_send_sync<T: Clone + Send + Sync>() {}
        fn send<T: Send>() {}
        clone_send_sync::<SignInCanceller>();
        send::<PendingSignIn>();
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
