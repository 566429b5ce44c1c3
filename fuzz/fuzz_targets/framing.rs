//! Fuzz target `framing`: an arbitrary TCP stream through the RFC 6587 decoder, whole and in
//! chunks; the properties live in `starling::fuzzcheck::framing` so inputs replay on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling::fuzzcheck::framing::check(data);
});
