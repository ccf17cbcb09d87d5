//! Operator text for service config problems ([`StoreError`]): what happened, the likely
//! cause, and the fix, naming the file, line, column and key. Ids are stable and documented in
//! `docs/config.md`. No secret value reaches a diagnosis: secrets-file parse problems carry
//! only their position and key.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::{Diagnosis, Retry};
use crate::store::acl::{AclProblem, BroadGroup, SID_ADMINISTRATORS, SID_SYSTEM};
use crate::store::sealed::FrameError;
use crate::store::{
    FileRole, KeyringEntry, KeyringFailure, LockFolderProblem, LockHolder, ParseProblem,
    ParseProblemKind, StoreError,
};

/// The diagnosis for a store error.
pub fn store(error: &StoreError) -> Diagnosis {
    match error {
        StoreError::Missing { role: FileRole::Config, path } => Diagnosis::new(
            "config-missing",
            format!("No service config at {}", path.display()),
            "The setup has not been saved yet, or the path given with --config is wrong",
            "Run the mailgrant setup wizard and save, or pass the right file with --config",
            Retry::Permanent,
        ),
        StoreError::Missing { role: FileRole::Secrets, path } => Diagnosis::new(
            "secrets-missing",
            format!("No secrets file at {}", path.display()),
            "The secrets file was deleted or moved, or `[secrets] path` in the config points \
             elsewhere",
            "Sign in again with mailgrant (\"Sign in again…\" or `mailgrant login`), which \
             writes a new secrets file",
            Retry::Permanent,
        ),
        StoreError::Unreadable { role, path, source } => unreadable(*role, path, source),
        StoreError::Parse(problem) => parse(problem),
        StoreError::NewerSchema { role, path, found, supported } => Diagnosis::new(
            match role {
                FileRole::Config => "config-newer-schema",
                FileRole::Secrets => "secrets-newer-schema",
            },
            format!("The {role} {} is from a newer mailgrant", path.display()),
            format!("It has schema_version = {found}; this mailgrant reads only up to {supported}"),
            "Update mailgrant (and the service) to the version that wrote the file, or restore \
             an older backup from the backups folder",
            Retry::Permanent,
        ),
        StoreError::BackupNotFound { number, kept } => Diagnosis::new(
            "backup-not-found",
            format!("There is no backup number {number}"),
            if kept.is_empty() {
                "No backups are kept yet: the first one is taken when a saved setup is replaced"
                    .to_owned()
            } else {
                let kept: Vec<String> = kept.iter().map(u32::to_string).collect();
                format!("The backups kept are: {}", kept.join(", "))
            },
            "List them with mailgrant restore --list (or in the status view) and pick one of \
             those numbers",
            Retry::Permanent,
        ),
        StoreError::SecretsPermissionsTooOpen { path, mode } => Diagnosis::new(
            "secrets-permissions-too-open",
            format!("Refused to use {}: other users can read it", path.display()),
            format!(
                "The secrets file has mode {mode:04o}; it holds the refresh token, so only its \
                 owner may read it"
            ),
            format!(
                "Run `chmod 600 {}`. If others could read it, also sign in again so the old \
                 refresh token is replaced",
                path.display()
            ),
            Retry::Permanent,
        ),
        StoreError::SecretsNotAFile { path, what } => Diagnosis::new(
            "secrets-not-a-file",
            format!("Refused to use {} as the secrets file", path.display()),
            format!("It is {what}; mailgrant keeps its secrets in a plain file of its own"),
            "Point [secrets] path in the config at a file of its own (or remove the line to use \
             <config name>.secrets.toml beside the config), then sign in again so mailgrant \
             writes it. Do not change the permissions of the file named above",
            Retry::Permanent,
        ),
        StoreError::SecretsFolderWorldWritable { path, mode } => Diagnosis::new(
            "secrets-folder-world-writable",
            format!("Refused to use the secrets in {}: any user can write there", path.display()),
            format!("The folder has mode {mode:04o}; another user could swap the secrets file"),
            format!("Run `chmod o-w {}`, or keep the config in a private folder", path.display()),
            Retry::Permanent,
        ),
        StoreError::SecretsAclTooOpen { path, problem, service_account } => {
            acl_too_open(path, problem, service_account.as_deref())
        }
        StoreError::ServiceAccountUnknown { account, source } => Diagnosis::new(
            "service-account-unknown",
            format!("Windows does not know the service account {account}"),
            format!(
                "`[secrets] service_account` names an account this machine cannot find \
                 ({source}); a virtual account (NT SERVICE\\name) exists only once its service \
                 is installed"
            ),
            "Install the service first, or correct `[secrets] service_account` in the config \
             (for example \"NT SERVICE\\AlarmMailer\"), then save again",
            Retry::Permanent,
        ),
        StoreError::SecretsStoreUnsupported { config, line, store } => Diagnosis::new(
            "secrets-store-unsupported",
            format!("The secrets store \"{store}\" does not work on this computer"),
            store.unsupported_here().unwrap_or("This platform lacks it").to_owned(),
            format!(
                "Set `store = \"file\"` (or another store this platform has) under [secrets] in \
                 {}{}, then sign in again to write the secrets there",
                config.display(),
                line.map(|l| format!(" at line {l}")).unwrap_or_default()
            ),
            Retry::Permanent,
        ),
        StoreError::SecretsSealed { path, problem } => sealed(path, problem),
        StoreError::Keyring { entry, failure } => keyring(entry, failure),
        StoreError::KeyringEntryMissing { entry } => Diagnosis::new(
            "keyring-entry-missing",
            "The keyring holds no secrets for this setup",
            format!(
                "There is no keyring entry {entry}: never signed in with this config path, \
                 signed in as another user, or (Linux) the kernel keyring was cleared by a \
                 reboot or expired"
            ),
            "Sign in again with mailgrant as the user the service runs as. On Linux, prefer \
             `store = \"file\"` for a service: the kernel keyring does not survive a reboot",
            Retry::Permanent,
        ),
        StoreError::ExistingUnparsable(inner) => {
            let inner_text = store(inner);
            Diagnosis::new(
                "save-refused-unparsable",
                "Not saved: the existing file does not parse and was left as it is",
                format!("{} ({})", inner_text.summary, inner_text.cause),
                "Fix the file by hand, or choose to replace it; the old file is then kept in \
                 the backups folder",
                Retry::Permanent,
            )
            .with_detail(format!("{}: {}", inner_text.id, inner_text.fix))
        }
        StoreError::Write { path, source } => save_failed(path, source),
        StoreError::Lock { path, source } => Diagnosis::new(
            "config-lock-failed",
            format!("Could not lock {}", path.display()),
            format!("The lock file next to the config cannot be created or locked ({source})"),
            "Check that this user may write to the config's folder, then try again",
            Retry::Transient,
        ),
        StoreError::LockFolderNotWritable(problem) => {
            let LockFolderProblem { path, folder, user, owner, mode, source } = &**problem;
            folder_not_writable(path, folder, user, owner.as_deref(), *mode, source)
        }
        StoreError::LockBusy { path, waited, holder } => lock_busy(path, *waited, holder.as_ref()),
        StoreError::InvalidSettings { problems, file } => {
            let line = |i: usize| file.as_ref().and_then(|f| f.lines.get(i).copied().flatten());
            let named: Vec<String> = problems
                .iter()
                .enumerate()
                .map(|(i, (key, p))| match line(i) {
                    Some(line) => format!("{key} (line {line}): {}", p.message),
                    None => format!("{key}: {}", p.message),
                })
                .collect();
            let summary = match file {
                Some(file) => format!(
                    "The service config {} has settings mailgrant would not accept",
                    file.path.display()
                ),
                None => "The service config has settings mailgrant would not accept".to_owned(),
            };
            Diagnosis::new(
                "config-invalid-settings",
                summary,
                named.join("; "),
                "Open the config in the mailgrant wizard and correct the marked fields, or edit \
                 the named keys in the file",
                Retry::Permanent,
            )
        }
        StoreError::NotSignedIn { path } => Diagnosis::new(
            "not-signed-in",
            "No refresh token is stored",
            format!("{} holds no refresh token: never signed in, or signed out", path.display()),
            "Sign in with mailgrant (\"Sign in with the browser…\" or `mailgrant login`)",
            Retry::Permanent,
        ),
    }
}

