//! tftp-async-std adapter for tftp-proto.
