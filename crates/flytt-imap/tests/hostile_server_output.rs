//! The fuzz target's property, also checked on every test run: no server
//! output makes the framer or parser panic (cargo fuzz explores further;
//! see fuzz/).

use proptest::prelude::*;

#[test]
fn fuzz_seed_session_is_handled() {
    let seed = include_bytes!("../../../fuzz/seeds/server_output/session.txt");
    flytt_imap::fuzz_server_output(seed);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        flytt_imap::fuzz_server_output(&data);
    }

    #[test]
    fn imap_shaped_garbage_never_panics(lines in proptest::collection::vec(
        "(\\* |F1 |\\+ )?(OK|NO|BAD|FETCH|LIST|[0-9]{1,12}) ?[\\[\\](){}\"\\\\ A-Za-z0-9:*,+~-]{0,60}(\\{[0-9]{1,4}\\+?\\})?\r\n",
        0..20,
    )) {
        flytt_imap::fuzz_server_output(lines.concat().as_bytes());
    }
}