/// A refresh needs the lock file and a new secrets file in the config's folder, and this user
/// may not create files there.
fn folder_not_writable(
    lock: &Path,
    folder: &Path,
    user: &str,
    owner: Option<&str>,
    mode: Option<u32>,
    source: &io::Error,
) -> Diagnosis {
    let folder_text = folder.display();
    let facts = match (owner, mode) {
        (Some(owner), Some(mode)) => format!(" (owner {owner}, mode {mode:04o})"),
        _ => String::new(),
    };
    let run_as = owner.map(|o| format!("as the folder's owner ({o}), ")).unwrap_or_default();
    Diagnosis::new(
        "config-folder-not-writable",
        format!(
            "The access token must be refreshed, but user {user} may not write to the config \
             folder {folder_text}"
        ),
        format!(
            "A refresh takes the lock file {} and saves the rotated refresh token in that \
             folder; the folder{facts} does not let {user} create files there ({}). A cached \
             access token that is still valid is handed out without writing",
            lock.display(),
            source.kind()
        ),
        format!(
            "Run mailgrant and the service {run_as}or give {user} write access to the folder \
             (for example `chown {user} {folder_text}` and `chmod 700 {folder_text}`), then try \
             again"
        ),
        Retry::Permanent,
    )
}

/// Another process held the lock for the whole wait this call could afford.
fn lock_busy(lock: &Path, waited: Duration, holder: Option<&LockHolder>) -> Diagnosis {
    let who = match holder {
        Some(LockHolder { pid, command: Some(command) }) => {
            format!("Another process ({command}, pid {pid})")
        }
        Some(LockHolder { pid, command: None }) => format!("Another process (pid {pid})"),
        None => "Another process".to_owned(),
    };
    let find = match holder {
        Some(holder) => format!("check process {} (`ps -p {}`)", holder.pid, holder.pid),
        None => format!("find the process that holds it (Linux: `fuser -v {}`)", lock.display()),
    };
    Diagnosis::new(
        "config-lock-busy",
        format!(
            "{who} has held the lock {} for {} s; no access token could be had in time",
            lock.display(),
            waited.as_secs()
        ),
        "Another mailgrant (the service, the app, or a `mailgrant token`) is refreshing and the \
         token endpoint is slow, or the process holding the lock is stuck or stopped",
        format!(
            "Try again in a minute. If no mailgrant is refreshing, {find} and end it if it is \
             stuck; never delete the lock file"
        ),
        Retry::Transient,
    )
}

