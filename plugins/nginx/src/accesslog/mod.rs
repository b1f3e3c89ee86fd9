//! Access-log field helpers shared by the `nginx` and `json` parsers.
//!
//! The `json` crate includes this directory with `#[path]` instead of depending on the `nginx` crate,
//! because a dependency would link the nginx component's exports into the json component. Everything
//! here is a pure function of its input: no allocation unless the result needs it, no panics, and time
//! linear in the input on any text.

pub mod bytes;
pub mod request_line;
pub mod time;
pub mod xff;
