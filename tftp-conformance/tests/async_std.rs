//! The conformance suite against tftp-async-std's server and client, under async-std's
//! executor and under smol's.
tftp_conformance::suite!(full: tftp_conformance::adapters::AsyncStd, tftp_conformance::adapters::AsyncStd);

mod smol {
    tftp_conformance::suite!(full: tftp_conformance::adapters::Smol, tftp_conformance::adapters::Smol);
}