fn acl_too_open(path: &Path, problem: &AclProblem, service_account: Option<&str>) -> Diagnosis {
    let file = path.display();
    let cause = match problem {
        AclProblem::NoDacl => {
            "The file has no access list at all, so every account has full control".to_owned()
        }
        AclProblem::OpenTo { group, access, inherited: true } => format!(
            "{group} may {access} it through a permission inherited from its folder; the file \
             holds the refresh token"
        ),
        AclProblem::OpenTo { group, access, inherited: false } => {
            format!("{group} may {access} it; the file holds the refresh token")
        }
    };
    // SIDs rather than names: group names are translated on non-English Windows.
    let service = service_account.map(|a| format!(" \"{a}:M\"")).unwrap_or_default();
    let broad: Vec<String> = BroadGroup::ALL.iter().map(|g| format!("*{}", g.sid())).collect();
    let fix = format!(
        "Save the setup again with mailgrant, which sets the permissions, or as an \
         administrator run: icacls \"{file}\" /inheritance:r /grant:r *{system}:F \
         *{admins}:F{service} and then: icacls \"{file}\" /remove:g {broad}. Anyone who \
         could read it may have copied the refresh token: sign in again to replace it",
        system = SID_SYSTEM,
        admins = SID_ADMINISTRATORS,
        broad = broad.join(" "),
    );
    Diagnosis::new(
        "secrets-acl-too-open",
        format!("Refused to use {file}: other users can get at it"),
        cause,
        fix,
        Retry::Permanent,
    )
}

