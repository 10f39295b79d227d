//! Each adapter's implementation of [`crate::Adapter`]: its handler over the shared
//! [`crate::Backend`], its server started in the background, its client.

mod async_std;
mod blocking;
mod tokio;

pub use self::async_std::{AsyncStd, Smol};
pub use self::blocking::Blocking;
pub use self::tokio::Tokio;
