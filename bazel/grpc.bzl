"""grpc_proto_library: protoc + grpc_cpp_plugin from Debian, into a cc_library.

    grpc_proto_library(name = "kvstore_proto", srcs = ["kvstore.proto"])

Generated headers are included by their workspace path, e.g.
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"; protos import each other by workspace path
too (import "rpc/common/v1/common.proto"), listed in `proto_deps` (other
grpc_proto_library targets' .proto files, as labels).
"""

def grpc_proto_library(name, srcs, deps = [], proto_deps = [], **kwargs):
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc", base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = outs,
        # Run protoc from the workspace root so that imports and outputs use workspace
        # paths; outputs land under $(GENDIR).
        cmd = " ".join([
            "protoc",
            "-I.",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=$$(which grpc_cpp_plugin)",
        ] + ["$(location %s)" % s for s in srcs]),
        message = "protoc " + name,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpcpp"],
        **kwargs
    )
