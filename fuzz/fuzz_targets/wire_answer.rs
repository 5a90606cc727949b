//! The HTTP/1.1 answer reader on arbitrary bytes, arriving in reads of arbitrary sizes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_gateway::wire::fuzz_read_answer(data);
});
