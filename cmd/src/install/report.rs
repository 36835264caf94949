//! What install and uninstall say: one line per thing done, or that
//! would be done under `--dry-run`.

use std::fmt::Display;

#[derive(Debug, Clone, Copy)]
pub enum Did {
    Installed,
    Unchanged,
    KeptExisting,
    Removed,
}

impl Did {
    /// (done, to be done)
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Did::Installed => ("installed", "would install"),
            Did::Unchanged => ("unchanged", "would leave unchanged"),
            Did::KeptExisting => ("kept existing", "would keep existing"),
            Did::Removed => ("removed", "would remove"),
        }
    }
}

pub struct Report {
    pub dry_run: bool,
}

impl Report {
    pub fn say(&self, did: Did, what: impl Display) {
        let (done, planned) = did.words();
        println!("{} {what}", if self.dry_run { planned } else { done });
    }
}
