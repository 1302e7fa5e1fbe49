//! `nph-events doctor URL`: a client-side self-test of a deployed stream.
//! (Being built: see issue 13.)

use std::io::Write;

/// `nph-events help doctor`.
pub const HELP: &str = "Usage: nph-events doctor URL [FLAGS]\n\nNot built yet.\n";

/// Runs the doctor with its arguments (after the word `doctor`); returns
/// the exit status.
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let _ = (args, out);
    let _ = writeln!(err, "nph-events doctor: not built yet");
    2
}
