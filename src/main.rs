//! The `nph-events` binary: gathers the real inputs and calls the library.

use std::fs::File;
use std::os::fd::AsFd;

use nph_events::clock::{HangupWaiter, SystemClock};
use nph_events::{sys, Inputs};

fn main() {
    sys::reset_signal_mask();
    sys::ignore_file_size_signal();
    // An unbuffered handle on fd 1: each rendered event is one write(2).
    let Ok(out) = std::io::stdout().as_fd().try_clone_to_owned() else {
        // No stdout at all: nobody to answer.
        return;
    };
    let mut out = File::from(out);
    let Ok(watched) = out.try_clone() else { return };
    let clock = SystemClock::new();
    let mut waiter = HangupWaiter::new(watched);
    let mut stdin = std::io::stdin().lock();
    let inputs = Inputs {
        args: std::env::args_os().collect(),
        vars: std::env::vars_os().collect(),
        clock: &clock,
        waiter: &mut waiter,
        stdin: &mut stdin,
    };
    // Not `stderr().lock()`: the server's threads log too.
    let code = nph_events::run(inputs, &mut out, &mut std::io::stderr());
    std::process::exit(code);
}
