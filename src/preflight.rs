//! Pre-flight checks: before anyone signs in, can this computer reach the sign-in page, the
//! token endpoint, the SMTP server and the IMAP server, and do their certificates hold?
//!
//! For each server, in order: DNS lookup, TCP connect, for STARTTLS ports the mail greeting and
//! the STARTTLS exchange, then the TLS handshake with the profile's [`Trust`] (protocol version,
//! the presented chain's subject, issuer and validity). Every step has its duration; a failed
//! step has a [`Diagnosis`] from [`crate::diagnose::preflight`] and the later steps are skipped.
//!
//! Invariants: the four servers are checked concurrently on named threads and the whole run
//! ends by the profile's timeout (a thread still stuck in a system call is left behind and its
//! step reported as timed out); nothing is sent but the greeting, EHLO and STARTTLS, never a
//! token; certificate checking is the same WebPKI verification the real checks use, only
//! observed (the chain is recorded to explain a refusal), never relaxed. A plain-http identity
//! provider is accepted only on this computer (the test fixture), and said so.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, StreamOwned};
use serde::Serialize;
use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::diagnose::preflight::{self as words, CertificateFacts, CertificateVerdict, Place};
use crate::mail::{CertificateProblem, TransportError, TransportKind};
use crate::profile::{Profile, ServerEndpoint, is_loopback_host};
use crate::provider::Security;
use crate::trust::Trust;

/// How long past the deadline the run waits for a thread to report its own timeout.
const GRACE: Duration = Duration::from_millis(300);
/// Longest reply line accepted from a server; a longer one is not a mail reply.
const MAX_LINE: usize = 1024;
/// Most lines accepted in one SMTP reply, or before the answer to the IMAP STARTTLS.
const MAX_LINES: usize = 100;

/// The servers a setup depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Host of the authorize URL (the browser goes there).
    SignIn,
    /// Host of the token URL (mailgrant and the service go there).
    Token,
    Smtp,
    Imap,
}

impl Target {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Target::SignIn => "Sign-in page",
            Target::Token => "Token endpoint",
            Target::Smtp => "SMTP server",
            Target::Imap => "IMAP server",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Target::SignIn => "sign-in page",
            Target::Token => "token endpoint",
            Target::Smtp => "SMTP server",
            Target::Imap => "IMAP server",
        }
    }
}

/// How a server is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// https: TLS from the first byte.
    Https,
    /// http (accepted only on this computer).
    PlainHttp,
    /// Mail over TLS from the first byte (465, 993).
    Tls,
    /// SMTP greeting, EHLO, STARTTLS, then TLS (587).
    SmtpStartTls,
    /// IMAP greeting, STARTTLS, then TLS (143).
    ImapStartTls,
}

/// One server to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetSpec {
    pub target: Target,
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl TargetSpec {
    /// The four servers of a profile: sign-in host, token host, SMTP, IMAP.
    pub fn for_profile(profile: &Profile) -> Vec<TargetSpec> {
        vec![
            TargetSpec::from_url(Target::SignIn, profile.authorize_url.url()),
            TargetSpec::from_url(Target::Token, profile.token_url.url()),
            TargetSpec::from_endpoint(Target::Smtp, &profile.smtp),
            TargetSpec::from_endpoint(Target::Imap, &profile.imap),
        ]
    }

    fn from_url(target: Target, url: &url::Url) -> TargetSpec {
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let transport =
            if url.scheme() == "http" { Transport::PlainHttp } else { Transport::Https };
        let port = url.port_or_known_default().unwrap_or(443);
        TargetSpec { target, host, port, transport }
    }

    /// A mail server endpoint; `target` says whether SMTP or IMAP speaks STARTTLS.
    pub fn from_endpoint(target: Target, endpoint: &ServerEndpoint) -> TargetSpec {
        let transport = match (endpoint.security, target) {
            (Security::Tls, _) => Transport::Tls,
            (Security::StartTls, Target::Imap) => Transport::ImapStartTls,
            (Security::StartTls, _) => Transport::SmtpStartTls,
        };
        TargetSpec { target, host: endpoint.host.clone(), port: endpoint.port, transport }
    }

    fn place(&self) -> Place<'_> {
        Place { role: self.target.role(), host: &self.host, port: self.port }
    }

    fn steps(&self) -> Vec<Step> {
        match self.transport {
            Transport::SmtpStartTls | Transport::ImapStartTls => {
                vec![Step::Dns, Step::Connect, Step::StartTls, Step::Tls]
            }
            _ => vec![Step::Dns, Step::Connect, Step::Tls],
        }
    }
}

