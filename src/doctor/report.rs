//! Checks, their verdicts, and the two ways of printing them (text for a
//! person, `--json` for a script).

use std::io::{self, Write};

/// How a check came out. Ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Not judged: skipped, or a fact without a verdict.
    Info,
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Info => "info",
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Short, stable name (`live`, `compression`, …).
    pub name: &'static str,
    pub verdict: Verdict,
    /// The measured number, where there is one (seconds unless named).
    pub value: Option<f64>,
    /// One line: what was measured and what it means.
    pub detail: String,
}

impl Check {
    pub fn new(
        name: &'static str,
        verdict: Verdict,
        value: Option<f64>,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name,
            verdict,
            value,
            detail: detail.into(),
        }
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub url: String,
    pub transport: String,
    pub checks: Vec<Check>,
    /// What answers in front of the program (from the headers).
    pub server: String,
    /// The fixes for what failed, for the server found.
    pub fixes: Vec<String>,
    /// Whether the stream arrived live.
    pub live: bool,
}

impl Report {
    /// Exit status: 0 when live and nothing failed, 1 otherwise.
    pub fn status(&self) -> i32 {
        let failed = self.checks.iter().any(|c| c.verdict == Verdict::Fail);
        if self.live && !failed {
            0
        } else {
            1
        }
    }

    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "nph-events doctor {}", self.url)?;
        writeln!(out, "  using: {}", self.transport)?;
        for c in &self.checks {
            writeln!(
                out,
                "  {:<5} {:<12} {}",
                c.verdict.label(),
                c.name,
                c.detail
            )?;
        }
        writeln!(out, "  server: {}", self.server)?;
        for fix in &self.fixes {
            writeln!(out, "  fix: {fix}")?;
        }
        let summary = match (self.live, self.status()) {
            (true, 0) => "LIVE: events arrive as they are sent",
            (true, _) => "LIVE, but a check failed (see above)",
            (false, _) => "NOT LIVE: the stream does not arrive as it is sent",
        };
        writeln!(out, "verdict: {summary}")
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "verdict": c.verdict.label().to_ascii_lowercase(),
                    "value": c.value,
                    "detail": c.detail,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "url": self.url,
            "transport": self.transport,
            "live": self.live,
            "status": self.status(),
            "server": self.server,
            "checks": checks,
            "fixes": self.fixes,
        });
        writeln!(out, "{doc}")
    }
}

/// Seconds with millisecond precision, for details.
pub fn secs(s: f64) -> String {
    format!("{s:.3} s")
}
