//! `nph-events stats`: the spool's numbers for the CGI side.
//! (Being built: see issue 13.)

use std::io::Write;

use crate::config::Config;

/// Prints the spool's numbers (text, or JSON with `json`); returns the
/// exit status.
pub fn main(config: &Config, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let _ = (config, json, out);
    let _ = writeln!(err, "nph-events stats: not built yet");
    2
}
