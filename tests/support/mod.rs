//! Test harness for integration tests on real parts: the local identity provider
//! (`tests/fixtures/fake_idp.py`), Dovecot and Postfix started by `tests/fixtures/mailfixture.py`
//! on free loopback ports, and headless Chromium as `$BROWSER`
//! (`tests/fixtures/headless-browser.sh`).
//!
//! Use from a test file with `mod support;`. Each [`MailFixture`] owns a private temporary
//! directory (configs, certificates, logs, Maildirs) and stops its servers when dropped.
//! Everything listens on 127.0.0.1 only. A missing tool is a panic that names the package to
//! install, never a skipped test.
#![allow(dead_code)]

pub mod loopback;
pub mod site;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the fixture scripts live.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// The running servers of one test: fake IdP, Dovecot (IMAP), Postfix (SMTP).
pub struct MailFixture {
    /// Private directory: `etc/`, `tls/`, `log/`, `mail/<domain>/<user>/Maildir`.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`; endpoints also answer under `/<tenant>/oauth2/v2.0/...`.
    pub idp_url: String,
    /// IMAP with STARTTLS (Dovecot; note: Dovecot treats loopback as secure).
    pub imap_port: u16,
    /// IMAP over implicit TLS (like outlook.office365.com:993).
    pub imaps_port: u16,
    /// SMTP submission, STARTTLS required before AUTH (like smtp.office365.com:587).
    pub smtp_port: u16,
    /// SMTP over implicit TLS (465-style).
    pub smtps_port: u16,
    /// PEM of the CA that signed the servers' certificate (SAN localhost, 127.0.0.1, ::1).
    pub ca_file: PathBuf,
    /// The registered public client, `00000000-0000-0000-0000-000000000000`.
    pub client_id: String,
    /// `alarms@example.com`.
    pub mailbox: String,
    stopped: bool,
}

