#![no_main]
//! AdmissionReview bodies as the server reads them.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::fuzzing::admission_review(data));
