//! Any bytes as an HTTP request: the SigV4 verifier returns a verdict
//! (never panics, never hangs), and only a request signed with the known
//! key is accepted.

#![no_main]

use herald_gateway::fuzzing::{SIGV4_ACCESS_KEY_ID, SigV4Verdict, sigv4_verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let SigV4Verdict::Accepted { access_key_id } = sigv4_verdict(data) {
        assert_eq!(access_key_id, SIGV4_ACCESS_KEY_ID);
    }
});
