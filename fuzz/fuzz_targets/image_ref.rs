#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::fuzzing::image_ref(data));
