//! The sandbox's report: one line per check, and whether all passed.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The part that would make this work has not landed yet; not a failure.
    NotYet,
}

#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(Outcome, String)>,
}

impl Report {
    pub fn record(&mut self, outcome: Outcome, text: impl Into<String>) {
        let text = text.into();
        let line = Line(outcome, &text).to_string();
        println!("{line}");
        self.lines.push((outcome, text));
    }

    pub fn check(&mut self, ok: bool, pass: impl Into<String>, fail: impl Into<String>) {
        if ok {
            self.record(Outcome::Pass, pass);
        } else {
            self.record(Outcome::Fail, fail);
        }
    }

    pub fn failures(&self) -> usize {
        self.lines.iter().filter(|(o, _)| *o == Outcome::Fail).count()
    }

    pub fn summary(&self) -> String {
        let count = |o| self.lines.iter().filter(|(x, _)| *x == o).count();
        format!(
            "checks: {} ok, {} failed, {} not yet available",
            count(Outcome::Pass),
            count(Outcome::Fail),
            count(Outcome::NotYet)
        )
    }
}

struct Line<'a>(Outcome, &'a str);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.0 {
            Outcome::Pass => "ok     ",
            Outcome::Fail => "FAILED ",
            Outcome::NotYet => "not yet",
        };
        write!(f, "  [{tag}] {}", self.1)
    }
}