/// One step of a server's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Dns,
    Connect,
    /// Greeting, EHLO (SMTP) and STARTTLS.
    StartTls,
    Tls,
}

impl Step {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Step::Dns => "DNS lookup",
            Step::Connect => "TCP connect",
            Step::StartTls => "greeting and STARTTLS",
            Step::Tls => "TLS handshake",
        }
    }
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// Not run because an earlier step failed.
    Skipped,
    /// Nothing to check (TLS of a plain-http server on this computer).
    NotApplicable,
}

/// One step's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub status: Status,
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// What was seen ("TLS 1.3; subject CN=…"), or why the step did not run.
    pub summary: String,
    /// Present when the step failed.
    pub diagnosis: Option<Diagnosis>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything found about one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetResult {
    #[serde(flatten)]
    pub spec: TargetSpec,
    pub label: &'static str,
    pub steps: Vec<StepResult>,
    /// Negotiated protocol ("TLS 1.3") after a successful handshake.
    pub tls_version: Option<String>,
    /// The chain the server presented, leaf first (also after a refused handshake).
    pub certificates: Vec<CertificateFacts>,
}

impl TargetResult {
    /// True when no step failed.
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.status != Status::Failed)
    }
}

/// The result of one pre-flight run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    pub timeout_secs: u64,
    pub targets: Vec<TargetResult>,
}

impl PreflightReport {
    /// True when every step of every server passed (or had nothing to check).
    pub fn all_passed(&self) -> bool {
        !self.targets.is_empty() && self.targets.iter().all(TargetResult::passed)
    }

    /// The result for one server.
    pub fn get(&self, target: Target) -> Option<&TargetResult> {
        self.targets.iter().find(|t| t.spec.target == target)
    }

    /// Every failed step's diagnosis with its server.
    pub fn diagnoses(&self) -> impl Iterator<Item = (Target, &Diagnosis)> {
        self.targets.iter().flat_map(|t| {
            t.steps.iter().filter_map(move |s| s.diagnosis.as_ref().map(|d| (t.spec.target, d)))
        })
    }

    /// Human-readable rows, one server after the other, diagnoses indented under their step.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for target in &self.targets {
            let scheme = match target.spec.transport {
                Transport::Https => "https",
                Transport::PlainHttp => "http",
                Transport::Tls => "TLS",
                Transport::SmtpStartTls | Transport::ImapStartTls => "STARTTLS",
            };
            let spec = &target.spec;
            out.push_str(&format!("{} {}:{} ({scheme})\n", target.label, spec.host, spec.port));
            for step in &target.steps {
                let mark = match step.status {
                    Status::Passed => "PASS",
                    Status::Failed => "FAIL",
                    Status::Skipped => "SKIP",
                    Status::NotApplicable => "N/A ",
                };
                let ms = step.duration.as_millis();
                out.push_str(&format!(
                    "  {mark} {} ({ms} ms) {}\n",
                    step.step.label(),
                    step.summary
                ));
                if let Some(d) = &step.diagnosis {
                    for line in d.to_text().lines() {
                        out.push_str(&format!("       {line}\n"));
                    }
                }
            }
        }
        let verdict = if self.all_passed() {
            "All pre-flight checks passed"
        } else {
            "Some pre-flight checks failed"
        };
        out.push_str(&format!("{verdict} ({} ms)\n", self.duration.as_millis()));
        out
    }
}

