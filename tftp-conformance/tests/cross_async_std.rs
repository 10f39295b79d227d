//! tftp-async-std and tftp-tokio against each other.

mod tokio_server {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::Tokio, tftp_conformance::adapters::AsyncStd);
}

mod async_std_server {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::AsyncStd, tftp_conformance::adapters::Tokio);
}
