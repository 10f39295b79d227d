//! The conformance suite against tftp-blocking's server and client.
tftp_conformance::suite!(full: tftp_conformance::adapters::Blocking, tftp_conformance::adapters::Blocking);