/// Runs the pre-flight checks of `profile`'s four servers, concurrently, within its timeout.
/// Blocking: call on a worker thread.
pub fn run(profile: &Profile, trust: &Trust) -> PreflightReport {
    run_targets(&TargetSpec::for_profile(profile), trust, profile.timeout)
}

/// Runs the pre-flight checks of the given servers concurrently; returns by `timeout` (plus a
/// moment for the threads to report their own timeouts).
pub fn run_targets(specs: &[TargetSpec], trust: &Trust, timeout: Duration) -> PreflightReport {
    let started_at = OffsetDateTime::now_utc();
    let start = Instant::now();
    let deadline = start + timeout;
    let (done_tx, done_rx) = mpsc::channel::<usize>();

    let probes: Vec<Arc<Mutex<Probe>>> =
        specs.iter().map(|spec| Arc::new(Mutex::new(Probe::new(spec)))).collect();
    let mut running = 0;
    for (index, spec) in specs.iter().enumerate() {
        let shared = Arc::clone(&probes[index]);
        let (spec, trust, done) = (spec.clone(), trust.clone(), done_tx.clone());
        let name = format!("preflight-{:?}", spec.target).to_lowercase();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            check_target(&spec, &trust, deadline, timeout, &shared);
            let _ = done.send(index);
        });
        match spawned {
            Ok(_) => running += 1,
            Err(error) => lock(&probes[index]).fail_here(Step::Dns, |spec| {
                words::network(spec.place(), "start", &format!("cannot start a thread: {error}"))
            }),
        }
    }
    drop(done_tx);

    while running > 0 {
        let left = (deadline + GRACE).saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(_) => running -= 1,
            Err(_) => break,
        }
    }

    let mut probes: Vec<Probe> = probes.iter().map(|p| lock(p).clone()).collect();
    for probe in &mut probes {
        probe.cut_at_deadline(timeout);
    }
    explain_certificates(&mut probes);

    let targets: Vec<TargetResult> = probes.into_iter().map(|p| p.result).collect();
    for target in &targets {
        let failed = target.steps.iter().find_map(|s| s.diagnosis.as_ref().map(|d| (s.step, d)));
        match failed {
            Some((step, d)) => tracing::error!(
                server = ?target.spec.target, host = %target.spec.host, step = ?step,
                diagnosis = d.id, "pre-flight check failed"
            ),
            None => tracing::debug!(
                server = ?target.spec.target, host = %target.spec.host, "pre-flight check passed"
            ),
        }
    }
    PreflightReport {
        started_at,
        duration: start.elapsed(),
        timeout_secs: timeout.as_secs(),
        targets,
    }
}

fn lock(probe: &Mutex<Probe>) -> std::sync::MutexGuard<'_, Probe> {
    probe.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A refused certificate, kept raw until every server is in: whether the clock is to blame
/// can depend on the other servers' certificates.
#[derive(Clone, Debug)]
struct CertificateFailure {
    problem: CertificateProblem,
    chain: Vec<CertificateFacts>,
    now: OffsetDateTime,
    detail: String,
}

/// One server's check as it progresses; shared between its thread and the run.
#[derive(Clone, Debug)]
struct Probe {
    result: TargetResult,
    planned: Vec<Step>,
    running: Option<(Step, Instant)>,
    certificate_failure: Option<CertificateFailure>,
    finished: bool,
}

impl Probe {
    fn new(spec: &TargetSpec) -> Probe {
        Probe {
            result: TargetResult {
                spec: spec.clone(),
                label: spec.target.label(),
                steps: Vec::new(),
                tls_version: None,
                certificates: Vec::new(),
            },
            planned: spec.steps(),
            running: None,
            certificate_failure: None,
            finished: false,
        }
    }

    fn record(&mut self, step: Step, status: Status, duration: Duration, summary: String) {
        self.running = None;
        self.result.steps.push(StepResult { step, status, duration, summary, diagnosis: None });
    }

