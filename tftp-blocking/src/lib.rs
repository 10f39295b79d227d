//! tftp-blocking adapter for tftp-proto.
