//! Any input: the fleet indexing query parser returns (never panics, never
//! hangs), and a query it accepts runs against a small index.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = herald_registry::fuzzing::query_verdict(data);
});
