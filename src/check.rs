//! `nph-events check`: validates what the site's CGI would run with.

use std::io::Write;

use crate::cli::Overrides;

/// Loads the settings as the CGI would and checks them and the spool;
/// returns the exit status (0: nothing would fail).
pub fn main<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    overrides: &Overrides,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let _ = (vars.into_iter().count(), overrides, out);
    let _ = writeln!(err, "nph-events check: not built yet");
    2
}
