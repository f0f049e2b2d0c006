"""WebAssembly provider plugins: the manifest, the sandboxed runtime and the egress policy."""
