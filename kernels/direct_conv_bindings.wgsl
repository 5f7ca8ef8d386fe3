// direct_conv_bindings.wgsl -- included by the convs that read their 4W4C input directly, with no
// A matrix and no GEMM's bindings (depthwise_4w4c.wgsl, conv_patch_4w4c.wgsl; no entry point):
// bindings 2-9, one declaration for both. The includer declares `x` (binding 0) and `wts`
// (binding 1, its own weight layout). In: `chan` (epilogue records), `od`/`p` (output
// TensorDesc, GemmParams), `xd`/`cv` (the input's TensorDesc, ConvParams), `res`/`rd` (the
// residual epilogue.wgsl adds when RESIDUAL; else a placeholder). Out: `o`, the output tensor.
@group(0) @binding(2) var<storage, read> chan: array<Chan>;
@group(0) @binding(3) var<storage, read_write> o: array<u32>;
@group(0) @binding(4) var<uniform> od: TensorDesc;
@group(0) @binding(5) var<uniform> p: GemmParams;
@group(0) @binding(6) var<uniform> xd: TensorDesc;
@group(0) @binding(7) var<uniform> cv: ConvParams;
@group(0) @binding(8) var<storage, read> res: array<u32>;
@group(0) @binding(9) var<uniform> rd: TensorDesc;
