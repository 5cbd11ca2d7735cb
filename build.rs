//! Compiles tollgate's own protobuf types (`proto/tollgate/`) with prost-build. The
//! `.proto` files are parsed by protox, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tollgate");
    let descriptors = protox::compile(["tollgate/config/v1/config.proto"], ["proto"])?;
    prost_build::Config::new()
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com")
        .compile_fds(descriptors)?;
    Ok(())
}