    fn fail(&mut self, step: Step, duration: Duration, diagnosis: Diagnosis) {
        self.running = None;
        let summary = diagnosis.summary.clone();
        let failed = StepResult {
            step,
            status: Status::Failed,
            duration,
            summary,
            diagnosis: Some(diagnosis),
        };
        self.result.steps.push(failed);
        self.skip_rest();
    }

    fn fail_here(&mut self, step: Step, diagnosis: impl FnOnce(&TargetSpec) -> Diagnosis) {
        let d = diagnosis(&self.result.spec);
        self.fail(step, Duration::ZERO, d);
    }

    fn skip_rest(&mut self) {
        let done: Vec<Step> = self.result.steps.iter().map(|s| s.step).collect();
        for step in self.planned.clone() {
            if !done.contains(&step) {
                let why = "not run: an earlier step failed".to_owned();
                self.record(step, Status::Skipped, Duration::ZERO, why);
            }
        }
        self.finished = true;
    }

    /// A thread that did not finish in time: its running step timed out.
    fn cut_at_deadline(&mut self, timeout: Duration) {
        if self.finished {
            return;
        }
        let (step, since) = self.running.unwrap_or((Step::Dns, Instant::now()));
        let spec = self.result.spec.clone();
        let d = words::timeout(spec.place(), step.label(), timeout);
        self.fail(step, since.elapsed(), d);
    }
}

/// The thread body: runs the steps of one server, recording each into `shared`.
fn check_target(
    spec: &TargetSpec,
    trust: &Trust,
    deadline: Instant,
    timeout: Duration,
    shared: &Mutex<Probe>,
) {
    let place = spec.place();
    let begin = |step: Step| {
        lock(shared).running = Some((step, Instant::now()));
        Instant::now()
    };
    let fail =
        |step: Step, since: Instant, d: Diagnosis| lock(shared).fail(step, since.elapsed(), d);
    let pass = |step: Step, since: Instant, summary: String| {
        lock(shared).record(step, Status::Passed, since.elapsed(), summary);
    };

    let since = begin(Step::Dns);
    let addrs = match resolve(&spec.host, spec.port) {
        Ok(addrs) => addrs,
        Err(detail) => return fail(Step::Dns, since, words::dns(place, &detail)),
    };
    let shown: Vec<String> = addrs.iter().take(4).map(|a| a.ip().to_string()).collect();
    pass(Step::Dns, since, shown.join(", "));

    let since = begin(Step::Connect);
    let mut tcp = match connect(&addrs, deadline) {
        Ok(tcp) => tcp,
        Err(e) => return fail(Step::Connect, since, transport(place, Step::Connect, &e, timeout)),
    };
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    pass(Step::Connect, since, format!("connected to {peer}"));

    if matches!(spec.transport, Transport::SmtpStartTls | Transport::ImapStartTls) {
        let since = begin(Step::StartTls);
        let exchange = match spec.transport {
            Transport::SmtpStartTls => smtp_starttls(&mut tcp, deadline),
            _ => imap_starttls(&mut tcp, deadline),
        };
        match exchange {
            Ok(summary) => pass(Step::StartTls, since, summary),
            Err(Exchange::Transport(e)) => {
                return fail(Step::StartTls, since, transport(place, Step::StartTls, &e, timeout));
            }
            Err(Exchange::NoStartTls(reply)) => {
                return fail(Step::StartTls, since, words::starttls_unavailable(place, &reply));
            }
            Err(Exchange::Unexpected(what, reply)) => {
                return fail(Step::StartTls, since, words::not_mail_server(place, what, &reply));
            }
        }
    }

    let since = begin(Step::Tls);
    if spec.transport == Transport::PlainHttp {
        if is_loopback_host(&spec.host) {
            let note = "plain http on this machine, no TLS".to_owned();
            lock(shared).record(Step::Tls, Status::NotApplicable, since.elapsed(), note);
            lock(shared).finished = true;
            return;
        }
        return fail(Step::Tls, since, words::plain_http(place));
    }
    match tls_handshake(tcp, &spec.host, trust, deadline) {
        Ok(tls) => {
            let summary = match tls.chain.first() {
                Some(leaf) => format!(
                    "{} ({}); subject {}; issuer {}; valid until {}",
                    tls.version,
                    tls.cipher,
                    leaf.subject,
                    leaf.issuer,
                    words::day(leaf.not_after)
                ),
                None => format!("{} ({})", tls.version, tls.cipher),
            };
            let mut probe = lock(shared);
            probe.result.tls_version = Some(tls.version);
            probe.result.certificates = tls.chain;
            probe.record(Step::Tls, Status::Passed, since.elapsed(), summary);
            probe.finished = true;
        }
        Err(failure) => {
            let d = match failure.error.kind {
                TransportKind::Tls(Some(problem)) => {
                    let mut probe = lock(shared);
                    probe.result.certificates = failure.chain.clone();
                    probe.certificate_failure = Some(CertificateFailure {
                        problem,
                        chain: failure.chain,
                        now: failure.now,
                        detail: failure.error.detail.clone(),
                    });
                    // Replaced by `explain_certificates` once every server is in.
                    words::handshake(place, &failure.error.detail)
                }
                _ => transport(place, Step::Tls, &failure.error, timeout),
            };
            fail(Step::Tls, since, d);
        }
    }
}