impl MailFixture {
    /// Starts all servers (about 2-3 s). Panics with the package to install when a tool is
    /// missing, or with the fixture's error and log directory otherwise.
    pub fn start() -> MailFixture {
        let dir = tempfile::Builder::new()
            .prefix("mailgrant-fixture-")
            .tempdir()
            .expect("create a temporary directory for the mail fixture");
        let script = fixtures_dir().join("mailfixture.py");
        let output = Command::new("python3")
            .arg(&script)
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("python3 is missing: apt-get install python3 (or run .ci/install-deps.sh)")
            }
            Err(e) => panic!("cannot run {}: {e}", script.display()),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the mail fixture did not start ({}):\n{stderr}\nlogs: {}/log",
            output.status,
            dir.path().display()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let info: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("mailfixture printed no JSON ({e}): {stdout}"));
        let port = |key: &str| -> u16 {
            let value = info[key].as_u64().unwrap_or_else(|| panic!("no {key} in {info}"));
            u16::try_from(value).unwrap_or_else(|_| panic!("bad {key} in {info}"))
        };
        let text = |key: &str| -> String {
            info[key].as_str().unwrap_or_else(|| panic!("no {key} in {info}")).to_owned()
        };
        MailFixture {
            idp_url: text("idp_url"),
            imap_port: port("imap_port"),
            imaps_port: port("imaps_port"),
            smtp_port: port("smtp_port"),
            smtps_port: port("smtps_port"),
            ca_file: PathBuf::from(text("ca_file")),
            client_id: text("client_id"),
            mailbox: text("mailbox"),
            dir,
            stopped: false,
        }
    }

    /// Authorize endpoint in Entra's shape, for a Custom-provider profile.
    pub fn authorize_url(&self) -> String {
        format!("{}/organizations/oauth2/v2.0/authorize", self.idp_url)
    }

    /// Token endpoint in Entra's shape.
    pub fn token_url(&self) -> String {
        format!("{}/organizations/oauth2/v2.0/token", self.idp_url)
    }

    /// Merges `json` into the IdP's settings (see fake_idp.py: `token_ttl_secs`,
    /// `strict_rotation`, `omit_refresh_token`, `refresh_token_value_override`,
    /// `next_token_error`, `next_authorize_error`, `signed_in_user_override`,
    /// `granted_scope_override`, `token_delay_ms`, `clients`, `"clear": [...]`,
    /// `"reset": true`). Returns the settings now in force.
    pub fn admin_config(&self, json: &str) -> serde_json::Value {
        self.admin_post("/admin/config", json)
    }

    /// An access token for `user`, valid for `ttl_secs`, that Dovecot and Postfix accept.
    pub fn mint(&self, user: &str, ttl_secs: u64) -> String {
        let body = serde_json::json!({ "user": user, "ttl": ttl_secs }).to_string();
        let answer = self.admin_post("/admin/mint", &body);
        answer["access_token"].as_str().expect("mint answered without access_token").to_owned()
    }

    /// Counters: `token_requests` by grant type, `refreshes`, `rejected_reuses`,
    /// `codes_redeemed`, `authorize_requests`, `introspections_active`, ... .
    pub fn stats(&self) -> serde_json::Value {
        self.admin_get("/admin/stats")
    }

    /// The query of the last `/authorize` request, as JSON (`{}` when none came).
    pub fn last_authorize(&self) -> serde_json::Value {
        self.admin_get("/admin/last-authorize")
    }

    /// Revokes every access and refresh token (IMAP and SMTP then refuse them).
    pub fn revoke_all(&self) -> serde_json::Value {
        self.admin_post("/admin/revoke", "{}")
    }

    /// Makes every issued access token expired (introspection then says inactive).
    pub fn expire_access_tokens(&self) -> serde_json::Value {
        self.admin_post("/admin/expire-access-tokens", "{}")
    }

    /// Makes every issued refresh token expired (refresh then fails with AADSTS700082).
    pub fn expire_refresh_tokens(&self) -> serde_json::Value {
        self.admin_post("/admin/expire-refresh-tokens", "{}")
    }

    /// POSTs JSON to an admin path of the IdP and returns the JSON answer (panics unless 200).
    pub fn admin_post(&self, path: &str, json: &str) -> serde_json::Value {
        let (status, body) = http_request(&self.idp_url, "POST", path, "application/json", json);
        assert_eq!(status, 200, "IdP {path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("IdP {path}: bad JSON ({e})"))
    }

    /// GETs an admin path of the IdP and returns the JSON answer (panics unless 200).
    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_request(&self.idp_url, "GET", path, "", "");
        assert_eq!(status, 200, "IdP {path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("IdP {path}: bad JSON ({e})"))
    }

    /// The IdP's request log (method, path, status, grant type; never token values).
    pub fn idp_log(&self) -> String {
        self.log_file("idp.log")
    }

    /// Dovecot's log (logins with method and TLS, auth failure reasons, LMTP deliveries).
    pub fn dovecot_log(&self) -> String {
        self.log_file("dovecot.log")
    }

    /// Postfix's log (SMTP sessions, queue, LMTP delivery).
    pub fn postfix_log(&self) -> String {
        self.log_file("postfix.log")
    }

    /// A file under the fixture's `log/` directory ("" when it does not exist yet).
    pub fn log_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default()
    }

    /// Full text of every message delivered to `user`'s Maildir (new and cur), oldest first
    /// by file name. User names are lowercased like Dovecot does.
    pub fn maildir_messages(&self, user: &str) -> Vec<String> {
        let user = user.to_lowercase();
        let (local, domain) = user.split_once('@').unwrap_or((user.as_str(), ""));
        let maildir = self.dir.path().join("mail").join(domain).join(local).join("Maildir");
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
                files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }

    /// The value for `$BROWSER` (headless Chromium that appends each landing page's DOM to a
    /// log) and the path of that DOM log. The `webbrowser` crate replaces `%s` with the URL and
    /// runs the command in the background without waiting.
    pub fn browser_env(&self) -> (String, PathBuf) {
        let script = fixtures_dir().join("headless-browser.sh");
        let log = self.dir.path().join("log").join("browser-dom.log");
        let value = format!("{} --dom-log {} %s", script.display(), log.display());
        assert!(
            !script.display().to_string().contains([':', ' ', '\t'])
                && !log.display().to_string().contains([':', ' ', '\t']),
            "$BROWSER is split on ':' and whitespace; these paths cannot be used: {value}"
        );
        (value, log)
    }

    /// Stops the servers now (also done on drop) and waits until their ports are closed.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let output = Command::new("python3")
            .arg(fixtures_dir().join("mailfixture.py"))
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "mailfixture stop failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run mailfixture stop: {e}"),
        }
    }
}

impl Drop for MailFixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The logs hold no token values (checked by the fixture tests): show their tails.
            for name in ["idp.log", "dovecot.log", "postfix.log"] {
                let text = self.log_file(name);
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- last lines of {name} ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.stop();
    }
}

/// Minimal HTTP/1.1 client for the fixture's plain-http admin endpoints:
/// returns (status, body). `base` is `http://127.0.0.1:<port>`.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let authority = base.strip_prefix("http://").expect("fixture URLs are http://");
    let mut stream = TcpStream::connect(authority).expect("connect to the fake IdP");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("set timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send to the fake IdP");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read from the fake IdP");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer from the fake IdP: {head}"));
    (status, body.to_owned())
}
