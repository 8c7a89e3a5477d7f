//! Arbitrary bytes from a (hostile) IMAP server through flytt's framer and
//! response parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flytt_imap::fuzz_server_output(data);
});