/// Operator text for a network failure that is not about a certificate.
fn transport(place: Place<'_>, step: Step, e: &TransportError, timeout: Duration) -> Diagnosis {
    match e.kind {
        TransportKind::Dns => words::dns(place, &e.detail),
        TransportKind::Refused => words::refused(place, &e.detail),
        TransportKind::Timeout => words::timeout(place, step.label(), timeout),
        TransportKind::Closed => words::closed(place, step.label(), &e.detail),
        TransportKind::Tls(_) => words::handshake(place, &e.detail),
        TransportKind::Oversized => words::reply_too_long(place, step.label(), &e.detail),
        TransportKind::Other => words::network(place, step.label(), &e.detail),
    }
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| e.to_string())?.collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok(addrs)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Connects to the first address that answers before the deadline.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, TransportError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline)) {
            Ok(stream) => {
                let limit = Some(remaining(deadline));
                stream
                    .set_read_timeout(limit)
                    .and_then(|()| stream.set_write_timeout(limit))
                    .map_err(|e| TransportError::from_io(&e))?;
                return Ok(stream);
            }
            Err(e) => last = Some(TransportError::from_io(&e)),
        }
    }
    Err(last.unwrap_or_else(TransportError::closed))
}

/// Why a STARTTLS exchange did not get to TLS.
enum Exchange {
    Transport(TransportError),
    /// The server does not offer STARTTLS or refused it; the reply.
    NoStartTls(String),
    /// Not the answer a mail server gives at this point: what was expected, the reply.
    Unexpected(&'static str, String),
}

impl From<TransportError> for Exchange {
    fn from(e: TransportError) -> Exchange {
        Exchange::Transport(e)
    }
}

/// Reads one line (without CRLF), byte by byte so nothing of the TLS handshake is consumed.
/// Ends by `deadline` however slowly the server trickles; a line longer than [`MAX_LINE`] is
/// not a mail reply.
fn read_line(tcp: &mut TcpStream, deadline: Instant) -> Result<String, TransportError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if Instant::now() >= deadline {
            return Err(TransportError {
                kind: TransportKind::Timeout,
                endpoint: None,
                detail: format!("the line was still incomplete after {} bytes", line.len()),
                peer: None,
            });
        }
        if line.len() >= MAX_LINE {
            return Err(TransportError::oversized(&format!("a line longer than {MAX_LINE} bytes")));
        }
        tcp.set_read_timeout(Some(remaining(deadline))).map_err(|e| TransportError::from_io(&e))?;
        match tcp.read(&mut byte) {
            Ok(0) => return Err(TransportError::closed()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(TransportError::from_io(&e)),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn too_many_lines() -> Exchange {
    let what = format!("a reply of more than {MAX_LINES} lines");
    Exchange::Transport(TransportError::oversized(&what))
}

fn send(tcp: &mut TcpStream, line: &str) -> Result<(), TransportError> {
    tcp.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| TransportError::from_io(&e))
}

/// An SMTP reply: its code and every line.
fn smtp_reply(tcp: &mut TcpStream, deadline: Instant) -> Result<(u16, Vec<String>), Exchange> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(tcp, deadline)?;
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        match code {
            Some(code) if !more => return Ok((code, lines)),
            Some(_) if lines.len() >= MAX_LINES => return Err(too_many_lines()),
            Some(_) => {}
            None => return Err(Exchange::Unexpected("an SMTP reply", lines.join(" | "))),
        }
    }
}