fn sealed(path: &Path, problem: &FrameError) -> Diagnosis {
    let (cause, fix) = match problem {
        FrameError::WindowsOnly => (
            "It is encrypted with Windows DPAPI (`store = \"dpapi_file\"`), which only \
             Windows can decrypt"
                .to_owned(),
            "Use the file on the Windows machine that wrote it, or sign in again here to write \
             new secrets"
                .to_owned(),
        ),
        FrameError::Cipher(error) => (
            format!(
                "DPAPI could not decrypt it ({error}): it was encrypted on another computer \
                 (copied or restored from elsewhere), or its content was altered"
            ),
            "Sign in again on this computer to write new secrets; DPAPI-encrypted secrets \
             cannot move between machines"
                .to_owned(),
        ),
        other => (
            format!("The encrypted file is damaged: {other}"),
            "Do not edit the secrets file by hand. Restore it from the backups folder, or sign \
             in again to write a new one"
                .to_owned(),
        ),
    };
    Diagnosis::new(
        "secrets-sealed-unreadable",
        format!("Cannot open the encrypted secrets file {}", path.display()),
        cause,
        fix,
        Retry::Permanent,
    )
}

fn keyring(entry: &KeyringEntry, failure: &KeyringFailure) -> Diagnosis {
    let fix = match failure {
        KeyringFailure::Unsupported => {
            "Set `store = \"file\"` under [secrets] in the config and sign in again".to_owned()
        }
        KeyringFailure::TooLong { .. } => "Use `store = \"file\"` (or `dpapi_file` on \
             Windows) under [secrets]: this keyring cannot hold the tokens"
            .to_owned(),
        KeyringFailure::NoAccess(_) | KeyringFailure::Platform(_) => "Run mailgrant as the \
             user the service runs as, in a session where that user's keyring is available; \
             or use `store = \"file\"` under [secrets]"
            .to_owned(),
        KeyringFailure::Invalid { .. } => "Keep the config at a shorter path, or use \
             `store = \"file\"` under [secrets]"
            .to_owned(),
    };
    Diagnosis::new(
        "keyring-failed",
        "The OS keyring could not be used for the secrets",
        format!("Keyring entry {entry}: {failure}"),
        fix,
        Retry::Permanent,
    )
}

fn unreadable(role: FileRole, path: &std::path::Path, source: &io::Error) -> Diagnosis {
    let id = match role {
        FileRole::Config => "config-unreadable",
        FileRole::Secrets => "secrets-unreadable",
    };
    let (cause, fix) = match source.kind() {
        io::ErrorKind::PermissionDenied => (
            "This user is not allowed to read it".to_owned(),
            "Run mailgrant as the user that owns the file (the service account), or fix the \
             file's owner"
                .to_owned(),
        ),
        io::ErrorKind::InvalidData => (
            "It is not UTF-8 text (it may have been saved by an editor in another encoding)"
                .to_owned(),
            "Save it as UTF-8, or restore a backup from the backups folder".to_owned(),
        ),
        io::ErrorKind::IsADirectory => (
            "The path is a folder, not a file".to_owned(),
            "Point --config at the .toml file itself".to_owned(),
        ),
        io::ErrorKind::FileTooLarge => (
            "It is larger than 1 MiB, far more than any mailgrant config: it is another file"
                .to_owned(),
            "Point --config at the mailgrant .toml file, or restore a backup from the backups \
             folder"
                .to_owned(),
        ),
        _ => (
            format!("The system reported: {source}"),
            "Check the file and its folder, then try again".to_owned(),
        ),
    };
    Diagnosis::new(
        id,
        format!("Cannot read the {role} {}", path.display()),
        cause,
        fix,
        Retry::Permanent,
    )
}

