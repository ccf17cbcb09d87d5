//! `mailgrant token` around the lock, through the real binary (field cases F4, F6, F12).
//!
//! - F4: a process holding the lock (`flock -x` on the lock file) does not stall a caller whose
//!   cached access token is still good (it reads without the lock), and a caller that must
//!   refresh gives up within the documented budget with a diagnosis naming the holder.
//! - F6: `Retry-After` of a 429 sets the wait before the retry, capped at 30 s; measured on a
//!   scripted token endpoint on 127.0.0.1.
//! - F12: in a config folder this user may not write to (a real unprivileged user, `nobody`,
//!   via `setpriv`, on a `chmod 500` folder), a good cached token is handed out; a needed
//!   refresh says the folder is not writable by that user; a dead grant is reported as such
//!   even though it cannot be recorded.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgrant::store::{ConfigPaths, StoreLock};
use support::MailFixture;
use support::site::{SiteConfig, login, mailgrant, output_text as text, secret_value};

/// Holds the lock on `lock` from another process (`flock -x lock cat`) until dropped.
struct LockHolder(Child);

impl LockHolder {
    fn hold(config: &Path) -> LockHolder {
        let paths = ConfigPaths::for_config(config);
        let child = Command::new("flock")
            .arg("-x")
            .arg(&paths.lock)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("flock (util-linux) runs");
        let started = Instant::now();
        while StoreLock::try_acquire(&paths).expect("lock file").is_some() {
            assert!(started.elapsed() < Duration::from_secs(5), "flock never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        LockHolder(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        // Closing cat's input ends cat, then flock, which releases the lock.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// A config whose access token is already inside the refresh margin (valid for 2 s).
fn signed_in_needing_refresh(fx: &MailFixture, site: &SiteConfig<'_>) -> PathBuf {
    let config = site.write(fx);
    fx.admin_config(r#"{"token_ttl_secs": 2}"#);
    login(fx, &config);
    config
}

#[test]
fn f4_a_held_lock_with_a_valid_cached_token_answers_at_once() {
    let fx = MailFixture::start();
    let config = SiteConfig::on(&fx).write(&fx);
    login(&fx, &config);
    let cached = secret_value(&config, "access_token");
    assert!(cached.len() > 100, "no cached access token after login");
    let requests = fx.stats()["token_requests"].clone();

    let _holder = LockHolder::hold(&config);
    let started = Instant::now();
    let output = mailgrant(&fx, &["token"], &config);
    let took = started.elapsed();

    assert!(output.status.success(), "{}", text(&output));
    assert!(took < Duration::from_secs(2), "token waited for the lock: {took:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), cached);
    assert_eq!(fx.stats()["token_requests"], requests, "a request was made");
    eprintln!("F4: held lock, valid cached token: answered in {:.2} s", took.as_secs_f64());
}

#[test]
fn f4_a_held_lock_with_an_expired_token_ends_within_the_budget_with_a_diagnosis() {
    let fx = MailFixture::start();
    // Budget: 4 requests × 1 s + 1 + 2 + 4 s backoff + 2 s file work = 13 s; the lock is
    // waited for until 12 s, leaving one request's timeout.
    let site = SiteConfig { timeout_secs: 1, ..SiteConfig::on(&fx) };
    let config = signed_in_needing_refresh(&fx, &site);
    std::thread::sleep(Duration::from_secs(3));
    let requests = fx.stats()["token_requests"].clone();

    let holder = LockHolder::hold(&config);
    let started = Instant::now();
    let output = mailgrant(&fx, &["token"], &config);
    let took = started.elapsed();

    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(took >= Duration::from_secs(12), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(14), "past the 13 s budget: {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lock = ConfigPaths::for_config(&config).lock;
    let expected = format!(
        "Another process (flock, pid {}) has held the lock {} for ",
        holder.pid(),
        lock.display()
    );
    let at = stderr.find(&expected).unwrap_or_else(|| panic!("{expected}\n{stderr}"));
    let rest = &stderr[at + expected.len()..];
    let waited: u64 = rest.split(' ').next().and_then(|n| n.parse().ok()).expect("seconds");
    assert!((11..=12).contains(&waited), "waited {waited} s: {stderr}");
    assert!(stderr.contains("never delete the lock file"), "{stderr}");
    assert!(output.stdout.is_empty(), "printed a token");
    assert_eq!(fx.stats()["token_requests"], requests, "refreshed without the lock");
    eprintln!("F4: held lock, expired token: exit 1 after {:.1} s", took.as_secs_f64());
}

/// A token endpoint on 127.0.0.1 that answers each request with the next scripted answer and
/// records when each request arrived.
struct ScriptedEndpoint {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl ScriptedEndpoint {
    fn start(answers: Vec<String>) -> ScriptedEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}/token", listener.local_addr().expect("address"));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&arrivals);
        std::thread::spawn(move || {
            for (answer, stream) in answers.into_iter().zip(listener.incoming()) {
                let Ok(stream) = stream else { return };
                read_request(&stream);
                recorded.lock().expect("arrivals").push(Instant::now());
                let mut stream = stream;
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        ScriptedEndpoint { url, arrivals }
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().expect("arrivals").clone()
    }
}

fn read_request(stream: &TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
}

fn answer_429(retry_after: &str) -> String {
    let body = r#"{"error":"slow_down","error_description":"Too many requests"}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn answer_200() -> String {
    let body = concat!(
        r#"{"access_token":"scripted-access-token-value-Zr81","token_type":"Bearer","#,
        r#""expires_in":3600,"refresh_token":"scripted-refresh-token-value-Yq72"}"#
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Signs in at the fixture, then points the config's token URL at `endpoint`.
fn config_on(fx: &MailFixture, endpoint: &ScriptedEndpoint) -> PathBuf {
    let config = signed_in_needing_refresh(fx, &SiteConfig::on(fx));
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(&fx.token_url(), &endpoint.url);
    assert!(text.contains(&endpoint.url), "token_url not replaced");
    std::fs::write(&config, text).expect("config written");
    std::thread::sleep(Duration::from_secs(3));
    config
}

/// Runs `token` against a 429 with `retry_after` then a 200; returns the gap between the two
/// requests as the server saw them.
fn gap_after_429(retry_after: &str) -> Duration {
    let fx = MailFixture::start();
    let endpoint = ScriptedEndpoint::start(vec![answer_429(retry_after), answer_200()]);
    let config = config_on(&fx, &endpoint);

    let output = mailgrant(&fx, &["token"], &config);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "scripted-access-token-value-Zr81");
    assert_eq!(secret_value(&config, "refresh_token"), "scripted-refresh-token-value-Yq72");

    let arrivals = endpoint.arrivals();
    assert_eq!(arrivals.len(), 2, "expected a 429 and one retry");
    arrivals[1] - arrivals[0]
}

#[test]
fn f6_retry_after_2_of_a_429_delays_the_retry_by_2_s() {
    let gap = gap_after_429("2");
    // The policy's own first backoff is 1 s: only the header explains 2 s.
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    eprintln!("F6: Retry-After: 2 → retry {:.2} s later", gap.as_secs_f64());
}

#[test]
fn f6_an_absurd_retry_after_is_capped_at_30_s() {
    let gap = gap_after_429("99999999999");
    assert!(gap >= Duration::from_secs(30), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(32), "retried after {gap:?}");
    eprintln!("F6: Retry-After: 99999999999 → retry {:.2} s later", gap.as_secs_f64());
}

const NOBODY: u32 = 65534;

/// Copies `config` and its secrets into a fresh folder owned by `nobody`, mode 0500 (no lock
/// file); returns the copy's config path. The extra CA file is copied along.
fn read_only_copy(fx: &MailFixture, config: &Path, root: &Path) -> PathBuf {
    use std::os::unix::fs::{PermissionsExt, chown};

    let folder = root.join("site");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod root");
    let ca = folder.join("ca.pem");
    std::fs::copy(&fx.ca_file, &ca).expect("ca copied");
    let text = std::fs::read_to_string(config).expect("config");
    let text = text.replace(&fx.ca_file.display().to_string(), &ca.display().to_string());
    let copy = folder.join("mailgrant.toml");
    std::fs::write(&copy, text).expect("config copied");
    let secrets = folder.join("mailgrant.secrets.toml");
    std::fs::copy(support::site::secrets_path(config), &secrets).expect("secrets copied");

    for path in [&folder, &ca, &copy, &secrets] {
        chown(path, Some(NOBODY), Some(NOBODY)).expect("chown nobody");
    }
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("0600");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o500)).expect("0500");
    copy
}

/// `mailgrant <args> --config config` as the unprivileged user `nobody`.
fn mailgrant_as_nobody(args: &[&str], config: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_mailgrant"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "mailgrant=debug")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs")
}

fn set_access_expiry(config: &Path, expires: &str) {
    let secrets = config.with_file_name("mailgrant.secrets.toml");
    let text = std::fs::read_to_string(&secrets).expect("secrets");
    let mut table: toml::Table = text.parse().expect("secrets parse");
    table.insert("access_expires_at".into(), toml::Value::String(expires.into()));
    // Rewritten in place: the folder stays read-only for nobody, owner and mode are kept.
    std::fs::write(&secrets, toml::to_string(&table).expect("toml")).expect("secrets written");
}

#[test]
fn f12_a_read_only_config_folder_still_hands_out_a_valid_cached_token() {
    let name = std::fs::read_to_string("/etc/passwd").expect("passwd");
    assert!(name.contains(":65534:"), "no user nobody (uid 65534) here: this test needs one");
    let fx = MailFixture::start();
    let config = SiteConfig::on(&fx).write(&fx);
    login(&fx, &config);
    let root = tempfile::tempdir().expect("temp dir");
    let copy = read_only_copy(&fx, &config, root.path());
    let lock = ConfigPaths::for_config(&copy).lock;

    // The unprivileged user really cannot write there (root could, so prove it as nobody).
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "touch"])
        .arg(&lock)
        .output()
        .expect("setpriv runs");
    assert!(!probe.status.success(), "nobody could create {}", lock.display());

    // A valid cached token: handed out without the lock.
    let output = mailgrant_as_nobody(&["token"], &copy);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), secret_value(&copy, "access_token"));
    assert!(!lock.exists(), "a lock file appeared");

    // A refresh is needed: the diagnosis names the user and the folder.
    set_access_expiry(&copy, "2000-01-01T00:00:00Z");
    let output = mailgrant_as_nobody(&["token"], &copy);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let folder = copy.parent().expect("folder").display().to_string();
    let expected = format!(
        "The access token must be refreshed, but user nobody may not write to the config \
         folder {folder}"
    );
    assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    assert!(stderr.contains("(owner nobody, mode 0500)"), "{stderr}");
    assert!(!stderr.contains("Could not lock"), "{stderr}");

    // The grant is dead and the verdict cannot be recorded: the provider's refusal comes
    // first. A lock file nobody may use exists, so the refresh gets as far as the provider.
    // (root may write into the 0500 folder: only nobody is kept out.)
    std::fs::write(&lock, b"").expect("lock file");
    std::os::unix::fs::chown(&lock, Some(NOBODY), Some(NOBODY)).expect("chown lock");
    fx.expire_refresh_tokens();
    let output = mailgrant_as_nobody(&["token"], &copy);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let refused = "The provider refused the stored refresh token; alarm mail cannot be sent";
    let unrecorded = "Detail: this could not be recorded in the secrets (save-failed)";
    let refused_at = stderr.find(refused).unwrap_or_else(|| panic!("{stderr}"));
    let unrecorded_at = stderr.find(unrecorded).unwrap_or_else(|| panic!("{stderr}"));
    assert!(refused_at < unrecorded_at, "the refusal must come first: {stderr}");
    assert!(stderr[refused_at..].contains("AADSTS700082"), "{stderr}");
    eprintln!("F12: read-only folder as nobody: cached token, clear refusals\n{stderr}");
}
