//! The Binance request parser, and everything a parsed request offers, on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_exchanges::binance::fuzz_parse(data);
});