fn parse(problem: &ParseProblem) -> Diagnosis {
    let secrets = problem.role == FileRole::Secrets;
    let id = match (problem.role, problem.kind) {
        (FileRole::Config, ParseProblemKind::Syntax) => "config-invalid-toml",
        (FileRole::Config, ParseProblemKind::MissingKey) => "config-missing-key",
        (FileRole::Config, ParseProblemKind::UnknownKey) => "config-unknown-key",
        (FileRole::Config, ParseProblemKind::InvalidValue) => "config-invalid-value",
        (FileRole::Secrets, _) => "secrets-invalid",
    };
    let key = problem.key.as_deref().map(|k| format!("`{k}`"));
    let at_key = key.as_deref().map(|k| format!(" at {k}")).unwrap_or_default();
    let summary = match problem.kind {
        ParseProblemKind::Syntax => format!("{} is not valid TOML{at_key}", problem.location()),
        ParseProblemKind::MissingKey => format!(
            "{} lacks the required key {}",
            problem.location(),
            key.as_deref().unwrap_or("(unnamed)")
        ),
        ParseProblemKind::UnknownKey => format!(
            "{} has a key this mailgrant does not know: {}",
            problem.location(),
            key.as_deref().unwrap_or("(unnamed)")
        ),
        ParseProblemKind::InvalidValue => {
            format!("{} has an invalid value{at_key}", problem.location())
        }
    };
    let cause = match (&problem.message, problem.kind) {
        (Some(message), _) => message.clone(),
        (None, ParseProblemKind::Syntax) => "The file was edited by hand or cut short".to_owned(),
        (None, _) => "The file was edited by hand or written by another program".to_owned(),
    };
    let fix = if secrets {
        "Do not edit the secrets file by hand. Restore it from the backups folder, or sign in \
         again to write a new one"
            .to_owned()
    } else {
        let what = match problem.kind {
            ParseProblemKind::Syntax => "Correct the TOML syntax",
            ParseProblemKind::MissingKey => "Add the key",
            ParseProblemKind::UnknownKey => "Correct the key's spelling or remove it",
            ParseProblemKind::InvalidValue => "Correct the value",
        };
        format!(
            "{what} at {} (see docs/config.md), restore a backup from the backups folder, or \
             open the setup wizard and save again",
            problem.location()
        )
    };
    Diagnosis::new(id, summary, cause, fix, Retry::Permanent)
}

