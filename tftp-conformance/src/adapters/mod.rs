//! Each adapter's implementation of [`crate::Adapter`]: its handler over the shared
//! [`crate::Backend`], its server started in the background, its client.

mod tokio;

pub use self::tokio::Tokio;
