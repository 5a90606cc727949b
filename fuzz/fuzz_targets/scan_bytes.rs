//! The scanner on an arbitrary buffer, every rule looking at every value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_scan::fuzz_scan(data);
});
