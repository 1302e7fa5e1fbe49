//! Reading the spool's numbers without changing anything: channels,
//! retained events and bytes, connected readers.