fn smtp_starttls(tcp: &mut TcpStream, deadline: Instant) -> Result<String, Exchange> {
    let (code, greeting) = smtp_reply(tcp, deadline)?;
    if code != 220 {
        return Err(Exchange::Unexpected("greeting", greeting.join(" | ")));
    }
    let name = match tcp.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        Err(_) => "[127.0.0.1]".to_owned(),
    };
    send(tcp, &format!("EHLO {name}"))?;
    let (code, ehlo) = smtp_reply(tcp, deadline)?;
    if code != 250 {
        return Err(Exchange::Unexpected("EHLO", ehlo.join(" | ")));
    }
    let offers =
        ehlo.iter().any(|l| l.get(4..).is_some_and(|c| c.eq_ignore_ascii_case("STARTTLS")));
    if !offers {
        return Err(Exchange::NoStartTls(ehlo.join(" | ")));
    }
    send(tcp, "STARTTLS")?;
    let (code, reply) = smtp_reply(tcp, deadline)?;
    if code != 220 {
        return Err(Exchange::NoStartTls(reply.join(" | ")));
    }
    Ok(format!("greeting {code}, EHLO offers STARTTLS, STARTTLS accepted"))
}

fn imap_starttls(tcp: &mut TcpStream, deadline: Instant) -> Result<String, Exchange> {
    let greeting = read_line(tcp, deadline)?;
    if !greeting.to_ascii_uppercase().starts_with("* OK") {
        return Err(Exchange::Unexpected("greeting", greeting));
    }
    send(tcp, "p1 STARTTLS")?;
    for _ in 0..MAX_LINES {
        let line = read_line(tcp, deadline)?;
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("P1 OK") {
            return Ok("greeting * OK, STARTTLS accepted".to_owned());
        }
        if upper.starts_with("P1 ") {
            return Err(Exchange::NoStartTls(line));
        }
    }
    Err(too_many_lines())
}

struct TlsSuccess {
    version: String,
    cipher: String,
    chain: Vec<CertificateFacts>,
}

struct TlsFailure {
    error: TransportError,
    chain: Vec<CertificateFacts>,
    now: OffsetDateTime,
}

