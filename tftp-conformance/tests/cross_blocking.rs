//! tftp-blocking against tftp-tokio, both ways round.

mod tokio_server_blocking_client {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::Tokio, tftp_conformance::adapters::Blocking);
}

mod blocking_server_tokio_client {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::Blocking, tftp_conformance::adapters::Tokio);
}
