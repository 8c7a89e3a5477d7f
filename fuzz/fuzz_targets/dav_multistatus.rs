//! Any bytes as a DAV server's multistatus answer: read or refused, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = flytt_dav::xml::parse_multistatus(text);
    }
});
