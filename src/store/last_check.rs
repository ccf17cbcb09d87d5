//! The last verification result, kept next to the config (`<stem>.last-check.json`) so the
//! status view, `mailgrant status` and the support bundle can show it after a restart.
//!
//! It holds outcomes and operator text only, never a token or secret. Written atomically like
//! every other store file; a missing or unreadable file simply means "no check recorded".

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::atomic::{Access, write_atomic};
use super::error::StoreError;
use super::paths::ConfigPaths;
use crate::verify::{Outcome, VerificationReport};

/// One check as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCheck {
    /// Stable check id, e.g. `smtp`.
    pub id: String,
    /// Row label.
    pub name: String,
    /// `passed`, `warning`, `failed` or `skipped`.
    pub outcome: String,
    /// What was seen.
    pub summary: String,
    /// Diagnosis id, summary, cause and fix when the check did not simply pass.
    pub diagnosis_id: Option<String>,
    pub diagnosis: Option<String>,
    /// Absent in records written before causes were kept.
    #[serde(default)]
    pub cause: Option<String>,
    pub fix: Option<String>,
    pub duration_ms: u64,
}

/// A whole recorded run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub all_passed: bool,
    pub checks: Vec<RecordedCheck>,
}

impl LastCheck {
    /// The record of a finished run.
    pub fn from_report(report: &VerificationReport) -> LastCheck {
        let checks = report
            .checks
            .iter()
            .map(|c| {
                let outcome = match &c.outcome {
                    Outcome::Passed => "passed",
                    Outcome::Warning(_) => "warning",
                    Outcome::Failed(_) => "failed",
                    Outcome::Skipped(_) => "skipped",
                    Outcome::Running => "running",
                };
                let diagnosis = c.outcome.diagnosis();
                RecordedCheck {
                    id: serde_json::to_value(c.id)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    name: c.name.to_owned(),
                    outcome: outcome.to_owned(),
                    summary: c.summary.clone(),
                    diagnosis_id: diagnosis.map(|d| d.id.to_owned()),
                    diagnosis: diagnosis.map(|d| d.summary.clone()),
                    cause: diagnosis.map(|d| d.cause.clone()),
                    fix: diagnosis.map(|d| d.fix.clone()),
                    duration_ms: u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX),
                }
            })
            .collect();
        LastCheck {
            run_id: report.run_id.clone(),
            started_at: report.started_at,
            all_passed: report.all_passed(),
            checks,
        }
    }
}

/// Where the record of `paths`' setup lives.
pub fn path(paths: &ConfigPaths) -> PathBuf {
    paths.dir().join(format!("{}.last-check.json", paths.stem()))
}

/// Records a finished run.
pub fn save(paths: &ConfigPaths, report: &VerificationReport) -> Result<(), StoreError> {
    let file = path(paths);
    let record = LastCheck::from_report(report);
    let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
    write_atomic(&file, &text, Access::KeepExisting)
        .map_err(|source| StoreError::Write { path: file, source })
}

/// The last recorded run, if any can be read.
pub fn load(paths: &ConfigPaths) -> Option<LastCheck> {
    let text = std::fs::read(path(paths)).ok()?;
    serde_json::from_slice(&text).ok()
}