/// Runs the TLS handshake to completion, recording the presented chain either way.
fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    trust: &Trust,
    deadline: Instant,
) -> Result<TlsSuccess, TlsFailure> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let failure = |error: TransportError, seen: &Mutex<Seen>| {
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        TlsFailure { error, chain: seen.chain.clone(), now: seen.now.unwrap_or_else(now_utc) }
    };
    let tls_error = |detail: String| TransportError {
        kind: TransportKind::Tls(None),
        endpoint: None,
        detail,
        peer: None,
    };

    let config = match recording_config(trust, Arc::clone(&seen)) {
        Ok(config) => config,
        Err(detail) => return Err(failure(tls_error(detail), &seen)),
    };
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(name) => name,
        Err(e) => return Err(failure(tls_error(format!("not a TLS server name: {e}")), &seen)),
    };
    let connection = match ClientConnection::new(config, name) {
        Ok(connection) => connection,
        Err(e) => return Err(failure(tls_error(e.to_string()), &seen)),
    };

    let limit = Some(remaining(deadline));
    let timeouts = tcp.set_read_timeout(limit).and_then(|()| tcp.set_write_timeout(limit));
    if let Err(e) = timeouts {
        return Err(failure(TransportError::from_io(&e), &seen));
    }
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            return Err(failure(TransportError::from_io(&e), &seen));
        }
    }

    let version = match stream.conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_owned(),
    };
    let cipher = stream
        .conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let chain = stream
        .conn
        .peer_certificates()
        .map(|certs| certs.iter().filter_map(certificate_facts).collect())
        .unwrap_or_default();
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
    Ok(TlsSuccess { version, cipher, chain })
}

fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// What the verifier was shown, and at what time it judged it.
#[derive(Default)]
struct Seen {
    chain: Vec<CertificateFacts>,
    now: Option<OffsetDateTime>,
}

fn recording_config(
    trust: &Trust,
    seen: Arc<Mutex<Seen>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let remember_chain =
        move |end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now| {
            let chain: Vec<CertificateFacts> = std::iter::once(end_entity)
                .chain(intermediates)
                .filter_map(certificate_facts)
                .collect();
            let at = i64::try_from(UnixTime::as_secs(&now))
                .ok()
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.chain = chain;
            seen.now = at;
        };
    trust.observed_client_config(remember_chain).map_err(|e| e.to_string())
}

