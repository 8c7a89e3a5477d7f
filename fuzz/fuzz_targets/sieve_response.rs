//! Arbitrary bytes from a (hostile) ManageSieve server through flytt's
//! response parser: every line it accepts must lie within the input, and
//! an incomplete one must ask for more than there is (so a reader that
//! waits for that many bytes before parsing again always progresses).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match flytt_sieve::protocol::parse_line(rest) {
            Ok((_, used)) => {
                assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
            }
            Err(flytt_sieve::protocol::ParseError::Incomplete { needed }) => {
                assert!(needed > rest.len());
                break;
            }
            Err(_) => break,
        }
    }
});
