//! Background work for the window: each job runs on its own named thread, reports through a
//! channel and wakes the window with `request_repaint`, so the UI thread never blocks and never
//! polls.
//!
//! Every report carries the attempt number it belongs to; the app ignores reports from an
//! attempt it has since abandoned (a cancelled sign-in that answers late, for example).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use crate::diagnose::Diagnosis;
use crate::gui::jobs::{Reread, Restored, SignedOut, StatusOutcome, VerifyResult};
use crate::oauth::TokenSet;
use crate::store::BackupInfo;
use crate::verify::CheckResult;

/// Identifies one run of a job, so late reports from an abandoned run can be dropped.
pub type Attempt = u64;

/// Stops a running job that waits on something outside (the browser sign-in).
#[derive(Clone)]
pub struct CancelHandle(Arc<dyn Fn() + Send + Sync>);

impl CancelHandle {
    /// Wraps the job's own cancel function.
    pub fn new(cancel: impl Fn() + Send + Sync + 'static) -> CancelHandle {
        CancelHandle(Arc::new(cancel))
    }

    /// Asks the job to stop; it then reports its outcome as usual.
    pub fn cancel(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelHandle")
    }
}

/// How a browser sign-in ended.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Tokens arrived.
    SignedIn(Box<TokenSet>),
    /// The operator cancelled.
    Cancelled,
    /// It failed; the diagnosis says why and what to do.
    Failed(Diagnosis),
}

/// What a worker reports to the window.
#[derive(Debug)]
pub enum TaskEvent {
    /// The loopback listener is up and the browser was asked to open the authorize URL.
    SignInWaiting {
        attempt: Attempt,
        authorize_url: String,
        redirect_uri: String,
        cancel: CancelHandle,
        /// Set when the system browser could not be opened (the operator copies the URL).
        browser_problem: Option<String>,
    },
    /// The sign-in finished.
    SignInFinished { attempt: Attempt, outcome: SignInOutcome },
    /// A save finished: where it wrote and what, or why it failed.
    SaveFinished { attempt: Attempt, result: crate::gui::jobs::SaveResult },
    /// One check of a verification run (wizard or status view) started or ended.
    CheckProgress { attempt: Attempt, result: Box<CheckResult> },
    /// The wizard's verification run finished.
    VerifyFinished { attempt: Attempt, result: VerifyResult },
    /// A status-view button's job finished.
    StatusFinished { attempt: Attempt, outcome: Box<StatusOutcome> },
    /// The numbered backups were listed, oldest first.
    BackupsListed { attempt: Attempt, result: Result<Vec<BackupInfo>, Diagnosis> },
    /// A backup was put back (or why not).
    RestoreFinished { attempt: Attempt, result: Result<Box<Restored>, Diagnosis> },
    /// The stored tokens were removed (or why not).
    SignOutFinished { attempt: Attempt, result: Result<Box<SignedOut>, Diagnosis> },
    /// The saved setup was read again (the status view was opened or the window focused).
    Reread { attempt: Attempt, reread: Box<Reread> },
    /// The support bundle was written to this path (or why not).
    BundleWritten { attempt: Attempt, result: Result<PathBuf, Diagnosis> },
}

/// Sends reports to the window and wakes it.
#[derive(Clone)]
pub struct Reporter {
    sender: Sender<TaskEvent>,
    ctx: egui::Context,
}

impl Reporter {
    /// Delivers one report; a closed window is not an error for a worker.
    pub fn send(&self, event: TaskEvent) {
        if self.sender.send(event).is_ok() {
            self.ctx.request_repaint();
        }
    }
}

/// Starts workers and collects their reports.
pub struct TaskRunner {
    reporter: Reporter,
    receiver: Receiver<TaskEvent>,
    next_attempt: Attempt,
}

impl TaskRunner {
    /// A runner whose workers wake `ctx`.
    pub fn new(ctx: egui::Context) -> TaskRunner {
        let (sender, receiver) = channel();
        TaskRunner { reporter: Reporter { sender, ctx }, receiver, next_attempt: 1 }
    }

    /// A fresh attempt number.
    pub fn next_attempt(&mut self) -> Attempt {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        attempt
    }

    /// Runs `job` on a thread named `name`.
    pub fn spawn(
        &self,
        name: &str,
        job: impl FnOnce(Reporter) + Send + 'static,
    ) -> std::io::Result<()> {
        let reporter = self.reporter.clone();
        std::thread::Builder::new().name(name.to_owned()).spawn(move || job(reporter))?;
        tracing::debug!(thread = name, "started background job");
        Ok(())
    }

    /// A reporter for feeding events in from outside a worker (the app's own tests).
    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Every report that has arrived since the last call, without blocking.
    pub fn drain(&self) -> Vec<TaskEvent> {
        self.receiver.try_iter().collect()
    }
}