/// Subject, issuer, names and validity of a DER certificate; `None` when it does not parse.
pub fn certificate_facts(der: &CertificateDer<'_>) -> Option<CertificateFacts> {
    use x509_parser::extensions::GeneralName;

    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Some(CertificateFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// Which certificate of `chain` (leaf first) a refusal is about, and whether it is the leaf.
fn failing_certificate(
    problem: CertificateProblem,
    chain: &[CertificateFacts],
    now: OffsetDateTime,
) -> Option<(usize, &CertificateFacts)> {
    let found = match problem {
        CertificateProblem::Expired => chain.iter().position(|c| c.not_after < now),
        CertificateProblem::NotYetValid => chain.iter().position(|c| c.not_before > now),
        // The top of the presented chain names the authority that is missing.
        CertificateProblem::UnknownIssuer => chain.len().checked_sub(1),
        _ => None,
    };
    let index = found.unwrap_or(0);
    chain.get(index).map(|c| (index, c))
}

/// Sorts a refused certificate into expired / unknown issuer / wrong clock (BR-22).
///
/// The clock is blamed when a certificate is not valid *yet*, or when the leaf expired and the
/// rest of the evidence agrees: every certificate of a chain of two or more expired, or
/// another server's (different) leaf certificate expired too. An expired intermediate under
/// a valid leaf is a stale chain, not a clock: leaves expire first when the clock runs ahead.
pub fn certificate_verdict(
    problem: CertificateProblem,
    chain: &[CertificateFacts],
    now: OffsetDateTime,
    other_expired_leaves: usize,
) -> CertificateVerdict {
    match problem {
        CertificateProblem::UnknownIssuer => CertificateVerdict::UnknownIssuer,
        CertificateProblem::HostnameMismatch => CertificateVerdict::HostnameMismatch,
        CertificateProblem::NotYetValid => CertificateVerdict::ClockWrong,
        CertificateProblem::Expired => {
            let leaf_expired = chain.first().is_some_and(|c| c.not_after < now);
            let all_expired = chain.len() >= 2 && chain.iter().all(|c| c.not_after < now);
            if leaf_expired && (all_expired || other_expired_leaves > 0) {
                CertificateVerdict::ClockWrong
            } else {
                CertificateVerdict::Expired
            }
        }
        CertificateProblem::Revoked | CertificateProblem::Other => CertificateVerdict::Other,
    }
}

/// Replaces the placeholder diagnosis of every refused certificate, now that all servers'
/// chains are known.
fn explain_certificates(probes: &mut [Probe]) {
    let expired_leaves: Vec<(String, OffsetDateTime)> = probes
        .iter()
        .filter_map(|p| p.certificate_failure.as_ref())
        .filter(|f| f.problem == CertificateProblem::Expired)
        .filter_map(|f| f.chain.first().filter(|leaf| leaf.not_after < f.now))
        .map(|leaf| (leaf.subject.clone(), leaf.not_after))
        .collect();

    for probe in probes.iter_mut() {
        let Some(failure) = probe.certificate_failure.clone() else { continue };
        let own = failure.chain.first().map(|l| (l.subject.clone(), l.not_after));
        let mut others: Vec<&(String, OffsetDateTime)> =
            expired_leaves.iter().filter(|l| Some(*l) != own.as_ref()).collect();
        others.dedup();
        let verdict =
            certificate_verdict(failure.problem, &failure.chain, failure.now, others.len());
        let failing = failing_certificate(failure.problem, &failure.chain, failure.now);
        let spec = probe.result.spec.clone();
        let d = words::certificate(
            spec.place(),
            verdict,
            failing.map(|(_, c)| c),
            failing.is_none_or(|(i, _)| i == 0),
            failure.now,
            &failure.detail,
        );
        if let Some(step) = probe.result.steps.iter_mut().find(|s| s.step == Step::Tls) {
            step.summary = d.summary.clone();
            step.diagnosis = Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn cert(subject: &str, from: OffsetDateTime, until: OffsetDateTime) -> CertificateFacts {
        CertificateFacts {
            subject: format!("CN={subject}"),
            issuer: "CN=Test CA".into(),
            names: vec![subject.into()],
            not_before: from,
            not_after: until,
        }
    }

    #[test]
    fn an_expired_intermediate_under_a_valid_leaf_is_expired_not_the_clock() {
        let now = datetime!(2025-06-01 0:00 UTC);
        let chain = [
            cert(
                "login.example.com",
                datetime!(2025-01-01 0:00 UTC),
                datetime!(2026-01-01 0:00 UTC),
            ),
            cert(
                "Old Intermediate",
                datetime!(2015-01-01 0:00 UTC),
                datetime!(2024-01-01 0:00 UTC),
            ),
        ];
        let verdict = certificate_verdict(CertificateProblem::Expired, &chain, now, 0);
        assert_eq!(verdict, CertificateVerdict::Expired);
        let (index, failing) =
            failing_certificate(CertificateProblem::Expired, &chain, now).expect("found");
        assert_eq!((index, failing.subject.as_str()), (1, "CN=Old Intermediate"));
    }

    #[test]
    fn a_clock_two_years_ahead_is_blamed_when_the_evidence_agrees() {
        let real = datetime!(2025-06-01 0:00 UTC);
        let ahead = real + time::Duration::days(730);
        let chain = [
            cert(
                "login.example.com",
                real - time::Duration::days(30),
                real + time::Duration::days(60),
            ),
            cert("Issuing CA", real - time::Duration::days(400), real + time::Duration::days(300)),
        ];
        let alone = certificate_verdict(CertificateProblem::Expired, &chain, ahead, 0);
        assert_eq!(alone, CertificateVerdict::ClockWrong, "every certificate expired");
        let leaf_only = &chain[..1];
        let single = certificate_verdict(CertificateProblem::Expired, leaf_only, ahead, 0);
        assert_eq!(single, CertificateVerdict::Expired, "one server, one certificate: no proof");
        let many = certificate_verdict(CertificateProblem::Expired, leaf_only, ahead, 1);
        assert_eq!(many, CertificateVerdict::ClockWrong, "another server's leaf expired too");
        let behind = certificate_verdict(CertificateProblem::NotYetValid, &chain, real, 0);
        assert_eq!(behind, CertificateVerdict::ClockWrong);
    }
}
