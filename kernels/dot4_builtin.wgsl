// dot4_builtin.wgsl -- the packed int8 dot product as WGSL's builtin dot4I8Packed: nothing to
// declare. Kernels that call dot4I8Packed include "dot4.wgsl", which the shader library
// (q8ta_wgpu/shaders.py) resolves to this file where the device's probe found the builtin exact.
