//! Arbitrary bytes from a (hostile) ManageSieve server through flytt's
//! response parser: every line it accepts must lie within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((_, used)) = flytt_sieve::protocol::parse_line(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
});
