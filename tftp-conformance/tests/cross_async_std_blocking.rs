//! async-std and blocking against each other (tokio pairs are in the other cross files).
mod async_std_server {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::AsyncStd, tftp_conformance::adapters::Blocking);
}
mod blocking_server {
    tftp_conformance::suite!(cross: tftp_conformance::adapters::Blocking, tftp_conformance::adapters::AsyncStd);
}
