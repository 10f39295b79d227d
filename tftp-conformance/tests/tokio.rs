//! The conformance suite against tftp-tokio's server and client.
tftp_conformance::suite!(full: tftp_conformance::adapters::Tokio, tftp_conformance::adapters::Tokio);
