//! Internal code the fuzz targets in `fuzz/` drive but the public API does not offer:
//! the JSON string rewriter behind prompt-guard masking, the model rewrite on the wire,
//! and the two readings of a stream event's text fields. Compiled only with the
//! `fuzzing` feature; not an API.

pub use crate::processors::endpoint_picker::model_rewrite::{set_model, ModelWriteBack};
pub use crate::processors::prompt_guard::json::{rewrite_strings, Malformed, Seg};
pub use crate::processors::prompt_guard::stream_events::check_readings_agree;