fn save_failed(path: &std::path::Path, source: &io::Error) -> Diagnosis {
    let (cause, fix) = match source.kind() {
        io::ErrorKind::StorageFull => (
            "The disk is full".to_owned(),
            "Free some space on that disk, then save again. The previous config is unchanged"
                .to_owned(),
        ),
        io::ErrorKind::ReadOnlyFilesystem => (
            "The file system is mounted read-only".to_owned(),
            "Save to a writable location with --config, or ask the administrator to make it \
             writable"
                .to_owned(),
        ),
        io::ErrorKind::PermissionDenied => (
            "This user may not write in that folder".to_owned(),
            "Run mailgrant as the user that owns the config (the service account), or choose \
             another location"
                .to_owned(),
        ),
        io::ErrorKind::NotFound => (
            "The folder does not exist".to_owned(),
            "Create the folder or choose another location with --config".to_owned(),
        ),
        _ => (
            format!("The system reported: {source}"),
            "Check the disk and the folder's permissions, then save again".to_owned(),
        ),
    };
    Diagnosis::new(
        "save-failed",
        format!("Could not write {}", path.display()),
        cause,
        fix,
        Retry::Permanent,
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn problem(role: FileRole, kind: ParseProblemKind) -> StoreError {
        StoreError::Parse(Box::new(ParseProblem {
            file: PathBuf::from("/etc/mailgrant/mailgrant.toml"),
            role,
            line: Some(7),
            column: Some(8),
            key: Some("smtp.port".into()),
            kind,
            message: None,
        }))
    }

    #[test]
    fn invalid_toml_names_file_line_column_key_and_fix() {
        let d = store(&problem(FileRole::Config, ParseProblemKind::Syntax));
        assert_eq!(d.id, "config-invalid-toml");
        assert!(d.summary.contains("/etc/mailgrant/mailgrant.toml:7:8"), "{}", d.summary);
        assert!(d.summary.contains("`smtp.port`"), "{}", d.summary);
        assert!(d.fix.contains("Correct the TOML syntax at /etc/mailgrant/mailgrant.toml:7:8"));
    }

    #[test]
    fn too_open_secrets_tell_the_chmod() {
        let error = StoreError::SecretsPermissionsTooOpen {
            path: PathBuf::from("/etc/mailgrant/mailgrant.secrets.toml"),
            mode: 0o644,
        };
        let d = store(&error);
        assert_eq!(d.id, "secrets-permissions-too-open");
        assert!(d.cause.contains("0644"), "{}", d.cause);
        assert!(d.fix.contains("chmod 600 /etc/mailgrant/mailgrant.secrets.toml"), "{}", d.fix);
    }

    #[test]
    fn disk_full_and_read_only_are_told_apart() {
        let full = StoreError::Write {
            path: PathBuf::from("/x/m.toml"),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        let read_only = StoreError::Write {
            path: PathBuf::from("/x/m.toml"),
            source: io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
        };
        let (full, read_only) = (store(&full), store(&read_only));
        assert_eq!((full.id, read_only.id), ("save-failed", "save-failed"));
        assert_eq!(full.cause, "The disk is full");
        assert_eq!(read_only.cause, "The file system is mounted read-only");
    }

    #[test]
    fn a_refused_save_carries_the_inner_problem() {
        let error = StoreError::ExistingUnparsable(Box::new(problem(
            FileRole::Config,
            ParseProblemKind::Syntax,
        )));
        let d = store(&error);
        assert_eq!(d.id, "save-refused-unparsable");
        assert!(d.cause.contains(":7:8"), "{}", d.cause);
        assert!(d.details[0].starts_with("config-invalid-toml"), "{:?}", d.details);
    }

    #[test]
    fn an_open_windows_acl_names_the_group_and_the_icacls_fix() {
        use crate::store::acl::{AclProblem, BroadGroup, OpenAccess};
        let error = StoreError::SecretsAclTooOpen {
            path: PathBuf::from(r"C:\ProgramData\mailgrant\alarm.secrets.toml"),
            problem: AclProblem::OpenTo {
                group: BroadGroup::Users,
                access: OpenAccess::Read,
                inherited: true,
            },
            service_account: Some(r"NT SERVICE\AlarmMailer".into()),
        };
        let d = store(&error);
        assert_eq!(d.id, "secrets-acl-too-open");
        assert_eq!(
            d.cause,
            "BUILTIN\\Users (S-1-5-32-545) may read it through a permission inherited from its \
             folder; the file holds the refresh token"
        );
        let first = concat!(
            r#"icacls "C:\ProgramData\mailgrant\alarm.secrets.toml" /inheritance:r "#,
            r#"/grant:r *S-1-5-18:F *S-1-5-32-544:F "NT SERVICE\AlarmMailer:M""#
        );
        assert!(d.fix.contains(first), "{}", d.fix);
        let second = r#"/remove:g *S-1-1-0 *S-1-5-32-545 *S-1-5-11 *S-1-5-4"#;
        assert!(d.fix.contains(second), "{}", d.fix);
        assert!(error.to_string().contains("may read it (inherited from the folder)"), "{error}");
    }

    #[test]
    fn an_unsupported_store_names_the_config_line_and_the_way_out() {
        let error = StoreError::SecretsStoreUnsupported {
            config: PathBuf::from("/etc/mailgrant/alarm.toml"),
            line: Some(27),
            store: crate::store::SecretsStore::DpapiFile,
        };
        let d = store(&error);
        assert_eq!(d.id, "secrets-store-unsupported");
        if !cfg!(windows) {
            assert_eq!(d.cause, "dpapi_file works on Windows only; use file or keyring");
        }
        assert!(d.fix.contains("/etc/mailgrant/alarm.toml at line 27"), "{}", d.fix);
    }

    #[test]
    fn a_sealed_file_from_another_machine_says_so() {
        use crate::store::sealed::{CipherError, FrameError};
        let error = StoreError::SecretsSealed {
            path: PathBuf::from(r"C:\ProgramData\mailgrant\alarm.secrets.toml"),
            problem: FrameError::Cipher(CipherError { operation: "decrypt", code: Some(13) }),
        };
        let d = store(&error);
        assert_eq!(d.id, "secrets-sealed-unreadable");
        assert!(d.cause.contains("encrypted on another computer"), "{}", d.cause);
        assert!(d.cause.contains("system error 13"), "{}", d.cause);
    }

    #[test]
    fn secrets_problems_say_not_to_edit_by_hand() {
        let d = store(&problem(FileRole::Secrets, ParseProblemKind::InvalidValue));
        assert_eq!(d.id, "secrets-invalid");
        assert!(d.fix.starts_with("Do not edit the secrets file by hand"), "{}", d.fix);
    }
}
