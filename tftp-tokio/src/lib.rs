//! tftp-tokio adapter for tftp-proto.
