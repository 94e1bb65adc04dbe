//! mesh-proxy: the data plane of the mesh.

pub mod config;
