//! Serving files from a root directory, confined to it.
