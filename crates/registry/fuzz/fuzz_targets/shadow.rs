//! Any input: a Device Shadow request document is answered (accepted or
//! rejected, never a panic) by update, get and delete, and an accepted
//! update's document is indexed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = herald_registry::fuzzing::shadow_verdict(data);
});
