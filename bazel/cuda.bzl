"""cuda_library: nvcc compiles each .cu to an object that a cc_library links.

Works with no GPU present (CUDA 13 at /usr/local/cuda); code is built for Hopper
(sm_90a, H100/H200). Headers a .cu includes must be listed in hdrs or extra_hdrs so the
genrule sees them; include paths are relative to the workspace root.
"""

NVCC = "/usr/local/cuda/bin/nvcc"

NVCC_FLAGS = [
    "-std=c++20",
    "-O3",
    "-I.",
    "-I$(GENDIR)",
    "--expt-relaxed-constexpr",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-Xcompiler=-fPIC",
    "-lineinfo",
]

def cuda_library(name, srcs, hdrs = [], extra_hdrs = [], deps = [], nvcc_flags = [], **kwargs):
    objs = []
    for src in srcs:
        obj = "_objs/%s/%s" % (name, src.replace(".cu", ".o"))
        native.genrule(
            name = "%s_%s_nvcc" % (name, src.replace("/", "_").replace(".", "_")),
            srcs = [src] + hdrs + extra_hdrs,
            outs = [obj],
            cmd = " ".join([NVCC, "-c"] + NVCC_FLAGS + nvcc_flags + ["-o $@", "$(location %s)" % src]),
            message = "nvcc %s" % src,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@cuda//:cudart"],
        alwayslink = True,
        **kwargs
    )
