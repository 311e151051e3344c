"""Generated protobuf and gRPC stubs of package cfgclone.v1 (do not edit)."""
